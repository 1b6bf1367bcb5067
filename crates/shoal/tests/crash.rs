//! Durability: `kill -9` during a stream of writes loses no acknowledged write.

mod common;

use std::sync::{Arc, Mutex};

use common::Cluster;

#[test]
fn kill_9_during_writes_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::start_in(tmp.path(), 1);
    let ca = std::fs::read_to_string(tmp.path().join("tls/ca.crt")).unwrap();
    let token = std::fs::read_to_string(tmp.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let client = shoal_apiserver::client::HttpsClient::new(c.addr(), &ca, Some(token)).unwrap();
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = client.clone();
            let acked = acked.clone();
            rt.spawn(async move {
                for i in 0.. {
                    let name = format!("w{w}-{i}");
                    let body = format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"{name}\"}},\"data\":{{\"i\":\"{i}\"}}}}");
                    match client.request("POST", "/api/v1/namespaces/default/configmaps", "application/json", body.as_bytes()).await {
                        Ok(r) if r.status == 201 => {
                            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                            let rv = v["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
                            acked.lock().unwrap().push((name, rv));
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    c.kill9();
    rt.block_on(async {
        for w in writers {
            let _ = w.await;
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "only {} writes were acknowledged", acked.len());
    let max_rv = acked.iter().map(|(_, rv)| *rv).max().unwrap();

    let c = Cluster::start_in(tmp.path(), 1);
    let names = c.kubectl(&[
        "get",
        "cm",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
    ]);
    let present: std::collections::HashSet<&str> = names.lines().collect();
    for (name, _) in &acked {
        assert!(present.contains(name.as_str()), "acknowledged write {name} lost");
    }
    let rv: i64 = c
        .kubectl(&[
            "create",
            "configmap",
            "after-restart",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    assert!(rv > max_rv, "revision sequence continues: {rv} > {max_rv}");
}
