//! A fake Kubernetes API server, started by the tests on loopback: no real
//! cluster can run here. It implements what keygate's provider uses, the
//! way the real API server does it:
//!
//! - list (`GET /api/v1/services`, `/apis/<group>/<version>[/namespaces/<ns>]/<plural>`)
//!   answering every object with the collection's `resourceVersion`;
//! - watch (`?watch=true&resourceVersion=N`): the changes after N, then live
//!   ones, as JSON lines of `ADDED`/`MODIFIED`/`DELETED` events; a watch from
//!   before the compacted history gets `410 Gone` (an `ERROR` event), which
//!   makes clients re-list;
//! - `PATCH .../<plural>/<name>/status` (merge patch of the status only),
//!   namespaced or cluster-scoped (Ingresses, GatewayClasses, Gateways,
//!   HTTPRoutes); `metadata.generation` starts at 1 and grows when the spec
//!   changes, as the real API server keeps it;
//! - Events, in both API groups that serve them: `POST` (a name or a
//!   `generateName`; an existing name is `409 AlreadyExists`) and `PATCH
//!   .../events/<name>` (merge patch, how recorders continue an Event's
//!   series). Like the real API server, one store holds them in the core/v1
//!   form and `events.k8s.io/v1` requests and answers are converted field by
//!   field (`regarding` ⇄ `involvedObject`, `note` ⇄ `message`, …), so
//!   [`FakeApi::events`] shows what `kubectl get events` would.
//!
//! Objects are real JSON serialised from `k8s-openapi` types. `restart()`
//! drops every connection and the history (like an API server restarted on
//! a compacted etcd), then serves the same objects again on the same port.
//! Selectors are not evaluated: keygate filters what it is given anyway.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use kube::Resource;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, Infallible>;

/// One stored change, as watches stream it.
#[derive(Clone)]
struct Change {
    rv: u64,
    collection: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone (the history
    /// before it is lost).
    compacted: u64,
    /// (collection, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    history: Vec<Change>,
    /// Events keygate posted, in the core/v1 form, oldest first.
    events: Vec<Value>,
}

struct Inner {
    state: Mutex<State>,
    changes: broadcast::Sender<Change>,
    /// The accept loop, connections and watch streams: aborted by `stop`.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

pub struct FakeApi {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

/// `api/v1/<plural>` or `apis/<group>/<version>/<plural>`.
fn collection_of<K: Resource<DynamicType = ()>>() -> String {
    let (group, version, plural) = (K::group(&()), K::version(&()), K::plural(&()));
    if group.is_empty() {
        format!("api/{version}/{plural}")
    } else {
        format!("apis/{group}/{version}/{plural}")
    }
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changes: broadcast::channel(1024).0,
            tasks: Mutex::new(Vec::new()),
        });
        serve(inner.clone(), listener);
        FakeApi { addr, inner }
    }

    /// A kubeconfig in `dir` pointing at this server (plain HTTP, no credentials).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig.yaml");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Creates or replaces `object` (ADDED or MODIFIED).
    pub fn apply<K: Resource<DynamicType = ()> + Serialize>(&self, object: &K) {
        let mut value = serde_json::to_value(object).unwrap();
        let collection = collection_of::<K>();
        let mut state = self.inner.state.lock().unwrap();
        state.rv += 1;
        let rv = state.rv;
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        let name = object.meta().name.clone().expect("objects need a name");
        let key = (collection.clone(), namespace.clone(), name.clone());
        let previous = state.objects.get(&key).cloned();
        let meta = &mut value["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        let uid = previous
            .as_ref()
            .map_or_else(|| json!(format!("uid-{name}-{rv}")), |p| p["metadata"]["uid"].clone());
        meta["uid"] = uid;
        if meta.get("creationTimestamp").is_none() {
            let created = previous.as_ref().map_or_else(
                || json!(format!("2024-01-01T00:00:{:02}Z", rv % 60)),
                |p| p["metadata"]["creationTimestamp"].clone(),
            );
            meta["creationTimestamp"] = created;
        }
        // Like the API server: a new object is generation 1, a changed spec
        // the next one; status changes never bump it.
        let generation = match &previous {
            None => 1,
            Some(p) => {
                let before = p["metadata"]["generation"].as_i64().unwrap_or(1);
                before + i64::from(p.get("spec") != value.get("spec"))
            }
        };
        value["metadata"]["generation"] = json!(generation);
        if let (Some(previous), None) = (&previous, value.get("status")) {
            if let Some(status) = previous.get("status") {
                value["status"] = status.clone();
            }
        }
        let kind = if previous.is_some() { "MODIFIED" } else { "ADDED" };
        state.objects.insert(key, value.clone());
        record(
            &self.inner,
            &mut state,
            Change {
                rv,
                collection,
                namespace,
                kind,
                object: value,
            },
        );
    }

    /// Deletes the object (DELETED), if it exists.
    pub fn delete<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) {
        let collection = collection_of::<K>();
        let mut state = self.inner.state.lock().unwrap();
        let Some(mut object) = state
            .objects
            .remove(&(collection.clone(), namespace.to_string(), name.to_string()))
        else {
            return;
        };
        state.rv += 1;
        let rv = state.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let change = Change {
            rv,
            collection,
            namespace: namespace.to_string(),
            kind: "DELETED",
            object,
        };
        record(&self.inner, &mut state, change);
    }

    /// The stored object, as JSON.
    pub fn get<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) -> Option<Value> {
        let key = (collection_of::<K>(), namespace.to_string(), name.to_string());
        self.inner.state.lock().unwrap().objects.get(&key).cloned()
    }

    /// The Events keygate posted so far, as core/v1 Events.
    pub fn events(&self) -> Vec<Value> {
        self.inner.state.lock().unwrap().events.clone()
    }

    /// Drops every connection and the listener: clients see the API server gone.
    pub fn stop(&self) {
        for task in self.inner.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Serves again on the same port with the same objects but no history:
    /// watches that resume from before the last change get 410 Gone and
    /// re-list.
    pub async fn start_again(&self) {
        {
            let mut state = self.inner.state.lock().unwrap();
            state.compacted = state.rv;
            state.history.clear();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot bind the fake API server again on {}: {e}", self.addr),
            }
        };
        serve(self.inner.clone(), listener);
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn record(inner: &Inner, state: &mut State, change: Change) {
    state.history.push(change.clone());
    // Sent under the state lock: a watch reads the history and subscribes
    // under it too, so it sees every change exactly once.
    let _ = inner.changes.send(change);
}

fn serve(inner: Arc<Inner>, listener: TcpListener) {
    let accept_inner = inner.clone();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let conn_inner = accept_inner.clone();
            let connection = tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let inner = conn_inner.clone();
                    async move { Ok::<_, Infallible>(handle(&inner, request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            accept_inner.tasks.lock().unwrap().push(connection);
        }
    });
    inner.tasks.lock().unwrap().push(accept);
}

fn full(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

fn status_error(code: u16, reason: &str, message: &str) -> Response<Body> {
    full(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

async fn handle(inner: &Arc<Inner>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().trim_matches('/').to_string();
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let segments: Vec<&str> = path.split('/').collect();
    let prefix_len = match segments.first() {
        Some(&"api") => 2,
        Some(&"apis") => 3,
        _ => return status_error(404, "NotFound", "unknown path"),
    };
    if segments.len() <= prefix_len {
        return status_error(404, "NotFound", "no resource named");
    }
    let prefix = segments[..prefix_len].join("/");
    let (namespace, plural, name, subresource) = match &segments[prefix_len..] {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        [plural] => (None, *plural, None, None),
        // Cluster-scoped objects (GatewayClass) and their subresources.
        [plural, name] if *plural != "namespaces" => (None, *plural, Some(*name), None),
        [plural, name, sub] if *plural != "namespaces" => (None, *plural, Some(*name), Some(*sub)),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        _ => return status_error(404, "NotFound", "unknown path"),
    };
    let collection = format!("{prefix}/{plural}");
    let method = request.method().clone();
    match (method, name, subresource) {
        (Method::GET, None, None) if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) => {
            let from = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            watch(inner, collection, namespace.map(str::to_string), from)
        }
        (Method::GET, None, None) => {
            let state = inner.state.lock().unwrap();
            let items: Vec<&Value> = state
                .objects
                .iter()
                .filter(|((c, ns, _), _)| *c == collection && namespace.is_none_or(|want| want == ns))
                .map(|(_, object)| object)
                .collect();
            full(
                200,
                &json!({"apiVersion": "v1", "kind": "List",
                              "metadata": {"resourceVersion": state.rv.to_string()}, "items": items}),
            )
        }
        (Method::POST, None, None) if plural == "events" => {
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let posted: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut event = to_core_event(&prefix, posted);
            let mut state = inner.state.lock().unwrap();
            state.rv += 1;
            let name = match event["metadata"]["name"].as_str() {
                Some(name) => name.to_string(),
                None => format!(
                    "{}{}",
                    event["metadata"]["generateName"].as_str().unwrap_or("event."),
                    state.rv
                ),
            };
            let namespace = namespace.unwrap_or_default();
            if find_event(&state.events, namespace, &name).is_some() {
                return status_error(409, "AlreadyExists", &format!("events \"{name}\" already exists"));
            }
            event["metadata"]["name"] = json!(name);
            event["metadata"]["namespace"] = json!(namespace);
            event["metadata"]["resourceVersion"] = json!(state.rv.to_string());
            state.events.push(event.clone());
            full(201, &from_core_event(&prefix, event))
        }
        (Method::PATCH, Some(name), None) if plural == "events" => {
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let patch = to_core_event(&prefix, serde_json::from_slice(&body).unwrap_or(Value::Null));
            let mut state = inner.state.lock().unwrap();
            state.rv += 1;
            let rv = state.rv;
            let Some(index) = find_event(&state.events, namespace.unwrap_or_default(), name) else {
                return status_error(404, "NotFound", &format!("events \"{name}\" not found"));
            };
            let event = &mut state.events[index];
            merge_patch(event, &patch);
            event["metadata"]["resourceVersion"] = json!(rv.to_string());
            full(200, &from_core_event(&prefix, event.clone()))
        }
        (Method::PATCH, Some(name), Some("status")) => {
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let namespace = namespace.unwrap_or_default().to_string();
            let key = (collection.clone(), namespace.clone(), name.to_string());
            let mut state = inner.state.lock().unwrap();
            let Some(mut object) = state.objects.get(&key).cloned() else {
                return status_error(404, "NotFound", "no such object");
            };
            // The /status subresource changes the status only (merge patch).
            merge_patch(&mut object["status"], &patch["status"]);
            state.rv += 1;
            let rv = state.rv;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            state.objects.insert(key, object.clone());
            record(
                inner,
                &mut state,
                Change {
                    rv,
                    collection,
                    namespace,
                    kind: "MODIFIED",
                    object: object.clone(),
                },
            );
            full(200, &object)
        }
        _ => status_error(405, "MethodNotAllowed", "not implemented by the fake API server"),
    }
}

/// `events.k8s.io/v1` field names and their core/v1 equivalents (the
/// API server's conversion; the other fields have the same name in both).
const EVENT_FIELDS: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// An Event (or a patch of one) sent to `prefix`, in the core/v1 form.
fn to_core_event(prefix: &str, event: Value) -> Value {
    convert_event(prefix, event, true)
}

/// A stored core/v1 Event as a client of `prefix` gets it.
fn from_core_event(prefix: &str, event: Value) -> Value {
    convert_event(prefix, event, false)
}

fn convert_event(prefix: &str, mut event: Value, to_core: bool) -> Value {
    if prefix != "apis/events.k8s.io/v1" {
        return event;
    }
    if let Some(fields) = event.as_object_mut() {
        for (events_name, core_name) in EVENT_FIELDS {
            let (from, to) = if to_core {
                (events_name, core_name)
            } else {
                (core_name, events_name)
            };
            if let Some(value) = fields.remove(from) {
                fields.insert(to.to_string(), value);
            }
        }
        if fields.contains_key("apiVersion") {
            fields.insert(
                "apiVersion".to_string(),
                json!(if to_core { "v1" } else { "events.k8s.io/v1" }),
            );
        }
    }
    event
}

fn find_event(events: &[Value], namespace: &str, name: &str) -> Option<usize> {
    events
        .iter()
        .position(|e| e["metadata"]["namespace"] == namespace && e["metadata"]["name"] == name)
}

/// A JSON merge patch (RFC 7386): objects merge, `null` removes, anything
/// else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in fields {
        if value.is_null() {
            if let Some(object) = target.as_object_mut() {
                object.remove(key);
            }
        } else {
            merge_patch(&mut target[key.as_str()], value);
        }
    }
}

/// Streams the changes of `collection` after `from`, then live ones.
fn watch(inner: &Arc<Inner>, collection: String, namespace: Option<String>, from: u64) -> Response<Body> {
    let matches = move |change: &Change| {
        change.collection == collection && namespace.as_ref().is_none_or(|ns| *ns == change.namespace)
    };
    let (backlog, mut live, gone) = {
        let state = inner.state.lock().unwrap();
        let live = inner.changes.subscribe();
        let gone = from != 0 && from < state.compacted;
        let backlog: Vec<Change> = state
            .history
            .iter()
            .filter(|c| c.rv > from && matches(c))
            .cloned()
            .collect();
        (backlog, live, gone)
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let line = |kind: &str, object: &Value| {
        Ok(Frame::data(Bytes::from(format!(
            "{}\n",
            json!({"type": kind, "object": object})
        ))))
    };
    let producer = tokio::spawn(async move {
        if gone {
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "too old resource version", "reason": "Expired", "code": 410});
            let _ = tx.send(line("ERROR", &status)).await;
            return;
        }
        let mut last = from;
        for change in backlog {
            last = change.rv;
            if tx.send(line(change.kind, &change.object)).await.is_err() {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(change) if change.rv > last && matches(&change) => {
                    last = change.rv;
                    if tx.send(line(change.kind, &change.object)).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    inner.tasks.lock().unwrap().push(producer);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|frame| (frame, rx)) });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}
