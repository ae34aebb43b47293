//! `ip: {allow, deny}`: CIDR rules on the client IP (the trusted-proxy rule
//! already applied). Deny wins; a non-empty allow
//! list admits only its members.

use super::{CompileError, Outcome, Policy, PolicyState, RequestView, Resources};
use crate::config::policy::IpSpec;
use crate::errors::{ErrorCode, GatewayError};
use crate::net::IpSet;

#[derive(Debug)]
pub struct IpRules {
    allow: IpSet,
    deny: IpSet,
}

impl IpRules {
    fn admits(&self, ip: Option<std::net::IpAddr>) -> bool {
        let Some(ip) = ip else {
            return self.allow.is_empty();
        };
        if self.deny.contains(ip) {
            return false;
        }
        self.allow.is_empty() || self.allow.contains(ip)
    }
}

impl Policy for IpRules {
    type Spec = IpSpec;
    const KIND: &'static str = "ip";

    fn from_spec(spec: &IpSpec, _resources: &Resources<'_>) -> Result<Self, CompileError> {
        Ok(Self {
            allow: IpSet::new(spec.allow.iter().map(|c| c.0).collect()),
            deny: IpSet::new(spec.deny.iter().map(|c| c.0).collect()),
        })
    }

    async fn evaluate(&self, request: &RequestView<'_>, _state: &mut PolicyState) -> Outcome {
        if self.admits(request.client_ip) {
            Outcome::Continue
        } else {
            Outcome::Reject(GatewayError::with_detail(
                ErrorCode::FirewallDenied,
                "The client address is not allowed to reach this deployment.",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> IpRules {
        let nets = |list: &[&str]| IpSet::new(list.iter().map(|n| n.parse().unwrap()).collect());
        IpRules {
            allow: nets(allow),
            deny: nets(deny),
        }
    }

    #[test]
    fn allow_and_deny() {
        let ip = |s: &str| Some(s.parse().unwrap());
        let r = rules(&["10.0.0.0/8", "2001:db8::/32"], &["10.6.6.0/24"]);
        assert!(r.admits(ip("10.1.2.3")));
        assert!(!r.admits(ip("10.6.6.6")));
        assert!(!r.admits(ip("192.168.1.1")));
        assert!(r.admits(ip("2001:db8::1")));
        assert!(r.admits(ip("::ffff:10.1.2.3")));
        assert!(!r.admits(None));
        let deny_only = rules(&[], &["::1/128"]);
        assert!(!deny_only.admits(ip("::1")));
        assert!(deny_only.admits(ip("127.0.0.1")));
        assert!(deny_only.admits(None));
    }
}
