//! Rule-author tools: `tocsin rules check`, `tocsin rules test`, `tocsin match --explain`.
//!
//! They load rules exactly as `tocsin run` does (same loader, profile and compiler), so what
//! passes here behaves the same in production.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use tocsin_core::{Event, EventContext, EventIndex, SourceRef, Timestamp};
use tocsin_match::{CompiledRules, MatchConfig};
use tocsin_rules::Diagnostic;

use crate::input::{self, read_line, Line};
use crate::load::RuleSources;

/// Output format of `rules check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Serialize)]
struct CheckReport<'a> {
    files: usize,
    rules_parsed: usize,
    rules_compiled: usize,
    rules_not_applicable: usize,
    filters: usize,
    indicators: usize,
    profile: &'a str,
    errors: usize,
    warnings: usize,
    diagnostics: &'a [Diagnostic],
}

/// `tocsin rules check PATH...`: load everything, report every problem; exit 3 on errors.
pub fn check(paths: &[PathBuf], profile: Option<&str>, format: Format) -> Result<ExitCode> {
    let mut sources = RuleSources::load(paths)?;
    let profile = sources.profile(profile)?;
    let compiled = sources.compile(&profile, &MatchConfig::default());
    let stats = compiled.stats();
    let report = CheckReport {
        files: sources.files,
        rules_parsed: sources.sigma.len(),
        rules_compiled: stats.rules,
        rules_not_applicable: stats.not_applicable,
        filters: sources.filters.len(),
        indicators: stats.indicators,
        profile: &profile.name,
        errors: sources.diagnostics.error_count(),
        warnings: sources.diagnostics.warning_count(),
        diagnostics: &sources.diagnostics.0,
    };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Text => {
            for d in &sources.diagnostics.0 {
                writeln!(out, "{d}")?;
            }
            writeln!(
                out,
                "{} files: {} rules parsed, {} compiled, {} not applicable to profile '{}', {} filters, {} indicators; {} errors, {} warnings",
                report.files,
                report.rules_parsed,
                report.rules_compiled,
                report.rules_not_applicable,
                report.profile,
                report.filters,
                report.indicators,
                report.errors,
                report.warnings
            )?;
        }
    }
    Ok(if report.errors > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// A rule test file (`*.tests.yml`), next to the rule it tests.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The id of the rule under test.
    rule: String,
    /// Sample events with the expected outcome.
    cases: Vec<TestCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    #[serde(rename = "match")]
    expect_match: bool,
    /// The event: a mapping, or one JSON object as a string.
    event: Value,
}

fn find_test_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_file() {
        if is_test_file(path) {
            out.push(path.to_path_buf());
        }
        return Ok(());
    }
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
    {
        let p = entry?.path();
        if p.is_dir() {
            find_test_files(&p, out)?;
        } else if is_test_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Whether a file is a rule test file (`*.tests.yml` / `*.tests.yaml`).
pub fn is_test_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.ends_with(".tests.yml") || name.ends_with(".tests.yaml")
}

/// `tocsin rules test PATH...`: run every `*.tests.yml` under the paths against the rules
/// loaded from the same paths. Exit 1 when a case fails, 3 when the rules have errors.
pub fn test(paths: &[PathBuf], profile: Option<&str>) -> Result<ExitCode> {
    let mut sources = RuleSources::load(paths)?;
    let profile = sources.profile(profile)?;
    let compiled = sources.compile(&profile, &MatchConfig::default());
    let mut out = std::io::stdout().lock();
    for d in sources.diagnostics.0.iter().filter(|d| d.is_error()) {
        writeln!(out, "{d}")?;
    }
    let mut files = Vec::new();
    for p in paths {
        find_test_files(p, &mut files)?;
    }
    files.sort();
    if files.is_empty() {
        bail!("no rule test files (*.tests.yml) found");
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut scratch = compiled.new_scratch();
    let mut index = EventIndex::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let tf: TestFile = match serde_yaml::from_str(&text) {
            Ok(t) => t,
            Err(e) => {
                failed += 1;
                writeln!(out, "FAIL {}: invalid test file: {e}", file.display())?;
                continue;
            }
        };
        let Some(rule_idx) = compiled.rules().iter().position(|r| r.id == tf.rule) else {
            failed += tf.cases.len().max(1);
            writeln!(
                out,
                "FAIL {}: rule {} is not loaded (see the errors above)",
                file.display(),
                tf.rule
            )?;
            continue;
        };
        for case in &tf.cases {
            let json = match &case.event {
                Value::String(s) => s.clone(),
                v => serde_json::to_string(v)?,
            };
            let verdict = match Event::parse(json.as_bytes(), &mut index) {
                Err(e) => Err(format!("the event is not valid JSON: {e}")),
                Ok(event) => {
                    compiled.match_event(&event, &mut scratch);
                    let hit = scratch.matched().contains(&(rule_idx as u32));
                    if hit == case.expect_match {
                        Ok(())
                    } else {
                        let why = compiled.explain(rule_idx as u32, &event, &mut scratch);
                        Err(format!(
                            "expected {}, got {}\n{}",
                            if case.expect_match {
                                "a match"
                            } else {
                                "no match"
                            },
                            if hit { "a match" } else { "no match" },
                            indent(&why.to_string())
                        ))
                    }
                }
            };
            match verdict {
                Ok(()) => {
                    passed += 1;
                    writeln!(out, "ok   {}::{}", file.display(), case.name)?;
                }
                Err(why) => {
                    failed += 1;
                    writeln!(out, "FAIL {}::{}: {why}", file.display(), case.name)?;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else if sources.diagnostics.error_count() > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// `tocsin match`: match events and print detections (JSON lines), or with `--explain`,
/// why each rule matched.
pub fn match_events(
    compiled: &CompiledRules,
    inputs: &[String],
    explain: bool,
) -> Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut scratch = compiled.new_scratch();
    let mut index = EventIndex::new();
    let mut line = Vec::new();
    let mut detections = Vec::new();
    for name in inputs {
        let mut reader = input::open(name)?;
        let mut line_no = 0u64;
        while let Some(kind) = read_line(&mut *reader as &mut dyn BufRead, &mut line, 1 << 20)? {
            line_no += 1;
            if matches!(kind, Line::Oversized { .. }) {
                writeln!(out, "{name}:{line_no}: event over 1 MiB, skipped")?;
                continue;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event = match Event::parse(&line, &mut index) {
                Ok(e) => e,
                Err(e) => {
                    writeln!(out, "{name}:{line_no}: not an event: {e}")?;
                    continue;
                }
            };
            compiled.match_event(&event, &mut scratch);
            if explain {
                let matched: Vec<u32> = scratch.matched().to_vec();
                for r in matched {
                    let why = compiled.explain(r, &event, &mut scratch);
                    writeln!(out, "{name}:{line_no}: {why}")?;
                }
                for hit in scratch.ioc_hits() {
                    let e = compiled.indicators().entry(hit.indicator);
                    let (_, field) = compiled.ioc_hit_field(hit);
                    for p in e.provenance() {
                        let validity = match (p.valid_from, p.valid_until) {
                            (None, None) => String::new(),
                            (from, until) => format!(
                                ", valid {} to {}",
                                from.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                                until.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
                            ),
                        };
                        writeln!(
                            out,
                            "{name}:{line_no}: indicator {} {} from feed {} ({}{validity}) in field {field}",
                            e.kind.as_str(),
                            e.value,
                            p.feed,
                            p.tlp
                        )?;
                    }
                }
            } else if !scratch.matched().is_empty() || !scratch.ioc_hits().is_empty() {
                let ctx = EventContext::extract(&event, &compiled.profile().context);
                let source = SourceRef {
                    name: name.clone(),
                    position: line_no,
                };
                detections.clear();
                compiled.detections(
                    &event,
                    &ctx,
                    ctx.time.unwrap_or(Timestamp(0)),
                    Some(&source),
                    &scratch,
                    &mut detections,
                );
                for d in &detections {
                    serde_json::to_writer(&mut out, d)?;
                    writeln!(out)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
