//! Permission queries: `api.read AND (api.write OR
//! admin)`. Parsed once — at config load for `keyauth.permission_query`, per
//! call for the admin API's `verifyKey` — into a tree that is only evaluated
//! per request; and a key's permission list compiled into [`Grants`].
//!
//! Grammar (AND binds tighter than OR, operators case-insensitive):
//! `query := and (OR and)*`, `and := atom (AND atom)*`,
//! `atom := permission | "(" query ")"`; a permission is letters, digits
//! and `. _ - * :`. In a query `*` is literal. Parentheses nest at most
//! [`MAX_NESTING`] deep: the parser (and every walk of the tree) recurses
//! once per level, so the bound is checked before recursing and a query
//! from a file, an admin call or a Kubernetes object can never exhaust the
//! stack.

use std::collections::HashSet;

/// How deep parentheses may nest in a permission query.
pub const MAX_NESTING: usize = 32;

/// A parsed permission query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionQuery {
    Permission(String),
    And(Vec<PermissionQuery>),
    Or(Vec<PermissionQuery>),
}

/// Why a query does not parse; positions are byte offsets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("invalid character {0:?} at position {1} (permissions use letters, digits and . _ - * :)")]
    InvalidCharacter(char, usize),
    #[error("expected a permission or \"(\" at position {0}")]
    ExpectedOperand(usize),
    #[error("expected AND, OR or \")\" at position {0}")]
    ExpectedOperator(usize),
    #[error("unclosed \"(\" at position {0}")]
    Unclosed(usize),
    #[error("unexpected \")\" at position {0}")]
    UnexpectedClose(usize),
    #[error("parentheses nested deeper than {MAX_NESTING} at position {0}")]
    TooDeep(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Permission(&'a str),
    And,
    Or,
    Open,
    Close,
}

fn is_permission_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | ':')
}

fn tokenize(text: &str) -> Result<Vec<(Token<'_>, usize)>, QueryError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' {
            chars.next();
            tokens.push((if c == '(' { Token::Open } else { Token::Close }, at));
        } else if is_permission_char(c) {
            let mut end = at;
            while let Some(&(i, c)) = chars.peek() {
                if !is_permission_char(c) {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            let word = &text[at..end];
            let token = if word.eq_ignore_ascii_case("and") {
                Token::And
            } else if word.eq_ignore_ascii_case("or") {
                Token::Or
            } else {
                Token::Permission(word)
            };
            tokens.push((token, at));
        } else {
            return Err(QueryError::InvalidCharacter(c, at));
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<(Token<'a>, usize)>,
    next: usize,
    end: usize,
    /// Open parentheses around the current position.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.next).map(|(t, _)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |(_, at)| *at)
    }

    fn or(&mut self) -> Result<PermissionQuery, QueryError> {
        let mut terms = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.next += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            PermissionQuery::Or(terms)
        })
    }

    fn and(&mut self) -> Result<PermissionQuery, QueryError> {
        let mut terms = vec![self.atom()?];
        while self.peek() == Some(&Token::And) {
            self.next += 1;
            terms.push(self.atom()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            PermissionQuery::And(terms)
        })
    }

    fn atom(&mut self) -> Result<PermissionQuery, QueryError> {
        let at = self.position();
        match self.peek().cloned() {
            Some(Token::Permission(name)) => {
                self.next += 1;
                Ok(PermissionQuery::Permission(name.to_string()))
            }
            Some(Token::Open) => {
                if self.depth == MAX_NESTING {
                    return Err(QueryError::TooDeep(at));
                }
                self.next += 1;
                self.depth += 1;
                let inner = self.or()?;
                self.depth -= 1;
                match self.peek() {
                    Some(Token::Close) => {
                        self.next += 1;
                        Ok(inner)
                    }
                    None => Err(QueryError::Unclosed(at)),
                    Some(_) => Err(QueryError::ExpectedOperator(self.position())),
                }
            }
            _ => Err(QueryError::ExpectedOperand(at)),
        }
    }
}

impl PermissionQuery {
    /// Parses `text`; an empty (or blank) query is `None`: no permission needed.
    pub fn parse(text: &str) -> Result<Option<Self>, QueryError> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Ok(None);
        }
        let mut parser = Parser {
            tokens,
            next: 0,
            end: text.len(),
            depth: 0,
        };
        let query = parser.or()?;
        match parser.peek() {
            None => Ok(Some(query)),
            Some(Token::Close) => Err(QueryError::UnexpectedClose(parser.position())),
            Some(_) => Err(QueryError::ExpectedOperator(parser.position())),
        }
    }

    pub fn is_satisfied_by(&self, grants: &Grants) -> bool {
        match self {
            Self::Permission(name) => grants.grants(name),
            Self::And(terms) => terms.iter().all(|t| t.is_satisfied_by(grants)),
            Self::Or(terms) => terms.iter().any(|t| t.is_satisfied_by(grants)),
        }
    }
}

/// A key's permission list, compiled for lookups: exact names,
/// `prefix.*` wildcards and `*`. Permissions are case-sensitive.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    exact: HashSet<String>,
    /// `documents.*` is kept as `documents.`.
    prefixes: Vec<String>,
    all: bool,
}

impl Grants {
    pub fn compile(permissions: &[String]) -> Self {
        let mut grants = Self::default();
        for permission in permissions {
            if permission == "*" {
                grants.all = true;
            } else if let Some(stem) = permission.strip_suffix(".*") {
                grants.prefixes.push(format!("{stem}."));
            }
            grants.exact.insert(permission.clone());
        }
        grants
    }

    pub fn grants(&self, permission: &str) -> bool {
        self.all
            || self.exact.contains(permission)
            || self
                .prefixes
                .iter()
                .any(|p| permission.len() > p.len() && permission.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &str, permissions: &[&str]) -> bool {
        let grants = Grants::compile(&permissions.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        match PermissionQuery::parse(query).unwrap() {
            Some(q) => q.is_satisfied_by(&grants),
            None => true,
        }
    }

    fn perm(name: &str) -> PermissionQuery {
        PermissionQuery::Permission(name.into())
    }

    #[test]
    fn evaluation_cases() {
        let cases: &[(&str, &[&str], bool)] = &[
            ("api.read", &["api.read"], true),
            ("api.read", &["api.write"], false),
            ("api.read", &[], false),
            ("api.read AND api.write", &["api.read", "api.write"], true),
            ("api.read AND api.write", &["api.read"], false),
            ("api.read OR api.write", &["api.write"], true),
            ("api.read OR api.write", &["other"], false),
            ("api.read and api.write", &["api.read", "api.write"], true),
            ("api.read oR api.write", &["api.write"], true),
            ("a OR b AND c", &["a"], true),
            ("a OR b AND c", &["b"], false),
            ("a OR b AND c", &["b", "c"], true),
            ("(a OR b) AND c", &["a"], false),
            ("(a OR b) AND c", &["a", "c"], true),
            ("a AND (b OR c)", &["a", "c"], true),
            ("api.read AND (api.write OR admin)", &["api.read", "admin"], true),
            ("api.read AND (api.write OR admin)", &["admin"], false),
            ("((a))", &["a"], true),
            ("(a)AND(b)", &["a", "b"], true),
            ("documents.read", &["documents.*"], true),
            ("documents.a.b", &["documents.*"], true),
            ("documents", &["documents.*"], false),
            ("documentsx.read", &["documents.*"], false),
            ("anything.at:all", &["*"], true),
            ("x:y", &["x:*"], false),
            ("x:*", &["x:*"], true),
            ("documents.*", &["documents.read"], false),
            ("API.READ", &["api.read"], false),
            ("", &[], true),
            ("   ", &[], true),
            ("a-b_c:d.e", &["a-b_c:d.e"], true),
            ("a OR b OR c AND d", &["c"], false),
            ("a OR b OR c AND d", &["c", "d"], true),
        ];
        for (query, permissions, want) in cases {
            assert_eq!(check(query, permissions), *want, "{query:?} with {permissions:?}");
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            PermissionQuery::parse("a OR b AND c").unwrap(),
            Some(PermissionQuery::Or(vec![
                perm("a"),
                PermissionQuery::And(vec![perm("b"), perm("c")])
            ]))
        );
        assert_eq!(
            PermissionQuery::parse("a AND b OR c").unwrap(),
            Some(PermissionQuery::Or(vec![
                PermissionQuery::And(vec![perm("a"), perm("b")]),
                perm("c")
            ]))
        );
    }

    #[test]
    fn parse_errors() {
        let err = |q: &str| PermissionQuery::parse(q).unwrap_err();
        assert_eq!(err("a AND"), QueryError::ExpectedOperand(5));
        assert_eq!(err("AND a"), QueryError::ExpectedOperand(0));
        assert_eq!(err("a b"), QueryError::ExpectedOperator(2));
        assert_eq!(err("(a OR b"), QueryError::Unclosed(0));
        assert_eq!(err("a)"), QueryError::UnexpectedClose(1));
        assert_eq!(err("()"), QueryError::ExpectedOperand(1));
        assert_eq!(err("a && b"), QueryError::InvalidCharacter('&', 2));
        assert_eq!(err("a OR OR b"), QueryError::ExpectedOperand(5));
        assert_eq!(err("café"), QueryError::InvalidCharacter('é', 3));
        assert!(err("(a) (b)").to_string().contains("expected AND, OR"));
    }

    #[test]
    fn nesting_is_bounded_before_recursing() {
        let nested = |depth: usize| format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
        assert!(PermissionQuery::parse(&nested(MAX_NESTING)).unwrap().is_some());
        assert_eq!(
            PermissionQuery::parse(&nested(MAX_NESTING + 1)),
            Err(QueryError::TooDeep(MAX_NESTING))
        );
        // 10× the bound and far beyond: a clean error, never a stack overflow.
        for depth in [MAX_NESTING * 10, 5_000, 100_000] {
            assert!(matches!(
                PermissionQuery::parse(&nested(depth)),
                Err(QueryError::TooDeep(_))
            ));
            assert!(matches!(
                PermissionQuery::parse(&"(".repeat(depth)),
                Err(QueryError::TooDeep(_))
            ));
        }
    }
}
