//! The cluster CA and the serving certificate, generated on first start and kept in the
//! data dir, the rustls configuration that serves HTTPS (HTTP/1.1 and HTTP/2), and the
//! client side the server uses to reach agents, webhooks and aggregated API servers.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// PEM-encoded credentials of a cluster.
pub struct Certs {
    /// The CA certificate (what kubeconfigs and join tokens carry).
    pub ca_pem: String,
    /// The server certificate.
    pub cert_pem: String,
    /// The server key.
    pub key_pem: String,
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Loads `ca.crt`, `server.crt` and `server.key` from `dir/tls`, generating them when absent:
/// a server certificate for loopback, `localhost`, this host's name and `extra_sans`, signed
/// by the CA in `ca.crt`/`ca.key` when those are there (a server joining a cluster), else by a
/// new CA.
pub fn ensure_certs(dir: &Path, extra_sans: &[String]) -> std::io::Result<Certs> {
    let tls = dir.join("tls");
    let (ca, cert, key) = (tls.join("ca.crt"), tls.join("server.crt"), tls.join("server.key"));
    if ca.exists() && cert.exists() && key.exists() {
        return Ok(Certs {
            ca_pem: std::fs::read_to_string(ca)?,
            cert_pem: std::fs::read_to_string(cert)?,
            key_pem: std::fs::read_to_string(key)?,
        });
    }
    std::fs::create_dir_all(&tls)?;
    // A CA already here (one shared by the servers of a cluster) signs this server's
    // certificate; otherwise this is a new cluster with a new CA.
    let ca_key_path = tls.join("ca.key");
    let (ca_key, ca_pem) = if ca.exists() && ca_key_path.exists() {
        let key = KeyPair::from_pem(&std::fs::read_to_string(&ca_key_path)?).map_err(io)?;
        (key, std::fs::read_to_string(&ca)?)
    } else {
        let key = KeyPair::generate().map_err(io)?;
        let pem = ca_params()?.self_signed(&key).map_err(io)?.pem();
        (key, pem)
    };
    let issuer = Issuer::new(ca_params()?, &ca_key);

    let mut names = vec![
        "localhost".to_string(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_string());
        }
    }
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(io)?;
    params.distinguished_name.push(DnType::CommonName, "shoal-apiserver");
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let mut sans: Vec<SanType> = Vec::new();
    for n in names.iter().chain(extra_sans) {
        match n.parse::<std::net::IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => sans.push(SanType::DnsName(n.clone().try_into().map_err(io)?)),
        }
    }
    for ip in ["127.0.0.1", "::1"] {
        sans.push(SanType::IpAddress(ip.parse().expect("literal IP")));
    }
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().map_err(io)?;
    let server_cert = params.signed_by(&server_key, &issuer).map_err(io)?;
    let certs = Certs {
        ca_pem,
        cert_pem: server_cert.pem(),
        key_pem: server_key.serialize_pem(),
    };
    write_private(&tls.join("ca.key"), &ca_key.serialize_pem())?;
    write_private(&key, &certs.key_pem)?;
    std::fs::write(&cert, &certs.cert_pem)?;
    std::fs::write(&ca, &certs.ca_pem)?;
    Ok(certs)
}

/// The CA's parameters: what its certificate says and what an issuer built from its key
/// needs to sign with it.
fn ca_params() -> std::io::Result<CertificateParams> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(io)?;
    ca_params.distinguished_name.push(DnType::CommonName, "shoal-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(ca_params)
}

/// The CA key of the cluster in `dir` (PEM).
pub fn ca_key(dir: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(dir.join("tls").join("ca.key"))
}

/// A serving certificate and key (PEM) for a node agent named `common_name`, valid for
/// `names` (DNS names or IP addresses), signed by the CA whose key is `ca_key_pem`.
pub fn issue_serving_cert(ca_key_pem: &str, common_name: &str, names: &[String]) -> std::io::Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(io)?;
    let issuer = Issuer::new(ca_params()?, &ca_key);
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(io)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{common_name}"));
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let mut sans = Vec::new();
    for n in names {
        match n.parse::<std::net::IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => sans.push(SanType::DnsName(n.clone().try_into().map_err(io)?)),
        }
    }
    params.subject_alt_names = sans;
    // For serving only: never a client credential.
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(io)?;
    let cert = params.signed_by(&key, &issuer).map_err(io)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The most groups a certificate minted here carries: a subject holds one value of each
/// attribute type, and the organization can be written under two (its name and its OID).
pub const MAX_CERT_GROUPS: usize = 2;

/// A client certificate and key (PEM) for `user` in `groups`, valid from a minute ago for
/// `valid_for`, signed by the CA whose key is `ca_key_pem`: CN = the user, O = each group,
/// as upstream's x509 authenticator reads them (and as [`client_identity`] does).
pub fn issue_client_cert(
    ca_key_pem: &str,
    user: &str,
    groups: &[String],
    valid_for: std::time::Duration,
) -> std::io::Result<(String, String)> {
    if groups.len() > MAX_CERT_GROUPS {
        return Err(io(format!(
            "a certificate names at most {MAX_CERT_GROUPS} groups (asked for {})",
            groups.len()
        )));
    }
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(io)?;
    let issuer = Issuer::new(ca_params()?, &ca_key);
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(io)?;
    params.distinguished_name.push(DnType::CommonName, user);
    let organization = [DnType::OrganizationName, DnType::CustomDnType(vec![2, 5, 4, 10])];
    for (ty, group) in organization.into_iter().zip(groups) {
        params.distinguished_name.push(ty, group.as_str());
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    let valid_for = time::Duration::try_from(valid_for).map_err(io)?;
    params.not_after = now
        .checked_add(valid_for)
        .ok_or_else(|| io("the certificate would never expire"))?;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let key = KeyPair::generate().map_err(io)?;
    let cert = params.signed_by(&key, &issuer).map_err(io)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Who a client certificate (already verified against the cluster CA by the TLS handshake)
/// names: its subject's common name, and its organizations as groups. `None` for a
/// certificate without a common name.
pub fn client_identity(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some((name, groups))
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// A rustls server configuration offering h2 and http/1.1.
pub fn server_config(certs: &Certs) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certs.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(io)?;
    let key = PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes()).map_err(io)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Client certificates are asked for, not required (tokens authenticate the others), and
    // one that is offered must be signed by the cluster CA.
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(certs.ca_pem.as_bytes()) {
        roots.add(ca.map_err(io)?).map_err(io)?;
    }
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(io)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io)?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain, key)
        .map_err(io)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Whom an HTTPS client trusts.
pub enum Trust<'a> {
    /// The CAs of a PEM bundle (a `caBundle`, the cluster CA).
    Bundle(&'a [u8]),
    /// Any certificate (an APIService's `insecureSkipTLSVerify`); the handshake's signatures
    /// are still checked.
    Anyone,
}

/// Accepts any server certificate ([`Trust::Anyone`]).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration for HTTP/1.1 over TLS, trusting `trust`, presenting `client`
/// (certificate and key, PEM) when given.
pub fn client_config(trust: Trust<'_>, client: Option<(&str, &str)>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match trust {
        Trust::Anyone => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        Trust::Bundle(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem).flatten() {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err("x509: certificate signed by unknown authority (no caBundle)".into());
            }
            builder.with_root_certificates(roots)
        }
    };
    let mut cfg = match client {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?;
            builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Opens HTTP/1.1 over TLS to `addr`, checking the certificate for `server_name` (a DNS
/// name or an IP address). The connection is driven by a task of its own, upgrades allowed.
pub async fn connect_http1<B>(
    addr: impl tokio::net::ToSocketAddrs,
    server_name: &str,
    cfg: rustls::ClientConfig,
) -> Result<hyper::client::conn::http1::SendRequest<B>, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn certs_are_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure_certs(dir.path(), &["10.0.0.9".into()]).unwrap();
        let b = ensure_certs(dir.path(), &[]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert!(a.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        server_config(&a).unwrap();
    }

    #[test]
    fn client_certificates_name_their_user_and_groups_and_verify_against_the_cluster_ca() {
        let dir = tempfile::tempdir().unwrap();
        let certs = ensure_certs(dir.path(), &[]).unwrap();
        let key = ca_key(dir.path()).unwrap();
        let groups = vec!["devs".to_string(), "ops".to_string()];
        let (cert, _key) = issue_client_cert(&key, "alice", &groups, std::time::Duration::from_secs(3600)).unwrap();
        let leaf = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        assert_eq!(client_identity(&leaf), Some(("alice".to_string(), groups.clone())));
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier.verify_client_cert(&leaf, &[], now).unwrap();
        let later = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.as_secs() + 7200));
        assert!(verifier.verify_client_cert(&leaf, &[], later).is_err(), "expired");
        // A node's serving certificate is not a client credential.
        let (serving, _) = issue_serving_cert(&key, "n1", &["n1".into()]).unwrap();
        let serving = CertificateDer::from_pem_slice(serving.as_bytes()).unwrap();
        assert!(verifier.verify_client_cert(&serving, &[], now).is_err());
        // A certificate of another CA is refused.
        let other = tempfile::tempdir().unwrap();
        ensure_certs(other.path(), &[]).unwrap();
        let (foreign, _) = issue_client_cert(
            &ca_key(other.path()).unwrap(),
            "alice",
            &[],
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        let foreign = CertificateDer::from_pem_slice(foreign.as_bytes()).unwrap();
        assert!(verifier.verify_client_cert(&foreign, &[], now).is_err());
        assert!(
            issue_client_cert(
                &key,
                "x",
                &["a".into(), "b".into(), "c".into()],
                std::time::Duration::from_secs(60)
            )
            .is_err()
        );
    }

    #[test]
    fn serving_certificates_for_nodes_verify_against_the_cluster_ca() {
        let dir = tempfile::tempdir().unwrap();
        let certs = ensure_certs(dir.path(), &[]).unwrap();
        let key = ca_key(dir.path()).unwrap();
        let (cert, _key) = issue_serving_cert(&key, "n1", &["n1".into(), "127.0.0.2".into()]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let leaf = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let now = rustls::pki_types::UnixTime::now();
        let ip = rustls::pki_types::ServerName::try_from("127.0.0.2").unwrap();
        verifier.verify_server_cert(&leaf, &[], &ip, &[], now).unwrap();
        let other = rustls::pki_types::ServerName::try_from("127.0.0.3").unwrap();
        assert!(verifier.verify_server_cert(&leaf, &[], &other, &[], now).is_err());
    }
}
