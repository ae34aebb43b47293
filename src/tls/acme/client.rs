//! The connection to the CA: the control plane's HTTP client
//! ([`crate::http_client`]) trusting the system roots plus `ca_roots`,
//! wrapped so it remembers the `Retry-After` of the CA's error answers for
//! the retry schedule; and the ACME account, created once and then restored
//! from `state.dir`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http_body_util::BodyExt;
use instant_acme::{Account, BodyWrapper, BytesResponse, NewAccount};
use rustls::pki_types::CertificateDer;

use super::settings::AcmeSettings;
use super::store::AcmeDisk;
use super::AcmeError;
use crate::http_client::HttpClient;

/// The largest answer the CA may send: a directory, an order or a chain.
const MAX_CA_ANSWER: usize = 1 << 20;

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

/// instant-acme's transport, with `Retry-After` recorded on the way.
struct CaHttp {
    http: HttpClient,
    retry_after: RetryAfter,
}

impl instant_acme::HttpClient for CaHttp {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let (http, retry_after) = (self.http.clone(), self.retry_after.clone());
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // instant-acme's request bodies are in memory: collecting cannot fail.
            let Ok(body) = body.collect().await;
            let response = http
                .send(http::Request::from_parts(parts, body.to_bytes()), MAX_CA_ANSWER)
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
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

/// instant-acme's transport to the CA, trusting the system roots and `roots`.
fn ca_http(
    roots: &[CertificateDer<'static>],
    retry_after: RetryAfter,
) -> Result<Box<dyn instant_acme::HttpClient>, AcmeError> {
    let http = HttpClient::new(roots).map_err(|e| AcmeError::Setup(format!("tls.acme.ca_roots: {e}")))?;
    if http.trusted_roots() == 0 {
        return Err(AcmeError::Setup(
            "no trusted roots for the ACME directory: install the system CA certificates or set tls.acme.ca_roots"
                .into(),
        ));
    }
    Ok(Box::new(CaHttp { http, retry_after }))
}

/// The account for `settings.directory`: restored from `disk`, or created
/// (terms of service agreed, contact = `email`) and saved there.
pub async fn account(settings: &AcmeSettings, disk: &AcmeDisk, retry_after: RetryAfter) -> Result<Account, AcmeError> {
    let http = ca_http(&settings.ca_roots, retry_after)?;
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
        assert_eq!(
            date.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
        assert!(parse_retry_after(&http::HeaderValue::from_static("soon")).is_none());
    }
}
