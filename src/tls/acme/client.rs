//! The connection to the CA: an HTTPS client on the ring provider (the only
//! one in the tree) trusting the system roots plus `ca_roots`, with bounded
//! connects, that remembers the `Retry-After` of the CA's error answers so
//! the retry schedule can honour it; and the ACME account, created once and
//! then restored from `state.dir`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{Account, BodyWrapper, BytesResponse, HttpClient, NewAccount};
use rustls::pki_types::CertificateDer;

use super::settings::AcmeSettings;
use super::store::AcmeDisk;
use super::AcmeError;

/// A connect to the CA gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The latest `Retry-After` the CA sent with an error.
#[derive(Debug, Clone, Default)]
pub struct RetryAfter(Arc<Mutex<Option<SystemTime>>>);

impl RetryAfter {
    /// The CA's latest request, cleared by reading it.
    pub fn take(&self) -> Option<SystemTime> {
        self.0.lock().ok()?.take()
    }

    fn record(&self, at: SystemTime) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(at);
        }
    }
}

type Https = HyperClient<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// instant-acme's transport, with `Retry-After` recorded on the way.
struct CaHttp {
    http: Https,
    retry_after: RetryAfter,
}

impl HttpClient for CaHttp {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let pending = self.http.request(request);
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let response = pending.await.map_err(|e| instant_acme::Error::Other(crate::http_get::with_causes(&e).into()))?;
            if response.status().is_client_error() || response.status().is_server_error() {
                if let Some(at) = response.headers().get(RETRY_AFTER).and_then(parse_retry_after) {
                    retry_after.record(at);
                }
            }
            Ok(BytesResponse::from(response))
        })
    }
}

/// `Retry-After: <seconds>` or an HTTP date.
fn parse_retry_after(value: &http::HeaderValue) -> Option<SystemTime> {
    let text = value.to_str().ok()?.trim();
    match text.parse::<u64>() {
        Ok(seconds) => Some(SystemTime::now() + Duration::from_secs(seconds)),
        Err(_) => httpdate::parse_http_date(text).ok(),
    }
}

/// An HTTPS client for the directory in `settings`.
fn https_client(roots: &[CertificateDer<'static>], retry_after: RetryAfter) -> Result<Box<dyn HttpClient>, AcmeError> {
    let mut store = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!("some system CA certificates could not be read: {:?}", native.errors);
    }
    store.add_parsable_certificates(native.certs);
    for root in roots {
        store
            .add(root.clone())
            .map_err(|e| AcmeError::Setup(format!("tls.acme.ca_roots: unusable root certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(AcmeError::Setup(
            "no trusted roots for the ACME directory: install the system CA certificates or set tls.acme.ca_roots".into(),
        ));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Setup(format!("TLS client for the ACME directory: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    tcp.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(Box::new(CaHttp {
        http: HyperClient::builder(TokioExecutor::new()).build(connector),
        retry_after,
    }))
}

/// The account for `settings.directory`: restored from `disk`, or created
/// (terms of service agreed, contact = `email`) and saved there.
pub async fn account(settings: &AcmeSettings, disk: &AcmeDisk, retry_after: RetryAfter) -> Result<Account, AcmeError> {
    let http = https_client(&settings.ca_roots, retry_after)?;
    if let Some(credentials) = disk.load_account()? {
        return Ok(Account::builder_with_http(http).from_credentials(credentials).await?);
    }
    let contact = settings.email.as_ref().map(|email| format!("mailto:{email}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(http)
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await?;
    disk.save_account(&credentials)?;
    tracing::info!(directory = %settings.directory, account = account.id(), "ACME account created");
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let in_two_minutes = parse_retry_after(&http::HeaderValue::from_static("120")).unwrap();
        let delta = in_two_minutes.duration_since(SystemTime::now()).unwrap();
        assert!(delta > Duration::from_secs(110) && delta <= Duration::from_secs(120));
        let date = parse_retry_after(&http::HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT")).unwrap();
        assert_eq!(date.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        assert!(parse_retry_after(&http::HeaderValue::from_static("soon")).is_none());
    }
}
