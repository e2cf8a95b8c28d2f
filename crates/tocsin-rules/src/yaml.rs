//! YAML documents with line numbers.
//!
//! Rule files may hold several YAML documents (a Sigma rule and its correlation, a file
//! of many rules). serde_yaml reports errors relative to the document it parses, and its
//! values carry no positions, so we split the file at `---` lines ourselves, remember where
//! each document starts, and locate keys by searching the document's text. That is enough
//! to point an author at the right line without a position-tracking YAML parser.

use crate::diagnostic::{Diagnostic, Location};

/// Largest rule source accepted, in bytes. Larger files are rejected with a clear error
/// instead of being handed to the YAML parser.
pub const MAX_SOURCE_BYTES: usize = 8 * 1024 * 1024;

/// One YAML document of a file.
#[derive(Debug, Clone)]
pub struct YamlDocument<'a> {
    /// The file it came from.
    pub file: &'a str,
    /// 1-based line of its first line in the file.
    pub first_line: usize,
    /// Its text.
    pub text: &'a str,
    /// The parsed value.
    pub value: serde_yaml::Value,
}

impl YamlDocument<'_> {
    /// The location of the first line in this document whose trimmed text starts with
    /// `needle` (e.g. `condition:` or `CommandLine|contains:`), else the document start.
    pub fn locate(&self, needle: &str) -> Location {
        for (i, line) in self.text.lines().enumerate() {
            let trimmed = line.trim_start();
            let trimmed = trimmed.strip_prefix("- ").unwrap_or(trimmed);
            if trimmed.starts_with(needle) {
                return Location {
                    file: self.file.to_owned(),
                    line: self.first_line + i,
                    column: line.len() - line.trim_start().len() + 1,
                };
            }
        }
        Location::line(self.file, self.first_line)
    }

    /// The first line at or after file line `from` whose trimmed text starts with `key:`
    /// (also quoted, or as a list item).
    pub fn locate_key_from(&self, key: &str, from: usize) -> Option<Location> {
        let needles = [
            format!("{key}:"),
            format!("'{key}':"),
            format!("\"{key}\":"),
        ];
        for (i, line) in self.text.lines().enumerate() {
            if self.first_line + i < from {
                continue;
            }
            let trimmed = line.trim_start();
            let trimmed = trimmed.strip_prefix("- ").unwrap_or(trimmed);
            if needles.iter().any(|n| trimmed.starts_with(n.as_str())) {
                let indent = line.len() - trimmed.len();
                return Some(Location {
                    file: self.file.to_owned(),
                    line: self.first_line + i,
                    column: indent + 1,
                });
            }
        }
        None
    }

    /// The first line that contains `needle` anywhere (for keys in flow mappings such as
    /// `when: {taxonomy_class: x}`), else the document start.
    pub fn locate_text(&self, needle: &str) -> Location {
        for (i, line) in self.text.lines().enumerate() {
            if let Some(col) = line.find(needle) {
                return Location {
                    file: self.file.to_owned(),
                    line: self.first_line + i,
                    column: col + 1,
                };
            }
        }
        Location::line(self.file, self.first_line)
    }

    /// The location of this document's first line.
    pub fn start(&self) -> Location {
        Location::line(self.file, self.first_line)
    }
}

/// Split `text` into YAML documents and parse each. Documents that fail to parse become
/// diagnostics; the others are returned.
pub fn documents<'a>(file: &'a str, text: &'a str) -> (Vec<YamlDocument<'a>>, Vec<Diagnostic>) {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    if text.len() > MAX_SOURCE_BYTES {
        problems.push(Diagnostic::error(
            Location::line(file, 1),
            "too-large",
            format!(
                "file is {} bytes, over the limit of {MAX_SOURCE_BYTES} bytes for one rule source",
                text.len()
            ),
        ));
        return (docs, problems);
    }
    let mut start_byte = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    let mut pieces = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        // `---` starts a document, `...` ends one; both split the file here.
        if bare == "---" || bare.starts_with("--- ") || bare == "..." {
            pieces.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    pieces.push((start_line, &text[start_byte..]));
    for (first_line, piece) in pieces {
        if piece
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        match serde_yaml::from_str::<serde_yaml::Value>(piece) {
            Ok(value) => docs.push(YamlDocument {
                file,
                first_line,
                text: piece,
                value,
            }),
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (first_line + l.line() - 1, l.column()))
                    .unwrap_or((first_line, 0));
                let message = e.to_string();
                // serde_yaml appends " at line X column Y" relative to the document.
                let message = match message.find(" at line ") {
                    Some(i) => message[..i].to_owned(),
                    None => message,
                };
                problems.push(Diagnostic::error(
                    Location {
                        file: file.to_owned(),
                        line,
                        column,
                    },
                    "yaml",
                    format!("invalid YAML: {message}"),
                ));
            }
        }
    }
    (docs, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_sources_are_refused_with_a_clear_error() {
        let big = "a: 1\n".repeat(MAX_SOURCE_BYTES / 5 + 10);
        let (docs, problems) = documents("huge.yml", &big);
        assert!(docs.is_empty());
        assert_eq!(problems[0].code, "too-large");
        assert!(problems[0]
            .to_string()
            .starts_with("huge.yml:1: error[too-large]"));
    }

    #[test]
    fn splits_documents_and_reports_errors_with_file_lines() {
        let text = "a: 1\n---\nb: [1, 2\n---\n# only a comment\n---\nc:\n  d: 3\n";
        let (docs, problems) = documents("r.yml", text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].first_line, 1);
        assert_eq!(docs[1].first_line, 7);
        assert_eq!(docs[1].locate("d:").line, 8);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].location.file, "r.yml");
        assert!(problems[0].location.line >= 3, "{}", problems[0]);
    }
}
