//! Request bodies that policies read (`openapi`): pingora sends the request
//! head upstream before `request_body_filter` runs and its retry buffer holds
//! only 64 KiB, so a body that must be validated before any byte reaches an
//! instance is read whole in `request_filter` (up to
//! `limits.max_request_body`, else 413) and kept in the request context;
//! `request_body_filter` then hands exactly those bytes upstream (see the
//! `keygate patch` in vendor/pingora-proxy, vendor/PATCHES.md).
//!
//! A chunked body is also started early, for another reason: pingora sends
//! the request head upstream before reading any of the body, so a bad first
//! chunk size would be found after the instance already has the head. The
//! first piece is read in `request_filter` ([`read_first_piece`]) and put
//! back in front of the rest as the body streams ([`prepend`]).

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
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| BufferError::Read(from_client(e)))?
    {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A failure reading the body is the client's (a 400 for bad framing, a 408
/// for a stall), not the gateway's.
fn from_client(mut error: Box<pingora_error::Error>) -> Box<pingora_error::Error> {
    error.as_down();
    error
}

/// What [`read_first_piece`] found.
pub enum FirstPiece {
    /// The body ended within it: the whole body, to replay like a buffered one.
    Whole(Bytes),
    /// More follows: these bytes go in front of the next piece.
    Prefix(Bytes),
}

/// For a chunked request: answers `Expect: 100-continue` (the client would
/// otherwise wait before sending the body) and reads the body's first piece,
/// which validates the first chunk's size line.
pub async fn read_first_piece(session: &mut Session) -> pingora_error::Result<FirstPiece> {
    if session.req_header().headers.contains_key(http::header::EXPECT) {
        session.req_header_mut().remove_header(&http::header::EXPECT);
        let proceed = pingora_http::ResponseHeader::build(100, Some(0))?;
        session
            .as_downstream_mut()
            .write_response_header(Box::new(proceed))
            .await?;
    }
    let first = session
        .read_request_body()
        .await
        .map_err(from_client)?
        .unwrap_or_default();
    Ok(if session.is_body_done() {
        FirstPiece::Whole(first)
    } else {
        FirstPiece::Prefix(first)
    })
}

/// In `request_body_filter`: puts the first piece read early back in front.
pub fn prepend(chunk: &mut Option<Bytes>, prefix: Bytes) {
    *chunk = Some(match chunk.take() {
        Some(rest) if !rest.is_empty() => {
            let mut joined = BytesMut::with_capacity(prefix.len() + rest.len());
            joined.extend_from_slice(&prefix);
            joined.extend_from_slice(&rest);
            joined.freeze()
        }
        _ => prefix,
    });
}

/// In `request_body_filter`: pingora offers `(None, end_of_stream)` for a
/// body consumed before proxying; supply the buffered bytes instead.
pub fn replay(chunk: &mut Option<Bytes>, end_of_stream: bool, buffered: &Bytes) {
    if end_of_stream && chunk.as_ref().is_none_or(Bytes::is_empty) && !buffered.is_empty() {
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

    #[test]
    fn prepends_the_first_piece() {
        let mut chunk = Some(Bytes::from_static(b"world"));
        prepend(&mut chunk, Bytes::from_static(b"hello "));
        assert_eq!(chunk.as_deref(), Some(&b"hello world"[..]));
        let mut chunk = None;
        prepend(&mut chunk, Bytes::from_static(b"hello"));
        assert_eq!(chunk.as_deref(), Some(&b"hello"[..]));
    }
}
