//! The one HTTP client of the command line: calls to a running gateway's
//! admin listener (plain HTTP), with the root key, and every way such a
//! call can go wrong sorted into what the user must know — no gateway
//! answered, the gateway refused the root key, or the gateway answered
//! with an error.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;

use crate::errors::GatewayError;

/// Giving up on a gateway that accepts no connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Giving up on an answer (a reload compiles the whole configuration).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin listener is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// `http://host:port` (and a path prefix, if the URL had one), no trailing `/`.
    Url(String),
    /// The config file sets `listen.admin: null`.
    Off { config: PathBuf },
}

/// The root key presented to the admin API, and where it came from (said
/// when the gateway refuses it).
#[derive(Debug, Clone)]
pub struct RootKey {
    pub key: String,
    pub source: String,
}

/// A client for one gateway's admin listener.
pub struct AdminClient {
    endpoint: Endpoint,
    root_key: Option<RootKey>,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// An error the admin API answered with (`{"error": {...}}`), or the same
/// error produced in-process by the embedded store.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

/// One problem of a request body (`error.errors[]`).
#[derive(Debug, Clone, Deserialize)]
pub struct FieldError {
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub message: String,
}

/// Why an admin call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{} sets listen.admin to null, so no gateway can be asked: pass --admin URL", config.display())]
    NoListener { config: PathBuf },
    #[error("no gateway answered at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the gateway at {url} refused the root key ({key}; {}): pass --root-key or set KEYGATE_ROOT_KEY", error.status_and_code())]
    Refused {
        url: String,
        key: String,
        error: Box<ApiError>,
    },
    #[error("{0}")]
    Failed(Box<ApiError>),
    #[error("the gateway at {url} did not answer as expected: {reason}")]
    Broken { url: String, reason: String },
}

impl CallError {
    /// No gateway is there: the call was never delivered (never the case
    /// once a connection was made, since then it may have taken effect).
    pub fn no_gateway_answered(&self) -> bool {
        matches!(self, Self::NoListener { .. } | Self::Unreachable { .. })
    }
}

impl ApiError {
    /// `403 err:unkey:authorization:forbidden`.
    fn status_and_code(&self) -> String {
        format!("{} {}", self.status, self.code).trim_end().to_string()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)?;
        if !self.code.is_empty() {
            write!(f, " ({})", self.code)?;
        }
        for field in &self.errors {
            write!(f, "\n  {}: {}", field.location, field.message)?;
        }
        Ok(())
    }
}

impl From<&GatewayError> for ApiError {
    fn from(error: &GatewayError) -> Self {
        Self {
            code: error.code.code().to_string(),
            status: error.code.status(),
            detail: error.detail().to_string(),
            errors: error
                .items()
                .iter()
                .map(|item| FieldError {
                    location: item.location.clone(),
                    message: item.message.clone(),
                })
                .collect(),
        }
    }
}

impl AdminClient {
    pub fn new(endpoint: Endpoint, root_key: Option<RootKey>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Self {
            endpoint,
            root_key,
            http: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The admin listener's URL, for messages (`None`: turned off).
    pub fn url(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Url(url) => Some(url),
            Endpoint::Off { .. } => None,
        }
    }

    /// `GET path` without a root key (`/readyz`): the status and body.
    pub async fn probe(&self, path: &str) -> Result<(StatusCode, String), CallError> {
        let (status, body) = self.send(Method::GET, path, None, false).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// An admin API call: the answer's JSON (`{meta, data, pagination?}`).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CallError> {
        let (status, bytes) = self.send(method, path, body, true).await?;
        let url = self.url().unwrap_or_default().to_string();
        let broken = |reason: String| CallError::Broken {
            url: url.clone(),
            reason,
        };
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|_| broken(format!("{status} with a body that is not JSON: {}", excerpt(&bytes))));
        }
        let error = Box::new(api_error(status, &bytes));
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CallError::Refused {
                url,
                key: self
                    .root_key
                    .as_ref()
                    .map_or_else(|| "no root key was sent".to_string(), |key| key.source.clone()),
                error,
            },
            _ => CallError::Failed(error),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        authenticate: bool,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let url = match &self.endpoint {
            Endpoint::Url(url) => url,
            Endpoint::Off { config } => return Err(CallError::NoListener { config: config.clone() }),
        };
        let broken = |reason: String| CallError::Broken {
            url: url.clone(),
            reason,
        };
        let mut request = Request::builder().method(method).uri(format!("{url}{path}"));
        if let (true, Some(key)) = (authenticate, &self.root_key) {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {}", key.key));
        }
        let payload = match body {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| broken(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                let reason = causes(&e);
                if e.is_connect() {
                    CallError::Unreachable {
                        url: url.clone(),
                        reason,
                    }
                } else {
                    broken(reason)
                }
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| broken(causes(&e)))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(ANSWER_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(broken(format!("no answer within {}s", ANSWER_TIMEOUT.as_secs()))))
    }
}

/// An error and its sources, without hyper's outermost layer, which only
/// says "client error (Connect)".
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let chain: Vec<String> = std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect();
    chain[usize::from(chain.len() > 1)..].join(": ")
}

/// The `error` of an error answer; one made of the status and body when
/// the answer has none (not the admin API, or an older gateway).
fn api_error(status: StatusCode, body: &[u8]) -> ApiError {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|document| ApiError::deserialize(&document["error"]).ok())
        .unwrap_or_else(|| ApiError {
            code: String::new(),
            status: status.as_u16(),
            detail: format!("{status}: {}", excerpt(body)),
            errors: Vec::new(),
        })
}

/// A body's first line, shortened, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_no_gateway() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let client = AdminClient::new(Endpoint::Url(url.clone()), None);
        let error = client.call(Method::GET, "/v1/routes", None).await.unwrap_err();
        assert!(error.no_gateway_answered(), "{error}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("no gateway answered at {url}: ")) && message.contains("refused"),
            "{message}"
        );
    }

    #[test]
    fn an_answer_without_an_error_object_is_described_by_status_and_body() {
        let error = api_error(StatusCode::NOT_FOUND, b"not found\n");
        assert_eq!(error.to_string(), "404 Not Found: not found");
        assert_eq!(error.status_and_code(), "404");
    }

    #[test]
    fn api_errors_show_detail_code_and_fields() {
        let error: ApiError = serde_json::from_value(serde_json::json!({
            "code": "err:unkey:application:invalid_input", "status": 400, "detail": "bad body",
            "errors": [{"location": "body.apiId", "message": "required"}]
        }))
        .unwrap();
        assert_eq!(
            error.to_string(),
            "bad body (err:unkey:application:invalid_input)\n  body.apiId: required"
        );
    }
}
