//! `tokencache simulate`: the seed scenario on a virtual clock, under three policies.
//!
//! Users sign in to a web app and out of it (or just leave, or come back), the web app
//! calls a web API with the user's hourly-rotating access token, the web API acquires
//! OBO tokens for each incoming token, some long-running OBO jobs, and app tokens. The
//! same traffic ([`workload`]) runs against three policies ([`policy`]) in three key
//! prefixes of one L2 store, and every sample point counts, by scanning the store, the
//! live and orphaned partitions and their bytes ([`measure`]; "orphaned" as judged by
//! [`world`], docs/design.md §12). Prints a table, writes an SVG chart, and ends with
//! one machine-readable line:
//! `orphaned: msidweb-default=<n> msidweb-sliding=<n> tokencache=<n>`.
//!
//! Time: on the embedded and memory stores a [`ManualClock`] drives the libraries *and*
//! the store's expiry, so a run is exact and deterministic for a seed. On Redis (which
//! expires by its own clock) the run is paced (see [`paced`]).
//!
//! Output: on a terminal, a progress bar (stderr) and the table at the end; piped,
//! each sample's line is printed as soon as it is measured.
//!
//! What it writes it removes at the end (unless `--keep`), also after Ctrl-C or a
//! closed stdout, and every key it writes ends by itself soon after the run (the
//! horizon plus [`crate::capped::MARGIN`]: in real time on Redis, in virtual time on an
//! embedded file), so that a killed run leaves nothing for long. The default store is
//! a temporary folder (in RAM when `/dev/shm` exists) named after the process, removed
//! at the end; one left by a killed run is removed by the next run.

mod chart;
mod measure;
mod paced;
mod policy;
mod workload;
mod world;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokencache::clock::{Clock, ManualClock, SharedClock};
use tokencache::store::{EmbeddedOptions, EmbeddedStore, MemoryStore, SharedStore, StoreUrl};

use crate::capped::CappedStore;
use measure::Tally;
use paced::{Lag, PacedClock, PacedStore};
use policy::{MsIdWeb, Policy, TcPolicy};
use workload::{EventKind, Shape};
use world::{KeyKind, World};

/// Arguments of `simulate`.
#[derive(Args, Debug)]
pub(crate) struct SimulateArgs {
    /// The L2 store. Default: an embedded (redb) file in a fresh temporary folder (in
    /// RAM when /dev/shm exists), removed afterwards. Also `redb:///path/file.redb`,
    /// `memory://`, and `redis://…` / `redis+cluster://…`, which run paced (see --pace).
    #[arg(long, env = "TOKENCACHE_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Users signing in for the first time per 24 virtual hours.
    #[arg(long, default_value_t = 300, allow_negative_numbers = true, value_parser = crate::args::int32::<1, 1_000_000>)]
    users: u32,
    /// The horizon, in virtual hours (1 to 8,760).
    #[arg(long, default_value_t = 72, allow_negative_numbers = true, value_parser = crate::args::int32::<1, 8_760>)]
    hours: u32,
    /// The seed of the traffic: the same seed gives the same run (0 to 2^64 - 1).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = crate::args::int::<0, { u64::MAX }>)]
    seed: u64,
    /// How long a refresh token stays usable after its last use, in hours (Entra: 90 days;
    /// short here so that the run sees it pass).
    #[arg(long, default_value_t = 24, allow_negative_numbers = true, value_parser = crate::args::int::<1, 8_760>)]
    refresh_token_hours: u64,
    /// The sliding window of the `msidweb-sliding` policy, in minutes.
    #[arg(long, default_value_t = 90, allow_negative_numbers = true, value_parser = crate::args::int::<1, 525_600>)]
    sliding_minutes: u64,
    /// Shortest lifetime of access tokens and incoming assertions, in minutes; each lives
    /// 1 to 1.5 times this (Entra: 60-90 min), so they rotate about hourly.
    #[arg(long, default_value_t = 60, allow_negative_numbers = true, value_parser = crate::args::int::<10, 1_440>)]
    token_minutes: u64,
    /// Minutes of virtual time between two counts of L2.
    #[arg(long, default_value_t = 60, allow_negative_numbers = true, value_parser = crate::args::int::<1, 10_080>)]
    sample_minutes: u64,
    /// Share of visits that end with a sign-out (the others just leave).
    #[arg(long, default_value_t = 0.35, allow_negative_numbers = true, value_parser = crate::args::share)]
    sign_out_share: f64,
    /// Share of visits after which the user comes back (after 30 min to 36 h).
    #[arg(long, default_value_t = 0.6, allow_negative_numbers = true, value_parser = crate::args::share)]
    return_share: f64,
    /// Share of visits that start a long-running OBO job (1 to 8 h).
    #[arg(long, default_value_t = 0.15, allow_negative_numbers = true, value_parser = crate::args::share)]
    session_share: f64,
    /// Where to write the SVG chart of L2 keys over time.
    #[arg(long, default_value = "simulate.svg")]
    chart: PathBuf,
    /// On Redis only: virtual seconds per real second (the run takes hours × 3600 / pace s;
    /// 1 to 100,000).
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true, value_parser = crate::args::int::<1, 100_000>)]
    pace: u64,
    /// Leave the simulated keys in the store until they expire (at most 10 minutes
    /// after the run on Redis; default: removed at the end).
    #[arg(long)]
    keep: bool,
}

/// The virtual start: 2026-01-01T00:00:00Z.
const START_SECS: i64 = 1_767_225_600;

/// The policies, in report order: name, key prefix, chart colour.
const POLICIES: [(&str, &str, &str); 3] = [
    ("msidweb-default", "tcsim:msidweb-default:", "#d62728"),
    ("msidweb-sliding", "tcsim:msidweb-sliding:", "#ff7f0e"),
    ("tokencache", "tcsim:tokencache:", "#1f77b4"),
];

/// How time moves.
enum Time {
    /// Set by the simulation (embedded, memory): exact and repeatable.
    Manual(ManualClock),
    /// Runs by itself, faster than real time (Redis).
    Paced(Arc<PacedClock>),
}

impl Time {
    fn shared(&self) -> SharedClock {
        match self {
            Time::Manual(c) => Arc::new(c.clone()),
            Time::Paced(c) => c.clone(),
        }
    }

    fn now_millis(&self) -> u64 {
        match self {
            Time::Manual(c) => c.now_millis(),
            Time::Paced(c) => c.now_millis(),
        }
    }

    /// Moves (or waits) until virtual `ms`.
    async fn reach(&self, ms: u64) {
        match self {
            Time::Manual(c) => {
                if c.now_millis() < ms {
                    c.set_millis(ms);
                }
            }
            Time::Paced(c) => {
                let wait = c.real_until(ms);
                if !wait.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = crate::cancel::wait() => {}
                    }
                }
            }
        }
    }
}

/// The opened store and what goes with it.
struct Opened {
    store: SharedStore,
    time: Time,
    /// The embedded store, to sweep expired entries at each sample (its sweeper runs on
    /// real time, so it is off here).
    embedded: Option<Arc<EmbeddedStore>>,
    /// A temporary folder to delete at the end.
    _tmp: Option<tempfile::TempDir>,
    label: String,
}

/// The prefix of the default store's temporary folders: `tokencache-simulate-<pid>-`.
const TMP_PREFIX: &str = "tokencache-simulate-";

/// Removes the temporary folders that runs killed before they could clean up left in
/// `parent` (their process is gone). Linux only (it asks `/proc`).
fn remove_stale_folders(parent: &std::path::Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(TMP_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The virtual instant (ms) by which everything the run writes ends: the horizon
/// plus the margin, in virtual time.
fn virtual_deadline_ms(args: &SimulateArgs) -> u64 {
    (START_SECS as u64 + u64::from(args.hours) * 3600) * 1000
        + crate::capped::MARGIN.as_millis() as u64
}

async fn open(args: &SimulateArgs) -> Result<Opened, String> {
    let start_ms = START_SECS as u64 * 1000;
    let (path, tmp) = match &args.store {
        None => {
            let shm = std::path::Path::new("/dev/shm");
            let parent = if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            };
            remove_stale_folders(&parent);
            let builder = tempfile::Builder::new()
                .prefix(&format!("{TMP_PREFIX}{}-", std::process::id()))
                .tempdir_in(parent);
            let tmp = builder.map_err(|e| format!("cannot make a temporary folder: {e}"))?;
            (Some(tmp.path().join("simulate.redb")), Some(tmp))
        }
        Some(url) => {
            crate::stores::check_url(url)?;
            match StoreUrl::parse(url).map_err(|e| e.to_string())? {
                StoreUrl::Embedded { path } => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                    }
                    (Some(path), None)
                }
                StoreUrl::Memory => {
                    let clock = ManualClock::new(start_ms);
                    let store: SharedStore =
                        Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
                    return Ok(Opened {
                        store,
                        time: Time::Manual(clock),
                        embedded: None,
                        _tmp: None,
                        label: "memory (virtual clock)".into(),
                    });
                }
                redis @ StoreUrl::Redis { .. } => {
                    let factor = args.pace.max(1) as f64;
                    let inner =
                        crate::stores::open(Some(url), crate::stores::Create::IfMissing).await?;
                    // Real time on Redis: the run lasts hours × 3600 / pace seconds.
                    let run = Duration::from_secs_f64(f64::from(args.hours) * 3600.0 / factor);
                    let capped: SharedStore = Arc::new(CappedStore::new(inner, run));
                    let store: SharedStore = Arc::new(PacedStore::new(capped, factor));
                    return Ok(Opened {
                        store,
                        time: Time::Paced(Arc::new(PacedClock::new(start_ms, factor))),
                        embedded: None,
                        _tmp: None,
                        label: format!(
                            "{redis} (paced: {} virtual s per real s; Redis expires the keys)",
                            args.pace.max(1)
                        ),
                    });
                }
            }
        }
    };
    let path = path.ok_or("no store path")?;
    let clock = ManualClock::new(start_ms);
    let embedded = Arc::new(
        EmbeddedStore::open_with(
            &path,
            EmbeddedOptions {
                clock: Arc::new(clock.clone()),
                sweep_interval: None,
            },
        )
        .await
        .map_err(|e| e.to_string())?,
    );
    let label = if tmp.is_some() {
        "embedded redb (temporary file, virtual clock)".to_string()
    } else {
        format!("embedded redb {} (virtual clock)", path.display())
    };
    // Virtual time on the file: what the run writes ends by the virtual horizon plus
    // the margin (long past in real time once the run is over).
    let store: SharedStore = Arc::new(CappedStore::until(
        embedded.clone(),
        Arc::new(clock.clone()),
        virtual_deadline_ms(args),
    ));
    Ok(Opened {
        store,
        time: Time::Manual(clock),
        embedded: Some(embedded),
        _tmp: tmp,
        label,
    })
}

/// One sample: the virtual hour and each policy's tally.
struct Sample {
    hour: f64,
    tallies: Vec<Tally>,
}

pub(crate) fn run(args: SimulateArgs) -> ExitCode {
    // Numbers are range-checked by clap (crate::args); the chart is checked here so that
    // a long run does not end in "cannot write".
    if let Err(e) = check_writable(&args.chart) {
        return crate::fail(e);
    }
    crate::cancel::install();
    crate::block_on(crate::Runtime::MultiThread, simulate(args))
}

/// Fails when `path` cannot be written (a folder, a missing or read-only folder). Leaves
/// an existing file as it is and no new file behind.
fn check_writable(path: &std::path::Path) -> Result<(), String> {
    let shown = path.display();
    if path.is_dir() {
        return Err(format!("--chart {shown} is a folder; name a file"));
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("--chart {shown} cannot be written: {e}"))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The width of a policy's column in the table.
const COLUMN: usize = 22;

/// The table's header: the hour, then each policy.
fn table_header() {
    outln!("L2 over time: all keys / orphaned partitions");
    out!("{:>6}", "hour");
    for (name, _, _) in POLICIES {
        out!("  {name:>COLUMN$}");
    }
    outln!();
}

/// One line of the table.
fn table_row(s: &Sample) {
    out!("{:>6}", format!("{:.0}", s.hour));
    for t in &s.tallies {
        out!(
            "  {:>COLUMN$}",
            format!("{} / {}", t.keys, t.orphaned_total())
        );
    }
    outln!();
}

async fn simulate(args: SimulateArgs) -> Result<(), String> {
    let began = Instant::now();
    let opened = open(&args).await?;
    let store = opened.store.clone();
    // What a second Ctrl-C would leave: keys in a store that outlives the process.
    let lasting = !matches!(
        args.store.as_deref().map(StoreUrl::parse),
        None | Some(Ok(StoreUrl::Memory))
    );
    if lasting {
        crate::cancel::leaving(Some(format!(
            "the simulated keys under \"tcsim:\" in {} (they end at most {} min after the run; `tokencache purge --prefix tcsim: --force` removes them now)",
            store.endpoint(),
            crate::capped::MARGIN.as_secs() / 60
        )));
    }
    let result = run_policies(&args, &opened, began).await;
    // Whatever happened (an error, Ctrl-C, a closed stdout), the keys go unless kept.
    let cleared = if args.keep {
        Ok(())
    } else {
        let mut cleared = Ok(());
        for (_, prefix, _) in POLICIES {
            if let Err(e) = measure::clear(&store, prefix).await {
                cleared = Err(format!("cannot remove the simulated keys: {e}"));
            }
        }
        cleared
    };
    crate::cancel::leaving(None);
    let finished = result?;
    cleared?;
    if !finished && crate::cancel::signalled() {
        errln!(
            "interrupted: the run stopped{}",
            if args.keep {
                "; its keys are kept (--keep)"
            } else {
                "; its keys are removed"
            }
        );
    }
    Ok(())
}

/// Runs the traffic under the three policies and reports; `false` when it was asked
/// to stop (the report is then left out).
async fn run_policies(
    args: &SimulateArgs,
    opened: &Opened,
    began: Instant,
) -> Result<bool, String> {
    let store = opened.store.clone();
    let clock = opened.time.shared();
    for (_, prefix, _) in POLICIES {
        measure::clear(&store, prefix).await?;
    }
    let shape = Shape {
        users_per_day: args.users,
        hours: args.hours,
        sign_out_share: args.sign_out_share,
        return_share: args.return_share,
        session_share: args.session_share,
        seed: args.seed,
    };
    let traffic = workload::generate(&shape, args.sample_minutes * 60);
    let rt_lifetime = args.refresh_token_hours * 3600;
    let lifetime = args.token_minutes * 60;
    let mut world = World::new(
        traffic.users.clone(),
        traffic.jobs.clone(),
        rt_lifetime as i64,
        lifetime as i64,
        args.seed,
    );
    let sliding = Duration::from_secs(args.sliding_minutes * 60);
    let mut policies = vec![
        Policy::MsIdWeb(MsIdWeb::new(
            store.clone(),
            clock.clone(),
            POLICIES[0].1,
            None,
        )),
        Policy::MsIdWeb(MsIdWeb::new(
            store.clone(),
            clock.clone(),
            POLICIES[1].1,
            Some(sliding),
        )),
        Policy::TokenCache(Box::new(
            TcPolicy::new(
                store.clone(),
                clock.clone(),
                POLICIES[2].1,
                Duration::from_secs(rt_lifetime),
            )
            .await?,
        )),
    ];

    outln!(
        "tokencache simulate: {} users ({} new per day) over {} virtual hours, seed {}",
        traffic.users.len(),
        args.users,
        args.hours,
        args.seed
    );
    outln!(
        "  refresh tokens live {} h after their last use; access tokens and incoming assertions {}-{} min; sliding window {} min",
        args.refresh_token_hours,
        args.token_minutes,
        args.token_minutes * 3 / 2,
        args.sliding_minutes
    );
    outln!("  store: {}", opened.label);
    outln!();
    // Piped: every sample's line as it is measured. On a terminal: a bar, and the
    // table (a dozen lines of it) at the end.
    let streaming = !std::io::stdout().is_terminal();
    if streaming {
        table_header();
    }
    let bar = ProgressBar::with_draw_target(
        Some(traffic.events.len() as u64),
        ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} simulate [{bar:40}] {pos}/{len} events, {msg} ({elapsed})",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    let mut samples: Vec<Sample> = Vec::new();
    let (mut sign_ins, mut jobs_started) = (0u64, 0u64);
    let sample_ms = args.sample_minutes * 60_000;
    let mut lag = Lag::new(sample_ms);
    let mut longest_sample = Duration::ZERO;
    for (i, event) in traffic.events.iter().enumerate() {
        if crate::cancel::requested() {
            bar.finish_and_clear();
            return Ok(false);
        }
        let at_ms = (START_SECS as u64 + event.at) * 1000;
        opened.time.reach(at_ms).await;
        let ran_ms = opened.time.now_millis();
        lag.observe(at_ms, ran_ms);
        let now = (ran_ms / 1000) as i64;
        let steps = match event.kind {
            EventKind::Call { user } => world.call(user, now)?,
            EventKind::EndVisit { user, sign_out } => world.end_visit(user, sign_out, now),
            EventKind::JobTick { job } => world.job_tick(job, now)?,
            EventKind::Sample => {
                if let Some(e) = &opened.embedded {
                    e.sweep().await.map_err(|e| e.to_string())?;
                }
                let now_ms = opened.time.now_millis();
                let counting = Instant::now();
                let mut tallies = Vec::with_capacity(policies.len());
                for (_, prefix, _) in POLICIES {
                    tallies.push(measure::tally(&store, prefix, &world, now_ms).await?);
                }
                longest_sample = longest_sample.max(counting.elapsed());
                let sample = Sample {
                    hour: event.at as f64 / 3600.0,
                    tallies,
                };
                if streaming {
                    table_row(&sample);
                }
                samples.push(sample);
                bar.set_message(format!("hour {}", event.at / 3600));
                Vec::new()
            }
        };
        for step in &steps {
            match step {
                world::Step::SignIn { .. } => sign_ins += 1,
                world::Step::JobStart { .. } => jobs_started += 1,
                _ => {}
            }
            for p in policies.iter_mut() {
                p.apply(step, now).await?;
            }
        }
        if i % 256 == 0 {
            bar.set_position(i as u64);
        }
    }
    bar.finish_and_clear();
    if crate::cancel::requested() {
        return Ok(false);
    }

    let last = samples.last().ok_or("no sample was taken")?;
    let unknown: u64 = last.tallies.iter().map(|t| t.unknown).sum();
    let l2_errors: u64 = policies.iter().map(Policy::l2_errors).sum();

    // --- report ---
    if !streaming {
        table_header();
        let every = (samples.len() / 12).max(1);
        for (k, s) in samples.iter().enumerate() {
            if k % every == 0 || k + 1 == samples.len() {
                table_row(s);
            }
        }
    }
    outln!();
    outln!(
        "  traffic: {} visits, {} sign-ins, {} sign-outs, {} web API calls, {} long-running OBO jobs",
        traffic.visits, sign_ins, traffic.sign_outs, traffic.calls, jobs_started
    );
    outln!();
    outln!("At the end (hour {}):", args.hours);
    outln!(
        "{:<16} {:>6} {:>6} {:>17} {:>9} {:>17} {:>10} {:>10} {:>8} {:>9} {:>10}",
        "policy",
        "keys",
        "live",
        "(u/obo/sess/app)",
        "orphaned",
        "(u/obo/sess/app)",
        "live KB",
        "orphan KB",
        "tc keys",
        "lost RTs",
        "extra reqs"
    );
    for ((name, _, _), (t, p)) in POLICIES.iter().zip(last.tallies.iter().zip(&policies)) {
        let split = |v: &[u64; 4]| {
            KeyKind::ALL
                .iter()
                .map(|k| v[k.index()].to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        let losses = p.losses();
        outln!(
            "{:<16} {:>6} {:>6} {:>17} {:>9} {:>17} {:>10.1} {:>10.1} {:>8} {:>9} {:>10}",
            name,
            t.keys,
            t.live_total(),
            split(&t.live),
            t.orphaned_total(),
            split(&t.orphaned),
            t.live_bytes as f64 / 1024.0,
            t.orphaned_bytes as f64 / 1024.0,
            t.own_keys,
            losses.lost_refresh_tokens,
            losses.extra_token_requests
        );
    }
    outln!();
    outln!("  orphaned: stored but never usable again (OBO: incoming assertion expired; user and");
    outln!("  long-running OBO: refresh token past its lifetime, or the user signed out).");
    outln!(
        "  lost RTs: refresh tokens still valid but gone from L2 (the user had to sign in again)."
    );
    outln!("  extra reqs: access tokens still valid but gone from L2 (one more token request).");
    outln!("  tc keys: tokencache's link sets and revocation stamps. Bytes are key + value.");
    if unknown > 0 {
        outln!("  warning: {unknown} keys in L2 were not produced by this run");
    }
    if l2_errors > 0 {
        outln!("  warning: {l2_errors} L2 errors during the run (the counts may be off)");
    }
    if let Time::Paced(_) = opened.time {
        let pace = args.pace as f64;
        let real = |ms: u64| ms as f64 / pace / 1000.0;
        outln!(
            "  pacing: events ran at most {:.1} virtual min ({:.2} real s) behind schedule, {:.1} virtual s on average; counting L2 took at most {:.0} real ms per sample",
            lag.max_ms as f64 / 60_000.0,
            real(lag.max_ms),
            lag.mean_ms() as f64 / 1000.0,
            longest_sample.as_secs_f64() * 1000.0
        );
        if lag.fell_behind() {
            outln!(
                "  warning: the run fell behind virtual time: {} of {} events ran more than one sample interval ({} min) late, while Redis expired keys on time; the counts are not comparable with the embedded run (use a lower --pace)",
                lag.late, lag.events, args.sample_minutes
            );
        }
    }

    let series: Vec<chart::Series<'_>> = POLICIES
        .iter()
        .enumerate()
        .map(|(i, (name, _, color))| chart::Series {
            name,
            color,
            keys: samples
                .iter()
                .map(|s| (s.hour, s.tallies[i].keys as f64))
                .collect(),
            orphaned: samples
                .iter()
                .map(|s| (s.hour, s.tallies[i].orphaned_total() as f64))
                .collect(),
        })
        .collect();
    let doc = chart::svg(
        "L2 keys over time: Microsoft.Identity.Web's policies vs tokencache",
        &format!(
            "{} users ({}/day), {} h, seed {}; refresh tokens {} h, sliding window {} min; solid: all keys, dashed: orphaned",
            traffic.users.len(),
            args.users,
            args.hours,
            args.seed,
            args.refresh_token_hours,
            args.sliding_minutes
        ),
        f64::from(args.hours),
        &series,
    );
    std::fs::write(&args.chart, doc)
        .map_err(|e| format!("cannot write {}: {e}", args.chart.display()))?;
    outln!("chart: {}", args.chart.display());
    outln!("elapsed: {:.1} s", began.elapsed().as_secs_f64());
    let line = POLICIES
        .iter()
        .zip(&last.tallies)
        .map(|((name, _, _), t)| format!("{name}={}", t.orphaned_total()))
        .collect::<Vec<_>>()
        .join(" ");
    outln!("orphaned: {line}");
    Ok(true)
}
