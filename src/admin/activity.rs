//! What this replica served lately, for the dashboard: `GET /v1/requests`
//! (the recent-requests ring, `?after=<seq>` for what is new since the
//! last poll) and `GET /v1/stats` (each deployment's last hour by minute).

use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::telemetry::recent::recent;

/// `{requests: [...oldest first], last}`: the requests after `after`, and
/// the sequence number to poll from next.
pub fn requests(query: Option<&str>) -> Value {
    let after = query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find(|(name, _)| name == "after")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let (requests, last) = recent().after(after);
    json!({"requests": requests, "last": last})
}

/// `{deployments: [{id, minutes: [{at, requests, errors, p50_ms, p99_ms}]}]}`.
pub fn stats() -> Value {
    let deployments: Vec<Value> = recent()
        .series(now_ms())
        .into_iter()
        .map(|(id, minutes)| json!({"id": &*id, "minutes": minutes}))
        .collect();
    json!({"deployments": deployments})
}
