//! A small HTTP(S) GET client for the control plane: JWKS and OIDC discovery
//! documents for `jwtauth`, OpenAPI documents from instances for
//! `openapi.fetch_path`. One pooled client on the ring TLS provider with the
//! system roots, bounded in time and size — never used for proxied traffic.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("invalid URL {0:?}")]
    Url(String),
    #[error("GET {url}: {message}")]
    Transport { url: String, message: String },
    #[error("GET {url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: no answer within {0:?}", .timeout)]
    Timeout { url: String, timeout: Duration },
    #[error("GET {url}: body larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

fn client() -> &'static HttpsClient {
    static CLIENT: OnceLock<HttpsClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports rustls' default protocol versions") // invariant: ring implements every default protocol version
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Client::builder(TokioExecutor::new()).build(connector)
    })
}

/// Fetches `url`; the body must arrive within `timeout` and be at most `limit` bytes.
pub async fn get(url: &str, timeout: Duration, limit: usize) -> Result<Bytes, GetError> {
    let uri: http::Uri = url.parse().map_err(|_| GetError::Url(url.to_string()))?;
    let request = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json, application/yaml;q=0.9, */*;q=0.5")
        .header(http::header::USER_AGENT, concat!("keygate/", env!("CARGO_PKG_VERSION")))
        .body(Empty::new())
        .map_err(|_| GetError::Url(url.to_string()))?;
    let transport = |e: &dyn std::error::Error| GetError::Transport { url: url.to_string(), message: with_causes(e) };
    let fetch = async {
        let response = client().request(request).await.map_err(|e| transport(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(GetError::Status { url: url.to_string(), status: status.as_u16() });
        }
        match Limited::new(response.into_body(), limit).collect().await {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(GetError::TooLarge { url: url.to_string(), limit }),
            Err(e) => Err(GetError::Transport { url: url.to_string(), message: e.to_string() }),
        }
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| GetError::Timeout { url: url.to_string(), timeout })?
}

/// The error with its chain of causes ("client error (Connect): tcp connect
/// error: Connection refused"): hyper's own message names no cause.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
