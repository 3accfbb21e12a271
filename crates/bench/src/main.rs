//! `meshplane-bench`: Meshplane's benchmark harness. Every figure is printed beside a baseline
//! measured in the same run (or, where the issue names one, a stated constant), with the ratio,
//! the target and PASS/MISS. It starts its own OpenBao dev server, uses the local PostgreSQL
//! (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`) and the release binaries
//! beside it (`cargo build --release --bins`).
//!
//! `all` runs every scenario at full size (< 10 min on 2 cores), `quick` at reduced size and
//! repeats (< 2 min); each scenario also runs alone; `--json FILE` writes every figure.

// The simulated zones run the zone's sync code, so they use the zone binary's allocator: with
// glibc's, its malloc, free and memcmp were three quarters of their samples in a global restart
// at 1,000,000 dataplanes (perf, docs/scaling.md), a cost no real zone pays.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agents;
mod api_writes;
mod env;
mod fleet;
mod fleet_tables;
mod internet;
mod internet_restart;
mod internet_tables;
mod issue;
mod kds_prop;
mod kds_resync;
mod kds_world;
mod mesh;
mod procs;
mod report;
mod vault_raw;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use serde_json::json;

use crate::{
    env::Env,
    report::{Table, Verdict, loadavg},
};

#[derive(Debug, Parser)]
#[command(name = "meshplane-bench", about = "Meshplane's benchmark harness")]
struct Cli {
    /// Write every figure (with all samples) to this JSON file.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Smaller sizes and fewer repeats (what `quick` uses) for a single scenario.
    #[arg(long, global = true)]
    quick: bool,
    /// issue-throughput: only these key types (ec, rsa).
    #[arg(long, global = true, value_delimiter = ',', value_name = "ec|rsa")]
    keys: Vec<String>,
    /// issue-throughput: only these modes (issue, csr).
    #[arg(long, global = true, value_delimiter = ',', value_name = "issue|csr")]
    modes: Vec<String>,
    /// issue-throughput: only these concurrencies (default 1,8,32).
    #[arg(long, global = true, value_delimiter = ',', value_name = "C,…")]
    concurrency: Vec<usize>,
    /// Fleet sizes instead of the defaults (1,000, 10,000 and 30,000; quick: 1,000).
    #[arg(long, global = true, value_delimiter = ',', value_name = "N,…")]
    fleet_sizes: Vec<usize>,
    /// internet-scale: number of simulated zones (default 100; quick: 10; all: 100).
    #[arg(long, global = true, value_name = "Z")]
    zones: Option<usize>,
    /// internet-scale: dataplanes per zone (default 10,000; quick: 500; all: 1,000).
    #[arg(long, global = true, value_name = "D")]
    dataplanes_per_zone: Option<usize>,
    /// internet-scale: seconds zone 1 stays offline during churn (default 300; quick: 10; all: 60).
    #[arg(long, global = true, value_name = "SECONDS")]
    offline_secs: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::Subcommand)]
enum Command {
    /// Every scenario at full size (under 10 minutes on 2 cores).
    All,
    /// Every scenario at reduced size and repeats (under 2 minutes).
    Quick,
    /// 1. Certificates/s through the issuance manager vs raw OpenBao calls.
    IssueThroughput,
    /// 2. N agents registering at once with one zone; then a zone restart.
    FleetColdStart,
    /// 3. Mesh update at global until visible in 1, 10, 100 zones.
    KdsPropagation,
    /// 4. A zone reconnecting to a global holding 1,000 Meshes.
    KdsResync,
    /// 5. Zone RSS per dataplane at 10,000 dataplanes.
    Memory,
    /// 6. Mesh PUTs/s through global vs raw INSERTs.
    ApiWrites,
    /// 7. Z zones × D dataplanes reporting to one global (default 100 × 10,000).
    InternetScale,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Issue,
    /// Fleet runs; `tables` says which of the fleet and memory tables to print.
    Fleet {
        fleet: bool,
        memory: bool,
    },
    KdsPropagation,
    KdsResync,
    ApiWrites,
    /// `all_size`: the reduced size `all` runs (100 × 1,000), so `all` stays under its budget.
    Internet {
        all_size: bool,
    },
}

fn plan(cmd: Command) -> Vec<Scenario> {
    let both = Scenario::Fleet {
        fleet: true,
        memory: true,
    };
    match cmd {
        Command::All | Command::Quick => vec![
            Scenario::Issue,
            both,
            Scenario::KdsPropagation,
            Scenario::KdsResync,
            Scenario::ApiWrites,
            Scenario::Internet { all_size: true },
        ],
        Command::IssueThroughput => vec![Scenario::Issue],
        Command::FleetColdStart => vec![Scenario::Fleet {
            fleet: true,
            memory: false,
        }],
        Command::Memory => vec![Scenario::Fleet {
            fleet: false,
            memory: true,
        }],
        Command::KdsPropagation => vec![Scenario::KdsPropagation],
        Command::KdsResync => vec![Scenario::KdsResync],
        Command::ApiWrites => vec![Scenario::ApiWrites],
        Command::InternetScale => vec![Scenario::Internet { all_size: false }],
    }
}

async fn fleet_runs(
    env: &Env,
    quick: bool,
    sizes: &[usize],
    restart: bool,
) -> anyhow::Result<Vec<fleet::FleetResult>> {
    let default: &[usize] = if quick {
        &[1_000]
    } else {
        &[1_000, 10_000, 30_000]
    };
    let sizes = if sizes.is_empty() { default } else { sizes };
    let mut out = Vec::new();
    for &n in sizes {
        let p = fleet::Params {
            n,
            restart,
            raw_repeats: if quick { 2 } else { 3 },
            raw_secs: Duration::from_millis(if quick { 750 } else { 1500 }),
        };
        out.push(fleet::run(env, &p).await?);
    }
    Ok(out)
}

async fn run_one(env: &Env, s: Scenario, quick: bool, cli: &Cli) -> anyhow::Result<Vec<Table>> {
    let sizes = &cli.fleet_sizes;
    Ok(match s {
        Scenario::Issue => {
            let mut p = issue::Params::new(quick);
            if !cli.concurrency.is_empty() {
                p.concurrency.clone_from(&cli.concurrency);
            }
            p.keys
                .retain(|k| cli.keys.is_empty() || cli.keys.iter().any(|x| x == k.short()));
            p.modes
                .retain(|m| cli.modes.is_empty() || cli.modes.iter().any(|x| x == m.short()));
            vec![issue::run(env, &p).await?]
        }
        Scenario::Fleet { fleet, memory } => {
            let runs = if fleet {
                fleet_runs(env, quick, sizes, true).await?
            } else {
                // Memory alone: the cold start at the target size, without the restart.
                let n = sizes
                    .last()
                    .copied()
                    .unwrap_or(if quick { 1_000 } else { 10_000 });
                let p = fleet::Params {
                    n,
                    restart: false,
                    raw_repeats: 1,
                    raw_secs: Duration::from_millis(500),
                };
                vec![fleet::run(env, &p).await?]
            };
            let mut v = Vec::new();
            if fleet {
                v.push(fleet_tables::fleet_table(&runs));
            }
            if memory {
                v.push(fleet_tables::memory_table(&runs));
            }
            v
        }
        Scenario::KdsPropagation => vec![kds_prop::run(&kds_prop::Params::new(quick)).await?],
        Scenario::KdsResync => vec![kds_resync::run(&kds_resync::Params::new(quick)).await?],
        Scenario::ApiWrites => vec![api_writes::run(env, &api_writes::Params::new(quick)).await?],
        Scenario::Internet { all_size } => {
            let mut p = internet::Params::new(quick);
            if all_size && !quick {
                p.per_zone = 1_000;
                p.offline = std::time::Duration::from_secs(60);
            }
            if let Some(secs) = cli.offline_secs {
                p.offline = std::time::Duration::from_secs(secs);
            }
            if let Some(z) = cli.zones {
                p.zones = z;
            }
            if let Some(d) = cli.dataplanes_per_zone {
                p.per_zone = d;
            }
            internet::run(env, &p).await?
        }
    })
}

fn name_of(s: Scenario) -> &'static str {
    match s {
        Scenario::Issue => "issue-throughput",
        Scenario::Fleet { fleet: true, .. } => "fleet-cold-start",
        Scenario::Fleet { .. } => "memory",
        Scenario::KdsPropagation => "kds-propagation",
        Scenario::KdsResync => "kds-resync",
        Scenario::ApiWrites => "api-writes",
        Scenario::Internet { .. } => "internet-scale",
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let quick = cli.quick || cli.command == Command::Quick;
    let env = Env::new()?;
    let started = std::time::Instant::now();
    let started_at = chrono::Utc::now();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "# meshplane-bench {} — {} CPUs, load average at start {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        cpus,
        loadavg()
    );
    let mut tables: Vec<Table> = Vec::new();
    for s in plan(cli.command) {
        let before = loadavg();
        let t0 = std::time::Instant::now();
        eprintln!("running {} …", name_of(s));
        let result = run_one(&env, s, quick, &cli).await;
        let after = loadavg();
        let mut produced = match result {
            Ok(ts) => ts,
            Err(e) => {
                let mut t = Table::new(name_of(s), "FAILED");
                t.note(format!("the scenario failed: {e:#}"));
                t.rows.push(
                    report::Row::new("scenario completed", "", None)
                        .target("completes", Verdict::Miss),
                );
                vec![t]
            }
        };
        for t in &mut produced {
            t.seconds = t0.elapsed().as_secs_f64();
            t.loadavg_before.clone_from(&before);
            t.loadavg_after.clone_from(&after);
            t.print();
        }
        tables.extend(produced);
    }
    let total = started.elapsed().as_secs_f64();
    let misses = tables
        .iter()
        .flat_map(|t| &t.rows)
        .filter(|r| r.verdict == Verdict::Miss)
        .count();
    println!(
        "\nTotal {total:.0} s; {misses} target(s) missed; load average at end {}",
        loadavg()
    );
    if let Some(path) = &cli.json {
        let doc = json!({
            "command": std::env::args().collect::<Vec<_>>(),
            "quick": quick,
            "started_at": started_at.to_rfc3339(),
            "cpus": cpus,
            "total_seconds": total,
            "tables": tables,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(misses == 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        // Missed targets are results, not failures of the harness.
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
