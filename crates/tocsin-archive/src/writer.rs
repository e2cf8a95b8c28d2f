//! The archive sink: rows are buffered per table and partition (date, sector) and written as
//! zstd-compressed Parquet files of one row group each when a buffer is full and at
//! [`ArchiveWriter::finish`].
//!
//! Archiving copies each event into owned rows: it is off the matching hot path's
//! no-allocation invariant by design, and costs nothing when no archive is asked for.
//! Retention is counted from the newest event time written, not the wall clock, so that a
//! replayed week of logs is archived whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMillisecondArray, UInt32Array,
    UInt64Array,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use tocsin_core::{Detection, EarlyWarning, Event, EventContext, Timestamp};

use crate::schema::{self, DetectionRow, EventRow, WarningRow, EVENT_FIELDS};
use crate::{ArchiveError, ARCHIVE_FORMAT};

/// Rows per row group (and per file): large enough for zstd and Parquet statistics to pay,
/// small enough to bound the writer's memory (~64 k events of ~1 KB buffered per partition).
pub const ROW_GROUP_ROWS: usize = 65_536;

/// The three tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    Events,
    Detections,
    Warnings,
}

impl Table {
    /// The table's directory (and SQL name).
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Detections => "detections",
            Table::Warnings => "warnings",
        }
    }

    /// Whether the table is partitioned by sector under its date.
    pub fn by_sector(self) -> bool {
        !matches!(self, Table::Warnings)
    }
}

/// Counters of a writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveStats {
    pub events: u64,
    pub detections: u64,
    pub warnings: u64,
    pub files: u64,
    /// Date partitions removed by retention.
    pub expired_partitions: u64,
}

enum Rows {
    Events(Vec<EventRow>),
    Detections(Vec<DetectionRow>),
    Warnings(Vec<WarningRow>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Events(r) => r.len(),
            Rows::Detections(r) => r.len(),
            Rows::Warnings(r) => r.len(),
        }
    }
}

/// Partition key: table, `YYYY-MM-DD`, sector slug (`unknown` when the event has none).
type Partition = (Table, String, Option<String>);

/// Writes an archive directory.
pub struct ArchiveWriter {
    dir: PathBuf,
    buffers: BTreeMap<Partition, Rows>,
    properties: WriterProperties,
    /// Distinguishes this writer's files from earlier runs' in the same partitions.
    prefix: String,
    sequence: u64,
    newest: Option<Timestamp>,
    retention_days: Option<u32>,
    stats: ArchiveStats,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `YYYY-MM-DD` of an event time.
pub fn date_of(t: Timestamp) -> String {
    let (y, m, d, ..) = t.civil();
    format!("{y:04}-{m:02}-{d:02}")
}

impl ArchiveWriter {
    /// Open (or start) the archive in `dir`. An existing archive of another format is an
    /// error, not overwritten. `retention_days`: date partitions older than that many days
    /// before the newest event written are removed at [`ArchiveWriter::finish`].
    pub fn create(dir: &Path, retention_days: Option<u32>) -> Result<Self, ArchiveError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let marker = dir.join("archive.json");
        if marker.exists() {
            crate::query::check_format(dir)?;
        } else {
            let text = format!("{{\"format\": \"{ARCHIVE_FORMAT}\"}}\n");
            std::fs::write(&marker, text).map_err(io(&marker))?;
        }
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| {
                ArchiveError::Parquet {
                    path: dir.display().to_string(),
                    message: e.to_string(),
                }
            })?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Ok(ArchiveWriter {
            dir: dir.to_owned(),
            buffers: BTreeMap::new(),
            properties,
            prefix: format!("{started}-{}", std::process::id()),
            sequence: 0,
            newest: None,
            retention_days,
            stats: ArchiveStats::default(),
        })
    }

    /// Archive one event (its raw JSON and the extracted columns).
    pub fn event(
        &mut self,
        event: &Event<'_>,
        ctx: &EventContext<'_>,
        time: Timestamp,
    ) -> Result<(), ArchiveError> {
        let mut buf = String::new();
        let mut field = |names: &[&str]| {
            names.iter().find_map(|n| {
                let v = event.get_flat(n).or_else(|| event.get(n))?;
                v.text(&mut buf).map(str::to_owned)
            })
        };
        let fields: Vec<Option<String>> = EVENT_FIELDS.iter().map(|(_, n)| field(n)).collect();
        let event_id = event
            .get_flat("EventID")
            .and_then(|v| v.as_i64())
            .or_else(|| event.get("event.code").and_then(|v| v.as_i64()));
        let row = EventRow {
            time_ms: time.0,
            member_state: ctx.member_state.map(|m| m.as_str().to_owned()),
            organisation: ctx.organisation.as_deref().map(str::to_owned),
            sensor: ctx.sensor.as_deref().map(str::to_owned),
            event_id,
            fields,
            raw: String::from_utf8_lossy(event.raw()).into_owned(),
        };
        let sector = ctx.sector.map(|s| s.to_string());
        self.stats.events += 1;
        self.push(Table::Events, time, sector, |rows| match rows {
            Rows::Events(v) => v.push(row),
            _ => unreachable!("partition of the events table"),
        })
    }

    /// Archive one detection.
    pub fn detection(&mut self, d: &Detection) -> Result<(), ArchiveError> {
        let row = DetectionRow {
            time_ms: d.event_time.0,
            member_state: d.context.member_state.map(|m| m.as_str().to_owned()),
            organisation: d.context.organisation.clone(),
            id: d.id.clone(),
            rule_id: d.rule.id.clone(),
            rule_title: d.rule.title.clone(),
            level: enum_text(&d.rule.level),
            kind: enum_text(&d.kind),
            correlation_keys: json(&d.correlation_keys),
            indicators: json(&d.indicators),
            source: d.source.as_ref().map(|s| s.name.clone()),
            source_position: d.source.as_ref().map(|s| s.position),
            json: json(d),
        };
        let sector = d.context.sector.map(|s| s.to_string());
        self.stats.detections += 1;
        self.push(Table::Detections, d.event_time, sector, |rows| match rows {
            Rows::Detections(v) => v.push(row),
            _ => unreachable!("partition of the detections table"),
        })
    }

    /// Archive one warning version (the canonical form: render per audience when reading).
    pub fn warning(&mut self, w: &EarlyWarning) -> Result<(), ArchiveError> {
        let join = |v: Vec<String>| v.join(",");
        let row = WarningRow {
            issued_at_ms: w.issued_at.0,
            warning_id: w.warning_id.clone(),
            version: w.version,
            status: enum_text(&w.status),
            severity: enum_text(&w.severity),
            tlp: enum_text(&w.tlp),
            headline: w.headline.clone(),
            correlation_key: w.correlation_key.clone(),
            first_seen_ms: w.first_seen.0,
            last_seen_ms: w.last_seen.0,
            organisation_count: w.affected.organisation_count,
            sectors: join(w.affected.sectors.iter().map(|s| s.to_string()).collect()),
            member_states: join(
                w.affected
                    .member_states
                    .iter()
                    .map(|m| m.as_str().to_owned())
                    .collect(),
            ),
            cross_border: w.cross_border,
            cross_sector: w.cross_sector,
            taxonomy: w.taxonomy.as_ref().map(enum_text),
            json: json(w),
        };
        self.stats.warnings += 1;
        self.push(Table::Warnings, w.issued_at, None, |rows| match rows {
            Rows::Warnings(v) => v.push(row),
            _ => unreachable!("partition of the warnings table"),
        })
    }

    fn push(
        &mut self,
        table: Table,
        time: Timestamp,
        sector: Option<String>,
        add: impl FnOnce(&mut Rows),
    ) -> Result<(), ArchiveError> {
        if self.newest.is_none_or(|n| time > n) {
            self.newest = Some(time);
        }
        let sector = table
            .by_sector()
            .then(|| sector.unwrap_or_else(|| "unknown".into()));
        let key = (table, date_of(time), sector);
        let rows = self
            .buffers
            .entry(key.clone())
            .or_insert_with(|| match table {
                Table::Events => Rows::Events(Vec::new()),
                Table::Detections => Rows::Detections(Vec::new()),
                Table::Warnings => Rows::Warnings(Vec::new()),
            });
        add(rows);
        if rows.len() >= ROW_GROUP_ROWS {
            let rows = self.buffers.remove(&key).expect("present");
            self.write(&key, rows)?;
        }
        Ok(())
    }

    /// Rows buffered, not yet in a file.
    pub fn buffered_rows(&self) -> usize {
        self.buffers.values().map(Rows::len).sum()
    }

    /// Write every buffer to its file now, and apply retention. A long-running writer (the
    /// archive worker) calls this before committing what it consumed: once it returns, every
    /// row pushed so far is in a complete file.
    pub fn flush(&mut self) -> Result<(), ArchiveError> {
        for (key, rows) in std::mem::take(&mut self.buffers) {
            self.write(&key, rows)?;
        }
        self.expire()
    }

    /// The counters so far.
    pub fn stats(&self) -> ArchiveStats {
        self.stats
    }

    /// Write every buffer, apply retention, and return the counters.
    pub fn finish(mut self) -> Result<ArchiveStats, ArchiveError> {
        self.flush()?;
        Ok(self.stats)
    }

    /// Remove the date partitions older than the retention before the newest event.
    fn expire(&mut self) -> Result<(), ArchiveError> {
        if let (Some(days), Some(newest)) = (self.retention_days, self.newest) {
            let cutoff = date_of(Timestamp(newest.0 - i64::from(days) * 86_400_000));
            for table in [Table::Events, Table::Detections, Table::Warnings] {
                let dir = self.dir.join(table.name());
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.strip_prefix("date=").is_some_and(|d| *d < *cutoff) {
                        std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
                        self.stats.expired_partitions += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, key: &Partition, rows: Rows) -> Result<(), ArchiveError> {
        let (table, date, sector) = key;
        let mut dir = self.dir.join(table.name()).join(format!("date={date}"));
        if let Some(s) = sector {
            dir = dir.join(format!("sector={s}"));
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        self.sequence += 1;
        let path = dir.join(format!("part-{}-{:05}.parquet", self.prefix, self.sequence));
        let (schema, columns) = match rows {
            Rows::Events(r) => (schema::events(), event_columns(&r)),
            Rows::Detections(r) => (schema::detections(), detection_columns(&r)),
            Rows::Warnings(r) => (schema::warnings(), warning_columns(&r)),
        };
        let parquet = |e: &dyn std::fmt::Display| ArchiveError::Parquet {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let batch =
            RecordBatch::try_new(SchemaRef::clone(&schema), columns).map_err(|e| parquet(&e))?;
        // Written under another name and renamed when complete: a reader never sees a
        // half-written `.parquet` file, and a crash leaves only a `.partial` one behind.
        let partial = path.with_extension("parquet.partial");
        let file = File::create(&partial).map_err(io(&partial))?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(self.properties.clone()))
            .map_err(|e| parquet(&e))?;
        writer.write(&batch).map_err(|e| parquet(&e))?;
        writer.close().map_err(|e| parquet(&e))?;
        std::fs::rename(&partial, &path).map_err(io(&path))?;
        self.stats.files += 1;
        Ok(())
    }
}

/// The serde name of a unit enum (`high`, `sigma`, `escalated`, …).
fn enum_text<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Compact JSON.
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn times(v: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(v).with_timezone("UTC"))
}

fn strings<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(v.collect::<StringArray>())
}

fn event_columns(r: &[EventRow]) -> Vec<ArrayRef> {
    let mut c = vec![
        times(r.iter().map(|e| e.time_ms)),
        strings(r.iter().map(|e| e.member_state.as_deref())),
        strings(r.iter().map(|e| e.organisation.as_deref())),
        strings(r.iter().map(|e| e.sensor.as_deref())),
        Arc::new(r.iter().map(|e| e.event_id).collect::<Int64Array>()) as ArrayRef,
    ];
    for i in 0..EVENT_FIELDS.len() {
        c.push(strings(r.iter().map(|e| e.fields[i].as_deref())));
    }
    c.push(strings(r.iter().map(|e| Some(e.raw.as_str()))));
    c
}

fn detection_columns(r: &[DetectionRow]) -> Vec<ArrayRef> {
    vec![
        times(r.iter().map(|d| d.time_ms)),
        strings(r.iter().map(|d| d.member_state.as_deref())),
        strings(r.iter().map(|d| d.organisation.as_deref())),
        strings(r.iter().map(|d| Some(d.id.as_str()))),
        strings(r.iter().map(|d| Some(d.rule_id.as_str()))),
        strings(r.iter().map(|d| Some(d.rule_title.as_str()))),
        strings(r.iter().map(|d| Some(d.level.as_str()))),
        strings(r.iter().map(|d| Some(d.kind.as_str()))),
        strings(r.iter().map(|d| Some(d.correlation_keys.as_str()))),
        strings(r.iter().map(|d| Some(d.indicators.as_str()))),
        strings(r.iter().map(|d| d.source.as_deref())),
        Arc::new(r.iter().map(|d| d.source_position).collect::<UInt64Array>()) as ArrayRef,
        strings(r.iter().map(|d| Some(d.json.as_str()))),
    ]
}

fn warning_columns(r: &[WarningRow]) -> Vec<ArrayRef> {
    vec![
        times(r.iter().map(|w| w.issued_at_ms)),
        strings(r.iter().map(|w| Some(w.warning_id.as_str()))),
        Arc::new(r.iter().map(|w| Some(w.version)).collect::<UInt32Array>()) as ArrayRef,
        strings(r.iter().map(|w| Some(w.status.as_str()))),
        strings(r.iter().map(|w| Some(w.severity.as_str()))),
        strings(r.iter().map(|w| Some(w.tlp.as_str()))),
        strings(r.iter().map(|w| Some(w.headline.as_str()))),
        strings(r.iter().map(|w| Some(w.correlation_key.as_str()))),
        times(r.iter().map(|w| w.first_seen_ms)),
        times(r.iter().map(|w| w.last_seen_ms)),
        Arc::new(
            r.iter()
                .map(|w| Some(w.organisation_count))
                .collect::<UInt32Array>(),
        ) as ArrayRef,
        strings(r.iter().map(|w| Some(w.sectors.as_str()))),
        strings(r.iter().map(|w| Some(w.member_states.as_str()))),
        Arc::new(
            r.iter()
                .map(|w| Some(w.cross_border))
                .collect::<BooleanArray>(),
        ) as ArrayRef,
        Arc::new(
            r.iter()
                .map(|w| Some(w.cross_sector))
                .collect::<BooleanArray>(),
        ) as ArrayRef,
        strings(r.iter().map(|w| w.taxonomy.as_deref())),
        strings(r.iter().map(|w| Some(w.json.as_str()))),
    ]
}
