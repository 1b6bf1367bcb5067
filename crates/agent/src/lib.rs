//! Nodes: the simulated node pool (kwok-style nodes kept alive in-process).
//!
//! Every Node annotated `shoal.dev/simulated: "true"` is adopted by the pool: it gets its
//! capacity, addresses and node info, a Ready condition and a Lease in `kube-node-lease`
//! renewed every [`LEASE_RENEW`]. Pods bound to such a node go Pending -> Running -> Ready
//! with an IP from the node's pod CIDR, run-to-completion pods complete, and deleted pods are
//! finished ([`pods`]). Everything goes through the Kubernetes API.
//!
//! For runtimes that start real processes: [`env`] builds a container's environment as
//! upstream's kubelet does (`envFrom`, `env`, `valueFrom`), and [`expand`] holds upstream's
//! `$(VAR)` expansion of environments, commands and arguments.

pub mod agent;
pub mod attach;
pub mod container;
pub mod endpoint;
pub mod env;
pub mod exec;
pub mod expand;
pub mod image;
pub mod join;
pub mod kubelet;
pub mod lifecycle;
pub mod netpol;
pub mod oci;
pub mod pods;
pub mod portforward;
pub mod proxy;
pub mod runtime;
pub mod sandbox;
pub mod shim;
pub mod simulated;
pub mod spdy;
pub mod volumes;

pub use pods::{EXIT_CODE_ANNOTATION, PodTiming, RUN_SECONDS_ANNOTATION};
pub use simulated::{SimulatedPool, node_manifest};

/// The annotation that puts a Node in the simulated pool.
pub const SIMULATED_ANNOTATION: &str = "shoal.dev/simulated";

/// How often node leases are renewed (upstream kubelet default).
pub const LEASE_RENEW: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a node's status is reported when nothing in it changed (upstream kubelet's
/// `nodeStatusReportFrequency`); the Lease is the heartbeat in between.
pub const NODE_STATUS_REPORT: std::time::Duration = std::time::Duration::from_secs(300);

/// Lease duration written into each node Lease (upstream default).
pub const LEASE_DURATION_SECONDS: i32 = 40;
