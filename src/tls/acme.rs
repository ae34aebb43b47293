//! Automatic certificates (`tls.acme`): a background task
//! that keeps an ACME certificate in the live store for every host that
//! needs one — at start-up, when a reload adds hosts, when static
//! certificates come or go, and before expiry.
//!
//! Serving never waits on it: handshakes only read the store, a host whose
//! certificate is pending gets the default one, and a CA that is down only
//! postpones orders (exponential backoff with jitter, at least the CA's
//! `Retry-After`). Orders run one at a time, so a slow or silent CA holds
//! up nothing but the next order. With `state.redis`, replicas share tokens,
//! order locks and certificates (see `shared`).

mod client;
mod order;
mod schedule;
mod settings;
mod shared;
mod store;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use instant_acme::Account;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::watch;

pub use settings::{AcmeHosts, AcmeSettings};

use self::client::RetryAfter;
use self::shared::{Mirror, Shared, SharedCertificate};
use self::store::AcmeDisk;
use super::challenges::ChallengeTokens;
use super::pem::Certificate;
use super::store::{CertStore, Source};
use crate::state::StateSettings;
use crate::telemetry::metrics;

/// Renewals are re-checked at least this often when nothing else wakes the task.
const RECHECK: Duration = Duration::from_secs(3600);
/// One order — account, challenges, issuance — gives up after this long.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// While another replica holds a host's order lock, look for its result this often.
const PEER_RECHECK: Duration = Duration::from_secs(5);

/// Why an order failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error(transparent)]
    Ca(#[from] instant_acme::Error),
    /// The CA answered, but not with a certificate.
    #[error("{0}")]
    Refused(String),
    /// keygate's side: trust roots, the account file.
    #[error("{0}")]
    Setup(String),
    #[error("{}: {error}", path.display())]
    Disk { path: PathBuf, error: std::io::Error },
    #[error("the CA issued a certificate keygate cannot serve: {0}")]
    Unusable(String),
    #[error("no certificate within {0:?}")]
    Timeout(Duration),
    #[error("state.redis: {0}")]
    Redis(String),
}

impl From<redis::RedisError> for AcmeError {
    fn from(error: redis::RedisError) -> Self {
        Self::Redis(error.to_string())
    }
}

impl AcmeError {
    /// The CA no longer knows the saved account (e.g. a test CA restarted).
    fn account_unknown(&self) -> bool {
        matches!(self, Self::Ca(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
    }

    /// When the CA said it would have an answer (while polling an order).
    fn retry_hint(&self) -> Option<SystemTime> {
        match self {
            Self::Ca(instant_acme::Error::Timeout(Some(at))) => {
                Some(SystemTime::now() + at.saturating_duration_since(Instant::now()))
            }
            _ => None,
        }
    }
}

/// What the ACME task needs of the running configuration.
pub trait AcmeSource: Send + Sync + 'static {
    /// `tls.acme`, when set.
    fn acme(&self) -> Option<&AcmeSettings>;
    fn state(&self) -> &StateSettings;
    /// Every exact route host (what `hosts: auto` orders for).
    fn route_hosts(&self) -> Vec<String>;
}

/// The ACME background service: follows the configuration and the store.
pub struct AcmeTask<C> {
    config: watch::Receiver<Arc<C>>,
    store: Arc<CertStore>,
    tokens: Arc<ChallengeTokens>,
}

impl<C: AcmeSource> AcmeTask<C> {
    pub fn new(config: watch::Receiver<Arc<C>>, store: Arc<CertStore>, tokens: Arc<ChallengeTokens>) -> Self {
        Self { config, store, tokens }
    }
}

#[async_trait]
impl<C: AcmeSource> BackgroundService for AcmeTask<C> {
    /// A cycle runs at start, on every new configuration, on every change to
    /// the certificate store (static certificates come and go) and when the
    /// next renewal or retry is due.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut manager = Manager::new(self.store.clone(), self.tokens.clone());
        let mut config = self.config.clone();
        let mut certs = self.store.changes();
        loop {
            // Marked seen before the cycle: a certs_dir change during a long
            // order is not missed (what the cycle installs costs one idle cycle).
            let current = config.borrow_and_update().clone();
            certs.borrow_and_update();
            let due = tokio::select! {
                next = manager.cycle(&*current) => next,
                _ = shutdown.changed() => return,
            };
            tokio::select! {
                changed = config.changed() => if changed.is_err() { return },
                changed = certs.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(due.into()) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// A host's failed orders and when it may be tried again.
struct Backoff {
    retries: schedule::Retries,
    retry_at: Instant,
}

/// The CA connection for one `(tls.acme, state)`; rebuilt when they change.
struct Ca {
    settings: AcmeSettings,
    state: StateSettings,
    disk: AcmeDisk,
    retry_after: RetryAfter,
    account: Option<Account>,
    /// The replicas' shared state, when `state.redis` is set and reachable.
    shared: Option<Arc<Shared>>,
    _mirror: Option<Mirror>,
}

impl Ca {
    /// The account, restored or created on first use.
    async fn account(&mut self) -> Result<Account, AcmeError> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let account = client::account(&self.settings, &self.disk, self.retry_after.clone()).await?;
        self.account = Some(account.clone());
        Ok(account)
    }
}

/// The ACME task's state between cycles.
struct Manager {
    store: Arc<CertStore>,
    tokens: Arc<ChallengeTokens>,
    retry_base: Duration,
    ca: Option<Ca>,
    backoff: HashMap<String, Backoff>,
    /// Hosts already reported as not orderable (logged once each).
    reported: HashSet<String>,
}

impl Manager {
    fn new(store: Arc<CertStore>, tokens: Arc<ChallengeTokens>) -> Self {
        Self {
            store,
            tokens,
            retry_base: schedule::retry_base(),
            ca: None,
            backoff: HashMap::new(),
            reported: HashSet::new(),
        }
    }

    /// Brings every wanted host's certificate up to date as far as the CA
    /// allows right now; returns when the next cycle is due.
    async fn cycle(&mut self, config: &impl AcmeSource) -> Instant {
        let recheck = Instant::now() + RECHECK;
        let Some(settings) = config.acme() else {
            self.ca = None;
            return recheck;
        };
        if let Err(error) = self.use_ca(settings, config.state()).await {
            tracing::error!("ACME is paused: {error}");
            return Instant::now() + self.retry_base;
        }
        let hosts = self.wanted_hosts(config.route_hosts(), settings);
        self.backoff.retain(|host, _| hosts.contains(host));

        let mut next = recheck;
        let mut due = Vec::new();
        for host in &hosts {
            match self.current(host) {
                Some(cert) if !self.needs_renewal(&cert) => next = next.min(self.renewal_instant(&cert)),
                _ => due.push(host.clone()),
            }
        }
        for host in due {
            if let Some(backoff) = self.backoff.get(&host) {
                if backoff.retry_at > Instant::now() {
                    next = next.min(backoff.retry_at);
                    continue;
                }
            }
            next = next.min(self.order(&host).await);
        }
        next
    }

    /// Keeps the CA connection when `(settings, state)` are unchanged;
    /// a different CA starts over (its own account, fresh backoff). Connects
    /// to `state.redis` until it succeeds.
    async fn use_ca(&mut self, settings: &AcmeSettings, state: &StateSettings) -> Result<(), AcmeError> {
        if !self
            .ca
            .as_ref()
            .is_some_and(|ca| ca.settings == *settings && ca.state == *state)
        {
            self.ca = None;
            self.backoff.clear();
            let disk = AcmeDisk::open(state, &settings.directory)?;
            self.ca = Some(Ca {
                settings: settings.clone(),
                state: state.clone(),
                disk,
                retry_after: RetryAfter::default(),
                account: None,
                shared: None,
                _mirror: None,
            });
        }
        let Some(ca) = self.ca.as_mut() else { return Ok(()) };
        if let (None, Some(url)) = (&ca.shared, &state.redis) {
            match Shared::connect(url, &store::directory_id(&settings.directory)).await {
                Ok(shared) => {
                    let shared = Arc::new(shared);
                    ca._mirror = Some(shared.mirror_into(self.tokens.clone()));
                    ca.shared = Some(shared);
                }
                Err(error) => tracing::warn!("ACME orders are not coordinated with other replicas: {error}"),
            }
        }
        Ok(())
    }

    /// `hosts: auto` = every exact route host without a static certificate
    /// that a public CA can issue for; or the explicit list.
    fn wanted_hosts(&mut self, route_hosts: Vec<String>, settings: &AcmeSettings) -> BTreeSet<String> {
        if let AcmeHosts::List(hosts) = &settings.hosts {
            return hosts.iter().cloned().collect();
        }
        let mut wanted = BTreeSet::new();
        for host in route_hosts {
            if let Some(reason) = not_orderable(&host) {
                if self.reported.insert(host.clone()) {
                    tracing::info!(host, "no ACME certificate for this route host: {reason}");
                }
            } else if !self.store.has_static(&host) {
                wanted.insert(host);
            }
        }
        wanted
    }

    /// The host's ACME certificate in the store, else the one saved on disk
    /// (installed: a restart serves it without a new order).
    fn current(&self, host: &str) -> Option<Arc<Certificate>> {
        let source = Source::Acme(host.to_string());
        if let Some(cert) = self.store.get(&source) {
            return Some(cert);
        }
        let saved = self.ca.as_ref()?.disk.load_certificate(host)?;
        tracing::info!(
            host,
            not_after = saved.not_after,
            "ACME certificate loaded from the state directory"
        );
        self.store.install(source.clone(), saved);
        self.store.get(&source)
    }

    fn renew_at(&self, cert: &Certificate) -> i64 {
        let renew_before = self.ca.as_ref().map_or(Duration::ZERO, |ca| ca.settings.renew_before);
        schedule::renew_at(cert.not_before, cert.not_after, renew_before)
    }

    fn needs_renewal(&self, cert: &Certificate) -> bool {
        self.renew_at(cert) <= schedule::unix_now()
    }

    fn renewal_instant(&self, cert: &Certificate) -> Instant {
        let wait = (self.renew_at(cert) - schedule::unix_now()).max(0);
        Instant::now() + Duration::from_secs(wait.unsigned_abs())
    }

    /// Orders `host`'s certificate and installs it — unless another replica
    /// has one or is ordering it; on failure schedules the retry. Returns
    /// when this host needs attention next.
    async fn order(&mut self, host: &str) -> Instant {
        let shared = self.ca.as_ref().and_then(|ca| ca.shared.clone());
        if let Some(shared) = &shared {
            if let Some(next) = self.adopt(shared, host).await {
                return next;
            }
            match shared.lock(host, ORDER_TIMEOUT).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(host, "another replica is ordering this certificate");
                    return Instant::now() + PEER_RECHECK;
                }
                Err(error) => tracing::warn!(host, "ordering without the replicas' lock: {error}"),
            }
        }
        let attempt = self.attempt(host, shared.as_deref()).await;
        if let Some(shared) = &shared {
            shared.unlock(host).await;
        }
        attempt
    }

    /// Installs the certificate another replica shared for `host`, when it
    /// is current; returns when it needs renewal.
    async fn adopt(&self, shared: &Shared, host: &str) -> Option<Instant> {
        let found = match shared.certificate(host).await {
            Ok(found) => found?,
            Err(error) => {
                tracing::warn!(host, "cannot read shared ACME certificates: {error}");
                return None;
            }
        };
        let cert = Certificate::from_pem(found.chain_pem.as_bytes(), found.key_pem.as_bytes()).ok()?;
        if !cert.hosts.iter().any(|name| name == host) || self.needs_renewal(&cert) {
            return None;
        }
        if let Some(Err(error)) = self
            .ca
            .as_ref()
            .map(|ca| ca.disk.save_certificate(host, &found.chain_pem, &found.key_pem))
        {
            tracing::error!(host, "cannot save the ACME certificate: {error}");
        }
        tracing::info!(
            host,
            not_after = cert.not_after,
            "ACME certificate from another replica installed"
        );
        let next = self.renewal_instant(&cert);
        self.store.install(Source::Acme(host.to_string()), cert);
        Some(next)
    }

    /// One order attempt with its bookkeeping: metrics, install, backoff.
    async fn attempt(&mut self, host: &str, shared: Option<&Shared>) -> Instant {
        let Some(ca) = self.ca.as_mut() else {
            return Instant::now() + self.retry_base;
        };
        tracing::info!(host, directory = %ca.settings.directory, "ordering an ACME certificate");
        let attempt = tokio::time::timeout(ORDER_TIMEOUT, order_certificate(ca, &self.tokens, shared, host))
            .await
            .unwrap_or(Err(AcmeError::Timeout(ORDER_TIMEOUT)));
        match attempt {
            Ok(cert) => {
                metrics().acme_order(true);
                self.backoff.remove(host);
                tracing::info!(host, issuer = %cert.issuer, not_after = cert.not_after, "ACME certificate issued and installed");
                let next = self.renewal_instant(&cert);
                self.store.install(Source::Acme(host.to_string()), cert);
                next
            }
            Err(error) => {
                metrics().acme_order(false);
                if error.account_unknown() {
                    tracing::warn!("the CA does not know the saved ACME account; a new one is created on the next try");
                    ca.disk.forget_account();
                    ca.account = None;
                }
                let hint = [error.retry_hint(), ca.retry_after.take()].into_iter().flatten().max();
                let base = self.retry_base;
                let backoff = self.backoff.entry(host.to_string()).or_insert_with(|| Backoff {
                    retries: schedule::Retries::new(base),
                    retry_at: Instant::now(),
                });
                let delay = backoff.retries.failed(hint);
                tracing::warn!(
                    host,
                    failures = backoff.retries.failures(),
                    retry_in_ms = delay.as_millis() as u64,
                    "ACME order failed: {error}"
                );
                backoff.retry_at = Instant::now() + delay;
                backoff.retry_at
            }
        }
    }
}

/// One order, from account to a checked certificate saved on disk (and
/// shared with the other replicas).
async fn order_certificate(
    ca: &mut Ca,
    tokens: &Arc<ChallengeTokens>,
    shared: Option<&Shared>,
    host: &str,
) -> Result<Certificate, AcmeError> {
    let account = ca.account().await?;
    let issued = order::issue(&account, host, tokens.clone(), shared).await?;
    let cert =
        Certificate::from_pem(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes()).map_err(AcmeError::Unusable)?;
    if !cert.hosts.iter().any(|name| name == host) {
        return Err(AcmeError::Unusable(format!("it names {:?}, not {host}", cert.hosts)));
    }
    if let Err(error) = ca.disk.save_certificate(host, &issued.chain_pem, &issued.key_pem) {
        // Still served; only a restart would have to order again.
        tracing::error!(host, "cannot save the ACME certificate: {error}");
    }
    if let Some(shared) = shared {
        let certificate = SharedCertificate {
            chain_pem: issued.chain_pem,
            key_pem: issued.key_pem,
        };
        if let Err(error) = shared.save_certificate(host, &certificate).await {
            tracing::warn!(host, "cannot share the ACME certificate with other replicas: {error}");
        }
    }
    Ok(cert)
}

/// Why a public CA would refuse `host` (`hosts: auto` skips it), if it would.
fn not_orderable(host: &str) -> Option<&'static str> {
    if host.starts_with("*.") {
        return Some("wildcard certificates need the DNS-01 challenge; keygate uses HTTP-01");
    }
    if !host.contains('.') || host.ends_with(".localhost") {
        return Some("not a public domain name");
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Some("an IP address, not a domain name");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_skips_names_a_public_ca_refuses() {
        assert!(not_orderable("*.example.com").is_some_and(|r| r.contains("DNS-01")));
        assert!(not_orderable("localhost").is_some());
        assert!(not_orderable("app.localhost").is_some());
        assert!(not_orderable("127.0.0.1").is_some());
        assert_eq!(not_orderable("api.example.com"), None);
    }
}
