//! The cluster's address layout, shared by node IPAM, the simulated nodes and Service
//! allocation: pod ranges per node and the Service range, kept apart.

/// The Service CIDR: `10.43.0.0/16` (the `kubernetes` Service takes the first address).
pub const SERVICE_CIDR: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(10, 43, 0, 0), 16);

/// The pod range of node number `i` (from 1): `10.42.1.0/24` .. `10.42.255.0/24` (k3s's
/// cluster CIDR), then `10.64.0.0/24` onwards inside `10.64.0.0/10` (16,384 more), never
/// overlapping [`SERVICE_CIDR`].
pub fn pod_cidr(i: u32) -> String {
    if i < 256 {
        format!("10.42.{i}.0/24")
    } else {
        let j = i - 256;
        format!("10.{}.{}.0/24", 64 + j / 256, j % 256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ranges_continue_past_255_clear_of_services() {
        assert_eq!(pod_cidr(1), "10.42.1.0/24");
        assert_eq!(pod_cidr(256), "10.64.0.0/24");
        assert_eq!(pod_cidr(256 + 16383), "10.127.255.0/24");
        assert!((1..20_000).all(|i| !pod_cidr(i).starts_with("10.43.")));
    }
}
