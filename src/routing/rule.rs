//! What a route adds to host and path: match expressions that decide
//! whether it takes a request (and its precedence among the routes of the
//! same path), its filters and its timeout.

use std::time::Duration;

use crate::policy::matcher::Condition;

use super::filters::{HeaderFilter, Redirect, Rewrite};

/// Ordering among routes with the same path match: more header matches
/// first, then more query matches, then a method match (Gateway API's rules).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Precedence {
    headers: usize,
    queries: usize,
    method: bool,
}

/// A route's request matching, filters and timeout, compiled once.
#[derive(Debug, Default)]
pub struct RouteRule {
    conditions: Box<[Condition]>,
    precedence: Precedence,
    /// Applied in order to the request the instance receives.
    pub request_headers: Box<[HeaderFilter]>,
    /// Applied in order to the instance's response.
    pub response_headers: Box<[HeaderFilter]>,
    pub rewrite: Option<Rewrite>,
    /// Set: the gateway answers with a redirect instead of forwarding.
    pub redirect: Option<Redirect>,
    /// The request's timeout on this route (instead of `limits.request_timeout`).
    pub timeout: Option<Duration>,
}

impl RouteRule {
    /// A rule with `conditions` (method, header and query expressions; a
    /// route's path is matched by the table).
    pub fn new(conditions: Vec<Condition>) -> Self {
        let count = |is: fn(&Condition) -> bool| conditions.iter().filter(|c| is(c)).count();
        let precedence = Precedence {
            headers: count(|c| matches!(c, Condition::Header { .. })),
            queries: count(|c| matches!(c, Condition::Query { .. })),
            method: conditions.iter().any(|c| matches!(c, Condition::Method(_))),
        };
        Self {
            conditions: conditions.into(),
            precedence,
            ..Self::default()
        }
    }

    pub fn precedence(&self) -> Precedence {
        self.precedence
    }

    /// Whether the route has match expressions (without, it takes every
    /// request its path matches, and hides later routes of the same path).
    pub fn is_conditional(&self) -> bool {
        !self.conditions.is_empty()
    }

    /// Whether the request satisfies every match expression.
    pub fn admits(&self, head: &http::request::Parts) -> bool {
        self.conditions.iter().all(|c| c.matches(head))
    }
}
