//! `kring-bench`: Kring's benchmark harness. Every scenario on SQLite and PostgreSQL, one table
//! at the end (or JSON), with the targets and where Kring stands against each:
//!
//! 1. command throughput through the domain and the store (32 concurrent writers, one consent
//!    decision per command, as the HTTP API runs commands), and a bulk import of a generated
//!    school-year log;
//! 2. a full rebuild of every read model from that log (child process: events/s, peak RSS);
//! 3. who-may-see over HTTP on loopback under concurrent load;
//! 4. projection lag at 1k commands/s;
//!
//! and, with the feature `compare-cqrs-es`, the same consent workload on cqrs-es 0.5 +
//! postgres-es on the same PostgreSQL server, as Kring/cqrs-es ratios.
//!
//! `kring-bench --soak MINUTES` runs `kring-api serve` on a school-year log under a steady HTTP
//! load for that long and samples its memory, file descriptors, WAL size and p99 latency every
//! 10 s; it exits non-zero when one of them grew (see `kring_bench::soak`).
//!
//! `kring-bench upload-rss` measures, on its own, 5. the memory of a `kring-api serve` child
//! process while it takes 20 uploads of 20 MiB at once (idle, peak, and the difference).
//!
//! `scripts/bench` runs it on a durable throwaway PostgreSQL; see docs/benchmarks.md.

use clap::{Parser, Subcommand, ValueEnum};
use kring_api::exec::Executor;
#[cfg(feature = "compare-cqrs-es")]
use kring_bench::compare;
use kring_bench::install::{Backend, Installation, PgServer};
use kring_bench::report::{self, Report, Row};
#[cfg(feature = "compare-cqrs-es")]
use kring_bench::stats;
use kring_bench::{commands, http, import, lag, rebuild, soak, uploads};
use kring_domain::simulation::workload::{Workload, WorkloadConfig};
use kring_domain::simulation::World;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator of the shipped binaries (kring-api, replay-tool), so that the figures are
/// theirs; cqrs-es runs in this process too and gets the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A Markdown table.
    Table,
    /// One JSON document.
    Json,
}

/// Kring's benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "kring-bench", version, about)]
struct Cli {
    /// Small sizes: finishes in under two minutes on a 2-core machine.
    #[arg(long)]
    quick: bool,
    /// How to print the report (progress goes to stderr).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The backends to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Backend::Sqlite, Backend::Postgres])]
    backends: Vec<Backend>,
    /// The PostgreSQL server to make benchmark databases on (each dropped afterwards).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Events to import and rebuild from (default 1,000,000; 50,000 with --quick).
    #[arg(long)]
    events: Option<u64>,
    /// The scenarios to run (to iterate on one part; the report covers only what ran).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Part::Commands, Part::Log])]
    parts: Vec<Part>,
    /// How the bulk import seals: in batches whose new keys are one transaction (what the
    /// import does), or one event at a time with a durable write per new key (to compare).
    #[arg(long, value_enum, default_value_t = ImportSeal::Batched)]
    import_seal: ImportSeal,
    /// Instead of the scenarios: a soak of this many minutes. `kring-api serve` (next to this
    /// binary) on an imported school-year log (SQLite; --events, default 50,000) under a steady
    /// HTTP load; its RSS, open fds, WAL size and p99 latency sampled every 10 s. Exits non-zero
    /// when one of them grew over 10 % after the first minute.
    #[arg(long, value_name = "MINUTES")]
    soak: Option<u64>,
    /// Requests per second of the soak.
    #[arg(long, default_value_t = 200, requires = "soak")]
    soak_rate: u32,
    #[command(subcommand)]
    child: Option<Subprocess>,
}

/// The scenarios, in two parts that need different installations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Command throughput and projection lag (and cqrs-es side by side, with the feature).
    Commands,
    /// Bulk import of a school-year log, the full rebuild from it, and who-may-see over HTTP.
    Log,
}

/// How the bulk import seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ImportSeal {
    /// [`import::write`].
    Batched,
    /// [`import::write_one_by_one`].
    OneByOne,
}

/// Stand-alone measurements, and the child processes the harness starts itself.
#[derive(Debug, Subcommand)]
enum Subprocess {
    /// Starts `kring-api serve` on a fresh data directory and measures its memory (idle, peak,
    /// and the difference) while it takes many large media uploads at once.
    UploadRss {
        /// The `kring-api` binary to measure (default: the one next to this binary).
        #[arg(long)]
        server: Option<PathBuf>,
        /// Uploads sent at the same time.
        #[arg(long, default_value_t = 20)]
        uploads: usize,
        /// MiB per upload (at most the server's upload limit, 20 MiB by default).
        #[arg(long, default_value_t = 20)]
        mib: usize,
    },
    /// A post to a whole school of this many guardians, each e-mailed by the delivery worker to
    /// an SMTP server on a local port: notifications per second and the time to the last mail,
    /// on each of --backends.
    Delivery {
        /// Guardians (one child each, 30 to a class).
        #[arg(long, default_value_t = 800)]
        guardians: usize,
    },
    /// A school of this many children opens its parent–teacher conversations and every
    /// guardian books at once over HTTP (one round per class of 30): bookings per second, the
    /// p99 of a booking, and how many got a conflict, on each of --backends.
    Meetings {
        /// Guardians (one child each, 30 to a class).
        #[arg(long, default_value_t = 400)]
        guardians: usize,
    },
    /// Rebuilds every read model of an installation and prints the result as JSON.
    #[command(hide = true)]
    RebuildChild {
        /// The installation's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Its PostgreSQL database, if any.
        #[arg(long)]
        database_url: Option<String>,
    },
}

/// How big each scenario is.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    writers: usize,
    per_writer: usize,
    /// Commands per writer run before the timed ones, on both frameworks alike: pools open
    /// their connections and caches fill, so a quick run measures what a full one does.
    warm_up: usize,
    import: u64,
    import_seal: ImportSeal,
    lag_rate: u32,
    lag_secs: u64,
    http_secs: u64,
    http_clients: usize,
    #[cfg_attr(not(feature = "compare-cqrs-es"), allow(dead_code))]
    history: usize,
    #[cfg_attr(not(feature = "compare-cqrs-es"), allow(dead_code))]
    loads: usize,
}

impl Sizes {
    fn new(quick: bool, events: Option<u64>, import_seal: ImportSeal) -> Self {
        let default_events = if quick { 50_000 } else { 1_000_000 };
        Self {
            writers: 32,
            per_writer: if quick { 100 } else { 1000 },
            warm_up: 10,
            import: events.unwrap_or(default_events),
            import_seal,
            lag_rate: 1000,
            lag_secs: if quick { 3 } else { 10 },
            http_secs: if quick { 3 } else { 10 },
            http_clients: 32,
            history: 10_000,
            loads: if quick { 5 } else { 20 },
        }
    }
}

/// The school every command scenario runs in: 16 classes of 25 children, 2 guardians each.
fn school() -> World {
    World::with_classes(16, 25, 2)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What the Kring side measured that the cqrs-es comparison needs.
#[cfg(feature = "compare-cqrs-es")]
#[derive(Debug, Default, Clone, Copy)]
struct KringPg {
    commands_per_sec: Option<f64>,
}

async fn commands_and_lag(
    backend: Backend,
    pg: Option<&PgServer>,
    sizes: Sizes,
    rows: &mut Vec<Row>,
) -> Result<Option<f64>, String> {
    let name = backend.name();
    eprintln!("[{name}] command throughput: {} writers", sizes.writers);
    let install = Installation::create(backend, pg, "commands")
        .await
        .map_err(|e| e.to_string())?;
    let world = school();
    import::write(&install.system, futures::stream::iter([world.log.clone()]))
        .await
        .map_err(|e| e.to_string())?;
    let exec = Executor::new(
        install.system.store.clone(),
        Arc::clone(&install.system.vault),
    );
    let warm_up = commands::decisions(&world, 3, sizes.writers, sizes.warm_up);
    commands::run_writers(&exec, world.school_id, warm_up).await;
    let lists = commands::decisions(&world, 1, sizes.writers, sizes.per_writer);
    let t = commands::run_writers(&exec, world.school_id, lists).await;
    let per_sec = t.events_per_sec();
    let (target, goal) = match backend {
        Backend::Sqlite => ("≥ 30k events/s", 30_000.0),
        Backend::Postgres => ("≥ 15k events/s", 15_000.0),
    };
    let mut row = Row::new("1. commands: 32 writers, 1 event each", name)
        .figure("", per_sec, "events/s")
        .figure("p50", t.latencies.percentile_ms(50.0), "ms")
        .figure("p99", t.latencies.percentile_ms(99.0), "ms")
        .target(target, per_sec >= goal);
    let mut note = format!(
        "{} consent decisions after {} per writer untimed, load+decide+seal+append as the API",
        t.commands, sizes.warm_up
    );
    if t.failed > 0 {
        let _ = write!(note, "; {} refused", t.failed);
    }
    row = row.note(note);
    rows.push(row);

    eprintln!(
        "[{name}] projection lag: {} commands/s for {} s",
        sizes.lag_rate, sizes.lag_secs
    );
    let stream = commands::decisions(&world, 2, 1, 5_000).remove(0);
    match lag::measure(
        &install.system,
        world.school_id,
        stream,
        sizes.lag_rate,
        sizes.lag_secs,
    )
    .await
    {
        Ok(lag) => {
            let p99 = lag.lags.percentile_ms(99.0);
            rows.push(
                Row::new("4. projection lag at 1k commands/s", name)
                    .figure("p50", lag.lags.percentile_ms(50.0), "ms")
                    .figure("p99", p99, "ms")
                    .figure("at", lag.rate, "commands/s")
                    .target("p99 < 100 ms", p99 < 100.0)
                    .note(format!(
                        "{} commands; until every read model has the command",
                        lag.commands
                    )),
            );
        }
        Err(e) => {
            rows.push(Row::new("4. projection lag at 1k commands/s", name).pending(e.to_string()));
        }
    }
    Ok(Some(per_sec))
}

async fn import_rebuild_http(
    backend: Backend,
    pg: Option<&PgServer>,
    sizes: Sizes,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    let name = backend.name();
    eprintln!("[{name}] bulk import of {} events", sizes.import);
    let install = Installation::create(backend, pg, "import")
        .await
        .map_err(|e| e.to_string())?;
    // The log is generated (the simulated schools living their years through the deciders) on
    // a thread of its own, a chunk or two ahead of the import; the import's time runs from its
    // first chunk to its last append, so generating shares the cores with it.
    let (chunks, generator) =
        import::generated(Workload::new(WorkloadConfig::school_years(sizes.import)));
    let start = Instant::now();
    let written = match sizes.import_seal {
        ImportSeal::Batched => import::write(&install.system, chunks).await,
        ImportSeal::OneByOne => {
            let mut chunks = std::pin::pin!(chunks);
            let mut written = 0;
            while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
                match import::write_one_by_one(&install.system, chunk).await {
                    Ok(n) => written += n,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(written)
        }
    }
    .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let (workload, generating) = generator
        .join()
        .map_err(|_| "the workload's generator panicked".to_owned())?;
    let per_sec = written as f64 / secs;
    let (target, rate) = match backend {
        Backend::Sqlite => ("≥ 50k events/s", 50_000.0),
        Backend::Postgres => ("≥ 30k events/s", 30_000.0),
    };
    rows.push(
        Row::new("1. bulk import (seal + append, pipelined)", name)
            .figure("", per_sec, "events/s")
            .target(target, per_sec >= rate)
            .note(format!(
                "{written} events of {} school years, generated beside the import ({generating:.1} s)",
                workload.schools()
            )),
    );

    eprintln!("[{name}] full rebuild of every read model (child process)");
    match rebuild::run(install.dir(), install.database_url()).await {
        Ok(r) => {
            let per_sec = r.events as f64 / r.seconds.max(1e-9);
            let rss = mib(r.peak_rss_kib);
            let (target, rate) = match backend {
                Backend::Sqlite => ("≥ 100k events/s, < 256 MiB", 100_000.0),
                Backend::Postgres => ("≥ 60k events/s, < 256 MiB", 60_000.0),
            };
            rows.push(
                Row::new("2. full rebuild of all read models", name)
                    .figure("", per_sec, "events/s")
                    .figure("peak RSS", rss, "MiB")
                    .target(target, per_sec >= rate && rss < 256.0)
                    .note(format!(
                        "{} events, {} read models, {:.1} s",
                        r.events, r.projections, r.seconds
                    )),
            );
        }
        Err(e) => rows.push(Row::new("2. full rebuild of all read models", name).pending(e)),
    }

    eprintln!("[{name}] who-may-see over HTTP");
    rows.push(
        http::measure(
            &install,
            workload.world(),
            sizes.http_secs,
            sizes.http_clients,
        )
        .await,
    );
    Ok(())
}

#[cfg(feature = "compare-cqrs-es")]
async fn cqrs_es_side_by_side(
    pg: &PgServer,
    sizes: Sizes,
    kring: KringPg,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    use kring_domain::child;
    use kring_domain::StreamName;
    use kring_store::{EventStore, ExpectedVersion, Metadata};
    eprintln!("[cqrs-es] command throughput: {} writers", sizes.writers);
    let world = school();
    let url = pg.create("cqrs_es").await.map_err(|e| e.to_string())?;
    let writers = u32::try_from(sizes.writers).map_err(|e| e.to_string())?;
    let cqrs = Arc::new(
        compare::CqrsEs::open(&url, world.school.clone(), writers)
            .await
            .map_err(|e| e.to_string())?,
    );
    let warm_up = commands::decisions(&world, 3, sizes.writers, sizes.warm_up);
    cqrs.run_writers(warm_up).await;
    let lists = commands::decisions(&world, 1, sizes.writers, sizes.per_writer);
    let (ok, failed, elapsed, latencies) = cqrs.run_writers(lists).await;
    let theirs = ok as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut row = Row::new(
        "1. commands: 32 writers, 1 event each",
        "postgres (cqrs-es)",
    )
    .figure("", theirs, "events/s")
    .figure("p50", latencies.percentile_ms(50.0), "ms")
    .figure("p99", latencies.percentile_ms(99.0), "ms");
    row = row.note(format!(
        "cqrs-es 0.5 + postgres-es, same decisions, same domain code{}",
        if failed > 0 {
            format!("; {failed} refused")
        } else {
            String::new()
        }
    ));
    rows.push(row);
    if let Some(ours) = kring.commands_per_sec {
        let ratio = ours / theirs.max(1e-9);
        rows.push(
            Row::new("Kring/cqrs-es: command throughput", "postgres")
                .figure("", ratio, "x")
                .target("≥ 3x", ratio >= 3.0),
        );
    }

    eprintln!(
        "[cqrs-es] loading an aggregate with {} events",
        sizes.history
    );
    let mut history_world = World::with_classes(1, 1, 2);
    let history = compare::history(&mut history_world, sizes.history);
    let child_id = history_world
        .child_ids
        .first()
        .copied()
        .ok_or("no child in the history world")?;
    // Kring: the same events in a child stream of a fresh installation.
    let install = Installation::create(Backend::Postgres, Some(pg), "history")
        .await
        .map_err(|e| e.to_string())?;
    let stream = StreamName::child(child_id);
    for chunk in history.chunks(1000) {
        let mut sealed = Vec::with_capacity(chunk.len());
        for e in chunk {
            let meta = Metadata {
                occurred_at: history_world.now,
                actor: kring_domain::Actor::System,
                correlation_id: uuid::Uuid::now_v7(),
                causation_id: None,
            };
            let event = kring_domain::Event::Child(e.clone());
            sealed.push(
                install
                    .system
                    .vault
                    .seal(&event, meta)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        install
            .system
            .store
            .append(&stream, ExpectedVersion::Any, sealed)
            .await
            .map_err(|e| e.to_string())?;
    }
    // A fresh executor per load: its state cache is cold, so the whole stream is read and
    // folded, as cqrs-es does (a warm executor only reads what came after its cached version;
    // that figure is reported on its own row below).
    let fresh = || {
        Executor::new(
            install.system.store.clone(),
            Arc::clone(&install.system.vault),
        )
    };
    let exec = fresh();
    let mut ours = Vec::new();
    for _ in 0..sizes.loads {
        let exec = fresh();
        let t = Instant::now();
        let loaded = exec
            .load::<child::Child>(&stream)
            .await
            .map_err(commands::show)?;
        ours.push(t.elapsed());
        if loaded.version != Some(history.len() as u64 - 1) {
            return Err(format!(
                "Kring loaded {:?} of {} events",
                loaded.version,
                history.len()
            ));
        }
    }
    exec.load::<child::Child>(&stream)
        .await
        .map_err(commands::show)?;
    let mut warm = Vec::new();
    for _ in 0..sizes.loads {
        let t = Instant::now();
        exec.load::<child::Child>(&stream)
            .await
            .map_err(commands::show)?;
        warm.push(t.elapsed());
    }
    let warm = stats::Latencies::new(warm).percentile_ms(50.0);
    let id = child_id.to_string();
    cqrs.import(&id, &history)
        .await
        .map_err(|e| e.to_string())?;
    let mut theirs = Vec::new();
    for _ in 0..sizes.loads {
        let t = Instant::now();
        cqrs.load(&id).await.map_err(|e| e.to_string())?;
        theirs.push(t.elapsed());
    }
    let ours = stats::Latencies::new(ours).percentile_ms(50.0);
    let theirs = stats::Latencies::new(theirs).percentile_ms(50.0);
    rows.push(
        Row::new(
            format!("load an aggregate of {} events", history.len()),
            "postgres",
        )
        .figure("Kring", ours, "ms")
        .figure("cqrs-es", theirs, "ms")
        .note(format!(
            "median of {} cold loads (Kring warm, state cached: {warm:.2} ms)",
            sizes.loads
        )),
    );
    rows.push(
        Row::new("Kring/cqrs-es: aggregate load speed", "postgres").figure(
            "",
            theirs / ours.max(1e-9),
            "x",
        ),
    );
    Ok(())
}

async fn run(cli: Cli) -> Result<Report, String> {
    let sizes = Sizes::new(cli.quick, cli.events, cli.import_seal);
    let start = Instant::now();
    let load_before = report::load_average();
    let pg = cli.database_url.clone().map(PgServer::new);
    let mut rows = Vec::new();
    for backend in &cli.backends {
        let backend = *backend;
        let pg_here = match backend {
            Backend::Postgres => match &pg {
                Some(pg) => Some(pg),
                None => {
                    rows.push(
                        Row::new("all scenarios", "postgres")
                            .pending("no DATABASE_URL: run scripts/bench, or set it"),
                    );
                    continue;
                }
            },
            Backend::Sqlite => None,
        };
        if cli.parts.contains(&Part::Commands) {
            commands_part(backend, pg_here, sizes, &mut rows).await;
        }
        if cli.parts.contains(&Part::Log) {
            if let Err(e) = import_rebuild_http(backend, pg_here, sizes, &mut rows).await {
                rows.push(Row::new("1. bulk import", backend.name()).pending(e));
            }
        }
    }
    #[cfg(not(feature = "compare-cqrs-es"))]
    if cli.parts.contains(&Part::Commands) {
        rows.push(
            Row::new("cqrs-es side by side", "postgres")
                .pending("built without --features compare-cqrs-es (scripts/bench turns it on)"),
        );
    }
    if let Some(pg) = &pg {
        pg.drop_all().await;
    }
    Ok(Report {
        mode: if cli.quick { "quick" } else { "full" },
        cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        seconds: start.elapsed().as_secs_f64(),
        load: [load_before, report::load_average()],
        rows,
    })
}

/// The server's memory during concurrent large uploads, as a report of one row.
async fn upload_rss(server: Option<PathBuf>, uploads: usize, mib: usize) -> Result<Report, String> {
    let start = Instant::now();
    let load_before = report::load_average();
    let server = match server {
        Some(path) => path,
        None => uploads::sibling_server()?,
    };
    eprintln!(
        "upload-rss: {} × {mib} MiB at once to {}",
        uploads,
        server.display()
    );
    let measured = uploads::measure(&server, uploads, mib * 1024 * 1024).await?;
    Ok(Report {
        mode: "upload-rss",
        cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        seconds: start.elapsed().as_secs_f64(),
        load: [load_before, report::load_average()],
        rows: vec![measured.row()],
    })
}

/// The delivery scenario on each backend (PostgreSQL on a fresh database of `database_url`).
async fn delivery(
    guardians: usize,
    backends: &[Backend],
    database_url: Option<String>,
) -> Result<Report, String> {
    let start = Instant::now();
    let load_before = report::load_average();
    let mut rows = Vec::new();
    for backend in backends {
        let (url, name) = match backend {
            Backend::Sqlite => (None, "sqlite"),
            Backend::Postgres => {
                let Some(server) = &database_url else {
                    rows.push(Row::new("delivery", "postgres").pending("no DATABASE_URL"));
                    continue;
                };
                let pg = PgServer::new(server.clone());
                let url = pg.create("delivery").await.map_err(|e| e.to_string())?;
                (Some(url), "postgres")
            }
        };
        eprintln!("delivery: {name}: a post to {guardians} guardians");
        let measured = kring_bench::delivery::measure(guardians, url).await?;
        rows.push(measured.row(name));
    }
    Ok(Report {
        mode: "delivery",
        cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        seconds: start.elapsed().as_secs_f64(),
        load: [load_before, report::load_average()],
        rows,
    })
}

/// The meetings scenario on each backend (PostgreSQL on a fresh database of `database_url`).
async fn meetings(
    guardians: usize,
    backends: &[Backend],
    database_url: Option<String>,
) -> Result<Report, String> {
    let start = Instant::now();
    let load_before = report::load_average();
    let pg = database_url.map(PgServer::new);
    let mut rows = Vec::new();
    for backend in backends {
        let (url, name) = match (backend, &pg) {
            (Backend::Sqlite, _) => (None, "sqlite"),
            (Backend::Postgres, None) => {
                rows.push(Row::new("meetings", "postgres").pending("no DATABASE_URL"));
                continue;
            }
            (Backend::Postgres, Some(pg)) => (
                Some(pg.create("meetings").await.map_err(|e| e.to_string())?),
                "postgres",
            ),
        };
        eprintln!("meetings: {name}: {guardians} guardians book at once");
        let measured = kring_bench::meetings::measure(guardians, url).await?;
        rows.push(measured.row(name));
    }
    if let Some(pg) = &pg {
        pg.drop_all().await;
    }
    Ok(Report {
        mode: "meetings",
        cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        seconds: start.elapsed().as_secs_f64(),
        load: [load_before, report::load_average()],
        rows,
    })
}

/// Commands and lag on `backend`, then (on PostgreSQL, with the feature) cqrs-es beside them.
async fn commands_part(
    backend: Backend,
    pg_here: Option<&PgServer>,
    sizes: Sizes,
    rows: &mut Vec<Row>,
) {
    #[cfg(feature = "compare-cqrs-es")]
    let mut kring = KringPg::default();
    match commands_and_lag(backend, pg_here, sizes, rows).await {
        #[cfg(feature = "compare-cqrs-es")]
        Ok(per_sec) => {
            if backend == Backend::Postgres {
                kring.commands_per_sec = per_sec;
            }
        }
        #[cfg(not(feature = "compare-cqrs-es"))]
        Ok(_) => {}
        Err(e) => rows.push(Row::new("1. commands", backend.name()).pending(e)),
    }
    #[cfg(feature = "compare-cqrs-es")]
    if let (Backend::Postgres, Some(pg)) = (backend, pg_here) {
        if let Err(e) = cqrs_es_side_by_side(pg, sizes, kring, rows).await {
            rows.push(Row::new("cqrs-es side by side", "postgres").pending(e));
        }
    }
}

/// The soak, printed; a failure when it could not run or a figure was not flat.
fn run_soak(
    runtime: tokio::runtime::Runtime,
    format: Format,
    minutes: u64,
    rate: u32,
    events: Option<u64>,
) -> ExitCode {
    let server = match uploads::sibling_server() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kring-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = soak::SoakOptions {
        minutes,
        rate,
        events: events.unwrap_or(50_000),
        server,
    };
    let measured = runtime.block_on(soak::run(&options));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match measured {
        Ok(soak) => {
            match format {
                Format::Table => print!("{}", soak.table()),
                Format::Json => match serde_json::to_string_pretty(&soak) {
                    Ok(json) => println!("{json}"),
                    Err(e) => eprintln!("kring-bench: {e}"),
                },
            }
            if soak.flat() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("kring-bench soak: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kring-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Subprocess::RebuildChild {
        data_dir,
        database_url,
    }) = cli.child
    {
        return match runtime.block_on(rebuild::child(data_dir, database_url)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kring-bench rebuild-child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let format = cli.format;
    if let Some(minutes) = cli.soak {
        return run_soak(runtime, format, minutes, cli.soak_rate, cli.events);
    }
    let measured = match cli.child {
        Some(Subprocess::UploadRss {
            server,
            uploads,
            mib,
        }) => runtime.block_on(upload_rss(server, uploads, mib)),
        Some(Subprocess::Delivery { guardians }) => {
            runtime.block_on(delivery(guardians, &cli.backends, cli.database_url.clone()))
        }
        Some(Subprocess::Meetings { guardians }) => {
            runtime.block_on(meetings(guardians, &cli.backends, cli.database_url.clone()))
        }
        _ => runtime.block_on(run(cli)),
    };
    match measured {
        Ok(report) => {
            match format {
                Format::Table => print!("{}", report.table()),
                Format::Json => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("kring-bench: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            // Let in-flight database work wind down before the runtime is dropped.
            runtime.shutdown_timeout(Duration::from_secs(1));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kring-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
