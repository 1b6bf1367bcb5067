//! Cluster DNS: the records of Kubernetes' DNS specification for `cluster.local`, answered
//! from the Services and Endpoints the informers hold (messages through hickory-proto).
//!
//! - `<svc>.<ns>.svc.cluster.local`: A, the Service's cluster IP; for a headless Service,
//!   the addresses of its ready endpoints.
//! - `<hostname>.<svc>.<ns>.svc.cluster.local`: A, a headless Service's endpoint with that
//!   hostname (StatefulSet pods).
//! - `_<port>._<proto>.<svc>.<ns>.svc.cluster.local`: SRV, the named port, pointing at the
//!   Service (or, headless, at each endpoint's hostname, or its dashed IP).
//! - `<a-b-c-d>.<ns>.pod.cluster.local`: A, that address.
//!
//! A name in the zone with nothing under it is NXDOMAIN; a name that exists without records
//! of the asked type is an empty answer. Names outside `cluster.local` are REFUSED (this is
//! not a recursive resolver). TTL 5 s, as CoreDNS's kubernetes plugin.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::informer::{self, Informers, name as name_of};

/// The cluster domain.
pub const DOMAIN: &str = "cluster.local";
const TTL: u32 = 5;

/// An answer: records, or a response code.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The name exists; these are its records of the asked type (maybe none).
    Records(Vec<Record>),
    /// NXDOMAIN or REFUSED.
    Code(ResponseCode),
}

fn a(name: &Name, ip: Ipv4Addr) -> Record {
    Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))
}

fn fqdn(s: &str) -> Option<Name> {
    Name::from_ascii(format!("{s}.")).ok()
}

/// The ready addresses of the Endpoints `ns/svc`: (ip, hostname).
fn addresses<'a>(endpoints: &'a [Arc<Value>], ns: &str, svc: &str) -> Vec<(&'a str, Option<&'a str>)> {
    endpoints
        .iter()
        .filter(|e| informer::namespace(e) == ns && name_of(e) == svc)
        .flat_map(|e| e["subsets"].as_array().into_iter().flatten())
        .flat_map(|s| s["addresses"].as_array().into_iter().flatten())
        .filter_map(|a| Some((a["ip"].as_str()?, a["hostname"].as_str())))
        .collect()
}

/// Answers `qtype` for `qname` from the cluster's Services and Endpoints.
pub fn resolve(qname: &Name, qtype: RecordType, services: &[Arc<Value>], endpoints: &[Arc<Value>]) -> Answer {
    let name = qname.to_lowercase().to_ascii();
    let name = name.trim_end_matches('.');
    let Some(rest) = name.strip_suffix(DOMAIN).map(|r| r.trim_end_matches('.')) else {
        return Answer::Code(ResponseCode::Refused);
    };
    let labels: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('.').collect()
    };
    let nx = Answer::Code(ResponseCode::NXDomain);
    let service = |ns: &str, svc: &str| {
        services
            .iter()
            .find(|s| informer::namespace(s) == ns && name_of(s) == svc)
            .map(|s| &**s)
    };
    match labels.as_slice() {
        // The zone and `svc.cluster.local` / `pod.cluster.local` exist, with no records.
        [] | ["svc"] | ["pod"] => Answer::Records(Vec::new()),
        [ns, "svc"] => {
            if services.iter().any(|s| informer::namespace(s) == *ns) {
                Answer::Records(Vec::new())
            } else {
                nx
            }
        }
        [svc, ns, "svc"] => {
            let Some(s) = service(ns, svc) else {
                return nx;
            };
            if qtype != RecordType::A {
                return Answer::Records(Vec::new());
            }
            let ips: Vec<Ipv4Addr> = match s["spec"]["clusterIP"].as_str() {
                Some("None") | None => addresses(endpoints, ns, svc)
                    .into_iter()
                    .filter_map(|(ip, _)| ip.parse().ok())
                    .collect(),
                Some(ip) => ip.parse().into_iter().collect(),
            };
            Answer::Records(ips.into_iter().map(|ip| a(qname, ip)).collect())
        }
        [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
            let Some(s) = service(ns, svc) else {
                return nx;
            };
            let (port, proto) = (&port[1..], proto[1..].to_ascii_uppercase());
            let Some(p) = s["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"].as_str() == Some(port) && p["protocol"].as_str().unwrap_or("TCP") == proto)
            else {
                return nx;
            };
            if qtype != RecordType::SRV {
                return Answer::Records(Vec::new());
            }
            let number = p["port"].as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
            let headless = s["spec"]["clusterIP"] == "None";
            let targets: Vec<String> = if headless {
                addresses(endpoints, ns, svc)
                    .into_iter()
                    .map(|(ip, host)| {
                        let host = host.map_or_else(|| ip.replace('.', "-"), str::to_string);
                        format!("{host}.{svc}.{ns}.svc.{DOMAIN}")
                    })
                    .collect()
            } else {
                vec![format!("{svc}.{ns}.svc.{DOMAIN}")]
            };
            let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(100);
            Answer::Records(
                targets
                    .iter()
                    .filter_map(|t| fqdn(t))
                    .map(|t| Record::from_rdata(qname.clone(), TTL, RData::SRV(SRV::new(0, weight, number, t))))
                    .collect(),
            )
        }
        [host, svc, ns, "svc"] => {
            if service(ns, svc).is_none() {
                return nx;
            }
            let found: Vec<Ipv4Addr> = addresses(endpoints, ns, svc)
                .into_iter()
                .filter(|(ip, h)| *h == Some(*host) || ip.replace('.', "-") == *host)
                .filter_map(|(ip, _)| ip.parse().ok())
                .collect();
            match (found.is_empty(), qtype) {
                (true, _) => nx,
                (false, RecordType::A) => Answer::Records(found.into_iter().map(|ip| a(qname, ip)).collect()),
                (false, _) => Answer::Records(Vec::new()),
            }
        }
        [dashed, _ns, "pod"] => match dashed.replace('-', ".").parse::<Ipv4Addr>() {
            Ok(ip) if qtype == RecordType::A => Answer::Records(vec![a(qname, ip)]),
            Ok(_) => Answer::Records(Vec::new()),
            Err(_) => nx,
        },
        _ => nx,
    }
}

/// The reply to a query message.
pub fn reply(query: &Message, services: &[Arc<Value>], endpoints: &[Arc<Value>]) -> Message {
    let mut out = Message::response(query.metadata.id, query.metadata.op_code);
    out.metadata.recursion_desired = query.metadata.recursion_desired;
    out.metadata.authoritative = true;
    let Some(q) = query
        .queries
        .first()
        .filter(|_| query.metadata.op_code == OpCode::Query)
    else {
        out.metadata.response_code = ResponseCode::NotImp;
        return out;
    };
    out.add_query(q.clone());
    match resolve(q.name(), q.query_type(), services, endpoints) {
        Answer::Records(records) => {
            out.add_answers(records);
        }
        Answer::Code(code) => {
            out.metadata.authoritative = code != ResponseCode::Refused;
            out.metadata.response_code = code;
        }
    }
    out
}

fn answer_bytes(bytes: &[u8], informers: &Informers, max: usize) -> Option<Vec<u8>> {
    let query = Message::from_vec(bytes).ok()?;
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    let services = informers.of("", "services");
    let endpoints = informers.of("", "endpoints");
    let mut out = reply(&query, &services, &endpoints);
    let mut wire = out.to_vec().ok()?;
    if wire.len() > max {
        out.answers.clear();
        out.metadata.truncation = true;
        wire = out.to_vec().ok()?;
    }
    Some(wire)
}

/// Serves DNS on `addr` (UDP and TCP) until the process ends, as the supervised components
/// `dns/udp` and `dns/tcp` of `components`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    informers: Informers,
    components: &shoal_runtime::Components,
) -> std::io::Result<SocketAddr> {
    let (udp, tcp) = bind_pair(addr).await?;
    let bound = udp.local_addr()?;
    let (udp, tcp) = (Arc::new(udp), Arc::new(tcp));
    let inf = informers.clone();
    components.spawn("dns/udp", move || serve_udp(udp.clone(), inf.clone()));
    components.spawn("dns/tcp", move || serve_tcp(tcp.clone(), informers.clone()));
    Ok(bound)
}

/// A UDP socket and a TCP listener on one address. With port 0 the UDP socket picks a free
/// port, which may be taken for TCP: then another port is tried (a few times), so a free
/// port for both is found however busy the machine is.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    bind_pair_with(addr, |a| async move { tokio::net::TcpListener::bind(a).await }).await
}

async fn bind_pair_with<F, Fut>(
    addr: SocketAddr,
    bind_tcp: F,
) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<tokio::net::TcpListener>>,
{
    let tries = if addr.port() == 0 { 32 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        match bind_tcp(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse)))
}

async fn serve_udp(udp: Arc<tokio::net::UdpSocket>, informers: Informers) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(wire) = answer_bytes(&buf[..n], &informers, 512) {
            let _ = udp.send_to(&wire, peer).await;
        }
    }
}

async fn serve_tcp(tcp: Arc<tokio::net::TcpListener>, informers: Informers) {
    loop {
        let Ok((mut stream, _)) = tcp.accept().await else {
            continue;
        };
        let inf = informers.clone();
        tokio::spawn(async move {
            // An idle or trickling client is dropped (RFC 7766 suggests seconds).
            let idle = std::time::Duration::from_secs(10);
            loop {
                let Ok(Ok(len)) = tokio::time::timeout(idle, stream.read_u16()).await else {
                    return;
                };
                let mut msg = vec![0u8; usize::from(len)];
                if !matches!(tokio::time::timeout(idle, stream.read_exact(&mut msg)).await, Ok(Ok(_))) {
                    return;
                }
                let Some(wire) = answer_bytes(&msg, &inf, usize::from(u16::MAX)) else {
                    return;
                };
                let Ok(n) = u16::try_from(wire.len()) else {
                    return;
                };
                if stream.write_u16(n).await.is_err() || stream.write_all(&wire).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixtures() -> (Vec<Arc<Value>>, Vec<Arc<Value>>) {
        let services = vec![
            Arc::new(json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.43.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})),
            Arc::new(json!({"metadata": {"name": "nginx", "namespace": "db"},
                "spec": {"clusterIP": "None", "ports": [{"name": "web", "port": 80}]}})),
        ];
        let endpoints = vec![Arc::new(json!({"metadata": {"name": "nginx", "namespace": "db"},
            "subsets": [{"addresses": [{"ip": "10.42.1.2", "hostname": "nginx-0"}, {"ip": "10.42.2.2", "hostname": "nginx-1"}]}]}))];
        (services, endpoints)
    }

    fn ask(name: &str, t: RecordType) -> Answer {
        let (s, e) = fixtures();
        resolve(&Name::from_ascii(name).unwrap(), t, &s, &e)
    }

    fn ips(answer: Answer) -> Vec<String> {
        match answer {
            Answer::Records(r) => r
                .iter()
                .map(|r| match &r.data {
                    RData::A(a) => a.0.to_string(),
                    RData::SRV(s) => format!("{} {}", s.port, s.target),
                    other => format!("{other:?}"),
                })
                .collect(),
            Answer::Code(c) => vec![format!("{c:?}")],
        }
    }

    #[test]
    fn services_headless_services_and_their_pods_resolve() {
        assert_eq!(
            ips(ask("web.default.svc.cluster.local.", RecordType::A)),
            ["10.43.0.10"]
        );
        assert_eq!(ips(ask("WEB.default.svc.cluster.local", RecordType::A)), ["10.43.0.10"]);
        assert_eq!(
            ips(ask("nginx.db.svc.cluster.local.", RecordType::A)),
            ["10.42.1.2", "10.42.2.2"]
        );
        assert_eq!(
            ips(ask("nginx-1.nginx.db.svc.cluster.local.", RecordType::A)),
            ["10.42.2.2"]
        );
        assert_eq!(
            ips(ask("10-42-1-2.db.pod.cluster.local.", RecordType::A)),
            ["10.42.1.2"]
        );
        assert_eq!(
            ips(ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV)),
            ["80 web.default.svc.cluster.local."]
        );
        assert_eq!(
            ips(ask("_web._tcp.nginx.db.svc.cluster.local.", RecordType::SRV)),
            [
                "80 nginx-0.nginx.db.svc.cluster.local.",
                "80 nginx-1.nginx.db.svc.cluster.local."
            ]
        );
    }

    #[test]
    fn missing_names_other_types_and_other_zones() {
        assert_eq!(ips(ask("nope.default.svc.cluster.local.", RecordType::A)), ["NXDomain"]);
        assert_eq!(
            ips(ask("nginx-9.nginx.db.svc.cluster.local.", RecordType::A)),
            ["NXDomain"]
        );
        assert!(
            ips(ask("web.default.svc.cluster.local.", RecordType::AAAA)).is_empty(),
            "NODATA"
        );
        assert!(ips(ask("default.svc.cluster.local.", RecordType::A)).is_empty());
        assert_eq!(ips(ask("example.com.", RecordType::A)), ["Refused"]);
    }

    #[test]
    fn replies_carry_the_question_and_flags() {
        let (s, e) = fixtures();
        let mut q = Message::new(7, MessageType::Query, OpCode::Query);
        q.add_query(hickory_proto::op::Query::query(
            Name::from_ascii("web.default.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        let wire = q.to_vec().unwrap();
        let r = reply(&Message::from_vec(&wire).unwrap(), &s, &e);
        assert_eq!(r.metadata.id, 7);
        assert!(r.metadata.authoritative);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.queries.len(), 1);
    }

    #[tokio::test]
    async fn a_free_port_taken_for_tcp_is_replaced_by_another() {
        // The first three ports the UDP socket gets are "taken" for TCP.
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (udp, tcp) = bind_pair_with("127.0.0.1:0".parse().unwrap(), |a| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
                } else {
                    tokio::net::TcpListener::bind(a).await
                }
            }
        })
        .await
        .expect("a port free for both");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        // A port the user named is not replaced.
        let busy = tcp.local_addr().unwrap();
        drop(udp);
        let named = bind_pair(busy).await;
        assert_eq!(named.err().map(|e| e.kind()), Some(std::io::ErrorKind::AddrInUse));
    }
}
