//! Request bodies that policies read (`openapi`): pingora sends the request
//! head upstream before `request_body_filter` runs and its retry buffer holds
//! only 64 KiB, so a body that must be validated before any byte reaches an
//! instance is read whole in `request_filter` (up to
//! `limits.max_request_body`, else 413) and kept in the request context;
//! `request_body_filter` then hands exactly those bytes upstream (see the
//! `keygate patch` in vendor/pingora-proxy, vendor/PATCHES.md).

use bytes::{Bytes, BytesMut};
use pingora_proxy::Session;

use crate::errors::{ErrorCode, GatewayError};

/// Why a body could not be buffered.
pub enum BufferError {
    /// Larger than the limit: answer 413.
    TooLarge(GatewayError),
    /// The client connection failed (closed, timed out): nothing to answer.
    Read(Box<pingora_error::Error>),
}

/// Reads the whole request body, at most `max` bytes.
pub async fn buffer(session: &mut Session, max: u64) -> Result<Bytes, BufferError> {
    let too_large = || BufferError::TooLarge(GatewayError::new(ErrorCode::RequestTooLarge));
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = session.read_request_body().await.map_err(BufferError::Read)? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// In `request_body_filter`: pingora offers `(None, end_of_stream)` for a
/// body consumed before proxying; supply the buffered bytes instead.
pub fn replay(chunk: &mut Option<Bytes>, end_of_stream: bool, buffered: &Bytes) {
    if end_of_stream && chunk.as_ref().map_or(true, Bytes::is_empty) && !buffered.is_empty() {
        *chunk = Some(buffered.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_the_buffered_body_once_at_the_end() {
        let buffered = Bytes::from_static(b"{\"a\":1}");
        let mut chunk = None;
        replay(&mut chunk, true, &buffered);
        assert_eq!(chunk.as_deref(), Some(&b"{\"a\":1}"[..]));
        let mut chunk = None;
        replay(&mut chunk, false, &buffered);
        assert!(chunk.is_none());
        let mut chunk = None;
        replay(&mut chunk, true, &Bytes::new());
        assert!(chunk.is_none());
    }
}
