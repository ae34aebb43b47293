//! What keygate reads of a container: the few fields of `docker inspect`
//! that decide whether and where it is served. Built from the Engine API's
//! inspect response; everything else of the container is ignored.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A container, as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    /// The image as it was asked for (`Config.Image`, e.g. `shop/api:1.4`):
    /// what a deployment created through an API will be linked by.
    pub image: String,
    /// When it was created: the oldest container of a deployment states its
    /// routing labels.
    pub created: Option<OffsetDateTime>,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
    /// `State.Health.Status`; `None` without a Docker healthcheck.
    pub health: Option<Health>,
    /// Its networks by name (the order `docker inspect` shows), with its
    /// address on each (`None`: no address there, e.g. `host` networking).
    pub networks: Vec<(String, Option<IpAddr>)>,
    /// `Config.ExposedPorts` that are TCP, ascending.
    pub exposed_tcp_ports: Vec<u16>,
}

/// The container's process state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    /// Created, restarting, exited, dead, being removed: no process to dial.
    Stopped,
}

/// A Docker healthcheck's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Container {
    /// From an inspect response; `None` when it lacks an id.
    pub fn from_inspect(inspected: ContainerInspectResponse) -> Option<Self> {
        let id = inspected.id.filter(|id| !id.is_empty())?;
        let config = inspected.config.unwrap_or_default();
        let state = inspected.state.unwrap_or_default();
        let run_state = match (state.status, state.running, state.paused) {
            (Some(ContainerStateStatusEnum::PAUSED), ..) | (_, Some(true), Some(true)) => RunState::Paused,
            (Some(ContainerStateStatusEnum::RUNNING), ..) => RunState::Running,
            (None | Some(ContainerStateStatusEnum::EMPTY), Some(true), _) if state.restarting != Some(true) => {
                RunState::Running
            }
            _ => RunState::Stopped,
        };
        let health = match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::STARTING) => Some(Health::Starting),
            Some(HealthStatusEnum::HEALTHY) => Some(Health::Healthy),
            Some(HealthStatusEnum::UNHEALTHY) => Some(Health::Unhealthy),
            Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) | None => None,
        };
        let mut networks: Vec<(String, Option<IpAddr>)> = inspected
            .network_settings
            .and_then(|settings| settings.networks)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, endpoint)| {
                let address = [endpoint.ip_address, endpoint.global_ipv6_address]
                    .into_iter()
                    .flatten()
                    .find_map(|text| text.parse::<IpAddr>().ok());
                (name, address)
            })
            .collect();
        // The Engine API sends networks as a JSON object sorted by name.
        networks.sort_by(|a, b| a.0.cmp(&b.0));
        let mut exposed_tcp_ports: Vec<u16> = config
            .exposed_ports
            .unwrap_or_default()
            .iter()
            .filter_map(|port| match port.split_once('/') {
                Some((number, "tcp")) => number.parse().ok(),
                Some(_) => None,
                None => port.parse().ok(),
            })
            .collect();
        exposed_tcp_ports.sort_unstable();
        exposed_tcp_ports.dedup();
        Some(Self {
            name: inspected.name.unwrap_or_default().trim_start_matches('/').to_string(),
            image: config.image.unwrap_or_default(),
            created: inspected
                .created
                .and_then(|text| OffsetDateTime::parse(&text, &Rfc3339).ok()),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            state: run_state,
            health,
            networks,
            exposed_tcp_ports,
            id,
        })
    }

    /// Whether requests may go to it: running, not paused, and not
    /// `starting` or `unhealthy` by its Docker healthcheck.
    pub fn is_ready(&self) -> bool {
        self.state == RunState::Running && !matches!(self.health, Some(Health::Starting | Health::Unhealthy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect(json: serde_json::Value) -> Option<Container> {
        Container::from_inspect(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn reads_what_docker_inspect_says() {
        let container = inspect(serde_json::json!({
            "Id": "4fa6e0f0c6786287e131c3852c58a2e01cc697a68231826813597e4994f1d6e2",
            "Created": "2024-05-01T10:00:00.123456789Z",
            "Name": "/shop-api-1",
            "State": {"Status": "running", "Running": true, "Paused": false, "Restarting": false,
                      "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []}},
            "Config": {"Image": "shop/api:1.4", "Labels": {"keygate.enable": "true"},
                       "ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "9090/tcp": {}}},
            "NetworkSettings": {"Networks": {
                "web": {"IPAddress": "172.18.0.5", "GlobalIPv6Address": ""},
                "backend": {"IPAddress": "", "GlobalIPv6Address": "fd00::5"}
            }}
        }))
        .unwrap();
        assert_eq!(container.name, "shop-api-1");
        assert_eq!(container.image, "shop/api:1.4");
        assert_eq!(container.exposed_tcp_ports, vec![8080, 9090]);
        assert_eq!(
            container.networks,
            vec![
                ("backend".into(), Some("fd00::5".parse().unwrap())),
                ("web".into(), Some("172.18.0.5".parse().unwrap()))
            ]
        );
        assert_eq!(container.state, RunState::Running);
        assert_eq!(container.health, Some(Health::Healthy));
        assert!(container.created.is_some());
        assert!(container.is_ready());
    }

    #[test]
    fn paused_starting_unhealthy_and_stopped_are_not_ready() {
        let state = |state: serde_json::Value| inspect(serde_json::json!({"Id": "c1", "State": state})).unwrap();
        let paused = state(serde_json::json!({"Status": "paused", "Running": true, "Paused": true}));
        assert_eq!(paused.state, RunState::Paused);
        let exited = state(serde_json::json!({"Status": "exited", "Running": false}));
        assert_eq!(exited.state, RunState::Stopped);
        let restarting = state(serde_json::json!({"Status": "restarting", "Running": true, "Restarting": true}));
        assert_eq!(restarting.state, RunState::Stopped);
        for (health, ready) in [
            ("starting", false),
            ("unhealthy", false),
            ("healthy", true),
            ("none", true),
        ] {
            let container =
                state(serde_json::json!({"Status": "running", "Running": true, "Health": {"Status": health}}));
            assert_eq!(container.is_ready(), ready, "{health}");
        }
        assert!(!paused.is_ready() && !exited.is_ready());
        assert!(inspect(serde_json::json!({"Name": "/no-id"})).is_none());
    }
}
