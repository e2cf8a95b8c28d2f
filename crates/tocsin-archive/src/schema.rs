//! The Arrow schemas of the three tables, and the rows the writer buffers for them.
//!
//! Columns are what a hunt or a report filters and groups on; the whole record is kept too
//! (`raw` for events, `json` for detections and warnings) so that nothing is lost and a later
//! version can extract more. `date` and `sector` are not columns in the files: they are the
//! Hive partition directories, and DataFusion adds them to every table.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

fn time(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// Event fields extracted into columns, by the names the Sysmon and Windows Security logs
/// use; each column takes the first of its names present in the event.
pub const EVENT_FIELDS: &[(&str, &[&str])] = &[
    ("channel", &["Channel"]),
    ("host", &["Computer", "Hostname", "host.name"]),
    ("user", &["User", "TargetUserName", "user.name"]),
    ("image", &["Image", "NewProcessName", "process.executable"]),
    (
        "command_line",
        &["CommandLine", "ProcessCommandLine", "process.command_line"],
    ),
    ("source_ip", &["SourceIp", "IpAddress", "source.ip"]),
    ("destination_ip", &["DestinationIp", "destination.ip"]),
    ("query_name", &["QueryName", "dns.question.name"]),
];

/// `events`: one row per event read.
pub fn events() -> SchemaRef {
    let mut fields = vec![
        time("time"),
        text("member_state", true),
        text("organisation", true),
        text("sensor", true),
        Field::new("event_id", DataType::Int64, true),
    ];
    fields.extend(EVENT_FIELDS.iter().map(|(name, _)| text(name, true)));
    fields.push(text("raw", false));
    Arc::new(Schema::new(fields))
}

/// `detections`: one row per detection.
pub fn detections() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time("time"),
        text("member_state", true),
        text("organisation", true),
        text("id", false),
        text("rule_id", false),
        text("rule_title", false),
        text("level", false),
        text("kind", false),
        // JSON arrays, as text: the nested-type functions are left out of the build.
        text("correlation_keys", false),
        text("indicators", false),
        text("source", true),
        Field::new("source_position", DataType::UInt64, true),
        text("json", false),
    ]))
}

/// `warnings`: one row per warning version (canonical form).
pub fn warnings() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time("issued_at"),
        text("warning_id", false),
        Field::new("version", DataType::UInt32, false),
        text("status", false),
        text("severity", false),
        text("tlp", false),
        text("headline", false),
        text("correlation_key", false),
        time("first_seen"),
        time("last_seen"),
        Field::new("organisation_count", DataType::UInt32, false),
        // Comma-separated, sorted: `sectors LIKE '%health%'`.
        text("sectors", false),
        text("member_states", false),
        Field::new("cross_border", DataType::Boolean, false),
        Field::new("cross_sector", DataType::Boolean, false),
        text("taxonomy", true),
        text("json", false),
    ]))
}

/// One buffered event.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub time_ms: i64,
    pub member_state: Option<String>,
    pub organisation: Option<String>,
    pub sensor: Option<String>,
    pub event_id: Option<i64>,
    /// In the order of [`EVENT_FIELDS`].
    pub fields: Vec<Option<String>>,
    pub raw: String,
}

/// One buffered detection.
#[derive(Debug, Clone)]
pub struct DetectionRow {
    pub time_ms: i64,
    pub member_state: Option<String>,
    pub organisation: Option<String>,
    pub id: String,
    pub rule_id: String,
    pub rule_title: String,
    pub level: String,
    pub kind: String,
    pub correlation_keys: String,
    pub indicators: String,
    pub source: Option<String>,
    pub source_position: Option<u64>,
    pub json: String,
}

/// One buffered warning version.
#[derive(Debug, Clone)]
pub struct WarningRow {
    pub issued_at_ms: i64,
    pub warning_id: String,
    pub version: u32,
    pub status: String,
    pub severity: String,
    pub tlp: String,
    pub headline: String,
    pub correlation_key: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub organisation_count: u32,
    pub sectors: String,
    pub member_states: String,
    pub cross_border: bool,
    pub cross_sector: bool,
    pub taxonomy: Option<String>,
    pub json: String,
}
