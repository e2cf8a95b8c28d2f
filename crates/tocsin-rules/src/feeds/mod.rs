//! Indicator feeds in the formats CSIRTs exchange: MISP events and feeds, STIX 2.1 bundles,
//! CSV exports and plain lists.
//!
//! A national CSIRT receives indicators from MISP communities, from STIX/TAXII partners and as
//! spreadsheets; the matcher wants one shape: normalised [`Indicator`]s with feed, TLP and
//! provenance. Each reader here turns one format into that shape. As everywhere in this
//! crate, the caller does the I/O and passes `(file name, text)`; a bad entry becomes a
//! [`Diagnostic`] (file, line when it can be found, and the JSON path or CSV line of the
//! entry in the message) and is skipped while the rest loads. No input makes a reader panic:
//! property tests feed them generated and mutated text.
//!
//! What a format can say that Tocsin cannot match (a MISP `regkey`, a STIX pattern with
//! `AND` or `WITHIN`) is reported per entry as unsupported, never approximated.
//!
//! Limits ([`FeedLimits`]) bound what one feed may load, so that a runaway export cannot
//! exhaust a worker's memory.

mod csv;
mod misp;
mod stix;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::de::IgnoredAny;
use serde::Deserialize;
use tocsin_core::{IndicatorType, Timestamp, Tlp};

use crate::diagnostic::{Diagnostic, Location};
use crate::ioc::{normalise, parse_plain_list, Indicator};

pub use self::misp::parse_misp_feed;

/// The formats [`parse_feed`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedFormat {
    /// A MISP event export (`{"Event": …}`, `{"response": […]}`).
    Misp,
    /// A STIX 2.1 bundle.
    Stix,
    /// Comma-separated values with a header row.
    Csv,
    /// One indicator per line ([`parse_plain_list`]).
    Plain,
}

impl FeedFormat {
    /// The name [`FromStr`] accepts: `misp`, `stix`, `csv` or `plain`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedFormat::Misp => "misp",
            FeedFormat::Stix => "stix",
            FeedFormat::Csv => "csv",
            FeedFormat::Plain => "plain",
        }
    }
}

impl fmt::Display for FeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a feed format name that [`FeedFormat::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown feed format '{0}' (expected misp, stix, csv or plain)")]
pub struct UnknownFeedFormat(pub String);

impl FromStr for FeedFormat {
    type Err = UnknownFeedFormat;

    /// Parses `misp`, `stix`, `csv` or `plain`, case-insensitively (also `stix2`, `txt`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "misp" => Ok(FeedFormat::Misp),
            "stix" | "stix2" | "stix2.1" => Ok(FeedFormat::Stix),
            "csv" => Ok(FeedFormat::Csv),
            "plain" | "txt" | "text" => Ok(FeedFormat::Plain),
            _ => Err(UnknownFeedFormat(text.to_owned())),
        }
    }
}

/// A CSV column, by header name or by 0-based index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvColumn {
    /// Found by its conventional header names (see [`CsvOptions`]); index 0 for the value
    /// column of a file without a header.
    Auto,
    /// The column with this header (compared case-insensitively).
    Named(String),
    /// The column at this 0-based index.
    Index(usize),
}

/// How to read a CSV feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// The indicator value; `Auto` looks for a header `value`, `indicator` or `ioc`.
    pub value_column: CsvColumn,
    /// The per-row type (MISP type names such as `ip-dst|port`, or Tocsin's names); `Auto`
    /// uses a `type` header when there is one. Without a type, it is inferred from the value.
    pub type_column: Option<CsvColumn>,
    /// One type for every row; takes precedence over the type column.
    pub fixed_type: Option<IndicatorType>,
    /// The per-row TLP (`amber`, `TLP:RED`…); `Auto` uses a `tlp` header when there is one.
    /// Empty cells take the feed default.
    pub tlp_column: Option<CsvColumn>,
    /// The row's id in the source (becomes `source_id`); `Auto` uses a `uuid` or `id` header.
    pub id_column: Option<CsvColumn>,
    /// The field delimiter (`b','`; `b'\t'` for tab-separated files).
    pub delimiter: u8,
    /// Whether the first record is a header row.
    pub has_header: bool,
    /// Lines starting with this byte are comments (`#` by default).
    pub comment: Option<u8>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            value_column: CsvColumn::Auto,
            type_column: Some(CsvColumn::Auto),
            fixed_type: None,
            tlp_column: Some(CsvColumn::Auto),
            id_column: Some(CsvColumn::Auto),
            delimiter: b',',
            has_header: true,
            comment: Some(b'#'),
        }
    }
}

/// Bounds on what one feed may load. Hitting one is an error diagnostic; what was read
/// before it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedLimits {
    /// Indicators per feed (all files of a MISP feed together); default 10,000,000.
    pub max_indicators: usize,
    /// Bytes of one raw value; longer values are skipped. Default 4096.
    pub max_value_bytes: usize,
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits {
            max_indicators: 10_000_000,
            max_value_bytes: 4096,
        }
    }
}

/// How to read a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedOptions {
    /// The feed name every indicator carries; when empty, the file name without directories
    /// and extensions.
    pub feed_name: String,
    /// The TLP of indicators whose source marks none (default GREEN, as for plain lists).
    pub default_tlp: Tlp,
    /// MISP: also load attributes with `to_ids: false` (not meant for detection; skipped by
    /// default).
    pub include_non_ids: bool,
    /// CSV columns and dialect.
    pub csv: CsvOptions,
    /// Bounds on what one feed may load.
    pub limits: FeedLimits,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            feed_name: String::new(),
            default_tlp: Tlp::Green,
            include_non_ids: false,
            csv: CsvOptions::default(),
            limits: FeedLimits::default(),
        }
    }
}

impl FeedOptions {
    /// Default options for the feed called `feed_name`.
    pub fn named(feed_name: impl Into<String>) -> Self {
        FeedOptions {
            feed_name: feed_name.into(),
            ..FeedOptions::default()
        }
    }
}

/// Guess a feed's format from its name and text: JSON with a top-level `Event` or
/// `response` is MISP, JSON with `"type": "bundle"` is STIX, a `.csv` name or a CSV header
/// line (naming a `value`, `indicator` or `ioc` column) is CSV, anything else is a plain list.
/// `None` for JSON that is neither (a MISP `manifest.json`, say).
pub fn detect_format(file_name: &str, text: &str) -> Option<FeedFormat> {
    let body = text.trim_start_matches('\u{feff}').trim_start();
    if body.starts_with('{') || body.starts_with('[') {
        return detect_json_format(body);
    }
    let lower_name = file_name.to_ascii_lowercase();
    let lower_name = lower_name.strip_suffix(".gz").unwrap_or(&lower_name);
    if lower_name.ends_with(".csv") || lower_name.ends_with(".tsv") {
        return Some(FeedFormat::Csv);
    }
    let first_line = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if first_line.is_some_and(is_csv_header) {
        return Some(FeedFormat::Csv);
    }
    Some(FeedFormat::Plain)
}

/// The top-level members [`detect_format`] looks at, read without building the document.
#[derive(Deserialize)]
struct JsonProbe {
    #[serde(rename = "Event")]
    event: Option<IgnoredAny>,
    response: Option<IgnoredAny>,
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
}

fn detect_json_format(body: &str) -> Option<FeedFormat> {
    if body.starts_with('[') {
        // A list of MISP events, as some exports write them.
        let items = serde_json::from_str::<Vec<JsonProbe>>(body).ok()?;
        return items
            .first()
            .filter(|p| p.event.is_some())
            .map(|_| FeedFormat::Misp);
    }
    match serde_json::from_str::<JsonProbe>(body) {
        Ok(probe) if probe.event.is_some() || probe.response.is_some() => Some(FeedFormat::Misp),
        Ok(probe) => (probe.kind.as_ref().and_then(|k| k.as_str()) == Some("bundle"))
            .then_some(FeedFormat::Stix),
        // Broken JSON: guess from the start, so that the reader reports where it breaks.
        Err(_) => {
            let head: String = body.chars().take(4096).collect();
            if head.contains("\"Event\"") || head.contains("\"response\"") {
                Some(FeedFormat::Misp)
            } else if head.contains("\"bundle\"") {
                Some(FeedFormat::Stix)
            } else {
                None
            }
        }
    }
}

/// A comma-separated first line naming a value column.
fn is_csv_header(line: &str) -> bool {
    line.contains(',')
        && line.split(',').any(|field| {
            let name = field.trim().trim_matches('"').trim().to_ascii_lowercase();
            VALUE_HEADERS.contains(&name.as_str())
        })
}

/// Header names of the value column, in order of preference.
pub(crate) const VALUE_HEADERS: [&str; 3] = ["value", "indicator", "ioc"];

/// Read one feed file in `format`. `file` names it in diagnostics.
pub fn parse_feed(
    file: &str,
    text: &str,
    format: FeedFormat,
    options: &FeedOptions,
) -> (Vec<Indicator>, Vec<Diagnostic>) {
    let feed = feed_name(options, file);
    match format {
        FeedFormat::Misp => {
            let mut sink = IndicatorSink::new(options.limits);
            misp::parse_event_file(file, text, &feed, options, &mut sink);
            sink.finish()
        }
        FeedFormat::Stix => {
            let mut sink = IndicatorSink::new(options.limits);
            stix::parse_bundle(file, text, &feed, options, &mut sink);
            sink.finish()
        }
        FeedFormat::Csv => {
            let mut sink = IndicatorSink::new(options.limits);
            csv::parse_csv(file, text, &feed, options, &mut sink);
            sink.finish()
        }
        FeedFormat::Plain => parse_plain(file, text, &feed, options),
    }
}

/// A plain list through [`parse_plain_list`], with the feed's default TLP (when the list has
/// no `#! tlp:` header) and the limits applied. `parse_plain_list` reads the whole list
/// first, so here the limits bound what is kept, not what is read; its value-length check
/// applies to normalised values.
fn parse_plain(
    file: &str,
    text: &str,
    feed: &str,
    options: &FeedOptions,
) -> (Vec<Indicator>, Vec<Diagnostic>) {
    let (indicators, mut diagnostics) = parse_plain_list(file, text, feed);
    let has_tlp_header = text.lines().any(|line| {
        line.trim()
            .strip_prefix("#!")
            .and_then(|h| h.split_once(':'))
            .is_some_and(|(key, _)| key.trim() == "tlp")
    });
    let mut sink = IndicatorSink::new(options.limits);
    for mut indicator in indicators {
        if !has_tlp_header {
            indicator.tlp = options.default_tlp;
        }
        if sink.is_full() {
            sink.note_full(&indicator.location);
            break;
        }
        if indicator.value.len() > options.limits.max_value_bytes {
            let location = indicator.location.clone();
            sink.too_long(location, &indicator.value, "");
            continue;
        }
        sink.indicators.push(indicator);
    }
    let (indicators, mut limit_problems) = sink.finish();
    diagnostics.append(&mut limit_problems);
    diagnostics.sort_by_key(|d| d.location.line);
    (indicators, diagnostics)
}

/// The feed name: the configured one, else the file name without directories and extensions.
pub(crate) fn feed_name(options: &FeedOptions, file: &str) -> String {
    if !options.feed_name.trim().is_empty() {
        return options.feed_name.trim().to_owned();
    }
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let stem = base.split('.').next().unwrap_or(base);
    if stem.is_empty() {
        "feed".to_owned()
    } else {
        stem.to_owned()
    }
}

/// How a source type name (MISP's `ip-dst|port`, Tocsin's `sha256`) splits a value into
/// indicators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueShape {
    /// One value of one type.
    Single(IndicatorType),
    /// An IPv4 or IPv6 address or CIDR range; the family is read from the value.
    Ip,
    /// `ip|port`: the address; the port is dropped (Tocsin matches addresses).
    IpPort,
    /// `host|port`: the host name; the port is dropped.
    HostPort,
    /// `domain|ip`: both.
    DomainIp,
    /// `filename|hash`: the hash, and the file name as a file-name indicator.
    FilenameHash(IndicatorType),
}

impl ValueShape {
    /// The shape of a type name: MISP's attribute types first, then [`IndicatorType::parse`].
    pub(crate) fn from_type_name(name: &str) -> Option<ValueShape> {
        let lower = name.trim().to_ascii_lowercase();
        Some(match lower.as_str() {
            "ip-src" | "ip-dst" | "ip" | "ip-address" | "ip-addr" => ValueShape::Ip,
            "ip-src|port" | "ip-dst|port" => ValueShape::IpPort,
            "hostname|port" | "domain|port" => ValueShape::HostPort,
            "domain|ip" | "hostname|ip" => ValueShape::DomainIp,
            "filename|md5" => ValueShape::FilenameHash(IndicatorType::Md5),
            "filename|sha1" => ValueShape::FilenameHash(IndicatorType::Sha1),
            "filename|sha256" => ValueShape::FilenameHash(IndicatorType::Sha256),
            "filename|sha512" => ValueShape::FilenameHash(IndicatorType::Sha512),
            "email" | "email-src" | "email-dst" | "target-email" => {
                ValueShape::Single(IndicatorType::Email)
            }
            // MISP's `link` is a reference to a report about the event, not an indicator.
            "link" => return None,
            other => ValueShape::Single(IndicatorType::parse(other)?),
        })
    }

    /// Split a raw value into (type, raw part) pairs; `Err` says why it does not fit.
    pub(crate) fn split(self, raw: &str) -> Result<Vec<(IndicatorType, &str)>, String> {
        let pair = || {
            raw.split_once('|')
                .map(|(a, b)| (a.trim(), b.trim()))
                .ok_or_else(|| "expected two parts separated by '|'".to_owned())
        };
        Ok(match self {
            ValueShape::Single(kind) => vec![(kind, raw)],
            ValueShape::Ip => vec![(ip_family(raw)?, raw)],
            ValueShape::IpPort => {
                let (ip, port) = pair()?;
                check_port(port)?;
                vec![(ip_family(ip)?, ip)]
            }
            ValueShape::HostPort => {
                let (host, port) = pair()?;
                check_port(port)?;
                vec![(IndicatorType::Domain, host)]
            }
            ValueShape::DomainIp => {
                let (domain, ip) = pair()?;
                vec![(IndicatorType::Domain, domain), (ip_family(ip)?, ip)]
            }
            ValueShape::FilenameHash(hash) => {
                let (name, digest) = pair()?;
                vec![(hash, digest), (IndicatorType::Filename, name)]
            }
        })
    }
}

/// IPv4 or IPv6, from an address or `address/prefix`.
fn ip_family(raw: &str) -> Result<IndicatorType, String> {
    let address = raw.trim().split('/').next().unwrap_or_default();
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => Ok(IndicatorType::Ipv4),
        Ok(std::net::IpAddr::V6(_)) => Ok(IndicatorType::Ipv6),
        Err(_) => Err(format!(
            "'{}' is not an IP address or CIDR range",
            shown(raw)
        )),
    }
}

fn check_port(port: &str) -> Result<(), String> {
    match port.parse::<u16>() {
        Ok(_) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!("'{}' is not a port number", shown(port))),
    }
}

/// What an indicator carries besides its type and value: the same for every part of one
/// source entry.
#[derive(Debug, Clone)]
pub(crate) struct IndicatorMeta {
    pub feed: String,
    pub tlp: Tlp,
    pub source_id: Option<String>,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    pub confidence: Option<u8>,
    pub tags: Vec<String>,
}

/// Collects indicators and diagnostics, enforcing the limits.
pub(crate) struct IndicatorSink {
    limits: FeedLimits,
    indicators: Vec<Indicator>,
    diagnostics: Vec<Diagnostic>,
    reported_full: bool,
}

impl IndicatorSink {
    pub(crate) fn new(limits: FeedLimits) -> Self {
        IndicatorSink {
            limits,
            indicators: Vec::new(),
            diagnostics: Vec::new(),
            reported_full: false,
        }
    }

    /// True once the indicator limit is reached.
    fn is_full(&self) -> bool {
        self.indicators.len() >= self.limits.max_indicators
    }

    pub(crate) fn diagnostic(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Report, once, that the limit cut the feed short.
    fn note_full(&mut self, location: &Location) {
        if !self.reported_full {
            self.reported_full = true;
            self.diagnostics.push(Diagnostic::error(
                location.clone(),
                "feed-limit",
                format!(
                    "the feed holds more than {} indicators (the limit); the rest is skipped",
                    self.limits.max_indicators
                ),
            ));
        }
    }

    fn too_long(&mut self, location: Location, value: &str, entry: &str) {
        self.diagnostics.push(Diagnostic::error(
            location,
            "value-too-long",
            format!(
                "{entry}value '{}' is {} bytes, over the limit of {}; skipped",
                shown(value),
                value.len(),
                self.limits.max_value_bytes
            ),
        ));
    }

    /// Normalise `raw` as a `kind` and keep it; a diagnostic naming `entry` (a JSON path, an
    /// indicator id) when it is too long or invalid. True when it was kept.
    pub(crate) fn add(
        &mut self,
        kind: IndicatorType,
        raw: &str,
        meta: &IndicatorMeta,
        location: &Location,
        entry: &str,
    ) -> bool {
        if self.is_full() {
            self.note_full(location);
            return false;
        }
        let prefix = if entry.is_empty() {
            String::new()
        } else {
            format!("{entry}: ")
        };
        if raw.len() > self.limits.max_value_bytes {
            self.too_long(location.clone(), raw, &prefix);
            return false;
        }
        let Some(value) = normalise(kind, raw) else {
            self.diagnostics.push(Diagnostic::error(
                location.clone(),
                "bad-indicator",
                format!("{prefix}'{}' is not a valid {}", shown(raw), kind.as_str()),
            ));
            return false;
        };
        self.indicators.push(Indicator {
            kind,
            value,
            feed: meta.feed.clone(),
            tlp: meta.tlp,
            source_id: meta.source_id.clone(),
            valid_from: meta.valid_from,
            valid_until: meta.valid_until,
            confidence: meta.confidence,
            tags: meta.tags.clone(),
            location: location.clone(),
        });
        true
    }

    pub(crate) fn finish(self) -> (Vec<Indicator>, Vec<Diagnostic>) {
        (self.indicators, self.diagnostics)
    }
}

/// A value as shown in a message: at most 80 characters.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// Lines of identified JSON objects, found on demand.
///
/// `serde_json` does not say where a value was, but the entries feeds carry are identified:
/// MISP attributes and events by `"uuid"`, STIX objects by `"id"`. The first time a
/// diagnostic needs a line, one pass over the text records the line of every such id; later
/// look-ups are hash look-ups. Files without problems never pay for it.
pub(crate) struct JsonLines<'t> {
    text: &'t str,
    index: Option<HashMap<&'t str, usize>>,
}

impl<'t> JsonLines<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        JsonLines { text, index: None }
    }

    /// The line of the object whose `id`/`uuid` member is `id`; 1 when unknown.
    pub(crate) fn line_of(&mut self, id: Option<&str>) -> usize {
        let Some(id) = id else { return 1 };
        let text = self.text;
        let index = self.index.get_or_insert_with(|| index_id_lines(text));
        index.get(id).copied().unwrap_or(1)
    }
}

/// The line of the value of every `"id"` and `"uuid"` member (first occurrence wins).
fn index_id_lines(text: &str) -> HashMap<&str, usize> {
    let bytes = text.as_bytes();
    let mut index = HashMap::new();
    let mut line = 1;
    let mut i = 0;
    // The last string seen, and whether it was an id key followed by ':'.
    let mut last_string: Option<&str> = None;
    let mut after_id_key = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line += 1,
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < bytes.len() && bytes[j] != b'"' {
                    if bytes[j] == b'\\' {
                        j += 1;
                    } else if bytes[j] == b'\n' {
                        line += 1;
                    }
                    j += 1;
                }
                let end = j.min(bytes.len());
                let string = text.get(start..end).unwrap_or_default();
                if after_id_key {
                    index.entry(string).or_insert(line);
                    after_id_key = false;
                    last_string = None;
                } else {
                    last_string = Some(string);
                }
                i = end;
            }
            b':' => {
                after_id_key = matches!(last_string, Some("id" | "uuid"));
                last_string = None;
            }
            b if b.is_ascii_whitespace() => {}
            _ => {
                after_id_key = false;
                last_string = None;
            }
        }
        i += 1;
    }
    index
}

/// A JSON value's text when it is a string, or a number written as text.
pub(crate) fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON flag as MISP writes it: `true`, `"1"`, `1`, `"true"`.
pub(crate) fn json_flag(value: Option<&serde_json::Value>) -> Option<bool> {
    match value? {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Number(n) => n.as_i64().map(|n| n != 0),
        serde_json::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" => Some(true),
            "0" | "false" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A timestamp from a JSON string or number (epoch seconds or milliseconds).
pub(crate) fn json_timestamp(value: &serde_json::Value) -> Option<Timestamp> {
    match value {
        serde_json::Value::String(s) => Timestamp::parse(s).ok(),
        serde_json::Value::Number(n) => n.as_f64().and_then(Timestamp::from_epoch_number),
        _ => None,
    }
}

/// A location from a `serde_json` syntax error.
pub(crate) fn json_error_location(file: &str, error: &serde_json::Error) -> Location {
    Location {
        file: file.to_owned(),
        line: error.line().max(1),
        column: error.column(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lines_are_found() {
        let text =
            "{\n \"a\": \"uuid\",\n \"uuid\" :\n \"u-1\",\n \"x\": [{\"id\": \"i\\\"d\"}]\n}";
        let index = index_id_lines(text);
        assert_eq!(index.get("u-1"), Some(&4));
        assert_eq!(index.get("i\\\"d"), Some(&5));
        assert_eq!(index.len(), 2, "{index:?}");
    }

    #[test]
    fn shapes_split_values() {
        let shape = ValueShape::from_type_name("ip-dst|port").unwrap();
        assert_eq!(
            shape.split("2001:db8::1|443").unwrap(),
            vec![(IndicatorType::Ipv6, "2001:db8::1")]
        );
        assert!(shape.split("10.0.0.1|http").is_err());
        assert!(ValueShape::from_type_name("link").is_none());
        assert!(ValueShape::from_type_name("regkey").is_none());
        assert_eq!(
            ValueShape::from_type_name("SHA-256"),
            Some(ValueShape::Single(IndicatorType::Sha256))
        );
    }

    #[test]
    fn shown_values_are_cut_on_char_boundaries() {
        let long = "é".repeat(100);
        assert_eq!(shown(&long).chars().count(), 81);
    }
}
