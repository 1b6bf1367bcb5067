//! The etcd backend over TLS with client certificates (etcd's `--client-cert-auth`), as
//! `--etcd-cafile/--etcd-certfile/--etcd-keyfile` configure it.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_store::{EtcdOptions, EtcdStore, Store};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_takes_the_client_certificate_and_refuses_without_it() {
    let dir = tempfile::tempdir().unwrap();
    // A CA, a serving certificate for 127.0.0.1 and a client certificate it signed.
    let certs = shoal_apiserver::tls::ensure_certs(dir.path(), &[]).unwrap();
    let ca_key = shoal_apiserver::tls::ca_key(dir.path()).unwrap();
    let (client_cert, client_key) =
        shoal_apiserver::tls::issue_client_cert(&ca_key, "shoal", &[], Duration::from_secs(3600)).unwrap();
    let tls = dir.path().join("tls");
    let (client, peer) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let mut etcd = Command::new("etcd")
        .args(["--name", "t", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("t={peer_url}")])
        .arg("--cert-file")
        .arg(tls.join("server.crt"))
        .arg("--key-file")
        .arg(tls.join("server.key"))
        .arg("--trusted-ca-file")
        .arg(tls.join("ca.crt"))
        .arg("--client-cert-auth")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("etcd (Debian's etcd-server)");

    let options = |identity: bool| {
        let mut o = EtcdOptions::new(vec![url.clone()]);
        o.ca = Some(certs.ca_pem.clone().into_bytes());
        o.identity = identity.then(|| (client_cert.clone().into_bytes(), client_key.clone().into_bytes()));
        o.timeout = Duration::from_secs(2);
        o
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = loop {
        match EtcdStore::connect(options(true)).await {
            Ok(store) if store.check().await.is_ok() => break store,
            _ if Instant::now() > deadline => panic!("etcd over TLS did not answer"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let rev = store
        .create("/registry/tls/x", "1".into())
        .await
        .expect("a write over TLS");
    assert_eq!(store.get("/registry/tls/x").await.unwrap().unwrap().mod_revision, rev);

    // Without a client certificate etcd refuses the connection.
    let refused = match EtcdStore::connect(options(false)).await {
        Ok(store) => store.get("/registry/tls/x").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "etcd served a client without a certificate");
    let _ = etcd.kill();
    let _ = etcd.wait();
}
