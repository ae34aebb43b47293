//! Match expressions, compiled once: regexes built,
//! case folded, methods parsed. Evaluating one never allocates unless a
//! query name or value is encoded (`%xx` or `+`).

use std::borrow::Cow;

use http::header::HeaderName;
use regex::Regex;

use super::join;
use crate::config::policy::{FieldMatchSpec, MatchSpec, StringMatchSpec};

/// Bounds on a `regex` match: its compiled program (memory) and how deep
/// its groups nest (the parser recurses once per level). Patterns past
/// either are a config error, never an exhausted stack or heap.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_NEST_LIMIT: u32 = 64;

/// Compiles a `regex` of the config within the bounds above.
pub fn bounded_regex(pattern: &str, ignore_case: bool) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

/// A compiled string test.
#[derive(Debug)]
pub enum StringMatcher {
    Exact {
        value: Box<str>,
        ignore_case: bool,
    },
    Prefix {
        value: Box<str>,
        ignore_case: bool,
    },
    /// Unanchored search (`^…$` to anchor); `ignore_case` compiled in.
    Regex(Regex),
}

impl StringMatcher {
    /// An error is `(sub-field, message)`, e.g. `("regex", "invalid regex …")`.
    pub fn compile(spec: &StringMatchSpec) -> Result<Self, (String, String)> {
        let ignore_case = spec.ignore_case;
        match (&spec.exact, &spec.prefix, &spec.regex) {
            (Some(value), None, None) => Ok(Self::Exact {
                value: value.as_str().into(),
                ignore_case,
            }),
            (None, Some(value), None) => Ok(Self::Prefix {
                value: value.as_str().into(),
                ignore_case,
            }),
            (None, None, Some(pattern)) => bounded_regex(pattern, ignore_case)
                .map(Self::Regex)
                .map_err(|message| ("regex".to_string(), message)),
            _ => Err((String::new(), "set exactly one of exact, prefix or regex".to_string())),
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            Self::Exact {
                value,
                ignore_case: false,
            } => text == &**value,
            Self::Exact {
                value,
                ignore_case: true,
            } => text.eq_ignore_ascii_case(value),
            Self::Prefix {
                value,
                ignore_case: false,
            } => text.starts_with(&**value),
            Self::Prefix {
                value,
                ignore_case: true,
            } => text
                .get(..value.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(value)),
            Self::Regex(regex) => regex.is_match(text),
        }
    }
}

/// What a header or query parameter must satisfy.
#[derive(Debug)]
pub enum FieldTest {
    Present(bool),
    Value(StringMatcher),
}

impl FieldTest {
    fn compile(spec: &FieldMatchSpec) -> Result<Self, (String, String)> {
        match (spec.present, &spec.value) {
            (Some(present), None) => Ok(Self::Present(present)),
            (None, Some(value)) => StringMatcher::compile(value)
                .map(Self::Value)
                .map_err(|(field, m)| (join("value", &field), m)),
            _ => Err((String::new(), "set exactly one of present or value".to_string())),
        }
    }

    /// True when the field's values satisfy the test; any value matching is enough.
    fn check<'a>(&self, mut values: impl Iterator<Item = Cow<'a, str>>) -> bool {
        match self {
            Self::Present(present) => values.next().is_some() == *present,
            Self::Value(matcher) => values.any(|v| matcher.matches(&v)),
        }
    }
}

/// One compiled match expression.
#[derive(Debug)]
pub enum Condition {
    Path(StringMatcher),
    Method(Vec<http::Method>),
    Header { name: HeaderName, test: FieldTest },
    Query { name: Box<str>, test: FieldTest },
}

impl Condition {
    /// Compiles one `match` entry; errors carry the sub-field they concern.
    pub fn compile(spec: &MatchSpec) -> Result<Self, (String, String)> {
        let keys = [
            spec.path.is_some(),
            spec.method.is_some(),
            spec.header.is_some(),
            spec.query.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            return Err((
                String::new(),
                "a match expression has exactly one of path, method, header or query".into(),
            ));
        }
        if let Some(path) = &spec.path {
            return StringMatcher::compile(path)
                .map(Self::Path)
                .map_err(|(f, m)| (join("path", &f), m));
        }
        if let Some(methods) = &spec.method {
            let parsed: Result<Vec<http::Method>, _> = methods
                .iter()
                .map(|m| http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| m.clone()))
                .collect();
            return parsed
                .map(Self::Method)
                .map_err(|bad| ("method".into(), format!("invalid method {bad:?}")));
        }
        if let Some(header) = &spec.header {
            let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| {
                (
                    "header.name".to_string(),
                    format!("invalid header name {:?}", header.name),
                )
            })?;
            let test = FieldTest::compile(header).map_err(|(f, m)| (join("header", &f), m))?;
            return Ok(Self::Header { name, test });
        }
        let query = spec
            .query
            .as_ref()
            .ok_or_else(|| (String::new(), "empty match expression".to_string()))?;
        let test = FieldTest::compile(query).map_err(|(f, m)| (join("query", &f), m))?;
        Ok(Self::Query {
            name: query.name.as_str().into(),
            test,
        })
    }

    pub fn matches(&self, head: &http::request::Parts) -> bool {
        match self {
            Self::Path(matcher) => matcher.matches(head.uri.path()),
            Self::Method(methods) => methods
                .iter()
                .any(|m| m.as_str().eq_ignore_ascii_case(head.method.as_str())),
            Self::Header { name, test } => test.check(
                head.headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(Cow::Borrowed),
            ),
            Self::Query { name, test } => test.check(query_values(head.uri.query().unwrap_or(""), name)),
        }
    }
}

/// The values of parameter `name` in a query string, names and values
/// decoded as `application/x-www-form-urlencoded` (`+` is a space) — the
/// way the `openapi` policy reads query parameters too.
pub(crate) fn query_values<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = Cow<'a, str>> + 'a {
    form_urlencoded::parse(query.as_bytes())
        .filter(move |(key, _)| key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(yaml: &str) -> Condition {
        let spec: MatchSpec = serde_saphyr::from_str(yaml).unwrap();
        Condition::compile(&spec).unwrap()
    }

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method(method).uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn check(yaml: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> bool {
        let head = request(method, target, headers);
        condition(yaml).matches(&head)
    }

    /// `(match yaml, method, target, headers, matches)`.
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], bool);

    #[test]
    fn table() {
        let cases: &[Case<'_>] = &[
            // path
            ("path: {exact: /v1/users}", "GET", "/v1/users", &[], true),
            ("path: {exact: /v1/users}", "GET", "/v1/users/", &[], false),
            ("path: {exact: /v1/users}", "GET", "/V1/users", &[], false),
            (
                "path: {exact: /v1/users, ignore_case: true}",
                "GET",
                "/V1/USERS",
                &[],
                true,
            ),
            ("path: {exact: /v1/users}", "GET", "/v1/users?x=1", &[], true),
            ("path: {prefix: /v1/}", "GET", "/v1/x", &[], true),
            ("path: {prefix: /v1/}", "GET", "/v2/x", &[], false),
            ("path: {prefix: /V1/, ignore_case: true}", "GET", "/v1/x", &[], true),
            ("path: {prefix: /v1/long}", "GET", "/v1", &[], false),
            ("path: {regex: 'users/[0-9]+'}", "GET", "/v1/users/42/x", &[], true),
            ("path: {regex: '^/users/[0-9]+$'}", "GET", "/v1/users/42", &[], false),
            (
                "path: {regex: '^/ADMIN', ignore_case: true}",
                "GET",
                "/admin/x",
                &[],
                true,
            ),
            // method
            ("method: [POST, put]", "PUT", "/", &[], true),
            ("method: [POST, PUT]", "GET", "/", &[], false),
            ("method: [get]", "GET", "/", &[], true),
            // header
            (
                "header: {name: X-Debug, present: true}",
                "GET",
                "/",
                &[("x-debug", "1")],
                true,
            ),
            ("header: {name: X-Debug, present: true}", "GET", "/", &[], false),
            ("header: {name: X-Debug, present: false}", "GET", "/", &[], true),
            (
                "header: {name: X-Debug, present: false}",
                "GET",
                "/",
                &[("X-DEBUG", "")],
                false,
            ),
            (
                "header: {name: X-Env, value: {exact: beta}}",
                "GET",
                "/",
                &[("x-env", "prod"), ("x-env", "beta")],
                true,
            ),
            (
                "header: {name: X-Env, value: {exact: beta}}",
                "GET",
                "/",
                &[("x-env", "prod")],
                false,
            ),
            (
                "header: {name: X-Env, value: {exact: BETA, ignore_case: true}}",
                "GET",
                "/",
                &[("x-env", "beta")],
                true,
            ),
            (
                "header: {name: User-Agent, value: {prefix: curl/}}",
                "GET",
                "/",
                &[("user-agent", "curl/8")],
                true,
            ),
            (
                "header: {name: User-Agent, value: {regex: bot}}",
                "GET",
                "/",
                &[("user-agent", "Googlebot/2")],
                true,
            ),
            ("header: {name: X-Env, value: {exact: beta}}", "GET", "/", &[], false),
            // query
            (
                "query: {name: version, value: {exact: beta}}",
                "GET",
                "/?version=beta",
                &[],
                true,
            ),
            (
                "query: {name: version, value: {exact: beta}}",
                "GET",
                "/?version=alpha&version=beta",
                &[],
                true,
            ),
            (
                "query: {name: version, value: {exact: beta}}",
                "GET",
                "/?version=alpha",
                &[],
                false,
            ),
            ("query: {name: q, value: {exact: 'a b'}}", "GET", "/?q=a%20b", &[], true),
            ("query: {name: q, value: {exact: 'a b'}}", "GET", "/?q=a+b", &[], true),
            ("query: {name: q, value: {exact: 'a+b'}}", "GET", "/?q=a%2Bb", &[], true),
            ("query: {name: q, value: {exact: 'a+b'}}", "GET", "/?q=a+b", &[], false),
            ("query: {name: 'a b', present: true}", "GET", "/?a+b=1", &[], true),
            ("query: {name: 'a b', present: true}", "GET", "/?a%20b=1", &[], true),
            ("query: {name: debug, present: true}", "GET", "/?debug", &[], true),
            ("query: {name: debug, present: true}", "GET", "/?debugx=1", &[], false),
            ("query: {name: debug, present: false}", "GET", "/", &[], true),
            ("query: {name: debug, present: false}", "GET", "/?debug=0", &[], false),
            ("query: {name: v, value: {prefix: '1.'}}", "GET", "/?v=1.2", &[], true),
        ];
        for (yaml, method, target, headers, expected) in cases {
            assert_eq!(
                check(yaml, method, target, headers),
                *expected,
                "{yaml} on {method} {target} {headers:?}"
            );
        }
    }

    #[test]
    fn compile_errors_name_the_field() {
        let bad = |yaml: &str| {
            let spec: MatchSpec = serde_saphyr::from_str(yaml).unwrap();
            Condition::compile(&spec).unwrap_err()
        };
        assert_eq!(bad("path: {regex: '('}").0, "path.regex");
        assert_eq!(bad("path: {exact: a, prefix: b}").0, "path");
        assert_eq!(bad("header: {name: 'bad name', present: true}").0, "header.name");
        assert_eq!(bad("query: {name: x}").0, "query");
        assert_eq!(bad("method: ['BAD METHOD']").0, "method");
        assert_eq!(bad("{path: {exact: a}, method: [GET]}").0, "");
        assert_eq!(bad("header: {name: X, value: {regex: '['}}").0, "header.value.regex");
    }

    #[test]
    fn regexes_are_bounded_in_nesting_and_size() {
        let compile = |pattern: String| {
            StringMatcher::compile(&StringMatchSpec {
                exact: None,
                prefix: None,
                regex: Some(pattern),
                ignore_case: false,
            })
        };
        let nested = |depth: usize| format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
        assert!(compile(nested(REGEX_NEST_LIMIT as usize - 1)).is_ok());
        // 10× the bound (and far beyond): a clean error, never a stack overflow.
        for depth in [REGEX_NEST_LIMIT as usize * 10, 100_000] {
            let (field, message) = compile(nested(depth)).unwrap_err();
            assert_eq!(field, "regex");
            assert!(message.contains("nest"), "{message}");
        }
        let (_, message) = compile("a{1000}{1000}".to_string()).unwrap_err();
        assert!(message.contains("size limit"), "{message}");
    }
}
