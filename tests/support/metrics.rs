//! Prometheus text scraping for the admin `/metrics` endpoint: a small
//! independent parser (samples with labels, subset-of-labels queries) and the
//! [`Gateway`] methods that read or wait for a metric.

use std::time::{Duration, Instant};

use super::gateway::Gateway;
use super::wait::WAIT;

/// One sample line: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = parse_series(line, true) {
            out.push(s);
        }
    }
    out
}

/// Parses `name{a="b"} value` (or without labels / value).
fn parse_series(s: &str, with_value: bool) -> Option<Sample> {
    let name_end = s.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(s.len());
    let name = s[..name_end].to_string();
    let mut rest = &s[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let chars: Vec<char> = rest.chars().collect();
        let mut i = 1;
        loop {
            while i < chars.len() && (chars[i] == ',' || chars[i].is_whitespace()) {
                i += 1;
            }
            if i >= chars.len() {
                return None;
            }
            if chars[i] == '}' {
                i += 1;
                break;
            }
            let k_start = i;
            while i < chars.len() && chars[i] != '=' {
                i += 1;
            }
            let key: String = chars[k_start..i].iter().collect::<String>().trim().to_string();
            i += 1; // '='
            if chars.get(i) != Some(&'"') {
                return None;
            }
            i += 1;
            let mut val = String::new();
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                    val.push(match chars[i] {
                        'n' => '\n',
                        c => c,
                    });
                } else {
                    val.push(chars[i]);
                }
                i += 1;
            }
            i += 1; // closing quote
            labels.push((key, val));
        }
        let consumed: usize = chars[..i].iter().map(|c| c.len_utf8()).sum();
        rest = &rest[consumed..];
    }
    let value = if with_value {
        let v = rest.split_whitespace().next()?;
        match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            _ => v.parse().ok()?,
        }
    } else {
        0.0
    };
    Some((name, labels, value))
}

/// Sum of the samples in `text` matching `query` (labels are a subset match).
pub fn metric_in(text: &str, query: &str) -> Option<f64> {
    let (qname, qlabels, _) = parse_series(query.trim(), false).expect("bad metric query");
    let mut found = None;
    for (name, labels, v) in parse_metrics(text) {
        if name != qname {
            continue;
        }
        if qlabels
            .iter()
            .all(|(k, qv)| labels.iter().any(|(lk, lv)| lk == k && lv == qv))
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

impl Gateway {
    pub async fn metrics_text(&self) -> String {
        let r = self
            .client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200, "GET /metrics status");
        r.text().await.unwrap()
    }

    /// Sum of every series matching `query` (`name` or `name{label="v",...}`,
    /// labels as a subset), `None` when no series matches.
    pub async fn metric_opt(&self, query: &str) -> Option<f64> {
        metric_in(&self.metrics_text().await, query)
    }

    /// Like [`Gateway::metric_opt`], with an absent series read as 0.
    pub async fn metric(&self, query: &str) -> f64 {
        self.metric_opt(query).await.unwrap_or(0.0)
    }

    /// Waits (bounded) until `query` reads exactly `want`. Counters are
    /// updated when a request is logged, which may be just after the client
    /// has its response, so assertions on them poll.
    pub async fn wait_metric(&self, query: &str, want: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.metrics_text().await;
            let got = metric_in(&text, query);
            if got == Some(want) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("metric {query} is {got:?}, want {want} (waited {WAIT:?})\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits (bounded) until `query` reads at least `min`; returns the value.
    pub async fn wait_metric_at_least(&self, query: &str, min: f64) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.metrics_text().await;
            let got = metric_in(&text, query).unwrap_or(0.0);
            if got >= min {
                return got;
            }
            if Instant::now() >= deadline {
                panic!("metric {query} is {got}, want >= {min} (waited {WAIT:?})\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
