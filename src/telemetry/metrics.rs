//! The Prometheus metrics (docs/api.md lists them). One process-wide registry: every
//! counter exists (at 0) from start-up, and the request path only touches
//! atomics and a read-mostly label map. Every label value comes from the
//! configuration or a fixed list (route hosts, deployment ids, statuses,
//! error codes), never from what a client sends, so a flood of random
//! hosts or paths adds no series.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;

use super::histogram::ShardedHistogram;
use super::process::ProcessCollector;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub host: Label,
    pub deployment: Label,
    pub status: u16,
    pub error_code: &'static str,
}

/// A label value shared with the snapshot (route host, deployment id), so
/// counting a request clones a pointer instead of allocating a string.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
pub struct Label(pub Option<Arc<str>>);

impl Label {
    /// Whether this is the label `value` (the same shared text, mostly).
    fn is(&self, value: Option<&Arc<str>>) -> bool {
        match (&self.0, value) {
            (Some(kept), Some(value)) => Arc::ptr_eq(kept, value) || kept == value,
            (None, None) => true,
            _ => false,
        }
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(self.0.as_deref().unwrap_or(""))
    }
}

/// Which part of a request's latency a duration sample measures.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Part {
    /// Client to response, all of it.
    Total,
    /// Time spent waiting for the instance.
    Instance,
    /// Total minus instance: what the gateway itself added.
    Gateway,
}

impl EncodeLabelValue for Part {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            Part::Total => "total",
            Part::Instance => "instance",
            Part::Gateway => "gateway",
        })
    }
}

/// `keygate_request_duration_seconds`: which deployment answered (empty
/// when no route matched) and which part of the latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub deployment: Label,
    pub part: Part,
}

/// One deployment's `keygate_request_duration_seconds` histograms, resolved
/// once when its snapshot is compiled: a request's samples then cost no
/// label hashing or map lookup.
#[derive(Debug, Clone)]
pub struct Durations {
    total: ShardedHistogram,
    gateway: ShardedHistogram,
    /// None for requests no route matched: they have no `instance` series.
    instance: Option<ShardedHistogram>,
}

impl Durations {
    /// A finished request: its total time and, when an instance was asked,
    /// the time spent waiting for it (the gateway's part is the difference).
    pub fn observe(&self, total: Duration, instance: Option<Duration>) {
        let waited = instance.unwrap_or_default();
        self.total.observe(total.as_secs_f64());
        self.gateway.observe(total.saturating_sub(waited).as_secs_f64());
        if let (Some(histogram), Some(instance)) = (&self.instance, instance) {
            histogram.observe(instance.as_secs_f64());
        }
    }
}

/// `keygate_build_info`: what is running.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// The git commit keygate was built from (build.rs), `unknown` outside a checkout.
pub const COMMIT: &str = env!("KEYGATE_COMMIT");

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub policy_type: String,
    pub decision: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabel {
    pub deployment: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReusedLabel {
    pub reused: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabel {
    pub host: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Series of `keygate_requests_total` a thread keeps at hand.
const RECENT_SERIES: usize = 8;

thread_local! {
    /// This thread's latest `keygate_requests_total` series, newest first
    /// (see [`Metrics::record_request`]; `Metrics` is one per process).
    static RECENT_REQUEST_SERIES: std::cell::RefCell<Vec<(RequestLabels, Counter)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Policy types and decisions exported at 0 from start-up.
const POLICY_TYPES: [&str; 4] = ["firewall", "ip", "logging", "ratelimit"];
const DECISIONS: [&str; 2] = ["allow", "deny"];

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, ShardedHistogram>,
    pub config_reloads: Counter,
    pub config_reload_errors: Counter,
    pub upstream_connect_failures: Counter,
    pub log_records_dropped: Counter,
    /// `openapi.fetch_path` fetches that failed (no instance answered a parsable spec).
    pub openapi_fetch_failures: Counter,
    /// `jwtauth` key-set fetches (JWKS, OIDC discovery) that failed.
    pub jwks_fetch_failures: Counter,
    /// Calls to the shared rate-limit and credit store (`state.redis`) that failed.
    pub ratelimit_backend_errors: Counter,
    /// Queries to the shared key store (`state.database`) that failed.
    pub store_errors: Counter,
    /// Trace spans that never reached the collector (queue full, export failed).
    pub trace_spans_dropped: Counter,
    /// Deployments made live (promotions, automatic ones and rollbacks).
    pub deployment_promotions: Counter,
    deployments: Family<StatusLabel, Gauge>,
    certificate_expiry: Family<HostLabel, Gauge>,
    acme_orders: Family<ResultLabel, Counter>,
    instances_healthy: Family<DeploymentLabel, Gauge>,
    /// `keygate_upstream_connections{reused="true"}` and `{reused="false"}`,
    /// resolved once: counted on every proxied request.
    upstream_reused: Counter,
    upstream_new: Counter,
    /// `keygate_http1_requests{path="fast"}` and `{path="proxy"}`, resolved once.
    http1_fast: Counter,
    http1_proxy: Counter,
    policy_decisions: Family<DecisionLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<DurationLabels, ShardedHistogram>::new_with_constructor(|| {
            ShardedHistogram::new(exponential_buckets(0.0005, 2.5, 14))
        });
        let config_reloads = Counter::default();
        let config_reload_errors = Counter::default();
        let upstream_connect_failures = Counter::default();
        registry.register(
            "keygate_requests",
            "Requests answered, by route host, deployment, status and error code",
            requests.clone(),
        );
        registry.register(
            "keygate_request_duration_seconds",
            "Request latency by deployment: total, instance and gateway parts",
            durations.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "keygate_build_info",
            "The running keygate's version and git commit (always 1)",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: COMMIT,
            })
            .set(1);
        registry.register_collector(Box::new(ProcessCollector));
        registry.register(
            "keygate_config_reloads",
            "Successful configuration reloads",
            config_reloads.clone(),
        );
        registry.register(
            "keygate_config_reload_errors",
            "Configuration reloads rejected as invalid",
            config_reload_errors.clone(),
        );
        registry.register(
            "keygate_upstream_connect_failures",
            "Failed connection attempts to instances",
            upstream_connect_failures.clone(),
        );
        let certificate_expiry = Family::<HostLabel, Gauge>::default();
        registry.register(
            "keygate_certificate_expiry_seconds",
            "notAfter of the certificate served for a host, as a unix timestamp",
            certificate_expiry.clone(),
        );
        let acme_orders = Family::<ResultLabel, Counter>::default();
        registry.register(
            "keygate_acme_orders",
            "ACME certificate orders, by result",
            acme_orders.clone(),
        );
        for result in ["success", "failure"] {
            drop(acme_orders.get_or_create(&ResultLabel { result: result.into() }));
        }
        let instances_healthy = Family::<DeploymentLabel, Gauge>::default();
        registry.register(
            "keygate_instances_healthy",
            "Instances of a deployment that are healthy and not ejected",
            instances_healthy.clone(),
        );
        let upstream_connections = Family::<ReusedLabel, Counter>::default();
        registry.register(
            "keygate_upstream_connections",
            "Requests sent to an instance, by whether a pooled keep-alive connection was reused",
            upstream_connections.clone(),
        );
        let upstream_counter = |reused: &str| {
            upstream_connections
                .get_or_create(&ReusedLabel { reused: reused.into() })
                .clone()
        };
        let (upstream_reused, upstream_new) = (upstream_counter("true"), upstream_counter("false"));
        let http1_requests = Family::<PathLabel, Counter>::default();
        registry.register(
            "keygate_http1_requests",
            "HTTP/1 requests by the path that served them: keygate's fast path, or the full proxy (bodies, upgrades, redirects, echo, ...)",
            http1_requests.clone(),
        );
        let http1_counter = |path: &str| http1_requests.get_or_create(&PathLabel { path: path.into() }).clone();
        let (http1_fast, http1_proxy) = (http1_counter("fast"), http1_counter("proxy"));
        let log_records_dropped = Counter::default();
        registry.register(
            "keygate_log_records_dropped",
            "Request-log records dropped because the sink's buffer was full",
            log_records_dropped.clone(),
        );
        let openapi_fetch_failures = Counter::default();
        registry.register(
            "keygate_openapi_fetch_failures",
            "Failed fetches of a deployment's openapi.fetch_path (the last good spec stays in use)",
            openapi_fetch_failures.clone(),
        );
        let jwks_fetch_failures = Counter::default();
        registry.register(
            "keygate_jwks_fetch_failures",
            "Failed fetches of jwtauth key sets (JWKS or OIDC discovery)",
            jwks_fetch_failures.clone(),
        );
        let ratelimit_backend_errors = Counter::default();
        registry.register(
            "keygate_ratelimit_backend_errors",
            "Failed calls to state.redis for rate-limit counters and credits (decisions go on locally)",
            ratelimit_backend_errors.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "keygate_store_errors",
            "Failed queries to state.database (cached keys keep verifying; unknown keys and admin writes answer 503)",
            store_errors.clone(),
        );
        let deployment_promotions = Counter::default();
        registry.register(
            "keygate_deployment_promotions",
            "Deployments of the Deployments API made live (promote, automatic promotion, rollback)",
            deployment_promotions.clone(),
        );
        let deployments = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "keygate_deployments",
            "Deployments of the Deployments API by status",
            deployments.clone(),
        );
        let trace_spans_dropped = Counter::default();
        registry.register(
            "keygate_trace_spans_dropped",
            "Trace spans dropped because the export queue was full or an export to the collector failed",
            trace_spans_dropped.clone(),
        );
        let policy_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "keygate_policy_decisions",
            "Policy evaluations on matching requests, by policy type and decision",
            policy_decisions.clone(),
        );
        for policy_type in POLICY_TYPES {
            for decision in DECISIONS {
                drop(policy_decisions.get_or_create(&DecisionLabels {
                    policy_type: policy_type.into(),
                    decision: decision.into(),
                }));
            }
        }
        Self {
            registry,
            requests,
            durations,
            config_reloads,
            config_reload_errors,
            upstream_connect_failures,
            log_records_dropped,
            openapi_fetch_failures,
            jwks_fetch_failures,
            ratelimit_backend_errors,
            store_errors,
            trace_spans_dropped,
            deployment_promotions,
            deployments,
            certificate_expiry,
            acme_orders,
            instances_healthy,
            upstream_reused,
            upstream_new,
            http1_fast,
            http1_proxy,
            policy_decisions,
        }
    }

    /// Sets `keygate_instances_healthy` to exactly these deployments' counts
    /// (computed when scraped: availability also changes as ejections expire).
    /// Sets `keygate_deployments{status}` to `counts`.
    pub fn set_deployments<'a>(&self, counts: impl IntoIterator<Item = (&'a str, usize)>) {
        self.deployments.clear();
        for (status, count) in counts {
            self.deployments
                .get_or_create(&StatusLabel {
                    status: status.to_string(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    pub fn set_instances_healthy<'a>(&self, counts: impl IntoIterator<Item = (&'a str, usize)>) {
        self.instances_healthy.clear();
        for (deployment, healthy) in counts {
            self.instances_healthy
                .get_or_create(&DeploymentLabel {
                    deployment: deployment.to_string(),
                })
                .set(i64::try_from(healthy).unwrap_or(i64::MAX));
        }
    }

    pub fn upstream_connection(&self, reused: bool) {
        if reused {
            self.upstream_reused.inc();
        } else {
            self.upstream_new.inc();
        }
    }

    /// Counts an HTTP/1 request by the path that serves it.
    pub fn http1_request(&self, fast: bool) {
        if fast {
            self.http1_fast.inc();
        } else {
            self.http1_proxy.inc();
        }
    }

    /// Counts one finished ACME order.
    pub fn acme_order(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.acme_orders
            .get_or_create(&ResultLabel { result: result.into() })
            .inc();
    }

    pub fn set_certificate_expiry(&self, host: &str, not_after: i64) {
        self.certificate_expiry
            .get_or_create(&HostLabel { host: host.to_string() })
            .set(not_after);
    }

    /// The counter of one `(policy_type, decision)`; compiled policies keep it
    /// so a decision costs one atomic increment.
    pub fn policy_decision(&self, policy_type: &str, decision: &str) -> Counter {
        self.policy_decisions
            .get_or_create(&DecisionLabels {
                policy_type: policy_type.into(),
                decision: decision.into(),
            })
            .clone()
    }

    /// Counts a request under its labels. The family's lookup hashes four
    /// labels under a lock, so each thread keeps the last few series it
    /// counted (a series is never removed, so a kept counter stays the
    /// exported one). The labels are borrowed from the route: a series the
    /// thread kept is found without cloning them.
    pub fn record_request(
        &self,
        host: Option<&Arc<str>>,
        deployment: Option<&Arc<str>>,
        status: u16,
        error_code: &'static str,
    ) {
        let same = |l: &RequestLabels| {
            l.status == status && l.error_code == error_code && l.host.is(host) && l.deployment.is(deployment)
        };
        RECENT_REQUEST_SERIES.with_borrow_mut(|recent| match recent.iter().position(|(l, _)| same(l)) {
            Some(at) => {
                recent[at].1.inc();
            }
            None => {
                let labels = &RequestLabels {
                    host: Label(host.cloned()),
                    deployment: Label(deployment.cloned()),
                    status,
                    error_code,
                };
                let counter = self.requests.get_or_create(labels).clone();
                counter.inc();
                if recent.len() == RECENT_SERIES {
                    recent.pop();
                }
                recent.insert(0, (labels.clone(), counter));
            }
        });
    }

    /// The latency histograms of a deployment. Resolving them creates the
    /// three series (with zero counts) before its first request.
    pub fn durations(&self, deployment: &Label) -> Durations {
        Durations {
            total: self.duration_histogram(deployment, Part::Total),
            gateway: self.duration_histogram(deployment, Part::Gateway),
            instance: Some(self.duration_histogram(deployment, Part::Instance)),
        }
    }

    /// A request no route matched: counted under the empty deployment, with
    /// no instance time (and so no `instance` series).
    pub fn observe_unrouted(&self, total: Duration) {
        let unrouted = Durations {
            total: self.duration_histogram(&Label::default(), Part::Total),
            gateway: self.duration_histogram(&Label::default(), Part::Gateway),
            instance: None,
        };
        unrouted.observe(total, None);
    }

    fn duration_histogram(&self, deployment: &Label, part: Part) -> ShardedHistogram {
        let labels = DurationLabels {
            deployment: deployment.clone(),
            part,
        };
        self.durations.get_or_create(&labels).clone()
    }

    /// The text exposition of every metric: OpenMetrics 1.0, which
    /// Prometheus' own text format reads too (see [`Exposition`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The exposition formats `/metrics` answers in: one body (OpenMetrics
/// text, which Prometheus' 0.0.4 text parser reads too), labelled with the
/// content type the scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// `text/plain; version=0.0.4`: the default, for anything that does not ask.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`: when `Accept` names it.
    OpenMetrics,
}

impl Exposition {
    /// The format a scraper's `Accept` header asks for (Prometheus sends
    /// `application/openmetrics-text;version=1.0.0,...;q=0.5` when it
    /// supports OpenMetrics).
    pub fn for_accept(accept: Option<&str>) -> Self {
        let asks = accept.into_iter().flat_map(|a| a.split(',')).any(|range| {
            let mut params = range.split(';').map(str::trim);
            let essence = params.next().unwrap_or_default();
            let refused = params.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
            essence.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        });
        if asks {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_follows_accept() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Exposition::for_accept(Some(prometheus)), Exposition::OpenMetrics);
        assert_eq!(
            Exposition::for_accept(Some("Application/OpenMetrics-Text")),
            Exposition::OpenMetrics
        );
        assert_eq!(
            Exposition::for_accept(Some("text/plain;version=0.0.4")),
            Exposition::Prometheus
        );
        assert_eq!(
            Exposition::for_accept(Some("application/openmetrics-text;q=0, */*")),
            Exposition::Prometheus
        );
        assert_eq!(Exposition::for_accept(None), Exposition::Prometheus);
    }

    #[test]
    fn build_info_and_process_metrics_are_exported() {
        let text = metrics().encode();
        let build = format!(
            "keygate_build_info{{version=\"{}\",commit=\"{COMMIT}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(
                text.lines().any(|line| line.starts_with(name)),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    }
}
