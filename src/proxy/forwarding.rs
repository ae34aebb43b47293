//! The headers an instance receives: who the client is, what
//! it asked for, which deployment answers. Client-supplied identity headers
//! are removed before anything else looks at the request.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{HeaderValue, HOST};
use pingora_http::{RequestHeader, StaticHeaderName};

use crate::net::{canonical_ip, IpSet};
use crate::policy::Credential;
use crate::telemetry::RequestId;

// Parsed at compile time: setting, finding or removing them parses no text.
// They are written in lower case, as HTTP/2 requires and HTTP/1.1 allows.
pub static X_FORWARDED_FOR: StaticHeaderName = StaticHeaderName::lowercase("x-forwarded-for");
pub static X_FORWARDED_HOST: StaticHeaderName = StaticHeaderName::lowercase("x-forwarded-host");
pub static X_FORWARDED_PROTO: StaticHeaderName = StaticHeaderName::lowercase("x-forwarded-proto");
pub static X_REQUEST_ID: StaticHeaderName = StaticHeaderName::lowercase("x-request-id");
pub static X_DEPLOYMENT_ID: StaticHeaderName = StaticHeaderName::lowercase("x-deployment-id");
pub static X_UNKEY_PRINCIPAL: StaticHeaderName = StaticHeaderName::lowercase("x-unkey-principal");
/// The Host field as `insert_header(HOST, …)` writes it.
static HOST_TITLED: StaticHeaderName = StaticHeaderName::new("host", "Host");

/// A field no request keeps past the gateway's door: one only the gateway
/// sets (X-Unkey-Principal, X-Deployment-Id) and, unless underscores are
/// allowed, one whose name contains `_` — CGI-style instances (WSGI, PHP,
/// Rack) read `X_Unkey_Principal` as `X-Unkey-Principal`, so such a field
/// could pass for one only the gateway sets (nginx drops them too).
pub fn stripped_on_entry(name: &http::HeaderName, allow_underscores: bool) -> bool {
    entry_role(name, allow_underscores) == EntryRole::Stripped
}

/// What becomes of a request field on the way in, told from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRole {
    /// Removed at the door ([`stripped_on_entry`]).
    Stripped,
    /// For the gateway to read; never sent to an instance.
    HopByHop,
    Forwarded,
}

/// What becomes of a request field named `name`: one pass over the name,
/// as every field of every request is asked (most names are told apart by
/// their length alone).
pub fn entry_role(name: &http::HeaderName, allow_underscores: bool) -> EntryRole {
    static LENGTHS: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
        let gateway_set = [X_UNKEY_PRINCIPAL.name(), X_DEPLOYMENT_ID.name()];
        (HOP_BY_HOP.iter().chain(gateway_set)).fold(0, |lengths, name| lengths | 1 << name.as_str().len())
    });
    let text = name.as_str();
    let len = text.len();
    if len < 64 && *LENGTHS & 1 << len != 0 {
        if text == X_UNKEY_PRINCIPAL.name().as_str() || text == X_DEPLOYMENT_ID.name().as_str() {
            return EntryRole::Stripped;
        }
        if HOP_BY_HOP.contains(name) {
            return EntryRole::HopByHop;
        }
    }
    // The standard library's search: names are short, and the `memchr`
    // crate's vector setup costs more than it saves on them.
    if !allow_underscores && text.as_bytes().contains(&b'_') {
        return EntryRole::Stripped;
    }
    EntryRole::Forwarded
}

/// Removes every field [`stripped_on_entry`] names, in any case. Allocates
/// only when there is one.
pub fn strip_on_entry(request: &mut RequestHeader, allow_underscores: bool) {
    let stripped = |name: &&http::HeaderName| stripped_on_entry(name, allow_underscores);
    if !request.headers.keys().any(|name| stripped(&name)) {
        return;
    }
    let names: Vec<http::HeaderName> = request.headers.keys().filter(stripped).cloned().collect();
    for name in names {
        request.remove_header(&name);
    }
}

/// Headers the gateway sets itself on the way upstream.
static GATEWAY_SET: [&StaticHeaderName; 7] = [
    &HOST_TITLED,
    &X_FORWARDED_FOR,
    &X_FORWARDED_HOST,
    &X_FORWARDED_PROTO,
    &X_REQUEST_ID,
    &X_DEPLOYMENT_ID,
    &X_UNKEY_PRINCIPAL,
];

/// A client's `Connection` header naming a header the gateway sets
/// (`Connection: keep-alive, X-Forwarded-For`) would have it removed on the
/// way upstream; the nomination is ignored instead, as nginx does.
/// Allocates only when there is one.
pub fn ignore_gateway_header_nominations(request: &mut RequestHeader) {
    let nominates = |value: &str| {
        value.split(',').any(|token| {
            GATEWAY_SET
                .iter()
                .any(|h| token.trim().eq_ignore_ascii_case(h.name().as_str()))
        })
    };
    let values = request.headers.get_all(http::header::CONNECTION);
    if !values.iter().any(|v| v.to_str().is_ok_and(nominates)) {
        return;
    }
    let kept: Vec<&str> = values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| {
            !token.is_empty()
                && !GATEWAY_SET
                    .iter()
                    .any(|h| token.eq_ignore_ascii_case(h.name().as_str()))
        })
        .collect();
    let kept = kept.join(", ");
    request.remove_header(&http::header::CONNECTION);
    if !kept.is_empty() {
        // invariant: the value is made of tokens of valid header values joined by ", ".
        let _ = request.insert_header(http::header::CONNECTION, kept);
    }
}

/// The client IP: the TCP peer, or — when the peer is a trusted
/// proxy — the right-most untrusted address of X-Forwarded-For.
pub fn client_ip(request: &RequestHeader, peer: IpAddr, trusted: &IpSet) -> IpAddr {
    let peer = canonical_ip(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let mut leftmost = None;
    let chain: Vec<IpAddr> = forwarded_for_chain(request).collect();
    for ip in chain.iter().rev() {
        if !trusted.contains(*ip) {
            return *ip;
        }
        leftmost = Some(*ip);
    }
    leftmost.unwrap_or(peer)
}

/// Every address of every X-Forwarded-For header, in order; junk entries are skipped.
fn forwarded_for_chain(request: &RequestHeader) -> impl Iterator<Item = IpAddr> + '_ {
    request
        .headers
        .get_all(X_FORWARDED_FOR.name())
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| parse_forwarded_ip(entry.trim()))
        .map(canonical_ip)
}

/// Accepts `1.2.3.4`, `::1`, `[::1]`, `1.2.3.4:5678` and `[::1]:5678`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The original Host: the Host header, else the URI authority (HTTP/2).
pub fn original_host(request: &RequestHeader) -> Option<&str> {
    request
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri.authority().map(|a| a.as_str()))
}

/// What the forwarding headers are computed from.
pub struct Forwarding<'a> {
    /// The TCP peer's address, as text.
    pub peer: Option<&'a HeaderValue>,
    pub peer_trusted: bool,
    pub https: bool,
    pub request_id: &'a RequestId,
    /// `None` when the deployment's id is no valid field value.
    pub deployment_id: Option<&'a HeaderValue>,
    /// The Principal JSON when an auth policy succeeded.
    pub principal: Option<&'a HeaderValue>,
}

/// One forwarding field: set to the value, or removed (`None`). Values the
/// request already holds (its id, the deployment's, the peer's address) are
/// borrowed: the fast path writes them out without a copy.
pub type FieldEdit<'a> = (&'static StaticHeaderName, Option<Cow<'a, HeaderValue>>);

/// Sets the forwarding headers on the request as it goes to the instance.
pub fn apply(request: &mut RequestHeader, fwd: &Forwarding<'_>) -> pingora_error::Result<()> {
    // An absolute-form request may carry its host only in the target: the
    // instance gets it as a Host field.
    if !request.headers.contains_key(HOST) {
        let authority = request.uri.authority().map(|a| a.as_str()).unwrap_or_default();
        if let Ok(value) = HeaderValue::from_str(authority) {
            if !authority.is_empty() {
                request.insert_static_header(&HOST_TITLED, value);
            }
        }
    }
    for (name, value) in edits(request, fwd)? {
        match value {
            Some(value) => request.insert_static_header(name, value.into_owned()),
            None => drop(request.remove_header(name.name())),
        }
    }
    Ok(())
}

/// Whether [`edits`] may name a field called `name`: they all begin with
/// `x-`, so most of a request's fields are told apart by one byte (the
/// fast path asks this of every field it forwards).
pub fn may_be_edited(name: &http::HeaderName) -> bool {
    name.as_str().starts_with("x-")
}

/// The forwarding fields the request gets on its way to the instance, each
/// replacing any field of its name: X-Forwarded-For (appended to a trusted
/// proxy's chain), X-Forwarded-Host and -Proto (a trusted proxy's kept),
/// X-Request-Id, X-Deployment-Id, X-Unkey-Principal. Every name passes
/// [`may_be_edited`].
pub fn edits<'a>(request: &RequestHeader, fwd: &Forwarding<'a>) -> pingora_error::Result<Vec<FieldEdit<'a>>> {
    let mut edits = Vec::with_capacity(6);
    if let Some(peer) = fwd.peer {
        let chain = fwd
            .peer_trusted
            .then(|| joined(request, X_FORWARDED_FOR.name()))
            .flatten();
        let value = match chain {
            Some(chain) => Cow::Owned(value_of(format!(
                "{chain}, {}",
                String::from_utf8_lossy(peer.as_bytes())
            ))?),
            None => Cow::Borrowed(peer),
        };
        edits.push((&X_FORWARDED_FOR, Some(value)));
    }
    if !(fwd.peer_trusted && request.headers.contains_key(X_FORWARDED_HOST.name())) {
        // The Host field's value, shared, not copied.
        let host = request
            .headers
            .get(HOST)
            .filter(|v| v.to_str().is_ok())
            .cloned()
            .map(Cow::Owned);
        edits.push((&X_FORWARDED_HOST, host));
    }
    if !(fwd.peer_trusted && request.headers.contains_key(X_FORWARDED_PROTO.name())) {
        let proto = HeaderValue::from_static(if fwd.https { "https" } else { "http" });
        edits.push((&X_FORWARDED_PROTO, Some(Cow::Owned(proto))));
    }
    edits.push((&X_REQUEST_ID, Some(Cow::Borrowed(fwd.request_id.value()))));
    let deployment_id = fwd.deployment_id.ok_or_else(|| {
        pingora_error::Error::explain(pingora_error::ErrorType::InvalidHTTPHeader, "invalid deployment id")
    })?;
    edits.push((&X_DEPLOYMENT_ID, Some(Cow::Borrowed(deployment_id))));
    if let Some(principal) = fwd.principal {
        edits.push((&X_UNKEY_PRINCIPAL, Some(Cow::Borrowed(principal))));
    }
    Ok(edits)
}

/// A header value from text the gateway made or checked; refused (as
/// pingora's `insert_header` would) if it holds a byte no field may carry.
pub fn value_of<T>(text: T) -> pingora_error::Result<HeaderValue>
where
    T: TryInto<HeaderValue>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    text.try_into().map_err(|e| {
        pingora_error::Error::because(pingora_error::ErrorType::InvalidHTTPHeader, "invalid header value", e)
    })
}

/// Removes the API key `keyauth` found (its header, or its query parameter)
/// from the request as it goes to the instance.
pub fn strip_credential(request: &mut RequestHeader, location: &Credential) -> pingora_error::Result<()> {
    match location {
        Credential::Header(name) => {
            request.remove_header(name);
            Ok(())
        }
        Credential::Query(name) => {
            let Some(query) = request.uri.query() else {
                return Ok(());
            };
            let kept: Vec<&str> = query
                .split('&')
                // Names decoded the way keyauth read them (`+` is a space).
                .filter(|pair| {
                    form_urlencoded::parse(pair.as_bytes())
                        .next()
                        .is_none_or(|(key, _)| key != name.as_str())
                })
                .collect();
            let path = request.uri.path();
            let target = if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            };
            let uri = http::Uri::try_from(target).map_err(|e| {
                pingora_error::Error::because(
                    pingora_error::ErrorType::InternalError,
                    "removing the credential from the query",
                    e,
                )
            })?;
            request.set_uri(uri);
            Ok(())
        }
    }
}

/// All values of a header joined with ", " (RFC 9110 list syntax), if any.
fn joined(request: &RequestHeader, name: &http::HeaderName) -> Option<String> {
    let mut values = request.headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    Some(values.fold(first.to_string(), |mut acc, v| {
        acc.push_str(", ");
        acc.push_str(v);
        acc
    }))
}

/// The hop-by-hop fields of RFC 9110 §7.6.1 (and the legacy ones proxies
/// drop). A request loses all of them before it goes to an instance (pingora
/// removes them; `builtin:echo` does the same, to show what an instance
/// would receive); an instance's response loses the first five
/// ([`RESPONSE_HOP_BY_HOP`]: its framing, Transfer-Encoding, is pingora's
/// to manage).
static HOP_BY_HOP: [http::HeaderName; 10] = [
    http::header::CONNECTION,
    http::HeaderName::from_static("keep-alive"),
    http::HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::HeaderName::from_static("http2-settings"),
];

/// The hop-by-hop fields an instance's response must not pass on.
const RESPONSE_HOP_BY_HOP: std::ops::Range<usize> = 0..5;

/// Which of `fields` `headers` has, and the names its `Connection` header
/// nominates as hop-by-hop (never the framing fields). Usually none: then
/// nothing is allocated.
fn hop_by_hop(fields: &[http::HeaderName], headers: &http::HeaderMap) -> Vec<http::HeaderName> {
    let mut found: Vec<http::HeaderName> = fields.iter().filter(|f| headers.contains_key(*f)).cloned().collect();
    found.extend(
        headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| http::HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| *name != http::header::TRANSFER_ENCODING && *name != http::header::CONTENT_LENGTH),
    );
    found
}

/// Removes hop-by-hop fields, and those the `Connection` header nominates,
/// from an instance's response. A `101` keeps them: they carry the upgrade.
pub fn strip_response_hop_by_hop(response: &mut pingora_http::ResponseHeader) {
    if response.status == http::StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    for name in hop_by_hop(&HOP_BY_HOP[RESPONSE_HOP_BY_HOP], &response.headers) {
        response.remove_header(&name);
    }
}

/// Whether `name` (any case, as received) is a hop-by-hop field an
/// instance's response never passes on.
pub fn is_response_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP[RESPONSE_HOP_BY_HOP]
        .iter()
        .any(|field| name.eq_ignore_ascii_case(field.as_str().as_bytes()))
}

/// Removes hop-by-hop fields, and those the `Connection` header nominates,
/// from a request, as pingora does before sending it to an instance.
pub fn strip_request_hop_by_hop(request: &mut RequestHeader) {
    for name in hop_by_hop(&HOP_BY_HOP, &request.headers) {
        request.remove_header(&name);
    }
}

/// Where keygate's trace context goes on the way upstream: `traceparent`
/// and `tracestate` replace the client's (never appended beside them); an
/// empty `tracestate` removes the header.
pub struct TraceHeaders<'a>(pub &'a mut RequestHeader);

impl opentelemetry::propagation::Injector for TraceHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            self.0.remove_header(key);
        } else if let Err(e) = self.0.insert_header(key.to_owned(), value) {
            tracing::debug!("trace context header {key} not forwarded: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::IpNet;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    fn trusted(nets: &[&str]) -> IpSet {
        IpSet::new(nets.iter().map(|n| n.parse::<IpNet>().unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_forwarding_edit_is_named_as_may_be_edited_says() {
        let (id, deployment) = (RequestId::generate(), HeaderValue::from_static("dep"));
        let principal = HeaderValue::from_static("{}");
        let peer = HeaderValue::from_static("10.0.0.1");
        let fwd = Forwarding {
            peer: Some(&peer),
            peer_trusted: false,
            https: true,
            request_id: &id,
            deployment_id: Some(&deployment),
            principal: Some(&principal),
        };
        let edits = edits(&request(&[("Host", "a.example")]), &fwd).unwrap();
        assert_eq!(edits.len(), 6, "every field edits can set");
        for (name, _) in &edits {
            assert!(may_be_edited(name.name()), "{}", name.name());
        }
        assert!(!may_be_edited(&http::header::HOST));
    }

    #[test]
    fn client_ip_rules() {
        let req = request(&[
            ("X-Forwarded-For", "203.0.113.9, 10.0.0.2"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        let lb = trusted(&["10.0.0.0/8"]);
        assert_eq!(client_ip(&req, ip("10.0.0.1"), &lb), ip("203.0.113.9"));
        assert_eq!(client_ip(&req, ip("198.51.100.1"), &lb), ip("198.51.100.1"));
        assert_eq!(client_ip(&request(&[]), ip("10.0.0.1"), &lb), ip("10.0.0.1"));
        let all_trusted = request(&[("X-Forwarded-For", "10.0.0.9")]);
        assert_eq!(client_ip(&all_trusted, ip("10.0.0.1"), &lb), ip("10.0.0.9"));
        let v6 = request(&[("X-Forwarded-For", "[2001:db8::1]:443")]);
        assert_eq!(client_ip(&v6, ip("::ffff:10.0.0.1"), &lb), ip("2001:db8::1"));
    }

    #[test]
    fn strips_identity_headers_in_any_case_and_underscores_unless_allowed() {
        let incoming = [
            ("X-Unkey-Principal", "{}"),
            ("x-unkey-principal", "{}"),
            ("X-DEPLOYMENT-ID", "evil"),
            ("x-deployment-id", "evil2"),
            ("X_Unkey_Principal", "{}"),
            ("Accept", "*/*"),
        ];
        for allow_underscores in [false, true] {
            let mut req = request(&incoming);
            strip_on_entry(&mut req, allow_underscores);
            let mut left: Vec<&str> = req.headers.keys().map(|n| n.as_str()).collect();
            left.sort_unstable();
            let expected = match allow_underscores {
                false => vec!["accept"],
                true => vec!["accept", "x_unkey_principal"],
            };
            assert_eq!(left, expected);
        }
    }

    #[test]
    fn entry_roles_know_hop_by_hop_and_gateway_names_and_not_others_of_their_length() {
        let role =
            |name: &str, underscores| entry_role(&http::HeaderName::from_bytes(name.as_bytes()).unwrap(), underscores);
        assert!(HOP_BY_HOP
            .iter()
            .all(|name| entry_role(name, false) == EntryRole::HopByHop));
        for stripped in ["x-unkey-principal", "x-deployment-id", "x_unkey_principal", "my_header"] {
            assert_eq!(role(stripped, false), EntryRole::Stripped, "{stripped}");
        }
        assert_eq!(role("my_header", true), EntryRole::Forwarded);
        assert_eq!(role("x-unkey-principal", true), EntryRole::Stripped);
        let long = "x-".repeat(40);
        for other in [
            "host",
            "user-agent",
            "accept",
            "x-connection",
            "trailers",
            "x-deployment-ix",
            long.as_str(),
        ] {
            assert_eq!(role(other, false), EntryRole::Forwarded, "{other}");
        }
    }

    #[test]
    fn response_hop_by_hop_removed_except_on_upgrade() {
        let mut response = pingora_http::ResponseHeader::build(200, None).unwrap();
        response.append_header("Connection", "keep-alive, X-Secret").unwrap();
        response.append_header("Keep-Alive", "timeout=5").unwrap();
        response.append_header("X-Secret", "1").unwrap();
        response.append_header("X-Kept", "1").unwrap();
        strip_response_hop_by_hop(&mut response);
        assert!(response.headers.get("connection").is_none());
        assert!(response.headers.get("keep-alive").is_none());
        assert!(response.headers.get("x-secret").is_none());
        assert!(response.headers.get("x-kept").is_some());

        let mut upgrade = pingora_http::ResponseHeader::build(101, None).unwrap();
        upgrade.append_header("Connection", "Upgrade").unwrap();
        upgrade.append_header("Upgrade", "websocket").unwrap();
        strip_response_hop_by_hop(&mut upgrade);
        assert!(upgrade.headers.get("upgrade").is_some());
    }

    #[test]
    fn forwarding_headers_untrusted_and_trusted() {
        let incoming = [
            ("Host", "api.example.com:8080"),
            ("X-Forwarded-For", "1.1.1.1"),
            ("X-Forwarded-Host", "spoof"),
            ("X-Forwarded-Proto", "https"),
        ];
        let request_id = RequestId::from_trusted(&HeaderValue::from_static("req_x")).unwrap();
        let deployment_id = HeaderValue::from_static("dep");
        let peer = HeaderValue::from_static("10.0.0.1");
        let fwd = |trusted| Forwarding {
            peer: Some(&peer),
            peer_trusted: trusted,
            https: false,
            request_id: &request_id,
            deployment_id: Some(&deployment_id),
            principal: None,
        };
        let mut req = request(&incoming);
        apply(&mut req, &fwd(false)).unwrap();
        let get = |req: &RequestHeader, name: &StaticHeaderName| {
            req.headers.get(name.name()).unwrap().to_str().unwrap().to_string()
        };
        assert_eq!(get(&req, &X_FORWARDED_FOR), "10.0.0.1");
        assert_eq!(get(&req, &X_FORWARDED_HOST), "api.example.com:8080");
        assert_eq!(get(&req, &X_FORWARDED_PROTO), "http");
        assert_eq!(get(&req, &X_DEPLOYMENT_ID), "dep");

        let mut req = request(&incoming);
        apply(&mut req, &fwd(true)).unwrap();
        assert_eq!(get(&req, &X_FORWARDED_FOR), "1.1.1.1, 10.0.0.1");
        assert_eq!(get(&req, &X_FORWARDED_HOST), "spoof");
        assert_eq!(get(&req, &X_FORWARDED_PROTO), "https");
    }
}
