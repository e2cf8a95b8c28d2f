//! `tocsin worker archive`: the event topics, the detections topic and the technical
//! warnings topic into the Parquet archive that `tocsin query`, `hunt` and `report` read.
//!
//! It is a consumer group of its own, so archiving never slows matching or correlation, and
//! it follows the workers' delivery rule with the archive in the producer's place: rows are
//! buffered, written as complete Parquet files ([`ArchiveWriter::flush`]) once
//! `archive.flush_rows` rows are buffered or the oldest has waited `archive.flush_s`
//! seconds, and only then are the offsets committed. A kill loses nothing (the uncommitted
//! messages are read again); its cost is that rows of the last flush may be archived twice.
//!
//! What is archived, per topic:
//! - events: the raw JSON with the context the match worker gives it (message headers
//!   `sector`, `member_state`, `organisation` win over the event's fields) and the event time
//!   (else the message timestamp). Messages that are not JSON objects are counted and left
//!   out: the match worker dead-letters them.
//! - detections: each detection once. The match worker publishes a detection once per
//!   correlation key; the copy keyed by the first key (by its id when it has none) is kept.
//! - warnings: every version of the technical rendering (TLP up to AMBER: RED never reaches
//!   the audience topics), as the correlate workers publish it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;

use tocsin_archive::writer::ArchiveWriter;
use tocsin_core::{ContextFields, Detection, EarlyWarning, Event, EventIndex};
use tocsin_kafka::source::{Received, Source};

use super::{
    message_context, stop_on_signals, supervised, worker_span, ClusterView, ErrorReporter,
    Resumption, WorkerArgs,
};
use crate::config::Config;
use crate::metrics::Metrics;

/// `tocsin worker archive`.
#[derive(Args)]
pub struct ArchiveWorkerArgs {
    #[command(flatten)]
    common: WorkerArgs,
    /// The archive directory. Config `archive.dir`.
    #[arg(long, value_name = "DIR")]
    archive: Option<std::path::PathBuf>,
    /// Consumer group. Config `archive.group`.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// Rows buffered before a flush (files written, offsets committed). Config
    /// `archive.flush_rows`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    flush_rows: Option<u64>,
    /// Longest a row waits before a flush, in seconds. Config `archive.flush_s`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    flush_s: Option<u64>,
    /// Remove date partitions older than this many days before the newest event; 0 keeps
    /// everything. Config `archive.retention_days`.
    #[arg(long, value_name = "DAYS")]
    retention_days: Option<u64>,
}

pub fn main(a: ArchiveWorkerArgs) -> Result<std::process::ExitCode> {
    let mut c = a.common.resolve()?;
    if let Some(d) = &a.archive {
        c.archive.dir = d.clone();
    }
    if let Some(g) = &a.group {
        c.archive.group = g.clone();
    }
    for (flag, field) in [
        (a.flush_rows, &mut c.archive.flush_rows),
        (a.flush_s, &mut c.archive.flush_s),
        (a.retention_days, &mut c.archive.retention_days),
    ] {
        if let Some(v) = flag {
            *field = v;
        }
    }
    anyhow::ensure!(
        !c.archive.dir.as_os_str().is_empty(),
        "worker archive needs an archive directory: --archive DIR or archive.dir"
    );
    // Only the profile's context fields are needed, not a compiled rule set.
    let mut last_good = crate::load::LastGood::new();
    let sources = crate::load::RuleSources::load_all(&c.rules.paths, &[], None, &mut last_good)?;
    let profile = sources.profile((!c.rules.profile.is_empty()).then_some(&*c.rules.profile))?;
    let metrics = super::serve_metrics(&c, a.common.quiet)?;
    if let Some(m) = &metrics {
        m.set_ready(true);
    }
    let stop = stop_on_signals(&c)?;
    let _span = worker_span("archive", &c.archive.group).entered();
    supervised("archive", &stop, || {
        run(
            &c,
            &profile.context,
            metrics.as_deref(),
            &stop,
            a.common.quiet,
        )
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Counters of an archive worker, printed on exit.
#[derive(Default, Debug)]
struct ArchiveWorkerStats {
    messages: u64,
    events: u64,
    detections: u64,
    warnings: u64,
    /// Detection copies under another key than the first.
    copies: u64,
    /// Messages that could not be read (not JSON, not a detection or warning).
    unreadable: u64,
    flushes: u64,
}

/// Which table a topic feeds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    Events,
    Detections,
    Warnings,
}

/// Run until `stop`; returns after the last rows are written and committed.
fn run(
    c: &Config,
    context: &ContextFields,
    metrics: Option<&Metrics>,
    stop: &AtomicBool,
    quiet: bool,
) -> Result<()> {
    let settings = c.kafka_settings();
    let cfg = &c.archive;
    let warnings_topic = c.topics.audience_topic("technical");
    let mut topics = c.topics.events.clone();
    topics.push(c.topics.detections.clone());
    topics.push(warnings_topic.clone());
    let feed_of = |topic: &str| {
        if topic == c.topics.detections {
            Feed::Detections
        } else if topic == warnings_topic {
            Feed::Warnings
        } else {
            Feed::Events
        }
    };
    let mut source = Source::subscribe(&settings, &cfg.group, &topics)
        .with_context(|| format!("connecting to {settings}"))?;
    let retention =
        (cfg.retention_days > 0).then(|| u32::try_from(cfg.retention_days).unwrap_or(u32::MAX));
    let mut writer = ArchiveWriter::create(&cfg.dir, retention)?;
    if !quiet {
        tracing::info!(
            archive = %cfg.dir.display(),
            topics = %topics.join(","),
            "archive worker in group '{}' archiving {} into {}",
            cfg.group,
            topics.join(", "),
            cfg.dir.display()
        );
    }
    let mut view = ClusterView::new("archive", metrics);
    let mut errors = ErrorReporter::default();
    let mut resumption = Resumption::default();
    let mut stats = ArchiveWorkerStats::default();
    let mut index = EventIndex::new();
    let flush_after = Duration::from_secs(cfg.flush_s);
    let mut oldest: Option<Instant> = None;
    let mut last_view = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if !stopping {
            match source.poll(Duration::from_millis(100)) {
                None => resumption.assigned(&source, &source.take_assigned()),
                Some(Err(e)) => errors.report(&e),
                Some(Ok(msg)) => {
                    resumption.read(&msg);
                    stats.messages += 1;
                    archive(
                        &msg,
                        feed_of(msg.topic()),
                        context,
                        &mut index,
                        &mut writer,
                        &mut stats,
                    )?;
                    source.done(&msg);
                    oldest.get_or_insert_with(Instant::now);
                }
            }
            // Revoked partitions: their rows are flushed and their offsets committed now,
            // while they are still ours (the next poll lets them go), so that their next
            // owner starts after them.
            source.take_revoked();
        }
        let due = writer.buffered_rows() as u64 >= cfg.flush_rows
            || oldest.is_some_and(|t| t.elapsed() >= flush_after)
            || source.revocation_pending();
        if (due || stopping) && source.has_pending() {
            writer.flush()?;
            stats.flushes += 1;
            oldest = None;
            if let Err(e) = source.commit() {
                tracing::warn!(
                    error = %e,
                    "commit failed: {e} (the rows are archived; their messages will be read and archived again)"
                );
            }
        }
        if last_view.elapsed() >= Duration::from_secs(1) {
            view.observe(metrics, &source);
            last_view = Instant::now();
        }
        if stopping {
            break;
        }
    }
    writer.flush()?;
    if !quiet {
        let s = writer.stats();
        tracing::info!(
            messages = stats.messages,
            events = stats.events,
            detections = stats.detections,
            warnings = stats.warnings,
            copies = stats.copies,
            unreadable = stats.unreadable,
            flushes = stats.flushes,
            files = s.files,
            expired = s.expired_partitions,
            "archive worker stopped: {} messages, {} events, {} detections ({} copies under other keys skipped), {} warning versions, {} unreadable, {} files in {} flushes",
            stats.messages,
            stats.events,
            stats.detections,
            stats.copies,
            stats.warnings,
            stats.unreadable,
            s.files,
            stats.flushes
        );
    }
    Ok(())
}

/// Buffer one message's row.
fn archive(
    msg: &Received<'_>,
    feed: Feed,
    context: &ContextFields,
    index: &mut EventIndex,
    writer: &mut ArchiveWriter,
    stats: &mut ArchiveWorkerStats,
) -> Result<()> {
    match feed {
        Feed::Events => {
            let Ok(event) = Event::parse(msg.payload(), index) else {
                stats.unreadable += 1;
                return Ok(());
            };
            let ctx = message_context(&event, msg, context);
            writer.event(&event, &ctx, ctx.time.unwrap_or_default())?;
            stats.events += 1;
        }
        Feed::Detections => {
            let Ok(d) = serde_json::from_slice::<Detection>(msg.payload()) else {
                stats.unreadable += 1;
                return Ok(());
            };
            let first_key = d.correlation_keys.first().unwrap_or(&d.id);
            if msg.key() != Some(first_key.as_bytes()) {
                stats.copies += 1;
                return Ok(());
            }
            writer.detection(&d)?;
            stats.detections += 1;
        }
        Feed::Warnings => {
            let Ok(w) = serde_json::from_slice::<EarlyWarning>(msg.payload()) else {
                stats.unreadable += 1;
                return Ok(());
            };
            writer.warning(&w)?;
            stats.warnings += 1;
        }
    }
    Ok(())
}
