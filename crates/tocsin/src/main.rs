//! `tocsin`: the command line. Wiring only: the work is in the library crates.
//!
//! Exit codes (documented in the README):
//! - 0: success (dead-lettered events do not change it; they are reported);
//! - 1: a runtime failure (unreadable input, unwritable output, ...);
//! - 2: bad usage (unknown flag, missing value);
//! - 3: the rule set has errors and `--strict` was given (or `rules check` found errors).

mod author;
mod calibrate;
mod config;
mod demo;
mod feeds;
mod gen;
mod hunt;
mod input;
mod load;
mod logging;
mod metrics;
mod pipeline;
mod reload;
mod report;
mod worker;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};

use tocsin_correlate::{Correlator, CorrelatorConfig};

use crate::load::RuleSources;
use crate::pipeline::{DeadLetterSink, Pipeline};

#[derive(Parser)]
#[command(
    name = "tocsin",
    version,
    about = "Streaming security-event correlation: Sigma rules and indicators in, cross-sector early warnings out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded pipeline: JSON lines in (files, .gz, stdin), early warnings out.
    Run(RunArgs),
    /// Generate a realistic workload as JSON lines (background activity plus the exercise campaign).
    Gen(GenArgs),
    /// Run the NIGHTGLASS exercise campaign end to end and print the warnings it raises.
    Demo(DemoArgs),
    /// Rule authoring: check rule sets, run rule test cases.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Match events against rules and print detections, or explain why rules matched.
    Match(MatchArgs),
    /// SQL over an archive written by `run --archive`: tables `events`, `detections`,
    /// `warnings`, partitioned by `date` (and `sector`).
    Query(QueryArgs),
    /// Run new indicators or rules over an archive's events (the live path's matcher and
    /// correlator): which detections, incident candidates and warnings they would have given.
    Hunt(hunt::HuntArgs),
    /// A situational-awareness report over an archive (Markdown or HTML with charts):
    /// warnings and candidates by sector, member state and taxonomy over time, top
    /// indicators, per-incident timelines; within the audience's TLP ceiling.
    Report(report::ReportArgs),
    /// Kafka workers (consumer groups; at-least-once delivery).
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// The workers' configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file (with the TOCSIN_… environment applied); exit 2 if invalid.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print the configuration a worker would run with, secrets redacted.
    Print {
        /// The TOML file (default: none, TOCSIN_CONFIG if set).
        #[arg(env = "TOCSIN_CONFIG")]
        file: Option<PathBuf>,
        /// Apply the TOCSIN_… environment variables (without it: the file over the defaults).
        #[arg(long)]
        effective: bool,
    },
}

#[derive(Subcommand)]
enum WorkerCommand {
    /// Consume event topics, match, produce detections keyed by correlation key; dead-letter
    /// what cannot be decoded.
    Match(worker::MatchWorkerArgs),
    /// Consume detections, correlate them per partition (state in the changelog), produce
    /// early warnings per audience and recipient.
    Correlate(worker::CorrelateWorkerArgs),
    /// Both workers in one process.
    All(worker::AllWorkerArgs),
    /// Consume the event topics, the detections and the technical warnings into the
    /// Parquet archive (for `query`, `hunt`, `report`); offsets committed once written.
    Archive(worker::ArchiveWorkerArgs),
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create the event, detection, changelog, warning and dead-letter topics (existing
    /// topics are left as they are).
    Create(worker::TopicsCreateArgs),
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load rules and report every error and warning with file:line:column, rule id and
    /// title. Exit code 3 when there are errors.
    Check {
        /// Rule files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Field-mapping profile (default: sysmon, else the first loaded).
        #[arg(long)]
        profile: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: author::Format,
    },
    /// Observe how often each literal of the rules occurs in sample events, and write the
    /// table for `--frequencies` (and the workers' `rules.frequencies`): prefilters
    /// calibrated from the first event, in every replica.
    Calibrate(calibrate::CalibrateArgs),
    /// Run the rule test cases (`*.tests.yml`, see rules/README.md) found under the paths
    /// against the rules loaded from them. Exit code 1 when a case fails.
    Test {
        /// Rule files or directories (with their test files).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Field-mapping profile.
        #[arg(long)]
        profile: Option<String>,
    },
}

#[derive(Args)]
struct MatchArgs {
    #[command(flatten)]
    rules: RuleArgs,
    /// Input files (JSON lines, optionally gzip) or `-` for stdin.
    #[arg(long = "input", value_name = "FILE|-", default_value = "-")]
    input: Vec<String>,
    /// For each detection: which selection, field, modifiers and value matched, and how the
    /// condition evaluated.
    #[arg(long)]
    explain: bool,
}

#[derive(Args)]
struct QueryArgs {
    /// The archive directory.
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: QueryFormat,
    /// One SQL statement (DataFusion's dialect), e.g. "SELECT sector, count(*) FROM events
    /// GROUP BY sector".
    sql: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QueryFormat {
    Table,
    Csv,
    Json,
}

/// Open an archive for reading, and say which of its files are left out as unreadable.
pub(crate) fn open_archive(dir: &std::path::Path) -> Result<tocsin_archive::query::Archive> {
    let archive = tocsin_archive::query::Archive::open(dir)?;
    for skipped in archive.skipped() {
        logging::warn(&format!(
            "tocsin: skipped unreadable Parquet file {}: {}",
            skipped.path.display(),
            skipped.reason
        ));
    }
    Ok(archive)
}

fn query(a: QueryArgs) -> Result<ExitCode> {
    use tocsin_archive::query::{render, OutputFormat};
    let archive = open_archive(&a.archive)?;
    let batches = match archive.sql(&a.sql) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tocsin: query failed: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let format = match a.format {
        QueryFormat::Table => OutputFormat::Table,
        QueryFormat::Csv => OutputFormat::Csv,
        QueryFormat::Json => OutputFormat::Json,
    };
    std::io::stdout().write_all(&render(&batches, format)?)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Clone)]
struct RuleArgs {
    /// Rules directory or files (Sigma rules, profiles/, iocs/, escalation.yaml). Repeatable.
    #[arg(long = "rules", value_name = "DIR")]
    rules: Vec<PathBuf>,
    /// Field-mapping profile to use (by name; default: sysmon, else the first loaded).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Treat any rule error as fatal (exit code 3).
    #[arg(long)]
    strict: bool,
    /// Indicator feeds: files (plain lists, CSV, MISP event JSON, STIX 2.1 bundles) and MISP
    /// feed directories. Repeatable; added to the feeds in the rules' iocs/ folder.
    #[arg(long = "iocs", value_name = "PATH", num_args = 1..)]
    iocs: Vec<PathBuf>,
    /// Force the format of the feeds instead of detecting it.
    #[arg(long = "iocs-format", value_enum, value_name = "FORMAT")]
    iocs_format: Option<feeds::FeedFormat>,
    /// Choose each rule's prefilter by the literal frequencies in FILE (written by `tocsin
    /// rules calibrate`) instead of guessing from the rules: calibrated from the first
    /// event, kept by reloads, and read again by the next reload when the file changes
    /// (with `--watch`, a change triggers one). Matches are the same either way.
    #[arg(long, value_name = "FILE")]
    frequencies: Option<PathBuf>,
}

impl RuleArgs {
    fn spec(&self) -> reload::RuleSpec {
        reload::RuleSpec {
            rules: self.rules.clone(),
            iocs: self.iocs.clone(),
            iocs_format: self.iocs_format,
            profile: self.profile.clone(),
            frequencies: self.frequencies.clone(),
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    rules: RuleArgs,
    /// Input files (JSON lines, optionally gzip-compressed) or `-` for stdin. Repeatable.
    #[arg(long = "input", value_name = "FILE|-", default_value = "-")]
    input: Vec<String>,
    /// Where early warnings go (JSON lines); `-` is stdout.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    output: String,
    /// Also write every detection (JSON lines) here.
    #[arg(long, value_name = "FILE")]
    detections: Option<PathBuf>,
    /// Archive every event, detection and warning version as Parquet in DIR (date and
    /// sector partitions, zstd), for `tocsin query`.
    #[arg(long, value_name = "DIR")]
    archive: Option<PathBuf>,
    /// Remove archive date partitions older than this many days before the newest event.
    #[arg(long, value_name = "DAYS", requires = "archive")]
    archive_retention_days: Option<u32>,
    /// Write undecodable events here (JSON lines with source, line, reason, payload).
    /// Without it, their count and first reasons go to stderr.
    #[arg(long = "dead-letter", value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Largest event accepted, in bytes; longer lines are dead-lettered.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_event_bytes: usize,
    /// Mark every warning as exercise traffic.
    #[arg(long)]
    exercise: bool,
    /// Which rendering --output carries: technical (CSIRTs: indicators), operational (impact
    /// by sector and member state) or strategic (a situation summary).
    #[arg(long, value_enum, default_value = "technical")]
    audience: AudienceArg,
    /// TLP ceiling of --output: nothing above it is written (default: AMBER for technical,
    /// GREEN otherwise; CLEAR with strategic gives the public summary).
    #[arg(long = "tlp-ceiling", value_name = "TLP")]
    tlp_ceiling: Option<tocsin_core::Tlp>,
    /// Format of --output.
    #[arg(long = "warning-format", value_enum, default_value = "json")]
    warning_format: pipeline::WarningFormat,
    /// Write each recipient's warnings (rules/recipients.yaml) to DIR/RECIPIENT.jsonl.
    #[arg(long = "recipients-out", value_name = "DIR")]
    recipients_out: Option<PathBuf>,
    /// Reload rules and feeds when their files change (checked every --watch-interval
    /// seconds). SIGHUP always reloads. The old set serves until the new one is ready.
    #[arg(long)]
    watch: bool,
    /// Serve Prometheus metrics on /metrics, and /healthz and /readyz, at ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Seconds between two checks of the rule and feed files with --watch.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    watch_interval: f64,
    /// Choose each rule's prefilter by how often its literals occur in the first EVENTS
    /// events: they are copied aside, the rules compiled again with every literal counted
    /// over them in a thread of their own while the events go on, and the new set swapped
    /// in between two events once ready (later reloads keep the frequencies). Matches are
    /// the same; fewer rules are verified for nothing (SigmaHQ over real Windows events:
    /// 0.8 → 0.5 per event, against the guess from the rules alone).
    /// 0 turns it off; at most 1,000,000 (the sample is held in memory).
    #[arg(long, value_name = "EVENTS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    calibrate: u32,
    /// Print nothing on stderr but errors.
    #[arg(long, short)]
    quiet: bool,
}

/// `--audience`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AudienceArg {
    Technical,
    Operational,
    Strategic,
}

impl From<AudienceArg> for tocsin_core::Audience {
    fn from(a: AudienceArg) -> Self {
        match a {
            AudienceArg::Technical => tocsin_core::Audience::Technical,
            AudienceArg::Operational => tocsin_core::Audience::Operational,
            AudienceArg::Strategic => tocsin_core::Audience::Strategic,
        }
    }
}

#[derive(Args)]
struct GenArgs {
    /// Number of background events.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Random seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file; `-` is stdout.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    output: String,
    /// Leave the exercise campaign out (background only); the same as `--campaigns 0`.
    #[arg(long, conflicts_with_all = ["campaigns", "campaign_rate"])]
    no_campaign: bool,
    /// Campaign waves (at most 2,000), starting evenly over the workload's eight hours;
    /// each lasts about four. Each wave hits six organisations (the ransomware stage four
    /// of them), the next six in turn; the first wave uses the published sample
    /// infrastructure, later waves domains and addresses of their own.
    #[arg(long, default_value_t = 1, value_name = "N")]
    campaigns: u64,
    /// Campaign waves per million background events, instead of `--campaigns` (at least
    /// one wave when the rate is above zero; at most 2,000).
    #[arg(long, value_name = "PER_MILLION", conflicts_with = "campaigns")]
    campaign_rate: Option<f64>,
    /// Number of organisations. The first thirty are named; beyond them, or when a named
    /// one's sector or member state is not among those chosen, numbered ones take turns
    /// over the sectors and member states.
    #[arg(long, default_value_t = 30)]
    orgs: usize,
    /// Hosts per organisation (the first six are servers).
    #[arg(long, default_value_t = 60)]
    hosts_per_org: u64,
    /// Number of NIS2 sectors the organisations are spread over (1 to 18).
    #[arg(long, default_value_t = 7)]
    sectors: usize,
    /// Number of EU member states the organisations are spread over (1 to 27).
    #[arg(long, default_value_t = 13)]
    member_states: usize,
    /// Event shape: flat Sysmon names (read with the `sysmon` profile) or nested ECS as
    /// Winlogbeat writes it (the `ecs` profile). The same seed gives the same activity.
    #[arg(long, value_enum, default_value_t = gen::Shape::Sysmon)]
    shape: gen::Shape,
}

#[derive(Args)]
struct DemoArgs {
    /// Random seed for the background workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of background events.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Write the warnings (JSON lines, every version) here.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Rules to use instead of the ones built into the binary.
    #[arg(long = "rules", value_name = "DIR")]
    rules: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run(a),
        Command::Gen(a) => gen_cmd(a),
        Command::Demo(a) => demo::demo(a.seed, a.events, a.output, &a.rules),
        Command::Rules(RulesCommand::Check {
            paths,
            profile,
            format,
        }) => author::check(&paths, profile.as_deref(), format),
        Command::Rules(RulesCommand::Calibrate(a)) => calibrate::calibrate(a),
        Command::Rules(RulesCommand::Test { paths, profile }) => {
            author::test(&paths, profile.as_deref())
        }
        Command::Query(a) => query(a),
        Command::Hunt(a) => hunt::hunt(a),
        Command::Report(a) => report::report(a),
        Command::Match(a) => match prepare_rules(&a.rules, true) {
            Ok(Ok((_, compiled))) => author::match_events(&compiled, &a.input, a.explain),
            Ok(Err(code)) => Ok(code),
            Err(e) => Err(e),
        },
        Command::Worker(WorkerCommand::Match(a)) => worker::match_worker(a),
        Command::Worker(WorkerCommand::Correlate(a)) => worker::correlate_worker(a),
        Command::Worker(WorkerCommand::All(a)) => worker::all_worker(a),
        Command::Worker(WorkerCommand::Archive(a)) => worker::archive_worker(a),
        Command::Config(ConfigCommand::Check { file }) => {
            match config::Config::load_checked(Some(&file), &config::process_env()) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("tocsin: {e:#}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Config(ConfigCommand::Print { file, effective }) => {
            let env = if effective {
                config::process_env()
            } else {
                Vec::new()
            };
            config::Config::load(file.as_deref(), &env).map(|c| {
                print!("{}", c.to_redacted_toml());
                ExitCode::SUCCESS
            })
        }
        Command::Topics(TopicsCommand::Create(a)) => worker::topics_create(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`tocsin ... | head`) is the reader's choice, not a failure.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .map(io::Error::kind)
                    .or_else(|| {
                        c.downcast_ref::<serde_json::Error>()
                            .and_then(serde_json::Error::io_error_kind)
                    })
                    == Some(io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            if logging::structured() {
                tracing::error!("{e:#}");
            } else {
                eprintln!("tocsin: error: {e:#}");
            }
            ExitCode::from(1)
        }
    }
}

/// Open an output: `-` is stdout.
pub(crate) fn create_output(path: &str) -> Result<Box<dyn Write>> {
    if path == "-" {
        Ok(Box::new(BufWriter::with_capacity(
            256 * 1024,
            io::stdout().lock(),
        )))
    } else {
        let f = File::create(path).with_context(|| format!("cannot create {path}"))?;
        Ok(Box::new(BufWriter::with_capacity(256 * 1024, f)))
    }
}

/// The correlator's configuration for loaded correlation rules and a policy.
pub(crate) fn correlator_config(
    correlation_rules: &[tocsin_rules::CorrelationRule],
    policy: tocsin_rules::EscalationPolicy,
) -> CorrelatorConfig {
    CorrelatorConfig {
        policy,
        correlation_rules: correlation_rules.to_vec(),
        ..CorrelatorConfig::default()
    }
}

/// Load and compile rules, print diagnostics; `Err(code)` when `--strict` fails.
pub(crate) fn prepare_rules(
    args: &RuleArgs,
    quiet: bool,
) -> Result<std::result::Result<(RuleSources, tocsin_match::CompiledRules), ExitCode>> {
    prepare_rules_with(
        args,
        quiet,
        &mut load::LastGood::new(),
        &reload::SharedFrequencies::default(),
    )
}

/// Give memory freed after loading back to the operating system. Parsing a large feed
/// builds many short-lived allocations; glibc keeps freed memory in the process unless asked,
/// which would make the resident size reflect the peak of loading rather than the rule set.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it has no
    // preconditions and does not touch live allocations.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Rules loaded and compiled ([`prepare_rules`]), with their reloader running.
pub(crate) struct WatchedRules {
    pub sources: RuleSources,
    pub compiled: tocsin_match::CompiledRules,
    /// The reloaded sets, in the order they were compiled.
    pub reloads: std::sync::mpsc::Receiver<reload::Reloaded>,
    /// The literal-frequency table in use, shared with the reloader (a calibration made in
    /// the process is put here for the reloads to choose by).
    pub frequencies: reload::SharedFrequencies,
}

/// [`prepare_rules`], then the reloader: SIGHUP reloads, and with `watch` a change of the
/// files does, seen against their state taken before this load. `Err(code)` when
/// `--strict` fails.
pub(crate) fn load_watched(
    args: &RuleArgs,
    quiet: bool,
    watch: Option<std::time::Duration>,
    metrics: Option<std::sync::Arc<metrics::Metrics>>,
) -> Result<std::result::Result<WatchedRules, ExitCode>> {
    let mut last_good = load::LastGood::new();
    let frequencies = reload::SharedFrequencies::default();
    let loaded = args.spec().snapshot();
    let (sources, compiled) = match prepare_rules_with(args, quiet, &mut last_good, &frequencies)? {
        Ok(x) => x,
        Err(code) => return Ok(Err(code)),
    };
    let reloads = reload::spawn(
        args.spec(),
        loaded,
        last_good,
        watch,
        quiet,
        metrics,
        std::sync::Arc::clone(&frequencies),
    )?;
    Ok(Ok(WatchedRules {
        sources,
        compiled,
        reloads,
        frequencies,
    }))
}

/// [`prepare_rules`], remembering each source that loaded (for later reloads), and the
/// table of `--frequencies` in `frequencies` (for the reloads to choose by it too).
fn prepare_rules_with(
    args: &RuleArgs,
    quiet: bool,
    last_good: &mut load::LastGood,
    frequencies: &reload::SharedFrequencies,
) -> Result<std::result::Result<(RuleSources, tocsin_match::CompiledRules), ExitCode>> {
    let table = match &args.frequencies {
        Some(path) => Some(std::sync::Arc::new(load::read_frequencies(path)?)),
        None => None,
    };
    if let Ok(mut shared) = frequencies.lock() {
        shared.clone_from(&table);
    }
    let (sources, compiled) = args.spec().load(last_good, table.clone())?;
    if let (Some(table), Some(path)) = (&table, &args.frequencies) {
        let profile = &compiled.profile().name;
        if table.profile() != profile {
            logging::warn(&format!(
                "tocsin: {} was observed with profile '{}', the rules use '{profile}': literals of fields it maps otherwise count as unseen",
                path.display(),
                table.profile()
            ));
        }
        if !quiet {
            logging::say(&format!(
                "tocsin: prefilters chosen by the literal frequencies in {} ({} literals observed over {} events)",
                path.display(),
                table.len(),
                table.events()
            ));
        }
    }
    release_freed_memory();
    match report_rules(&sources, &compiled, quiet, args.strict) {
        Some(code) => Ok(Err(code)),
        None => Ok(Ok((sources, compiled))),
    }
}

/// Print a loaded rule set's diagnostics and summary; with `strict`, rule errors stop the
/// command (the exit code is returned).
pub(crate) fn report_rules(
    sources: &RuleSources,
    compiled: &tocsin_match::CompiledRules,
    quiet: bool,
    strict: bool,
) -> Option<ExitCode> {
    let profile_name = compiled.profile().name.clone();
    for d in &sources.diagnostics.0 {
        // Rules for other log sources are normal in a shared corpus: counted, not listed.
        if d.is_error() || (!quiet && d.code != "not-applicable") {
            logging::warn(&d.to_string());
        }
    }
    let errors = sources.diagnostics.error_count();
    if !quiet {
        let s = compiled.stats();
        logging::say(&format!(
            "tocsin: loaded {} Sigma rules ({} routes, {} literals of which {} scanned for, {} regexes; {} set aside as not covered by the profile), {} indicators, profile '{}'; {} errors, {} warnings",
            s.rules,
            s.routes,
            s.atoms,
            s.scanned_atoms,
            s.regexes,
            s.not_applicable,
            s.indicators,
            profile_name,
            errors,
            sources.diagnostics.warning_count()
        ));
    }
    if strict && errors > 0 {
        logging::warn(&format!(
            "tocsin: {errors} rule errors and --strict: stopping"
        ));
        return Some(ExitCode::from(3));
    }
    None
}

fn run(a: RunArgs) -> Result<ExitCode> {
    let metrics = match &a.listen {
        Some(addr) => {
            let m = metrics::Metrics::new()?;
            let local = m.serve(addr)?;
            if !a.quiet {
                eprintln!("tocsin: serving /metrics, /healthz and /readyz on {local}");
            }
            Some(m)
        }
        None => None,
    };
    // SIGHUP reloads in every run; --watch also polls the files.
    let watch = a
        .watch
        .then(|| std::time::Duration::from_secs_f64(a.watch_interval.max(0.1)));
    let WatchedRules {
        sources,
        compiled,
        reloads,
        frequencies,
    } = match load_watched(&a.rules, a.quiet, watch, metrics.clone())? {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let mut policy = sources.policy.clone().unwrap_or_default();
    policy.exercise |= a.exercise;
    let correlator = Correlator::new(correlator_config(&sources.correlations, policy.clone()));
    let detections = match &a.detections {
        Some(p) => Some(create_output(&p.to_string_lossy())?),
        None => None,
    };
    let dead_letters = match &a.dead_letter {
        Some(p) => DeadLetterSink::Writer(create_output(&p.to_string_lossy())?),
        None => DeadLetterSink::Summary(Vec::new()),
    };
    let audience: tocsin_core::Audience = a.audience.into();
    let mut recipients = Vec::new();
    if let Some(dir) = &a.recipients_out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for r in &sources.recipients {
            recipients.push((r.clone(), pipeline::recipient_output(dir, r, false)?));
        }
    }
    let outputs = pipeline::WarningOutputs {
        out: create_output(&a.output)?,
        audience,
        ceiling: a
            .tlp_ceiling
            .unwrap_or_else(|| tocsin_correlate::audience::default_ceiling(audience)),
        format: a.warning_format,
        recipients,
        policy,
    };
    // The parsed rules (about 12 MB with the SigmaHQ set) are compiled now; what the run
    // needed of them (policy, correlation rules, recipients) is copied out. Freed here and
    // given back, as the loading's temporaries were, instead of staying allocated to the end.
    drop(sources);
    release_freed_memory();
    let mut pipeline = Pipeline::new(
        std::sync::Arc::new(compiled),
        correlator,
        a.max_event_bytes,
        outputs,
        detections,
        dead_letters,
    )
    .with_reloads(reloads)
    .forcing_exercise(a.exercise)
    .with_recipients_dir(a.recipients_out.clone());
    if a.calibrate > 0 {
        let spec = a.rules.spec();
        let quiet = a.quiet;
        pipeline = pipeline.with_calibration(
            a.calibrate as usize,
            Box::new(move |sample: &[Vec<u8>]| {
                let started = std::time::Instant::now();
                let (loaded, observed) =
                    spec.load_calibrated(&mut load::LastGood::new(), sample)?;
                if !quiet {
                    eprintln!(
                        "tocsin: prefilters calibrated on {} events ({} literals) in {:.2} s",
                        observed.events(),
                        observed.len(),
                        started.elapsed().as_secs_f64()
                    );
                }
                if let Ok(mut shared) = frequencies.lock() {
                    *shared = Some(observed);
                }
                Ok(loaded)
            }),
        );
    }
    if let Some(m) = &metrics {
        pipeline = pipeline.with_metrics(std::sync::Arc::clone(m));
    }
    if let Some(dir) = &a.archive {
        pipeline = pipeline.with_archive(tocsin_archive::writer::ArchiveWriter::create(
            dir,
            a.archive_retention_days,
        )?);
    }
    for name in &a.input {
        let mut reader = input::open(name)?;
        pipeline.process_source(name, &mut *reader)?;
    }
    let (stats, first_dead, latest, correlator) = pipeline.finish()?;
    if let (Some(s), false) = (&stats.archive, a.quiet) {
        eprintln!(
            "tocsin: archived {} events, {} detections, {} warning versions in {} Parquet files ({} date partitions expired)",
            s.events, s.detections, s.warnings, s.files, s.expired_partitions
        );
    }
    if !a.quiet || stats.dead_letters > 0 {
        eprintln!(
            "tocsin: {} events ({} MB) in {:.2} s ({:.0} events/s): {} detections, {} warning versions ({} warnings), {} dead letters",
            stats.events,
            stats.bytes / 1_000_000,
            stats.seconds,
            stats.events as f64 / stats.seconds.max(1e-9),
            stats.detections,
            stats.warning_versions,
            latest.len(),
            stats.dead_letters
        );
        let c = correlator.stats();
        if c.late
            + c.duplicates
            + c.incomplete_context
            + c.withheld
            + stats.missing_time
            + stats.bad_context
            > 0
            && !a.quiet
        {
            eprintln!(
                "tocsin: correlation: {} late, {} duplicates, {} without full context, {} warning versions withheld from --output by its TLP ceiling; {} events without time, {} with invalid context",
                c.late, c.duplicates, c.incomplete_context, stats.withheld, stats.missing_time, stats.bad_context
            );
        }
        for reason in &first_dead {
            eprintln!("tocsin: dead letter: {reason}");
        }
        if a.dead_letter.is_none() && stats.dead_letters > first_dead.len() as u64 {
            eprintln!(
                "tocsin: ... and {} more dead letters (use --dead-letter FILE to keep them)",
                stats.dead_letters - first_dead.len() as u64
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn gen_cmd(a: GenArgs) -> Result<ExitCode> {
    let campaign_waves = match (a.no_campaign, a.campaign_rate) {
        (true, _) => 0,
        (false, Some(rate)) => {
            anyhow::ensure!(
                rate.is_finite() && rate >= 0.0,
                "--campaign-rate must be a number of waves per million events, 0 or more (got {rate})"
            );
            let waves = (a.events as f64 * rate / 1e6).round() as u64;
            if rate > 0.0 {
                waves.max(1)
            } else {
                0
            }
        }
        (false, None) => a.campaigns,
    };
    let workload = gen::Workload {
        topology: gen::Topology::new(a.orgs, a.sectors, a.member_states)?,
        hosts_per_org: a.hosts_per_org,
        campaign_waves,
        ..gen::Workload::new(a.events, a.seed, a.shape)
    };
    let mut out = create_output(&a.output)?;
    gen::generate(&mut out, &workload)?;
    Ok(ExitCode::SUCCESS)
}
