//! The `shoal` command: a Kubernetes-compatible cluster in one binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod bench;

/// mimalloc instead of the system allocator: the server allocates and frees many small JSON
/// values from several threads, where glibc's malloc spent a fifth of the CPU time and kept
/// freed memory in per-thread arenas. The `system-allocator` feature keeps the system one,
/// for heap profilers that hook malloc (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod cluster;
mod ha;
mod process;
mod ui;
mod why;

/// shoal: a Kubernetes-compatible orchestrator in one binary, built around the DaemonSet.
#[derive(Parser)]
#[command(name = "shoal", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a whole cluster in this process: API server, controllers and N simulated nodes.
    Up {
        #[command(flatten)]
        server: ServerArgs,
        /// Number of simulated nodes (`node1`..`nodeN`; node1 is the control plane).
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Try high availability on this machine: a local 3-member etcd (Debian's
        /// etcd-server) and 3 servers on it, on consecutive ports from --listen's.
        #[arg(long)]
        ha: bool,
    },
    /// Start the control plane only (API server and controllers), no nodes.
    Server {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Join a machine to a cluster as a node and run the pods bound to it.
    Agent(AgentArgs),
    /// The images of a real node running `--runtime oci`: import archives for air-gapped
    /// machines, pull, list and remove.
    Image {
        /// The agent's data directory.
        #[arg(long, default_value = "./shoal-agent")]
        data_dir: PathBuf,
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// (internal) Run one container under the agent: started by `shoal agent`.
    #[command(hide = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the kubectl on PATH against the cluster in the data dir (like `k3s kubectl`).
    Kubectl {
        /// Data directory of the cluster.
        #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./shoal-data")]
        data_dir: PathBuf,
        /// Arguments passed to kubectl.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Mint a kubeconfig for a person: a client certificate signed by the cluster CA
    /// (CN = the user, O = its groups), printed on standard output. What the user may do is
    /// what RBAC bindings grant it.
    Kubeconfig {
        /// The user name (the certificate's common name).
        #[arg(long)]
        user: String,
        /// A group of the user (at most two; repeat the flag).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// How long the certificate is valid (e.g. `720h`, `90m`).
        #[arg(long, default_value = "8760h", value_parser = parse_duration)]
        expires: std::time::Duration,
        /// The API server address to put in it (default: the admin kubeconfig's).
        #[arg(long)]
        server: Option<String>,
        /// Data directory of the cluster (its CA signs the certificate).
        #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./shoal-data")]
        data_dir: PathBuf,
    },
    /// Explain, node by node, whether a DaemonSet runs a pod there and why not.
    Why {
        /// The DaemonSet: `ds/NAME` or `NAME`.
        target: String,
        /// Only this node.
        node: Option<String>,
        /// Namespace of the DaemonSet.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Data directory of the cluster (its kubeconfig is used).
        #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./shoal-data")]
        data_dir: PathBuf,
    },
    /// Benchmarks: start a cluster in this process and measure it through the API.
    Bench {
        #[command(subcommand)]
        bench: bench::BenchCommand,
    },
}

/// Flags shared by `up` and `server`.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Where the cluster keeps its state, certificates, kubeconfig and tokens.
    #[arg(long, default_value = "./shoal-data")]
    pub data_dir: PathBuf,
    /// Address the HTTPS API listens on (port 0 picks a free port; the kubeconfig has it).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: String,
    /// Storage backend: `sqlite://PATH` (default `sqlite://<data-dir>/state.db`),
    /// `memory://`, or `etcd://HOST:PORT[,HOST:PORT...]` (shared by several servers).
    #[arg(long)]
    pub store: Option<String>,
    /// How long a node may miss heartbeats before it is marked NotReady (Unknown) and
    /// tainted `node.kubernetes.io/unreachable` (e.g. `50s`, `2m`, `1m30s`).
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// Where the cluster DNS (`cluster.local`) answers, over UDP and TCP; `off` for none.
    /// Port 0 picks a free one (the ready line names it).
    #[arg(long, default_value = "127.0.0.1:10053")]
    pub cluster_dns: String,
    /// The range Services' cluster IPs come from (the `kubernetes` Service takes the first
    /// address). Keep it across restarts of a cluster.
    #[arg(long, default_value = "10.43.0.0/16", value_parser = parse_service_cidr)]
    pub service_cidr: (std::net::Ipv4Addr, u8),
    /// Append an audit.k8s.io/v1 Event per request (Metadata level: who, what, the answer's
    /// code) to this file, as JSON lines.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// etcd, the server token and leader election.
    #[command(flatten)]
    pub ha: ha::HaArgs,
}

fn parse_service_cidr(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    shoal_apiserver::alloc::parse_range(s)
}

/// `shoal image ...`.
#[derive(Subcommand)]
pub(crate) enum ImageCommand {
    /// Import a `docker save` archive or an OCI image layout tar (optionally gzipped).
    Import {
        /// The archive.
        file: PathBuf,
    },
    /// Pull an image from its registry (or the mirrors in registries.yaml).
    Pull {
        /// The image (`nginx`, `registry.example:5000/app:v1`).
        name: String,
    },
    /// List the images.
    Ls,
    /// Remove an image (by name or digest) unless a running container uses it.
    Rm {
        /// The image.
        name: String,
    },
}

/// Flags of `shoal agent`.
#[derive(Args, Clone)]
pub struct AgentArgs {
    /// The API server: `https://HOST:PORT`, or the servers of an HA cluster as
    /// `https://HOST:PORT,https://HOST:PORT,...` (the agent fails over between them).
    #[arg(long)]
    pub server: String,
    /// File holding the join token (`<server data dir>/node-token`).
    #[arg(long)]
    pub token_file: PathBuf,
    /// This node's name (default: the machine's host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// This node's address: its InternalIP, where its endpoint listens, and the IP of its
    /// pods (host network).
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: std::net::IpAddr,
    /// Where the agent keeps its credentials, pods and logs.
    #[arg(long, default_value = "./shoal-agent")]
    pub data_dir: PathBuf,
    /// `oci` runs images in containers of their own with pod networking (needs root,
    /// overlayfs, iproute2); `process` runs each container's command as a host process;
    /// `simulated` runs nothing. `auto`: `oci` where this machine allows it, else `process`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "oci", "process", "simulated"])]
    pub runtime: String,
    /// Registry mirrors, credentials and plain-HTTP registries, in k3s's `registries.yaml`
    /// format (default: `<data dir>/registries.yaml` when it exists).
    #[arg(long)]
    pub registry_config: Option<PathBuf>,
    /// Port of the agent's HTTPS endpoint (logs, exec) on --node-ip; 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
}

/// Parses `90`, `50s`, `2m`, `1m30s`, `1h` into a duration.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(n));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let n: u64 = digits.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        digits.clear();
        let unit = match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("invalid duration {s:?}: use h, m and s (e.g. 1m30s)")),
        };
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| format!("invalid duration {s:?}: too long"))?;
    }
    if !digits.is_empty() || s.is_empty() {
        return Err(format!("invalid duration {s:?}: a number needs a unit (e.g. 50s)"));
    }
    Ok(std::time::Duration::from_secs(total))
}

fn main() -> std::process::ExitCode {
    // A shim (one per container on a real node) goes straight to its work: no argument
    // parser, logging or runtime, so that it stays small.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("pause") {
        return match shoal_agent::sandbox::PauseArgs::parse(&argv[2..]) {
            Ok(a) => shoal_agent::sandbox::pause(&a),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if argv.get(1).map(String::as_str) == Some("shim") {
        return match shoal_agent::shim::ShimArgs::parse(&argv[2..]) {
            Ok(a) => shoal_agent::shim::run(&a),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    if let Command::Kubectl { data_dir, args } = &cli.command {
        return cluster::exec_kubectl(data_dir, args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
                .unwrap_or_else(|_| "info".into())
                // An agent fetches the CA once without trusting the connection (it then checks
                // the CA's hash against its token); kube warns about that fetch.
                .add_directive("kube_client::client::tls=error".parse().expect("a valid directive")),
        )
        .with_writer(std::io::stderr)
        // A log that cannot be written (a full disk) is dropped, never a panic: the
        // subscriber's own report of the failure would go to stderr with `eprintln!`,
        // which panics when stderr fails too.
        .log_internal_errors(false)
        .init();
    shoal_runtime::install_panic_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if matches!(
            cli.command,
            Command::Up { .. } | Command::Server { .. } | Command::Agent(_)
        ) {
            let files = process::raise_open_file_limit();
            tracing::debug!(?files, "open-file limit");
            process::survive_file_size_limits();
        }
        match cli.command {
            Command::Up {
                server,
                nodes,
                ha: true,
            } => ha::up(server, nodes).await,
            Command::Up { server, nodes, .. } => cluster::run(server, Some(nodes)).await,
            Command::Server { server } => cluster::run(server, None).await,
            Command::Kubectl { .. } | Command::Shim { .. } => unreachable!("handled above"),
            Command::Agent(args) => cluster::run_agent(args).await,
            Command::Bench { bench } => bench::run(bench).await,
            Command::Kubeconfig {
                user,
                groups,
                expires,
                server,
                data_dir,
            } => cluster::user_kubeconfig(&data_dir, &user, &groups, expires, server.as_deref())
                .map(|text| print!("{text}")),
            Command::Image { data_dir, command } => cluster::image_command(&data_dir, command)
                .await
                .map(|text| print!("{text}")),
            Command::Why {
                target,
                node,
                namespace,
                data_dir,
            } => match why::run(&data_dir, &target, &namespace, node.as_deref()).await {
                Ok(text) => {
                    print!("{text}");
                    Ok(())
                }
                Err(e) => Err(cluster::StartError(e)),
            },
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go_flags() {
        assert_eq!(parse_duration("50s"), Ok(std::time::Duration::from_secs(50)));
        assert_eq!(parse_duration("1m30s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Ok(std::time::Duration::from_secs(2)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("1m5").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(
            parse_duration("9999999999999999h").is_err(),
            "overflows: refused, not wrapped"
        );
    }
}
