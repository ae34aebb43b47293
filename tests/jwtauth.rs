//! The `jwtauth` policy through the gateway:
//! tokens signed in the test with freshly generated RSA, EC and Ed25519
//! keys; JWKS and OIDC discovery served by a test HTTP server; every claim
//! failure; key rotation (a new `kid`) and the unknown-kid refetch limit;
//! `alg: none` and HS256-with-the-public-key attacks; `allow_anonymous`;
//! static PEM keys; the Principal forwarded to the instance.

mod support;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair as _};
use serde_json::{json, Value};
use support::gateway::Gateway;
use support::net::closed_addr;
use support::problem::assert_problem;
use support::upstreams::{DocServer, Upstream};

const INVALID: &str = "err:frontline:client:invalid_key";
const MISSING: &str = "err:frontline:client:missing_credentials";
const ISSUER: &str = "https://idp.test";

/// A signing key and its public half as a JWK.
struct TestKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
    /// SPKI PEM of the public key (RSA only).
    public_pem: Option<String>,
}

fn rsa_key(kid: &str, alg: Algorithm) -> TestKey {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().unwrap(),
    ]);
    let pem = std::fs::read(&key).unwrap();
    let der = run(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        key.to_str().unwrap(),
        "-outform",
        "DER",
    ]);
    let public_pem = String::from_utf8(run(&["pkey", "-in", key.to_str().unwrap(), "-pubout"])).unwrap();
    let pair = signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let public: signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
    let (n, e) = (public.n, public.e);
    TestKey {
        alg,
        kid: kid.into(),
        encoding: EncodingKey::from_rsa_pem(&pem).unwrap(),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "n": B64.encode(n), "e": B64.encode(e)}),
        public_pem: Some(public_pem),
    }
}

fn ec_key(kid: &str, alg: Algorithm) -> TestKey {
    let (ring_alg, crv) = match alg {
        Algorithm::ES256 => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256"),
        _ => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
    };
    let rng = SystemRandom::new();
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(ring_alg, &rng).unwrap();
    let pair = signature::EcdsaKeyPair::from_pkcs8(ring_alg, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let half = (point.len() - 1) / 2;
    TestKey {
        alg,
        kid: kid.into(),
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "kid": kid, "crv": crv, "x": B64.encode(&point[1..1 + half]), "y": B64.encode(&point[1 + half..])}),
        public_pem: None,
    }
}

fn ed_key(kid: &str) -> TestKey {
    let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    TestKey {
        alg: Algorithm::EdDSA,
        kid: kid.into(),
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": "EdDSA", "x": B64.encode(pair.public_key().as_ref())}),
        public_pem: None,
    }
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Claims that pass the default test config.
fn good_claims() -> Value {
    json!({"iss": ISSUER, "aud": "api.test", "sub": "user_42", "org_id": "org_7", "iat": now() - 5, "nbf": now() - 5, "exp": now() + 300})
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// A token with a hand-made header and signature (attacks).
fn forged(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode(signature)
    )
}

fn config(up: &Upstream, jwtauth: &str) -> String {
    format!(
        "deployments:\n  - id: dep\n    instances: [\"{}\"]\n    policies:\n      - id: jwt\n        jwtauth:\n{jwtauth}routes:\n  - host: api.test\n    deployment: dep\n",
        up.addr_str()
    )
}

fn jwks_policy(jwks_url: &str, extra: &str) -> String {
    format!(
        "          jwks_uri: \"{jwks_url}\"\n          issuer: \"{ISSUER}\"\n          audiences: [api.test]\n          algorithms: [RS256, RS384, RS512, PS256, ES256, ES384, EdDSA]\n          clock_skew: 30s\n{extra}"
    )
}

async fn call(gw: &Gateway, token: Option<&str>) -> reqwest::Response {
    let mut request = gw.get("api.test", "/resource");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.send().await.unwrap()
}

async fn invalid(gw: &Gateway, token: &str) -> String {
    let body = assert_problem(call(gw, Some(token)).await, 401, INVALID, "Unauthorized").await;
    body["error"]["detail"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn rsa_ec_and_ed25519_tokens_set_the_principal() {
    let keys = [
        rsa_key("rsa", Algorithm::RS256),
        ec_key("p256", Algorithm::ES256),
        ec_key("p384", Algorithm::ES384),
        ed_key("ed"),
    ];
    let idp = DocServer::start().await;
    idp.set("/jwks.json", "application/json", jwks(&keys.iter().collect::<Vec<_>>()));
    let up = Upstream::inspector("app").await;
    let gw = Gateway::start(&config(&up, &jwks_policy(&idp.url("/jwks.json"), ""))).await;

    let rsa = &keys[0];
    let variants: Vec<(Algorithm, &TestKey)> = vec![
        (Algorithm::RS256, rsa),
        (Algorithm::RS384, rsa),
        (Algorithm::RS512, rsa),
        (Algorithm::PS256, rsa),
        (Algorithm::ES256, &keys[1]),
        (Algorithm::ES384, &keys[2]),
        (Algorithm::EdDSA, &keys[3]),
    ];
    for (alg, key) in variants {
        let mut header = Header::new(alg);
        header.kid = Some(key.kid.clone());
        let claims = good_claims();
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
        let resp = call(&gw, Some(&token)).await;
        assert_eq!(resp.status(), 200, "{alg:?}: {}", resp.text().await.unwrap());
        let seen = up.last_seen();
        let principal: Value =
            serde_json::from_str(seen.one("x-unkey-principal").expect("principal forwarded")).unwrap();
        let header_json: Value =
            serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(
            principal,
            json!({"version": "v1", "subject": "user_42", "type": "JWT", "source": {"jwt": {"header": header_json, "payload": claims}}}),
            "{alg:?}"
        );
        let raw = seen.one("x-unkey-principal").unwrap();
        assert!(!raw.contains(": ") && !raw.contains('\n'), "compact JSON: {raw}");
    }
    assert_eq!(idp.hits("/jwks.json"), 1, "the key set is cached");
    gw.wait_metric(
        r#"keygate_policy_decisions_total{policy_type="jwtauth",decision="allow"}"#,
        7.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_claim_failure_is_invalid_key() {
    let key = ec_key("k1", Algorithm::ES256);
    let idp = DocServer::start().await;
    idp.set("/jwks.json", "application/json", jwks(&[&key]));
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&config(&up, &jwks_policy(&idp.url("/jwks.json"), ""))).await;

    let with = |name: &str, value: Value| {
        let mut claims = good_claims();
        claims[name] = value;
        sign(&key, &claims)
    };
    let without = |name: &str| {
        let mut claims = good_claims();
        claims.as_object_mut().unwrap().remove(name);
        sign(&key, &claims)
    };
    assert!(invalid(&gw, &with("exp", json!(now() - 60))).await.contains("expired"));
    assert!(invalid(&gw, &with("nbf", json!(now() + 120))).await.contains("nbf"));
    assert!(invalid(&gw, &with("iat", json!(now() + 120))).await.contains("iat"));
    assert!(invalid(&gw, &with("iss", json!("https://evil.test")))
        .await
        .contains("issuer"));
    assert!(invalid(&gw, &with("aud", json!(["other.test"])))
        .await
        .contains("audience"));
    assert!(invalid(&gw, &without("exp")).await.contains("exp"));
    assert!(invalid(&gw, &without("sub")).await.contains("sub"));
    assert!(invalid(&gw, &without("aud")).await.contains("audience"));
    // Within clock_skew (30s) is fine.
    assert_eq!(call(&gw, Some(&with("exp", json!(now() - 10)))).await.status(), 200);
    assert_eq!(call(&gw, Some(&with("nbf", json!(now() + 10)))).await.status(), 200);

    // A tampered payload fails the signature.
    let token = sign(&key, &good_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = good_claims();
    claims["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(claims.to_string()), parts[2]);
    invalid(&gw, &tampered).await;
    assert!(invalid(&gw, "not-a-jwt").await.contains("three"));
    invalid(&gw, "a.b.c").await;

    let body = assert_problem(call(&gw, None).await, 401, MISSING, "Unauthorized").await;
    assert!(body["error"]["detail"].as_str().unwrap().contains("bearer"));
    let basic = gw
        .get("api.test", "/")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_problem(basic, 401, MISSING, "Unauthorized").await;
    assert_eq!(up.hits(), 2, "only the two tokens within clock_skew got through");
}

#[tokio::test(flavor = "multi_thread")]
async fn require_exp_false_accepts_tokens_without_exp() {
    let key = ed_key("ed");
    let idp = DocServer::start().await;
    idp.set("/jwks.json", "application/json", jwks(&[&key]));
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&config(
        &up,
        &jwks_policy(&idp.url("/jwks.json"), "          require_exp: false\n"),
    ))
    .await;
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(call(&gw, Some(&sign(&key, &claims))).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn alg_none_and_algorithm_confusion_are_rejected() {
    let rsa = rsa_key("rsa", Algorithm::RS256);
    let idp = DocServer::start().await;
    idp.set("/jwks.json", "application/json", jwks(&[&rsa]));
    let up = Upstream::counting("app").await;
    let policy = format!(
        "          jwks_uri: \"{}\"\n          issuer: \"{ISSUER}\"\n          algorithms: [RS256]\n",
        idp.url("/jwks.json")
    );
    let gw = Gateway::start(&config(&up, &policy)).await;
    assert_eq!(call(&gw, Some(&sign(&rsa, &good_claims()))).await.status(), 200);

    let claims = good_claims();
    for alg in ["none", "None", "NONE"] {
        let token = forged(json!({"alg": alg, "kid": "rsa", "typ": "JWT"}), &claims, b"");
        assert!(invalid(&gw, &token).await.contains("not allowed"), "{alg}");
        let unsigned = token.trim_end_matches('.').to_string() + ".";
        invalid(&gw, &unsigned).await;
    }
    // HS256 "signed" with the RSA public key as the HMAC secret.
    let public_pem = rsa.public_pem.clone().unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa".into());
    let confused =
        jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(public_pem.as_bytes()).unwrap()).unwrap();
    assert!(invalid(&gw, &confused).await.contains("HS256"));
    // An algorithm outside the list, correctly signed.
    let mut rs512 = Header::new(Algorithm::RS512);
    rs512.kid = Some("rsa".into());
    let outside = jsonwebtoken::encode(&rs512, &claims, &rsa.encoding).unwrap();
    assert!(invalid(&gw, &outside).await.contains("RS512"));
    // No alg at all.
    invalid(&gw, &forged(json!({"kid": "rsa"}), &claims, b"sig")).await;
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_refetches_once_for_an_unknown_kid() {
    let old = rsa_key("2024", Algorithm::RS256);
    let new = rsa_key("2025", Algorithm::RS256);
    let idp = DocServer::start().await;
    idp.set("/jwks.json", "application/json", jwks(&[&old]));
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&config(
        &up,
        &jwks_policy(&idp.url("/jwks.json"), "          jwks_cache: 1h\n"),
    ))
    .await;

    assert_eq!(call(&gw, Some(&sign(&old, &good_claims()))).await.status(), 200);
    assert_eq!(idp.hits("/jwks.json"), 1);
    // The provider rotates: the new kid is fetched on first sight.
    idp.set("/jwks.json", "application/json", jwks(&[&old, &new]));
    assert_eq!(call(&gw, Some(&sign(&new, &good_claims()))).await.status(), 200);
    assert_eq!(idp.hits("/jwks.json"), 2);
    assert_eq!(call(&gw, Some(&sign(&new, &good_claims()))).await.status(), 200);
    assert_eq!(call(&gw, Some(&sign(&old, &good_claims()))).await.status(), 200);
    // Random kids do not make the gateway hammer the provider.
    let stranger = TestKey {
        kid: "unknown".into(),
        ..rsa_key("x", Algorithm::RS256)
    };
    for _ in 0..5 {
        assert!(invalid(&gw, &sign(&stranger, &good_claims())).await.contains("kid"));
    }
    assert_eq!(idp.hits("/jwks.json"), 2, "unknown-kid refetches are rate limited");
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_requests_pass_without_a_principal() {
    let key = ec_key("k", Algorithm::ES256);
    let idp = DocServer::start().await;
    idp.set("/jwks.json", "application/json", jwks(&[&key]));
    let up = Upstream::inspector("app").await;
    let gw = Gateway::start(&config(
        &up,
        &jwks_policy(&idp.url("/jwks.json"), "          allow_anonymous: true\n"),
    ))
    .await;
    let resp = gw
        .get("api.test", "/")
        .header("x-unkey-principal", r#"{"subject":"spoofed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        up.last_seen().one("x-unkey-principal"),
        None,
        "no Principal, and the spoofed one is gone"
    );
    let mut expired = good_claims();
    expired["exp"] = json!(now() - 3600);
    invalid(&gw, &sign(&key, &expired)).await;
    assert_eq!(call(&gw, Some(&sign(&key, &good_claims()))).await.status(), 200);
    assert!(up.last_seen().one("x-unkey-principal").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_discovery_and_static_pem_keys() {
    let rsa = rsa_key("r1", Algorithm::RS256);
    let idp = DocServer::start().await;
    let issuer = idp.url("");
    idp.set("/keys", "application/json", jwks(&[&rsa]));
    idp.set(
        "/.well-known/openid-configuration",
        "application/json",
        json!({"issuer": issuer, "jwks_uri": idp.url("/keys")}).to_string(),
    );
    let up = Upstream::counting("app").await;
    let gw = Gateway::start(&config(&up, &format!("          oidc_issuer: \"{issuer}\"\n"))).await;
    let mut claims = good_claims();
    claims["iss"] = json!(issuer);
    assert_eq!(call(&gw, Some(&sign(&rsa, &claims))).await.status(), 200);
    assert!(
        invalid(&gw, &sign(&rsa, &good_claims())).await.contains("issuer"),
        "the issuer defaults to oidc_issuer"
    );
    assert_eq!(idp.hits("/.well-known/openid-configuration"), 1);
    drop(gw);

    // Inline PEM (no kid needed) and a PEM file relative to the config.
    let pem = rsa.public_pem.clone().unwrap();
    let indented: String = pem.lines().map(|l| format!("            {l}\n")).collect();
    let gw = Gateway::start(&config(
        &up,
        &format!("          public_key_pem: |\n{indented}          issuer: \"{ISSUER}\"\n"),
    ))
    .await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    let token = jsonwebtoken::encode(&header, &good_claims(), &rsa.encoding).unwrap();
    assert_eq!(call(&gw, Some(&token)).await.status(), 200);
    let other = rsa_key("r2", Algorithm::RS256);
    invalid(&gw, &sign(&other, &good_claims())).await;
    std::fs::write(gw.dir.path().join("idp.pem"), &pem).unwrap();
    gw.write_config(&config(&up, "          public_key_file: idp.pem\n"));
    gw.wait_metric("keygate_config_reloads_total", 1.0).await;
    assert_eq!(call(&gw, Some(&token)).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_jwks_is_a_configuration_error() {
    let key = ec_key("k", Algorithm::ES256);
    let up = Upstream::counting("app").await;
    let url = format!("http://{}/jwks.json", closed_addr());
    let gw = Gateway::start(&config(&up, &jwks_policy(&url, ""))).await;
    let resp = call(&gw, Some(&sign(&key, &good_claims()))).await;
    assert_problem(
        resp,
        422,
        "err:frontline:config:invalid_configuration",
        "Unprocessable Entity",
    )
    .await;
    gw.wait_metric("keygate_jwks_fetch_failures_total", 1.0).await;
    assert_eq!(up.hits(), 0);
}
