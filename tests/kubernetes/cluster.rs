//! A fake cluster for the Kubernetes tests (Ingress and Gateway API): the
//! fake API server with keygate's IngressClass and published Service, a
//! kubeconfig for it, and builders for the objects every test needs
//! (Services whose ready endpoints are loopback upstreams).
//!
//! Included with `#[path]` next to `fake_api.rs`; each test binary uses
//! part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{IngressClass, IngressClassSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tempfile::TempDir;

use super::fake_api::FakeApi;
use super::support::gateway::Gateway;
use super::support::upstreams::Upstream;

/// The namespace tests put their objects in unless they say otherwise.
pub const NS: &str = "shop";
/// The address the published Service (`keygate/keygate`) has.
pub const PUBLISHED_IP: &str = "192.0.2.10";

/// A fake API server and a kubeconfig for it.
pub struct Cluster {
    pub api: FakeApi,
    pub kubeconfig: std::path::PathBuf,
    _dir: TempDir,
}

impl Cluster {
    /// A cluster with keygate's IngressClass and its published Service.
    pub async fn start() -> Cluster {
        let api = FakeApi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = api.write_kubeconfig(dir.path());
        api.apply(&IngressClass {
            metadata: meta("", "keygate"),
            spec: Some(IngressClassSpec {
                controller: Some("keygate.dev/ingress-controller".into()),
                parameters: None,
            }),
        });
        let mut published = (*service_object("keygate", "keygate")).clone();
        published.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(PUBLISHED_IP.into()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            conditions: None,
        });
        api.apply(&published);
        Cluster {
            api,
            kubeconfig,
            _dir: dir,
        }
    }

    /// A gateway config: the Kubernetes provider plus `extra` (listen, file routes).
    pub fn config(&self, extra: &str) -> String {
        format!(
            "{extra}providers:\n  kubernetes:\n    kubeconfig: \"{}\"\n    publish_service: keygate/keygate\n",
            self.kubeconfig.display()
        )
    }

    pub async fn gateway(&self) -> Gateway {
        Gateway::start(&self.config("")).await
    }

    /// Service `name` in [`NS`] (port 80 named `http`) whose ready endpoints are `upstreams`.
    pub fn service(&self, name: &str, upstreams: &[&Upstream]) {
        self.service_in(NS, name, upstreams);
    }

    /// Service `namespace/name` (port 80 named `http`) whose ready endpoints are `upstreams`.
    pub fn service_in(&self, namespace: &str, name: &str, upstreams: &[&Upstream]) {
        self.api.apply(&*service_object(namespace, name));
        for (i, upstream) in upstreams.iter().enumerate() {
            self.api.apply(&slice_in(namespace, name, i, upstream.addr, Some(true)));
        }
    }
}

pub fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

pub fn service_object(namespace: &str, name: &str) -> Arc<Service> {
    Arc::new(Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// EndpointSlice `i` of `service` in [`NS`]: one endpoint at `addr` (port `http`).
pub fn slice(service: &str, i: usize, addr: SocketAddr, ready: Option<bool>) -> EndpointSlice {
    slice_in(NS, service, i, addr, ready)
}

/// EndpointSlice `i` of `namespace/service`: one endpoint at `addr` (port `http`).
pub fn slice_in(namespace: &str, service: &str, i: usize, addr: SocketAddr, ready: Option<bool>) -> EndpointSlice {
    let mut metadata = meta(namespace, &format!("{service}-{i}"));
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        service.to_string(),
    )]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![addr.ip().to_string()],
            conditions: Some(EndpointConditions {
                ready,
                ..EndpointConditions::default()
            }),
            ..Endpoint::default()
        }],
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(i32::from(addr.port())),
            ..EndpointPort::default()
        }]),
    }
}
