//! Evaluating a deployment's policy chain is on every request: a chain of 10
//! match-only policies must cost well under a microsecond, and a request that
//! matches none of them must not allocate. A counting allocator checks that.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use keygate::config::policy::PolicySpec;
use keygate::policy::{PolicyChain, PolicyState, RequestView};

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Ten firewall policies with every kind of match expression, none of which
/// matches the benchmark request.
const CHAIN: &str = r#"
- {id: p1, match: [{path: {prefix: /admin}}], firewall: {action: deny}}
- {id: p2, match: [{path: {exact: /internal/metrics}}], firewall: {action: deny}}
- {id: p3, match: [{path: {regex: '^/v[0-9]+/debug/'}}], firewall: {action: deny}}
- {id: p4, match: [{method: [DELETE, PATCH]}], firewall: {action: deny}}
- {id: p5, match: [{header: {name: X-Debug, present: true}}], firewall: {action: deny}}
- {id: p6, match: [{header: {name: User-Agent, value: {prefix: sqlmap}}}], firewall: {action: deny}}
- {id: p7, match: [{header: {name: X-Env, value: {exact: STAGING, ignore_case: true}}}], firewall: {action: deny}}
- {id: p8, match: [{query: {name: debug, present: true}}], firewall: {action: deny}}
- {id: p9, match: [{query: {name: version, value: {exact: beta}}}], firewall: {action: deny}}
- {id: p10, match: [{path: {prefix: /v1/}}, {method: [POST]}, {header: {name: X-Tenant, present: false}}], firewall: {action: deny}}
"#;

fn chain() -> PolicyChain {
    let specs: Vec<PolicySpec> = serde_saphyr::from_str(CHAIN).expect("valid chain");
    support::chain(&specs)
}

fn request() -> http::request::Parts {
    http::Request::get("/v1/users/42?page=2&limit=50")
        .header("host", "api.example.com")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")
        .header("accept", "application/json")
        .header("x-tenant", "acme")
        .body(())
        .expect("valid request")
        .into_parts()
        .0
}

fn evaluate(chain: &PolicyChain, view: &RequestView<'_>, state: &mut PolicyState) -> bool {
    chain
        .evaluate(view, state)
        .now_or_never()
        .expect("match-only policies never wait")
        .is_ok()
}

fn policy_chain(c: &mut Criterion) {
    let chain = chain();
    let head = request();
    let view = RequestView::new(&head, Some("203.0.113.9".parse().expect("valid ip")), Instant::now());
    let mut state = PolicyState::default();

    // The regex engine creates its matching cache on first use; after that
    // evaluation must not allocate.
    assert!(evaluate(&chain, &view, &mut state));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        assert!(evaluate(&chain, &view, &mut state));
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "allocations per no-match evaluation of 10 policies: {}",
        allocations as f64 / 1000.0
    );
    assert_eq!(allocations, 0, "the no-match path must not allocate");

    c.bench_function("policy chain: 10 match-only policies, no match", |b| {
        b.iter(|| evaluate(black_box(&chain), black_box(&view), &mut state))
    });
}

criterion_group!(benches, policy_chain);
criterion_main!(benches);
