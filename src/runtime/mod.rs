//! The running configuration: the compiled [`Snapshot`] every request reads,
//! how it is compiled from the file ([`compile`]), how providers' routing is
//! merged into it and published ([`Hub`]), and the accounting of requests in
//! flight that a graceful shutdown waits for.
//!
//! Everything above this module (the proxy, the admin API, providers) reads
//! snapshots; everything below it (policies, routing, instances, TLS, keys)
//! is a building block compiled into one and knows nothing of snapshots.

mod compile;
mod followers;
mod in_flight;
mod platform;
mod providers;
mod publish;
mod services;
mod snapshot;

pub use in_flight::{InFlight, InFlightCounter};
pub use platform::{is_slug, PlatformSettings, Project, DEFAULT_APP};
pub use providers::{DockerEndpoint, DockerSettings, KubernetesSettings, PolicySets, ProvidersSettings};
pub use publish::{merge, Hub, Merged, ProviderId, Route, Routing, SharedSnapshot};
pub use services::{Services, ServicesError};
pub use snapshot::{Deployment, Limits, Listeners, RouteTarget, Snapshot};
