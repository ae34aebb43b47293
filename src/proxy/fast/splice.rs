//! A large body passed from an instance to a client inside the kernel.
//! Relayed through a buffer, each byte is copied twice on the proxy's CPU
//! (socket → buffer → socket); with `splice(2)` through a pipe the kernel
//! hands the instance socket's pages to the client socket instead. Used
//! only for what needs nothing looked at: a body of known length between
//! two plain TCP sockets with nothing buffered in front of them, once its
//! head and first bytes went out the usual way.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use pingora_core::protocols::l4::stream::Stream as TcpLayer;
use pingora_core::protocols::Stream;
use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::timer::ConnectionTimer;

/// Below this many bytes left, two reads and writes cost less than a pipe's
/// round trip; the body goes through the buffer.
pub const MIN_LEFT: u64 = 64 << 10;
/// The pipe's capacity asked for (the kernel's default is 64 KiB).
const PIPE_SIZE: usize = 256 << 10;

/// How a spliced body went.
pub enum Spliced {
    Done,
    ClientGone,
    /// The instance closed, failed or went quiet before the body's end.
    InstanceEnded,
}

/// The TCP socket under `stream`, when the body can go around its buffers.
pub fn plain_tcp(stream: &Stream) -> Option<&TcpStream> {
    (**stream).as_any().downcast_ref::<TcpLayer>()?.unbuffered_tcp()
}

/// Moves the next `left` bytes from `instance` to `client`; each wait for
/// the instance is at most `wait`. `None`: no pipe could be had (nothing
/// was moved; relay the body another way).
pub async fn body(
    client: &TcpStream,
    instance: &TcpStream,
    mut left: u64,
    wait: Duration,
    timer: &mut ConnectionTimer,
) -> Option<Spliced> {
    let pipe = Pipe::take()?;
    // Filled only while empty and then drained whole: a `splice` into a
    // pipe with room means the socket had nothing, so tokio's readiness
    // for it may be cleared.
    let spliced = loop {
        if left == 0 {
            break Spliced::Done;
        }
        let chunk = left.min(pipe.size as u64) as usize;
        let filled = loop {
            match instance.try_io(Interest::READABLE, || pipe.fill_from(instance, chunk)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => break done,
            }
            if !matches!(
                timer.within(Instant::now().into(), wait, instance.readable()).await,
                Some(Ok(()))
            ) {
                break Ok(0);
            }
        };
        let mut in_pipe = match filled {
            Ok(n) if n > 0 => n,
            _ => break Spliced::InstanceEnded,
        };
        left -= in_pipe as u64;
        while in_pipe > 0 {
            match client.try_io(Interest::WRITABLE, || pipe.drain_to(client, in_pipe)) {
                Ok(n) if n > 0 => in_pipe -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if client.writable().await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        if in_pipe > 0 {
            break Spliced::ClientGone;
        }
    };
    if matches!(spliced, Spliced::Done) {
        pipe.put_back();
    }
    Some(spliced)
}

/// A pipe kept per worker thread between bodies; one left holding bytes
/// (a body cut short) is closed instead.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

thread_local! {
    static SPARE: RefCell<Option<Pipe>> = const { RefCell::new(None) };
}

impl Pipe {
    fn take() -> Option<Pipe> {
        if let Some(pipe) = SPARE.with(|spare| spare.borrow_mut().take()) {
            return Some(pipe);
        }
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
        // Past the user's limit for pipes the kernel refuses; the default
        // capacity still works.
        let size = fcntl_setpipe_size(&write, PIPE_SIZE).unwrap_or(64 << 10);
        Some(Pipe { read, write, size })
    }

    fn put_back(self) {
        SPARE.with(|spare| *spare.borrow_mut() = Some(self));
    }

    fn fill_from(&self, socket: &TcpStream, len: usize) -> io::Result<usize> {
        Ok(splice(socket, None, &self.write, None, len, flags())?)
    }

    fn drain_to(&self, socket: &TcpStream, len: usize) -> io::Result<usize> {
        Ok(splice(&self.read, None, socket, None, len, flags())?)
    }
}

fn flags() -> SpliceFlags {
    SpliceFlags::MOVE | SpliceFlags::NONBLOCK
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const WAIT: Duration = Duration::from_secs(10);

    /// Both ends of a loopback TCP connection: the near one as pingora's
    /// stream, the far one plain.
    async fn connection() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (far, _) = listener.accept().await.unwrap();
        (Box::new(TcpLayer::from(near)), far)
    }

    #[tokio::test]
    async fn a_body_moves_between_sockets_whole_and_stops_at_its_length() {
        let (client, mut client_far) = connection().await;
        let (instance, mut instance_far) = connection().await;
        let body: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        let sent = body.clone();
        let writer = tokio::spawn(async move {
            instance_far.write_all(&sent).await.unwrap();
            instance_far.write_all(b"next").await.unwrap();
            instance_far
        });
        let reader = tokio::spawn(async move {
            let mut received = vec![0; body.len()];
            client_far.read_exact(&mut received).await.unwrap();
            assert!(received == body, "the bytes arrive as sent");
        });
        let (to, from) = (plain_tcp(&client).unwrap(), plain_tcp(&instance).unwrap());
        let spliced = super::body(to, from, (3 << 20) + 17, WAIT, &mut ConnectionTimer::new()).await;
        assert!(matches!(spliced, Some(Spliced::Done)));
        reader.await.unwrap();
        let _far = writer.await.unwrap();
        let mut next = [0u8; 4];
        let mut instance = instance;
        instance.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"next", "what follows the body stays in the socket");
    }

    #[tokio::test]
    async fn a_body_cut_short_is_told_apart_and_its_pipe_is_not_kept() {
        let (client, _client_far) = connection().await;
        let (instance, mut instance_far) = connection().await;
        instance_far.write_all(&[7u8; 100_000]).await.unwrap();
        drop(instance_far);
        let (to, from) = (plain_tcp(&client).unwrap(), plain_tcp(&instance).unwrap());
        let spliced = body(to, from, 1 << 20, WAIT, &mut ConnectionTimer::new()).await;
        assert!(matches!(spliced, Some(Spliced::InstanceEnded)));
        assert!(
            SPARE.with(|s| s.borrow().is_none()),
            "a pipe that may hold bytes is closed"
        );
    }

    #[tokio::test]
    async fn a_stream_with_bytes_in_front_of_its_socket_is_not_spliced() {
        let (stream, _far) = connection().await;
        assert!(plain_tcp(&stream).is_some());
        let mut layer: Box<TcpLayer> = stream.into_any().downcast().unwrap();
        layer.rewind(b"GET");
        let stream: Stream = layer;
        assert!(plain_tcp(&stream).is_none(), "the rewound bytes would be skipped");
    }
}
