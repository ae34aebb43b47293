//! Reads whose buffer exists only while bytes are being copied. A request
//! head or a small response is a few hundred bytes, but a read needs room
//! for what may come (4–16 KiB): allocated per read, that room is a large
//! allocation (slower than a small one) held for the whole wait, so every
//! idle keep-alive connection would hold one. Here each worker thread
//! reads into one scratch buffer of its own, within a single poll, and
//! keeps a copy sized to what arrived.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;

use bytes::Bytes;
use pingora_core::protocols::Stream;
use tokio::io::{AsyncRead, ReadBuf};

/// The most a fitted read takes at once.
const MAX_READ: usize = 16 << 10;

thread_local! {
    /// Borrowed only inside one `poll_read`: nothing else runs meanwhile.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_READ].into_boxed_slice());
}

/// What `stream` has to read, at most `max` bytes (capped at [`MAX_READ`]),
/// once some arrived; empty at the end of the stream.
pub async fn read(stream: &mut Stream, max: usize) -> io::Result<Bytes> {
    let max = max.min(MAX_READ);
    poll_fn(|cx| {
        SCRATCH.with(|scratch| {
            let (mut borrowed, mut own);
            let room: &mut [u8] = match scratch.try_borrow_mut() {
                Ok(scratch) => {
                    borrowed = scratch;
                    &mut borrowed[..max]
                }
                // Never expected (a poll_read reads no other stream), but a
                // second reader on this thread would get room of its own.
                Err(_) => {
                    own = vec![0; max];
                    &mut own
                }
            };
            let mut buf = ReadBuf::new(room);
            Pin::new(&mut *stream)
                .poll_read(cx, &mut buf)
                .map_ok(|()| Bytes::copy_from_slice(buf.filled()))
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_read_returns_what_arrived_sized_to_it_then_the_end() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"hello").await.unwrap();
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(tcp));
        let first = read(&mut stream, 4).await.unwrap();
        assert_eq!(&first[..], b"hell");
        let rest = read(&mut stream, 1 << 20).await.unwrap();
        assert_eq!(&rest[..], b"o");
        writer.await.unwrap();
        assert!(read(&mut stream, 16).await.unwrap().is_empty(), "end of stream");
    }
}
