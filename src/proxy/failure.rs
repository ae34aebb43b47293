//! The one function that decides what a failure means to the client: an
//! instance refused or unreachable → 503, too slow → 504, broken → 502; a
//! malformed request (bad chunk framing, a forbidden `Connection`
//! nomination) → 400, a stalled request body → 408, a client gone → nothing.

use pingora_error::{Error, ErrorSource, ErrorType};

use super::context::RequestCtx;
use crate::errors::ErrorCode;
use crate::telemetry::metrics;

/// The error to answer with, or `None` when the client is gone (nothing to answer).
pub fn classify(error: &Error) -> Option<ErrorCode> {
    use ErrorType::*;
    match (error.esource(), error.etype()) {
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed | WriteTimedout) => None,
        (ErrorSource::Downstream, ReadTimedout) => Some(ErrorCode::RequestTimeout),
        (_, HTTPStatus(413)) => Some(ErrorCode::RequestTooLarge),
        (
            ErrorSource::Upstream,
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError,
        )
        | (ErrorSource::Upstream, TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError) => {
            Some(ErrorCode::ServiceUnavailable)
        }
        (ErrorSource::Upstream, ReadTimedout | WriteTimedout) => Some(ErrorCode::GatewayTimeout),
        (ErrorSource::Upstream, _) => Some(ErrorCode::BadGateway),
        (ErrorSource::Downstream, _) => Some(ErrorCode::BadRequest),
        (ErrorSource::Internal | ErrorSource::Unset, _) => Some(ErrorCode::InternalServerError),
    }
}

/// Whether the error happened while connecting (so the request never left).
pub fn is_connect_failure(error: &Error) -> bool {
    use ErrorType::*;
    matches!(
        error.etype(),
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError
    )
}

/// Books a failed connect to `instance` (metrics, passive health, the
/// trace, the log) and marks the error retryable when another instance is
/// left to try.
pub fn connect_failed(ctx: &mut RequestCtx, instance: &dyn std::fmt::Display, mut error: Box<Error>) -> Box<Error> {
    metrics().upstream_connect_failures.inc();
    if let (Some(attempt), Some(deployment)) = (&ctx.instance_load, ctx.deployment()) {
        attempt.connect_failed(&deployment.passive);
    }
    tracing::warn!(request_id = %ctx.request_id, %instance, "connect to instance failed: {error}");
    if let Some(trace) = ctx.trace.as_mut() {
        trace.attempt_failed(error.etype().as_str(), &error);
    }
    if is_connect_failure(&error) && ctx.can_retry() {
        error.set_retry(true);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(source: ErrorSource, kind: ErrorType) -> Box<Error> {
        let mut e = Error::new(kind);
        e.esource = source;
        e
    }

    #[test]
    fn mapping() {
        use ErrorType::*;
        assert_eq!(
            classify(&err(ErrorSource::Upstream, ConnectRefused)),
            Some(ErrorCode::ServiceUnavailable)
        );
        assert_eq!(
            classify(&err(ErrorSource::Upstream, ConnectTimedout)),
            Some(ErrorCode::ServiceUnavailable)
        );
        assert_eq!(
            classify(&err(ErrorSource::Upstream, ReadTimedout)),
            Some(ErrorCode::GatewayTimeout)
        );
        assert_eq!(
            classify(&err(ErrorSource::Upstream, ConnectionClosed)),
            Some(ErrorCode::BadGateway)
        );
        assert_eq!(
            classify(&err(ErrorSource::Upstream, InvalidHTTPHeader)),
            Some(ErrorCode::BadGateway)
        );
        assert_eq!(classify(&err(ErrorSource::Downstream, ConnectionClosed)), None);
        assert_eq!(
            classify(&err(ErrorSource::Downstream, ReadTimedout)),
            Some(ErrorCode::RequestTimeout)
        );
        assert_eq!(
            classify(&err(ErrorSource::Downstream, InvalidHTTPHeader)),
            Some(ErrorCode::BadRequest)
        );
        let chunk = ErrorType::new("InvalidChunk");
        assert_eq!(
            classify(&err(ErrorSource::Downstream, chunk)),
            Some(ErrorCode::BadRequest)
        );
        assert_eq!(
            classify(&err(ErrorSource::Internal, InternalError)),
            Some(ErrorCode::InternalServerError)
        );
    }
}
