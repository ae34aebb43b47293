//! Verifying a cached key is on every request of a `keyauth` deployment:
//! SHA-256 of the presented key, the cache lookup, the checks (enabled,
//! expiry, credits, permission query) and the Principal JSON must together
//! stay well under 5 µs.

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use keygate::keys::model::{hash_key, CreditPlan, KeyRecord, StoredKey};
use keygate::keys::permissions::PermissionQuery;
use keygate::keys::verify::{Verdict, VerifyRequest};
use keygate::keys::{KeyService, StaticKeys};

const STORE_KEY: &str = "bench_3ZV8qMnK2rTy7WpLx9Dc4F";

fn record() -> KeyRecord {
    serde_json::from_value(serde_json::json!({
        "id": "key_bench", "keyspaceId": "ks_main", "start": "bench_3ZV8", "name": "bench key",
        "meta": {"plan": "pro", "org": "acme"}, "identity": {"externalId": "user_42", "meta": {"tier": 1}},
        "roles": ["admin", "reader"], "permissions": ["api.read", "api.write", "docs.*"],
        "expires": 4102444800000i64, "enabled": true, "createdAt": 1, "updatedAt": 0
    }))
    .expect("valid record")
}

fn verify(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let service = KeyService::in_memory().expect("in-memory store");
    let statics = StaticKeys::default();
    let mut record = record();
    record.credits = Some(CreditPlan::default());
    let stored = StoredKey {
        hash: hash_key(STORE_KEY),
        balance: Some(keygate::keys::model::Balance {
            remaining: i64::MAX / 2,
            period: 0,
        }),
        record,
    };
    service.insert_key(&stored).expect("insert");
    let query = PermissionQuery::parse("api.read AND (api.write OR admin)").expect("query");
    let request = VerifyRequest {
        keyspaces: Some(&["ks_main".to_string()]),
        cost: 1,
        ratelimits: &[],
        permissions: query.as_ref(),
        at: Instant::now(),
    };
    // The first verification reads the store and fills the cache.
    let warm = runtime.block_on(service.verify(&statics, STORE_KEY, &request));
    assert_eq!(warm.verdict, Verdict::Valid);

    c.bench_function("verify cached key: hash + lookup + checks + credits + Principal", |b| {
        b.iter(|| {
            let result = service
                .verify(&statics, black_box(STORE_KEY), &request)
                .now_or_never()
                .expect("a cached key verifies without waiting");
            let key = result.key.expect("found");
            black_box(key.principal_json(result.credits))
        })
    });
    c.bench_function("unknown key (negative cache)", |b| {
        runtime.block_on(service.verify(&statics, "nope_nope_nope", &request));
        // The negative cache forgets after 10 s, which a long run outlasts:
        // the one lookup that then goes to the store runs on the runtime.
        let _context = runtime.enter();
        b.iter(|| {
            let verify = || service.verify(&statics, black_box("nope_nope_nope"), &request);
            verify().now_or_never().unwrap_or_else(|| runtime.block_on(verify()))
        })
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);
