//! TLS termination: SNI certificate selection,
//! protocol versions, h2 via ALPN, the HTTP→HTTPS redirect, and the watched
//! certs directory — against the real binary over loopback.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use support::gateway::{Gateway, Launch};
use support::net::free_addr;
use support::raw_http::raw_request;
use support::tls::{h2_get, https_get, self_signed_pem, tls_handshake, write_cert_pair, TLS12_ONLY, TLS_ANY};
use support::wait::{poll_until, wait_for, RELOAD_DEADLINE};
use tempfile::TempDir;

const ROUTES: &str = "\
deployments:
  - id: app
    instances: [\"builtin:echo\"]
routes:
  - host: a.example.com
    deployment: app
  - host: b.example.com
    deployment: app
  - host: \"*.w.example.com\"
    deployment: app
";

/// A gateway with an HTTPS listener on `https` and `extra_tls` under `tls:`.
fn template(https: SocketAddr, certs: &Path, extra_tls: &str) -> String {
    format!(
        "listen:\n  http: \"@HTTP@\"\n  https: \"{https}\"\n  admin: \"@ADMIN@\"\n\
         tls:\n  certs_dir: \"{}\"\n{extra_tls}{ROUTES}",
        certs.display()
    )
}

/// A certs dir holding pairs for the given `(file name, SANs)`.
fn certs_dir(pairs: &[(&str, &[&str])]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sans) in pairs {
        let (cert, key) = self_signed_pem(sans);
        write_cert_pair(dir.path(), name, &cert, &key);
    }
    dir
}

#[tokio::test]
async fn sni_picks_the_certificate_for_each_host_and_the_wildcard() {
    let certs = certs_dir(&[
        ("a", &["a.example.com"]),
        ("b", &["b.example.com"]),
        ("wild", &["*.w.example.com"]),
    ]);
    let https = free_addr();
    let _gw = Gateway::start(&template(https, certs.path(), "")).await;

    for (sni, want) in [
        ("a.example.com", "a.example.com"),
        ("b.example.com", "b.example.com"),
        ("x.w.example.com", "*.w.example.com"),
        ("A.Example.COM", "a.example.com"),
    ] {
        let hs = tls_handshake(https, sni, TLS_ANY, &[b"http/1.1"]).await.unwrap();
        assert_eq!(hs.sans, vec![want.to_string()], "SNI {sni}");
    }
    // One extra label only: a.b.w.example.com is not covered by the wildcard.
    let hs = tls_handshake(https, "a.b.w.example.com", TLS_ANY, &[]).await.unwrap();
    assert_eq!(hs.sans, vec!["keygate.invalid".to_string()]);

    let resp = https_get(https, "x.w.example.com", "/hi?q=1").await.unwrap();
    assert_eq!(resp.status, 200);
    let echo = resp.json();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    assert_eq!(echo["path"], "/hi");
    assert_eq!(echo["query"], "q=1");
}

#[tokio::test]
async fn unknown_sni_gets_the_default_certificate_then_config_not_found() {
    let certs = certs_dir(&[("a", &["a.example.com"])]);
    let https = free_addr();
    let _gw = Gateway::start(&template(https, certs.path(), "")).await;

    let hs = tls_handshake(https, "nope.example.org", TLS_ANY, &[]).await.unwrap();
    assert_eq!(hs.sans, vec!["keygate.invalid".to_string()]);
    let resp = https_get(https, "nope.example.org", "/").await.unwrap();
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"]["code"], "err:frontline:routing:config_not_found");
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_accepted_by_default() {
    let certs = certs_dir(&[("a", &["a.example.com"])]);
    let https = free_addr();
    let _gw = Gateway::start(&template(https, certs.path(), "")).await;

    let tls12 = tls_handshake(https, "a.example.com", TLS12_ONLY, &[]).await.unwrap();
    assert_eq!(tls12.version, Some(rustls::ProtocolVersion::TLSv1_2));
    let tls13 = tls_handshake(https, "a.example.com", TLS_ANY, &[]).await.unwrap();
    assert_eq!(tls13.version, Some(rustls::ProtocolVersion::TLSv1_3));
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2() {
    let certs = certs_dir(&[("a", &["a.example.com"])]);
    let https = free_addr();
    let _gw = Gateway::start(&template(https, certs.path(), "  min_version: \"1.3\"\n")).await;

    let refused = tls_handshake(https, "a.example.com", TLS12_ONLY, &[]).await;
    assert!(refused.is_err(), "a TLS 1.2-only client was accepted");
    let tls13 = tls_handshake(https, "a.example.com", TLS_ANY, &[]).await.unwrap();
    assert_eq!(tls13.version, Some(rustls::ProtocolVersion::TLSv1_3));
}

#[tokio::test]
async fn h2_is_negotiated_by_alpn_and_proxied() {
    let certs = certs_dir(&[("a", &["a.example.com"])]);
    let https = free_addr();
    let _gw = Gateway::start(&template(https, certs.path(), "")).await;

    let hs = tls_handshake(https, "a.example.com", TLS_ANY, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(hs.alpn.as_deref(), Some(&b"h2"[..]));
    let (status, body) = h2_get(hs, "a.example.com", "/over/h2?x=1").await;
    assert_eq!(status, 200);
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["path"], "/over/h2");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    // HTTP/2 has no Host field: the instance gets the :authority as Host and X-Forwarded-Host.
    assert_eq!(echo["headers"]["host"], "a.example.com");
    assert_eq!(echo["headers"]["x-forwarded-host"], "a.example.com");

    let hs = tls_handshake(https, "a.example.com", TLS_ANY, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(hs.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn plain_http_redirects_keeping_path_and_query_but_not_acme_challenges() {
    let certs = certs_dir(&[("a", &["a.example.com"])]);
    let https = free_addr();
    let gw = Gateway::start(&template(https, certs.path(), "")).await;

    let resp = raw_request(
        gw.http,
        b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some(format!("https://a.example.com:{}/a/b?x=1&y=%20", https.port()).as_str())
    );

    // Not a pending token of keygate's: proxied (here to the echo instance), never redirected.
    let resp = raw_request(
        gw.http,
        b"GET /.well-known/acme-challenge/some-token HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["path"], "/.well-known/acme-challenge/some-token");
}

#[tokio::test]
async fn a_pair_dropped_into_certs_dir_is_served_without_restart() {
    let certs = certs_dir(&[("a", &["a.example.com"])]);
    let https = free_addr();
    let gw = Gateway::start(&template(https, certs.path(), "")).await;

    let before = tls_handshake(https, "b.example.com", TLS_ANY, &[]).await.unwrap();
    assert_eq!(before.sans, vec!["keygate.invalid".to_string()]);
    let (cert, key) = self_signed_pem(&["b.example.com"]);
    write_cert_pair(certs.path(), "b", &cert, &key);

    poll_until(
        format!("b.example.com served from certs_dir\n{}", gw.logs()),
        RELOAD_DEADLINE,
        || async {
            let hs = tls_handshake(https, "b.example.com", TLS_ANY, &[]).await.ok()?;
            (hs.sans == ["b.example.com"]).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_mismatched_pair_is_refused_and_the_old_certificate_stays() {
    let certs = certs_dir(&[("a", &["a.example.com"])]);
    let https = free_addr();
    let gw = Gateway::start(&template(https, certs.path(), "")).await;
    let original = tls_handshake(https, "a.example.com", TLS_ANY, &[]).await.unwrap().leaf;

    // A new certificate for the same host, next to the old key.
    let (other_cert, _other_key) = self_signed_pem(&["a.example.com"]);
    std::fs::write(certs.path().join("a.crt"), other_cert).unwrap();
    wait_for(
        format!("the refusal is logged\n{}", gw.logs()),
        RELOAD_DEADLINE,
        || async { gw.stderr().contains("does not match the certificate") },
    )
    .await;

    let served = tls_handshake(https, "a.example.com", TLS_ANY, &[]).await.unwrap();
    assert_eq!(served.leaf, original, "the good certificate must keep being served");
    let resp = https_get(https, "a.example.com", "/").await.unwrap();
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn certs_list_shows_host_source_issuer_and_expiry() {
    let certs = certs_dir(&[("a", &["a.example.com"])]);
    let https = free_addr();
    let gw = Launch::new(template(https, certs.path(), "admin:\n  root_keys: [\"test-root\"]\n"))
        .env("KEYGATE_ROOT_KEY", "test-root")
        .start()
        .await;

    let out = gw
        .cli(&["certs", "list", "--config", gw.config_path.to_str().unwrap()], &[])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("a.example.com"))
        .unwrap_or_else(|| panic!("no row for a.example.com:\n{stdout}"));
    assert!(line.contains("file"), "{line}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("(default)") && l.contains("default")),
        "{stdout}"
    );
    let expiry = gw
        .metric("keygate_certificate_expiry_seconds{host=\"a.example.com\"}")
        .await;
    assert!(expiry > 1.7e9, "expiry metric {expiry}");
}
