//! Prometheus metrics and health endpoints (`--listen ADDR:PORT`).
//!
//! Operators watch Tocsin through `/metrics` (Prometheus text exposition), `/healthz` (the
//! process is alive) and `/readyz` (rules are loaded). The server is a small thread on a
//! blocking listener: it serves a few scrapes a minute and must never compete with matching.
//! Label sets are bounded: rule ids come from the loaded rule set and feeds from the loaded
//! feeds, never from event values.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

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
    ready: Arc<AtomicBool>,
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
        Ok(Arc::new(Metrics {
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
            ready: Arc::new(AtomicBool::new(false)),
            registry,
        }))
    }

    /// Mark the process ready (rules loaded) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
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
            "/readyz" if self.ready.load(Ordering::SeqCst) => {
                ("200 OK", "text/plain", b"ready\n".to_vec())
            }
            "/readyz" => (
                "503 Service Unavailable",
                "text/plain",
                b"not ready: rules not loaded\n".to_vec(),
            ),
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
