//! `tocsin worker correlate`: detections in, early warnings out.
//!
//! The detections topic is keyed by correlation key, so everything about one key is in one
//! partition, and a worker holds one [`Correlator`] per partition it owns: partitions move
//! between workers with their state and nothing else. A detection is merged under the key
//! of its message only ([`Correlator::push_keyed`]): the match worker sent one copy per key.
//! Detections that Sigma correlation rules derive are published back to the detections
//! topic, once per key, so they reach the partitions that own their keys.
//!
//! Per batch: merge → produce the warnings (one rendering per audience topic, and one per
//! concerned recipient) and derived detections. Then, at most every
//! `correlate.state_interval_ms`: wait for their acknowledgement → write each touched
//! partition's state to the changelog ([`tocsin_kafka::changelog`]): whole (in parts when
//! longer than `correlate.state_record_bytes`), or, between whole states, as a delta of the
//! keys and groups changed since the write before; the records a whole state replaces are
//! tombstoned after it → wait → commit. Even a delta costs a kilobyte a key touched, so
//! writing at every batch of a busy partition would cost much; the batches in between stay
//! uncommitted, and a worker that dies replays them from the last state (publishing their
//! warning versions again, identical). What a replay could judge otherwise is written at
//! once: a partition taken away, a stop, a reload of the correlation rules or policy, an idle
//! partition's event time moved on by the wall clock and the batch after it.
//! When partitions are assigned, their state is restored from the changelog before any of
//! their messages is merged (and, as a fallback, at a partition's first message), and the
//! detections the state already includes are skipped; a state that ends below the offset
//! the group committed (its newest records lost) is caught up by reading the partition again
//! from its end ([`behind_the_committed`]). A revoked partition's state is
//! written, and its offsets committed, at the end of the batch in hand, while the partition
//! is still this worker's (the group's rebalance waits for it); then it is dropped and the
//! partition released, and its next owner restores that state.
//!
//! Event time comes from the detections, so a partition whose input goes quiet would keep
//! its windows open for ever: a "fewer than three heartbeats an hour" correlation would
//! never fire for the sensor that fell silent. Once a partition has been caught up (the
//! consumer's statistics show nothing unread) for `correlate.idle_grace_s`, its event time
//! follows the wall clock from there, that far behind ([`Correlator::advance`]); what that
//! ends is published and saved like any batch's output.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;

use tocsin_core::{Audience, Detection, EarlyWarning, Timestamp};
use tocsin_correlate::audience::{self, Recipient};
use tocsin_correlate::sigma_correlations::CorrelationRulesReplaced;
use tocsin_correlate::{Correlator, CorrelatorConfig, DELTA_FORMAT, SNAPSHOT_FORMAT};
use tocsin_kafka::changelog::{self, StateKey};
use tocsin_kafka::sink::Sink;
use tocsin_kafka::source::{Health, Received, Source};
use tocsin_kafka::{dead_letter, KafkaSettings};
use tocsin_rules::{CorrelationRule, EscalationPolicy};

use super::{
    acknowledged, commit_batch, observe_batch, publish_detection, rules_loaded, serve_metrics,
    stop_on_signals, supervised, worker_span, ClusterView, ErrorReporter, LiveRules, Resumption,
    WorkerArgs,
};
use crate::config::{Config, CorrelateSection};
use crate::load::RuleSources;
use crate::metrics::Metrics;
use crate::reload::Reloaded;

/// `tocsin worker correlate`.
#[derive(Args)]
pub struct CorrelateWorkerArgs {
    #[command(flatten)]
    common: WorkerArgs,
    /// Consumer group. Config `correlate.group`.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// Detections per batch. Config `correlate.batch`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,
    /// Longest a batch stays open, in milliseconds. Config `correlate.batch_ms`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch_ms: Option<u64>,
}

pub fn main(a: CorrelateWorkerArgs) -> Result<std::process::ExitCode> {
    let mut c = a.common.resolve()?;
    if let Some(g) = &a.group {
        c.correlate.group = g.clone();
    }
    if let Some(b) = a.batch {
        c.correlate.batch = b;
    }
    if let Some(b) = a.batch_ms {
        c.correlate.batch_ms = b;
    }
    let metrics = serve_metrics(&c, a.common.quiet)?;
    let (sources, rules) = match LiveRules::load(&c, a.common.quiet, metrics.clone())? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let stop = stop_on_signals(&c)?;
    if let Some(m) = &metrics {
        rules_loaded(m, &rules.current);
    }
    // Only the reloads' correlation rules are used here, not the compiled detection rules.
    let LiveRules { updates, .. } = rules;
    let _span = worker_span("correlate", &c.correlate.group).entered();
    let mut live = LiveCorrelations::new(&sources, &updates);
    supervised("correlate", &stop, || {
        run(&c, metrics.as_deref(), &stop, a.common.quiet, &mut live)
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Counters of a correlate worker, printed on exit.
#[derive(Default, Debug)]
struct CorrelateStats {
    messages: u64,
    /// Messages below a restored state's offset (already in the state).
    skipped: u64,
    warnings: u64,
    derived: u64,
    produced: u64,
    dead_letters: u64,
    restored: u64,
    state_records: u64,
    /// Of the states written, those written as deltas.
    state_deltas: u64,
    /// Partitions read again from the end of a state that was behind the committed offset.
    read_again: u64,
    /// Bytes of the states written (before they are cut into parts).
    state_bytes: u64,
    batches: u64,
    /// Batches whose offsets waited for a later state write (`correlate.state_interval_ms`).
    held: u64,
}

/// One owned partition: its correlator and the first offset its state does not include.
struct Partition {
    correlator: Correlator,
    next_offset: i64,
    dirty: bool,
    /// When this worker last read a message of the partition (or restored it).
    last_read: Instant,
    /// Since when the consumer's statistics have shown the partition caught up (nothing
    /// unread or uncommitted) with no message read since, and the event time it had then:
    /// where an idle partition's event time goes on from ([`advance_idle`]).
    quiet_since: Option<(Instant, Timestamp)>,
    /// The event time in the last state written.
    saved_watermark: Option<Timestamp>,
    /// The keys of the changelog records the last state written stands on (its whole state's
    /// record or parts, and the deltas since), and of older states' records met at the
    /// restore: tombstoned once the next whole state is written.
    state_records: Vec<String>,
    /// The last whole state this worker wrote and the deltas since; `None` until it has
    /// written one (after a restore too), when the next write is whole.
    chain: Option<StateChain>,
    /// No message of it was read since its state was restored: the first one tells whether
    /// the state ends below what the group committed (see [`behind_the_committed`]).
    first_since_restore: bool,
    /// Its event time was moved on by the wall clock ([`advance_idle`]) since its state was
    /// last written. A detection merged now is judged against that event time, which a
    /// replay from the state before would not have: its batch is written at once rather
    /// than held for `correlate.state_interval_ms`.
    unsaved_advance: bool,
}

impl Partition {
    fn new(correlator: Correlator, next_offset: i64) -> Self {
        Partition {
            saved_watermark: correlator.watermark(),
            correlator,
            next_offset,
            dirty: false,
            last_read: Instant::now(),
            quiet_since: None,
            state_records: Vec::new(),
            chain: None,
            first_since_restore: true,
            unsaved_advance: false,
        }
    }

    /// The changes since the last state written, when they are to be written as a delta:
    /// with a whole state to go on from, fewer deltas since it than `max_deltas`, and the
    /// deltas since it, this one included, no larger than it (nor this one than a record).
    /// Otherwise `None`, and the state is to be written whole.
    fn delta_due(&mut self, max_deltas: u32, record_bytes: usize) -> Option<Vec<u8>> {
        let chain = self.chain.as_ref()?;
        if chain.deltas >= max_deltas as usize || chain.delta_bytes >= chain.whole_bytes {
            return None;
        }
        let delta = self.correlator.take_delta()?;
        let fits = delta.len() <= record_bytes
            && chain.delta_bytes.saturating_add(delta.len()) <= chain.whole_bytes;
        fits.then_some(delta)
    }

    /// A message of the partition was read: it is not idle.
    fn read(&mut self) {
        self.last_read = Instant::now();
        self.quiet_since = None;
    }
}

/// A partition's last whole state in the changelog and the deltas written since.
#[derive(Debug, Clone, Copy)]
struct StateChain {
    /// The id of the last state written, whole or delta: the next delta's base.
    tip: u128,
    /// The size of the whole state.
    whole_bytes: usize,
    /// The deltas since it, and their bytes.
    deltas: usize,
    delta_bytes: usize,
}

/// Where warnings go.
struct Outputs {
    policy: EscalationPolicy,
    audiences: Vec<(Audience, tocsin_core::Tlp, String)>,
    recipients: Vec<(Recipient, String)>,
    detections_topic: String,
    dead_letter_topic: String,
}

/// The correlation rules, escalation policy and recipients a correlate worker uses, and
/// the reloads that replace them. It outlives [`run`], which [`supervised`] calls again
/// after a transient error: a restart goes on with the newest ones, not those of the start.
pub struct LiveCorrelations<'a> {
    current: Vec<CorrelationRule>,
    policy: EscalationPolicy,
    recipients: Vec<Recipient>,
    reloads: &'a Receiver<Reloaded>,
}

/// What a reload gives a correlate worker.
struct Reload {
    rules: Vec<CorrelationRule>,
    policy: EscalationPolicy,
    /// None: the reload has none, those in use stay.
    recipients: Option<Vec<Recipient>>,
}

impl<'a> LiveCorrelations<'a> {
    pub fn new(sources: &RuleSources, reloads: &'a Receiver<Reloaded>) -> Self {
        LiveCorrelations {
            current: sources.correlations.clone(),
            policy: sources.policy.clone().unwrap_or_default(),
            recipients: sources.recipients.clone(),
            reloads,
        }
    }

    /// What the newest reload brings, if one arrived since the last call; its rules, policy
    /// and recipients are the current ones from then on (a reload without a policy or
    /// recipients keeps those in use; a restart looks again for the recipients' topics).
    fn take_newest(&mut self) -> Option<Reload> {
        let newest = self.reloads.try_iter().last()?;
        self.current.clone_from(&newest.correlations);
        if let Some(policy) = newest.policy {
            self.policy = policy;
        }
        let recipients = (!newest.recipients.is_empty()).then_some(newest.recipients);
        if let Some(recipients) = &recipients {
            self.recipients.clone_from(recipients);
        }
        Some(Reload {
            rules: newest.correlations,
            policy: self.policy.clone(),
            recipients,
        })
    }
}

/// Run until `stop`; returns after the last batch is committed. The correlation rules of
/// each reload replace those in use between two messages, in every partition's correlator
/// (see [`Correlator::replace_correlation_rules`]), and in those restored later.
pub fn run(
    c: &Config,
    metrics: Option<&Metrics>,
    stop: &AtomicBool,
    quiet: bool,
    live: &mut LiveCorrelations<'_>,
) -> Result<()> {
    let settings = c.kafka_settings();
    let cfg = &c.correlate;
    let policy = live.policy.clone();
    let correlator_config = crate::correlator_config(&live.current, policy.clone());
    let mut outputs = Outputs {
        audiences: [
            Audience::Technical,
            Audience::Operational,
            Audience::Strategic,
        ]
        .into_iter()
        .map(|a| {
            (
                a,
                audience::default_ceiling(a),
                c.topics.audience_topic(a.as_str()),
            )
        })
        .collect(),
        // Once the consumer is up, those whose topics are found (below).
        recipients: Vec::new(),
        policy,
        detections_topic: c.topics.detections.clone(),
        dead_letter_topic: c.topics.dead_letter.clone(),
    };
    let topic = c.topics.detections.clone();
    let mut source = Source::subscribe(&settings, &cfg.group, std::slice::from_ref(&topic))
        .with_context(|| format!("connecting to {settings}"))?;
    outputs.recipients = with_found_topics(&live.recipients, &[], &source, c);
    // A worker restores partition p of the detections from partition p of the changelog.
    let timeout = Duration::from_secs(30);
    let (detections, states) = (
        source.partition_count(&topic, timeout)?,
        source.partition_count(&c.topics.correlate_state, timeout)?,
    );
    if detections != states {
        return Err(tocsin_kafka::KafkaError::Layout(format!(
            "{topic} has {detections} partitions but the changelog {} has {states}: they must be equal (tocsin topics create makes them so)",
            c.topics.correlate_state
        ))
        .into());
    }
    let mut sink = Sink::new(&settings)?;
    if !quiet {
        tracing::info!(
            topic = %topic,
            changelog = %c.topics.correlate_state,
            kafka = %settings,
            "correlate worker in group '{}' consuming {} (state in {}) from {}",
            cfg.group,
            topic,
            c.topics.correlate_state,
            settings
        );
    }
    let restore_timeout = Duration::from_secs(c.correlate.restore_timeout_s);
    let mut parts: HashMap<i32, Partition> = HashMap::new();
    let mut stats = CorrelateStats::default();
    let batch_window = Duration::from_millis(cfg.batch_ms);
    let idle_grace = Duration::from_secs(cfg.idle_grace_s);
    let state_interval = Duration::from_millis(cfg.state_interval_ms);
    // None: the first batch that changes a state writes it.
    let mut last_saved: Option<Instant> = None;
    let shutdown = Duration::from_secs(c.worker.shutdown_deadline_s);
    let mut stop_deadline = None;
    let mut errors = ErrorReporter::default();
    let mut resumption = Resumption::default();
    let mut warnings = Vec::new();
    let mut json = Vec::with_capacity(4096);
    let mut view = ClusterView::new("correlate", metrics);
    if let Some(m) = metrics {
        m.batch_seconds.with_label_values(&["correlate"]);
    }
    let readiness = metrics.map(|m| (m, "correlate"));
    let mut restoring = Restoring {
        settings: &settings,
        config: c,
        correlator: correlator_config,
        timeout: restore_timeout,
        metrics,
        quiet,
    };
    let mut assigned: Vec<(String, i32)> = Vec::new();
    let state_key = |partition| StateKey {
        group: cfg.group.clone(),
        topic: topic.clone(),
        partition,
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let opened = Instant::now();
        let mut in_batch = 0u64;
        let mut revoked = Vec::new();
        // What must not wait for the state interval: an idle partition's advance, merges
        // after one, a reload of the rules, policy or recipients (each changes how the input
        // is judged or where it goes, and a replay from the state before would do otherwise).
        let mut write_now = false;
        while !stopping && in_batch < cfg.batch && opened.elapsed() < batch_window {
            let Some(polled) = source.poll(Duration::from_millis(50)) else {
                // A rebalance ends a poll without a message: partitions taken away end the
                // batch (their state is written first); partitions given are restored now,
                // before any of their messages.
                revoked.extend(source.take_revoked());
                let given = source.take_assigned();
                resumption.assigned(&source, &given);
                assigned.extend(given);
                if !revoked.is_empty() {
                    break;
                }
                restore_assigned(
                    &restoring,
                    &mut assigned,
                    &mut parts,
                    &state_key,
                    &mut stats,
                )?;
                continue;
            };
            let msg = match polled {
                Ok(msg) => msg,
                Err(e) => {
                    errors.report(&e);
                    continue;
                }
            };
            // Reloaded correlation rules are taken before each message (a try_recv), after
            // the poll that brought it: in `worker all` the match thread passes a reload on
            // before it tags any detection with the new keys, so such a detection always
            // finds the new rules here.
            if let Some(reload) = live.take_newest() {
                let config = &mut restoring.correlator;
                apply_reload(reload, &mut parts, config, &mut outputs, &source, c, quiet);
                write_now = true;
            }
            let committed = resumption.read(&msg);
            in_batch += 1;
            stats.messages += 1;
            let partition = msg.partition();
            // Normally restored at assignment already; this is the fallback.
            let part = match parts.entry(partition) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(restore_logged(
                    &restoring,
                    &state_key(partition),
                    &mut stats,
                )?),
            };
            part.read();
            if std::mem::take(&mut part.first_since_restore)
                && behind_the_committed(&source, &msg, committed, part, &c.topics.correlate_state)?
            {
                // Read again from the state's end, this message included (not done: its
                // offset is not committed before it is merged).
                stats.read_again += 1;
                if let Some(m) = metrics {
                    m.state_read_again.inc();
                }
                continue;
            }
            if msg.offset() < part.next_offset {
                stats.skipped += 1;
            } else {
                warnings.clear();
                process(
                    &msg,
                    part,
                    &outputs,
                    &mut sink,
                    &mut warnings,
                    &mut json,
                    &mut stats,
                    metrics,
                )?;
                part.next_offset = msg.offset() + 1;
                part.dirty = true;
                write_now |= part.unsaved_advance;
            }
            source.done(&msg);
            revoked.extend(source.take_revoked());
            if !revoked.is_empty() || stop.load(Ordering::Relaxed) {
                break;
            }
        }
        // Also between batches, so that reloads do not queue up (each holding a compiled
        // rule set) while no detection comes.
        if let Some(reload) = live.take_newest() {
            let config = &mut restoring.correlator;
            apply_reload(reload, &mut parts, config, &mut outputs, &source, c, quiet);
            write_now = true;
        }
        if idle_grace > Duration::ZERO && !stopping {
            write_now |= advance_idle(
                &mut parts,
                &revoked,
                &source.health(),
                &topic,
                idle_grace,
                &outputs,
                &mut sink,
                &mut warnings,
                &mut json,
                &mut stats,
                metrics,
                quiet,
            )?;
        }
        let dirty = parts.values().any(|p| p.dirty);
        // Offsets are committed with the states that include them, so a batch that changed
        // a state and comes before the next write is due waits, uncommitted, for that write.
        let save_due = stopping
            || write_now
            || !revoked.is_empty()
            || last_saved.is_none_or(|at: Instant| at.elapsed() >= state_interval);
        if dirty && !save_due {
            // Counted when it read something (a pass that only waited is no batch).
            if in_batch > 0 {
                stats.held += 1;
                observe_batch(metrics, "correlate", opened);
            }
        } else if source.has_pending() || dirty {
            // Warnings and derived detections first: a state must never claim a version
            // that was not delivered.
            stats.produced +=
                acknowledged(&mut sink, stop, &mut stop_deadline, shutdown, readiness)?;
            let mut touched: Vec<(&i32, &mut Partition)> =
                parts.iter_mut().filter(|(_, p)| p.dirty).collect();
            touched.sort_by_key(|(p, _)| **p);
            // Records of states the new ones replace, tombstoned once those are acknowledged.
            let mut replaced: Vec<(i32, Vec<String>)> = Vec::new();
            for (p, part) in touched {
                let written = write_state(
                    &mut sink,
                    &c.topics.correlate_state,
                    &state_key(*p),
                    part,
                    cfg,
                    &mut replaced,
                )?;
                part.dirty = false;
                part.unsaved_advance = false;
                part.saved_watermark = part.correlator.watermark();
                stats.state_records += 1;
                stats.state_deltas += u64::from(written.delta);
                stats.state_bytes += written.bytes as u64;
                if let Some(m) = metrics {
                    m.state_records.inc();
                    if written.delta {
                        m.state_deltas.inc();
                    }
                    m.state_bytes.inc_by(written.bytes as u64);
                }
            }
            if dirty {
                last_saved = Some(Instant::now());
            }
            stats.produced +=
                acknowledged(&mut sink, stop, &mut stop_deadline, shutdown, readiness)?;
            // The new states are in the changelog: the records they replace may go. Queued
            // now; the next write's acknowledgement covers them, or the one at the stop.
            // Any lost (a crash) are found again by a later restore, which hands them over
            // to be forgotten.
            for (p, earlier) in &replaced {
                changelog::forget(
                    &mut sink,
                    &c.topics.correlate_state,
                    &state_key(*p),
                    earlier,
                )?;
            }
            commit_batch(&mut source, metrics, "correlate", opened);
        }
        // Every message read is done (or read again after a seek back), so a batch that read
        // any took one branch above.
        if in_batch > 0 {
            stats.batches += 1;
        }
        for (_, p) in &revoked {
            parts.remove(p);
        }
        if !revoked.is_empty() {
            // A release that fails stays due: the next poll tries again.
            if let Err(e) = source.release_revoked() {
                errors.report(&e);
            }
        }
        restore_assigned(
            &restoring,
            &mut assigned,
            &mut parts,
            &state_key,
            &mut stats,
        )?;
        if let Some(m) = metrics {
            m.correlation_keys.set(
                parts
                    .values()
                    .map(|p| p.correlator.live_keys() as i64)
                    .sum(),
            );
        }
        view.observe(metrics, &source);
        if stopping {
            break;
        }
    }
    // The tombstones the last write queued: no later batch will carry them, and the producer
    // drops what is still queued when it goes.
    match acknowledged(&mut sink, stop, &mut stop_deadline, shutdown, readiness) {
        Ok(n) => stats.produced += n,
        Err(e) => tracing::warn!(
            error = %format!("{e:#}"),
            "the tombstones of replaced state records were not acknowledged before the shutdown deadline ({e:#}); the next restore of those partitions forgets them again"
        ),
    }
    if !quiet {
        tracing::info!(
            messages = stats.messages,
            skipped = stats.skipped,
            warnings = stats.warnings,
            derived = stats.derived,
            produced = stats.produced,
            dead_letters = stats.dead_letters,
            restored = stats.restored,
            read_again = stats.read_again,
            state_records = stats.state_records,
            state_deltas = stats.state_deltas,
            state_bytes = stats.state_bytes,
            batches = stats.batches,
            held = stats.held,
            "correlate worker stopped: {} messages, {} skipped as already in restored state, {} warning versions, {} derived detections, {} produced, {} dead letters, {} partitions restored ({} read again from behind the committed offset), {} state records ({} of them deltas; {} bytes), {} batches ({} of them committed with a later state)",
            stats.messages,
            stats.skipped,
            stats.warnings,
            stats.derived,
            stats.produced,
            stats.dead_letters,
            stats.restored,
            stats.read_again,
            stats.state_records,
            stats.state_deltas,
            stats.state_bytes,
            stats.batches,
            stats.held
        );
    }
    Ok(())
}

/// `recipients` with their topics, leaving out (and naming) those whose topic is not
/// found: publishing there would fail, or create the topic with a broker's defaults. A
/// topic among `known` is not asked about again.
fn with_found_topics(
    recipients: &[Recipient],
    known: &[(Recipient, String)],
    source: &Source,
    c: &Config,
) -> Vec<(Recipient, String)> {
    recipients
        .iter()
        .filter_map(|r| {
            let topic = c.topics.recipient_topic(&r.id);
            let found = known.iter().any(|(_, t)| *t == topic)
                || match source.partition_count(&topic, Duration::from_secs(10)) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(
                            recipient = %r.id,
                            topic = %topic,
                            "recipient {} left out until a reload or restart finds its topic {topic} ({e}); create it with tocsin topics create",
                            r.id
                        );
                        false
                    }
                };
            found.then(|| (r.clone(), topic))
        })
        .collect()
}

/// Take a reload: its correlation rules, escalation policy and recipients (each logged
/// when it differs from the one in use).
fn apply_reload(
    reload: Reload,
    parts: &mut HashMap<i32, Partition>,
    config: &mut CorrelatorConfig,
    outputs: &mut Outputs,
    source: &Source,
    c: &Config,
    quiet: bool,
) {
    replace_correlation_rules(parts, config, reload.rules, quiet);
    replace_policy(parts, config, outputs, reload.policy, quiet);
    if let Some(recipients) = reload.recipients {
        replace_recipients(outputs, recipients, source, c, quiet);
    }
}

/// Publish to reloaded `recipients` from now on, those whose topic is found (the others
/// are named, and asked about again at the next reload or restart).
fn replace_recipients(
    outputs: &mut Outputs,
    recipients: Vec<Recipient>,
    source: &Source,
    c: &Config,
    quiet: bool,
) {
    let next = with_found_topics(&recipients, &outputs.recipients, source, c);
    if next == outputs.recipients {
        return;
    }
    let added = next
        .iter()
        .filter(|(_, t)| !outputs.recipients.iter().any(|(_, u)| u == t))
        .count();
    let removed = outputs
        .recipients
        .iter()
        .filter(|(_, t)| !next.iter().any(|(_, u)| u == t))
        .count();
    outputs.recipients = next;
    if !quiet {
        tracing::info!(
            "recipients replaced: {added} added, {removed} removed, {} in all",
            outputs.recipients.len()
        );
    }
}

/// Give a reloaded escalation `policy` to every partition's correlator, to those restored
/// from now on, and to the renderings, when it differs from the one in use.
fn replace_policy(
    parts: &mut HashMap<i32, Partition>,
    config: &mut CorrelatorConfig,
    outputs: &mut Outputs,
    policy: EscalationPolicy,
    quiet: bool,
) {
    if outputs.policy == policy {
        return;
    }
    for part in parts.values_mut() {
        part.correlator.replace_policy(policy.clone());
    }
    config.policy = policy.clone();
    outputs.policy = policy;
    if !quiet {
        tracing::info!(
            "escalation policy replaced in {} partitions (it judges what comes next)",
            parts.len()
        );
    }
}

/// Give `rules` to every partition's correlator, and to those restored from now on. A
/// partition whose groups changed has its state written with the next batch.
fn replace_correlation_rules(
    parts: &mut HashMap<i32, Partition>,
    config: &mut CorrelatorConfig,
    rules: Vec<CorrelationRule>,
    quiet: bool,
) {
    // The same rules replace the same rules in every partition: one summary, with the
    // groups dropped in all of them.
    let mut total: Option<CorrelationRulesReplaced> = None;
    for part in parts.values_mut() {
        let replaced = part.correlator.replace_correlation_rules(&rules);
        if replaced.groups_dropped > 0 {
            part.dirty = true;
        }
        let dropped = total.map_or(0, |t| t.groups_dropped);
        total = Some(CorrelationRulesReplaced {
            groups_dropped: dropped + replaced.groups_dropped,
            ..replaced
        });
    }
    config.correlation_rules = rules;
    if let Some(t) = total.filter(|t| t.differs() && !quiet) {
        tracing::info!(
            added = t.added,
            changed = t.changed,
            removed = t.removed,
            kept = t.kept,
            groups_dropped = t.groups_dropped,
            "{t} in {} partitions",
            parts.len()
        );
    }
}

/// Whether the state restored for `msg`'s partition ends below the offset the group had
/// committed for it (`committed`, known when `msg` is the partition's first message since
/// its assignment). A state is written before the offsets it includes are committed, so
/// this means the newest state was lost (its records tombstoned by a stale owner, or written
/// in a form this version does not read), or the changelog was. The partition is then read
/// again from the state's end (`true`), and the detections between are merged again (the
/// warning versions they issue repeat, with the same ids); as far as the topic's retention
/// allows (the first offset still there otherwise). A seek that fails is an error: going on
/// would write a state that hides the gap from every later restore.
fn behind_the_committed(
    source: &Source,
    msg: &tocsin_kafka::source::Received<'_>,
    committed: Option<i64>,
    part: &Partition,
    changelog: &str,
) -> Result<bool> {
    let from = part.next_offset;
    let Some(committed) = committed.filter(|c| *c > from) else {
        return Ok(false);
    };
    let (topic, partition) = (msg.topic(), msg.partition());
    source.seek(topic, partition, from).with_context(|| {
        format!(
            "partition {partition} of {topic}: its state ends at offset {from}, below the offset the group committed ({committed}), and it cannot be read again from there"
        )
    })?;
    tracing::warn!(
        partition,
        from,
        committed,
        "partition {partition} of {topic}: the state restored from {changelog} ends at offset {from}, below the offset the group committed ({committed}): reading it again from {from}",
    );
    Ok(true)
}

/// What [`write_state`] wrote.
struct WrittenState {
    /// A delta rather than the whole state.
    delta: bool,
    bytes: usize,
}

/// Queue partition `part`'s state to the changelog: a delta when one is due
/// ([`Partition::delta_due`]), else the whole state. A whole state ends the chain of deltas
/// before it: the records the state before stood on go to `replaced`, to be tombstoned once
/// the new one is acknowledged.
fn write_state(
    sink: &mut Sink,
    changelog: &str,
    key: &StateKey,
    part: &mut Partition,
    cfg: &CorrelateSection,
    replaced: &mut Vec<(i32, Vec<String>)>,
) -> Result<WrittenState> {
    let record_bytes = cfg.state_record_bytes as usize;
    if let Some(delta) = part.delta_due(cfg.state_max_deltas, record_bytes) {
        let chain = part.chain.as_mut().expect("a delta follows a whole state");
        let (id, record) = changelog::write_delta(
            sink,
            changelog,
            key,
            part.next_offset,
            DELTA_FORMAT,
            chain.tip,
            &delta,
        )
        .with_context(|| {
            format!(
                "writing a state delta of partition {} ({} bytes) to {changelog}",
                key.partition,
                delta.len()
            )
        })?;
        chain.tip = id;
        chain.deltas += 1;
        chain.delta_bytes += delta.len();
        part.state_records.push(record);
        return Ok(WrittenState {
            delta: true,
            bytes: delta.len(),
        });
    }
    let state = part.correlator.snapshot();
    part.correlator.whole_state_written();
    let (id, records) = changelog::write(
        sink,
        changelog,
        key,
        part.next_offset,
        SNAPSHOT_FORMAT,
        &state,
        record_bytes,
    )
    .with_context(|| {
        format!(
            "writing the state of partition {} ({} bytes) to {changelog}",
            key.partition,
            state.len()
        )
    })?;
    // The same state written again (the same bytes at the same offset) has the same record
    // keys: those stay.
    let mut earlier = std::mem::replace(&mut part.state_records, records);
    let fresh: std::collections::HashSet<&String> = part.state_records.iter().collect();
    earlier.retain(|k| !fresh.contains(k));
    if !earlier.is_empty() {
        replaced.push((key.partition, earlier));
    }
    part.chain = Some(StateChain {
        tip: id,
        whole_bytes: state.len(),
        deltas: 0,
        delta_bytes: 0,
    });
    Ok(WrittenState {
        delta: false,
        bytes: state.len(),
    })
}

/// What restoring a partition needs.
struct Restoring<'a> {
    settings: &'a KafkaSettings,
    config: &'a Config,
    /// The correlators' configuration, with the correlation rules of the latest reload.
    correlator: CorrelatorConfig,
    timeout: Duration,
    metrics: Option<&'a Metrics>,
    quiet: bool,
}

/// Restore the partitions in `assigned` that this worker does not hold yet.
fn restore_assigned(
    r: &Restoring<'_>,
    assigned: &mut Vec<(String, i32)>,
    parts: &mut HashMap<i32, Partition>,
    state_key: &dyn Fn(i32) -> StateKey,
    stats: &mut CorrelateStats,
) -> Result<()> {
    for (_, partition) in std::mem::take(assigned) {
        if let std::collections::hash_map::Entry::Vacant(e) = parts.entry(partition) {
            e.insert(restore_logged(r, &state_key(partition), stats)?);
        }
    }
    Ok(())
}

/// [`restore`], with readiness, metrics and a log line.
fn restore_logged(
    r: &Restoring<'_>,
    key: &StateKey,
    stats: &mut CorrelateStats,
) -> Result<Partition> {
    let partition = key.partition;
    if let Some(m) = r.metrics {
        m.set_readiness(
            "correlate",
            Some(format!("restoring the state of partition {partition}")),
        );
    }
    let (p, read) = restore(r.settings, r.config, key, &r.correlator, r.timeout)?;
    stats.restored += 1;
    if let Some(m) = r.metrics {
        m.state_restores.inc();
        m.set_ready_for("correlate", Duration::from_secs(5));
    }
    if !r.quiet {
        tracing::info!(
            partition,
            next_offset = p.next_offset,
            live_keys = p.correlator.live_keys(),
            read_parts = read.parts,
            deltas = read.deltas,
            "partition {partition} of {}: state restored up to offset {} ({} live keys{}{})",
            key.topic,
            p.next_offset,
            p.correlator.live_keys(),
            if read.parts > 0 {
                format!("; read from {} records", read.parts)
            } else {
                String::new()
            },
            if read.deltas > 0 {
                format!("; {} deltas applied", read.deltas)
            } else {
                String::new()
            }
        );
    }
    Ok(p)
}

/// What a restore read, besides the whole state's one record.
#[derive(Debug, Default)]
struct RestoreRead {
    /// The records the whole state was read from, when it was split (0 when whole).
    parts: usize,
    /// The deltas applied on it.
    deltas: usize,
}

/// The state of one partition from the changelog, or a fresh correlator; and what was read.
fn restore(
    settings: &KafkaSettings,
    c: &Config,
    key: &StateKey,
    config: &CorrelatorConfig,
    timeout: Duration,
) -> Result<(Partition, RestoreRead)> {
    let record = changelog::restore(settings, &c.topics.correlate_state, key, timeout)?;
    let Some(r) = record else {
        let fresh = Partition::new(Correlator::new(config.clone()), 0);
        return Ok((fresh, RestoreRead::default()));
    };
    let mut correlator = Correlator::restore(config.clone(), &r.state).with_context(|| {
        format!(
            "the state of partition {} in {} cannot be read",
            key.partition, c.topics.correlate_state
        )
    })?;
    // The deltas on it, in order. One that cannot be applied (written by a later version,
    // say) leaves no state to go on from: the offsets up to the chain's end may be
    // committed, so the input after the state before it would not be read again.
    let mut next_offset = r.next_offset;
    let read_parts = if r.records.len() > 1 {
        r.records.len()
    } else {
        0
    };
    let deltas = r.deltas.len();
    let mut records = r.records;
    for d in r.deltas {
        correlator.apply_delta(&d.delta).with_context(|| {
            format!(
                "a state delta of partition {} in {} (offset {}) cannot be applied",
                key.partition, c.topics.correlate_state, d.next_offset
            )
        })?;
        next_offset = d.next_offset;
        // Forgotten with the whole state once this worker writes its own.
        records.push(d.key);
    }
    if r.skipped > 0 {
        tracing::warn!(
            partition = key.partition,
            skipped = r.skipped,
            "partition {} in {}: {} state records could not be read and were passed over",
            key.partition,
            c.topics.correlate_state,
            r.skipped
        );
    }
    if !r.stale.is_empty() {
        tracing::info!(
            partition = key.partition,
            stale_records = r.stale.len(),
            "partition {} in {}: {} records (parts, deltas) of states older than the one restored are still there; they are tombstoned after the next whole state is written",
            key.partition,
            c.topics.correlate_state,
            r.stale.len()
        );
    }
    let read = RestoreRead {
        parts: read_parts,
        deltas,
    };
    let mut partition = Partition::new(correlator, next_offset);
    partition.state_records = records;
    partition.state_records.extend(r.stale);
    // The first write is whole (`chain` is `None`): this worker never continues a chain
    // that another owner may still be writing. (A stale owner may still be going on from
    // the records handed over here, which are tombstoned after that write; whatever it
    // commits past this worker's state is then read again: `behind_the_committed`.)
    Ok((partition, read))
}

/// Merge one detection message and produce what it causes.
#[allow(clippy::too_many_arguments)] // the worker loop's state, passed apart for borrowing
fn process(
    msg: &Received<'_>,
    part: &mut Partition,
    out: &Outputs,
    sink: &mut Sink,
    warnings: &mut Vec<EarlyWarning>,
    json: &mut Vec<u8>,
    stats: &mut CorrelateStats,
    metrics: Option<&Metrics>,
) -> Result<()> {
    let d: Detection = match serde_json::from_slice(msg.payload()) {
        Ok(d) => d,
        Err(e) => {
            stats.dead_letters += 1;
            if let Some(m) = metrics {
                m.dead_letters
                    .with_label_values(&["invalid-detection"])
                    .inc();
            }
            let reason = format!("not a Tocsin detection: {e}");
            dead_letter::send(
                sink,
                &out.dead_letter_topic,
                msg,
                "invalid-detection",
                &reason,
                usize::MAX,
            )?;
            return Ok(());
        }
    };
    // The match worker keys each copy by one correlation key (a keyless detection by its id).
    let key = msg
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .unwrap_or(&d.id);
    let before = part.correlator.stats();
    part.correlator.push_keyed(&d, key, warnings);
    if let Some(m) = metrics {
        let after = part.correlator.stats();
        m.late.inc_by(after.late.saturating_sub(before.late));
        m.evictions
            .inc_by(after.evicted.saturating_sub(before.evicted));
    }
    publish_outputs(part, out, sink, warnings, json, stats, metrics)
}

/// Publish the warnings in `warnings` and the correlation detections `part` derived.
fn publish_outputs(
    part: &mut Partition,
    out: &Outputs,
    sink: &mut Sink,
    warnings: &[EarlyWarning],
    json: &mut Vec<u8>,
    stats: &mut CorrelateStats,
    metrics: Option<&Metrics>,
) -> Result<()> {
    for f in part.correlator.take_derived() {
        stats.derived += 1;
        publish_detection(sink, &out.detections_topic, &f, json)?;
    }
    for w in warnings {
        stats.warnings += 1;
        publish_warning(sink, out, w, json, metrics)?;
    }
    Ok(())
}

/// Statistics older than this say nothing about a partition now: the worker was busy
/// elsewhere (restoring a partition, waiting for the broker), and messages may wait unread.
const FRESH_STATISTICS: Duration = Duration::from_secs(3);

/// Move on the event time of each partition that has been idle for longer than `grace`
/// (`correlate.idle_grace_s`), so that windows judged at their close and quiet warnings end
/// though nothing more arrives ([`Correlator::advance`]). Idle means caught up: the
/// consumer's statistics, fresh, newer than the partition's last message and with the
/// broker reachable, show nothing unread or uncommitted (so not before the partition's
/// newest state is written: `correlate.state_interval_ms`). From the first such statistics
/// on, the partition's event time
/// follows the wall clock, `grace` behind. Time the worker spends elsewhere does not count
/// (its statistics age), nor do partitions being revoked. What that ends is published like a
/// detection's outputs, and the state is written with the batch (its offset unchanged);
/// when nothing ended, it is still written once event time has moved by `grace`, so that a
/// restart goes on from about there. True when a state must be written now (something
/// ended, or event time moved by `grace`), whatever `correlate.state_interval_ms` says.
#[allow(clippy::too_many_arguments)] // the worker loop's state, passed apart for borrowing
fn advance_idle(
    parts: &mut HashMap<i32, Partition>,
    revoked: &[(String, i32)],
    health: &Health,
    topic: &str,
    grace: Duration,
    out: &Outputs,
    sink: &mut Sink,
    warnings: &mut Vec<EarlyWarning>,
    json: &mut Vec<u8>,
    stats: &mut CorrelateStats,
    metrics: Option<&Metrics>,
    quiet: bool,
) -> Result<bool> {
    let now = Instant::now();
    // Lag in statistics from a worker cut off from the broker is the last known one.
    let Some(observed) = health.observed.filter(|t| {
        health.broker_up == Some(true) && now.saturating_duration_since(*t) <= FRESH_STATISTICS
    }) else {
        return Ok(false);
    };
    let mut write_now = false;
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    for (partition, part) in parts.iter_mut() {
        if revoked.iter().any(|(_, p)| p == partition) {
            continue;
        }
        let caught_up = observed > part.last_read
            && health
                .lag
                .iter()
                .any(|(t, p, lag)| t == topic && p == partition && *lag == 0);
        if !caught_up {
            part.quiet_since = None;
            continue;
        }
        let Some(seen) = part.correlator.watermark() else {
            continue;
        };
        let (since, from) = *part.quiet_since.get_or_insert((observed, seen));
        let Some(behind) = now.saturating_duration_since(since).checked_sub(grace) else {
            continue;
        };
        let moved = i64::try_from(behind.as_millis()).unwrap_or(i64::MAX);
        let to = Timestamp(from.0.saturating_add(moved));
        warnings.clear();
        let ended = part.correlator.advance(to, warnings);
        part.unsaved_advance = true;
        let far = part
            .saved_watermark
            .is_none_or(|w| to.0.saturating_sub(w.0) >= grace_ms);
        part.dirty |= ended || far;
        write_now |= ended || far;
        if !ended {
            continue;
        }
        let derived_before = stats.derived;
        publish_outputs(part, out, sink, warnings, json, stats, metrics)?;
        if !quiet {
            let derived = stats.derived - derived_before;
            tracing::info!(
                partition,
                event_time = to.0,
                warnings = warnings.len(),
                derived,
                "partition {partition} idle for {:.0} s: its event time moved on to {}, which ended {} warning version(s) and {} correlation detection(s)",
                now.saturating_duration_since(since).as_secs_f64(),
                to,
                warnings.len(),
                derived
            );
        }
    }
    Ok(write_now)
}

/// One rendering per audience topic and per concerned recipient, keyed by warning id, with
/// the version and status in headers (so consumers can deduplicate without parsing).
fn publish_warning(
    sink: &mut Sink,
    out: &Outputs,
    w: &EarlyWarning,
    json: &mut Vec<u8>,
    metrics: Option<&Metrics>,
) -> Result<()> {
    if let Some(m) = metrics {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if now_ms >= w.issued_at.0 {
            m.warning_latency_seconds
                .observe((now_ms - w.issued_at.0) as f64 / 1000.0);
        }
    }
    let version = w.version.to_string();
    let status = serde_json::to_value(w.status)?;
    let headers = [
        ("tocsin.warning.version", version.as_str()),
        ("tocsin.warning.status", status.as_str().unwrap_or("")),
    ];
    let renderings = out
        .audiences
        .iter()
        .filter_map(|(a, ceiling, topic)| {
            audience::render(w, *a, *ceiling, &out.policy).map(|r| (r, topic, true))
        })
        .chain(
            out.recipients
                .iter()
                .filter_map(|(r, topic)| r.rendering(w, &out.policy).map(|w| (w, topic, false))),
        );
    for (rendering, topic, audience_topic) in renderings {
        json.clear();
        serde_json::to_writer(&mut *json, &rendering)?;
        sink.send(topic, Some(w.warning_id.as_bytes()), json, &headers)?;
        // Counted once per audience topic (recipient copies are the same versions).
        if let (Some(m), true) = (metrics, audience_topic) {
            m.warnings
                .with_label_values(&[status.as_str().unwrap_or(""), rendering.audience.as_str()])
                .inc();
        }
    }
    Ok(())
}
