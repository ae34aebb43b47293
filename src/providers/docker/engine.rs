//! The Docker Engine API as the provider uses it, through `bollard`: the
//! running containers (one list, then an inspect of each), one container,
//! and the stream of container events. The API version is negotiated with
//! the engine (`/version`) and every later path names it (`/v1.47/…`), so
//! an older engine is spoken to in its version and a newer one in ours.

use std::collections::HashMap;

use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use bollard::{BollardRequest, Docker, API_DEFAULT_VERSION};
use futures::{Stream, StreamExt};

use super::container::{Container, RunState};
use crate::runtime::DockerEndpoint;

/// Seconds an API call may take before it counts as failed (the event
/// stream only has to start within it).
const CALL_TIMEOUT_SECS: u64 = 10;

/// The container events that can change what is served.
const ACTIONS: [&str; 8] = [
    "start",
    "stop",
    "die",
    "pause",
    "unpause",
    "health_status",
    "destroy",
    "rename",
];

/// Why the engine could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Api(#[from] bollard::errors::Error),
    #[error("the event stream ended")]
    EventsEnded,
}

/// A container event: which container, and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub id: String,
    /// `start`, `die`, `health_status: unhealthy`, …
    pub action: String,
}

impl ContainerEvent {
    /// Whether the event takes the container out of service (used when it
    /// cannot be inspected any more to find out).
    pub fn takes_out(&self) -> bool {
        matches!(self.action.as_str(), "stop" | "die" | "pause" | "destroy")
            || self.action.starts_with("health_status: unhealthy")
            || self.action.starts_with("health_status: starting")
    }
}

/// A connection to one engine.
pub struct Engine {
    docker: Docker,
    /// `label=…` filters: only containers that may be served.
    labels: Vec<String>,
}

impl Engine {
    /// Connects to `endpoint` and agrees on an API version; `only_enabled`
    /// asks the engine for `keygate.enable=true` containers only.
    pub async fn connect(endpoint: &DockerEndpoint, only_enabled: bool) -> Result<Self, EngineError> {
        let docker = match endpoint {
            DockerEndpoint::Unix(path) => {
                Docker::connect_with_unix(&path.to_string_lossy(), CALL_TIMEOUT_SECS, API_DEFAULT_VERSION)?
            }
            DockerEndpoint::Tcp(address) => Docker::connect_with_http(address, CALL_TIMEOUT_SECS, API_DEFAULT_VERSION)?,
        };
        let docker = docker.negotiate_version().await?;
        let version = docker.client_version();
        let prefix = format!("/v{}.{}", version.major_version, version.minor_version);
        let docker = docker.with_request_modifier(move |request| versioned(request, &prefix));
        let labels = if only_enabled {
            vec![format!("{}=true", super::labels::ENABLE)]
        } else {
            Vec::new()
        };
        Ok(Self { docker, labels })
    }

    fn filters(&self) -> HashMap<String, Vec<String>> {
        let mut filters = HashMap::new();
        if !self.labels.is_empty() {
            filters.insert("label".to_string(), self.labels.clone());
        }
        filters
    }

    /// Every running (or paused) container that may be served.
    pub async fn running(&self) -> Result<Vec<Container>, EngineError> {
        let options = ListContainersOptions {
            all: false,
            filters: Some(self.filters()),
            ..ListContainersOptions::default()
        };
        let mut containers = Vec::new();
        for summary in self.docker.list_containers(Some(options)).await? {
            let Some(id) = summary.id else { continue };
            // Gone between the list and the inspect: nothing to serve.
            if let Some(container) = self.inspect(&id).await? {
                containers.push(container);
            }
        }
        Ok(containers)
    }

    /// Container `id` while it has a process (running or paused); `None`
    /// once it stopped or is gone.
    pub async fn inspect(&self, id: &str) -> Result<Option<Container>, EngineError> {
        match self.docker.inspect_container(id, None::<InspectContainerOptions>).await {
            Ok(inspected) => Ok(Container::from_inspect(inspected).filter(|c| c.state != RunState::Stopped)),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Container events from `since` (a duration before the engine's now,
    /// e.g. `3s`, so the two clocks need not agree), then live ones.
    pub fn events(&self, since: &str) -> impl Stream<Item = Result<ContainerEvent, EngineError>> + Unpin {
        let mut filters = self.filters();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        filters.insert("event".to_string(), ACTIONS.iter().map(|a| a.to_string()).collect());
        let options = EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        };
        self.docker.events(Some(options)).filter_map(|message| {
            futures::future::ready(match message {
                Ok(message) => message.actor.and_then(|actor| actor.id).map(|id| {
                    Ok(ContainerEvent {
                        id,
                        action: message.action.unwrap_or_default(),
                    })
                }),
                Err(error) => Some(Err(error.into())),
            })
        })
    }
}

/// `request` with its path under `prefix` (`/v1.47`): bollard sends
/// unversioned paths, which the engine answers in its newest version (and
/// which Docker deprecates).
fn versioned(request: BollardRequest, prefix: &str) -> BollardRequest {
    let (mut head, body) = request.into_parts();
    let mut uri = head.uri.clone().into_parts();
    let path = uri.path_and_query.as_ref().map_or("/", |p| p.as_str());
    if !path.starts_with("/v1.") {
        if let Ok(prefixed) = format!("{prefix}{path}").parse() {
            uri.path_and_query = Some(prefixed);
            if let Ok(rewritten) = http::Uri::from_parts(uri) {
                head.uri = rewritten;
            }
        }
    }
    BollardRequest::from_parts(head, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_agreed_version() {
        let request = |uri: &str| {
            http::Request::get(uri)
                .body(bollard::body_full(bytes::Bytes::new()))
                .unwrap()
        };
        let path = |uri: &str| versioned(request(uri), "/v1.44").uri().to_string();
        assert_eq!(
            path("http://127.0.0.1:2375/containers/json?all=false"),
            "http://127.0.0.1:2375/v1.44/containers/json?all=false"
        );
        assert_eq!(
            path("http://127.0.0.1:2375/v1.41/version"),
            "http://127.0.0.1:2375/v1.41/version"
        );
    }

    #[test]
    fn events_that_take_a_container_out() {
        let event = |action: &str| ContainerEvent {
            id: "c".into(),
            action: action.into(),
        };
        for action in [
            "stop",
            "die",
            "pause",
            "destroy",
            "health_status: unhealthy",
            "health_status: starting",
        ] {
            assert!(event(action).takes_out(), "{action}");
        }
        for action in ["start", "unpause", "rename", "health_status: healthy"] {
            assert!(!event(action).takes_out(), "{action}");
        }
    }
}
