//! Logs of the long-running workers: human-readable lines by default, one JSON object per
//! line with `--log-format json` (or `worker.log_format`, `TOCSIN_WORKER_LOG_FORMAT`) for log
//! pipelines. Events carry their context as fields (worker kind and id, group, partition,
//! offsets) and a span names the worker; secret settings never reach a log line (Kafka
//! settings print redacted).
//!
//! The one-shot commands (`run`, `rules`, `match`, …) keep writing plain diagnostics to
//! stderr. Code shared by both (rule loading, reloads) calls [`say`] and [`warn`], which log
//! through `tracing` once [`init`] has run and print plain lines otherwise.

use std::sync::atomic::{AtomicBool, Ordering};

/// How worker logs are written.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `LEVEL message field=value…`, one line per event (Kubernetes adds the time).
    #[default]
    Text,
    /// `{"timestamp":…,"level":…,"message":…,"fields"…,"span":{…}}` per line.
    Json,
}

static STRUCTURED: AtomicBool = AtomicBool::new(false);

/// Send log events to stderr in `format`. Once per process; later calls do nothing.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(tracing::Level::INFO);
    let installed = match format {
        LogFormat::Text => builder
            .without_time()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    if installed.is_ok() {
        STRUCTURED.store(true, Ordering::Relaxed);
    }
}

/// An informational line: a log event in a worker, a plain stderr line elsewhere.
pub fn say(message: &str) {
    if STRUCTURED.load(Ordering::Relaxed) {
        tracing::info!("{}", message.strip_prefix("tocsin: ").unwrap_or(message));
    } else {
        eprintln!("{message}");
    }
}

/// A warning or error line, as [`say`].
pub fn warn(message: &str) {
    if STRUCTURED.load(Ordering::Relaxed) {
        tracing::warn!("{}", message.strip_prefix("tocsin: ").unwrap_or(message));
    } else {
        eprintln!("{message}");
    }
}

/// Whether [`init`] has run (errors at exit are then logged, not printed).
pub fn structured() -> bool {
    STRUCTURED.load(Ordering::Relaxed)
}
