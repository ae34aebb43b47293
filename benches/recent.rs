//! What the dashboard's always-on recording costs each request: one entry
//! in the recent-requests ring and one count in its deployment's series.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use keygate::telemetry::recent::{Answered, Recent, Series};

fn request<'a>(deployment: &'a Arc<str>, series: &'a Series) -> Answered<'a> {
    Answered {
        at: 1_764_900_000_000,
        method: "GET",
        host: "api.example.com",
        path: "/v1/orders/12345",
        status: 200,
        deployment: Some((deployment, series)),
        total_us: 1_250,
        instance_us: Some(900),
        error_code: None,
        subject: Some("user_42"),
        request_id: "req_2Mq8Zr1vYx7N4kPa",
    }
}

fn record(c: &mut Criterion) {
    let recent = Recent::default();
    let deployment: Arc<str> = Arc::from("dep_api");
    // Resolved once, as a deployment holds it.
    let series = recent.series_of(&deployment);
    c.bench_function("recent/record one request", |b| {
        b.iter(|| recent.record(&request(&deployment, &series)))
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
