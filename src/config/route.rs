//! `routes:`: which hosts, paths and requests reach which deployments, and
//! what happens to a request on the way (header and URL filters, redirects,
//! a per-route timeout). What an operator writes; checked and compiled into
//! the routing table at load.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::policy::MatchSpec;
use super::units::HumanDuration;

/// A route: requests for `host` (and its path, and `match`) go to
/// `deployment`, or are split over weighted `backends`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "anyOf" = [{"required": ["deployment"]}, {"required": ["backends"]}, {"required": ["filters"], "properties": {"filters": {"contains": {"required": ["redirect"]}}}}],
    "not" = {"anyOf": [{"required": ["deployment", "backends"]}, {"required": ["path_prefix", "path"]}]},
))]
pub struct RouteSpec {
    /// An exact hostname, or `*.` plus a parent (one extra label); no port.
    pub host: String,
    /// Must start with `/`; matched on segment boundaries; default `/`.
    /// Shorthand for `path: {prefix: ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// How the path matches: exactly one of `exact`, `prefix`, `regex`
    /// (instead of `path_prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<RoutePathSpec>,
    /// Match expressions on `method`, `header` and `query`, all of which
    /// must match (AND); a route whose expressions fail lets the next
    /// candidate route try.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<MatchSpec>,
    /// A deployment `id` of this file (same as `backends: [{deployment, weight: 1}]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// A weighted split over deployments (instead of `deployment`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendSpec>,
    /// Remove the matched prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Applied in order, after policies, before forwarding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSpec>,
    /// The whole request's timeout on this route (instead of `limits.request_timeout`); then 504.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

/// A route's path test: exactly one of `exact`, `prefix`, `regex`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["exact"]}, {"required": ["prefix"]}, {"required": ["regex"]}]))]
pub struct RoutePathSpec {
    /// This path only, byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The prefix and the paths below it, on segment boundaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A Rust `regex` searched in the path (write `^…$` to anchor); tried
    /// after every exact and prefix route of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// One weighted backend of a route.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// A deployment `id` of this file.
    pub deployment: String,
    /// The share of requests: `weight / sum of weights`; 0 = never.
    #[serde(default = "BackendSpec::default_weight")]
    pub weight: u32,
}

impl BackendSpec {
    fn default_weight() -> u32 {
        1
    }
}

/// One filter: exactly one of `request_headers`, `response_headers`, `rewrite`, `redirect`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["request_headers"]}, {"required": ["response_headers"]},
    {"required": ["rewrite"]}, {"required": ["redirect"]},
]))]
pub struct FilterSpec {
    /// Edits the request headers the instance receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderFilterSpec>,
    /// Edits the response headers the client receives from the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderFilterSpec>,
    /// Changes the Host and path the instance receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<RewriteSpec>,
    /// Answers with a redirect; the request never reaches an instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectSpec>,
}

/// Header edits; a header may be named in only one of `set`, `add`, `remove`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderFilterSpec {
    /// Replace every value of the header with this one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append this value, keeping the ones already there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove the header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// `rewrite:` what the instance receives instead of what the client sent.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RewriteSpec {
    /// The `Host` header sent to the instance (`X-Forwarded-Host` keeps the original).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// A new path; the query is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifierSpec>,
}

/// A path change: exactly one of `replace_prefix` (of the route's matched
/// prefix; needs a prefix route) and `replace_full`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["replace_prefix"]}, {"required": ["replace_full"]}]))]
pub struct PathModifierSpec {
    /// Replaces the route's matched path prefix (`/v1/x` with prefix `/v1`
    /// and `/api` → `/api/x`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix: Option<String>,
    /// Replaces the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full: Option<String>,
}

/// `redirect:` the gateway answers with a `Location`; unset parts keep the
/// request's own (the query always).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectSpec {
    /// `http` or `https`; default: the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<RedirectScheme>,
    /// Default: the request's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Default: the scheme's own port when `scheme` is set, else the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A new path; default: the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifierSpec>,
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "RedirectSpec::default_status")]
    pub status: u16,
}

impl RedirectSpec {
    fn default_status() -> u16 {
        302
    }
}

/// The scheme a redirect names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedirectScheme {
    Http,
    Https,
}
