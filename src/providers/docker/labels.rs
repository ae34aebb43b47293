//! The `keygate.*` container labels: how a container asks to be served.
//! Parsed with the same rules as the configuration file (hosts, path
//! prefixes, durations, protocols); a label that does not parse is an
//! error naming it, and the container is not served until it is fixed.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::config::deployment::{HealthCheckSpec, ProtocolSpec};
use crate::routing::{HostPattern, PathPrefix};
use crate::upstream::health::HealthCheck;
use crate::upstream::Protocol;

pub const ENABLE: &str = "keygate.enable";
pub const HOST: &str = "keygate.host";
pub const PATH_PREFIX: &str = "keygate.path_prefix";
pub const STRIP_PREFIX: &str = "keygate.strip_prefix";
pub const PORT: &str = "keygate.port";
pub const PROTOCOL: &str = "keygate.protocol";
pub const DEPLOYMENT: &str = "keygate.deployment";
pub const POLICIES: &str = "keygate.policies";
pub const HEALTH_PATH: &str = "keygate.health.path";
pub const HEALTH_INTERVAL: &str = "keygate.health.interval";
/// Set by Docker Compose on every container of a project's service.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// A label that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {label}: {message}")]
pub struct LabelError {
    pub label: &'static str,
    pub message: String,
}

fn error(label: &'static str, message: impl Into<String>) -> LabelError {
    LabelError {
        label,
        message: message.into(),
    }
}

/// Whether the container is to be served: `keygate.enable`, else the
/// provider's `exposed_by_default`.
pub fn enabled(labels: &BTreeMap<String, String>, exposed_by_default: bool) -> Result<bool, LabelError> {
    match labels.get(ENABLE) {
        Some(text) => boolean(ENABLE, text),
        None => Ok(exposed_by_default),
    }
}

/// What the routing labels of one container say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// `keygate.host`, each as written and parsed.
    pub hosts: Vec<(String, HostPattern)>,
    pub path_prefix: PathPrefix,
    pub strip_prefix: bool,
    pub protocol: Protocol,
    /// `keygate.policies`: a `policy_sets` name.
    pub policies: Option<String>,
    pub health_check: Option<HealthCheck>,
}

impl Routing {
    pub fn parse(labels: &BTreeMap<String, String>) -> Result<Self, LabelError> {
        let mut hosts = Vec::new();
        for text in labels.get(HOST).map(String::as_str).unwrap_or("").split(',') {
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let host = HostPattern::parse(text).map_err(|message| error(HOST, message))?;
            if !hosts.iter().any(|(_, seen)| *seen == host) {
                hosts.push((text.to_ascii_lowercase(), host));
            }
        }
        let path_prefix = match labels.get(PATH_PREFIX) {
            Some(text) => PathPrefix::parse(text.trim()).map_err(|message| error(PATH_PREFIX, message))?,
            None => PathPrefix::root(),
        };
        let strip_prefix = match labels.get(STRIP_PREFIX) {
            Some(text) => boolean(STRIP_PREFIX, text)?,
            None => false,
        };
        let protocol: Protocol = match labels.get(PROTOCOL) {
            Some(text) => from_text::<ProtocolSpec>(PROTOCOL, serde_json::Value::from(text.trim()))?.into(),
            None => Protocol::default(),
        };
        let policies = match labels.get(POLICIES).map(|name| name.trim()) {
            Some("") => return Err(error(POLICIES, "names no policy set")),
            other => other.map(str::to_string),
        };
        Ok(Self {
            hosts,
            path_prefix,
            strip_prefix,
            protocol,
            policies,
            health_check: health_check(labels, protocol)?,
        })
    }
}

/// `keygate.health.path` and `keygate.health.interval` as an active health
/// check; the other settings are the `health_check` defaults.
fn health_check(labels: &BTreeMap<String, String>, protocol: Protocol) -> Result<Option<HealthCheck>, LabelError> {
    let Some(path) = labels.get(HEALTH_PATH) else {
        if labels.contains_key(HEALTH_INTERVAL) {
            return Err(error(HEALTH_INTERVAL, format!("needs {HEALTH_PATH} too")));
        }
        return Ok(None);
    };
    let mut fields = serde_json::Map::new();
    fields.insert("path".into(), path.trim().into());
    if let Some(interval) = labels.get(HEALTH_INTERVAL) {
        fields.insert("interval".into(), interval.trim().into());
    }
    let spec: HealthCheckSpec = from_text(HEALTH_INTERVAL, fields.into())?;
    HealthCheck::compile(&spec, protocol)
        .map(Some)
        .map_err(|(field, message)| error(if field == "path" { HEALTH_PATH } else { HEALTH_INTERVAL }, message))
}

/// `keygate.port`: the container port to dial.
pub fn port(labels: &BTreeMap<String, String>) -> Result<Option<u16>, LabelError> {
    let Some(text) = labels.get(PORT) else { return Ok(None) };
    match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(Some(port)),
        _ => Err(error(PORT, format!("{text:?} is not a port number"))),
    }
}

/// `keygate.deployment`, when set.
pub fn deployment(labels: &BTreeMap<String, String>) -> Result<Option<&str>, LabelError> {
    match labels.get(DEPLOYMENT).map(|id| id.trim()) {
        Some("") => Err(error(DEPLOYMENT, "the deployment id cannot be empty")),
        other => Ok(other),
    }
}

fn boolean(label: &'static str, text: &str) -> Result<bool, LabelError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(error(label, format!("{text:?} is not true or false"))),
    }
}

/// A label value through the configuration file's own parser for the type.
fn from_text<T: DeserializeOwned>(label: &'static str, value: serde_json::Value) -> Result<T, LabelError> {
    serde_json::from_value(value).map_err(|e| error(label, e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_routing_label() {
        let parsed = Routing::parse(&labels(&[
            (HOST, "Shop.Example.com, *.preview.example.com,shop.example.com"),
            (PATH_PREFIX, "/api"),
            (STRIP_PREFIX, "true"),
            (PROTOCOL, "h2c"),
            (POLICIES, " public-api "),
            (HEALTH_PATH, "/healthz"),
            (HEALTH_INTERVAL, "250ms"),
        ]))
        .unwrap();
        let hosts: Vec<&str> = parsed.hosts.iter().map(|(text, _)| text.as_str()).collect();
        assert_eq!(hosts, ["shop.example.com", "*.preview.example.com"]);
        assert_eq!(parsed.path_prefix.as_str(), "/api");
        assert!(parsed.strip_prefix);
        assert_eq!(parsed.protocol, Protocol::H2c);
        assert_eq!(parsed.policies.as_deref(), Some("public-api"));
        let check = parsed.health_check.unwrap();
        assert_eq!(
            (check.path.as_str(), check.interval, check.protocol),
            ("/healthz", Duration::from_millis(250), Protocol::H2c)
        );
        assert_eq!(check.failure_threshold, 3, "the health_check defaults");
    }

    #[test]
    fn defaults() {
        let parsed = Routing::parse(&labels(&[])).unwrap();
        assert!(parsed.hosts.is_empty());
        assert!(parsed.path_prefix.is_root());
        assert!(!parsed.strip_prefix);
        assert_eq!(parsed.protocol, Protocol::Http1);
        assert_eq!((parsed.policies, parsed.health_check), (None, None));
        assert_eq!(port(&labels(&[])), Ok(None));
        assert_eq!(deployment(&labels(&[])), Ok(None));
        assert_eq!(enabled(&labels(&[]), false), Ok(false));
        assert_eq!(enabled(&labels(&[]), true), Ok(true));
        assert_eq!(enabled(&labels(&[(ENABLE, "false")]), true), Ok(false));
        assert_eq!(enabled(&labels(&[(ENABLE, "TRUE")]), false), Ok(true));
    }

    #[test]
    fn bad_labels_are_named() {
        let bad = |pairs: &[(&str, &str)]| Routing::parse(&labels(pairs)).unwrap_err().label;
        assert_eq!(bad(&[(HOST, "a.*.com")]), HOST);
        assert_eq!(bad(&[(PATH_PREFIX, "api")]), PATH_PREFIX);
        assert_eq!(bad(&[(STRIP_PREFIX, "yes please")]), STRIP_PREFIX);
        assert_eq!(bad(&[(PROTOCOL, "h3")]), PROTOCOL);
        assert_eq!(bad(&[(POLICIES, " ")]), POLICIES);
        assert_eq!(bad(&[(HEALTH_INTERVAL, "1s")]), HEALTH_INTERVAL);
        assert_eq!(bad(&[(HEALTH_PATH, "/h"), (HEALTH_INTERVAL, "soon")]), HEALTH_INTERVAL);
        assert_eq!(bad(&[(HEALTH_PATH, "healthz")]), HEALTH_PATH);
        assert_eq!(port(&labels(&[(PORT, "0")])).unwrap_err().label, PORT);
        assert_eq!(port(&labels(&[(PORT, "http")])).unwrap_err().label, PORT);
        assert_eq!(port(&labels(&[(PORT, " 8080 ")])), Ok(Some(8080)));
        assert_eq!(deployment(&labels(&[(DEPLOYMENT, "")])).unwrap_err().label, DEPLOYMENT);
        assert_eq!(enabled(&labels(&[(ENABLE, "maybe")]), true).unwrap_err().label, ENABLE);
        let message = Routing::parse(&labels(&[(PROTOCOL, "h3")])).unwrap_err().to_string();
        assert!(
            message.starts_with("label keygate.protocol: unknown variant `h3`"),
            "{message}"
        );
    }
}
