//! A fake Docker Engine, started by the tests on a unix socket in a temp
//! dir: no Docker engine runs where the tests do. It implements what
//! keygate's provider uses, the way the engine does it, with JSON built from
//! the field names of the Docker Engine API reference (v1.47):
//!
//! - every endpoint on unversioned (`/containers/json`) and versioned
//!   (`/v1.47/containers/json`) paths; a version above the engine's (1.47)
//!   or below its minimum (1.24) is `400` with the engine's message;
//! - `GET /_ping`, `GET /version`;
//! - `GET /containers/json` (`all`, and the `label`, `status`, `id` and
//!   `name` filters, JSON-encoded as the API takes them);
//! - `GET /containers/{id or name}/json`, `404` for an unknown container;
//! - `GET /events`: the recorded events from `since` (a unix timestamp or a
//!   duration before now, like `3s`), then live ones, as JSON lines, with
//!   the `type`, `event` (`health_status` matching every
//!   `health_status: …`), `label` and `container` filters.
//!
//! Tests drive it like the docker CLI would ([`FakeEngine::run`], `stop`,
//! `kill`, `pause`, `set_health`, `remove`, …): each changes the container
//! and emits the events a real engine emits for it. [`FakeEngine::stop_api`]
//! takes the engine away (connections dropped, socket gone), and
//! [`FakeEngine::start_again`] brings it back with the same containers and
//! no event history, like a restarted daemon.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tempfile::TempDir;
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, Infallible>;

/// The API version the fake engine speaks (Docker Engine 27.3).
const API_VERSION: (u32, u32) = (1, 47);
const MIN_API_VERSION: (u32, u32) = (1, 24);

/// A container as a test describes it (`docker run` options).
#[derive(Clone)]
pub struct Spec {
    name: String,
    image: String,
    labels: BTreeMap<String, String>,
    exposed: Vec<u16>,
    /// (network, IPv4 address), in the order given.
    networks: Vec<(String, String)>,
    /// Has a Docker healthcheck: starts `starting`.
    healthcheck: bool,
}

impl Spec {
    /// `docker run --name NAME`, on the `bridge` network at `ip`.
    pub fn new(name: &str, ip: &str) -> Spec {
        Spec {
            name: name.to_string(),
            image: "shop/app:1.0".to_string(),
            labels: BTreeMap::new(),
            exposed: Vec::new(),
            networks: vec![("bridge".to_string(), ip.to_string())],
            healthcheck: false,
        }
    }
    /// `--label key=value`.
    pub fn label(mut self, key: &str, value: &str) -> Spec {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }
    /// `--expose PORT` (tcp).
    pub fn expose(mut self, port: u16) -> Spec {
        self.exposed.push(port);
        self
    }
    /// Only on these networks (name, address) instead of `bridge`.
    pub fn networks(mut self, networks: &[(&str, &str)]) -> Spec {
        self.networks = networks.iter().map(|(n, ip)| (n.to_string(), ip.to_string())).collect();
        self
    }
    /// A service of a Compose project (the labels `docker compose` sets).
    pub fn compose(self, project: &str, service: &str, number: u32) -> Spec {
        self.label("com.docker.compose.project", project)
            .label("com.docker.compose.service", service)
            .label("com.docker.compose.container-number", &number.to_string())
            .label("com.docker.compose.oneoff", "False")
    }
    /// `--health-cmd …`: the container reports `starting` until told otherwise.
    pub fn healthcheck(mut self) -> Spec {
        self.healthcheck = true;
        self
    }
}

struct Container {
    id: String,
    spec: Spec,
    created: SystemTime,
    started: Option<SystemTime>,
    /// `created`, `running`, `paused`, `exited`.
    status: &'static str,
    exit_code: i64,
    /// `starting`, `healthy`, `unhealthy` (with a healthcheck).
    health: Option<&'static str>,
    pid: u32,
}

#[derive(Default)]
struct State {
    containers: Vec<Container>,
    /// Every event since the engine (re)started, oldest first.
    history: Vec<Value>,
    /// Request lines received (`GET /v1.47/containers/json?...`).
    requests: Vec<String>,
    next: u64,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<Value>,
    /// The accept loop, connections and event streams: aborted by `stop_api`.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A fake Docker engine on a unix socket. Stops on drop.
pub struct FakeEngine {
    pub socket: PathBuf,
    inner: Arc<Inner>,
    _dir: TempDir,
}

impl FakeEngine {
    pub async fn start() -> FakeEngine {
        let dir = tempfile::Builder::new().prefix("fake-docker").tempdir().unwrap();
        let engine = FakeEngine {
            socket: dir.path().join("docker.sock"),
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                events: broadcast::channel(1024).0,
                tasks: Mutex::new(Vec::new()),
            }),
            _dir: dir,
        };
        engine.listen();
        engine
    }

    /// `unix://<socket>`, for `providers.docker.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn listen(&self) {
        let listener = UnixListener::bind(&self.socket).unwrap();
        let inner = self.inner.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn_inner = inner.clone();
                let connection = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let inner = conn_inner.clone();
                        async move { Ok::<_, Infallible>(handle(&inner, request)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                inner.tasks.lock().unwrap().push(connection);
            }
        });
        self.inner.tasks.lock().unwrap().push(accept);
    }

    /// `docker run -d`: creates and starts the container; returns its id.
    pub fn run(&self, spec: Spec) -> String {
        let mut state = self.inner.state.lock().unwrap();
        state.next += 1;
        let id = hex(&format!("{}#{}", spec.name, state.next), 64);
        let container = Container {
            id: id.clone(),
            created: SystemTime::now(),
            started: None,
            status: "created",
            exit_code: 0,
            health: None,
            pid: 0,
            spec,
        };
        state.containers.push(container);
        self.emit(&mut state, &id, "create", &[]);
        drop(state);
        self.start_container(&id);
        id
    }

    /// `docker start`.
    pub fn start_container(&self, id: &str) {
        self.change(id, |c| {
            c.status = "running";
            c.started = Some(SystemTime::now());
            c.pid = 4000 + c.id.len() as u32;
            c.health = c.spec.healthcheck.then_some("starting");
            vec![("start", vec![])]
        });
    }

    /// `docker stop`: SIGTERM, the process exits 0.
    pub fn stop(&self, id: &str) {
        self.change(id, |c| {
            c.status = "exited";
            c.exit_code = 0;
            c.pid = 0;
            c.health = c.health.map(|_| "unhealthy");
            vec![
                ("kill", vec![("signal", "15")]),
                ("die", vec![("exitCode", "0")]),
                ("stop", vec![]),
            ]
        });
    }

    /// The process died by itself (`exitCode` 137).
    pub fn crash(&self, id: &str) {
        self.change(id, |c| {
            c.status = "exited";
            c.exit_code = 137;
            c.pid = 0;
            c.health = c.health.map(|_| "unhealthy");
            vec![("die", vec![("exitCode", "137")])]
        });
    }

    /// `docker pause`.
    pub fn pause(&self, id: &str) {
        self.change(id, |c| {
            c.status = "paused";
            vec![("pause", vec![])]
        });
    }

    /// `docker unpause`.
    pub fn unpause(&self, id: &str) {
        self.change(id, |c| {
            c.status = "running";
            vec![("unpause", vec![])]
        });
    }

    /// The healthcheck's verdict changed: `healthy` or `unhealthy`.
    pub fn set_health(&self, id: &str, health: &'static str) {
        self.change(id, |c| {
            c.health = Some(health);
            vec![(
                if health == "healthy" {
                    "health_status: healthy"
                } else {
                    "health_status: unhealthy"
                },
                vec![],
            )]
        });
    }

    /// `docker rm -f`: stopped if running, then removed.
    pub fn remove(&self, id: &str) {
        if self.with(id, |c| c.status == "running" || c.status == "paused") {
            self.crash(id);
        }
        let mut state = self.inner.state.lock().unwrap();
        let Some(index) = state.containers.iter().position(|c| c.id == id) else {
            return;
        };
        self.emit(&mut state, id, "destroy", &[]);
        state.containers.remove(index);
    }

    /// Changes container `id` without any event (what happens while nobody
    /// listens: the engine is down for keygate).
    pub fn stop_silently(&self, id: &str) {
        let mut state = self.inner.state.lock().unwrap();
        if let Some(c) = state.containers.iter_mut().find(|c| c.id == id) {
            c.status = "exited";
            c.pid = 0;
        }
    }

    /// Takes the engine away: every connection and event stream is cut and
    /// the socket is removed.
    pub fn stop_api(&self) {
        for task in self.inner.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Serves again (a restarted daemon): same containers, no event history.
    pub fn start_again(&self) {
        self.inner.state.lock().unwrap().history.clear();
        self.listen();
    }

    /// Request lines received so far (`GET /v1.47/events?since=…`).
    pub fn requests(&self) -> Vec<String> {
        self.inner.state.lock().unwrap().requests.clone()
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&Container) -> T) -> T {
        let state = self.inner.state.lock().unwrap();
        f(state
            .containers
            .iter()
            .find(|c| c.id == id)
            .expect("a container of this engine"))
    }

    /// Applies `f` to container `id` and emits the events it returns.
    fn change(
        &self,
        id: &str,
        f: impl FnOnce(&mut Container) -> Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
    ) {
        let mut state = self.inner.state.lock().unwrap();
        let container = state
            .containers
            .iter_mut()
            .find(|c| c.id == id)
            .expect("a container of this engine");
        for (action, extra) in f(container) {
            self.emit(&mut state, id, action, &extra);
        }
    }

    /// Records and broadcasts an event under the state lock: an event stream
    /// reads the history and subscribes under it too, so it sees each once.
    fn emit(&self, state: &mut State, id: &str, action: &str, extra: &[(&str, &str)]) {
        let container = state
            .containers
            .iter()
            .find(|c| c.id == id)
            .expect("a container of this engine");
        let mut attributes: Map<String, Value> = container
            .spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        attributes.insert("image".into(), json!(container.spec.image));
        attributes.insert("name".into(), json!(container.spec.name));
        for (key, value) in extra {
            attributes.insert(key.to_string(), json!(value));
        }
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let event = json!({
            "Type": "container",
            "Action": action,
            "Actor": {"ID": id, "Attributes": attributes},
            "scope": "local",
            "time": (nanos / 1_000_000_000) as u64,
            "timeNano": nanos as u64,
        });
        state.history.push(event.clone());
        let _ = self.inner.events.send(event);
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.stop_api();
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

fn hex(seed: &str, len: usize) -> String {
    let mut x: u64 = seed.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap()
        })
        .collect()
}

impl Container {
    fn running(&self) -> bool {
        matches!(self.status, "running" | "paused")
    }

    /// `GET /containers/{id}/json`.
    fn inspect(&self) -> Value {
        let networks: Map<String, Value> = self
            .spec
            .networks
            .iter()
            .map(|(name, ip)| {
                // A stopped container keeps its endpoints without addresses.
                let (ip, gateway, prefix) = if self.running() { (ip.as_str(), "172.17.0.1", 16) } else { ("", "", 0) };
                let endpoint = json!({
                    "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": if self.running() { "02:42:ac:11:00:02" } else { "" },
                    "DriverOpts": null, "NetworkID": hex(name, 64), "EndpointID": if self.running() { hex(&self.id, 64) } else { String::new() },
                    "Gateway": gateway, "IPAddress": ip, "IPPrefixLen": prefix, "IPv6Gateway": "",
                    "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null,
                });
                (name.clone(), endpoint)
            })
            .collect();
        let exposed: Map<String, Value> = self
            .spec
            .exposed
            .iter()
            .map(|p| (format!("{p}/tcp"), json!({})))
            .collect();
        let ports: Map<String, Value> = self
            .spec
            .exposed
            .iter()
            .map(|p| (format!("{p}/tcp"), Value::Null))
            .collect();
        let mut state = json!({
            "Status": self.status,
            "Running": self.running(),
            "Paused": self.status == "paused",
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "Pid": self.pid,
            "ExitCode": self.exit_code,
            "Error": "",
            "StartedAt": self.started.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
            "FinishedAt": if self.running() { "0001-01-01T00:00:00Z".to_string() } else { rfc3339(SystemTime::now()) },
        });
        if let Some(health) = self.health {
            state["Health"] =
                json!({"Status": health, "FailingStreak": if health == "unhealthy" { 3 } else { 0 }, "Log": []});
        }
        json!({
            "Id": self.id,
            "Created": rfc3339(self.created),
            "Path": "/app",
            "Args": [],
            "State": state,
            "Image": format!("sha256:{}", hex(&self.spec.image, 64)),
            "ResolvConfPath": format!("/var/lib/docker/containers/{}/resolv.conf", self.id),
            "HostnamePath": format!("/var/lib/docker/containers/{}/hostname", self.id),
            "HostsPath": format!("/var/lib/docker/containers/{}/hosts", self.id),
            "LogPath": format!("/var/lib/docker/containers/{0}/{0}-json.log", self.id),
            "Name": format!("/{}", self.spec.name),
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "docker-default",
            "ExecIDs": null,
            "HostConfig": {"NetworkMode": self.spec.networks.first().map_or("none", |(n, _)| n.as_str()),
                           "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": false},
            "GraphDriver": {"Name": "overlay2", "Data": {}},
            "Mounts": [],
            "Config": {
                "Hostname": &self.id[..12], "Domainname": "", "User": "",
                "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
                "ExposedPorts": exposed, "Tty": false, "OpenStdin": false, "StdinOnce": false,
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/app"], "Image": self.spec.image, "Volumes": null, "WorkingDir": "",
                "Entrypoint": null, "OnBuild": null, "Labels": self.spec.labels,
            },
            "NetworkSettings": {
                "Bridge": "", "SandboxID": hex(&self.spec.name, 64), "SandboxKey": format!("/var/run/docker/netns/{}", hex(&self.id, 12)),
                "Ports": ports, "Networks": networks,
            },
        })
    }

    /// One entry of `GET /containers/json`.
    fn summary(&self) -> Value {
        let inspected = self.inspect();
        let status = match (self.status, self.health) {
            ("paused", _) => "Up 1 second (Paused)".to_string(),
            ("running", Some("starting")) => "Up 1 second (health: starting)".to_string(),
            ("running", Some(health)) => format!("Up 1 second ({health})"),
            ("running", None) => "Up 1 second".to_string(),
            _ => format!("Exited ({}) 1 second ago", self.exit_code),
        };
        json!({
            "Id": self.id,
            "Names": [format!("/{}", self.spec.name)],
            "Image": self.spec.image,
            "ImageID": inspected["Image"],
            "Command": "/app",
            "Created": self.created.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            "Ports": self.spec.exposed.iter().map(|p| json!({"PrivatePort": p, "Type": "tcp"})).collect::<Vec<_>>(),
            "Labels": self.spec.labels,
            "State": self.status,
            "Status": status,
            "HostConfig": {"NetworkMode": inspected["HostConfig"]["NetworkMode"]},
            "NetworkSettings": {"Networks": inspected["NetworkSettings"]["Networks"]},
            "Mounts": [],
        })
    }
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("api-version", format!("{}.{}", API_VERSION.0, API_VERSION.1))
        .header("server", "Docker/27.3.1 (linux)")
        .body(Full::new(Bytes::from(format!("{body}\n"))).boxed())
        .unwrap()
}

fn error(status: u16, message: &str) -> Response<Body> {
    json_response(status, &json!({"message": message}))
}

/// `/v1.47/x` → (`/x`, Some((1, 47))); `/x` → (`/x`, None).
fn split_version(path: &str) -> (String, Option<(u32, u32)>) {
    let Some(rest) = path.strip_prefix("/v") else {
        return (path.to_string(), None);
    };
    let (version, tail) = rest.split_once('/').map_or((rest, ""), |(v, t)| (v, t));
    let parsed = version
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
    match parsed {
        Some(version) => (format!("/{tail}"), Some(version)),
        None => (path.to_string(), None),
    }
}

/// The API's `filters` query parameter: `{"key": ["value", …]}` (also the
/// older `{"key": {"value": true}}` form).
fn filters(query: &HashMap<String, String>) -> Result<HashMap<String, Vec<String>>, String> {
    let Some(text) = query.get("filters").filter(|t| !t.is_empty()) else {
        return Ok(HashMap::new());
    };
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid filter: {e}"))?;
    let object = value.as_object().ok_or("invalid filter: not an object")?;
    Ok(object
        .iter()
        .map(|(key, values)| {
            let values = match values {
                Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                Value::Object(map) => map.keys().cloned().collect(),
                _ => Vec::new(),
            };
            (key.clone(), values)
        })
        .collect())
}

/// `label` filters: every `key` or `key=value` must hold.
fn labels_match(wanted: Option<&Vec<String>>, labels: &Map<String, Value>) -> bool {
    wanted.into_iter().flatten().all(|filter| match filter.split_once('=') {
        Some((key, value)) => labels.get(key).and_then(Value::as_str) == Some(value),
        None => labels.contains_key(filter),
    })
}

fn handle(inner: &Arc<Inner>, request: Request<Incoming>) -> Response<Body> {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |pq| pq.to_string());
    inner
        .state
        .lock()
        .unwrap()
        .requests
        .push(format!("{} {target}", request.method()));
    let (path, version) = split_version(request.uri().path());
    if let Some(version) = version {
        if version > API_VERSION {
            return error(
                400,
                &format!(
                    "client version {}.{} is too new. Maximum supported API version is {}.{}",
                    version.0, version.1, API_VERSION.0, API_VERSION.1
                ),
            );
        }
        if version < MIN_API_VERSION {
            return error(
                400,
                &format!(
                    "client version {}.{} is too old. Minimum supported API version is {}.{}, please upgrade your client to a newer version",
                    version.0, version.1, MIN_API_VERSION.0, MIN_API_VERSION.1
                ),
            );
        }
    }
    let query: HashMap<String, String> = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method(), segments.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => Response::builder()
            .status(200)
            .header("content-type", "text/plain; charset=utf-8")
            .header("api-version", format!("{}.{}", API_VERSION.0, API_VERSION.1))
            .header("docker-experimental", "false")
            .header("ostype", "linux")
            .header("cache-control", "no-cache, no-store, must-revalidate")
            .header("pragma", "no-cache")
            .body(Full::new(Bytes::from_static(b"OK")).boxed())
            .unwrap(),
        (&Method::GET, ["version"]) => json_response(200, &version_body()),
        (&Method::GET, ["containers", "json"]) => {
            let filters = match filters(&query) {
                Ok(filters) => filters,
                Err(message) => return error(400, &message),
            };
            let all = matches!(query.get("all").map(String::as_str), Some("1" | "true" | "True"));
            let state = inner.state.lock().unwrap();
            let listed: Vec<Value> = state
                .containers
                .iter()
                .rev()
                .filter(|c| all || c.running())
                .map(Container::summary)
                .filter(|s| {
                    let labels = s["Labels"].as_object().cloned().unwrap_or_default();
                    let name = s["Names"][0].as_str().unwrap_or("").trim_start_matches('/');
                    let id = s["Id"].as_str().unwrap_or("");
                    labels_match(filters.get("label"), &labels)
                        && filters
                            .get("status")
                            .is_none_or(|w| w.iter().any(|st| s["State"] == st.as_str()))
                        && filters
                            .get("id")
                            .is_none_or(|w| w.iter().any(|p| id.starts_with(p.as_str())))
                        && filters
                            .get("name")
                            .is_none_or(|w| w.iter().any(|n| name.contains(n.as_str())))
                })
                .collect();
            json_response(200, &Value::Array(listed))
        }
        (&Method::GET, ["containers", wanted, "json"]) => {
            let state = inner.state.lock().unwrap();
            let found = state
                .containers
                .iter()
                .find(|c| c.id == *wanted || c.spec.name == *wanted)
                .or_else(|| state.containers.iter().find(|c| c.id.starts_with(*wanted)));
            match found {
                Some(container) => json_response(200, &container.inspect()),
                None => error(404, &format!("No such container: {wanted}")),
            }
        }
        (&Method::GET, ["events"]) => match (filters(&query), since(query.get("since"))) {
            (Ok(filters), Ok(since)) => events(inner, filters, since),
            (Err(message), _) | (_, Err(message)) => error(400, &message),
        },
        _ => error(404, "page not found"),
    }
}

fn version_body() -> Value {
    let api = format!("{}.{}", API_VERSION.0, API_VERSION.1);
    let min = format!("{}.{}", MIN_API_VERSION.0, MIN_API_VERSION.1);
    json!({
        "Platform": {"Name": "Docker Engine - Community"},
        "Components": [{"Name": "Engine", "Version": "27.3.1", "Details": {
            "ApiVersion": api, "Arch": "amd64", "BuildTime": "2024-09-20T11:41:03.000000000+00:00",
            "Experimental": "false", "GitCommit": "41ca978", "GoVersion": "go1.22.7",
            "KernelVersion": "6.1.0", "MinAPIVersion": min, "Os": "linux"}}],
        "Version": "27.3.1",
        "ApiVersion": api,
        "MinAPIVersion": min,
        "GitCommit": "41ca978",
        "GoVersion": "go1.22.7",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": "6.1.0",
        "BuildTime": "2024-09-20T11:41:03.000000000+00:00",
    })
}

/// `since`: unix seconds (maybe with a fraction) or a duration before now
/// (`3s`, `10m`), as the engine takes it; in unix nanoseconds.
fn since(value: Option<&String>) -> Result<Option<u128>, String> {
    let Some(text) = value.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok(Some((seconds * 1e9) as u128));
    }
    let ago = humantime::parse_duration(text).map_err(|_| format!("invalid value for since: {text:?}"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Ok(Some(now.saturating_sub(ago).as_nanos()))
}

/// Whether `event` passes the `type`, `event`, `label` and `container` filters.
fn event_matches(filters: &HashMap<String, Vec<String>>, event: &Value) -> bool {
    let action = event["Action"].as_str().unwrap_or("");
    let attributes = event["Actor"]["Attributes"].as_object().cloned().unwrap_or_default();
    let types_ok = filters
        .get("type")
        .is_none_or(|w| w.iter().any(|t| event["Type"] == t.as_str()));
    // The engine matches `health_status` (no colon) against every
    // `health_status: <status>` action.
    let actions_ok = filters.get("event").is_none_or(|wanted| {
        wanted
            .iter()
            .any(|w| action == w || (w == "health_status" && action.starts_with("health_status")))
    });
    let containers_ok = filters.get("container").is_none_or(|wanted| {
        let id = event["Actor"]["ID"].as_str().unwrap_or("");
        wanted
            .iter()
            .any(|w| id.starts_with(w.as_str()) || attributes.get("name").and_then(Value::as_str) == Some(w))
    });
    types_ok && actions_ok && containers_ok && labels_match(filters.get("label"), &attributes)
}

/// Streams the recorded events from `since`, then live ones, one JSON
/// document per line, until the client goes away.
fn events(inner: &Arc<Inner>, filters: HashMap<String, Vec<String>>, since: Option<u128>) -> Response<Body> {
    let (backlog, mut live) = {
        let state = inner.state.lock().unwrap();
        let live = inner.events.subscribe();
        let backlog: Vec<Value> = match since {
            Some(since) => state
                .history
                .iter()
                .filter(|e| u128::from(e["timeNano"].as_u64().unwrap_or(0)) >= since)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (backlog, live)
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let line = |event: &Value| Ok(Frame::data(Bytes::from(format!("{event}\n"))));
    let producer = tokio::spawn(async move {
        for event in backlog.iter().filter(|e| event_matches(&filters, e)) {
            if tx.send(line(event)).await.is_err() {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(event) if event_matches(&filters, &event) => {
                    if tx.send(line(&event)).await.is_err() {
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
        .header("api-version", format!("{}.{}", API_VERSION.0, API_VERSION.1))
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}
