//! Prometheus metrics and health endpoints (`--listen ADDR:PORT`).
//!
//! Operators watch Tocsin through `/metrics` (Prometheus text exposition), `/healthz` (the
//! process is alive) and `/readyz` (rules are loaded; for the workers also: a broker is
//! reachable and no partition's state is being restored). Readiness is kept per component
//! (`rules`, `match`, `correlate`): `worker all` is ready when both of its workers are. The server is a small thread on a
//! blocking listener: it serves a few scrapes a minute and must never compete with matching.
//! Label sets are bounded: rule ids come from the loaded rule set and feeds from the loaded
//! feeds, never from event values.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tocsin_match::ScratchStats;

/// A component's readiness.
enum Readiness {
    Ready,
    /// Ready until then, unless renewed.
    ReadyUntil(Instant),
    NotReady(String),
}

/// The matcher's work: how well the prefilter does on the live traffic. Per event, the
/// candidate rules and the bytes scanned are what a rule change moves first (a rule whose
/// literal is in every event makes every event its candidate), before events/s does.
pub struct MatchWork {
    candidates: IntCounter,
    guard_rejections: IntCounter,
    scanned_bytes: IntCounter,
    memo_replays: IntCounter,
    literal_hits: IntCounter,
}

impl MatchWork {
    /// Add work counted since the last publication (see [`MatchWorkPublisher`]).
    fn add(&self, work: &ScratchStats) {
        self.candidates.inc_by(work.candidates);
        self.guard_rejections.inc_by(work.guard_rejections);
        self.scanned_bytes.inc_by(work.scanned_bytes);
        self.memo_replays.inc_by(work.memo_replays);
        self.literal_hits.inc_by(work.literal_hits);
    }
}

/// Moves a matching thread's [`ScratchStats`] into the process's [`MatchWork`] counters.
///
/// The scratch space counts with plain integers (no atomics on the hot path); its owner
/// calls [`MatchWorkPublisher::publish`] every so often, which adds what was counted since
/// the last call. A new rule set comes with a new scratch space, counting from zero:
/// publish the old one's last counts and [`MatchWorkPublisher::restart`] before the swap.
#[derive(Default)]
pub struct MatchWorkPublisher {
    published: ScratchStats,
}

impl MatchWorkPublisher {
    /// Add `now`'s counts since the last call to the metrics.
    pub fn publish(&mut self, metrics: &Metrics, now: &ScratchStats) {
        metrics.match_work.add(&now.since(&self.published));
        self.published = *now;
    }

    /// The scratch space was replaced: its counts start again from zero.
    pub fn restart(&mut self) {
        self.published = ScratchStats::default();
    }
}

/// The metrics of one process.
pub struct Metrics {
    registry: Registry,
    /// Events read, by source.
    pub events: IntCounterVec,
    /// Bytes read.
    pub bytes: IntCounter,
    /// Lines that were not events (invalid JSON or UTF-8, too large), by reason.
    pub dead_letters: IntCounterVec,
    /// Detections, by rule id.
    pub detections: IntCounterVec,
    /// Indicator hits, by feed.
    pub indicator_hits: IntCounterVec,
    /// Live correlation keys.
    pub correlation_keys: IntGauge,
    /// Correlation windows evicted for the key limit.
    pub evictions: IntCounter,
    /// Detections later than their window.
    pub late: IntCounter,
    /// Warning versions written, by status and audience.
    pub warnings: IntCounterVec,
    /// Sigma rules loaded.
    pub rules_loaded: IntGauge,
    /// Indicators loaded.
    pub indicators_loaded: IntGauge,
    /// Rule-set version: 1 at start, +1 per reload.
    pub rule_set_version: IntGauge,
    /// Reloads, by outcome.
    pub reloads: IntCounterVec,
    /// Time to process one input line, in seconds (sampled: one line in 64).
    pub event_seconds: Histogram,
    /// Workers: messages behind the end of each assigned partition.
    pub consumer_lag: IntGaugeVec,
    /// Workers: 1 while a broker connection is up.
    pub broker_reachable: IntGauge,
    /// Workers: time from opening a batch to committing it (or, for a correlate batch that
    /// waits for the next state write, to holding it), by worker.
    pub batch_seconds: HistogramVec,
    /// Wall-clock time from a warning version's `issued_at` (the event time of the detection
    /// that issued it, or a second after the version before) to the version's publication.
    pub warning_latency_seconds: Histogram,
    /// Correlate workers: partition states restored from the changelog.
    pub state_restores: IntCounter,
    /// Correlate workers: partition states written to the changelog, whole or as deltas.
    pub state_records: IntCounter,
    /// Correlate workers: of those, the ones written as deltas.
    pub state_deltas: IntCounter,
    /// Correlate workers: partitions read again because the state restored ended below the
    /// committed offset.
    pub state_read_again: IntCounter,
    /// Correlate workers: bytes of those states (what `correlate.state_interval_ms` and
    /// `correlate.state_max_deltas` bound).
    pub state_bytes: IntCounter,
    /// The matcher's work, from its scratch space's counters ([`MatchWorkPublisher`]).
    match_work: MatchWork,
    /// Each component's readiness.
    readiness: Mutex<BTreeMap<&'static str, Readiness>>,
}

impl Metrics {
    /// Register every metric.
    pub fn new() -> Result<Arc<Self>> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let event_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tocsin_event_processing_seconds",
                "Time to decode, match and correlate one event (sampled).",
            )
            .buckets(vec![1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3, 1e-2]),
        )?;
        registry.register(Box::new(event_seconds.clone()))?;
        let m = Arc::new(Metrics {
            events: counter_vec(
                "tocsin_events_total",
                "Events read, by source.",
                &["source"],
            )?,
            bytes: counter("tocsin_event_bytes_total", "Bytes of events read.")?,
            dead_letters: counter_vec(
                "tocsin_dead_letters_total",
                "Inputs that were not events, by reason.",
                &["reason"],
            )?,
            detections: counter_vec(
                "tocsin_detections_total",
                "Detections, by rule id (from the loaded rule set).",
                &["rule"],
            )?,
            indicator_hits: counter_vec(
                "tocsin_indicator_hits_total",
                "Indicator matches, by feed.",
                &["feed"],
            )?,
            correlation_keys: gauge(
                "tocsin_correlation_keys",
                "Live correlation keys (event-time windows).",
            )?,
            evictions: counter(
                "tocsin_correlation_evictions_total",
                "Correlation windows evicted for the key limit.",
            )?,
            late: counter(
                "tocsin_late_detections_total",
                "Detections later than their window, counted and not merged.",
            )?,
            warnings: counter_vec(
                "tocsin_warnings_total",
                "Early-warning versions written, by status and audience.",
                &["status", "audience"],
            )?,
            rules_loaded: gauge("tocsin_rules_loaded", "Sigma rules loaded.")?,
            indicators_loaded: gauge("tocsin_indicators_loaded", "Distinct indicators loaded.")?,
            rule_set_version: gauge(
                "tocsin_rule_set_version",
                "Version of the rule set in use: 1 at start, +1 per reload.",
            )?,
            reloads: counter_vec(
                "tocsin_reloads_total",
                "Rule and feed reloads, by outcome.",
                &["outcome"],
            )?,
            event_seconds,
            consumer_lag: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "tocsin_consumer_lag_messages",
                        "Messages behind the end of each assigned partition (librdkafka statistics).",
                    ),
                    &["topic", "partition"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            broker_reachable: gauge(
                "tocsin_broker_reachable",
                "1 while the worker has a connection to a broker.",
            )?,
            batch_seconds: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "tocsin_batch_duration_seconds",
                        "Time from opening a batch to committing its offsets (or to holding them for the next state write), by worker.",
                    )
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                    &["worker"],
                )?;
                registry.register(Box::new(h.clone()))?;
                h
            },
            warning_latency_seconds: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "tocsin_event_to_warning_seconds",
                        "Wall-clock time from a warning version's issued_at (the event time of the detection that issued it, or one second after the version before) to its publication.",
                    )
                    .buckets(vec![0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0]),
                )?;
                registry.register(Box::new(h.clone()))?;
                h
            },
            state_restores: counter(
                "tocsin_state_restores_total",
                "Partition states restored from the changelog.",
            )?,
            state_records: counter(
                "tocsin_state_records_total",
                "Correlator states written to the changelog, whole or as deltas.",
            )?,
            state_read_again: counter(
                "tocsin_state_read_again_total",
                "Partitions read again from the end of a restored state that was behind the offset the group had committed (its newest records lost).",
            )?,
            state_deltas: counter(
                "tocsin_state_deltas_total",
                "Correlator states written to the changelog as deltas (the keys and groups changed since the write before).",
            )?,
            state_bytes: counter(
                "tocsin_state_bytes_total",
                "Bytes of correlator state written to the changelog (a state's bytes before it is cut into parts).",
            )?,
            match_work: MatchWork {
                candidates: counter(
                    "tocsin_match_candidate_rules_total",
                    "Rules the prefilter handed to evaluation, those their guard turned away included.",
                )?,
                guard_rejections: counter(
                    "tocsin_match_guard_rejections_total",
                    "Candidate rules turned away by their guard (a test the rule needs, checked before the rule is read).",
                )?,
                scanned_bytes: counter(
                    "tocsin_match_scanned_bytes_total",
                    "Bytes of field values scanned for the rules' literals.",
                )?,
                memo_replays: counter(
                    "tocsin_match_scan_memo_replays_total",
                    "Field values not scanned: the same value was scanned recently and its literals were replayed from the scan memo.",
                )?,
                literal_hits: counter(
                    "tocsin_match_literal_hits_total",
                    "Literal occurrences the scans found.",
                )?,
            },
            readiness: Mutex::new(BTreeMap::from([(
                "rules",
                Readiness::NotReady("rules not loaded".to_owned()),
            )])),
            registry,
        });
        // Known label values start at zero, so that rate() and alerts see them from the
        // first scrape (Prometheus' advice), and dashboards find every series.
        for outcome in ["success", "errors", "failure"] {
            m.reloads.with_label_values(&[outcome]);
        }
        for reason in [
            "invalid-utf8",
            "empty",
            "not-an-object",
            "invalid-json",
            "too-large",
            "missing-context",
            "invalid-detection",
        ] {
            m.dead_letters.with_label_values(&[reason]);
        }
        for status in ["new", "update", "escalated", "closed"] {
            for audience in ["technical", "operational", "strategic"] {
                m.warnings.with_label_values(&[status, audience]);
            }
        }
        Ok(m)
    }

    /// Count detections by rule, and their indicator hits by feed.
    pub fn count_detections(&self, detections: &[tocsin_core::Detection]) {
        for d in detections {
            self.detections
                .with_label_values(&[d.rule.id.as_str()])
                .inc();
            for i in &d.indicators {
                self.indicator_hits
                    .with_label_values(&[i.feed.as_str()])
                    .inc();
            }
        }
    }

    /// Mark the process ready (rules loaded) or not.
    pub fn set_ready(&self, ready: bool) {
        self.set_readiness("rules", (!ready).then(|| "rules not loaded".to_owned()));
    }

    /// Set why `component` is not ready (`None`: it is ready).
    pub fn set_readiness(&self, component: &'static str, not_ready: Option<String>) {
        self.set(
            component,
            not_ready.map_or(Readiness::Ready, Readiness::NotReady),
        );
    }

    /// `component` is ready for `valid_for` unless it says so again: a worker blocked on an
    /// unreachable broker (in a commit, say) stops saying so and turns not ready by itself.
    pub fn set_ready_for(&self, component: &'static str, valid_for: Duration) {
        self.set(component, Readiness::ReadyUntil(Instant::now() + valid_for));
    }

    fn set(&self, component: &'static str, r: Readiness) {
        self.readiness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(component, r);
    }

    /// `Err(reasons)` while any component is not ready.
    pub fn readiness(&self) -> Result<(), String> {
        let r = self.readiness.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let reasons: Vec<String> = r
            .iter()
            .filter_map(|(c, r)| match r {
                Readiness::Ready => None,
                Readiness::ReadyUntil(t) if *t > now => None,
                Readiness::ReadyUntil(_) => Some(format!(
                    "{c}: no word from the broker for a while (a request to it is waiting)"
                )),
                Readiness::NotReady(why) => Some(format!("{c}: {why}")),
            })
            .collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    /// Serve `/metrics`, `/healthz` and `/readyz` on `addr` from a background thread.
    pub fn serve(self: &Arc<Self>, addr: &str) -> Result<SocketAddr> {
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("--listen {addr}: expected ADDR:PORT"))?;
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let metrics = Arc::clone(self);
        std::thread::Builder::new()
            .name("tocsin-http".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let _ = metrics.answer(stream);
                }
            })?;
        Ok(local)
    }

    fn answer(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        // Drain the headers.
        let mut header = String::new();
        while reader.read_line(&mut header)? > 2 {
            header.clear();
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        let (status, content_type, body) = match path {
            "/metrics" => ("200 OK", "text/plain; version=0.0.4", self.render()),
            "/healthz" => ("200 OK", "text/plain", b"ok\n".to_vec()),
            "/readyz" => match self.readiness() {
                Ok(()) => ("200 OK", "text/plain", b"ready\n".to_vec()),
                Err(why) => (
                    "503 Service Unavailable",
                    "text/plain",
                    format!("not ready: {why}\n").into_bytes(),
                ),
            },
            _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        };
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        stream.write_all(&body)?;
        stream.flush()
    }
}
