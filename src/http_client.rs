//! The control plane's HTTP client: JWKS and OIDC discovery documents for
//! `jwtauth`, OpenAPI documents fetched from instances, the ACME CA, and
//! (blocking, see [`blocking_client`]) the trace collector.
//! One construction for all of them — reqwest on rustls with the ring
//! provider (the only one in the tree: a second one, aws-lc, makes rustls
//! panic), the system roots plus optional extra ones, a bounded connect, a
//! bounded total time per request and a bounded body — and one error type.
//! Never used for proxied traffic.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use rustls::pki_types::CertificateDer;

/// A connect gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A request sent without its own bound gives up after this long, body included.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("keygate/", env!("CARGO_PKG_VERSION"));

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The client could not be built (its trust roots).
    #[error("{0}")]
    Setup(String),
    #[error("invalid URL {0:?}")]
    Url(String),
    #[error("{method} {url}: {message}")]
    Transport {
        method: http::Method,
        url: String,
        message: String,
    },
    #[error("{method} {url}: status {status}")]
    Status {
        method: http::Method,
        url: String,
        status: u16,
    },
    #[error("{method} {url}: no answer within {timeout:?}")]
    Timeout {
        method: http::Method,
        url: String,
        timeout: Duration,
    },
    #[error("{method} {url}: body larger than {limit} bytes")]
    TooLarge {
        method: http::Method,
        url: String,
        limit: usize,
    },
}

/// A response whose body fails once it exceeds the limit it was sent with.
pub type LimitedResponse = http::Response<Limited<reqwest::Body>>;

/// A pooled client; clones share the pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    http: reqwest::Client,
    trusted_roots: usize,
}

impl HttpClient {
    /// A client trusting the system roots and `extra_roots`. No proxy from
    /// the environment and no redirects: every peer is named explicitly.
    pub fn new(extra_roots: &[CertificateDer<'static>]) -> Result<Self, HttpError> {
        let (tls, trusted_roots) = tls_config(extra_roots)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(DEFAULT_TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| HttpError::Setup(format!("HTTP client: {}", with_causes(&e))))?;
        Ok(Self { http, trusted_roots })
    }

    /// How many roots it trusts: none means no HTTPS peer can be verified.
    pub fn trusted_roots(&self) -> usize {
        self.trusted_roots
    }

    /// Sends `request` (within the default total time); the answer's body
    /// errors past `limit` bytes. Error statuses are answers, not errors.
    pub async fn send(&self, request: http::Request<Bytes>, limit: usize) -> Result<LimitedResponse, HttpError> {
        self.execute(request, DEFAULT_TIMEOUT, limit).await
    }

    /// Fetches `url`; the answer must be a success, arrive within `timeout`
    /// and be at most `limit` bytes.
    pub async fn get(&self, url: &str, timeout: Duration, limit: usize) -> Result<Bytes, HttpError> {
        let request = http::Request::get(url)
            .header(
                http::header::ACCEPT,
                "application/json, application/yaml;q=0.9, */*;q=0.5",
            )
            .body(Bytes::new())
            .map_err(|_| HttpError::Url(url.to_string()))?;
        let response = self.execute(request, timeout, limit).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(HttpError::Status {
                method: http::Method::GET,
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        match response.into_body().collect().await {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(HttpError::TooLarge {
                method: http::Method::GET,
                url: url.to_string(),
                limit,
            }),
            Err(e)
                if e.downcast_ref::<reqwest::Error>()
                    .is_some_and(reqwest::Error::is_timeout) =>
            {
                Err(HttpError::Timeout {
                    method: http::Method::GET,
                    url: url.to_string(),
                    timeout,
                })
            }
            Err(e) => Err(HttpError::Transport {
                method: http::Method::GET,
                url: url.to_string(),
                message: with_causes(&*e),
            }),
        }
    }

    async fn execute(
        &self,
        request: http::Request<Bytes>,
        timeout: Duration,
        limit: usize,
    ) -> Result<LimitedResponse, HttpError> {
        let (method, url) = (request.method().clone(), request.uri().to_string());
        let mut request = reqwest::Request::try_from(request).map_err(|_| HttpError::Url(url.clone()))?;
        *request.timeout_mut() = Some(timeout);
        let response = self.http.execute(request).await.map_err(|e| {
            if e.is_timeout() {
                HttpError::Timeout {
                    method: method.clone(),
                    url: url.clone(),
                    timeout,
                }
            } else {
                HttpError::Transport {
                    method: method.clone(),
                    url: url.clone(),
                    message: with_causes(&e),
                }
            }
        })?;
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Err(HttpError::TooLarge { method, url, limit });
        }
        Ok(http::Response::from(response).map(|body| Limited::new(body, limit)))
    }
}

/// The same client in its blocking form, for a thread outside any async
/// runtime (the trace exporter's): the same trust and bounds, `timeout` per
/// request. Build it outside an async runtime too (reqwest refuses otherwise).
pub fn blocking_client(timeout: Duration) -> Result<reqwest::blocking::Client, HttpError> {
    let (tls, _) = tls_config(&[])?;
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| HttpError::Setup(format!("HTTP client: {}", with_causes(&e))))
}

/// rustls on ring trusting the system's roots, without ALPN: for TLS that
/// is not HTTP (the state database).
pub fn system_tls_config() -> Result<rustls::ClientConfig, HttpError> {
    let (mut tls, _) = tls_config(&[])?;
    tls.alpn_protocols.clear();
    Ok(tls)
}

/// rustls on ring with the system roots plus `extra_roots` (and how many
/// roots that is), offering h2 and HTTP/1.1.
fn tls_config(extra_roots: &[CertificateDer<'static>]) -> Result<(rustls::ClientConfig, usize), HttpError> {
    let roots = trust_roots(extra_roots)?;
    let trusted_roots = roots.len();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Setup(format!("TLS client: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((tls, trusted_roots))
}

/// The system roots plus `extra`; an unusable extra root is an error.
fn trust_roots(extra: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, HttpError> {
    let mut store = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!("some system CA certificates could not be read: {:?}", native.errors);
    }
    store.add_parsable_certificates(native.certs);
    for root in extra {
        store
            .add(root.clone())
            .map_err(|e| HttpError::Setup(format!("unusable root certificate: {e}")))?;
    }
    Ok(store)
}

/// The error with its chain of causes ("error sending request: client error
/// (Connect): tcp connect error: Connection refused"): the outer message
/// alone names no cause.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server answering every connection with `answer` (raw HTTP/1.1),
    /// then keeping it open and silent.
    async fn serve(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/doc", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = stream.read(&mut request).await;
                    let _ = stream.write_all(answer.as_bytes()).await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                });
            }
        });
        url
    }

    fn client() -> HttpClient {
        HttpClient::new(&[]).unwrap()
    }

    #[tokio::test]
    async fn gets_a_document() {
        let url = serve("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        assert_eq!(
            client().get(&url, Duration::from_secs(5), 10).await.unwrap(),
            Bytes::from_static(b"{}")
        );
    }

    #[tokio::test]
    async fn refuses_bodies_over_the_limit_with_or_without_a_length() {
        let url = serve("HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"a\": true}").await;
        let error = client().get(&url, Duration::from_secs(5), 10).await.unwrap_err();
        assert!(matches!(error, HttpError::TooLarge { limit: 10, .. }), "{error}");
        let url = serve("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nb\r\n{\"a\": true}\r\n0\r\n\r\n").await;
        let error = client().get(&url, Duration::from_secs(5), 10).await.unwrap_err();
        assert!(matches!(error, HttpError::TooLarge { limit: 10, .. }), "{error}");
    }

    #[tokio::test]
    async fn an_error_status_is_an_error() {
        let url = serve("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
        let error = client().get(&url, Duration::from_secs(5), 10).await.unwrap_err();
        assert!(matches!(error, HttpError::Status { status: 404, .. }), "{error}");
        assert_eq!(error.to_string(), format!("GET {url}: status 404"));
    }

    #[tokio::test]
    async fn a_silent_server_times_out_before_or_during_the_body() {
        for answer in ["", "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{"] {
            let url = serve(answer).await;
            let started = std::time::Instant::now();
            let error = client().get(&url, Duration::from_millis(200), 10).await.unwrap_err();
            assert!(matches!(error, HttpError::Timeout { .. }), "{answer:?}: {error}");
            assert!(started.elapsed() < Duration::from_secs(2));
        }
    }

    #[tokio::test]
    async fn a_refused_connection_names_its_cause() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let error = client()
            .get(&format!("http://{addr}/"), Duration::from_secs(5), 10)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("Connection refused"), "{error}");
    }

    #[test]
    fn an_unusable_extra_root_is_refused() {
        let error = HttpClient::new(&[CertificateDer::from(vec![1, 2, 3])]).unwrap_err();
        assert!(matches!(error, HttpError::Setup(_)), "{error}");
    }
}
