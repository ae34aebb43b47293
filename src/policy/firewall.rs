//! `firewall: {action: deny}`: every matching request is refused.

use super::{CompileError, Outcome, Policy, PolicyState, RequestView, Resources};
use crate::config::policy::FirewallSpec;
use crate::errors::ErrorCode;

#[derive(Debug)]
pub struct Firewall;

impl Policy for Firewall {
    type Spec = FirewallSpec;
    const KIND: &'static str = "firewall";

    fn from_spec(_spec: &FirewallSpec, _resources: &Resources<'_>) -> Result<Self, CompileError> {
        Ok(Self)
    }

    async fn evaluate(&self, _request: &RequestView<'_>, _state: &mut PolicyState) -> Outcome {
        Outcome::Reject(ErrorCode::FirewallDenied.into())
    }
}
