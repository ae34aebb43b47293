//! `firewall: {action: deny}` (SPEC §3.2): every matching request is refused.

use super::{Outcome, Policy, PolicyState, RequestView};
use crate::errors::ErrorCode;

#[derive(Debug)]
pub struct Firewall;

impl Policy for Firewall {
    async fn evaluate(&self, _request: &RequestView<'_>, _state: &mut PolicyState) -> Outcome {
        Outcome::Reject(ErrorCode::FirewallDenied.into())
    }
}
