//! Pebble, Let's Encrypt's test CA, on loopback. HTTP-01 validation is real:
//! pebble-challtestsrv answers every DNS name with 127.0.0.1 and Pebble
//! fetches the challenge from `http_port` (the gateway's plain listener).
//! Debian's Pebble ships no certificate for its own HTTPS endpoint, so one is
//! generated here; tests trust it with `tls.acme.ca_roots`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;
use tokio::net::TcpStream;

use super::net::{free_port, loopback};
use super::wait::{wait_for, WAIT};

pub struct Pebble {
    /// The ACME directory URL.
    pub directory: String,
    /// The root that signs Pebble's HTTPS endpoint (for `ca_roots`).
    pub root_pem: PathBuf,
    dir: TempDir,
    pebble: Option<Child>,
    dns: Option<Child>,
}

impl Pebble {
    /// Starts challtestsrv and Pebble; returns once both accept connections.
    pub async fn start(http_port: u16) -> Pebble {
        Self::start_with_validity(http_port, None).await
    }

    /// Like [`Pebble::start`], issuing certificates valid for `validity`
    /// (Pebble's default is five years).
    pub async fn start_with_validity(http_port: u16, validity: Option<Duration>) -> Pebble {
        let dir = tempfile::Builder::new().prefix("keygate-pebble").tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "keygate test Pebble endpoint CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let leaf_cert = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
        let root_pem = dir.path().join("root.pem");
        std::fs::write(&root_pem, ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("endpoint.pem"), leaf_cert.pem()).unwrap();
        std::fs::write(dir.path().join("endpoint.key"), leaf_key.serialize_pem()).unwrap();

        let acme_port = free_port();
        let management_port = free_port();
        let dns_port = free_port();
        let dns_management_port = free_port();
        let mut config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("endpoint.pem"),
            "privateKey": dir.path().join("endpoint.key"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(validity) = validity {
            config["pebble"]["certificateValidityPeriod"] = json!(validity.as_secs());
        }
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();

        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management_port}")])
            .stdin(Stdio::null())
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv (apt-get install pebble)");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // No random validation delays; no rejected nonces (keeps order counts exact).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble (apt-get install pebble)");
        let pebble = Pebble {
            directory: format!("https://127.0.0.1:{acme_port}/dir"),
            root_pem,
            dir,
            pebble: Some(pebble),
            dns: Some(dns),
        };
        for port in [acme_port, dns_management_port] {
            let addr = loopback(port);
            wait_for(
                format!("Pebble listening on {addr}\n{}", pebble.logs()),
                WAIT,
                || async move { TcpStream::connect(addr).await.is_ok() },
            )
            .await;
        }
        pebble
    }

    /// Stops Pebble and its DNS server (the CA becomes unreachable).
    pub fn stop(&mut self) {
        for child in [self.pebble.take(), self.dns.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Certificates Pebble has issued so far.
    pub fn issued(&self) -> usize {
        self.logs().matches("Issued certificate serial").count()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            eprintln!(
                "--- pebble log (tail) ---\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}
