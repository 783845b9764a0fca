//! `sessionfleet bench`: the closed-loop load generator against a running node;
//! `sessionfleet bench-ceiling`: the bare servers it is measured against.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use loadgen::{BenchConfig, Workload};

/// `sessionfleet bench` flags.
#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// The node's HTTP address.
    #[arg(long, default_value = "127.0.0.1:5984")]
    http: SocketAddr,
    /// The node's gRPC address.
    #[arg(long, default_value = "127.0.0.1:6984")]
    grpc: SocketAddr,
    /// Database to use (created by --preload).
    #[arg(long, default_value = "bench")]
    db: String,
    /// http-get, http-put (durable create), grpc-get, connect-storm (--connections
    /// clients connect at once and GET once each: time until all are served), or
    /// propagation (write at --http at --rate per second, time arrival in
    /// --to-http's changes feed).
    #[arg(long, default_value = "http-get")]
    workload: String,
    /// For propagation: the node whose changes feed must show the writes.
    #[arg(long)]
    to_http: Option<SocketAddr>,
    /// For propagation: writes per second.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Concurrent connections, one request in flight each (gRPC: --streams each).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// For grpc-get: requests in flight on each connection (HTTP/2 streams, as an
    /// edge-client multiplexes its calls over few connections).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Sessions in the keyspace.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Bytes per session.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Create the database and the keyspace first.
    #[arg(long)]
    preload: bool,
    /// Print the report as one JSON line (for scripts).
    #[arg(long)]
    json: bool,
    /// Bearer token sent with every request (an admin token with --preload, which
    /// creates the database).
    #[arg(long, env = "SESSIONFLEET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The fleet CA (and optionally a client certificate): HTTPS and gRPC over TLS.
    #[command(flatten)]
    tls: crate::secure::TlsArgs,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.workload == "propagation" {
        let reader = args
            .to_http
            .ok_or_else(|| anyhow::anyhow!("propagation needs --to-http"))?;
        let cfg = loadgen::propagation::PropagationConfig {
            writer: args.http,
            reader,
            db: args.db,
            rate: args.rate.max(1),
            duration: Duration::from_secs(args.duration_secs.max(1)),
            value_size: args.value_size,
            token: args.token,
        };
        let r = loadgen::propagation::run(&cfg).await?;
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "propagation: {} writes at {:.0}/s, {} seen, lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                r.written, r.write_rate, r.seen, r.p50_ms, r.p99_ms, r.max_ms
            );
        }
        return Ok(());
    }
    let workload = Workload::parse(&args.workload).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown workload {:?}: use http-get, http-put, grpc-get or connect-storm",
            args.workload
        )
    })?;
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(args.streams > 0, "--streams must be at least 1");
    anyhow::ensure!(
        args.streams == 1 || workload == Workload::GrpcGet,
        "--streams applies to grpc-get only (HTTP/1.1 has one request in flight per connection)"
    );
    let cfg = BenchConfig {
        http: args.http,
        grpc: args.grpc,
        db: args.db,
        connections: args.connections,
        streams: args.streams,
        duration: Duration::from_secs(args.duration_secs.max(1)),
        keys: args.keys.max(1),
        value_size: args.value_size,
        workload,
        token: args.token,
        tls: args.tls.for_client(None)?,
    };
    if args.preload {
        loadgen::preload::preload(&cfg).await?;
    }
    let r = loadgen::run(&cfg).await?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{}: {} connections × {} streams, {:.0} ops/s, p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs, {} errors",
            r.workload,
            r.connections,
            r.streams,
            r.ops_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.errors
        );
    }
    Ok(())
}

/// `sessionfleet bench-ceiling` flags.
#[derive(Args, Debug)]
pub(crate) struct CeilingArgs {
    /// Address of the bare hyper HTTP/1.1 server (every GET gets the fixed session).
    #[arg(long, default_value = "127.0.0.1:5985")]
    http: SocketAddr,
    /// Address of the bare tonic server (Sessions.Get gets the fixed session).
    #[arg(long, default_value = "127.0.0.1:6985")]
    grpc: SocketAddr,
    /// Bytes of the fixed session's body, as `bench --value-size`.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
}

/// Serves the ceilings until SIGTERM or SIGINT; prints `ready` once listening.
pub(crate) async fn ceiling(args: CeilingArgs) -> anyhow::Result<()> {
    let shutdown = crate::shutdown_on_signals()?;
    let cfg = loadgen::ceiling::CeilingConfig {
        http: args.http,
        grpc: args.grpc,
        value_size: args.value_size,
    };
    loadgen::ceiling::serve(&cfg, shutdown.cancelled_owned(), |http, grpc| {
        // The hub's line, so scripts wait for both the same way.
        println!("ready http={http} grpc={grpc}");
    })
    .await?;
    Ok(())
}
