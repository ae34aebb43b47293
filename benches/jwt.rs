//! `jwtauth` runs on every authenticated request: verifying an RS256 token
//! (2048-bit key) whose key set is already cached — bearer parsing, header
//! check, key lookup, signature, claims, Principal — must stay under 50 µs.
//! The JWKS is served by a local HTTP server and fetched once, as in production.

mod support;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use keygate::config::policy::PolicySpec;
use keygate::policy::{PolicyState, RequestView};

/// A fresh RSA key (PKCS#8 PEM and DER) from the openssl CLI.
fn rsa_key() -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("key.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(out.status.success(), "openssl {args:?}");
        out.stdout
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().expect("utf-8 path"),
    ]);
    let der = run(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        key.to_str().expect("utf-8 path"),
        "-outform",
        "DER",
    ]);
    (std::fs::read(&key).expect("key file"), der)
}

/// Serves `jwks` at `/jwks.json` on a loopback port, forever.
fn serve_jwks(runtime: &tokio::runtime::Runtime, jwks: String) -> std::net::SocketAddr {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    runtime.spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    addr
}

fn jwt(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (pem, der) = rsa_key();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("PKCS#8 RSA key");
    let public: ring::signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
    let (n, e) = (B64.encode(public.n), B64.encode(public.e));
    let jwks = serde_json::json!({"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "n": n, "e": e}]}).to_string();
    let addr = serve_jwks(&runtime, jwks);

    let specs: Vec<PolicySpec> = serde_saphyr::from_str(&format!(
        "- id: jwt\n  jwtauth: {{jwks_uri: 'http://{addr}/jwks.json', issuer: 'https://idp.test', audiences: [api], algorithms: [RS256]}}\n"
    ))
    .expect("valid policy");
    let chain = support::chain(&specs);

    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let claims = serde_json::json!({"iss": "https://idp.test", "aud": "api", "sub": "user_42", "org_id": "org_7", "iat": now, "exp": now + 3600});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("RSA PEM"),
    )
    .expect("signs");
    let head = http::Request::get("/v1/users")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .expect("valid request")
        .into_parts()
        .0;
    let view = RequestView::new(&head, None, Instant::now());

    // The first request fetches the key set; every later one uses the cache.
    let mut state = PolicyState::default();
    runtime
        .block_on(chain.evaluate(&view, &mut state))
        .expect("the token verifies");
    assert!(state.principal().is_some());

    c.bench_function("jwtauth: RS256 verify, cached JWKS", |b| {
        b.iter(|| {
            let mut state = PolicyState::default();
            chain
                .evaluate(black_box(&view), &mut state)
                .now_or_never()
                .expect("a cached key set never waits")
                .expect("valid token");
            state
        })
    });
}

criterion_group!(benches, jwt);
criterion_main!(benches);
