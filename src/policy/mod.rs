//! Policy chains: each deployment's ordered policies, compiled at load into
//! a [`PolicyChain`] and evaluated per request before any byte goes to an
//! instance. The engine only dispatches in declaration order; what a policy
//! does lives in its own file behind the [`Policy`] trait, and policies never
//! see pingora — only a [`RequestView`] and the request's [`PolicyState`].
//!
//! Adding a policy type: its `*Spec` in `config::policy` (one field of
//! `PolicySpec` and one `ActionSpec` variant), a file here implementing
//! [`Policy`], and one line in the [`actions!`] list below.

mod firewall;
mod ip;
pub mod jwtauth;
mod keyauth;
mod logging;
pub(crate) mod matcher;
mod openapi;
mod ratelimit;
pub mod redact;
mod state;

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;

pub use state::{Credential, PolicyState, Principal, RequestSummary};

use crate::config::policy::{ActionSpec, PolicySpec};
use crate::errors::GatewayError;
use crate::http_client::HttpClient;
use crate::keys::Keys;
use crate::openapi::SpecSlot;
use crate::ratelimit::RateLimiter;
use crate::telemetry::request_log::RequestLog;
use matcher::Condition;
use redact::CredentialNames;

/// What a policy sees of a request.
pub struct RequestView<'a> {
    pub head: &'a http::request::Parts,
    /// The client IP (the trusted-proxy rule applied).
    pub client_ip: Option<IpAddr>,
    /// When the gateway received the request: what the policies' clocks
    /// (key expiry, cached keys, rate-limit windows) read, so that a
    /// request reads the clock once, not once per policy.
    pub received: Instant,
    /// The whole request body, when a policy that needs it (`openapi`) made
    /// the proxy buffer it; see [`PolicyChain::evaluate_from`].
    pub body: Option<&'a Bytes>,
}

impl<'a> RequestView<'a> {
    /// A view of the head only (no buffered body).
    pub fn new(head: &'a http::request::Parts, client_ip: Option<IpAddr>, received: Instant) -> Self {
        Self {
            head,
            client_ip,
            received,
            body: None,
        }
    }
}

/// A policy's verdict on one request.
pub enum Outcome {
    Continue,
    Reject(GatewayError),
}

/// A compile error: `(field path, message)`; the path is below the policy's
/// action key (`.permission_query`) or empty for the action itself.
pub type CompileError = (String, String);

/// What a deployment offers its policies at compile time.
#[derive(Debug, Clone)]
pub struct Resources<'a> {
    /// What `keyauth` verifies against (the key service and static keys).
    pub keys: Keys,
    /// Where every limit counts.
    pub limiter: RateLimiter,
    /// Where `logging` policies write.
    pub request_log: RequestLog,
    /// How `jwtauth` fetches key sets.
    pub http: HttpClient,
    /// The deployment's `openapi:` spec, for `openapi` policies.
    pub openapi: Option<&'a Arc<SpecSlot>>,
    /// Where relative paths in policies resolve (the config file's directory).
    pub base_dir: &'a Path,
    /// The deployment's id: rate-limit buckets are per deployment and policy.
    pub deployment: &'a str,
    /// The policy's own id.
    pub policy_id: &'a str,
}

/// One kind of policy action. Its contract with the chain:
/// - it is built once from its spec at load ([`Policy::from_spec`]; an
///   error there rejects the whole config, the old one keeps serving);
/// - [`Policy::evaluate`] runs per request, only when every match
///   expression of the policy matched, in declaration order; `Reject` ends
///   the chain and the gateway answers with that error;
/// - it keeps what the rest of the request needs in [`PolicyState`].
pub trait Policy: Sized {
    /// What the operator writes under the action key.
    type Spec;
    /// The action key (`keyauth`): the `policy_type` of metrics.
    const KIND: &'static str;
    /// Sets the Principal: skipped once an earlier auth policy set one.
    const AUTHENTICATES: bool = false;
    /// Reads the whole request body: the proxy buffers it before running it.
    const READS_BODY: bool = false;

    fn from_spec(spec: &Self::Spec, resources: &Resources<'_>) -> Result<Self, CompileError>;

    fn evaluate(&self, request: &RequestView<'_>, state: &mut PolicyState) -> impl Future<Output = Outcome> + Send;
}

/// Declares the policy types: `Variant(module::Type)`, where `Variant` is
/// also the [`ActionSpec`] variant it is compiled from.
macro_rules! actions {
    ($($variant:ident($module:ident::$policy:ident)),+ $(,)?) => {
        /// A compiled policy action, one variant per policy type.
        #[derive(Debug)]
        enum Action {
            $($variant($module::$policy)),+
        }

        impl Action {
            fn compile(spec: ActionSpec<'_>, resources: &Resources<'_>) -> Result<Self, CompileError> {
                match spec {
                    $(ActionSpec::$variant(spec) => $module::$policy::from_spec(spec, resources)
                        .map(Self::$variant)
                        .map_err(|(field, message)| (format!(".{}{field}", <$module::$policy as Policy>::KIND), message)),)+
                }
            }

            fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$module::$policy as Policy>::KIND,)+
                }
            }

            fn authenticates(&self) -> bool {
                match self {
                    $(Self::$variant(_) => <$module::$policy as Policy>::AUTHENTICATES,)+
                }
            }

            fn reads_body(&self) -> bool {
                match self {
                    $(Self::$variant(_) => <$module::$policy as Policy>::READS_BODY,)+
                }
            }

            async fn evaluate(&self, request: &RequestView<'_>, state: &mut PolicyState) -> Outcome {
                match self {
                    $(Self::$variant(policy) => policy.evaluate(request, state).await,)+
                }
            }
        }
    };
}

actions! {
    Firewall(firewall::Firewall),
    Ip(ip::IpRules),
    Logging(logging::Logging),
    KeyAuth(keyauth::KeyAuth),
    Openapi(openapi::OpenapiPolicy),
    JwtAuth(jwtauth::JwtAuth),
    RateLimit(ratelimit::RateLimit),
}

#[derive(Debug)]
struct CompiledPolicy {
    /// The policy's `id`: names its trace span.
    id: Box<str>,
    conditions: Vec<Condition>,
    action: Action,
    /// `keygate_policy_decisions_total{policy_type, decision}`, resolved at compile time.
    allowed: Counter,
    denied: Counter,
}

/// A deployment's enabled policies, in declaration order. Clones share the
/// compiled policies (a named policy set serves several deployments).
#[derive(Debug, Clone, Default)]
pub struct PolicyChain {
    policies: Arc<[CompiledPolicy]>,
    /// Where this deployment's requests carry credentials (never logged).
    credentials: CredentialNames,
    /// A `logging` policy may record bodies as they pass.
    records_bodies: bool,
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
    /// Compiles `specs` with the deployment's `resources` (its `policy_id`
    /// is set per policy); errors name the field below `policies`, e.g.
    /// `[2].match[0].path.regex`.
    pub fn compile(specs: &[PolicySpec], resources: &Resources<'_>) -> Result<Self, CompileError> {
        let mut ids = HashSet::new();
        let mut policies = Vec::with_capacity(specs.len());
        let credentials = CredentialNames::of_chain(specs);
        for (i, spec) in specs.iter().enumerate() {
            if !ids.insert(spec.id.as_str()) {
                return Err((
                    format!("[{i}].id"),
                    format!("duplicate policy id {:?} in this deployment", spec.id),
                ));
            }
            let action_spec = spec.action().map_err(|m| (format!("[{i}]"), m))?;
            let resources = Resources {
                policy_id: &spec.id,
                ..resources.clone()
            };
            let action =
                match Action::compile(action_spec, &resources).map_err(|(field, m)| (format!("[{i}]{field}"), m))? {
                    Action::Logging(logging) => Action::Logging(logging.redacting(&credentials)),
                    action => action,
                };
            let conditions = spec
                .matches
                .iter()
                .enumerate()
                .map(|(j, m)| {
                    Condition::compile(m).map_err(|(field, msg)| (join(&format!("[{i}].match[{j}]"), &field), msg))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if !spec.enabled {
                continue;
            }
            let decisions = crate::telemetry::metrics();
            policies.push(CompiledPolicy {
                id: spec.id.as_str().into(),
                allowed: decisions.policy_decision(action.kind(), "allow"),
                denied: decisions.policy_decision(action.kind(), "deny"),
                conditions,
                action,
            });
        }
        let records_bodies = policies.iter().any(|p| matches!(p.action, Action::Logging(_)));
        Ok(Self {
            policies: policies.into(),
            credentials,
            records_bodies,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// `(id, type)` of each policy, in order: what operators see of the chain.
    pub fn summary(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.policies.iter().map(|p| (&*p.id, p.action.kind()))
    }

    /// Whether a policy of the chain (`logging`) may record the bodies as
    /// they pass (so a path that relays bytes unparsed must not carry them).
    pub fn records_bodies(&self) -> bool {
        self.records_bodies
    }

    /// Where this deployment's requests carry credentials.
    pub fn credentials(&self) -> &CredentialNames {
        &self.credentials
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
            if !policy.conditions.iter().all(|c| c.matches(request.head)) {
                continue;
            }
            if policy.action.authenticates() && state.principal.is_some() {
                continue;
            }
            if stop_for_body && policy.action.reads_body() {
                return Ok(Progress::NeedsBody(index));
            }
            // Tracing off: `trace` is None and this costs nothing (no allocation, no clock).
            let span = state
                .trace
                .as_ref()
                .map(|parent| parent.policy_span(&policy.id, policy.action.kind()));
            match policy.action.evaluate(request, state).await {
                Outcome::Continue => {
                    policy.allowed.inc();
                    if let Some(span) = span {
                        span.end("allow", None);
                    }
                }
                Outcome::Reject(error) => {
                    policy.denied.inc();
                    if let Some(span) = span {
                        span.end("deny", Some(error.code.code()));
                    }
                    return Err(error);
                }
            }
        }
        Ok(Progress::Done)
    }
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
        let resources = Resources {
            limiter: keys.service.limiter().clone(),
            request_log: RequestLog::default(),
            http: HttpClient::new(&[]).unwrap(),
            openapi: None,
            base_dir: Path::new("."),
            deployment: "",
            policy_id: "",
            keys,
        };
        PolicyChain::compile(&specs, &resources)
    }

    async fn run(chain: &PolicyChain, target: &str, ip: &str) -> Result<(), ErrorCode> {
        let head = http::Request::get(target).body(()).unwrap().into_parts().0;
        let view = RequestView::new(&head, Some(ip.parse().unwrap()), Instant::now());
        chain
            .evaluate(&view, &mut PolicyState::default())
            .await
            .map_err(|e| e.code)
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
        assert_eq!(
            err("- {id: a, firewall: {action: deny}}\n- {id: a, firewall: {action: deny}}").0,
            "[1].id"
        );
        assert!(err("- {id: a}").1.contains("exactly one action"));
        assert!(err("- {id: a, firewall: {action: deny}, ip: {deny: ['::1']}}")
            .1
            .contains("has 2"));
        assert_eq!(
            err("- {id: a, match: [{path: {regex: '('}}], firewall: {action: deny}}").0,
            "[0].match[0].path.regex"
        );
        assert_eq!(
            err("- {id: a, ratelimit: {limit: 0, window: 1s}}").0,
            "[0].ratelimit.limit"
        );
        assert!(err("- {id: a, jwtauth: {}}").1.contains("exactly one of jwks_uri"));
        assert_eq!(
            err("- {id: a, jwtauth: {jwks_uri: 'https://idp/jwks', algorithms: [HS256]}}").0,
            "[0].jwtauth.algorithms[0]"
        );
        assert_eq!(
            err("- {id: a, jwtauth: {jwks_uri: 'https://idp/jwks', algorithms: [none]}}").0,
            "[0].jwtauth.algorithms[0]"
        );
        assert_eq!(
            err("- {id: a, jwtauth: {public_key_pem: 'nope'}}").0,
            "[0].jwtauth.public_key_pem"
        );
        assert_eq!(err("- {id: a, openapi: {}}").0, "[0].openapi");
        assert_eq!(
            err("- {id: a, keyauth: {keyspaces: [nope]}}").0,
            "[0].keyauth.keyspaces[0]"
        );
    }
}
