//! Kafka workers and `tocsin topics create`: the same matching code as `tocsin run`, with
//! Kafka at the edges.
//!
//! `worker match` loop: poll a bounded batch (or until `--batch-ms` passes) → for each message,
//! decode, read its context (headers `sector`, `member_state`, `organisation` override the
//! event's fields), match, and produce each detection once per correlation key to
//! `tocsin.detections`; undecodable or context-less messages go to `tocsin.dead-letter` with
//! the reason and origin in headers → flush the producer and wait for every acknowledgement →
//! commit the batch's offsets. A kill anywhere in between replays the uncommitted batch: the
//! repeats carry the same detection ids. On SIGTERM or SIGINT the worker stops polling,
//! finishes and commits the batch in hand, and exits 0.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;

use tocsin_core::{Detection, Event, EventContext, EventIndex, SourceRef, Timestamp};
use tocsin_kafka::dead_letter;
use tocsin_kafka::sink::Sink;
use tocsin_kafka::source::{Received, Source};
use tocsin_kafka::{topics, KafkaSettings};
use tocsin_match::CompiledRules;

use crate::RuleArgs;

/// Connection flags shared by the workers and `topics create`.
#[derive(Args, Clone)]
pub struct KafkaArgs {
    /// Bootstrap servers, `HOST:PORT[,HOST:PORT…]` (env TOCSIN_KAFKA_BOOTSTRAP).
    #[arg(long, value_name = "HOST:PORT", env = "TOCSIN_KAFKA_BOOTSTRAP")]
    pub bootstrap: String,
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

impl KafkaArgs {
    pub fn settings(&self) -> KafkaSettings {
        let mut s = KafkaSettings::new(self.bootstrap.clone());
        s.client.extend(self.properties.iter().cloned());
        s
    }
}

/// `tocsin topics create`.
#[derive(Args)]
pub struct TopicsCreateArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Event topics to create. Repeatable.
    #[arg(long = "input-topic", value_name = "NAME", default_value = topics::EVENTS)]
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
    let mut recipient_topics = Vec::new();
    if let Some(path) = &a.recipients {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let recipients =
            tocsin_correlate::audience::parse_recipients(&path.display().to_string(), &text)
                .map_err(|d| anyhow::anyhow!("{d}"))?;
        recipient_topics.extend(recipients.iter().map(|r| topics::recipient_topic(&r.id)));
    }
    let plan = topics::layout(&a.input_topics, &recipient_topics, a.partitions);
    let settings = a.kafka.settings();
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

/// `tocsin worker match`.
#[derive(Args)]
pub struct MatchWorkerArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    rules: RuleArgs,
    /// Event topics to consume. Repeatable.
    #[arg(long = "input-topic", value_name = "NAME", default_value = topics::EVENTS)]
    input_topics: Vec<String>,
    /// Consumer group.
    #[arg(long, default_value = "tocsin-match")]
    group: String,
    /// Largest event accepted; larger messages are dead-lettered.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_event_bytes: usize,
    /// Messages per batch (one flush and one commit per batch).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Longest a batch stays open, in milliseconds.
    #[arg(long, default_value_t = 200)]
    batch_ms: u64,
    /// How long shutdown may take to drain and commit, in seconds.
    #[arg(long, default_value_t = 30)]
    shutdown_deadline: u64,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

/// Counters of a worker, printed on exit.
#[derive(Default, Debug)]
struct WorkerStats {
    messages: u64,
    detections: u64,
    produced: u64,
    dead_letters: u64,
    batches: u64,
}

pub fn match_worker(a: MatchWorkerArgs) -> Result<std::process::ExitCode> {
    let (_, compiled) = match crate::prepare_rules(&a.rules, a.quiet)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let settings = a.kafka.settings();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let mut source = Source::subscribe(&settings, &a.group, &a.input_topics)
        .with_context(|| format!("connecting to {settings}"))?;
    let mut sink = Sink::new(&settings)?;
    if !a.quiet {
        eprintln!(
            "tocsin: match worker in group '{}' consuming {} from {}",
            a.group,
            a.input_topics.join(", "),
            settings
        );
    }
    let mut m = MatchState::new(compiled, a.max_event_bytes);
    let mut stats = WorkerStats::default();
    let batch_window = Duration::from_millis(a.batch_ms);
    let shutdown = Duration::from_secs(a.shutdown_deadline);
    let mut stop_deadline = None;
    let mut poll_errors = 0u64;
    let mut last_error_report = None;
    while !stop.load(Ordering::Relaxed) {
        let opened = Instant::now();
        let mut in_batch = 0u64;
        while in_batch < a.batch && opened.elapsed() < batch_window {
            let Some(polled) = source.poll(Duration::from_millis(50)) else {
                continue;
            };
            let msg = match polled {
                Ok(msg) => msg,
                Err(e) => {
                    // librdkafka reconnects by itself; say so at most every 10 s.
                    poll_errors += 1;
                    if last_error_report.is_none_or(|t: Instant| t.elapsed().as_secs() >= 10) {
                        eprintln!("tocsin: {e} ({poll_errors} consumer error(s) so far; retrying)");
                        last_error_report = Some(Instant::now());
                    }
                    continue;
                }
            };
            in_batch += 1;
            stats.messages += 1;
            m.process(&msg, &mut sink, &mut stats)?;
            source.done(&msg);
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        if source.has_pending() {
            // Every derived message acknowledged, then (and only then) the offsets.
            stats.produced += acknowledged(&mut sink, &stop, &mut stop_deadline, shutdown)?;
            if let Err(e) = source.commit() {
                eprintln!(
                    "tocsin: {e} (the batch will be read again by the partition's next owner)"
                );
            }
            stats.batches += 1;
        }
    }
    stats.produced += acknowledged(&mut sink, &stop, &mut stop_deadline, shutdown)?;
    source.commit().context("committing at shutdown")?;
    if !a.quiet {
        eprintln!(
            "tocsin: match worker stopped: {} messages, {} detections, {} produced, {} dead letters, {} batches",
            stats.messages, stats.detections, stats.produced, stats.dead_letters, stats.batches
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
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
) -> Result<u64> {
    let mut waiting_since = None;
    loop {
        match sink.flush(Duration::from_secs(1)) {
            Ok(n) => {
                if let Some(since) = waiting_since {
                    eprintln!(
                        "tocsin: the broker acknowledged again after {:.1} s; resuming",
                        Instant::elapsed(&since).as_secs_f64()
                    );
                }
                return Ok(n);
            }
            Err(tocsin_kafka::KafkaError::FlushTimeout { in_flight }) => {
                if waiting_since.is_none() {
                    eprintln!(
                        "tocsin: waiting for the broker to acknowledge {in_flight} message(s); fetching paused, offsets not committed"
                    );
                    waiting_since = Some(Instant::now());
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

/// The matching state of one worker: rules and reusable buffers.
struct MatchState {
    rules: CompiledRules,
    scratch: tocsin_match::MatchScratch,
    index: EventIndex,
    detections: Vec<Detection>,
    json: Vec<u8>,
    max_event_bytes: usize,
}

impl MatchState {
    fn new(rules: CompiledRules, max_event_bytes: usize) -> Self {
        MatchState {
            scratch: rules.new_scratch(),
            rules,
            index: EventIndex::new(),
            detections: Vec::new(),
            json: Vec::with_capacity(4096),
            max_event_bytes,
        }
    }

    fn process(
        &mut self,
        msg: &Received<'_>,
        sink: &mut Sink,
        stats: &mut WorkerStats,
    ) -> Result<()> {
        let payload = msg.payload();
        let keep = self.max_event_bytes;
        let mut reject = |kind: &'static str, reason: &str| -> Result<()> {
            stats.dead_letters += 1;
            Ok(dead_letter::send(sink, msg, kind, reason, keep)?)
        };
        if payload.len() > self.max_event_bytes {
            let reason = format!(
                "event of {} bytes exceeds the limit of {} bytes (--max-event-bytes)",
                payload.len(),
                self.max_event_bytes
            );
            return reject("too-large", &reason);
        }
        let event = match Event::parse(payload, &mut self.index) {
            Ok(e) => e,
            Err(e) => return reject(e.kind(), &e.to_string()),
        };
        let mut ctx = EventContext::extract(&event, &self.rules.profile().context);
        // Headers set by the ingest gateway name the tenant and win over the event's fields.
        if let Some(v) = msg.header("sector") {
            ctx.sector = v.parse().ok();
        }
        if let Some(v) = msg.header("member_state") {
            ctx.member_state = v.parse().ok();
        }
        if let Some(v) = msg.header("organisation") {
            ctx.organisation = Some(v.into());
        }
        if ctx.sector.is_none() || ctx.member_state.is_none() || ctx.organisation.is_none() {
            let missing: Vec<&str> = [
                ("sector", ctx.sector.is_none()),
                ("member_state", ctx.member_state.is_none()),
                ("organisation", ctx.organisation.is_none()),
            ]
            .into_iter()
            .filter_map(|(n, m)| m.then_some(n))
            .collect();
            let reason = format!(
                "missing context: no valid {} in the event's fields or the message headers",
                missing.join(", ")
            );
            return reject("missing-context", &reason);
        }
        self.rules.match_event(&event, &mut self.scratch);
        if self.scratch.matched().is_empty() && self.scratch.ioc_hits().is_empty() {
            return Ok(());
        }
        // Event time, else the time the sensor produced the message.
        let time = ctx
            .time
            .or_else(|| msg.timestamp_millis().map(Timestamp))
            .unwrap_or_default();
        let source_ref = SourceRef {
            name: format!("{}/{}", msg.topic(), msg.partition()),
            position: msg.offset() as u64,
        };
        self.detections.clear();
        self.rules.detections(
            &event,
            &ctx,
            time,
            Some(&source_ref),
            &self.scratch,
            &mut self.detections,
        );
        stats.detections += self.detections.len() as u64;
        for d in &self.detections {
            self.json.clear();
            serde_json::to_writer(&mut self.json, d)?;
            if d.correlation_keys.is_empty() {
                sink.send(topics::DETECTIONS, Some(d.id.as_bytes()), &self.json, &[])?;
            }
            for key in &d.correlation_keys {
                sink.send(topics::DETECTIONS, Some(key.as_bytes()), &self.json, &[])?;
            }
        }
        Ok(())
    }
}
