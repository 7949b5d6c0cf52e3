//! `convexd`: serves a Convex-compatible deployment from a data directory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "convexd",
    version,
    about = "A self-hosted, Convex-compatible backend"
)]
struct Args {
    /// The data directory (log, checkpoints, admin key, module cache).
    #[arg(long, default_value = "data", global = true)]
    data_dir: PathBuf,
    /// Port of the deployment API (functions, deploy, admin).
    #[arg(long, default_value_t = 3210)]
    port: u16,
    /// Port of HTTP actions.
    #[arg(long, default_value_t = 3211)]
    site_port: u16,
    /// Listen on this address instead of loopback (127.0.0.1 and ::1).
    #[arg(long)]
    host: Option<IpAddr>,
    /// The Deno binary running user code (default: found in node_modules;
    /// also the CONVEX_DENO environment variable).
    #[arg(long, env = "CONVEX_DENO")]
    deno: Option<PathBuf>,
    /// Accept this admin key instead of the one kept in the data directory.
    #[arg(long, env = "CONVEX_ADMIN_KEY")]
    admin_key: Option<String>,
    /// Deno worker processes for queries and mutations.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// History the log keeps: versions superseded within it stay readable
    /// from the log; older ones are compacted away in the background (a
    /// number and a unit: 7d, 36h, 90m, 45s).
    #[arg(long, default_value = "7d", value_parser = engine::db::compact::parse_duration)]
    keep_history: std::time::Duration,
    /// Log read by online compaction at most, in MiB/s (0 turns online
    /// compaction off; `logtool compact` still works offline).
    #[arg(long, default_value_t = 16)]
    compaction_rate: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prints the data directory's admin key (made if missing).
    AdminKey,
}

/// mimalloc rather than glibc's malloc: the sync hub allocates messages on
/// its thread and other threads free them (socket tasks writing a backlog,
/// readers, the executor's calls), a pattern glibc's arenas handle with
/// locks and consolidation (about a tenth of `convexd`'s CPU under
/// `syncbench` when socket tasks wrote every message).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(Command::AdminKey) = args.command {
        if let Err(e) = std::fs::create_dir_all(&args.data_dir) {
            eprintln!("convexd: cannot create {}: {e}", args.data_dir.display());
            std::process::exit(1);
        }
        match server::admin::load_or_create(&args.data_dir) {
            Ok(k) => println!("{k}"),
            Err(e) => {
                eprintln!("convexd: cannot read the admin key: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let listen: Vec<SocketAddr> = match args.host {
        Some(h) => vec![SocketAddr::new(h, args.port)],
        None => vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), args.port),
        ],
    };
    let site_listen: Vec<SocketAddr> = match args.host {
        Some(h) => vec![SocketAddr::new(h, args.site_port)],
        None => vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.site_port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), args.site_port),
        ],
    };
    let host = match args.host {
        Some(IpAddr::V6(h)) => format!("[{h}]"),
        Some(h) => h.to_string(),
        None => "127.0.0.1".to_string(),
    };
    let config = server::Config {
        data_dir: args.data_dir,
        listen,
        site_listen,
        cloud_url: format!("http://{host}:{}", args.port),
        site_url: format!("http://{host}:{}", args.site_port),
        deno: args.deno,
        admin_key: args.admin_key,
        workers: args.workers.max(1),
        instance_name: "convexd".to_string(),
        compaction: (args.compaction_rate > 0).then(|| engine::db::compact::OnlineCompaction {
            keep_history: args.keep_history,
            read_bytes_per_sec: args.compaction_rate.saturating_mul(1 << 20),
            ..engine::db::compact::OnlineCompaction::default()
        }),
    };
    let rt = tokio::runtime::Runtime::new().expect("starting tokio");
    if let Err(e) = rt.block_on(server::serve(config)) {
        eprintln!("convexd: {e}");
        std::process::exit(1);
    }
}
