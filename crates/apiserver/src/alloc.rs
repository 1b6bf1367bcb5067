//! Service cluster-IP and node-port allocation, as upstream's service registry does it on
//! create. Allocations are derived from the Services the watch cache holds; creates of
//! Services are serialised by the caller so two of them never pick the same value.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use shoal_api::field::FieldError;

use crate::status::{ApiError, ApiResult};

pub use shoal_api::network::SERVICE_CIDR;

/// A Service range: network address and prefix length.
pub type ServiceRange = (Ipv4Addr, u8);

/// The address of the `kubernetes` Service in `default`: the first in the range.
pub fn kubernetes_service_ip(range: ServiceRange) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(range.0) + 1)
}

/// Parses a Service range (`10.43.0.0/16`): an IPv4 network of /8 to /28, given by its
/// network address.
pub fn parse_range(s: &str) -> Result<ServiceRange, String> {
    let (ip, bits) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a CIDR (e.g. 10.43.0.0/16)"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    let bits: u8 = bits.parse().map_err(|_| format!("{bits:?} is not a prefix length"))?;
    if !(8..=28).contains(&bits) {
        return Err(format!("a Service range is /8 to /28, not /{bits}"));
    }
    let mask = u32::MAX << (32 - bits);
    if u32::from(ip) & !mask != 0 {
        return Err(format!(
            "{s} is not a network address (the network is {}/{bits})",
            Ipv4Addr::from(u32::from(ip) & mask)
        ));
    }
    Ok((ip, bits))
}
/// The cluster-wide record of recent allocations (upstream keeps its allocation bitmaps
/// under `/registry/ranges/` too), shared by every server on the store.
pub const RECORD_KEY: &str = "/registry/ranges/services";

/// How long an allocation stays in the record: far longer than the Service create that
/// follows it takes, after which the Service itself (in every cache) holds the values.
const RECENT_SECONDS: i64 = 60;

/// The allocations in the record `value` made less than a minute before `now` (Unix
/// seconds), each as a Service-shaped value [`InUse::from_services`] reads.
pub fn recent(value: Option<&[u8]>, now: i64) -> Vec<Value> {
    let Some(record) = value.and_then(|v| serde_json::from_slice::<Value>(v).ok()) else {
        return Vec::new();
    };
    record["recent"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["at"].as_i64().is_some_and(|at| now - at < RECENT_SECONDS))
        .cloned()
        .collect()
}

/// Whether `svc` holds anything allocated (a cluster IP or a node port).
pub fn holds_allocations(svc: &Value) -> bool {
    let one = InUse::from_services(std::iter::once(svc));
    !one.ips.is_empty() || !one.ports.is_empty()
}

/// The record after adding the allocations of `svc` (stored at `key`) at `now` to `recent`.
pub fn record(mut recent: Vec<Value>, svc: &Value, key: &str, now: i64) -> bytes::Bytes {
    let spec = &svc["spec"];
    let ports: Vec<Value> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p.get("nodePort").is_some())
        .map(|p| serde_json::json!({"nodePort": p["nodePort"]}))
        .collect();
    recent.push(serde_json::json!({
        "key": key,
        "at": now,
        "spec": {
            "clusterIP": spec["clusterIP"],
            "clusterIPs": spec["clusterIPs"],
            "ports": ports,
            "healthCheckNodePort": spec["healthCheckNodePort"],
        },
    }));
    let value = serde_json::json!({
        "apiVersion": "v1",
        "kind": "RangeAllocation",
        "metadata": {"name": "services"},
        "recent": recent,
    });
    bytes::Bytes::from(value.to_string())
}

/// Upstream's default node-port range.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// What existing Services hold.
#[derive(Default)]
pub struct InUse {
    ips: BTreeSet<Ipv4Addr>,
    ports: BTreeSet<u16>,
}

impl InUse {
    /// Collects the cluster IPs and node ports of `services`.
    pub fn from_services<'a>(services: impl IntoIterator<Item = &'a Value>) -> InUse {
        let mut out = InUse::default();
        for svc in services {
            let spec = &svc["spec"];
            for ip in spec["clusterIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(std::iter::once(&spec["clusterIP"]))
            {
                if let Some(ip) = ip.as_str().and_then(|s| s.parse().ok()) {
                    out.ips.insert(ip);
                }
            }
            for p in spec["ports"].as_array().into_iter().flatten() {
                if let Some(n) = p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()) {
                    out.ports.insert(n);
                }
            }
            if let Some(n) = spec["healthCheckNodePort"].as_u64().and_then(|n| u16::try_from(n).ok()) {
                out.ports.insert(n);
            }
        }
        out
    }
}

fn in_cidr(ip: Ipv4Addr, range: ServiceRange) -> bool {
    let (net, bits) = range;
    let mask = u32::MAX << (32 - bits);
    u32::from(ip) & mask == u32::from(net)
}

fn invalid(svc: &Value, field: &str, value: &Value, msg: &str) -> ApiError {
    let res = shoal_api::catalogue::find("", "v1", "services").expect("services are served");
    let name = svc["metadata"]["name"].as_str().unwrap_or_default();
    ApiError::invalid(res, name, &[FieldError::invalid(field, value.clone(), msg)])
}

/// Fills in `spec.clusterIP`, `spec.clusterIPs`, `spec.ipFamilies` and node ports of a new
/// Service (already defaulted), checking requested values against what is in use.
pub fn allocate(svc: &mut Value, in_use: &InUse, seed: u32, range: ServiceRange) -> ApiResult<()> {
    if !svc["spec"].is_object() {
        return Ok(());
    }
    let meta = json!({"metadata": svc["metadata"].clone()});
    let spec = &mut svc["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if kind == "ExternalName" {
        return Ok(());
    }
    let requested = spec["clusterIP"].as_str().unwrap_or("").to_string();
    let ip = match requested.as_str() {
        "None" => None,
        "" => {
            let (net, bits) = range;
            let size = 1u32 << (32 - bits);
            // Skip the network address and the kubernetes Service's address.
            let usable = size - 3;
            let start = seed % usable;
            let found = (0..usable)
                .map(|i| Ipv4Addr::from(u32::from(net) + 2 + (start + i) % usable))
                .find(|ip| !in_use.ips.contains(ip));
            match found {
                Some(ip) => Some(ip),
                None => return Err(ApiError::internal("failed to allocate a serviceIP: range is full")),
            }
        }
        s => {
            let Ok(ip) = s.parse::<Ipv4Addr>() else {
                return Err(invalid(
                    &meta,
                    "spec.clusterIP",
                    &json!(s),
                    "must be a valid IP address",
                ));
            };
            if !in_cidr(ip, range) {
                let (net, bits) = range;
                return Err(invalid(
                    &meta,
                    "spec.clusterIPs",
                    &json!([s]),
                    &format!(
                        "failed to allocate IP {s}: the provided IP ({s}) is not in the valid range. The range of valid IPs is {net}/{bits}"
                    ),
                ));
            }
            if in_use.ips.contains(&ip) {
                return Err(invalid(
                    &meta,
                    "spec.clusterIPs",
                    &json!([s]),
                    &format!("failed to allocate IP {s}: provided IP is already allocated"),
                ));
            }
            Some(ip)
        }
    };
    if let Some(ip) = ip {
        spec["clusterIP"] = json!(ip.to_string());
        spec["clusterIPs"] = json!([ip.to_string()]);
    } else {
        spec["clusterIP"] = json!("None");
        spec["clusterIPs"] = json!(["None"]);
    }
    if spec
        .get("ipFamilies")
        .is_none_or(|f| f.as_array().is_none_or(Vec::is_empty))
    {
        spec["ipFamilies"] = json!(["IPv4"]);
    }
    if spec.get("ipFamilyPolicy").is_none_or(Value::is_null) {
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
    allocate_node_ports(svc, in_use, seed)
}

/// Gives every port of a NodePort or LoadBalancer Service without a `nodePort` a free one
/// (creates, and updates that change the type or add ports); a requested one must be free.
/// `in_use` must not count the Service's own ports.
pub fn allocate_node_ports(svc: &mut Value, in_use: &InUse, seed: u32) -> ApiResult<()> {
    let meta = json!({"metadata": svc["metadata"].clone()});
    let spec = &mut svc["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if kind == "NodePort" || kind == "LoadBalancer" {
        let mut taken = in_use.ports.clone();
        let span = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
        let mut next = seed % span;
        if let Some(ports) = spec["ports"].as_array_mut() {
            for (i, p) in ports.iter_mut().enumerate() {
                match p["nodePort"].as_u64() {
                    Some(n) if n != 0 => {
                        let n16 = u16::try_from(n).unwrap_or(0);
                        if !taken.insert(n16) {
                            return Err(invalid(
                                &meta,
                                &format!("spec.ports[{i}].nodePort"),
                                &json!(n),
                                "provided port is already allocated",
                            ));
                        }
                    }
                    _ => {
                        let port = (0..span)
                            .map(|k| NODE_PORTS.start() + ((next + k) % span) as u16)
                            .find(|n| !taken.contains(n))
                            .ok_or_else(|| ApiError::internal("failed to allocate a nodePort: range is full"))?;
                        next = u32::from(port - NODE_PORTS.start()) + 1;
                        taken.insert(port);
                        p["nodePort"] = json!(port);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_free_addresses_and_ports() {
        let used = InUse::from_services([&json!({"spec": {"clusterIP": "10.43.0.2", "ports": [{"nodePort": 30000}]}})]);
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81, "nodePort": 30005}]}});
        allocate(&mut svc, &used, 0, SERVICE_CIDR).unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "10.43.0.3");
        assert_eq!(svc["spec"]["clusterIPs"], json!(["10.43.0.3"]));
        assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(svc["spec"]["ports"][1]["nodePort"], 30005);
    }

    #[test]
    fn a_service_that_becomes_a_node_port_gets_its_ports() {
        let others = InUse::from_services([&json!({"spec": {"ports": [{"nodePort": 30000}]}})]);
        let mut svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.7", "ports": [{"port": 80}, {"port": 81, "nodePort": 30010}]}});
        allocate_node_ports(&mut svc, &others, 0).unwrap();
        assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(svc["spec"]["ports"][1]["nodePort"], 30010);
        let mut clash = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30000}]}});
        assert_eq!(allocate_node_ports(&mut clash, &others, 0).unwrap_err().code, 422);
    }

    #[test]
    fn refuses_taken_or_foreign_addresses() {
        let used = InUse::from_services([&json!({"spec": {"clusterIPs": ["10.43.0.9"]}})]);
        let mut taken = json!({"spec": {"clusterIP": "10.43.0.9"}});
        let err = allocate(&mut taken, &used, 0, SERVICE_CIDR).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message.contains("provided IP is already allocated"),
            "{}",
            err.message
        );
        let mut foreign = json!({"spec": {"clusterIP": "192.168.0.1"}});
        let err = allocate(&mut foreign, &used, 0, SERVICE_CIDR).unwrap_err();
        assert!(err.message.contains("not in the valid range"), "{}", err.message);
        let mut headless = json!({"spec": {"clusterIP": "None"}});
        allocate(&mut headless, &used, 0, SERVICE_CIDR).unwrap();
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    }

    #[test]
    fn ranges_are_checked_and_other_ranges_allocate_within_themselves() {
        assert_eq!(parse_range("10.96.0.0/12"), Ok((Ipv4Addr::new(10, 96, 0, 0), 12)));
        assert!(
            parse_range("10.96.0.1/12")
                .unwrap_err()
                .contains("not a network address")
        );
        assert!(parse_range("10.96.0.0/30").is_err());
        assert!(parse_range("10.96.0.0").is_err());
        let range = parse_range("10.96.0.0/24").unwrap();
        assert_eq!(kubernetes_service_ip(range), Ipv4Addr::new(10, 96, 0, 1));
        let mut svc = json!({"spec": {}});
        allocate(&mut svc, &InUse::default(), 7, range).unwrap();
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(in_cidr(ip, range) && ip != kubernetes_service_ip(range), "{ip}");
        let mut outside = json!({"spec": {"clusterIP": "10.43.0.5"}});
        let err = allocate(&mut outside, &InUse::default(), 0, range).unwrap_err();
        assert!(
            err.message.contains("The range of valid IPs is 10.96.0.0/24"),
            "{}",
            err.message
        );
    }

    #[test]
    fn the_allocation_record_keeps_a_minute_of_allocations() {
        let svc = json!({"spec": {"clusterIP": "10.43.0.9", "clusterIPs": ["10.43.0.9"],
            "ports": [{"port": 80, "nodePort": 30001}, {"port": 81}], "healthCheckNodePort": 30002}});
        let first = record(Vec::new(), &svc, "/registry/services/specs/default/s", 1_000);
        let kept = recent(Some(&first), 1_059);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0]["key"], "/registry/services/specs/default/s");
        let in_use = InUse::from_services(kept.iter());
        assert!(in_use.ips.contains(&"10.43.0.9".parse().unwrap()));
        assert_eq!(in_use.ports, [30001, 30002].into_iter().collect());
        assert!(
            recent(Some(&first), 1_060).is_empty(),
            "older than a minute: the Service holds it"
        );
        assert!(recent(Some(b"not json"), 0).is_empty());
        assert!(holds_allocations(&svc));
        assert!(!holds_allocations(&json!({"spec": {"clusterIP": "None"}})));
    }
}
