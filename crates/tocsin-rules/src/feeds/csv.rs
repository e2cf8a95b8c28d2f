//! CSV indicator exports: a value column, optionally a type, TLP and id column.
//!
//! Spreadsheets are how many partners hand over indicators, and MISP's own CSV export has
//! `uuid,…,type,value,…` columns. Which column is which is configured ([`CsvOptions`]) or
//! found by conventional header names. Types may be MISP attribute types (composites such as
//! `ip-dst|port` and `filename|sha256` are split as in MISP events) or Tocsin's names;
//! without a type the value's type is inferred as for plain lists. Quoting follows RFC 4180
//! (the `csv` crate); the delimiter, the header row and a comment character are configurable,
//! so tab-separated lists such as IPsum's (`ip<TAB>count`, `#` comments) read too.
//!
//! A row with a TLP cell that is not a label is skipped rather than loaded under the
//! default: guessing could share it more widely than its source allowed.

use std::str::FromStr;

use tocsin_core::Tlp;

use super::{
    shown, CsvColumn, FeedOptions, IndicatorMeta, IndicatorSink, ValueShape, VALUE_HEADERS,
};
use crate::diagnostic::{Diagnostic, Location};
use crate::ioc::infer_type;

/// Read one CSV feed into `sink`.
pub(super) fn parse_csv(
    file: &str,
    text: &str,
    feed: &str,
    options: &FeedOptions,
    sink: &mut IndicatorSink,
) {
    let settings = &options.csv;
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(settings.delimiter)
        .has_headers(false)
        .flexible(true)
        .comment(settings.comment)
        .trim(::csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let mut lines = RecordLines::new(text, settings.comment);

    let mut header_line = 1;
    let header: Option<Vec<String>> = if settings.has_header {
        match next_record(file, &mut records, &mut lines, sink) {
            Some((line, record)) => {
                header_line = line;
                Some(
                    record
                        .iter()
                        .map(|name| name.trim_start_matches('\u{feff}').trim().to_owned())
                        .collect(),
                )
            }
            // Empty (or only comments): nothing to read.
            None => return,
        }
    } else {
        None
    };
    let columns = match Columns::resolve(header.as_deref(), options) {
        Ok(columns) => columns,
        Err(why) => {
            sink.diagnostic(Diagnostic::error(
                Location::line(file, header_line),
                "bad-csv-columns",
                format!("{why}; file skipped"),
            ));
            return;
        }
    };

    while let Some((line, record)) = next_record(file, &mut records, &mut lines, sink) {
        if record.iter().all(str::is_empty) {
            continue;
        }
        let location = Location::line(file, line);
        let cell = |index: Option<usize>| index.and_then(|i| record.get(i)).unwrap_or("");
        let value = cell(Some(columns.value));
        if value.is_empty() {
            sink.diagnostic(Diagnostic::error(
                location,
                "bad-indicator",
                format!("line {line}: the value column is empty or missing"),
            ));
            continue;
        }
        let type_name = cell(columns.kind);
        let shape = match (settings.fixed_type, type_name) {
            (Some(kind), _) => ValueShape::Single(kind),
            (None, "") => match infer_type(value) {
                Some(kind) => ValueShape::Single(kind),
                None => {
                    sink.diagnostic(Diagnostic::error(
                        location,
                        "bad-indicator",
                        format!(
                            "line {line}: cannot tell the type of '{}'; add a type column",
                            shown(value)
                        ),
                    ));
                    continue;
                }
            },
            (None, name) => match ValueShape::from_type_name(name) {
                Some(shape) => shape,
                None => {
                    sink.diagnostic(Diagnostic::warning(
                        location,
                        "unsupported-type",
                        format!(
                            "line {line}: type '{}' is not an indicator type Tocsin matches; \
                             row skipped",
                            shown(name)
                        ),
                    ));
                    continue;
                }
            },
        };
        let tlp = match cell(columns.tlp) {
            "" => options.default_tlp,
            label => match Tlp::from_str(label) {
                Ok(tlp) => tlp,
                Err(error) => {
                    sink.diagnostic(Diagnostic::error(
                        location,
                        "bad-tlp",
                        format!("line {line}: {error}; row skipped"),
                    ));
                    continue;
                }
            },
        };
        let parts = match shape.split(value) {
            Ok(parts) => parts,
            Err(why) => {
                sink.diagnostic(Diagnostic::error(
                    location,
                    "bad-indicator",
                    format!("line {line}: {why}"),
                ));
                continue;
            }
        };
        let source_id = Some(cell(columns.id))
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        let meta = IndicatorMeta {
            feed: feed.to_owned(),
            tlp,
            source_id,
            valid_from: None,
            valid_until: None,
            confidence: None,
            tags: Vec::new(),
        };
        let entry = format!("line {line}");
        for (kind, raw) in parts {
            sink.add(kind, raw, &meta, &location, &entry);
        }
    }
}

/// The next record and its line; a record the `csv` crate cannot read is a diagnostic.
fn next_record(
    file: &str,
    records: &mut ::csv::StringRecordsIter<'_, &[u8]>,
    lines: &mut RecordLines<'_>,
    sink: &mut IndicatorSink,
) -> Option<(usize, ::csv::StringRecord)> {
    match records.next()? {
        Ok(record) => {
            let line = record.position().map_or(1, |p| lines.line_of(p.byte()));
            Some((line, record))
        }
        Err(error) => {
            let line = error.position().map_or(1, |p| lines.line_of(p.byte()));
            sink.diagnostic(Diagnostic::error(
                Location::line(file, line),
                "bad-csv",
                format!("unreadable record: {error}; the rest of the file is skipped"),
            ));
            // On `&str` input the only reader errors are I/O and UTF-8 ones, which cannot
            // happen; stop rather than risk looping on a reader that keeps failing.
            None
        }
    }
}

/// The line a record starts on.
///
/// The `csv` crate gives the position where it began reading a record, which is before any
/// blank or comment lines it skipped (so the first record after a comment block is "line
/// 1"). This skips those lines from that byte offset, and counts newlines incrementally
/// (records come in order), so the cost stays linear in the text.
struct RecordLines<'t> {
    text: &'t [u8],
    comment: Option<u8>,
    counted_to: usize,
    line: usize,
}

impl<'t> RecordLines<'t> {
    fn new(text: &'t str, comment: Option<u8>) -> Self {
        RecordLines {
            text: text.as_bytes(),
            comment,
            counted_to: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, byte: u64) -> usize {
        let mut at = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.text.len());
        loop {
            match self.text.get(at) {
                Some(b'\r' | b'\n') => at += 1,
                Some(c) if Some(*c) == self.comment => {
                    at = self.text[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(self.text.len(), |n| at + n + 1);
                }
                _ => break,
            }
        }
        if at > self.counted_to {
            self.line += self.text[self.counted_to..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.counted_to = at;
        }
        self.line
    }
}

/// Column indices resolved against the header.
struct Columns {
    value: usize,
    kind: Option<usize>,
    tlp: Option<usize>,
    id: Option<usize>,
}

impl Columns {
    fn resolve(header: Option<&[String]>, options: &FeedOptions) -> Result<Self, String> {
        let settings = &options.csv;
        let find = |names: &[&str]| -> Option<usize> {
            let header = header?;
            names.iter().find_map(|name| {
                header
                    .iter()
                    .position(|column| column.eq_ignore_ascii_case(name))
            })
        };
        let resolve =
            |column: &CsvColumn, role: &str, auto: &[&str]| -> Result<Option<usize>, String> {
                match column {
                    CsvColumn::Auto => Ok(find(auto)),
                    CsvColumn::Index(i) => Ok(Some(*i)),
                    CsvColumn::Named(name) => match (header, find(&[name.as_str()])) {
                        (_, Some(i)) => Ok(Some(i)),
                        (None, None) => Err(format!(
                            "the {role} column is named '{name}', but the file has no header row"
                        )),
                        (Some(header), None) => Err(format!(
                            "no {role} column '{name}' in the header ({})",
                            shown(&header.join(","))
                        )),
                    },
                }
            };
        let value = match resolve(&settings.value_column, "value", &VALUE_HEADERS)? {
            Some(i) => i,
            // Without a header, the value is the first column.
            None if header.is_none() => 0,
            None => {
                return Err(format!(
                    "no value column in the header ({}); expected one of {} or a configured \
                     column",
                    shown(&header.unwrap_or_default().join(",")),
                    VALUE_HEADERS.join(", ")
                ))
            }
        };
        let optional = |column: &Option<CsvColumn>, role: &str, auto: &[&str]| match column {
            None => Ok(None),
            Some(column) => resolve(column, role, auto),
        };
        Ok(Columns {
            value,
            kind: if settings.fixed_type.is_some() {
                None
            } else {
                optional(&settings.type_column, "type", &["type"])?
            },
            tlp: optional(&settings.tlp_column, "tlp", &["tlp"])?,
            id: optional(&settings.id_column, "id", &["uuid", "id"])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::feeds::{parse_feed, FeedFormat};

    #[test]
    fn lines_skip_comments_blank_lines_and_count_quoted_newlines() {
        let text =
            "# exported\r\n\r\nvalue\r\n\r\na.example\r\n# note\r\n\"b.\nexample\"\r\nc.example";
        let (iocs, problems) = parse_feed("l.csv", text, FeedFormat::Csv, &Default::default());
        let lines: Vec<usize> = iocs.iter().map(|i| i.location.line).collect();
        assert_eq!(lines, vec![5, 9], "{iocs:#?}");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].location.line, 7);
    }
}
