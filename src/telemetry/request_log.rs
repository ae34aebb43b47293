//! The request-log sink: JSON lines to stdout or a file,
//! written by one background thread. Requests only `try_send` into a bounded
//! channel — a slow or stuck sink drops records (counted in
//! `keygate_log_records_dropped_total`), it never slows a request. A file
//! sink follows log rotation: it reopens on SIGUSR1 or when the path's inode
//! changes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::metrics;
use crate::config::telemetry::RequestLogSpec;
use arc_swap::ArcSwap;

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

/// A compiled `request_log` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLogSettings {
    pub sink: Sink,
    pub buffer: usize,
}

impl Default for RequestLogSettings {
    fn default() -> Self {
        Self {
            sink: Sink::Stdout,
            buffer: RequestLogSpec::default_buffer(),
        }
    }
}

impl RequestLogSettings {
    pub fn compile(spec: Option<&RequestLogSpec>, base_dir: &std::path::Path) -> Self {
        let Some(spec) = spec else {
            return Self::default();
        };
        let sink = match spec.sink.as_str() {
            "stdout" | "-" => Sink::Stdout,
            path => Sink::File(base_dir.join(path)),
        };
        Self {
            sink,
            buffer: spec.buffer.max(1),
        }
    }
}

/// How often a file sink checks whether its path was rotated away.
const ROTATION_CHECK: Duration = Duration::from_secs(1);

/// The request-log sink: the sending half of the writer's channel and the
/// target it writes to, both swappable by a reload. Clones share it.
#[derive(Clone)]
pub struct RequestLog(Arc<Shared>);

struct Shared {
    sender: ArcSwap<Option<SyncSender<String>>>,
    target: Arc<ArcSwap<Sink>>,
    /// Set to make the writer reopen its file (SIGUSR1, a new sink).
    reopen: Arc<AtomicBool>,
    buffer: AtomicUsize,
    configuring: Mutex<()>,
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog").finish_non_exhaustive()
    }
}

impl Default for RequestLog {
    /// Not writing yet: records are dropped (and counted) until [`RequestLog::configure`].
    fn default() -> Self {
        Self(Arc::new(Shared {
            sender: ArcSwap::from_pointee(None),
            target: Arc::new(ArcSwap::from_pointee(Sink::Stdout)),
            reopen: Arc::new(AtomicBool::new(false)),
            buffer: AtomicUsize::new(0),
            configuring: Mutex::new(()),
        }))
    }
}

impl RequestLog {
    /// Applies settings at start-up and on reload. The writer thread starts on
    /// first use; a new buffer size replaces it (the old one drains and exits); a
    /// new sink makes the writer reopen.
    pub fn configure(&self, settings: &RequestLogSettings) {
        let log = &self.0;
        let Ok(_one_at_a_time) = log.configuring.lock() else {
            return;
        };
        if **log.target.load() != settings.sink {
            log.target.store(Arc::new(settings.sink.clone()));
            log.reopen.store(true, Ordering::Relaxed);
        }
        if log.buffer.load(Ordering::Relaxed) == settings.buffer {
            return;
        }
        let (sender, receiver) = sync_channel(settings.buffer);
        let (target, reopen) = (log.target.clone(), log.reopen.clone());
        let spawned = std::thread::Builder::new()
            .name("keygate-request-log".into())
            .spawn(move || write_loop(receiver, target, reopen));
        match spawned {
            Ok(_) => {
                log.sender.store(Arc::new(Some(sender)));
                log.buffer.store(settings.buffer, Ordering::Relaxed);
            }
            Err(e) => tracing::error!("cannot start the request-log writer: {e}"),
        }
    }

    /// Queues one JSON line; never blocks. Dropped (and counted) when the buffer is full.
    pub fn submit(&self, line: String) {
        let sender = self.0.sender.load();
        let sent = match sender.as_ref() {
            Some(tx) => tx.try_send(line),
            None => Err(TrySendError::Disconnected(line)),
        };
        if sent.is_err() {
            metrics().log_records_dropped.inc();
        }
    }

    /// Asks a file sink to reopen its file (SIGUSR1, after a rotation).
    pub fn reopen(&self) {
        self.0.reopen.store(true, Ordering::Relaxed);
    }
}

fn write_loop(receiver: Receiver<String>, target: Arc<ArcSwap<Sink>>, reopen: Arc<AtomicBool>) {
    let mut out = Output::open(&target.load());
    let mut last_check = Instant::now();
    loop {
        match receiver.recv_timeout(ROTATION_CHECK) {
            Ok(line) => out.write_line(&line),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let rotated = last_check.elapsed() >= ROTATION_CHECK && out.path_was_replaced();
        if rotated {
            last_check = Instant::now();
        }
        if reopen.swap(false, Ordering::Relaxed) || rotated {
            out = Output::open(&target.load());
        }
    }
}

/// The open sink and, for a file, the inode it was opened with.
enum Output {
    Stdout(io::Stdout),
    File { file: File, path: PathBuf, inode: u64 },
    Broken,
}

impl Output {
    fn open(sink: &Sink) -> Self {
        match sink {
            Sink::Stdout => Self::Stdout(io::stdout()),
            Sink::File(path) => match OpenOptions::new().create(true).append(true).open(path) {
                Ok(file) => {
                    let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
                    Self::File {
                        file,
                        path: path.clone(),
                        inode,
                    }
                }
                Err(e) => {
                    tracing::error!("cannot open the request log {}: {e}", path.display());
                    Self::Broken
                }
            },
        }
    }

    fn write_line(&mut self, line: &str) {
        let result = match self {
            Self::Stdout(out) => writeln!(out.lock(), "{line}"),
            Self::File { file, .. } => writeln!(file, "{line}"),
            Self::Broken => Err(io::Error::other("sink not open")),
        };
        if result.is_err() {
            metrics().log_records_dropped.inc();
        }
    }

    /// True when the path now names another file (rotated) or none.
    fn path_was_replaced(&self) -> bool {
        match self {
            Self::File { path, inode, .. } => std::fs::metadata(path).map(|m| m.ino() != *inode).unwrap_or(true),
            Self::Broken => true,
            Self::Stdout(_) => false,
        }
    }
}
