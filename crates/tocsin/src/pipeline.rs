//! The embedded pipeline: JSON lines in, detections and early warnings out, in one process.
//!
//! Per line, top to bottom: decode (validate and index the JSON) → match (route, prefilter,
//! verify, indicators) → only for a match: context → detections → correlate → warnings. A
//! line that cannot be decoded goes to the dead-letter sink with its source, line number and
//! reason; the run goes on. The Kafka match worker (`worker.rs`) calls the same library
//! steps; it differs at the edges and in two rules of its own: a message without sector,
//! member state and organisation is dead-lettered, and a missing event time falls back to
//! the message timestamp.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

use tocsin_core::{Audience, Tlp};
use tocsin_core::{
    ContextFields, Detection, EarlyWarning, Event, EventContext, EventIndex, SourceRef, Timestamp,
};
use tocsin_correlate::audience::{self, Recipient};
use tocsin_correlate::{misp, stix, Correlator};
use tocsin_match::{CompiledRules, MatchScratch};
use tocsin_rules::EscalationPolicy;

use crate::input::{read_line, Line};
use crate::metrics::{MatchWorkPublisher, Metrics};
use crate::reload::Reloaded;

/// Where undecodable lines go.
pub enum DeadLetterSink {
    /// JSON lines to a writer.
    Writer(Box<dyn Write>),
    /// Count, and keep the first few reasons for a stderr summary.
    Summary(Vec<String>),
}

#[derive(Serialize)]
struct DeadLetter<'a> {
    source: &'a str,
    line: u64,
    reason: String,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    truncated: bool,
}

/// How warnings are written: which rendering goes to the main output, in which format, and
/// which recipients get their own files.
pub struct WarningOutputs {
    /// The main output.
    pub out: Box<dyn Write>,
    /// Its audience.
    pub audience: Audience,
    /// Its TLP ceiling.
    pub ceiling: Tlp,
    /// Its format.
    pub format: WarningFormat,
    /// Recipients with their own output (one JSON line per warning version they receive).
    pub recipients: Vec<(Recipient, Box<dyn Write>)>,
    /// The escalation policy (renderings recompute breadth and severity with it).
    pub policy: EscalationPolicy,
}

impl WarningOutputs {
    /// The technical rendering, as JSON, to `out`.
    pub fn technical(out: Box<dyn Write>, policy: EscalationPolicy) -> Self {
        WarningOutputs {
            out,
            audience: Audience::Technical,
            ceiling: audience::default_ceiling(Audience::Technical),
            format: WarningFormat::Json,
            recipients: Vec::new(),
            policy,
        }
    }
}

/// The file of recipient `r` in `dir` (`--recipients-out`): `SLUG.jsonl`, emptied first
/// unless `append`.
pub fn recipient_output(
    dir: &std::path::Path,
    r: &Recipient,
    append: bool,
) -> Result<Box<dyn Write>> {
    let path = dir.join(format!("{}.jsonl", r.slug()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(std::io::BufWriter::with_capacity(
        256 * 1024,
        file,
    )))
}

/// The format of rendered warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WarningFormat {
    /// `tocsin.early-warning/v1` JSON, one per line.
    Json,
    /// A STIX 2.1 bundle per warning version, one per line.
    Stix,
    /// A MISP event per warning version, one per line.
    Misp,
}

/// Counters of a run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RunStats {
    pub events: u64,
    pub bytes: u64,
    pub dead_letters: u64,
    pub detections: u64,
    pub warning_versions: u64,
    /// Warning versions with no rendering for the main output's audience and ceiling.
    pub withheld: u64,
    pub missing_time: u64,
    pub reloads: u64,
    /// `--calibrate` compiled rules with prefilters chosen by literal frequencies (and
    /// swapped them in, unless the input ended or the rules were reloaded first).
    pub calibrated: bool,
    pub bad_context: u64,
    pub seconds: f64,
    /// What `--archive` wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<tocsin_archive::writer::ArchiveStats>,
}

/// The pipeline state.
pub struct Pipeline {
    rules: Arc<CompiledRules>,
    /// New rule sets from the reloader, swapped in between two events.
    reloads: Option<Receiver<Reloaded>>,
    /// `--exercise`: kept in every policy a reload brings.
    exercise: bool,
    /// `--recipients-out`: where a recipient a reload adds gets its file.
    recipients_dir: Option<std::path::PathBuf>,
    context_fields: ContextFields,
    scratch: MatchScratch,
    /// What of the scratch space's counters the metrics have.
    match_work: MatchWorkPublisher,
    index: EventIndex,
    correlator: Correlator,
    max_event_bytes: usize,
    outputs: WarningOutputs,
    detections_out: Option<Box<dyn Write>>,
    dead_letters: DeadLetterSink,
    detections: Vec<Detection>,
    warnings: Vec<EarlyWarning>,
    latest: BTreeMap<String, EarlyWarning>,
    last_time: Option<Timestamp>,
    line: Vec<u8>,
    json: Vec<u8>,
    stats: RunStats,
    started: Instant,
    metrics: Option<Arc<Metrics>>,
    /// `--archive`: every event, detection and warning version, as Parquet.
    archive: Option<tocsin_archive::writer::ArchiveWriter>,
    /// `--calibrate`: the first events, copied aside until there are enough, then the
    /// calibrated rules being compiled.
    calibration: Option<Calibration>,
}

/// Loads and compiles the rules again with prefilters chosen by literal frequencies over a
/// sample (with the correlation rules loaded with them).
pub type Recompile = Box<dyn FnOnce(&[Vec<u8>]) -> Result<Reloaded> + Send>;

/// Where `--calibrate` is.
enum Calibration {
    /// The sample being gathered, and what to do with it.
    Gathering {
        wanted: usize,
        sample: Vec<Vec<u8>>,
        recompile: Recompile,
    },
    /// Compiling in a thread of its own, while the events go on being matched with the
    /// current rules: it took half a second of a worker's time (parsing the rules again,
    /// matching the sample for every literal, compiling twice), in which no event was
    /// matched. `reloads`: how many reloads had been taken when it started (a set
    /// reloaded since is newer than the files it read).
    Compiling {
        thread: std::thread::JoinHandle<Result<Reloaded>>,
        reloads: u64,
    },
}

impl Pipeline {
    pub fn new(
        rules: Arc<CompiledRules>,
        correlator: Correlator,
        max_event_bytes: usize,
        outputs: WarningOutputs,
        detections_out: Option<Box<dyn Write>>,
        dead_letters: DeadLetterSink,
    ) -> Self {
        Pipeline {
            context_fields: rules.profile().context.clone(),
            scratch: rules.new_scratch(),
            match_work: MatchWorkPublisher::default(),
            rules,
            reloads: None,
            exercise: false,
            recipients_dir: None,
            index: EventIndex::new(),
            correlator,
            max_event_bytes,
            outputs,
            detections_out,
            dead_letters,
            detections: Vec::new(),
            warnings: Vec::new(),
            latest: BTreeMap::new(),
            last_time: None,
            line: Vec::with_capacity(64 * 1024),
            json: Vec::with_capacity(4096),
            stats: RunStats::default(),
            started: Instant::now(),
            metrics: None,
            archive: None,
            calibration: None,
        }
    }

    /// Once `events` valid events have been seen, compile the rules again with `recompile`
    /// over copies of them, in a thread of its own, and swap the result in between two
    /// events once it is ready.
    pub fn with_calibration(mut self, events: usize, recompile: Recompile) -> Self {
        self.calibration = Some(Calibration::Gathering {
            wanted: events,
            sample: Vec::with_capacity(events.min(100_000)),
            recompile,
        });
        self
    }

    /// Start compiling the calibrated rules when the sample is complete, and swap them in
    /// between two events once compiled. On failure the current rules stay (matches are
    /// the same either way, only slower).
    fn calibrate_if_ready(&mut self) {
        if self.calibration.is_none() {
            return; // every event once calibrated, or without `--calibrate`
        }
        self.calibration = match self.calibration.take() {
            Some(Calibration::Gathering {
                wanted,
                sample,
                recompile,
            }) if sample.len() >= wanted => {
                let compiling = std::thread::Builder::new()
                    .name("tocsin-calibrate".into())
                    .spawn(move || recompile(&sample));
                match compiling {
                    Ok(thread) => Some(Calibration::Compiling {
                        thread,
                        reloads: self.stats.reloads,
                    }),
                    Err(e) => {
                        crate::logging::warn(&format!(
                            "tocsin: cannot start calibrating, keeping the current prefilters: {e}"
                        ));
                        None
                    }
                }
            }
            Some(Calibration::Compiling { thread, reloads }) if thread.is_finished() => {
                self.finish_calibration(thread, reloads, true);
                None
            }
            other => other,
        };
    }

    /// Wait for the calibrated rules compiled by `thread`, and swap them in (`swap`,
    /// unless no event is left) if no reload came first (`reloads` when it started): a
    /// reloaded set is newer.
    fn finish_calibration(
        &mut self,
        thread: std::thread::JoinHandle<Result<Reloaded>>,
        reloads: u64,
        swap: bool,
    ) {
        match thread.join() {
            Ok(Ok(_)) if self.stats.reloads != reloads => crate::logging::warn(
                "tocsin: the rules were reloaded while calibrating: the reloaded set stays (the next reload uses the frequencies)",
            ),
            Ok(Ok(loaded)) => {
                if swap {
                    self.take_rule_set(loaded);
                }
                self.stats.calibrated = true;
            }
            Ok(Err(e)) => crate::logging::warn(&format!(
                "tocsin: calibration failed, keeping the current prefilters: {e:#}"
            )),
            Err(_) => crate::logging::warn(
                "tocsin: calibration failed (its thread panicked), keeping the current prefilters",
            ),
        }
    }

    /// Archive every event, detection and warning version into `archive`.
    pub fn with_archive(mut self, archive: tocsin_archive::writer::ArchiveWriter) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Count what happens in `metrics` (Prometheus).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        metrics.rules_loaded.set(self.rules.stats().rules as i64);
        metrics
            .indicators_loaded
            .set(self.rules.stats().indicators as i64);
        metrics.rule_set_version.set(1);
        metrics.set_ready(true);
        self.metrics = Some(metrics);
        self
    }

    /// Take new rule sets from `reloads`: each is swapped in atomically between two events,
    /// so every event is matched by exactly one rule set, old or new.
    pub fn with_reloads(mut self, reloads: Receiver<Reloaded>) -> Self {
        self.reloads = Some(reloads);
        self
    }

    fn take_reload(&mut self) {
        let Some(rx) = &self.reloads else { return };
        if let Some(reloaded) = rx.try_iter().last() {
            self.take_rule_set(reloaded);
            self.stats.reloads += 1;
        }
    }

    /// Match the next events with a loaded rule set, and correlate their detections with
    /// its correlation rules (the detection rules tag detections with their keys).
    fn take_rule_set(&mut self, loaded: Reloaded) {
        self.swap_rules(loaded.compiled);
        let replaced = self
            .correlator
            .replace_correlation_rules(&loaded.correlations);
        if replaced.differs() {
            crate::logging::say(&format!("tocsin: {replaced}"));
        }
        if let Some(mut policy) = loaded.policy {
            policy.exercise |= self.exercise;
            if self.correlator.replace_policy(policy.clone()) {
                self.outputs.policy = policy;
                crate::logging::say(
                    "tocsin: escalation policy replaced (it judges what comes next)",
                );
            }
        }
        if !loaded.recipients.is_empty() {
            if let Err(e) = self.replace_recipients(loaded.recipients) {
                crate::logging::warn(&format!("tocsin: the recipients stay as they were: {e:#}"));
            }
        }
    }

    /// Give the warnings from now on to `recipients` (a reload), when they have their own
    /// files (`--recipients-out`): a recipient kept keeps its file, one added gets its file
    /// (appended to, should it have had one before), one removed gets no more.
    fn replace_recipients(&mut self, recipients: Vec<Recipient>) -> Result<()> {
        let Some(dir) = &self.recipients_dir else {
            return Ok(());
        };
        let current = &self.outputs.recipients;
        if current.len() == recipients.len()
            && current.iter().zip(&recipients).all(|((a, _), b)| a == b)
        {
            return Ok(());
        }
        // Every new file first: a failure leaves the recipients as they were.
        let mut opened = Vec::new();
        for r in &recipients {
            if current.iter().any(|(c, _)| c.id == r.id) {
                continue;
            }
            opened.push((r.id.clone(), recipient_output(dir, r, true)?));
        }
        let mut previous = std::mem::take(&mut self.outputs.recipients);
        let (added, kept) = (opened.len(), recipients.len() - opened.len());
        for r in recipients {
            let out = match previous.iter().position(|(c, _)| c.id == r.id) {
                Some(i) => previous.swap_remove(i).1,
                None => {
                    let i = opened
                        .iter()
                        .position(|(id, _)| *id == r.id)
                        .expect("opened above");
                    opened.swap_remove(i).1
                }
            };
            self.outputs.recipients.push((r, out));
        }
        let removed = previous.len();
        for (recipient, mut out) in previous {
            if let Err(e) = out.flush() {
                crate::logging::warn(&format!(
                    "tocsin: the last lines for recipient {} were not written: {e}",
                    recipient.id
                ));
            }
        }
        crate::logging::say(&format!(
            "tocsin: recipients replaced: {added} added, {kept} kept, {removed} removed"
        ));
        Ok(())
    }

    /// Where a recipient added by a reload gets its file (`--recipients-out`).
    pub fn with_recipients_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.recipients_dir = dir;
        self
    }

    /// Mark every warning as exercise traffic whatever the policy says (`--exercise`),
    /// policies reloaded later included.
    pub fn forcing_exercise(mut self, forced: bool) -> Self {
        self.exercise = forced;
        self
    }

    /// Match the next events with `rules`.
    fn swap_rules(&mut self, rules: Arc<CompiledRules>) {
        self.publish_match_work();
        self.match_work.restart();
        self.scratch = rules.new_scratch();
        self.context_fields = rules.profile().context.clone();
        self.rules = rules;
        if let Some(m) = &self.metrics {
            m.rules_loaded.set(self.rules.stats().rules as i64);
            m.indicators_loaded
                .set(self.rules.stats().indicators as i64);
            m.rule_set_version.inc();
        }
    }

    /// Process every line of one source.
    pub fn process_source(&mut self, name: &str, reader: &mut dyn BufRead) -> Result<()> {
        let mut line_no = 0u64;
        let events_counter = self
            .metrics
            .as_ref()
            .map(|m| m.events.with_label_values(&[name]));
        let mut line = std::mem::take(&mut self.line);
        let result = loop {
            // The common case, read where the reader holds it, without a copy: a whole
            // line within the limit in the reader's buffer. Any other (across the buffer's
            // end, over the limit, the last line without a newline, a read error) is read
            // by `read_line` into `line`.
            if let Ok(chunk) = reader.fill_buf() {
                let end = memchr::memchr(b'\n', chunk).filter(|&end| end <= self.max_event_bytes);
                if let Some(end) = end {
                    line_no += 1;
                    let text = chunk[..end].strip_suffix(b"\r").unwrap_or(&chunk[..end]);
                    let taken = self.take_line(name, line_no, text, events_counter.as_ref());
                    reader.consume(end + 1);
                    taken?;
                    continue;
                }
            }
            match read_line(reader, &mut line, self.max_event_bytes) {
                Ok(None) => break Ok(()),
                Ok(Some(kind)) => {
                    line_no += 1;
                    match kind {
                        Line::Ok => {
                            self.take_line(name, line_no, &line, events_counter.as_ref())?
                        }
                        Line::Oversized { total } => {
                            self.stats.events += 1;
                            self.stats.bytes += total;
                            let reason = format!(
                                "event of {total} bytes exceeds the limit of {} bytes (--max-event-bytes)",
                                self.max_event_bytes
                            );
                            self.dead_letter(name, line_no, "too-large", reason, total, &line)?;
                        }
                    }
                }
                Err(e) => {
                    break Err(e)
                        .with_context(|| format!("error reading {name} at line {}", line_no + 1))
                }
            }
        };
        self.line = line;
        result
    }

    /// One line within the limit (without its line end): an event, or a blank separator.
    fn take_line(
        &mut self,
        name: &str,
        line_no: u64,
        line: &[u8],
        events_counter: Option<&prometheus::IntCounter>,
    ) -> Result<()> {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            // Blank lines in JSON-lines input are separators, not events.
            return Ok(());
        }
        let timed = self.metrics.is_some() && line_no.is_multiple_of(64);
        let t = timed.then(Instant::now);
        self.process_event(name, line_no, line, None)?;
        if let (Some(c), Some(m)) = (events_counter, &self.metrics) {
            c.inc();
            m.bytes.inc_by(line.len() as u64);
            if let Some(t) = t {
                m.event_seconds.observe(t.elapsed().as_secs_f64());
                self.match_work.publish(m, &self.scratch.stats);
            }
            if line_no.is_multiple_of(1024) {
                self.publish_correlator_gauges();
            }
        }
        Ok(())
    }

    /// Process one archived event (for a hunt): `source` and `position` name it in
    /// detections and dead letters; the context and time it was archived with win over what
    /// its JSON says (the live path may have taken them from message headers).
    pub fn process_archived(
        &mut self,
        source: &str,
        position: u64,
        e: &tocsin_archive::query::ArchivedEvent<'_>,
    ) -> Result<()> {
        self.process_event(source, position, e.raw.as_bytes(), Some(e))
    }

    /// Record an undecodable line; a `too-large` line's payload is its truncated prefix.
    fn dead_letter(
        &mut self,
        source: &str,
        line: u64,
        kind: &'static str,
        reason: String,
        total: u64,
        payload: &[u8],
    ) -> Result<()> {
        let truncated = kind == "too-large";
        self.stats.dead_letters += 1;
        if let Some(m) = &self.metrics {
            m.dead_letters.with_label_values(&[kind]).inc();
        }
        match &mut self.dead_letters {
            DeadLetterSink::Summary(first) => {
                if first.len() < 5 {
                    first.push(format!("{source}:{line}: {reason}"));
                }
            }
            DeadLetterSink::Writer(w) => {
                let text = std::str::from_utf8(payload).ok();
                let record = DeadLetter {
                    source,
                    line,
                    reason,
                    bytes: total,
                    payload: text,
                    payload_base64: if text.is_none() {
                        Some(tocsin_core::encoding::base64(payload))
                    } else {
                        None
                    },
                    truncated,
                };
                serde_json::to_writer(&mut *w, &record)?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn process_event(
        &mut self,
        source: &str,
        line_no: u64,
        bytes: &[u8],
        archived: Option<&tocsin_archive::query::ArchivedEvent<'_>>,
    ) -> Result<()> {
        self.take_reload();
        self.calibrate_if_ready();
        self.stats.events += 1;
        self.stats.bytes += bytes.len() as u64;
        let event = match Event::parse(bytes, &mut self.index) {
            Ok(e) => e,
            Err(e) => {
                let reason = match e.kind() {
                    "invalid-json" => format!("invalid JSON: {e}"),
                    _ => e.to_string(),
                };
                let total = bytes.len() as u64;
                return self.dead_letter(source, line_no, e.kind(), reason, total, bytes);
            }
        };
        if let Some(Calibration::Gathering { sample, .. }) = &mut self.calibration {
            sample.push(bytes.to_vec());
        }
        self.rules.match_event(&event, &mut self.scratch);
        let matched = !(self.scratch.matched().is_empty() && self.scratch.ioc_hits().is_empty());
        if !matched && self.archive.is_none() {
            // The common case: nothing matched, nothing more to do.
            return Ok(());
        }
        // Read once, for the archive and the detections alike.
        let mut ctx = EventContext::extract(&event, &self.context_fields);
        if let Some(a) = archived {
            if let Some(s) = a.sector {
                ctx.sector = s.parse().ok();
            }
            if let Some(m) = a.member_state {
                ctx.member_state = m.parse().ok();
            }
            if let Some(o) = a.organisation {
                ctx.organisation = Some(o.into());
            }
            ctx.time = Some(Timestamp(a.time_ms));
        }
        if let Some(archive) = &mut self.archive {
            let time = ctx.time.or(self.last_time).unwrap_or_default();
            archive.event(&event, &ctx, time)?;
        }
        if !matched {
            return Ok(());
        }
        if ctx.problems.bad_sector || ctx.problems.bad_member_state {
            self.stats.bad_context += 1;
        }
        let time = match ctx.time {
            Some(t) => {
                self.last_time = Some(t);
                t
            }
            None => {
                // Documented default: a matching event without a readable time takes the
                // time of the previous matching event of the run (the epoch for the first).
                self.stats.missing_time += 1;
                self.last_time.unwrap_or_default()
            }
        };
        let source_ref = SourceRef {
            name: source.to_owned(),
            position: line_no,
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
        self.stats.detections += self.detections.len() as u64;
        if let Some(m) = &self.metrics {
            m.count_detections(&self.detections);
        }
        if let Some(archive) = &mut self.archive {
            for d in &self.detections {
                archive.detection(d)?;
            }
        }
        self.warnings.clear();
        for d in &self.detections {
            if d.standalone {
                if let Some(out) = &mut self.detections_out {
                    self.json.clear();
                    serde_json::to_writer(&mut self.json, d)?;
                    self.json.push(b'\n');
                    out.write_all(&self.json)?;
                }
            }
            self.correlator.push(d, &mut self.warnings);
        }
        self.write_derived()?;
        self.write_warnings()
    }

    /// Add the matcher's work since the last call to the metrics.
    fn publish_match_work(&mut self) {
        if let Some(m) = &self.metrics {
            self.match_work.publish(m, &self.scratch.stats);
        }
    }

    /// Copy the correlator's gauges and counters into the metrics.
    fn publish_correlator_gauges(&self) {
        let Some(m) = &self.metrics else { return };
        let c = self.correlator.stats();
        m.correlation_keys.set(self.correlator.live_keys() as i64);
        m.evictions
            .inc_by(c.evicted.saturating_sub(m.evictions.get()));
        let late = c.late + self.correlator.correlation_rule_stats().late;
        m.late.inc_by(late.saturating_sub(m.late.get()));
    }

    /// Write the detections that correlation rules produced (and count them).
    fn write_derived(&mut self) -> Result<()> {
        for d in self.correlator.take_derived() {
            self.stats.detections += 1;
            if let Some(archive) = &mut self.archive {
                archive.detection(&d)?;
            }
            if !d.standalone {
                continue;
            }
            if let Some(out) = &mut self.detections_out {
                self.json.clear();
                serde_json::to_writer(&mut self.json, &d)?;
                self.json.push(b'\n');
                out.write_all(&self.json)?;
            }
        }
        Ok(())
    }

    fn write_warnings(&mut self) -> Result<()> {
        for i in 0..self.warnings.len() {
            let canonical = &self.warnings[i];
            if let Some(archive) = &mut self.archive {
                archive.warning(canonical)?;
            }
            let o = &mut self.outputs;
            for (recipient, out) in &mut o.recipients {
                if let Some(r) = recipient.rendering(canonical, &o.policy) {
                    serde_json::to_writer(&mut *out, &r)?;
                    out.write_all(b"\n")?;
                }
            }
            let Some(w) = audience::render(canonical, o.audience, o.ceiling, &o.policy) else {
                self.stats.withheld += 1;
                continue;
            };
            self.json.clear();
            match o.format {
                WarningFormat::Json => serde_json::to_writer(&mut self.json, &w)?,
                WarningFormat::Stix => serde_json::to_writer(&mut self.json, &stix::to_bundle(&w))?,
                WarningFormat::Misp => serde_json::to_writer(&mut self.json, &misp::to_event(&w))?,
            }
            self.json.push(b'\n');
            o.out.write_all(&self.json)?;
            self.stats.warning_versions += 1;
            if let Some(m) = &self.metrics {
                let status = serde_json::to_value(w.status).ok();
                m.warnings
                    .with_label_values(&[
                        status.as_ref().and_then(|v| v.as_str()).unwrap_or("?"),
                        w.audience.as_str(),
                    ])
                    .inc();
            }
            self.latest.insert(w.warning_id.clone(), w);
        }
        Ok(())
    }

    /// Flush outputs; return the counters, the dead-letter summary and the latest version
    /// of each warning.
    pub fn finish(mut self) -> Result<(RunStats, Vec<String>, Vec<EarlyWarning>, Correlator)> {
        // A calibration still compiling is waited for, so that the run reports it either
        // way (it can change no answer); with no event left, its rules are not swapped in
        // (the counters of the last set stay for `TOCSIN_DEBUG_STATS`).
        if let Some(Calibration::Compiling { thread, reloads }) = self.calibration.take() {
            self.finish_calibration(thread, reloads, false);
        }
        self.publish_match_work();
        // Correlation windows still open at the end of the input are judged now.
        self.warnings.clear();
        self.correlator.finish(&mut self.warnings);
        self.write_derived()?;
        self.write_warnings()?;
        self.outputs.out.flush()?;
        for (_, out) in &mut self.outputs.recipients {
            out.flush()?;
        }
        if let Some(d) = &mut self.detections_out {
            d.flush()?;
        }
        let first = match &mut self.dead_letters {
            DeadLetterSink::Writer(w) => {
                w.flush()?;
                Vec::new()
            }
            DeadLetterSink::Summary(first) => std::mem::take(first),
        };
        if let Some(archive) = self.archive.take() {
            self.stats.archive = Some(archive.finish()?);
        }
        self.stats.seconds = self.started.elapsed().as_secs_f64();
        if std::env::var_os("TOCSIN_DEBUG_STATS").is_some() {
            eprintln!("{:?}", self.scratch.stats);
        }
        let mut latest: Vec<EarlyWarning> = self.latest.into_values().collect();
        latest.sort_by(|a, b| {
            a.first_seen
                .cmp(&b.first_seen)
                .then(a.warning_id.cmp(&b.warning_id))
        });
        Ok((self.stats, first, latest, self.correlator))
    }
}
