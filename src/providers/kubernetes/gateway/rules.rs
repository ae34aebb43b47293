//! One HTTPRoute rule → keygate route rules: each of its `matches` becomes
//! a route (path, header, query and method matches) with the rule's
//! filters and timeout, compiled by the same code as the file's `routes:`
//! so both accept and refuse the same things; its `backendRefs` become
//! weighted deployments, and an `ExtensionRef` filter names the
//! `KeygatePolicy` they run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::objects::GROUP;
use super::refs::{core_group, From, Grants};
use super::spec;
use crate::config::policy::{FieldMatchSpec, MatchSpec, StringMatchSpec};
use crate::config::route::{
    FilterSpec, HeaderFilterSpec, PathModifierSpec, RedirectScheme, RedirectSpec, RewriteSpec, RoutePathSpec, RouteSpec,
};
use crate::config::units::HumanDuration;
use crate::errors::ErrorCode;
use crate::providers::kubernetes::crd;
use crate::providers::kubernetes::resolve::{PortRef, Resolver};
use crate::routing::{compile_path, compile_rule, Backends, PathMatch, RouteRule};
use crate::runtime::Deployment;

/// A rule ready to be routed on each of the route's hosts.
pub struct CompiledRule {
    /// One per match: the path and the rest of the match with filters.
    pub matches: Vec<(PathMatch, Arc<RouteRule>)>,
    pub backends: Backends<Arc<Deployment>>,
    /// Set when the rule must not be served as stated (its policy is unusable).
    pub refusal: Option<ErrorCode>,
}

/// A reference of the rule that could not be used: `(reason, message)`,
/// the reason as the route's `ResolvedRefs` condition and Event state it.
pub type Unresolved = (&'static str, String);

/// What compiling a rule needs to know about its route.
pub struct RuleContext<'a> {
    pub namespace: &'a str,
    pub route: &'a str,
    pub grants: &'a Grants,
}

/// Compiles `rule`. `Err`: the rule is invalid or asks for something keygate
/// does not support (it is skipped). `unresolved` collects references that
/// could not be used (the rule is still served, failing closed).
pub fn compile(
    rule: &spec::RouteRule,
    context: &RuleContext<'_>,
    resolver: &mut Resolver<'_, '_>,
    unresolved: &mut Vec<Unresolved>,
) -> Result<CompiledRule, String> {
    let mut filters = Vec::new();
    let mut policy = None;
    let mut refusal = None;
    for (i, filter) in rule.filters.iter().enumerate() {
        let at = format!("filters[{i}]");
        match (filter.type_.as_str(), filter) {
            (
                "RequestHeaderModifier",
                spec::Filter {
                    request_header_modifier: Some(edit),
                    ..
                },
            ) => filters.push(FilterSpec {
                request_headers: Some(header_filter(edit)),
                ..no_filter()
            }),
            (
                "ResponseHeaderModifier",
                spec::Filter {
                    response_header_modifier: Some(edit),
                    ..
                },
            ) => filters.push(FilterSpec {
                response_headers: Some(header_filter(edit)),
                ..no_filter()
            }),
            (
                "RequestRedirect",
                spec::Filter {
                    request_redirect: Some(redirect),
                    ..
                },
            ) => filters.push(FilterSpec {
                redirect: Some(redirect_spec(redirect).map_err(|m| format!("{at}.requestRedirect: {m}"))?),
                ..no_filter()
            }),
            (
                "URLRewrite",
                spec::Filter {
                    url_rewrite: Some(rewrite),
                    ..
                },
            ) => filters.push(FilterSpec {
                rewrite: Some(RewriteSpec {
                    hostname: rewrite.hostname.clone(),
                    path: match &rewrite.path {
                        Some(path) => Some(path_modifier(path).map_err(|m| format!("{at}.urlRewrite.path: {m}"))?),
                        None => None,
                    },
                }),
                ..no_filter()
            }),
            (
                "ExtensionRef",
                spec::Filter {
                    extension_ref: Some(reference),
                    ..
                },
            ) => {
                if policy.is_some() || refusal.is_some() {
                    return Err(format!("{at}: a rule takes one ExtensionRef (one KeygatePolicy)"));
                }
                if reference.group != crd::GROUP || reference.kind != crd::KIND {
                    unresolved.push((
                        "InvalidKind",
                        format!(
                            "{at}: ExtensionRef names a {}.{}; keygate knows {}.{} (requests answer 422 until fixed)",
                            reference.kind,
                            reference.group,
                            crd::KIND,
                            crd::GROUP
                        ),
                    ));
                    refusal = Some(ErrorCode::InvalidConfiguration);
                } else if !resolver.index().has_policy(context.namespace, &reference.name) {
                    unresolved.push((
                        "PolicyNotFound",
                        format!(
                            "KeygatePolicy {}/{} does not exist; the rule answers 422 until it does",
                            context.namespace, reference.name
                        ),
                    ));
                    refusal = Some(ErrorCode::InvalidConfiguration);
                } else {
                    policy = Some(reference.name.as_str());
                }
            }
            (other, _) => {
                return Err(format!(
                    "{at}: filter type {other} is not supported (or its field is missing)"
                ))
            }
        }
    }
    let timeout = match rule.timeouts.as_ref().and_then(|t| t.request.as_deref()) {
        Some(text) => parse_duration(text)
            .map_err(|m| format!("timeouts.request: {m}"))?
            .filter(|d| !d.is_zero())
            .map(HumanDuration),
        None => None,
    };
    let default_match = [spec::RouteMatch::default()];
    let matches = if rule.matches.is_empty() {
        &default_match[..]
    } else {
        &rule.matches[..]
    };
    let mut compiled = Vec::with_capacity(matches.len());
    for (i, matched) in matches.iter().enumerate() {
        // Every match gets the rule's filters: they move into its spec and
        // back out once compiled (the spec types are not `Clone`).
        let route =
            route_spec(matched, std::mem::take(&mut filters), timeout).map_err(|m| format!("matches[{i}]: {m}"))?;
        let path = compile_path(&route).map_err(|(field, m)| format!("matches[{i}] {field}: {m}"))?;
        let rule = compile_rule(&route, &path).map_err(|(field, m)| format!("{field}: {m}"))?;
        filters = route.filters;
        compiled.push((path, Arc::new(rule)));
    }
    let redirects = compiled.first().is_some_and(|(_, rule)| rule.redirect.is_some());
    let backends = if redirects {
        Backends::none()
    } else {
        backends(rule, context, policy, resolver, unresolved, &mut refusal)?
    };
    Ok(CompiledRule {
        matches: compiled,
        backends,
        refusal,
    })
}

fn no_filter() -> FilterSpec {
    FilterSpec {
        request_headers: None,
        response_headers: None,
        rewrite: None,
        redirect: None,
    }
}

/// The file's form of one match (the route's host is not used by compilation).
fn route_spec(
    matched: &spec::RouteMatch,
    filters: Vec<FilterSpec>,
    timeout: Option<HumanDuration>,
) -> Result<RouteSpec, String> {
    let path = matched.path.as_ref();
    let value = path.and_then(|p| p.value.clone()).unwrap_or_else(|| "/".to_string());
    let path = match path.and_then(|p| p.type_.as_deref()).unwrap_or("PathPrefix") {
        "PathPrefix" => RoutePathSpec {
            exact: None,
            prefix: Some(value),
            regex: None,
        },
        "Exact" => RoutePathSpec {
            exact: Some(value),
            prefix: None,
            regex: None,
        },
        "RegularExpression" => RoutePathSpec {
            exact: None,
            prefix: None,
            regex: Some(anchored(&value)),
        },
        other => return Err(format!("path type {other} is not supported")),
    };
    let mut conditions = Vec::new();
    for header in &matched.headers {
        conditions.push(MatchSpec {
            header: Some(field_match(header)?),
            ..no_match()
        });
    }
    for query in &matched.query_params {
        conditions.push(MatchSpec {
            query: Some(field_match(query)?),
            ..no_match()
        });
    }
    if let Some(method) = &matched.method {
        conditions.push(MatchSpec {
            method: Some(vec![method.clone()]),
            ..no_match()
        });
    }
    Ok(RouteSpec {
        host: String::new(),
        path_prefix: None,
        path: Some(path),
        matches: conditions,
        deployment: None,
        backends: Vec::new(),
        strip_prefix: false,
        filters,
        timeout,
    })
}

fn no_match() -> MatchSpec {
    MatchSpec {
        path: None,
        method: None,
        header: None,
        query: None,
    }
}

/// Gateway API regular expressions match the whole value.
fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

fn field_match(matched: &spec::ValueMatch) -> Result<FieldMatchSpec, String> {
    let (exact, regex) = match matched.type_.as_deref().unwrap_or("Exact") {
        "Exact" => (Some(matched.value.clone()), None),
        "RegularExpression" => (None, Some(anchored(&matched.value))),
        other => return Err(format!("match type {other} is not supported")),
    };
    Ok(FieldMatchSpec {
        name: matched.name.clone(),
        present: None,
        value: Some(StringMatchSpec {
            exact,
            prefix: None,
            regex,
            ignore_case: false,
        }),
    })
}

fn header_filter(edit: &spec::HeaderModifier) -> HeaderFilterSpec {
    let pairs = |headers: &[spec::Header]| -> BTreeMap<String, String> {
        headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect()
    };
    HeaderFilterSpec {
        set: pairs(&edit.set),
        add: pairs(&edit.add),
        remove: edit.remove.clone(),
    }
}

fn path_modifier(path: &spec::PathModifier) -> Result<PathModifierSpec, String> {
    match path.type_.as_str() {
        "ReplaceFullPath" => Ok(PathModifierSpec {
            replace_prefix: None,
            replace_full: Some(path.replace_full_path.clone().ok_or("replaceFullPath is missing")?),
        }),
        "ReplacePrefixMatch" => Ok(PathModifierSpec {
            replace_prefix: Some(
                path.replace_prefix_match
                    .clone()
                    .ok_or("replacePrefixMatch is missing")?,
            ),
            replace_full: None,
        }),
        other => Err(format!("path modifier type {other} is not supported")),
    }
}

fn redirect_spec(redirect: &spec::Redirect) -> Result<RedirectSpec, String> {
    let scheme = match redirect.scheme.as_deref() {
        None => None,
        Some("http") => Some(RedirectScheme::Http),
        Some("https") => Some(RedirectScheme::Https),
        Some(other) => return Err(format!("scheme {other:?} is not http or https")),
    };
    let port = match redirect.port {
        Some(port) => Some(u16::try_from(port).map_err(|_| format!("port {port} is not 1-65535"))?),
        None => None,
    };
    let status = match redirect.status_code {
        Some(code) => u16::try_from(code).map_err(|_| format!("statusCode {code} is not a redirect status"))?,
        None => 302,
    };
    Ok(RedirectSpec {
        scheme,
        hostname: redirect.hostname.clone(),
        port,
        path: match &redirect.path {
            Some(path) => Some(path_modifier(path)?),
            None => None,
        },
        status,
    })
}

/// A Gateway API duration (GEP-2257: `1h`, `30s`, `500ms`, `1m30s`);
/// `None` for zero is not decided here: the caller treats 0 as "no timeout".
fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let invalid = || format!("{text:?} is not a duration like 10s, 500ms or 1m30s");
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 || digits > 5 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err(invalid());
        };
        rest = &rest[len..];
        total += unit.saturating_mul(u32::try_from(number).map_err(|_| invalid())?);
    }
    Ok(Some(total))
}

/// The rule's weighted deployments. An unresolved backend keeps its weight
/// with a deployment without instances: it gets no request while another
/// backend can serve, and a rule whose every backend is unresolved answers
/// 503 `no_running_instances`.
fn backends(
    rule: &spec::RouteRule,
    context: &RuleContext<'_>,
    policy: Option<&str>,
    resolver: &mut Resolver<'_, '_>,
    unresolved: &mut Vec<Unresolved>,
    refusal: &mut Option<ErrorCode>,
) -> Result<Backends<Arc<Deployment>>, String> {
    let mut items = Vec::with_capacity(rule.backend_refs.len());
    for (i, backend) in rule.backend_refs.iter().enumerate() {
        if !backend.filters.is_empty() {
            return Err(format!(
                "backendRefs[{i}].filters are not supported (use the rule's filters)"
            ));
        }
        let weight = u32::try_from(backend.weight.unwrap_or(1).max(0)).unwrap_or(0);
        let namespace = backend.namespace.as_deref().unwrap_or(context.namespace);
        let port = backend.port.unwrap_or(0);
        let id = format!("{namespace}/{}:{port}", backend.name);
        match resolve(backend, namespace, context, resolver) {
            Ok(instances) => match resolver.deployment(id.clone(), instances, policy.map(|p| (context.namespace, p))) {
                Ok(deployment) => items.push((deployment, weight)),
                Err(message) => {
                    unresolved.push((
                        "InvalidPolicy",
                        format!(
                            "KeygatePolicy {}/{}: {message}; the rule answers 422 until it is fixed",
                            context.namespace,
                            policy.unwrap_or_default()
                        ),
                    ));
                    *refusal = Some(ErrorCode::InvalidConfiguration);
                    items.push((resolver.placeholder(&id), weight));
                }
            },
            Err(problem) => {
                unresolved.push(problem);
                items.push((resolver.placeholder(&id), weight));
            }
        }
    }
    if items.iter().all(|(_, weight)| *weight == 0) {
        // No backend, or every weight 0: nothing may serve the rule.
        let id = format!("{}/{}", context.namespace, context.route);
        return Ok(Backends::single(resolver.placeholder(&id)));
    }
    Ok(Backends::new(items))
}

/// The ready instances of a `backendRefs` entry, or why it is unresolved.
fn resolve(
    backend: &spec::BackendRef,
    namespace: &str,
    context: &RuleContext<'_>,
    resolver: &Resolver<'_, '_>,
) -> Result<Vec<std::net::SocketAddr>, Unresolved> {
    let kind = backend.kind.as_deref().unwrap_or("Service");
    if !core_group(backend.group.as_deref()) || kind != "Service" {
        return Err((
            "InvalidKind",
            format!("backendRef {} is a {kind}: only Services are supported", backend.name),
        ));
    }
    let from = From {
        group: GROUP,
        kind: super::ROUTE_KIND,
        namespace: context.namespace,
    };
    if !context.grants.permits(&from, "", "Service", namespace, &backend.name) {
        return Err((
            "RefNotPermitted",
            format!(
                "Service {namespace}/{} is in another namespace and no ReferenceGrant there allows it",
                backend.name
            ),
        ));
    }
    let Some(port) = backend.port else {
        return Err((
            "BackendNotFound",
            format!("backendRef {namespace}/{} names no port", backend.name),
        ));
    };
    resolver
        .instances(namespace, &backend.name, PortRef::Number(port))
        .map_err(|message| ("BackendNotFound", message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let secs = |s| Ok(Some(Duration::from_secs(s)));
        assert_eq!(parse_duration("10s"), secs(10));
        assert_eq!(parse_duration("1m30s"), secs(90));
        assert_eq!(parse_duration("1h"), secs(3600));
        assert_eq!(parse_duration("500ms"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(parse_duration("0s"), secs(0));
        for bad in ["", "10", "s", "1.5s", "123456s", "10 s", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
