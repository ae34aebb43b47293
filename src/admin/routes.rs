//! The gateway's own admin endpoints: the resolved routing table
//! (`GET /v1/routes`, what `keygate routes` prints), the certificates
//! (`GET /v1/certs`) and `POST /v1/admin.reload`.

use crate::errors::ErrorCode;
use crate::routing::PathMatch;
use crate::runtime::Snapshot;

/// The resolved routing table as JSON, for `GET /v1/routes` and `keygate routes`.
pub fn describe(snapshot: &Snapshot) -> serde_json::Value {
    let mut routes: Vec<serde_json::Value> = snapshot
        .routes
        .iter()
        .map(|(host, routed)| {
            serde_json::json!({
                "host": host,
                "path_prefix": routed.prefix.as_str(),
                "path_regex": match &routed.path {
                    PathMatch::Regex(regex) => Some(regex.as_str()),
                    _ => None,
                },
                "strip_prefix": routed.strip_prefix,
                "exact": routed.exact(),
                "conditional": routed.rule.is_conditional(),
                "redirect": routed.rule.redirect.is_some(),
                "deployment": routed.target.deployment().map(|d| &*d.id),
                "backends": routed.target.backends.iter()
                    .map(|(d, weight)| serde_json::json!({"deployment": &*d.id, "weight": weight}))
                    .collect::<Vec<_>>(),
                "refusal": routed.target.refusal.map(ErrorCode::code),
                "provider": routed.target.provider.name(),
            })
        })
        .collect();
    routes.sort_by(|a, b| {
        (a["host"].as_str(), a["path_prefix"].as_str()).cmp(&(b["host"].as_str(), b["path_prefix"].as_str()))
    });
    let deployments: Vec<serde_json::Value> = snapshot
        .deployments
        .iter()
        .map(|d| {
            serde_json::json!({
                "id": &*d.id,
                "environment": &*d.environment,
                "protocol": d.protocol.name(),
                "selection": d.selection.name(),
                "policies": d.policies.summary().map(|(id, kind)| format!("{id} ({kind})")).collect::<Vec<_>>(),
                "instances": d.instances.current().iter().map(|e| serde_json::json!({
                    "address": e.target.to_string(),
                    "healthy": e.is_healthy(),
                    "available": e.is_available(),
                    "in_flight": e.in_flight(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({"routes": routes, "deployments": deployments})
}
