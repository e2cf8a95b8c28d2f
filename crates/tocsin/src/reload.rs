//! Hot reload of rules, indicator feeds, the escalation policy and the recipients: `--watch`
//! and SIGHUP.
//!
//! A background thread waits for a trigger — SIGHUP, or (with `--watch`) a change in the
//! size or modification time of any rule or feed file — then loads and compiles the whole set
//! again while the old one keeps serving. Only a complete new set is handed over, through a
//! channel that the pipeline polls between two events, so each event is matched by exactly
//! one set. The correlation rules come with it: the pipeline gives them to its correlator
//! at the same point, which keeps what the groups of unchanged correlations counted
//! ([`tocsin_correlate::Correlator::replace_correlation_rules`]), and so do the escalation
//! policy ([`tocsin_correlate::Correlator::replace_policy`]; the renderings take it too)
//! and the recipients. A source that fails to
//! load as a whole keeps its previous version
//! ([`crate::load::LastGood`]); rule errors are reported and the rest of the new set is used.
//! A literal-frequency table (`--frequencies`) is read again when its file has changed (a
//! new calibration shipped in a ConfigMap); one that cannot be read is reported and the
//! table in use is kept.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;

use tocsin_correlate::audience::Recipient;
use tocsin_match::{CompiledRules, LiteralFrequencies, MatchConfig};
use tocsin_rules::{CorrelationRule, EscalationPolicy};

use crate::feeds::FeedFormat;
use crate::load::{LastGood, RuleSources};

/// Literal frequencies observed by `--calibrate`, shared by the pipeline (which observes
/// them once) and the reloader (whose later rule sets keep choosing by them).
pub type SharedFrequencies = Arc<Mutex<Option<Arc<LiteralFrequencies>>>>;

/// A rule set loaded again: the compiled detection rules, the correlation rules that go
/// with them (the detection rules carry their correlation keys), the escalation policy
/// (`escalation.yaml`; none when the rule paths have none any more, or it cannot be read
/// and nothing was read before: the policy in use then stays) and the recipients
/// (`recipients.yaml`; none likewise keeps those in use).
pub struct Reloaded {
    pub compiled: Arc<CompiledRules>,
    pub correlations: Vec<CorrelationRule>,
    pub policy: Option<EscalationPolicy>,
    pub recipients: Vec<Recipient>,
}

impl Reloaded {
    /// What `sources`, compiled into `compiled`, give the pipeline and the workers.
    fn new(sources: RuleSources, compiled: CompiledRules) -> Self {
        Reloaded {
            compiled: Arc::new(compiled),
            correlations: sources.correlations,
            policy: sources.policy,
            recipients: sources.recipients,
        }
    }
}

/// What to load, and how.
#[derive(Clone)]
pub struct RuleSpec {
    /// Rule directories or files; empty means the rules built into the binary.
    pub rules: Vec<PathBuf>,
    /// Extra feeds (`--iocs`).
    pub iocs: Vec<PathBuf>,
    /// Forced feed format.
    pub iocs_format: Option<FeedFormat>,
    /// Profile name.
    pub profile: Option<String>,
    /// The literal-frequency table (`--frequencies`), if any: watched with the rules.
    pub frequencies: Option<PathBuf>,
}

impl RuleSpec {
    /// Load and compile everything, choosing prefilters by `frequencies` when given.
    /// Diagnostics are in the returned sources.
    pub fn load(
        &self,
        last_good: &mut LastGood,
        frequencies: Option<Arc<LiteralFrequencies>>,
    ) -> Result<(RuleSources, CompiledRules)> {
        let (mut sources, profile) = self.load_sources(last_good)?;
        let config = MatchConfig {
            literal_frequencies: frequencies,
            ..MatchConfig::default()
        };
        let compiled = sources.compile(&profile, &config);
        // The compiled tables hold the indicators now; the parsed list (hundreds of bytes per
        // indicator) is not kept.
        sources.indicators = Vec::new();
        Ok((sources, compiled))
    }

    /// Load everything and compile it with prefilters chosen by how often their literals
    /// occur in `sample` (raw events; see `tocsin_match::calibrate`), with the correlation
    /// rules that go with it.
    pub fn load_calibrated(
        &self,
        last_good: &mut LastGood,
        sample: &[Vec<u8>],
    ) -> Result<(Reloaded, Arc<LiteralFrequencies>)> {
        let (mut sources, profile) = self.load_sources(last_good)?;
        let frequencies = Arc::new(sources.observe_literals(&profile, sample));
        let config = MatchConfig {
            literal_frequencies: Some(Arc::clone(&frequencies)),
            ..MatchConfig::default()
        };
        let compiled = sources.compile(&profile, &config);
        Ok((Reloaded::new(sources, compiled), frequencies))
    }

    /// How often each literal of the rules occurs in `sample` (raw events), and the sources
    /// loaded (for their diagnostics).
    pub fn observe(
        &self,
        last_good: &mut LastGood,
        sample: &[Vec<u8>],
    ) -> Result<(RuleSources, LiteralFrequencies)> {
        let (sources, profile) = self.load_sources(last_good)?;
        let frequencies = sources.observe_literals(&profile, sample);
        Ok((sources, frequencies))
    }

    /// Load every source and pick the profile.
    fn load_sources(
        &self,
        last_good: &mut LastGood,
    ) -> Result<(RuleSources, tocsin_rules::Profile)> {
        let sources = if self.rules.is_empty() {
            let mut s = RuleSources::embedded();
            if !self.iocs.is_empty() {
                let feeds = RuleSources::load_all(&[], &self.iocs, self.iocs_format, last_good)?;
                s.indicators.extend(feeds.indicators);
                s.diagnostics.extend(feeds.diagnostics.0);
                s.files += feeds.files;
            }
            s
        } else {
            RuleSources::load_all(&self.rules, &self.iocs, self.iocs_format, last_good)?
        };
        let profile = sources.profile(self.profile.as_deref())?;
        Ok((sources, profile))
    }

    /// The state of every source file (rules, feeds, the frequency table), to take before
    /// they are loaded and give to [`spawn`]: a change made while they load is then seen
    /// by the first poll, not taken for the state that was loaded.
    pub fn snapshot(&self) -> Snapshot {
        let mut files = Vec::new();
        for root in self.rules.iter().chain(&self.iocs).chain(&self.frequencies) {
            collect(root, &mut files);
        }
        files.sort();
        Snapshot(files)
    }
}

/// (path, size, mtime) of every source file at one moment ([`RuleSpec::snapshot`]).
#[derive(PartialEq)]
pub struct Snapshot(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl Snapshot {
    /// The state of one file (as given on the command line).
    fn of(&self, path: &Path) -> Option<&(PathBuf, u64, Option<SystemTime>)> {
        self.0.iter().find(|(p, _, _)| p == path)
    }
}

/// Read the changed literal-frequency table into `frequencies`, for the reload under way
/// and those after it; a table that cannot be read leaves the one in use (said on stderr).
/// An unchanged table is not read again, so a calibration made in the process
/// (`--calibrate`) stays until the file changes.
fn reread_table(path: &Path, frequencies: &SharedFrequencies) {
    match crate::load::read_frequencies(path) {
        Ok(table) => {
            crate::logging::say(&format!(
                "tocsin: literal frequencies read again from {} ({} literals observed over {} events)",
                path.display(),
                table.len(),
                table.events()
            ));
            if let Ok(mut shared) = frequencies.lock() {
                *shared = Some(Arc::new(table));
            }
        }
        Err(e) => crate::logging::warn(&format!(
            "tocsin: keeping the literal frequencies in use: {e:#}"
        )),
    }
}

fn collect(path: &Path, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
    let Ok(meta) = std::fs::metadata(path) else {
        out.push((path.to_path_buf(), u64::MAX, None));
        return;
    };
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                collect(&e.path(), out);
            }
        }
    } else {
        out.push((path.to_path_buf(), meta.len(), meta.modified().ok()));
    }
}

/// Start the reloader. New rule sets arrive on the returned channel. With `watch`, files are
/// polled at that interval and compared with `loaded`, their state when the set in use was
/// loaded (each reload takes it again before loading); SIGHUP always triggers a reload.
pub fn spawn(
    spec: RuleSpec,
    loaded: Snapshot,
    mut last_good: LastGood,
    watch: Option<Duration>,
    quiet: bool,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    frequencies: SharedFrequencies,
) -> Result<Receiver<Reloaded>> {
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("tocsin-reload".into())
        .spawn(move || {
            let mut loaded = loaded;
            let mut last_poll = Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let signalled = hangup.swap(false, Ordering::SeqCst);
                // A poll that saw a change keeps what it saw: the state this reload loads.
                let mut changed = None;
                if let Some(interval) = watch {
                    if last_poll.elapsed() >= interval {
                        last_poll = Instant::now();
                        changed = Some(spec.snapshot()).filter(|now| *now != loaded);
                    }
                }
                if !signalled && changed.is_none() {
                    continue;
                }
                let started = Instant::now();
                let now = changed.unwrap_or_else(|| spec.snapshot());
                if let Some(path) = &spec.frequencies {
                    if now.of(path) != loaded.of(path) {
                        reread_table(path, &frequencies);
                    }
                }
                loaded = now;
                let observed = frequencies.lock().ok().and_then(|f| f.clone());
                match spec.load(&mut last_good, observed) {
                    Ok((sources, compiled)) => {
                        for d in &sources.diagnostics.0 {
                            if d.is_error() || (!quiet && d.code == "kept-previous") {
                                crate::logging::warn(&d.to_string());
                            }
                        }
                        let s = compiled.stats();
                        let errors = sources.diagnostics.error_count();
                        // Hand the set over first, then say so: whoever reads the message
                        // may rely on the next event being matched by the new set.
                        let correlations = sources.correlations.len();
                        if tx.send(Reloaded::new(sources, compiled)).is_err() {
                            return;
                        }
                        if let Some(m) = &metrics {
                            let outcome = if errors > 0 { "errors" } else { "success" };
                            m.reloads.with_label_values(&[outcome]).inc();
                        }
                        crate::logging::say(&format!(
                            "tocsin: reloaded ({}): {} rules ({} literals scanned for), {} correlation rules, {} indicators, {} errors, in {:.2} s",
                            if signalled { "SIGHUP" } else { "files changed" },
                            s.rules,
                            s.scanned_atoms,
                            correlations,
                            s.indicators,
                            errors,
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    Err(e) => {
                        if let Some(m) = &metrics {
                            m.reloads.with_label_values(&["failure"]).inc();
                        }
                        crate::logging::warn(&format!(
                            "tocsin: reload failed, keeping the current rules: {e:#}"
                        ));
                    }
                }
            }
        })?;
    Ok(rx)
}
