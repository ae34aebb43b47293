//! TLS client: handshakes with a chosen SNI, protocol versions and ALPN. The
//! server's certificate is taken as presented (signatures still checked) and
//! returned for inspection: tests assert on its names and issuer, read with
//! x509-parser (independently of the gateway's own certificate parsing).
//! Also makes self-signed certificates for certs directories and Secrets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::raw_http::{parse_raw_response, RawResponse};

/// TLS 1.2 and 1.3, what a current client offers.
pub const TLS_ANY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
pub const TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A completed handshake with what it negotiated.
pub struct Handshake {
    pub version: Option<rustls::ProtocolVersion>,
    pub alpn: Option<Vec<u8>>,
    /// The leaf certificate (DER) and what it says.
    pub leaf: Vec<u8>,
    pub sans: Vec<String>,
    pub issuer: String,
    pub stream: tokio_rustls::client::TlsStream<TcpStream>,
}

/// Accepts any server certificate; handshake signatures are still verified.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects to `addr` and handshakes with `sni`, offering `versions` and
/// `alpn` (bounded, 10 s). `Err` carries the TLS or I/O failure.
pub async fn tls_handshake(
    addr: SocketAddr,
    sni: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Result<Handshake, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let connect = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))
    };
    let stream = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "handshake timed out".to_string())??;
    let (_, session) = stream.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or("no server certificate")?
        .to_vec();
    let (sans, issuer) = cert_names(&leaf);
    Ok(Handshake {
        version: session.protocol_version(),
        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
        leaf,
        sans,
        issuer,
        stream,
    })
}

/// The SAN DNS names and the issuer of a DER certificate.
pub fn cert_names(der: &[u8]) -> (Vec<String>, String) {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).expect("parse the server certificate");
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    (sans, cert.issuer().to_string())
}

/// `GET path` over HTTP/1.1 on TLS with `sni` as SNI and Host; reads to the
/// end (bounded, 15 s).
pub async fn https_get(addr: SocketAddr, sni: &str, path: &str) -> Result<RawResponse, String> {
    let mut handshake = tls_handshake(addr, sni, TLS_ANY, &[b"http/1.1"]).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
    let exchange = async {
        handshake
            .stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            match handshake.stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // Peers may close without close_notify once the response is complete.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => break,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .map_err(|_| "no response within 15s".to_string())??;
    Ok(parse_raw_response(&buf))
}

/// `GET https://authority/path` as HTTP/2 on a handshake that negotiated h2;
/// returns the status and body (bounded, 15 s).
pub async fn h2_get(handshake: Handshake, authority: &str, path: &str) -> (u16, Vec<u8>) {
    let exchange = async {
        let io = TokioIo::new(handshake.stream);
        let (mut sender, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        let request = Request::get(format!("https://{authority}{path}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.expect("h2 request");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("h2 body")
            .to_bytes()
            .to_vec();
        (status, body)
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .expect("h2 exchange timed out")
}

/// A self-signed certificate for `sans` and its key, PEM.
pub fn self_signed_pem(sans: &[&str]) -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("generate a certificate");
    (generated.cert.pem(), generated.key_pair.serialize_pem())
}

/// Writes `<name>.crt` and `<name>.key` into `dir` (key first, then the
/// certificate, as an operator copying a pair would).
pub fn write_cert_pair(dir: &Path, name: &str, cert_pem: &str, key_pem: &str) {
    std::fs::write(dir.join(format!("{name}.key")), key_pem).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert_pem).unwrap();
}
