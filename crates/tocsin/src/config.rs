//! The workers' configuration: one TOML file, every setting overridable by an environment
//! variable, and the common ones by flags (flags and their variables win over the file,
//! the file over the defaults).
//!
//! Environment variables are named after the file's keys: `TOCSIN_<SECTION>_<KEY>` in upper
//! case (`TOCSIN_MATCH_BATCH_MS`, `TOCSIN_TOPICS_DETECTIONS`; lists are comma-separated).
//! librdkafka properties go under `[kafka.client]`, or in `TOCSIN_KAFKA_CLIENT_<NAME>` with
//! the dots written as underscores (`TOCSIN_KAFKA_CLIENT_SASL_PASSWORD` → `sasl.password`),
//! which is how a Kubernetes Secret reaches the worker. Secret values are printed as
//! `<redacted>` by `tocsin config print` and never appear in errors.
//!
//! Unknown keys are errors (a misspelt setting must not be silently ignored), reported with
//! the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use tocsin_kafka::topics::TopicNames;
use tocsin_kafka::KafkaSettings;

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaSection,
    pub topics: TopicNames,
    pub rules: RulesSection,
    #[serde(rename = "match")]
    pub matching: MatchSection,
    pub correlate: CorrelateSection,
    pub archive: ArchiveSection,
    pub worker: WorkerSection,
}

/// `[kafka]`: where the cluster is and the librdkafka passthrough.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    /// `HOST:PORT[,HOST:PORT…]`.
    pub bootstrap: String,
    /// librdkafka properties (`security.protocol`, `ssl.*`, `sasl.*`, …), passed through.
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            bootstrap: "127.0.0.1:9092".into(),
            client: BTreeMap::new(),
        }
    }
}

/// `[rules]`: what the workers load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RulesSection {
    /// Rules directories or files.
    pub paths: Vec<PathBuf>,
    /// Extra indicator feeds.
    pub iocs: Vec<PathBuf>,
    /// Field-mapping profile (default: sysmon, else the first loaded).
    pub profile: String,
    /// Any rule error stops the worker.
    pub strict: bool,
    /// A literal-frequency table written by `tocsin rules calibrate`: prefilters chosen by
    /// it from the first event, in every replica. Empty: guessed from the rules.
    pub frequencies: String,
    /// Seconds between checks of the rule and feed files for changes (a ConfigMap update);
    /// 0: only on SIGHUP. The match workers reload Sigma rules and indicator feeds without a
    /// restart, the correlate workers the correlation rules, the escalation policy and the
    /// recipients (whose topics must exist first).
    pub watch_s: u64,
}

impl Default for RulesSection {
    fn default() -> Self {
        RulesSection {
            paths: vec![PathBuf::from("rules")],
            iocs: Vec::new(),
            profile: String::new(),
            strict: false,
            frequencies: String::new(),
            watch_s: 10,
        }
    }
}

/// `[match]`: the match workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MatchSection {
    /// Consumer group.
    pub group: String,
    /// Largest event accepted; larger messages are dead-lettered.
    pub max_event_bytes: u64,
    /// Messages per batch (one flush and one commit per batch).
    pub batch: u64,
    /// Longest a batch stays open, in milliseconds.
    pub batch_ms: u64,
}

impl Default for MatchSection {
    fn default() -> Self {
        MatchSection {
            group: "tocsin-match".into(),
            max_event_bytes: 1024 * 1024,
            // A batch holds no messages (only offsets): its size sets how often the worker
            // flushes and commits, a broker round trip each. The window bounds latency.
            batch: 20_000,
            batch_ms: 200,
        }
    }
}

/// `[correlate]`: the correlate workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CorrelateSection {
    /// Consumer group.
    pub group: String,
    /// Detections per batch: the unit of commits, which also wait for `state_interval_ms`.
    pub batch: u64,
    /// Longest a batch stays open, in milliseconds.
    pub batch_ms: u64,
    /// Longest the restore of one partition's state may take, in seconds.
    pub restore_timeout_s: u64,
    /// Once a partition has been caught up (nothing unread) for this many seconds, its event
    /// time goes on with the wall clock, this far behind, so that what only a later
    /// detection would end still ends when the input goes quiet: correlation windows judged
    /// at their close (`lt`, `lte`, `eq`, `neq`, ranges, `value_percentile`) and warnings
    /// quiet for the policy's `closed_after`. A detection that arrives later for a window
    /// judged meanwhile is late. 0 turns this off: event time moves with detections only.
    pub idle_grace_s: u64,
    /// Longest state record: a partition's state longer than this is written as several
    /// records (parts). From 256 bytes to 15 MiB, and below the changelog topic's
    /// `max.message.bytes` and the producer's `message.max.bytes` (16 MiB as `tocsin topics
    /// create` and the workers set them).
    pub state_record_bytes: u64,
    /// Longest a changed partition state waits to be written, in milliseconds (a partition
    /// taken away, a stop, a reload and an idle advance write at once). Offsets
    /// are committed only with the states that include them, so the batches in between wait
    /// for the next write: a worker that dies replays at most this much of its input (and
    /// publishes again, byte for byte, the warning versions that input issued). 0 writes at
    /// every batch.
    pub state_interval_ms: u64,
    /// Most state deltas written between two whole states of a partition. A delta holds only
    /// the keys and groups changed since the write before, so it costs what the detections
    /// since touched rather than what the partition holds; a whole state is written again
    /// once the deltas since the last add up to its size, or number this many, so that the
    /// deltas a restore applies add up to at most about one state. 0 writes every state
    /// whole.
    pub state_max_deltas: u32,
}

/// Largest `correlate.state_max_deltas`.
pub const MAX_STATE_DELTAS: u32 = 10_000;

/// Longest `correlate.state_interval_ms`: ten minutes of input to replay after a crash.
pub const MAX_STATE_INTERVAL_MS: u64 = 600_000;

/// Largest `correlate.state_record_bytes`: the 16 MiB record limit of the changelog topic
/// and the producer, less room for the key and headers.
pub const MAX_STATE_RECORD_BYTES: u64 = 15 * 1024 * 1024;

impl Default for CorrelateSection {
    fn default() -> Self {
        CorrelateSection {
            group: "tocsin-correlate".into(),
            batch: 20_000,
            batch_ms: 500,
            restore_timeout_s: 60,
            idle_grace_s: 60,
            state_record_bytes: 4 * 1024 * 1024,
            // A whole state costs about 1 KB a live key, and even a delta (the keys a batch
            // touched) costs a kilobyte a key touched: at every batch of a busy partition (up
            // to 20,000 detections or 500 ms) that would be tens of megabytes a second.
            state_interval_ms: 5_000,
            state_max_deltas: 64,
        }
    }
}

/// `[archive]`: the archive worker (events, detections and technical warnings into Parquet,
/// for `tocsin query`, `hunt` and `report`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveSection {
    /// The archive directory (a persistent volume); required by `worker archive`.
    pub dir: PathBuf,
    /// Consumer group.
    pub group: String,
    /// Rows buffered before they are written to Parquet and their offsets committed.
    pub flush_rows: u64,
    /// Longest a row waits in the buffer, in seconds (the archive's staleness bound).
    pub flush_s: u64,
    /// Date partitions older than this many days before the newest event are removed at
    /// each flush; 0 keeps everything.
    pub retention_days: u64,
}

impl Default for ArchiveSection {
    fn default() -> Self {
        ArchiveSection {
            dir: PathBuf::new(),
            group: "tocsin-archive".into(),
            // Files of up to this many rows per partition: large enough for zstd and the
            // Parquet statistics to pay, few enough files for the queries' listing.
            flush_rows: 200_000,
            flush_s: 60,
            retention_days: 0,
        }
    }
}

/// `[worker]`: process-wide settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSection {
    /// How long shutdown may take to drain and commit, in seconds.
    pub shutdown_deadline_s: u64,
    /// `ADDR:PORT` of `/metrics`, `/healthz` and `/readyz`; empty: no listener.
    pub listen: String,
    /// `text` or `json`.
    pub log_format: crate::logging::LogFormat,
}

impl Default for WorkerSection {
    fn default() -> Self {
        WorkerSection {
            shutdown_deadline_s: 30,
            listen: String::new(),
            log_format: crate::logging::LogFormat::Text,
        }
    }
}

impl Config {
    /// The defaults, then `file` (if any), then `TOCSIN_…` variables from `env`. Not yet
    /// validated: flags may still change it ([`Config::validate`]).
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                // The position and the message, not toml's snippet of the line: the line
                // may hold a password.
                text.parse::<toml::Table>().map_err(|e| {
                    let (line, column) = e.span().map_or((0, 0), |span| {
                        let before = &text[..span.start.min(text.len())];
                        let line = before.matches('\n').count() + 1;
                        let column = before.rsplit('\n').next().map_or(0, str::len) + 1;
                        (line, column)
                    });
                    anyhow::anyhow!("{}:{line}:{column}: {}", path.display(), e.message())
                })?
            }
            None => toml::Table::new(),
        };
        let origin = file.map_or("the environment".to_owned(), |p| p.display().to_string());
        apply_env(&mut table, env)?;
        // librdkafka properties are strings; numbers and booleans are accepted as written
        // (`"linger.ms" = 5`), and no type error can echo a secret's value.
        if let Some(client) = table
            .get_mut("kafka")
            .and_then(|k| k.as_table_mut())
            .and_then(|k| k.get_mut("client"))
            .and_then(|c| c.as_table_mut())
        {
            for (key, value) in client.iter_mut() {
                *value = match value {
                    toml::Value::String(_) => continue,
                    toml::Value::Integer(i) => toml::Value::String(i.to_string()),
                    toml::Value::Float(f) => toml::Value::String(f.to_string()),
                    toml::Value::Boolean(b) => toml::Value::String(b.to_string()),
                    _ => bail!(
                        "{origin}: kafka.client.{key}: expected a string, a number or a boolean"
                    ),
                };
            }
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{origin}: {}", e.to_string().trim()))
    }

    /// [`Config::load`] and [`Config::validate`], for `tocsin config check`.
    pub fn load_checked(file: Option<&Path>, env: &[(String, String)]) -> Result<Config> {
        let c = Config::load(file, env)?;
        let origin = file.map_or("the environment".to_owned(), |p| p.display().to_string());
        c.validate()
            .with_context(|| format!("invalid configuration in {origin}"))?;
        Ok(c)
    }

    /// Values no worker can run with.
    pub fn validate(&self) -> Result<()> {
        if self.kafka.bootstrap.trim().is_empty() {
            bail!("kafka.bootstrap is empty");
        }
        for (name, v) in [
            ("match.batch", self.matching.batch),
            ("match.batch_ms", self.matching.batch_ms),
            ("match.max_event_bytes", self.matching.max_event_bytes),
            ("correlate.batch", self.correlate.batch),
            ("correlate.batch_ms", self.correlate.batch_ms),
            (
                "correlate.restore_timeout_s",
                self.correlate.restore_timeout_s,
            ),
            ("archive.flush_rows", self.archive.flush_rows),
            ("archive.flush_s", self.archive.flush_s),
        ] {
            if v == 0 {
                bail!("{name} must be at least 1");
            }
        }
        if !(256..=MAX_STATE_RECORD_BYTES).contains(&self.correlate.state_record_bytes) {
            bail!(
                "correlate.state_record_bytes is {}: from 256 to {MAX_STATE_RECORD_BYTES} (the changelog's records take 16 MiB)",
                self.correlate.state_record_bytes
            );
        }
        if self.correlate.state_max_deltas > MAX_STATE_DELTAS {
            bail!(
                "correlate.state_max_deltas is {}: at most {MAX_STATE_DELTAS} (a restore reads each of them)",
                self.correlate.state_max_deltas
            );
        }
        if self.correlate.state_interval_ms > MAX_STATE_INTERVAL_MS {
            bail!(
                "correlate.state_interval_ms is {}: at most {MAX_STATE_INTERVAL_MS} (ten minutes; the offsets wait for the state)",
                self.correlate.state_interval_ms
            );
        }
        if self.topics.events.is_empty() {
            bail!("topics.events is empty: the match workers need an event topic");
        }
        if self.matching.group.is_empty()
            || self.correlate.group.is_empty()
            || self.archive.group.is_empty()
        {
            bail!("consumer group names must not be empty");
        }
        Ok(())
    }

    /// The Kafka connection settings.
    pub fn kafka_settings(&self) -> KafkaSettings {
        let mut s = KafkaSettings::new(self.kafka.bootstrap.clone());
        s.client = self.kafka.client.clone();
        s
    }

    /// The effective configuration as TOML, secret values redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for (k, v) in shown.kafka.client.iter_mut() {
            if tocsin_kafka::settings::is_secret(k) {
                *v = "<redacted>".into();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_default()
    }
}

/// `TOCSIN_<SECTION>_<KEY>` variables into `table`, typed like the default of the key.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<()> {
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("TOCSIN_") else {
            continue;
        };
        if let Some(property) = rest.strip_prefix("KAFKA_CLIENT_") {
            let key = property.to_ascii_lowercase().replace('_', ".");
            section(table, "kafka")?
                .entry("client")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .context("kafka.client must be a table")?
                .insert(key, toml::Value::String(value.clone()));
            continue;
        }
        for (sec_name, sec) in &defaults {
            let Some(sec) = sec.as_table() else { continue };
            let prefix = format!("{}_", sec_name.to_ascii_uppercase());
            let Some(key_upper) = rest.strip_prefix(&prefix) else {
                continue;
            };
            let Some((key, default)) = sec
                .iter()
                .find(|(k, _)| k.to_ascii_uppercase() == key_upper)
            else {
                // A misspelt setting must not be ignored silently.
                let known: Vec<String> = sec
                    .keys()
                    .map(|k| format!("TOCSIN_{prefix}{}", k.to_ascii_uppercase()))
                    .collect();
                bail!(
                    "{name}: no such setting in [{sec_name}]; known: {}",
                    known.join(", ")
                );
            };
            let typed = match default {
                toml::Value::Integer(_) => {
                    toml::Value::Integer(value.trim().parse().map_err(|_| {
                        anyhow::anyhow!("{name}: expected a whole number, got '{value}'")
                    })?)
                }
                toml::Value::Boolean(_) => {
                    toml::Value::Boolean(value.trim().parse().map_err(|_| {
                        anyhow::anyhow!("{name}: expected true or false, got '{value}'")
                    })?)
                }
                toml::Value::Array(_) => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                ),
                _ => toml::Value::String(value.clone()),
            };
            section(table, sec_name)?.insert(key.clone(), typed);
        }
    }
    Ok(())
}

fn section<'a>(table: &'a mut toml::Table, name: &str) -> Result<&'a mut toml::Table> {
    table
        .entry(name)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .with_context(|| format!("[{name}] must be a table"))
}

/// The `TOCSIN_…` variables of this process.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("TOCSIN_"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn file_then_environment_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tocsin.toml");
        std::fs::write(
            &path,
            "[kafka]\nbootstrap = \"10.0.0.1:9092\"\n[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n[match]\nbatch = 100\n[topics]\nevents = [\"a\", \"b\"]\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            &env(&[
                ("TOCSIN_MATCH_BATCH_MS", "50"),
                ("TOCSIN_TOPICS_EVENTS", "x, y"),
                ("TOCSIN_KAFKA_CLIENT_SASL_PASSWORD", "hunter2"),
                ("TOCSIN_RULES_FREQUENCIES", "/etc/tocsin/frequencies.json"),
                ("TOCSIN_UNRELATED", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka.bootstrap, "10.0.0.1:9092");
        assert_eq!(c.rules.frequencies, "/etc/tocsin/frequencies.json");
        assert_eq!(c.matching.batch, 100);
        assert_eq!(c.matching.batch_ms, 50);
        assert_eq!(c.topics.events, ["x", "y"]);
        assert_eq!(c.kafka.client["sasl.password"], "hunter2");
        assert_eq!(c.kafka.client["security.protocol"], "SASL_SSL");
        assert_eq!(c.correlate, CorrelateSection::default());
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        // What is printed loads back.
        let again: Config = toml::from_str(&shown).unwrap();
        assert_eq!(again.matching, c.matching);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[match]\nbatchh = 1\n").unwrap();
        let e = format!("{:#}", Config::load(Some(&path), &[]).unwrap_err());
        assert!(e.contains("bad.toml") && e.contains("batchh"), "{e}");
        std::fs::write(&path, "[match]\nbatch = 0\n").unwrap();
        let e = format!("{:#}", Config::load_checked(Some(&path), &[]).unwrap_err());
        assert!(e.contains("match.batch must be at least 1"), "{e}");
        std::fs::write(&path, "[correlate]\nstate_interval_ms = 5000000\n").unwrap();
        let e = format!("{:#}", Config::load_checked(Some(&path), &[]).unwrap_err());
        assert!(e.contains("correlate.state_interval_ms is 5000000"), "{e}");
        std::fs::write(&path, "[correlate]\nstate_max_deltas = 10001\n").unwrap();
        let e = format!("{:#}", Config::load_checked(Some(&path), &[]).unwrap_err());
        assert!(e.contains("correlate.state_max_deltas is 10001"), "{e}");
        std::fs::write(&path, "[correlate]\nstate_interval_ms = 0\n").unwrap();
        let c = Config::load_checked(Some(&path), &[]).unwrap();
        assert_eq!(c.correlate.state_interval_ms, 0);
        // A syntax error names the place, not the line's text (it may hold a secret).
        std::fs::write(&path, "[kafka.client]\n\"sasl.password\" = \"hunter2\n").unwrap();
        let e = format!("{:#}", Config::load(Some(&path), &[]).unwrap_err());
        assert!(e.contains("bad.toml:2:") && !e.contains("hunter2"), "{e}");
        // Numbers are fine for librdkafka properties.
        std::fs::write(&path, "[kafka.client]\n\"linger.ms\" = 5\n").unwrap();
        let c = Config::load(Some(&path), &[]).unwrap();
        assert_eq!(c.kafka.client["linger.ms"], "5");
        // A misspelt variable is an error.
        let e = format!(
            "{:#}",
            Config::load(None, &env(&[("TOCSIN_MATCH_BATCHMS", "5")])).unwrap_err()
        );
        assert!(
            e.contains("TOCSIN_MATCH_BATCHMS") && e.contains("TOCSIN_MATCH_BATCH_MS"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            Config::load(None, &env(&[("TOCSIN_MATCH_BATCH", "many")])).unwrap_err()
        );
        assert!(
            e.contains("TOCSIN_MATCH_BATCH") && e.contains("many"),
            "{e}"
        );
        std::fs::write(&path, "[match\n").unwrap();
        let e = format!("{:#}", Config::load(Some(&path), &[]).unwrap_err());
        assert!(e.contains("bad.toml"), "{e}");
    }
}
