//! A minimal HTTPS/1.1 client that trusts only the cluster CA: used to check `/readyz` at
//! start-up and by tests that drive the API without kubectl.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response: status code and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes (de-chunked).
    pub body: Vec<u8>,
}

/// A client for one server.
#[derive(Clone)]
pub struct HttpsClient {
    addr: SocketAddr,
    token: Option<String>,
    headers: Vec<(String, String)>,
    connector: tokio_rustls::TlsConnector,
}

impl HttpsClient {
    /// A client for `addr` verifying the server against `ca_pem`.
    pub fn new(addr: SocketAddr, ca_pem: &str, token: Option<String>) -> std::io::Result<HttpsClient> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(c.map_err(std::io::Error::other)?)
                .map_err(std::io::Error::other)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpsClient {
            addr,
            token,
            headers: Vec::new(),
            connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        })
    }

    /// This client, sending `name: value` with every request too.
    pub fn with_header(mut self, name: &str, value: &str) -> HttpsClient {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends one request on a new connection and reads the whole response.
    pub async fn request(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> std::io::Result<Reply> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        let mut tls = self.connector.connect(name, tcp).await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes()).await?;
        tls.write_all(body).await?;
        let mut buf = Vec::new();
        // A server may close without TLS close_notify; keep what was read.
        let _ = tls.read_to_end(&mut buf).await;
        parse_response(&buf).ok_or_else(|| std::io::Error::other("malformed HTTP response"))
    }
}

fn parse_response(buf: &[u8]) -> Option<Reply> {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..split]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let raw = &buf[split + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    Some(Reply { status, body })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&raw[..line_end]).ok()?.split(';').next()?.trim(),
            16,
        )
        .ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_parsed_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, b"ok".as_slice()));
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"garbage").is_none());
    }
}
