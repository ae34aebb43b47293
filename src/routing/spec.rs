//! Compiling a route as written (`routes[]` of the file) into its path
//! match and [`RouteRule`]: every check a route needs besides naming
//! deployments, with errors as `(field below the route, message)`.

use http::{HeaderName, HeaderValue};

use crate::config::route::{FilterSpec, HeaderFilterSpec, PathModifierSpec, RedirectScheme, RedirectSpec, RouteSpec};
use crate::policy::matcher::{bounded_regex, Condition};

use super::filters::{HeaderFilter, PathRewrite, Redirect, Rewrite};
use super::{HostPattern, PathMatch, PathPrefix, PathRegex, RouteRule};

type SpecError = (String, String);

fn error(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    (field.into(), message.into())
}

/// The route's path match: `path_prefix` or `path: {exact|prefix|regex}` (default prefix `/`).
pub fn compile_path(spec: &RouteSpec) -> Result<PathMatch, SpecError> {
    let Some(path) = &spec.path else {
        let prefix =
            PathPrefix::parse(spec.path_prefix.as_deref().unwrap_or("/")).map_err(|m| error("path_prefix", m))?;
        return Ok(PathMatch::Prefix(prefix));
    };
    if spec.path_prefix.is_some() {
        return Err(error("path", "set path_prefix or path, not both"));
    }
    match (&path.exact, &path.prefix, &path.regex) {
        (Some(exact), None, None) => {
            check_path(exact).map_err(|m| error("path.exact", m))?;
            Ok(PathMatch::Exact(exact.as_str().into()))
        }
        (None, Some(prefix), None) => PathPrefix::parse(prefix)
            .map(PathMatch::Prefix)
            .map_err(|m| error("path.prefix", m)),
        (None, None, Some(pattern)) => bounded_regex(pattern, false)
            .map(|regex| PathMatch::Regex(PathRegex::new(regex)))
            .map_err(|m| error("path.regex", m)),
        _ => Err(error("path", "set exactly one of exact, prefix or regex")),
    }
}

/// The route's match expressions, filters and timeout; `path` is its
/// compiled path match (prefix rewrites need a prefix).
pub fn compile_rule(spec: &RouteSpec, path: &PathMatch) -> Result<RouteRule, SpecError> {
    let mut conditions = Vec::with_capacity(spec.matches.len());
    for (i, expression) in spec.matches.iter().enumerate() {
        let at = |sub: &str| {
            if sub.is_empty() {
                format!("match[{i}]")
            } else {
                format!("match[{i}].{sub}")
            }
        };
        if expression.path.is_some() {
            return Err(error(
                at("path"),
                "a route's path is set with path_prefix or path, not in match",
            ));
        }
        conditions.push(Condition::compile(expression).map_err(|(field, m)| error(at(&field), m))?);
    }
    let prefix_route = matches!(path, PathMatch::Prefix(_));
    if spec.strip_prefix && !prefix_route {
        return Err(error(
            "strip_prefix",
            "strip_prefix needs a prefix route (path_prefix or path.prefix)",
        ));
    }
    let mut rule = RouteRule::new(conditions);
    let (mut request_headers, mut response_headers) = (Vec::new(), Vec::new());
    for (i, filter) in spec.filters.iter().enumerate() {
        let at = |sub: &str| format!("filters[{i}].{sub}");
        match filter {
            FilterSpec {
                request_headers: Some(edit),
                response_headers: None,
                rewrite: None,
                redirect: None,
            } => {
                request_headers
                    .push(header_filter(edit, true).map_err(|(f, m)| error(at(&format!("request_headers.{f}")), m))?);
            }
            FilterSpec {
                request_headers: None,
                response_headers: Some(edit),
                rewrite: None,
                redirect: None,
            } => {
                response_headers
                    .push(header_filter(edit, false).map_err(|(f, m)| error(at(&format!("response_headers.{f}")), m))?);
            }
            FilterSpec {
                request_headers: None,
                response_headers: None,
                rewrite: Some(rewrite),
                redirect: None,
            } => {
                if rule.rewrite.is_some() || rule.redirect.is_some() {
                    return Err(error(
                        at("rewrite"),
                        "a route has at most one rewrite, and not with a redirect",
                    ));
                }
                if spec.strip_prefix && rewrite.path.is_some() {
                    return Err(error(
                        at("rewrite.path"),
                        "strip_prefix and rewrite.path both change the path: keep one",
                    ));
                }
                let hostname = match &rewrite.hostname {
                    Some(name) => Some(
                        hostname(name)
                            .and_then(|h| HeaderValue::from_str(&h).map_err(|e| e.to_string()))
                            .map_err(|m| error(at("rewrite.hostname"), m))?,
                    ),
                    None => None,
                };
                let path = match &rewrite.path {
                    Some(modifier) => Some(
                        path_rewrite(modifier, prefix_route)
                            .map_err(|(f, m)| error(at(&format!("rewrite.path{f}")), m))?,
                    ),
                    None => None,
                };
                rule.rewrite = Some(Rewrite { hostname, path });
            }
            FilterSpec {
                request_headers: None,
                response_headers: None,
                rewrite: None,
                redirect: Some(redirect),
            } => {
                if rule.rewrite.is_some() || rule.redirect.is_some() {
                    return Err(error(
                        at("redirect"),
                        "a route has at most one redirect, and not with a rewrite",
                    ));
                }
                rule.redirect = Some(
                    compile_redirect(redirect, prefix_route).map_err(|(f, m)| error(at(&format!("redirect{f}")), m))?,
                );
            }
            _ => {
                return Err(error(
                    format!("filters[{i}]"),
                    "a filter has exactly one of request_headers, response_headers, rewrite or redirect",
                ))
            }
        }
    }
    rule.request_headers = request_headers.into();
    rule.response_headers = response_headers.into();
    rule.timeout = match spec.timeout {
        Some(timeout) if timeout.0.is_zero() => return Err(error("timeout", "must be more than 0")),
        Some(timeout) => Some(timeout.0),
        None => None,
    };
    Ok(rule)
}

/// Headers the gateway owns on the way in (framing, `Host`): a filter may not touch them.
const FRAMING: [&str; 4] = ["content-length", "transfer-encoding", "connection", "upgrade"];

fn header_filter(spec: &HeaderFilterSpec, request: bool) -> Result<HeaderFilter, SpecError> {
    let name = |field: &str, text: &str| -> Result<HeaderName, SpecError> {
        let name = HeaderName::from_bytes(text.as_bytes())
            .map_err(|_| error(field, format!("invalid header name {text:?}")))?;
        if FRAMING.contains(&name.as_str()) {
            return Err(error(
                field,
                format!("{text} is managed by the gateway and cannot be changed"),
            ));
        }
        if request && name == http::header::HOST {
            return Err(error(field, "use rewrite.hostname to change Host"));
        }
        Ok(name)
    };
    let mut seen = std::collections::HashSet::new();
    let mut pairs = |kind: &str,
                     map: &std::collections::BTreeMap<String, String>|
     -> Result<Box<[(HeaderName, HeaderValue)]>, SpecError> {
        let mut out = Vec::with_capacity(map.len());
        for (text, value) in map {
            let field = format!("{kind}.{text}");
            let header = name(&field, text)?;
            if !seen.insert(header.clone()) {
                return Err(error(
                    field,
                    format!("{text} is named twice in one filter (set, add and remove are exclusive)"),
                ));
            }
            let value =
                HeaderValue::from_str(value).map_err(|_| error(&field, format!("invalid header value {value:?}")))?;
            out.push((header, value));
        }
        Ok(out.into())
    };
    let set = pairs("set", &spec.set)?;
    let add = pairs("add", &spec.add)?;
    let mut remove = Vec::with_capacity(spec.remove.len());
    for (i, text) in spec.remove.iter().enumerate() {
        let field = format!("remove[{i}]");
        let header = name(&field, text)?;
        if !seen.insert(header.clone()) {
            return Err(error(
                field,
                format!("{text} is named twice in one filter (set, add and remove are exclusive)"),
            ));
        }
        remove.push(header);
    }
    Ok(HeaderFilter {
        set,
        add,
        remove: remove.into(),
    })
}

/// A hostname for a rewrite or redirect: a valid exact name, no port.
fn hostname(text: &str) -> Result<String, String> {
    match HostPattern::parse(text)? {
        HostPattern::Exact(name) => Ok(name.into()),
        HostPattern::Wildcard(_) => Err(format!("{text:?} is a wildcard; name one host")),
    }
}

/// A path for the request line: starts with `/`, no query or fragment, valid URI characters.
fn check_path(path: &str) -> Result<(), String> {
    let valid = path.starts_with('/') && !path.contains(['?', '#']) && path.parse::<http::uri::PathAndQuery>().is_ok();
    if valid {
        Ok(())
    } else {
        Err(format!("{path:?} is not a path (starts with /, no ? or #, no spaces)"))
    }
}

/// Errors are `(".replace_prefix" etc., message)`.
fn path_rewrite(spec: &PathModifierSpec, prefix_route: bool) -> Result<PathRewrite, SpecError> {
    match (&spec.replace_prefix, &spec.replace_full) {
        (Some(prefix), None) => {
            check_path(prefix).map_err(|m| error(".replace_prefix", m))?;
            if !prefix_route {
                return Err(error(
                    ".replace_prefix",
                    "replace_prefix needs a prefix route (path_prefix or path.prefix)",
                ));
            }
            Ok(PathRewrite::ReplacePrefix(prefix.as_str().into()))
        }
        (None, Some(full)) => {
            check_path(full).map_err(|m| error(".replace_full", m))?;
            Ok(PathRewrite::ReplaceFull(full.as_str().into()))
        }
        _ => Err(error("", "set exactly one of replace_prefix or replace_full")),
    }
}

/// Errors are `(".status" etc., message)`.
fn compile_redirect(spec: &RedirectSpec, prefix_route: bool) -> Result<Redirect, SpecError> {
    if ![301, 302, 303, 307, 308].contains(&spec.status) {
        return Err(error(
            ".status",
            format!("{} is not a redirect status (301, 302, 303, 307 or 308)", spec.status),
        ));
    }
    if spec.port == Some(0) {
        return Err(error(".port", "the port must be 1-65535"));
    }
    let hostname = match &spec.hostname {
        Some(name) => Some(hostname(name).map_err(|m| error(".hostname", m))?.into()),
        None => None,
    };
    let path = match &spec.path {
        Some(modifier) => Some(path_rewrite(modifier, prefix_route).map_err(|(f, m)| error(format!(".path{f}"), m))?),
        None => None,
    };
    Ok(Redirect {
        scheme: spec.scheme.map(|scheme| match scheme {
            RedirectScheme::Http => "http",
            RedirectScheme::Https => "https",
        }),
        hostname,
        port: spec.port,
        path,
        status: spec.status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<RouteRule, SpecError> {
        let spec: RouteSpec = serde_saphyr::from_str(yaml).unwrap();
        let path = compile_path(&spec)?;
        compile_rule(&spec, &path)
    }

    #[test]
    fn errors_name_the_field() {
        let field = |yaml: &str| compile(yaml).err().map(|(field, _)| field);
        let cases = [
            ("{host: a, path_prefix: /a, path: {exact: /a}}", "path"),
            ("{host: a, path: {exact: /a, prefix: /b}}", "path"),
            ("{host: a, path: {regex: '('}}", "path.regex"),
            ("{host: a, path: {exact: 'a b'}}", "path.exact"),
            ("{host: a, match: [{path: {exact: /x}}]}", "match[0].path"),
            ("{host: a, match: [{header: {name: X}}]}", "match[0].header"),
            ("{host: a, path: {exact: /x}, strip_prefix: true}", "strip_prefix"),
            ("{host: a, filters: [{}]}", "filters[0]"),
            (
                "{host: a, filters: [{request_headers: {set: {Host: x}}}]}",
                "filters[0].request_headers.set.Host",
            ),
            (
                "{host: a, filters: [{request_headers: {set: {X-A: '1'}, remove: [x-a]}}]}",
                "filters[0].request_headers.remove[0]",
            ),
            (
                "{host: a, filters: [{response_headers: {add: {'bad name': '1'}}}]}",
                "filters[0].response_headers.add.bad name",
            ),
            (
                "{host: a, filters: [{response_headers: {set: {Content-Length: '1'}}}]}",
                "filters[0].response_headers.set.Content-Length",
            ),
            (
                "{host: a, filters: [{rewrite: {hostname: '*.x.com'}}]}",
                "filters[0].rewrite.hostname",
            ),
            (
                "{host: a, path: {regex: x}, filters: [{rewrite: {path: {replace_prefix: /b}}}]}",
                "filters[0].rewrite.path.replace_prefix",
            ),
            ("{host: a, filters: [{rewrite: {path: {}}}]}", "filters[0].rewrite.path"),
            (
                "{host: a, strip_prefix: true, path_prefix: /a, filters: [{rewrite: {path: {replace_full: /b}}}]}",
                "filters[0].rewrite.path",
            ),
            (
                "{host: a, filters: [{redirect: {status: 200}}]}",
                "filters[0].redirect.status",
            ),
            (
                "{host: a, filters: [{redirect: {port: 0}}]}",
                "filters[0].redirect.port",
            ),
            (
                "{host: a, filters: [{redirect: {}}, {rewrite: {}}]}",
                "filters[1].rewrite",
            ),
            ("{host: a, timeout: 0s}", "timeout"),
        ];
        for (yaml, expected) in cases {
            assert_eq!(field(yaml).as_deref(), Some(expected), "{yaml}");
        }
    }

    #[test]
    fn precedence_counts_headers_then_queries_then_method() {
        let precedence = |yaml: &str| compile(yaml).unwrap().precedence();
        let two_headers =
            precedence("{host: a, match: [{header: {name: A, present: true}}, {header: {name: B, present: true}}]}");
        let header_query =
            precedence("{host: a, match: [{header: {name: A, present: true}}, {query: {name: q, present: true}}]}");
        let header = precedence("{host: a, match: [{header: {name: A, present: true}}]}");
        let query_method = precedence("{host: a, match: [{query: {name: q, present: true}}, {method: [GET]}]}");
        let query = precedence("{host: a, match: [{query: {name: q, present: true}}]}");
        let method = precedence("{host: a, match: [{method: [GET]}]}");
        let none = precedence("{host: a}");
        let ordered = [two_headers, header_query, header, query_method, query, method, none];
        assert!(ordered.windows(2).all(|w| w[0] > w[1]), "{ordered:?}");
    }
}
