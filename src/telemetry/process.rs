//! The process's own resource use, read from /proc each time `/metrics` is
//! scraped (nothing is sampled in between), under the names every
//! Prometheus client library uses, so stock dashboards and alerts apply:
//! `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_threads`, `process_start_time_seconds`.

use procfs::process::{LimitValue, Process};
use procfs::WithCurrentSystemInfo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Registered once with the process-wide registry.
#[derive(Debug)]
pub struct ProcessCollector;

/// One scrape's reading; a part /proc does not give (another OS, a
/// restricted sandbox) is left out rather than reported as 0.
struct Reading {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    threads: Option<i64>,
    start_time_seconds: Option<f64>,
    open_fds: Option<usize>,
    max_fds: Option<u64>,
}

impl Reading {
    fn now() -> Self {
        let process = Process::myself().ok();
        let stat = process.as_ref().and_then(|p| p.stat().ok());
        let ticks = procfs::ticks_per_second() as f64;
        let boot = procfs::boot_time_secs().ok();
        Self {
            cpu_seconds: stat.as_ref().map(|s| (s.utime + s.stime) as f64 / ticks),
            resident_bytes: stat.as_ref().map(|s| s.rss_bytes().get()),
            virtual_bytes: stat.as_ref().map(|s| s.vsize),
            threads: stat.as_ref().map(|s| s.num_threads),
            start_time_seconds: stat
                .as_ref()
                .zip(boot)
                .map(|(s, boot)| boot as f64 + s.starttime as f64 / ticks),
            open_fds: process.as_ref().and_then(|p| p.fd_count().ok()),
            max_fds: process.as_ref().and_then(|p| p.limits().ok()).and_then(|limits| {
                match limits.max_open_files.soft_limit {
                    LimitValue::Value(max) => Some(max),
                    LimitValue::Unlimited => None,
                }
            }),
        }
    }
}

/// Saturating conversion for gauge values (a count beyond i64 is not real).
fn saturating(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// Writes one metric, if there is a value.
fn encode_one<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    metric: Option<M>,
) -> Result<(), std::fmt::Error> {
    match metric {
        Some(metric) => {
            let metric_encoder = encoder.encode_descriptor(name, help, unit.as_ref(), metric.metric_type())?;
            metric.encode(metric_encoder)
        }
        None => Ok(()),
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = Reading::now();
        let gauge = |value: Option<i64>| value.map(ConstGauge::new);
        let e = &mut encoder;
        encode_one(
            e,
            "process_cpu",
            "User and system CPU time spent",
            Some(Unit::Seconds),
            r.cpu_seconds.map(ConstCounter::new),
        )?;
        encode_one(
            e,
            "process_resident_memory",
            "Resident memory size",
            Some(Unit::Bytes),
            gauge(r.resident_bytes.map(saturating)),
        )?;
        encode_one(
            e,
            "process_virtual_memory",
            "Virtual memory size",
            Some(Unit::Bytes),
            gauge(r.virtual_bytes.map(saturating)),
        )?;
        encode_one(
            e,
            "process_open_fds",
            "Open file descriptors",
            None,
            gauge(r.open_fds.map(saturating)),
        )?;
        encode_one(
            e,
            "process_max_fds",
            "The limit on open file descriptors",
            None,
            gauge(r.max_fds.map(saturating)),
        )?;
        encode_one(e, "process_threads", "OS threads", None, gauge(r.threads))?;
        let start = r.start_time_seconds.map(ConstGauge::new);
        encode_one(
            e,
            "process_start_time",
            "Start time of the process since the unix epoch",
            Some(Unit::Seconds),
            start,
        )
    }
}
