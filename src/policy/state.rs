//! What the policies that ran leave behind for the rest of the request, and
//! the hooks the proxy calls as the request goes on. The proxy only ever
//! talks to [`PolicyState`]: it never names a policy type.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderName;
use smallvec::SmallVec;

use super::logging::LogCapture;
use crate::errors::ErrorCode;
use crate::ratelimit::Decision;
use crate::telemetry::traces::{SpanParent, TraceId};

/// The authenticated caller, set by the first successful auth policy and
/// forwarded as `X-Unkey-Principal`.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    /// The Principal v1 JSON, serialised once, as the header value it is
    /// forwarded as (see `keys::principal::header_json`).
    pub json: http::HeaderValue,
}

/// Where a verified credential was, so it can be removed before the request
/// goes to the instance (`keyauth.strip_credential`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Header(HeaderName),
    Query(String),
}

/// What the proxy knows once the response is done, for the policies that
/// record requests.
pub struct RequestSummary<'a> {
    pub request: &'a http::request::Parts,
    pub request_id: &'a str,
    /// The request's trace, when tracing is on.
    pub trace_id: Option<TraceId>,
    pub client_ip: Option<IpAddr>,
    pub deployment_id: Option<&'a str>,
    /// Formatted only by a policy that records it (not on every request).
    pub instance: Option<&'a dyn std::fmt::Display>,
    pub status: u16,
    pub response_headers: Option<&'a http::HeaderMap>,
    pub total: Duration,
    pub instance_time: Duration,
}

/// One request's policy state.
#[derive(Debug, Default)]
pub struct PolicyState {
    pub(super) principal: Option<Principal>,
    /// Every rate limit evaluated for this request (policy, key and identity
    /// limits); the response gets the most restrictive one's headers. A
    /// request meets one or two: kept inline, not allocated per request.
    pub(super) limits: SmallVec<[Decision; 2]>,
    /// Armed by a `logging` policy: the record this request will write.
    pub(super) log: Option<LogCapture>,
    pub(super) credential: Option<Credential>,
    /// Where the spans of the policies that run hang, when the request is traced.
    pub(super) trace: Option<SpanParent>,
}

impl PolicyState {
    /// The caller, once an auth policy accepted it.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Gives each policy that runs from now on a span under `parent`.
    pub fn trace_policies(&mut self, parent: SpanParent) {
        self.trace = Some(parent);
    }

    /// The credential to remove before forwarding, if a policy asked for it.
    pub fn credential_to_strip(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    /// Called with every chunk of the request body on its way upstream.
    pub fn on_request_body(&mut self, chunk: &[u8]) {
        if let Some(log) = self.log.as_mut() {
            log.on_request_body(chunk);
        }
    }

    /// Called with every chunk of the response body (also of the gateway's
    /// own answers).
    pub fn on_response_body(&mut self, chunk: &[u8]) {
        if let Some(log) = self.log.as_mut() {
            log.on_response_body(chunk);
        }
    }

    /// The fields the response gets from the policies that ran, to `field`:
    /// the rate-limit fields of the most restrictive limit (`Retry-After`
    /// when the request was refused with `rate_limited`).
    pub fn response_fields(
        &self,
        refused_with: Option<ErrorCode>,
        field: impl FnMut(&'static pingora_http::StaticHeaderName, &[u8]),
    ) {
        if self.limits.is_empty() {
            return;
        }
        let rate_limited = refused_with == Some(ErrorCode::RateLimited);
        crate::ratelimit::fields(&self.limits, rate_limited.then(crate::clock::now_ms), field);
    }

    /// Whether [`Self::response_fields`] sets a field named `name` (any case).
    pub fn sets_response_field(&self, refused_with: Option<ErrorCode>, name: &[u8]) -> bool {
        let rate_limited = refused_with == Some(ErrorCode::RateLimited);
        crate::ratelimit::sets_field(&self.limits, rate_limited, name)
    }

    /// Called once, when the response is done.
    pub fn finish(&mut self, summary: &RequestSummary<'_>) {
        if let Some(log) = self.log.take() {
            log.finish(summary);
        }
    }
}
