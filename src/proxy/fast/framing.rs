//! Where an instance's response body ends (RFC 9112 §6.3), so the fast path
//! can pass it through unchanged and still know when the connection is free
//! for the next request.

use http::{Method, StatusCode};

use super::head::{RawResponse, Role};

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (`HEAD`, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the instance closes the connection.
    UntilClose,
}

/// The response's framing; `None` when it is ambiguous or broken
/// (conflicting lengths, a transfer coding that is not chunked last): a
/// response a proxy must not pass on.
pub fn of_response(method: &Method, response: &RawResponse) -> Option<Framing> {
    let status = response.status;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Some(Framing::Empty);
    }
    let codings = response.values(Role::TransferEncoding);
    if codings.clone().next().is_some() {
        let last = codings
            .flat_map(|v| v.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|coding| !coding.is_empty())
            .last()?;
        return last.eq_ignore_ascii_case(b"chunked").then_some(Framing::Chunked);
    }
    let mut length = None;
    for value in response.values(Role::ContentLength) {
        for item in value.split(|b| *b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n = item.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|seen| seen != n) {
                return None;
            }
            length = Some(n);
        }
    }
    Some(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Follows a chunked body byte by byte as it passes, to find its end.
#[derive(Debug, Default)]
pub struct ChunkedEnd {
    state: State,
}

#[derive(Debug)]
enum State {
    Size { size: u64, digits: u8 },
    Extension { size: u64 },
    SizeLf { size: u64 },
    Data { left: u64 },
    DataCr,
    DataLf,
    LineStart,
    Line,
    LineLf,
    FinalLf,
}

impl Default for State {
    fn default() -> Self {
        State::Size { size: 0, digits: 0 }
    }
}

/// The chunked framing is broken.
#[derive(Debug, PartialEq, Eq)]
pub struct BadChunk;

impl ChunkedEnd {
    /// Feeds the next bytes of the body; `Some(n)` when the body ended after
    /// the first `n` of them.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, BadChunk> {
        let mut at = 0;
        while at < data.len() {
            if let State::Data { left } = &mut self.state {
                let take = (*left).min((data.len() - at) as u64);
                *left -= take;
                at += take as usize;
                if *left == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = data[at];
            at += 1;
            self.state = match (&self.state, byte) {
                (State::Size { size, digits }, b) if b.is_ascii_hexdigit() => {
                    let digit = (b as char).to_digit(16).map_or(0, u64::from);
                    if *digits >= 15 {
                        return Err(BadChunk);
                    }
                    State::Size {
                        size: size * 16 + digit,
                        digits: digits + 1,
                    }
                }
                (State::Size { size, digits }, b';') if *digits > 0 => State::Extension { size: *size },
                (State::Size { size, digits }, b'\r') if *digits > 0 => State::SizeLf { size: *size },
                (State::Extension { size }, b'\r') => State::SizeLf { size: *size },
                (State::Extension { .. }, b'\n') => return Err(BadChunk),
                (State::Extension { size }, _) => State::Extension { size: *size },
                (State::SizeLf { size: 0 }, b'\n') => State::LineStart,
                (State::SizeLf { size }, b'\n') => State::Data { left: *size },
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::default(),
                (State::LineStart, b'\r') => State::FinalLf,
                (State::LineStart | State::Line, b) if b != b'\n' && b != b'\r' => State::Line,
                (State::Line, b'\r') => State::LineLf,
                (State::LineLf, b'\n') => State::LineStart,
                (State::FinalLf, b'\n') => {
                    self.state = State::default();
                    return Ok(Some(at));
                }
                _ => return Err(BadChunk),
            };
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(method: Method, head: &str) -> Option<Framing> {
        let bytes = bytes::Bytes::from(format!("{head}\r\n"));
        match super::super::head::parse_response(&bytes) {
            super::super::head::ResponseRead::Complete(response) => of_response(&method, &response),
            _ => panic!("not a response head: {head}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let ok = "HTTP/1.1 200 OK\r\n";
        let cases: [(Method, String, Option<Framing>); 11] = [
            (Method::HEAD, format!("{ok}Content-Length: 5\r\n"), Some(Framing::Empty)),
            (Method::GET, "HTTP/1.1 204 No Content\r\n".into(), Some(Framing::Empty)),
            (
                Method::GET,
                "HTTP/1.1 304 Not Modified\r\n".into(),
                Some(Framing::Empty),
            ),
            (
                Method::GET,
                format!("{ok}Content-Length: 5\r\n"),
                Some(Framing::Length(5)),
            ),
            (
                Method::GET,
                format!("{ok}content-length: 5, 5\r\n"),
                Some(Framing::Length(5)),
            ),
            (
                Method::GET,
                format!("{ok}Content-Length: 5\r\nContent-Length: 6\r\n"),
                None,
            ),
            (Method::GET, format!("{ok}Content-Length: +5\r\n"), None),
            (
                Method::GET,
                format!("{ok}Transfer-Encoding: gzip, chunked\r\n"),
                Some(Framing::Chunked),
            ),
            (Method::GET, format!("{ok}Transfer-Encoding: chunked, gzip\r\n"), None),
            (
                Method::GET,
                format!("{ok}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"),
                Some(Framing::Chunked),
            ),
            (Method::GET, ok.into(), Some(Framing::UntilClose)),
        ];
        for (method, head, want) in cases {
            assert_eq!(framing(method, &head), want, "{head}");
        }
    }

    #[test]
    fn the_end_of_a_chunked_body_is_found_however_it_is_split() {
        let body = b"5;name=value\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut scanner = ChunkedEnd::default();
            let first = scanner.feed(&body[..split]).unwrap();
            let found = match first {
                Some(n) => n,
                None => split + scanner.feed(&body[split..]).unwrap().unwrap(),
            };
            assert_eq!(found, end, "split at {split}");
        }
    }

    #[test]
    fn broken_chunked_framing_is_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"\r\n",
            b"1234567890abcdef0\r\n",
            b"0\r\nTrailer: x\n\r\n",
        ] {
            assert_eq!(
                ChunkedEnd::default().feed(bad),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
