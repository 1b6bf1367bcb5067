//! The cluster CA and the serving certificate, generated on first start and kept in the
//! data dir, and the rustls configuration that serves HTTPS (HTTP/1.1 and HTTP/2).

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

/// Loads `ca.crt`, `server.crt` and `server.key` from `dir/tls`, generating them (a new CA
/// and a server certificate for loopback, `localhost`, this host's name and `extra_sans`)
/// when absent.
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
    let ca_key = KeyPair::generate().map_err(io)?;
    let ca_params = ca_params()?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(io)?;
    let issuer = Issuer::new(ca_params, &ca_key);

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
    let server_key = KeyPair::generate().map_err(io)?;
    let server_cert = params.signed_by(&server_key, &issuer).map_err(io)?;
    let certs = Certs {
        ca_pem: ca_cert.pem(),
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
    let key = KeyPair::generate().map_err(io)?;
    let cert = params.signed_by(&key, &issuer).map_err(io)?;
    Ok((cert.pem(), key.serialize_pem()))
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
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
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
