//! `ratelimit`: a sliding-window limit per bucket, the
//! bucket made of 1–5 identifier parts read from the request — client IP, a
//! header, the authenticated subject, the path, a field of the Principal.
//! A missing part is `unknown`; parts are escaped so they never run into
//! each other. Buckets are per deployment and policy, so two policies (or
//! two deployments) never share counts by accident. Overrides set through
//! the admin API with the policy's id as namespace change the limit for the
//! identifiers they match (the parts joined by `:`).

use std::fmt::Write as _;
use std::net::IpAddr;

use http::HeaderName;
use serde_json::Value;

use super::{CompileError, Outcome, Policy, PolicyState, RequestView, Resources};
use crate::config::policy::{IdentifierSpec, RateLimitSpec};
use crate::errors::ErrorCode;
use crate::net::{push_ipv4, IpText};
use crate::ratelimit::{identifier_of, push_part, window_ms, LimitRequest, RateLimiter};

/// The most identifier parts one bucket key may have.
const MAX_PARTS: usize = 5;
/// The value of a part the request does not have.
const UNKNOWN: &str = "unknown";
/// A longer bucket key (long header values) is replaced by the policy prefix,
/// `#` and its SHA-256, so memory per bucket stays bounded whatever clients
/// send. Parts always follow the prefix after a `:`, so no set of parts can
/// spell a digested key.
const MAX_BUCKET_BYTES: usize = 256;

#[derive(Debug)]
enum Part {
    RemoteIp,
    Header(HeaderName),
    Subject,
    Path,
    /// A dotted path into the Principal JSON, split at load.
    PrincipalField(Vec<String>),
}

#[derive(Debug)]
pub struct RateLimit {
    limiter: RateLimiter,
    /// `policy:<deployment>:<policy id>`, escaped.
    prefix: String,
    /// The policy id: the override namespace.
    namespace: Box<str>,
    limit: u64,
    window_ms: u64,
    parts: Vec<Part>,
}

impl RateLimit {
    /// A limit counted in `limiter`, its buckets named after `deployment` and `policy_id`.
    fn new(
        spec: &RateLimitSpec,
        deployment: &str,
        policy_id: &str,
        limiter: &RateLimiter,
    ) -> Result<Self, CompileError> {
        if spec.limit == 0 {
            return Err((".limit".into(), "must be at least 1".into()));
        }
        if spec.window.0.is_zero() {
            return Err((".window".into(), "must be longer than 0".into()));
        }
        let parts = match &spec.identifiers {
            None => vec![Part::RemoteIp],
            Some(list) if list.is_empty() || list.len() > MAX_PARTS => {
                return Err((".identifiers".into(), format!("name 1 to {MAX_PARTS} identifiers")))
            }
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, part)| compile_part(part).map_err(|m| (format!(".identifiers[{i}]"), m)))
                .collect::<Result<_, _>>()?,
        };
        let mut prefix = String::from("policy");
        push_part(&mut prefix, deployment);
        push_part(&mut prefix, policy_id);
        Ok(Self {
            limiter: limiter.clone(),
            prefix,
            namespace: policy_id.into(),
            limit: spec.limit,
            window_ms: window_ms(spec.window.0),
            parts,
        })
    }

    /// The request's bucket key.
    fn bucket(&self, request: &RequestView<'_>, state: &PolicyState) -> String {
        let mut bucket = String::with_capacity(self.prefix.len() + 64);
        bucket.push_str(&self.prefix);
        let mut principal: Option<Option<Value>> = None;
        let mut scratch = String::new();
        let mut ip_text;
        for part in &self.parts {
            scratch.clear();
            let value: &str = match part {
                Part::RemoteIp => match request.client_ip {
                    // Digits and dots, nothing to escape: written straight in.
                    Some(IpAddr::V4(v4)) => {
                        bucket.push(':');
                        push_ipv4(&mut bucket, v4);
                        continue;
                    }
                    Some(ip) => {
                        ip_text = IpText::of(ip);
                        ip_text.as_str()
                    }
                    None => UNKNOWN,
                },
                Part::Header(name) => match request.head.headers.get(name) {
                    Some(value) => match value.to_str() {
                        Ok(text) => text,
                        Err(_) => {
                            scratch.push_str(&String::from_utf8_lossy(value.as_bytes()));
                            &scratch
                        }
                    },
                    None => UNKNOWN,
                },
                Part::Subject => state.principal().map_or(UNKNOWN, |p| p.subject.as_str()),
                Part::Path => request.head.uri.path(),
                Part::PrincipalField(path) => {
                    // Parsed at most once per request, and only by a policy that reads a field.
                    let parsed = principal.get_or_insert_with(|| {
                        state
                            .principal()
                            .and_then(|p| serde_json::from_slice(p.json.as_bytes()).ok())
                    });
                    match parsed.as_ref().and_then(|json| field(json, path)) {
                        None | Some(Value::Null) => UNKNOWN,
                        Some(Value::String(text)) => {
                            scratch.push_str(text);
                            &scratch
                        }
                        Some(other) => {
                            let _ = write!(scratch, "{other}");
                            &scratch
                        }
                    }
                }
            };
            push_part(&mut bucket, value);
        }
        if bucket.len() > MAX_BUCKET_BYTES {
            let digest = ring::digest::digest(&ring::digest::SHA256, bucket.as_bytes());
            bucket.truncate(self.prefix.len());
            bucket.push('#');
            for byte in digest.as_ref() {
                let _ = write!(bucket, "{byte:02x}");
            }
        }
        bucket
    }
}

fn compile_part(spec: &IdentifierSpec) -> Result<Part, String> {
    let mut found = Vec::new();
    if spec.remote_ip.is_some() {
        found.push(Part::RemoteIp);
    }
    if let Some(header) = &spec.header {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("invalid header name {:?}", header.name))?;
        found.push(Part::Header(name));
    }
    if spec.authenticated_subject.is_some() {
        found.push(Part::Subject);
    }
    if spec.path.is_some() {
        found.push(Part::Path);
    }
    if let Some(field) = &spec.principal_field {
        let segments: Vec<String> = field.path.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "principal_field.path {:?} must be dotted names, e.g. source.key.meta.org_id",
                field.path
            ));
        }
        found.push(Part::PrincipalField(segments));
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(format!(
            "an identifier is exactly one of remote_ip, header, authenticated_subject, path or principal_field (this one has {n})"
        )),
    }
}

/// The value at a dotted path (object keys; array indexes as numbers).
fn field<'v>(json: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(json, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

impl Policy for RateLimit {
    type Spec = RateLimitSpec;
    const KIND: &'static str = "ratelimit";

    fn from_spec(spec: &RateLimitSpec, resources: &Resources<'_>) -> Result<Self, CompileError> {
        Self::new(spec, resources.deployment, resources.policy_id, &resources.limiter)
    }

    async fn evaluate(&self, request: &RequestView<'_>, state: &mut PolicyState) -> Outcome {
        let bucket = self.bucket(request, state);
        let overridden = self
            .limiter
            .overrides()
            .find(&self.namespace, || identifier_of(&bucket[self.prefix.len()..]));
        let limit = LimitRequest {
            bucket: &bucket,
            limit: overridden.as_ref().map_or(self.limit, |o| o.limit),
            window_ms: overridden.as_ref().map_or(self.window_ms, |o| o.duration_ms),
            cost: 1,
        };
        let now = crate::clock::unix_ms_at(request.received);
        self.limiter.prime(std::slice::from_ref(&limit), now).await;
        let decision = self.limiter.check_one(&limit, true, now);
        state.limits.push(decision);
        if decision.allowed {
            Outcome::Continue
        } else {
            Outcome::Reject(ErrorCode::RateLimited.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Principal;
    use std::time::Instant;

    fn policy(yaml: &str) -> RateLimit {
        let spec: RateLimitSpec = serde_saphyr::from_str(yaml).unwrap();
        RateLimit::new(&spec, "dep", "rl", &RateLimiter::default()).unwrap()
    }

    fn bucket_of(policy: &RateLimit, headers: &[(&str, &str)], principal: Option<&str>) -> String {
        let mut builder = http::Request::get("/a/b?q=1");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let head = builder.body(()).unwrap().into_parts().0;
        let view = RequestView::new(&head, Some("10.0.0.1".parse().unwrap()), Instant::now());
        let state = PolicyState {
            principal: principal.map(|json| Principal {
                subject: "user_1".into(),
                json: http::HeaderValue::from_str(json).unwrap(),
            }),
            ..Default::default()
        };
        policy.bucket(&view, &state)
    }

    #[test]
    fn every_identifier_kind_and_unknown() {
        let p = policy(
            "{limit: 1, window: 1s, identifiers: [remote_ip: {}, header: {name: X-T}, authenticated_subject: {}, path: {}, principal_field: {path: source.key.meta.org}]}",
        );
        let principal = r#"{"source":{"key":{"meta":{"org":"o:1"}}}}"#;
        assert_eq!(
            bucket_of(&p, &[("x-t", "t1")], Some(principal)),
            "policy:dep:rl:10.0.0.1:t1:user_1:/a/b:o\\:1"
        );
        assert_eq!(
            bucket_of(&p, &[], None),
            "policy:dep:rl:10.0.0.1:unknown:unknown:/a/b:unknown"
        );
        let numeric = policy("{limit: 1, window: 1s, identifiers: [principal_field: {path: a.n}]}");
        assert_eq!(bucket_of(&numeric, &[], Some(r#"{"a":{"n":42}}"#)), "policy:dep:rl:42");
    }

    #[test]
    fn long_keys_are_digested() {
        let p = policy("{limit: 1, window: 1s, identifiers: [header: {name: A}]}");
        let long = "x".repeat(10_000);
        let bucket = bucket_of(&p, &[("a", &long)], None);
        assert!(
            bucket.starts_with("policy:dep:rl#") && bucket.len() == "policy:dep:rl#".len() + 64,
            "{bucket}"
        );
        let other = bucket_of(&p, &[("a", &format!("{long}y"))], None);
        assert_ne!(bucket, other);
    }

    #[test]
    fn crafted_parts_never_collide() {
        let p = policy("{limit: 1, window: 1s, identifiers: [header: {name: A}, header: {name: B}]}");
        let one = bucket_of(&p, &[("a", "x:y"), ("b", "z")], None);
        let two = bucket_of(&p, &[("a", "x"), ("b", "y:z")], None);
        let three = bucket_of(&p, &[("a", "x\\"), ("b", ":y:z")], None);
        assert_ne!(one, two);
        assert_ne!(two, three);
        assert_ne!(one, three);
    }

    #[tokio::test]
    async fn overrides_of_the_policy_id_change_its_limit() {
        let limiter = RateLimiter::default();
        let spec: RateLimitSpec =
            serde_saphyr::from_str("{limit: 1, window: 60s, identifiers: [header: {name: A}]}").unwrap();
        let policy = RateLimit::new(&spec, "dep", "per_a", &limiter).unwrap();
        limiter.overrides().install(vec![crate::ratelimit::overrides::Override {
            id: "rlor_1".into(),
            namespace: "per_a".into(),
            identifier: "vip:*".into(),
            limit: 3,
            duration_ms: 60_000,
        }]);
        let admitted = |value: &'static str| {
            let policy = &policy;
            async move {
                let head = http::Request::get("/")
                    .header("a", value)
                    .body(())
                    .unwrap()
                    .into_parts()
                    .0;
                let view = RequestView::new(&head, None, Instant::now());
                matches!(
                    policy.evaluate(&view, &mut PolicyState::default()).await,
                    Outcome::Continue
                )
            }
        };
        for _ in 0..3 {
            assert!(
                admitted("vip:1").await,
                "the override's limit, matched on the raw identifier"
            );
        }
        assert!(!admitted("vip:1").await);
        assert!(admitted("other").await);
        assert!(!admitted("other").await, "the policy's own limit");
    }

    #[tokio::test]
    async fn windows_count_from_when_the_request_was_received() {
        let policy = policy("{limit: 1, window: 60s, identifiers: [remote_ip: {}]}");
        let head = http::Request::get("/").body(()).unwrap().into_parts().0;
        let admitted = |received: Instant| {
            let (policy, head) = (&policy, &head);
            async move {
                let view = RequestView::new(head, Some("10.0.0.1".parse().unwrap()), received);
                matches!(
                    policy.evaluate(&view, &mut PolicyState::default()).await,
                    Outcome::Continue
                )
            }
        };
        let now = Instant::now();
        let Some(two_windows_ago) = now.checked_sub(std::time::Duration::from_secs(120)) else {
            return; // a machine up for less than two minutes
        };
        assert!(admitted(two_windows_ago).await);
        assert!(!admitted(two_windows_ago).await, "the limit, in that window");
        assert!(admitted(now).await, "received two windows later: a fresh window");
    }

    #[test]
    fn compile_errors_name_the_field() {
        let err = |yaml: &str| {
            let spec: RateLimitSpec = serde_saphyr::from_str(yaml).unwrap();
            RateLimit::new(&spec, "d", "p", &RateLimiter::default()).unwrap_err().0
        };
        assert_eq!(err("{limit: 0, window: 1s}"), ".limit");
        assert_eq!(err("{limit: 1, window: 0s}"), ".window");
        assert_eq!(err("{limit: 1, window: 1s, identifiers: []}"), ".identifiers");
        assert_eq!(
            err("{limit: 1, window: 1s, identifiers: [{path: {}, remote_ip: {}}]}"),
            ".identifiers[0]"
        );
        assert_eq!(
            err("{limit: 1, window: 1s, identifiers: [principal_field: {path: 'a..b'}]}"),
            ".identifiers[0]"
        );
    }
}
