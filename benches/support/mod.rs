//! What the policy benchmarks share: a chain compiled against fresh
//! in-memory services, outside any deployment.

use keygate::config::policy::PolicySpec;
use keygate::policy::PolicyChain;
use keygate::runtime::Services;

/// `specs` compiled as a deployment's chain would be (no static keys).
pub fn chain(specs: &[PolicySpec]) -> PolicyChain {
    let services = Services::in_memory().expect("in-memory services");
    PolicyChain::compile(specs, &services.policy_resources(&services.keys_without_statics())).expect("compiles")
}
