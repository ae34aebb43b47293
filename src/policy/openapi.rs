//! `openapi`: checks the request — operation, parameters,
//! content type, JSON body — against the deployment's compiled spec
//! ([`crate::openapi`]). The policy asks the chain for the buffered body;
//! every violation is reported in the 400, the first one in `detail`.

use std::sync::Arc;

use super::{CompileError, Outcome, Policy, PolicyState, RequestView, Resources};
use crate::config::policy::OpenapiPolicySpec;
use crate::errors::{ErrorCode, GatewayError};
use crate::openapi::SpecSlot;

/// At most this many violations are listed in one response; `detail` gives
/// the total (a 10 MiB body could otherwise produce a response many times its size).
const MAX_LISTED: usize = 1000;

#[derive(Debug)]
pub struct OpenapiPolicy {
    spec: Arc<SpecSlot>,
}

impl Policy for OpenapiPolicy {
    type Spec = OpenapiPolicySpec;
    const KIND: &'static str = "openapi";
    const READS_BODY: bool = true;

    /// An `openapi` policy needs the deployment's `openapi:`.
    fn from_spec(_spec: &OpenapiPolicySpec, resources: &Resources<'_>) -> Result<Self, CompileError> {
        let spec = resources.openapi.ok_or_else(|| {
            (
                String::new(),
                "an openapi policy needs the deployment's `openapi:` (file or fetch_path)".to_string(),
            )
        })?;
        Ok(Self { spec: spec.clone() })
    }

    async fn evaluate(&self, request: &RequestView<'_>, _state: &mut PolicyState) -> Outcome {
        let Some(spec) = self.spec.current() else {
            return Outcome::Reject(GatewayError::with_detail(
                ErrorCode::InvalidConfiguration,
                "The deployment's OpenAPI spec has not been fetched from an instance yet.",
            ));
        };
        let body = request.body.map_or(&[][..], |b| b.as_ref());
        let mut problems = spec.check(request.head, body);
        let Some(first) = problems.first() else {
            return Outcome::Continue;
        };
        let mut detail = format!("{}: {}", first.location, first.message);
        if problems.len() > 1 {
            detail.push_str(&format!(" (and {} more)", problems.len() - 1));
        }
        if problems.len() > MAX_LISTED {
            detail.push_str(&format!("; the first {MAX_LISTED} are listed"));
            problems.truncate(MAX_LISTED);
        }
        Outcome::Reject(GatewayError::with_detail(ErrorCode::OpenapiValidationFailed, detail).with_items(problems))
    }
}
