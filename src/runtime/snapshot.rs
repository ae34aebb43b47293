//! The runtime form of a configuration: everything a request needs,
//! compiled once (hosts normalised, instances resolved, CIDRs parsed,
//! deployments resolved for routes) and swapped in whole. The request path
//! loads one `Arc<Snapshot>` and never sees config text.

use http::HeaderValue;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::errors::ErrorCode;
use crate::keys::Keys;
use crate::net::IpSet;
use crate::policy::PolicyChain;
use crate::routing::{Backends, RouteTable};
use crate::state::StateSettings;
use crate::telemetry::recent::{recent, Series};
use crate::telemetry::request_log::RequestLogSettings;
use crate::telemetry::traces::TracingSettings;
use crate::telemetry::{metrics, Durations, Label};
use crate::tls::TlsSettings;
use crate::upstream::health::HealthCheck;
use crate::upstream::{Endpoints, Entry, InstanceSet, PassivePolicy, Protocol, Strategy, Target};

use super::platform::PlatformSettings;
use super::providers::PolicySets;
use super::publish::{ProviderId, Routing};
use super::ProvidersSettings;
use super::Services;

/// A deployment as requests see it.
#[derive(Debug)]
pub struct Deployment {
    pub id: Arc<str>,
    /// The id as the `X-Deployment-Id` value, made once (`None`: the id
    /// holds a byte no field may carry, and requests to it fail).
    pub id_header: Option<HeaderValue>,
    pub environment: Box<str>,
    pub instances: InstanceSet,
    pub protocol: Protocol,
    pub selection: Strategy,
    pub passive: PassivePolicy,
    pub health_check: Option<HealthCheck>,
    pub dns_refresh: Duration,
    /// `openapi:` — the spec `openapi` policies check requests against.
    pub openapi: Option<Arc<crate::openapi::SpecSlot>>,
    pub policies: PolicyChain,
    /// Its latency histograms, resolved once.
    pub durations: Durations,
    /// Its series in the dashboard's recent requests, resolved on its first request.
    pub recent_series: OnceLock<Arc<Series>>,
}

impl Deployment {
    /// A deployment with default upstream settings: plain HTTP/1.1 to fixed
    /// addresses, no health checks (what providers without an `upstream:`
    /// section, like Kubernetes, produce).
    pub fn plain(id: Arc<str>, instances: Vec<SocketAddr>, policies: PolicyChain, endpoints: &Endpoints) -> Self {
        let targets = instances.into_iter().map(Target::Network).collect();
        let durations = Self::durations_of(&id);
        Self {
            instances: InstanceSet::new(id.clone(), vec![Entry::Fixed(targets)], endpoints),
            id_header: HeaderValue::from_str(&id).ok(),
            id,
            environment: "production".into(),
            protocol: Protocol::Http1,
            selection: Strategy::default(),
            passive: PassivePolicy::default(),
            health_check: None,
            dns_refresh: Duration::from_secs(10),
            openapi: None,
            policies,
            durations,
            recent_series: OnceLock::new(),
        }
    }

    /// Its series in the dashboard's recent requests (a deployment that
    /// never answered has none to show).
    pub fn recent_series(&self) -> &Series {
        self.recent_series.get_or_init(|| recent().series_of(&self.id))
    }

    /// The latency histograms of the deployment `id`.
    pub fn durations_of(id: &Arc<str>) -> Durations {
        metrics().durations(&Label(Some(id.clone())))
    }
}

/// Where a route sends a request; `host_label` is the route's host as
/// configured (bounded cardinality, for metrics).
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// The deployments, weighted; none for a route that answers itself (a redirect).
    pub backends: Backends<Arc<Deployment>>,
    pub host_label: Arc<str>,
    /// Set when a provider's route cannot be served as stated: the request
    /// is answered with this error before any policy or instance (e.g. an
    /// Ingress naming a policy that does not exist).
    pub refusal: Option<ErrorCode>,
    /// Where the route comes from; the Hub stamps it when it merges the
    /// provider's share (what `keygate routes` shows).
    pub provider: ProviderId,
}

impl RouteTarget {
    /// A route to one deployment.
    pub fn new(deployment: Arc<Deployment>, host_label: &str) -> Self {
        Self::weighted(Backends::single(deployment), host_label)
    }

    /// A route split over weighted deployments (or none).
    pub fn weighted(backends: Backends<Arc<Deployment>>, host_label: &str) -> Self {
        Self {
            backends,
            host_label: host_label.to_ascii_lowercase().into(),
            refusal: None,
            provider: ProviderId::File,
        }
    }

    /// The deployment the route is listed under (its first weighted backend).
    pub fn deployment(&self) -> Option<&Arc<Deployment>> {
        self.backends.primary()
    }

    /// The deployment for one request: weighted at random among those with
    /// an available instance (when none has one, the first answers why).
    pub fn choose(&self) -> Option<&Arc<Deployment>> {
        self.backends.pick(rand::random(), |d| d.instances.available() > 0)
    }
}

/// Timeouts and sizes from `limits`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub read_header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_request_body: u64,
    pub read_body_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub allow_underscores_in_headers: bool,
}

impl Limits {
    /// The longest request line accepted (414 beyond it).
    pub const MAX_REQUEST_LINE: usize = 8 << 10;
    /// The most header fields `max_headers` may allow (the parser's own bound).
    pub const MAX_HEADERS_CEILING: usize = 256;
}

/// Listener addresses; they are bound at start-up and a reload cannot move them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listeners {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub threads: usize,
}

/// Everything compiled from one configuration file, with the routes and
/// deployments of every provider merged in (see [`super::publish`]).
#[derive(Debug)]
pub struct Snapshot {
    pub routes: RouteTable<RouteTarget>,
    pub deployments: Vec<Arc<Deployment>>,
    /// The file's own deployments and routes, kept to merge again when
    /// another provider changes.
    pub file_routing: Arc<Routing>,
    /// Which providers run besides the file.
    pub providers: ProvidersSettings,
    /// `policy_sets:`, for the deployments providers build.
    pub policy_sets: Arc<PolicySets>,
    /// `platform:` and `projects:`, for the control plane.
    pub platform: Arc<PlatformSettings>,
    pub limits: Limits,
    pub trusted_proxies: IpSet,
    pub docs_base: Box<str>,
    pub root_keys: Vec<Box<str>>,
    pub listen: Listeners,
    pub request_log: RequestLogSettings,
    /// `telemetry.tracing`; `None` when tracing is off.
    pub tracing: Option<TracingSettings>,
    pub tls: TlsSettings,
    pub state: StateSettings,
    /// The key service and this config's static keys (`keyspaces`).
    pub keys: Keys,
    /// The process's services, for providers compiling deployments.
    pub services: Services,
}

impl Snapshot {
    /// This snapshot with another routing table: the file's settings stay,
    /// the routes and deployments are `routes` and `deployments`.
    pub fn with_routing(&self, routes: RouteTable<RouteTarget>, deployments: Vec<Arc<Deployment>>) -> Self {
        Self {
            routes,
            deployments,
            file_routing: self.file_routing.clone(),
            providers: self.providers.clone(),
            policy_sets: self.policy_sets.clone(),
            platform: self.platform.clone(),
            limits: self.limits.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            docs_base: self.docs_base.clone(),
            root_keys: self.root_keys.clone(),
            listen: self.listen,
            request_log: self.request_log.clone(),
            tracing: self.tracing.clone(),
            tls: self.tls.clone(),
            state: self.state.clone(),
            keys: self.keys.clone(),
            services: self.services.clone(),
        }
    }
}
