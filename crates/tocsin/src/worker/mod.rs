//! Kafka workers and `tocsin topics create`: the same matching and correlation code as
//! `tocsin run`, with Kafka at the edges.
//!
//! - [`matching`]: `worker match`, events in, detections out (keyed by correlation key).
//! - [`correlating`]: `worker correlate`, detections in, warnings out, one correlator per
//!   detections partition with its state in the changelog.
//! - `worker all` runs both in one process (two threads), for small deployments.
//! - [`archiving`]: `worker archive`, events, detections and warnings into the Parquet
//!   archive (a consumer group of its own; offsets committed once the files are written).
//!
//! Every worker follows the same delivery rule: a batch's offsets are committed only after
//! everything derived from the batch is acknowledged by the producer ([`acknowledged`]).
//! Settings come from the configuration ([`crate::config`]); the flags here override it.

mod archiving;
mod correlating;
mod matching;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;

use tocsin_kafka::sink::Sink;
use tocsin_kafka::topics;

use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::RuleArgs;

pub use archiving::ArchiveWorkerArgs;
pub use correlating::CorrelateWorkerArgs;
pub use matching::MatchWorkerArgs;

/// The configuration file and the connection flags (shared by the workers and `topics
/// create`).
#[derive(Args, Clone)]
pub struct ConnectArgs {
    /// Configuration file (TOML; `tocsin config print` shows every setting). Env TOCSIN_CONFIG.
    #[arg(long, value_name = "FILE", env = "TOCSIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Bootstrap servers, `HOST:PORT[,HOST:PORT…]` (config `kafka.bootstrap`, env
    /// TOCSIN_KAFKA_BOOTSTRAP).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,
    /// A librdkafka client property, passed through (e.g. `security.protocol=SASL_SSL`,
    /// `sasl.mechanism=SCRAM-SHA-512`, `ssl.ca.location=…`). Repeatable. Secret values are
    /// never printed.
    #[arg(long = "kafka", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!(
            "expected KEY=VALUE, got '{}'",
            s.split('=').next().unwrap_or("")
        )),
    }
}

impl ConnectArgs {
    /// The configuration: defaults, file, environment, then these flags (not yet validated:
    /// the command's own flags come next).
    pub fn resolve(&self) -> Result<Config> {
        let mut c = Config::load(self.config.as_deref(), &config::process_env())?;
        if let Some(b) = &self.bootstrap {
            c.kafka.bootstrap = b.clone();
        }
        c.kafka.client.extend(self.properties.iter().cloned());
        Ok(c)
    }
}

/// Flags every worker takes.
#[derive(Args, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Rules directory or files (Sigma rules, profiles/, iocs/, escalation.yaml,
    /// recipients.yaml). Repeatable. Config `rules.paths`.
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Indicator feeds added to those in the rules' iocs/ folder. Config `rules.iocs`.
    #[arg(long = "iocs", value_name = "PATH", num_args = 1..)]
    pub iocs: Vec<PathBuf>,
    /// Field-mapping profile. Config `rules.profile`.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Any rule error stops the worker (exit code 3). Config `rules.strict`.
    #[arg(long)]
    pub strict: bool,
    /// Event topics to consume. Repeatable. Config `topics.events`.
    #[arg(long = "input-topic", value_name = "NAME")]
    pub input_topics: Vec<String>,
    /// Detections topic. Config `topics.detections`.
    #[arg(long, value_name = "NAME")]
    pub detections_topic: Option<String>,
    /// Correlator state changelog. Config `topics.correlate_state`.
    #[arg(long, value_name = "NAME")]
    pub state_topic: Option<String>,
    /// Dead-letter topic. Config `topics.dead_letter`.
    #[arg(long, value_name = "NAME")]
    pub dead_letter_topic: Option<String>,
    /// Prefix of the warning topics (`PREFIX.technical`, `PREFIX.csirt.de`). Config
    /// `topics.warnings_prefix`.
    #[arg(long, value_name = "PREFIX")]
    pub warnings_prefix: Option<String>,
    /// How long shutdown may take to drain and commit, in seconds. Config
    /// `worker.shutdown_deadline_s`.
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_deadline: Option<u64>,
    /// Serve `/metrics`, `/healthz` and `/readyz` on `ADDR:PORT`. Config `worker.listen`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Log lines as text (default) or one JSON object per line. Config `worker.log_format`.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<crate::logging::LogFormat>,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

impl WorkerArgs {
    /// The configuration with these flags applied.
    pub fn resolve(&self) -> Result<Config> {
        let mut c = self.connect.resolve()?;
        if !self.rules.is_empty() {
            c.rules.paths = self.rules.clone();
        }
        c.rules.iocs.extend(self.iocs.iter().cloned());
        if let Some(p) = &self.profile {
            c.rules.profile = p.clone();
        }
        c.rules.strict |= self.strict;
        if !self.input_topics.is_empty() {
            c.topics.events = self.input_topics.clone();
        }
        for (flag, field) in [
            (&self.detections_topic, &mut c.topics.detections),
            (&self.state_topic, &mut c.topics.correlate_state),
            (&self.dead_letter_topic, &mut c.topics.dead_letter),
            (&self.warnings_prefix, &mut c.topics.warnings_prefix),
        ] {
            if let Some(v) = flag {
                *field = v.clone();
            }
        }
        if let Some(s) = self.shutdown_deadline {
            c.worker.shutdown_deadline_s = s;
        }
        if let Some(l) = &self.listen {
            c.worker.listen = l.clone();
        }
        if let Some(f) = self.log_format {
            c.worker.log_format = f;
        }
        c.validate()?;
        crate::logging::init(c.worker.log_format);
        Ok(c)
    }
}

/// The rule flags `prepare_rules` takes, from the configuration.
fn rule_args(c: &Config) -> RuleArgs {
    RuleArgs {
        rules: c.rules.paths.clone(),
        profile: (!c.rules.profile.is_empty()).then(|| c.rules.profile.clone()),
        strict: c.rules.strict,
        iocs: c.rules.iocs.clone(),
        iocs_format: None,
        frequencies: (!c.rules.frequencies.is_empty()).then(|| PathBuf::from(&c.rules.frequencies)),
    }
}

/// The rule set a match worker uses, and the reloads that replace it (SIGHUP, and file
/// changes every `rules.watch_s`). It outlives the worker loop's in-process restarts.
pub struct LiveRules {
    current: Arc<tocsin_match::CompiledRules>,
    updates: std::sync::mpsc::Receiver<crate::reload::Reloaded>,
    /// Where each reload goes on to, for the correlate thread of `worker all` (its
    /// correlation rules).
    forward: Option<std::sync::mpsc::Sender<crate::reload::Reloaded>>,
}

impl LiveRules {
    /// Load the rules of `c` (diagnostics printed) and start watching them. `Err(code)`
    /// when `rules.strict` fails.
    fn load(
        c: &Config,
        quiet: bool,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<std::result::Result<(crate::load::RuleSources, Self), std::process::ExitCode>> {
        let watch = (c.rules.watch_s > 0).then(|| Duration::from_secs(c.rules.watch_s));
        let rules = match crate::load_watched(&rule_args(c), quiet, watch, metrics)? {
            Ok(r) => r,
            Err(code) => return Ok(Err(code)),
        };
        Ok(Ok((
            rules.sources,
            LiveRules {
                current: Arc::new(rules.compiled),
                updates: rules.reloads,
                forward: None,
            },
        )))
    }

    /// The newest reloaded set, if one arrived since the last call.
    fn take_newest(&mut self) -> Option<Arc<tocsin_match::CompiledRules>> {
        let newest = self.updates.try_iter().last()?;
        self.current = Arc::clone(&newest.compiled);
        // The correlation rules that come with a reload are the correlate worker's
        // business; this worker only tags detections with their keys.
        if let Some(forward) = &self.forward {
            let _ = forward.send(newest);
        }
        Some(Arc::clone(&self.current))
    }
}

/// The metrics listener of `worker.listen`, if set; ready once the rules are loaded (the
/// workers add their own conditions).
fn serve_metrics(c: &Config, quiet: bool) -> Result<Option<Arc<Metrics>>> {
    if c.worker.listen.is_empty() {
        return Ok(None);
    }
    let m = Metrics::new()?;
    let local = m.serve(&c.worker.listen)?;
    if !quiet {
        tracing::info!(listen = %local, "serving /metrics, /healthz and /readyz on {local}");
    }
    Ok(Some(m))
}

/// The rule set is loaded: say so in the metrics (the workers add their own conditions to
/// readiness).
fn rules_loaded(m: &Metrics, rules: &tocsin_match::CompiledRules) {
    let s = rules.stats();
    m.rules_loaded.set(s.rules as i64);
    m.indicators_loaded.set(s.indicators as i64);
    m.rule_set_version.set(1);
    m.set_ready(true);
}

/// What a worker's consumer last saw of the cluster, into the metrics: broker reachable,
/// lag per assigned partition (series of partitions no longer assigned are removed), and
/// the worker's readiness.
struct ClusterView {
    component: &'static str,
    shown: Vec<(String, String)>,
}

impl ClusterView {
    fn new(component: &'static str, m: Option<&Metrics>) -> Self {
        if let Some(m) = m {
            m.set_readiness(component, Some("connecting to the broker".into()));
        }
        ClusterView {
            component,
            shown: Vec::new(),
        }
    }

    fn observe(&mut self, m: Option<&Metrics>, source: &tocsin_kafka::source::Source) {
        let Some(m) = m else { return };
        let h = source.health();
        m.broker_reachable.set(i64::from(h.broker_up == Some(true)));
        let now: Vec<(String, String)> = h
            .lag
            .iter()
            .map(|(t, p, _)| (t.clone(), p.to_string()))
            .collect();
        for (t, p) in self.shown.iter().filter(|s| !now.contains(s)) {
            let _ = m.consumer_lag.remove_label_values(&[t, p]);
        }
        for ((t, p), (_, _, lag)) in now.iter().zip(&h.lag) {
            m.consumer_lag.with_label_values(&[t, p]).set(*lag);
        }
        self.shown = now;
        match h.broker_up {
            // Statistics come every second and this runs every batch window (or after a
            // blocking request returns): five seconds without renewal means stuck.
            Some(true) => m.set_ready_for(self.component, Duration::from_secs(5)),
            Some(false) => m.set_readiness(self.component, Some("no broker reachable".into())),
            None => m.set_readiness(self.component, Some("connecting to the broker".into())),
        }
    }
}

/// This worker's name in logs: the pod name in Kubernetes (`HOSTNAME`), else the process id.
fn worker_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

/// The span every log line of a worker carries: kind, id and consumer group.
fn worker_span(kind: &'static str, group: &str) -> tracing::Span {
    tracing::info_span!("worker", kind, id = %worker_id(), group = %group)
}

/// A flag set by SIGTERM and SIGINT, and a watchdog that ends the process if shutdown takes
/// longer than `worker.shutdown_deadline_s` (plus a 5 s grace for the last commit): with the
/// broker away, a commit or leaving the group can block indefinitely inside librdkafka. An
/// exit by the watchdog has code 1; the offsets not committed are read again after a restart.
fn stop_on_signals(c: &Config) -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let deadline = Duration::from_secs(c.worker.shutdown_deadline_s) + Duration::from_secs(5);
    let watched = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("tocsin-shutdown-watchdog".into())
        .spawn(move || {
            while !watched.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(deadline);
            tracing::error!(
                deadline_s = deadline.as_secs(),
                "shutdown took longer than {} s (the broker is unreachable?); exiting with the last batch uncommitted: it will be read again",
                deadline.as_secs()
            );
            std::process::exit(1);
        })?;
    Ok(stop)
}

/// `tocsin worker all`.
#[derive(Args)]
pub struct AllWorkerArgs {
    #[command(flatten)]
    common: WorkerArgs,
    /// Consumer group of the match side. Config `match.group`.
    #[arg(long, value_name = "NAME")]
    match_group: Option<String>,
    /// Consumer group of the correlate side. Config `correlate.group`.
    #[arg(long, value_name = "NAME")]
    correlate_group: Option<String>,
}

pub fn match_worker(a: MatchWorkerArgs) -> Result<std::process::ExitCode> {
    matching::main(a)
}

pub fn correlate_worker(a: CorrelateWorkerArgs) -> Result<std::process::ExitCode> {
    correlating::main(a)
}

/// `tocsin worker archive`.
pub fn archive_worker(a: ArchiveWorkerArgs) -> Result<std::process::ExitCode> {
    archiving::main(a)
}

/// Both workers in one process: matching on a thread, correlation on the main thread. A
/// failure of either stops both.
pub fn all_worker(a: AllWorkerArgs) -> Result<std::process::ExitCode> {
    let mut c = a.common.resolve()?;
    if let Some(g) = &a.match_group {
        c.matching.group = g.clone();
    }
    if let Some(g) = &a.correlate_group {
        c.correlate.group = g.clone();
    }
    let quiet = a.common.quiet;
    let metrics = serve_metrics(&c, quiet)?;
    let (sources, mut live) = match LiveRules::load(&c, quiet, metrics.clone())? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if let Some(m) = &metrics {
        rules_loaded(m, &live.current);
    }
    // The match thread takes each reload and passes it on to the correlate thread.
    let (forward, correlation_reloads) = std::sync::mpsc::channel();
    live.forward = Some(forward);
    let stop = stop_on_signals(&c)?;
    let m = metrics.as_deref();
    let mut correlations = correlating::LiveCorrelations::new(&sources, &correlation_reloads);
    std::thread::scope(|scope| {
        let matcher = scope.spawn(|| {
            let _guard = StopOnPanic(&stop);
            let _span = worker_span("match", &c.matching.group).entered();
            let r = supervised("match", &stop, || {
                matching::run(&c, &mut live, m, &stop, quiet)
            });
            if r.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            r
        });
        let _guard = StopOnPanic(&stop);
        let _span = worker_span("correlate", &c.correlate.group).entered();
        let correlated = supervised("correlate", &stop, || {
            correlating::run(&c, m, &stop, quiet, &mut correlations)
        });
        if correlated.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let matched = matcher
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the match thread panicked")));
        matched.and(correlated)
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// `tocsin topics create`.
#[derive(Args)]
pub struct TopicsCreateArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Event topics to create. Repeatable. Config `topics.events`.
    #[arg(long = "input-topic", value_name = "NAME")]
    input_topics: Vec<String>,
    /// Partitions of the event, detection, changelog and warning topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Replication factor.
    #[arg(long, default_value_t = 1)]
    replication: i32,
    /// Recipients table (rules/recipients.yaml format): one warning topic per recipient.
    #[arg(long, value_name = "FILE")]
    recipients: Option<PathBuf>,
}

pub fn topics_create(a: TopicsCreateArgs) -> Result<std::process::ExitCode> {
    let mut c = a.connect.resolve()?;
    if !a.input_topics.is_empty() {
        c.topics.events = a.input_topics.clone();
    }
    c.validate()?;
    let mut recipient_topics = Vec::new();
    if let Some(path) = &a.recipients {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let recipients =
            tocsin_correlate::audience::parse_recipients(&path.display().to_string(), &text)
                .map_err(|d| anyhow::anyhow!("{d}"))?;
        recipient_topics.extend(recipients.iter().map(|r| c.topics.recipient_topic(&r.id)));
    }
    let plan = topics::layout(&c.topics, &recipient_topics, a.partitions);
    let settings = c.kafka_settings();
    let created = topics::create(&settings, &plan, a.replication, Duration::from_secs(30))
        .with_context(|| format!("creating topics on {settings}"))?;
    for (name, outcome) in created {
        let what = match outcome {
            topics::Created::Created => "created",
            topics::Created::AlreadyExists => "exists",
        };
        println!("{what}\t{name}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Run a worker loop, and run it again when the broker failed to acknowledge its output:
/// a new consumer and producer resume from the last committed offsets (and a correlate
/// worker from its state records), exactly as a restarted process would, without waiting
/// for Kubernetes to notice. Other errors (configuration, a state that cannot be read) end
/// the worker; so does any error after a stop signal.
fn supervised(name: &str, stop: &AtomicBool, mut run: impl FnMut() -> Result<()>) -> Result<()> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let Err(e) = run() else { return Ok(()) };
        let transient = e.chain().any(|cause| {
            cause
                .downcast_ref::<tocsin_kafka::KafkaError>()
                .is_some_and(tocsin_kafka::KafkaError::is_transient)
        });
        if !transient || stop.load(Ordering::Relaxed) {
            return Err(e);
        }
        // A run that lasted a while was a recovery: the next failure starts the backoff anew.
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tracing::warn!(
            worker = name,
            error = %format!("{e:#}"),
            backoff_s = backoff.as_secs(),
            "{name} worker: {e:#}; starting again from the last committed offsets in {} s",
            backoff.as_secs()
        );
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Sets the stop flag when dropped during a panic, so that the other half of `worker all`
/// ends too instead of running on beside a dead thread (and `/healthz` says the truth once
/// the process is gone).
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Commit a batch whose output was acknowledged, and time it. A failed commit is not an
/// error: the partition's next owner (or this worker, at the next batch) reads it again.
fn commit_batch(
    source: &mut tocsin_kafka::source::Source,
    metrics: Option<&Metrics>,
    worker: &'static str,
    opened: Instant,
) {
    if let Err(e) = source.commit() {
        tracing::warn!(
            error = %e,
            "commit failed: {e} (the batch will be read again by the partition's next owner; nothing is lost)"
        );
    }
    observe_batch(metrics, worker, opened);
}

/// Time a batch opened at `opened`, now that it is committed (or held for a later commit).
fn observe_batch(metrics: Option<&Metrics>, worker: &'static str, opened: Instant) {
    if let Some(m) = metrics {
        m.batch_seconds
            .with_label_values(&[worker])
            .observe(opened.elapsed().as_secs_f64());
    }
}

/// Reports consumer errors at most every 10 s (librdkafka reconnects by itself).
#[derive(Default)]
struct ErrorReporter {
    count: u64,
    last: Option<Instant>,
}

impl ErrorReporter {
    fn report(&mut self, e: &tocsin_kafka::KafkaError) {
        self.count += 1;
        if self.last.is_none_or(|t| t.elapsed().as_secs() >= 10) {
            tracing::warn!(
                error = %e,
                errors = self.count,
                "{e} ({} consumer error(s) so far; retrying)",
                self.count
            );
            self.last = Some(Instant::now());
        }
    }
}

/// Wait until the broker has acknowledged everything queued. While the broker is away,
/// librdkafka keeps the messages and retries them (up to `message.timeout.ms`, then they
/// fail and so does the worker, whose uncommitted batch is read again after its restart);
/// meanwhile the worker fetches nothing more. After a stop signal it waits at most
/// `shutdown`.
fn acknowledged(
    sink: &mut Sink,
    stop: &AtomicBool,
    stop_deadline: &mut Option<Instant>,
    shutdown: Duration,
    readiness: Option<(&Metrics, &'static str)>,
) -> Result<u64> {
    let mut waiting_since = None;
    loop {
        match sink.flush(Duration::from_secs(1)) {
            Ok(n) => {
                if let Some(since) = waiting_since {
                    tracing::info!(
                        waited_s = Instant::elapsed(&since).as_secs_f64(),
                        "the broker acknowledged again after {:.1} s; resuming",
                        Instant::elapsed(&since).as_secs_f64()
                    );
                }
                return Ok(n);
            }
            Err(tocsin_kafka::KafkaError::FlushTimeout { in_flight }) => {
                if waiting_since.is_none() {
                    tracing::warn!(
                        in_flight,
                        "waiting for the broker to acknowledge {in_flight} message(s); fetching paused, offsets not committed"
                    );
                    waiting_since = Some(Instant::now());
                }
                if let Some((m, component)) = readiness {
                    m.set_readiness(
                        component,
                        Some(format!(
                            "waiting for the broker to acknowledge {in_flight} message(s)"
                        )),
                    );
                }
                if stop.load(Ordering::Relaxed) {
                    let deadline = *stop_deadline.get_or_insert_with(|| Instant::now() + shutdown);
                    if Instant::now() >= deadline {
                        anyhow::bail!(
                            "shutdown deadline passed with {in_flight} message(s) unacknowledged; their offsets are not committed and will be read again"
                        );
                    }
                }
            }
            Err(e) => {
                return Err(e).context(
                    "the broker did not acknowledge the batch's output; offsets not committed",
                )
            }
        }
    }
}

/// Produce a detection once per correlation key, keyed by the key (a keyless detection
/// once, keyed by its id), so that each copy lands in the partition that owns its key.
fn publish_detection(
    sink: &mut Sink,
    topic: &str,
    d: &tocsin_core::Detection,
    json: &mut Vec<u8>,
) -> Result<()> {
    json.clear();
    serde_json::to_writer(&mut *json, d)?;
    if d.correlation_keys.is_empty() {
        sink.send(topic, Some(d.id.as_bytes()), json, &[])?;
    }
    for key in &d.correlation_keys {
        sink.send(topic, Some(key.as_bytes()), json, &[])?;
    }
    Ok(())
}

/// An event message's context: the event's fields read through the profile, with the
/// message headers `sector`, `member_state` and `organisation` winning over them (an ingest
/// gateway that knows the tenant sets them), and the event time falling back to the time
/// the sensor produced the message.
fn message_context<'a>(
    event: &tocsin_core::Event<'a>,
    msg: &'a tocsin_kafka::source::Received<'_>,
    fields: &tocsin_core::ContextFields,
) -> tocsin_core::EventContext<'a> {
    let mut ctx = tocsin_core::EventContext::extract(event, fields);
    if let Some(v) = msg.header("sector") {
        ctx.sector = v.parse().ok();
    }
    if let Some(v) = msg.header("member_state") {
        ctx.member_state = v.parse().ok();
    }
    if let Some(v) = msg.header("organisation") {
        ctx.organisation = Some(v.into());
    }
    ctx.time = ctx
        .time
        .or_else(|| msg.timestamp_millis().map(tocsin_core::Timestamp));
    ctx
}

/// Says where each partition a rebalance gives this worker resumes: the group's committed
/// offset at assignment, then the offset of the first message read. The two agree unless
/// messages were skipped (retention deleted them, or a broker answered a fetch from the
/// wrong place), which is the one way at-least-once breaks silently, so that case is a
/// warning naming the gap.
#[derive(Default)]
struct Resumption {
    /// Partitions assigned whose first message has not been read yet, with their committed
    /// offset.
    awaiting_first: Vec<(String, i32, Option<i64>)>,
}

impl Resumption {
    /// Record (and log) the partitions just assigned.
    fn assigned(&mut self, source: &tocsin_kafka::source::Source, partitions: &[(String, i32)]) {
        if partitions.is_empty() {
            return;
        }
        // Superseded: a partition assigned again resumes from its committed offset again.
        self.awaiting_first
            .retain(|(t, p, _)| !partitions.iter().any(|(t2, p2)| p == p2 && t == t2));
        match source.committed(partitions, Duration::from_secs(10)) {
            Ok(committed) => {
                let described: Vec<String> = committed
                    .iter()
                    .map(|(t, p, c)| match c {
                        Some(c) => format!("{t}[{p}] at committed offset {c}"),
                        None => format!("{t}[{p}] from the earliest (nothing committed)"),
                    })
                    .collect();
                tracing::info!(
                    partitions = %described.join(", "),
                    "assigned {}",
                    described.join(", ")
                );
                self.awaiting_first.extend(committed);
            }
            Err(e) => {
                let names: Vec<String> = partitions
                    .iter()
                    .map(|(t, p)| format!("{t}[{p}]"))
                    .collect();
                tracing::warn!(
                    error = %e,
                    "assigned {} ({e}: cannot say from which offsets they resume)",
                    names.join(", ")
                );
            }
        }
    }

    /// Note a message read; the first one of a newly assigned partition is compared with
    /// the committed offset, which is returned (`None` for any other message, or when the
    /// partition had none or it could not be read).
    fn read(&mut self, msg: &tocsin_kafka::source::Received<'_>) -> Option<i64> {
        if self.awaiting_first.is_empty() {
            return None;
        }
        let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        let i = self
            .awaiting_first
            .iter()
            .position(|(t, p, _)| *p == partition && t == topic)?;
        let (_, _, committed) = self.awaiting_first.swap_remove(i);
        match committed {
            Some(c) if offset > c => tracing::warn!(
                topic,
                partition,
                committed = c,
                first_read = offset,
                "{topic}[{partition}] resumed at offset {offset}, past its committed offset {c}: offsets {c}..{offset} were not read",
            ),
            _ => tracing::info!(
                topic,
                partition,
                first_read = offset,
                "{topic}[{partition}] resumed at offset {offset}"
            ),
        }
        committed
    }
}
