//! Gateway API statuses: what the translation says about each GatewayClass,
//! Gateway and HTTPRoute keygate serves ([`StatusUpdate`]), and the writer
//! that patches their `/status` subresource when it differs.
//!
//! Every replica computes and writes the same status, so no leader is
//! needed. Statuses are compared without `lastTransitionTime` (each
//! replica's clock differs): a status that only differs there is never
//! written, and a condition that keeps its status keeps its time.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use super::objects::{Gateway, GatewayClass, HttpRoute};

/// Which kind a status belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusKind {
    GatewayClass,
    Gateway,
    HttpRoute,
}

/// The status one object should have.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub kind: StatusKind,
    /// Empty for a GatewayClass (cluster-scoped).
    pub namespace: String,
    pub name: String,
    pub resource_version: Option<String>,
    /// The object's status now.
    pub current: Option<Value>,
    /// The status it should have, conditions without `lastTransitionTime`.
    pub desired: Value,
}

/// A status condition as the translation states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    pub fn new(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    /// The condition's JSON for an object of `generation`.
    pub fn to_json(&self, generation: Option<i64>) -> Value {
        let mut value = json!({
            "type": self.type_,
            "status": if self.status { "True" } else { "False" },
            "reason": self.reason,
            "message": self.message,
        });
        if let Some(generation) = generation {
            value["observedGeneration"] = json!(generation);
        }
        value
    }
}

/// The JSON of `conditions` for an object of `generation`.
pub fn conditions(list: &[Condition], generation: Option<i64>) -> Value {
    Value::Array(list.iter().map(|c| c.to_json(generation)).collect())
}

/// Patches statuses that differ from what they should be.
pub struct StatusWriter {
    client: Client,
    /// What was last written to each object, and its resourceVersion then:
    /// until the watch brings a newer version, it is not written again.
    written: HashMap<(StatusKind, String, String), (Option<String>, Value)>,
}

impl StatusWriter {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            written: HashMap::new(),
        }
    }

    /// Writes each of `updates` whose object's status differs.
    pub fn update(&mut self, updates: &[StatusUpdate]) {
        self.written.retain(|(kind, namespace, name), _| {
            updates
                .iter()
                .any(|u| u.kind == *kind && u.namespace == *namespace && u.name == *name)
        });
        for update in updates {
            let current = update.current.as_ref().map(without_times);
            if current.as_ref() == Some(&update.desired) {
                continue;
            }
            let key = (update.kind, update.namespace.clone(), update.name.clone());
            let pending = (update.resource_version.clone(), update.desired.clone());
            if self.written.get(&key) == Some(&pending) {
                continue;
            }
            self.written.insert(key, pending);
            let mut status = update.desired.clone();
            stamp(&mut status, update.current.as_ref(), &now());
            self.patch(update, status);
        }
    }

    fn patch(&self, update: &StatusUpdate, status: Value) {
        let patch = json!({ "status": status });
        let (client, name, namespace, kind) = (
            self.client.clone(),
            update.name.clone(),
            update.namespace.clone(),
            update.kind,
        );
        tokio::spawn(async move {
            let params = PatchParams::default();
            let patch = Patch::Merge(&patch);
            let result = match kind {
                StatusKind::GatewayClass => Api::<GatewayClass>::all(client)
                    .patch_status(&name, &params, &patch)
                    .await
                    .map(drop),
                StatusKind::Gateway => Api::<Gateway>::namespaced(client, &namespace)
                    .patch_status(&name, &params, &patch)
                    .await
                    .map(drop),
                StatusKind::HttpRoute => Api::<HttpRoute>::namespaced(client, &namespace)
                    .patch_status(&name, &params, &patch)
                    .await
                    .map(drop),
            };
            if let Err(error) = result {
                tracing::warn!(kind = ?kind, namespace, name, "cannot update the status: {error}");
            }
        });
    }
}

fn now() -> Value {
    serde_json::to_value(Time(k8s_openapi::jiff::Timestamp::now())).unwrap_or(Value::Null)
}

/// `status` without any `lastTransitionTime`.
pub fn without_times(status: &Value) -> Value {
    match status {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(key, _)| key.as_str() != "lastTransitionTime")
                .map(|(key, value)| (key.clone(), without_times(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

/// Gives every condition in `desired` a `lastTransitionTime`: the one of
/// the same condition in `current` when its status is unchanged, else `now`.
fn stamp(desired: &mut Value, current: Option<&Value>, now: &Value) {
    match desired {
        Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                let before = current.and_then(|c| c.get(key));
                if key == "conditions" {
                    stamp_conditions(value, before, now);
                } else {
                    stamp(value, before, now);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let before = current
                    .and_then(Value::as_array)
                    .and_then(|list| counterpart(list, item, i));
                stamp(item, before, now);
            }
        }
        _ => {}
    }
}

/// The element of `list` that `item` (at `index`) stands for: same `name`
/// (listeners), same `parentRef` (route parents), else the same position.
fn counterpart<'a>(list: &'a [Value], item: &Value, index: usize) -> Option<&'a Value> {
    for key in ["name", "parentRef"] {
        if let Some(id) = item.get(key) {
            return list.iter().find(|other| other.get(key) == Some(id));
        }
    }
    list.get(index)
}

fn stamp_conditions(desired: &mut Value, current: Option<&Value>, now: &Value) {
    let Some(list) = desired.as_array_mut() else { return };
    for condition in list {
        let before = current.and_then(Value::as_array).and_then(|old| {
            old.iter()
                .find(|c| c.get("type") == condition.get("type") && c.get("status") == condition.get("status"))
        });
        let time = before
            .and_then(|c| c.get("lastTransitionTime"))
            .filter(|t| !t.is_null())
            .unwrap_or(now)
            .clone();
        condition["lastTransitionTime"] = time;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_condition_keeps_its_time() {
        let current = json!({"conditions": [
            {"type": "Accepted", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
            {"type": "Programmed", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
        ], "listeners": [{"name": "web", "conditions": [
            {"type": "Accepted", "status": "True", "lastTransitionTime": "2024-01-02T00:00:00Z"},
        ]}]});
        let mut desired = json!({"conditions": [
            {"type": "Accepted", "status": "True"},
            {"type": "Programmed", "status": "False"},
        ], "listeners": [{"name": "new"}, {"name": "web", "conditions": [{"type": "Accepted", "status": "True"}]}]});
        let now = json!("2025-01-01T00:00:00Z");
        stamp(&mut desired, Some(&current), &now);
        assert_eq!(desired["conditions"][0]["lastTransitionTime"], "2024-01-01T00:00:00Z");
        assert_eq!(desired["conditions"][1]["lastTransitionTime"], now);
        assert_eq!(
            desired["listeners"][1]["conditions"][0]["lastTransitionTime"],
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            without_times(&desired)["conditions"][1],
            json!({"type": "Programmed", "status": "False"})
        );
    }
}
