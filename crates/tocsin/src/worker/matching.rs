//! `tocsin worker match`: poll a bounded batch (or until the batch window passes) → for each
//! message, decode, read its context (headers `sector`, `member_state`, `organisation`
//! override the event's fields), match, and produce each detection once per correlation key
//! to the detections topic (a keyless detection once, keyed by its id); undecodable or
//! context-less messages go to the dead-letter topic with the reason and origin in headers →
//! flush the producer and wait for every acknowledgement → commit the batch's offsets. A
//! kill anywhere in between replays the uncommitted batch: the repeats carry the same
//! detection ids. On SIGTERM or SIGINT the worker stops polling, finishes and commits the
//! batch in hand, and exits 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;

use tocsin_core::{Detection, Event, EventIndex, SourceRef};
use tocsin_kafka::dead_letter;
use tocsin_kafka::sink::Sink;
use tocsin_kafka::source::{Received, Source};
use tocsin_match::CompiledRules;

use super::{
    acknowledged, commit_batch, message_context, publish_detection, rules_loaded, serve_metrics,
    stop_on_signals, supervised, worker_span, ClusterView, ErrorReporter, LiveRules, Resumption,
    WorkerArgs,
};
use crate::config::Config;
use crate::metrics::{MatchWorkPublisher, Metrics};

/// `tocsin worker match`.
#[derive(Args)]
pub struct MatchWorkerArgs {
    #[command(flatten)]
    common: WorkerArgs,
    /// Consumer group. Config `match.group`.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// Largest event accepted; larger messages are dead-lettered. Config
    /// `match.max_event_bytes`.
    #[arg(long, value_name = "BYTES")]
    max_event_bytes: Option<u64>,
    /// Messages per batch (one flush and one commit per batch). Config `match.batch`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,
    /// Longest a batch stays open, in milliseconds. Config `match.batch_ms`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch_ms: Option<u64>,
}

pub fn main(a: MatchWorkerArgs) -> Result<std::process::ExitCode> {
    let mut c = a.common.resolve()?;
    let m = &mut c.matching;
    for (flag, field) in [
        (a.max_event_bytes, &mut m.max_event_bytes),
        (a.batch, &mut m.batch),
        (a.batch_ms, &mut m.batch_ms),
    ] {
        if let Some(v) = flag {
            *field = v;
        }
    }
    if let Some(g) = &a.group {
        m.group = g.clone();
    }
    let metrics = serve_metrics(&c, a.common.quiet)?;
    let (_, mut live) = match LiveRules::load(&c, a.common.quiet, metrics.clone())? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if let Some(m) = &metrics {
        rules_loaded(m, &live.current);
    }
    let stop = stop_on_signals(&c)?;
    let _span = worker_span("match", &c.matching.group).entered();
    supervised("match", &stop, || {
        run(&c, &mut live, metrics.as_deref(), &stop, a.common.quiet)
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Counters of a match worker, printed on exit.
#[derive(Default, Debug)]
struct MatchStats {
    messages: u64,
    detections: u64,
    produced: u64,
    dead_letters: u64,
    batches: u64,
    reloads: u64,
}

/// Run until `stop`; returns after the last batch is committed.
pub fn run(
    c: &Config,
    live: &mut LiveRules,
    metrics: Option<&Metrics>,
    stop: &AtomicBool,
    quiet: bool,
) -> Result<()> {
    let settings = c.kafka_settings();
    let cfg = &c.matching;
    let mut source = Source::subscribe(&settings, &cfg.group, &c.topics.events)
        .with_context(|| format!("connecting to {settings}"))?;
    let mut sink = Sink::new(&settings)?;
    if !quiet {
        tracing::info!(
            topics = %c.topics.events.join(","),
            kafka = %settings,
            "match worker in group '{}' consuming {} from {}",
            cfg.group,
            c.topics.events.join(", "),
            settings
        );
    }
    let mut m = MatchState::new(Arc::clone(&live.current), c, metrics);
    let mut view = ClusterView::new("match", metrics);
    if let Some(m) = metrics {
        m.batch_seconds.with_label_values(&["match"]);
    }
    let readiness = metrics.map(|m| (m, "match"));
    let mut stats = MatchStats::default();
    let batch_window = Duration::from_millis(cfg.batch_ms);
    let shutdown = Duration::from_secs(c.worker.shutdown_deadline_s);
    let mut stop_deadline = None;
    let mut errors = ErrorReporter::default();
    let mut resumption = Resumption::default();
    while !stop.load(Ordering::Relaxed) {
        let opened = Instant::now();
        let mut in_batch = 0u64;
        while in_batch < cfg.batch && opened.elapsed() < batch_window {
            let Some(polled) = source.poll(Duration::from_millis(50)) else {
                // A rebalance ends a poll without a message. Partitions taken away end the
                // batch, so that its offsets are committed while they are still ours.
                resumption.assigned(&source, &source.take_assigned());
                if source.revocation_pending() {
                    break;
                }
                continue;
            };
            let msg = match polled {
                Ok(msg) => msg,
                Err(e) => {
                    errors.report(&e);
                    continue;
                }
            };
            resumption.read(&msg);
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
            stats.produced +=
                acknowledged(&mut sink, stop, &mut stop_deadline, shutdown, readiness)?;
            commit_batch(&mut source, metrics, "match", opened);
            stats.batches += 1;
        }
        m.publish_match_work();
        // This worker keeps no state per partition: with the batch committed, the
        // partitions taken away can go.
        source.take_revoked();
        // A release that fails stays due: the next poll tries again.
        if let Err(e) = source.release_revoked() {
            errors.report(&e);
        }
        // A reloaded rule set takes over between two batches.
        if let Some(rules) = live.take_newest() {
            m.use_rules(rules);
            stats.reloads += 1;
        }
        view.observe(metrics, &source);
    }
    stats.produced += acknowledged(&mut sink, stop, &mut stop_deadline, shutdown, readiness)?;
    source.commit().context("committing at shutdown")?;
    if !quiet {
        tracing::info!(
            messages = stats.messages,
            detections = stats.detections,
            produced = stats.produced,
            dead_letters = stats.dead_letters,
            batches = stats.batches,
            reloads = stats.reloads,
            "match worker stopped: {} messages, {} detections, {} produced, {} dead letters, {} batches, {} rule reloads",
            stats.messages, stats.detections, stats.produced, stats.dead_letters, stats.batches, stats.reloads
        );
    }
    Ok(())
}

/// The matching state of one worker: rules and reusable buffers.
struct MatchState<'a> {
    rules: Arc<CompiledRules>,
    scratch: tocsin_match::MatchScratch,
    /// What of the scratch space's counters the metrics have.
    match_work: MatchWorkPublisher,
    index: EventIndex,
    detections: Vec<Detection>,
    json: Vec<u8>,
    max_event_bytes: usize,
    detections_topic: String,
    dead_letter_topic: String,
    metrics: Option<&'a Metrics>,
}

impl<'a> MatchState<'a> {
    fn new(rules: Arc<CompiledRules>, c: &Config, metrics: Option<&'a Metrics>) -> Self {
        MatchState {
            scratch: rules.new_scratch(),
            match_work: MatchWorkPublisher::default(),
            rules,
            index: EventIndex::new(),
            detections: Vec::new(),
            json: Vec::with_capacity(4096),
            max_event_bytes: usize::try_from(c.matching.max_event_bytes).unwrap_or(usize::MAX),
            detections_topic: c.topics.detections.clone(),
            dead_letter_topic: c.topics.dead_letter.clone(),
            metrics,
        }
    }

    /// Match with `rules` from now on.
    fn use_rules(&mut self, rules: Arc<CompiledRules>) {
        self.publish_match_work();
        self.match_work.restart();
        self.scratch = rules.new_scratch();
        if let Some(m) = self.metrics {
            let s = rules.stats();
            m.rules_loaded.set(s.rules as i64);
            m.indicators_loaded.set(s.indicators as i64);
            m.rule_set_version.inc();
        }
        self.rules = rules;
    }

    /// Add the matcher's work since the last call to the metrics.
    fn publish_match_work(&mut self) {
        if let Some(m) = self.metrics {
            self.match_work.publish(m, &self.scratch.stats);
        }
    }

    fn process(
        &mut self,
        msg: &Received<'_>,
        sink: &mut Sink,
        stats: &mut MatchStats,
    ) -> Result<()> {
        let payload = msg.payload();
        let keep = self.max_event_bytes;
        if let Some(m) = self.metrics {
            m.events.with_label_values(&[msg.topic()]).inc();
            m.bytes.inc_by(payload.len() as u64);
        }
        let metrics = self.metrics;
        let mut reject = |kind: &'static str, reason: &str| -> Result<()> {
            stats.dead_letters += 1;
            if let Some(m) = metrics {
                m.dead_letters.with_label_values(&[kind]).inc();
            }
            Ok(dead_letter::send(
                sink,
                &self.dead_letter_topic,
                msg,
                kind,
                reason,
                keep,
            )?)
        };
        if payload.len() > self.max_event_bytes {
            let reason = format!(
                "event of {} bytes exceeds the limit of {} bytes (match.max_event_bytes)",
                payload.len(),
                self.max_event_bytes
            );
            return reject("too-large", &reason);
        }
        let event = match Event::parse(payload, &mut self.index) {
            Ok(e) => e,
            Err(e) => return reject(e.kind(), &e.to_string()),
        };
        let ctx = message_context(&event, msg, &self.rules.profile().context);
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
        let time = ctx.time.unwrap_or_default();
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
            publish_detection(sink, &self.detections_topic, d, &mut self.json)?;
        }
        if let Some(m) = self.metrics {
            m.count_detections(&self.detections);
        }
        Ok(())
    }
}
