//! Objects for the provider's unit tests (Ingress and Gateway API alike):
//! a Service with one `http` port and its EndpointSlice.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `namespace/name` (no namespace when empty).
pub fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

/// Service `namespace/name` with port 80 named `http`.
pub fn service(namespace: &str, name: &str) -> Arc<Service> {
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

/// The EndpointSlice of `service` (port `http` → 8080) with `(ip, ready)` endpoints.
pub fn slice(namespace: &str, service: &str, endpoints: &[(&str, Option<bool>)]) -> Arc<EndpointSlice> {
    let mut metadata = meta(namespace, &format!("{service}-abc"));
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        service.to_string(),
    )]));
    Arc::new(EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|(ip, ready)| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            ..EndpointPort::default()
        }]),
    })
}
