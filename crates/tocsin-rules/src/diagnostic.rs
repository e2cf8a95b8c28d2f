//! Errors and warnings about rule sources, each pinned to a file, line and rule.
//!
//! A SOC engineer fixing a rule set needs to know exactly where each problem is; a worker
//! loading thousands of rules must keep the good ones when a few are bad. So loading never
//! stops at the first problem: every parser returns what it could read plus a list of
//! [`Diagnostic`]s, and the caller decides (`--strict`) whether errors are fatal.

use std::fmt;

use serde::Serialize;

/// A position in a rule source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// File path as given by the caller.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, when known (0 = unknown).
    pub column: usize,
}

impl Location {
    /// A location at the start of a line.
    pub fn line(file: &str, line: usize) -> Self {
        Location {
            file: file.to_owned(),
            line,
            column: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column > 0 {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The rule (or entry) was loaded, but something is off.
    Warning,
    /// The rule (or entry) was skipped.
    Error,
}

/// One problem found while reading rule sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where.
    pub location: Location,
    /// The rule id, when the problem is inside an identified rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// The rule title, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_title: Option<String>,
    /// A short machine-friendly reason (`yaml`, `unknown-modifier`, `missing-selection`...).
    pub code: &'static str,
    /// What is wrong, for humans.
    pub message: String,
}

impl Diagnostic {
    /// An error at `location`.
    pub fn error(location: Location, code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location,
            rule_id: None,
            rule_title: None,
            code,
            message: message.into(),
        }
    }

    /// A warning at `location`.
    pub fn warning(location: Location, code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(location, code, message)
        }
    }

    /// Attach the rule's id and title.
    pub fn for_rule(mut self, id: Option<&str>, title: Option<&str>) -> Self {
        self.rule_id = id.map(str::to_owned);
        self.rule_title = title.map(str::to_owned);
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {sev}[{}]", self.location, self.code)?;
        match (&self.rule_id, &self.rule_title) {
            (Some(id), Some(title)) => write!(f, " rule {id} ({title})")?,
            (Some(id), None) => write!(f, " rule {id}")?,
            (None, Some(title)) => write!(f, " rule ({title})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// Diagnostics collected while loading, with counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Add one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.0.len() - self.error_count()
    }

    /// Append all of another collection.
    pub fn extend(&mut self, other: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(other);
    }
}
