//! Policy chains (SPEC §3): each deployment's ordered policies, compiled at
//! load into a [`PolicyChain`] and evaluated per request before any byte goes
//! to an instance. The engine only dispatches in declaration order; what a
//! policy does lives in its own file behind the [`Policy`] trait, and
//! policies never see pingora — only a [`RequestView`].

mod firewall;
mod ip;
pub mod jwtauth;
pub mod keyauth;
pub mod logging;
pub mod matcher;
pub mod openapi;
mod ratelimit;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use prometheus_client::metrics::counter::Counter;

use crate::errors::GatewayError;
use crate::keys::Keys;
use crate::config::policy::{ActionSpec, PolicySpec};
use matcher::Condition;

/// What a policy sees of a request.
pub struct RequestView<'a> {
    pub head: &'a http::request::Parts,
    /// The client IP of SPEC §4 (trusted-proxy rule applied).
    pub client_ip: Option<IpAddr>,
    /// The whole request body, when a policy that needs it (`openapi`) made
    /// the proxy buffer it; see [`PolicyChain::evaluate_from`].
    pub body: Option<&'a Bytes>,
}

impl<'a> RequestView<'a> {
    /// A view of the head only (no buffered body).
    pub fn new(head: &'a http::request::Parts, client_ip: Option<IpAddr>) -> Self {
        Self { head, client_ip, body: None }
    }
}

/// The authenticated caller, set by the first successful auth policy and
/// forwarded as `X-Unkey-Principal`.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    /// The Principal v1 JSON of SPEC §4, serialised once.
    pub json: String,
}

/// What policies leave behind for the rest of the request.
#[derive(Debug, Default)]
pub struct PolicyState {
    pub principal: Option<Principal>,
    /// Every rate limit evaluated for this request (policy, key and identity
    /// limits); the response gets the most restrictive one's headers.
    pub limits: Vec<crate::ratelimit::Decision>,
    /// Armed by a `logging` policy: the record this request will write.
    pub log: Option<logging::LogCapture>,
    /// Set by `keyauth` with `strip_credential: true`: where the key was, so
    /// it is removed before the request goes to the instance (SPEC §9.14).
    pub strip_credential: Option<keyauth::CredentialLocation>,
}

/// A policy's verdict on one request.
pub enum Outcome {
    Continue,
    Reject(GatewayError),
}

/// One kind of policy action.
pub trait Policy {
    /// Runs the action on a request whose match expressions all matched.
    fn evaluate(
        &self,
        request: &RequestView<'_>,
        state: &mut PolicyState,
    ) -> impl std::future::Future<Output = Outcome> + Send;
}

/// The actions of SPEC §3, compiled. Adding a policy = a file + a variant here.
#[derive(Debug)]
enum Action {
    Firewall(firewall::Firewall),
    Ip(ip::IpRules),
    Logging(logging::Logging),
    KeyAuth(keyauth::KeyAuth),
    Openapi(openapi::OpenapiPolicy),
    JwtAuth(jwtauth::JwtAuth),
    RateLimit(ratelimit::RateLimit),
}

impl Action {
    fn kind(&self) -> &'static str {
        match self {
            Self::Firewall(_) => "firewall",
            Self::Ip(_) => "ip",
            Self::Logging(_) => "logging",
            Self::KeyAuth(_) => "keyauth",
            Self::Openapi(_) => "openapi",
            Self::JwtAuth(_) => "jwtauth",
            Self::RateLimit(_) => "ratelimit",
        }
    }

    /// Whether the action reads the request body (which the proxy then buffers).
    fn needs_body(&self) -> bool {
        matches!(self, Self::Openapi(_))
    }

    /// Auth actions are skipped once a Principal is set.
    fn is_auth(&self) -> bool {
        matches!(self, Self::KeyAuth(_) | Self::JwtAuth(_))
    }

    async fn evaluate(&self, request: &RequestView<'_>, state: &mut PolicyState) -> Outcome {
        match self {
            Self::Firewall(p) => p.evaluate(request, state).await,
            Self::Ip(p) => p.evaluate(request, state).await,
            Self::Logging(p) => p.evaluate(request, state).await,
            Self::KeyAuth(p) => p.evaluate(request, state).await,
            Self::Openapi(p) => p.evaluate(request, state).await,
            Self::JwtAuth(p) => p.evaluate(request, state).await,
            Self::RateLimit(p) => p.evaluate(request, state).await,
        }
    }
}

#[derive(Debug)]
struct CompiledPolicy {
    conditions: Vec<Condition>,
    action: Action,
    /// `keygate_policy_decisions_total{policy_type, decision}`, resolved at compile time.
    allowed: Counter,
    denied: Counter,
}

/// A deployment's enabled policies, in declaration order.
#[derive(Debug, Default)]
pub struct PolicyChain {
    policies: Vec<CompiledPolicy>,
}

/// A compile error: `(field path below the chain, message)`.
pub type CompileError = (String, String);

/// What a deployment offers its policies at compile time besides the keys.
#[derive(Debug, Clone, Copy)]
pub struct DeploymentResources<'a> {
    /// The deployment's `openapi:` spec, for `openapi` policies.
    pub openapi: Option<&'a Arc<crate::openapi::SpecSlot>>,
    /// Where relative paths in policies resolve (the config file's directory).
    pub base_dir: &'a Path,
    /// The deployment's id: rate-limit buckets are per deployment.
    pub deployment: &'a str,
}

impl Default for DeploymentResources<'_> {
    fn default() -> Self {
        Self {
            openapi: None,
            base_dir: Path::new("."),
            deployment: "",
        }
    }
}

/// Where [`PolicyChain::evaluate_from`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The chain ran to its end: the request may go on.
    Done,
    /// The policy at this index needs the request body: buffer it, put it in
    /// the view and resume from here.
    NeedsBody(usize),
}

impl PolicyChain {
    /// Compiles `specs`; errors name the field below `policies`, e.g.
    /// `[2].match[0].path.regex`. `keys` is what `keyauth` verifies against.
    pub fn compile(specs: &[PolicySpec], keys: &Keys) -> Result<Self, CompileError> {
        Self::compile_for(specs, keys, DeploymentResources::default())
    }

    /// [`Self::compile`] with the deployment's own resources (its OpenAPI spec, base directory).
    pub fn compile_for(specs: &[PolicySpec], keys: &Keys, resources: DeploymentResources<'_>) -> Result<Self, CompileError> {
        let mut ids = HashSet::new();
        let mut policies = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if !ids.insert(spec.id.as_str()) {
                return Err((format!("[{i}].id"), format!("duplicate policy id {:?} in this deployment", spec.id)));
            }
            let action = compile_action(spec, keys, resources).map_err(|(field, m)| (format!("[{i}]{field}"), m))?;
            let conditions = spec
                .matches
                .iter()
                .enumerate()
                .map(|(j, m)| Condition::compile(m).map_err(|(field, msg)| (join(&format!("[{i}].match[{j}]"), &field), msg)))
                .collect::<Result<Vec<_>, _>>()?;
            if !spec.enabled {
                continue;
            }
            let decisions = crate::telemetry::metrics();
            policies.push(CompiledPolicy {
                allowed: decisions.policy_decision(action.kind(), "allow"),
                denied: decisions.policy_decision(action.kind(), "deny"),
                conditions,
                action,
            });
        }
        Ok(Self { policies })
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Runs the chain on a complete view (a policy that reads the body gets
    /// `request.body` as it is); the first rejection ends it.
    pub async fn evaluate(&self, request: &RequestView<'_>, state: &mut PolicyState) -> Result<(), GatewayError> {
        self.run(0, request, state, false).await.map(|_| ())
    }

    /// Runs the chain from policy `start`, stopping before a matching policy
    /// that needs the body while `request.body` is `None` — so policies in
    /// front of it (auth) can reject before anything is buffered.
    pub async fn evaluate_from(
        &self,
        start: usize,
        request: &RequestView<'_>,
        state: &mut PolicyState,
    ) -> Result<Progress, GatewayError> {
        self.run(start, request, state, request.body.is_none()).await
    }

    async fn run(
        &self,
        start: usize,
        request: &RequestView<'_>,
        state: &mut PolicyState,
        stop_for_body: bool,
    ) -> Result<Progress, GatewayError> {
        for (index, policy) in self.policies.iter().enumerate().skip(start) {
            if !policy.conditions.iter().all(|c| c.matches(request)) {
                continue;
            }
            if policy.action.is_auth() && state.principal.is_some() {
                continue;
            }
            if stop_for_body && policy.action.needs_body() {
                return Ok(Progress::NeedsBody(index));
            }
            match policy.action.evaluate(request, state).await {
                Outcome::Continue => {
                    policy.allowed.inc();
                }
                Outcome::Reject(error) => {
                    policy.denied.inc();
                    return Err(error);
                }
            }
        }
        Ok(Progress::Done)
    }
}

/// Errors name the field below the policy (`.keyauth.permission_query`) or the policy itself (``).
fn compile_action(spec: &PolicySpec, keys: &Keys, resources: DeploymentResources<'_>) -> Result<Action, CompileError> {
    Ok(match spec.action().map_err(|m| (String::new(), m))? {
        ActionSpec::Firewall(_) => Action::Firewall(firewall::Firewall),
        ActionSpec::Ip(ip) => Action::Ip(ip::IpRules::compile(ip)),
        ActionSpec::Logging(spec) => Action::Logging(logging::Logging::compile(spec)),
        ActionSpec::KeyAuth(spec) => Action::KeyAuth(
            keyauth::KeyAuth::compile(spec, keys).map_err(|(field, m)| (format!(".keyauth{field}"), m))?,
        ),
        ActionSpec::Openapi(spec) => Action::Openapi(
            openapi::OpenapiPolicy::compile(spec, resources.openapi).map_err(|m| (".openapi".to_string(), m))?,
        ),
        ActionSpec::JwtAuth(spec) => Action::JwtAuth(
            jwtauth::JwtAuth::compile(spec, resources.base_dir).map_err(|(field, m)| (format!(".jwtauth{field}"), m))?,
        ),
        ActionSpec::RateLimit(rate) => Action::RateLimit(
            ratelimit::RateLimit::compile(rate, resources.deployment, &spec.id, keys.service.limiter())
                .map_err(|(field, m)| (format!(".ratelimit{field}"), m))?,
        ),
    })
}

/// `head.tail`, or `head` when `tail` is empty: builds compile-error field paths.
pub(crate) fn join(head: &str, tail: &str) -> String {
    if tail.is_empty() {
        head.to_string()
    } else {
        format!("{head}.{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorCode;

    fn chain(yaml: &str) -> Result<PolicyChain, CompileError> {
        let specs: Vec<PolicySpec> = serde_saphyr::from_str(yaml).unwrap();
        let keys = Keys {
            service: crate::keys::KeyService::in_memory().unwrap(),
            statics: Default::default(),
        };
        PolicyChain::compile(&specs, &keys)
    }

    async fn run(chain: &PolicyChain, target: &str, ip: &str) -> Result<(), ErrorCode> {
        let head = http::Request::get(target).body(()).unwrap().into_parts().0;
        let view = RequestView::new(&head, Some(ip.parse().unwrap()));
        chain.evaluate(&view, &mut PolicyState::default()).await.map_err(|e| e.code)
    }

    #[tokio::test]
    async fn order_enabled_and_match() {
        let c = chain(
            "- {id: off, enabled: false, firewall: {action: deny}}\n\
             - {id: admin, match: [{path: {prefix: /admin}}], firewall: {action: deny}}\n\
             - {id: office, ip: {allow: [10.0.0.0/8]}}\n",
        )
        .unwrap();
        assert_eq!(run(&c, "/x", "10.1.1.1").await, Ok(()));
        assert_eq!(run(&c, "/admin/x", "10.1.1.1").await, Err(ErrorCode::FirewallDenied));
        assert_eq!(run(&c, "/x", "192.168.0.1").await, Err(ErrorCode::FirewallDenied));
    }

    #[test]
    fn compile_errors() {
        let err = |yaml: &str| chain(yaml).unwrap_err();
        assert_eq!(err("- {id: a, firewall: {action: deny}}\n- {id: a, firewall: {action: deny}}").0, "[1].id");
        assert!(err("- {id: a}").1.contains("exactly one action"));
        assert!(err("- {id: a, firewall: {action: deny}, ip: {deny: ['::1']}}").1.contains("has 2"));
        assert_eq!(err("- {id: a, match: [{path: {regex: '('}}], firewall: {action: deny}}").0, "[0].match[0].path.regex");
        assert_eq!(err("- {id: a, ratelimit: {limit: 0, window: 1s}}").0, "[0].ratelimit.limit");
        assert!(err("- {id: a, jwtauth: {}}").1.contains("exactly one of jwks_uri"));
        assert_eq!(err("- {id: a, jwtauth: {jwks_uri: 'https://idp/jwks', algorithms: [HS256]}}").0, "[0].jwtauth.algorithms[0]");
        assert_eq!(err("- {id: a, jwtauth: {jwks_uri: 'https://idp/jwks', algorithms: [none]}}").0, "[0].jwtauth.algorithms[0]");
        assert_eq!(err("- {id: a, jwtauth: {public_key_pem: 'nope'}}").0, "[0].jwtauth.public_key_pem");
        assert_eq!(err("- {id: a, openapi: {}}").0, "[0].openapi");
        assert_eq!(err("- {id: a, keyauth: {keyspaces: [nope]}}").0, "[0].keyauth.keyspaces[0]");
    }
}
