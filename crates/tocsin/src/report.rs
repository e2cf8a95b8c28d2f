//! `tocsin report`: a situational-awareness report over an archive, for the coordinators
//! (CSIRTs Network, national CSIRTs) and the post-incident review.
//!
//! What it shows, for a period: the early warnings (every one rendered for the report's
//! audience, so nothing above the audience's TLP ceiling appears), the incident candidates
//! (found again by correlating the archived detections, so those that never became a
//! warning are there too), charts of detections over time by sector and of warnings and
//! candidates by member state, sector and taxonomy class, the top indicators (technical
//! audience only), and a timeline per incident: its versions and the first detection at
//! each organisation.
//!
//! The report is built as a list of [`Block`]s and then written as Markdown (charts as SVG
//! files beside the output) or HTML (charts inline). Its TLP label, at the top and the
//! bottom as TLP 2.0 asks, is the most restrictive of what it includes, never above the
//! ceiling; what the ceiling withholds is counted, not shown.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use tocsin_archive::query::Archive;
use tocsin_core::{Audience, Detection, EarlyWarning, IncidentCandidate, Timestamp, Tlp};
use tocsin_correlate::{audience, Correlator};

use crate::load::{LastGood, RuleSources};

mod charts;

#[derive(Args)]
pub struct ReportArgs {
    /// The archive directory.
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// Only what happened at or after this time (RFC 3339, or YYYY-MM-DD).
    #[arg(long, value_name = "TIME", value_parser = crate::hunt::parse_time)]
    from: Option<Timestamp>,
    /// Only what happened before this time (RFC 3339, or YYYY-MM-DD).
    #[arg(long, value_name = "TIME", value_parser = crate::hunt::parse_time)]
    to: Option<Timestamp>,
    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    format: ReportFormat,
    /// Write the report here (Markdown: its charts go beside it as FILE-STEM.NAME.svg);
    /// default stdout (Markdown without its charts).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Who reads it: technical (indicators, organisations), operational (impact by sector
    /// and member state) or strategic (the situation).
    #[arg(long, value_enum, default_value = "technical")]
    audience: crate::AudienceArg,
    /// TLP ceiling (default: AMBER for technical, GREEN otherwise).
    #[arg(long = "tlp-ceiling", value_name = "TLP")]
    tlp_ceiling: Option<Tlp>,
    /// Rules directory whose escalation policy renders the warnings and correlates the
    /// candidates (default: the built-in one).
    #[arg(long = "rules", value_name = "DIR")]
    rules: Option<PathBuf>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Md,
    Html,
}

/// One piece of the report, independent of its format.
enum Block {
    Heading(u8, String),
    Paragraph(String),
    List(Vec<String>),
    Table {
        head: Vec<&'static str>,
        rows: Vec<Vec<String>>,
    },
    Chart {
        /// File-name part for Markdown (`sectors-over-time`).
        name: &'static str,
        title: String,
        svg: String,
    },
}

/// A warning as the report shows it: its versions rendered for the audience.
struct WarningHistory {
    latest: EarlyWarning,
    versions: Vec<EarlyWarning>,
}

/// Everything read from the archive, already filtered for the audience.
struct Findings {
    events_by_sector: Vec<(String, u64)>,
    detections: u64,
    /// Detections per time bucket, by sector.
    detections_over_time: BTreeMap<String, BTreeMap<i64, u64>>,
    bucket_ms: i64,
    warnings: Vec<WarningHistory>,
    withheld_warnings: usize,
    candidates: Vec<IncidentCandidate>,
    withheld_candidates: usize,
    /// `type:value` → (detections, organisations), technical audience only.
    indicators: Vec<(String, u64, usize)>,
    span: Option<(Timestamp, Timestamp)>,
}

/// The SQL condition for `column` within the period (with the date partitions, so that
/// the scan skips other days' directories).
fn period_sql(column: &str, from: Option<Timestamp>, to: Option<Timestamp>) -> String {
    let mut conditions = vec!["TRUE".to_owned()];
    if let Some(f) = from {
        conditions.push(format!("{column} >= TIMESTAMP '{f}'"));
        conditions.push(format!("date >= '{}'", tocsin_archive::writer::date_of(f)));
    }
    if let Some(t) = to {
        conditions.push(format!("{column} < TIMESTAMP '{t}'"));
        conditions.push(format!(
            "date <= '{}'",
            tocsin_archive::writer::date_of(Timestamp(t.0 - 1))
        ));
    }
    conditions.join(" AND ")
}

fn text_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn read(
    archive: &Archive,
    a: &ReportArgs,
    audience: Audience,
    ceiling: Tlp,
    sources: &RuleSources,
) -> Result<Findings> {
    let policy = sources.policy.clone().unwrap_or_default();
    let events_by_sector = archive
        .rows(&format!(
            "SELECT sector, count(*) AS n FROM events WHERE {} GROUP BY sector ORDER BY n DESC, sector",
            period_sql("time", a.from, a.to)
        ))?
        .iter()
        .map(|r| {
            (
                r["sector"].as_str().unwrap_or("unknown").to_owned(),
                r["n"].as_u64().unwrap_or(0),
            )
        })
        .collect();

    // Warnings: every version in the period, rendered for the audience.
    let mut by_id: BTreeMap<String, Vec<EarlyWarning>> = BTreeMap::new();
    let mut withheld = BTreeSet::new();
    for json in archive.texts(&format!(
        "SELECT json FROM warnings WHERE {} ORDER BY warning_id, version",
        period_sql("issued_at", a.from, a.to)
    ))? {
        let w: EarlyWarning = serde_json::from_str(&json)
            .with_context(|| "a warning in the archive is not tocsin.early-warning/v1")?;
        match audience::render(&w, audience, ceiling, &policy) {
            Some(r) => by_id.entry(r.warning_id.clone()).or_default().push(r),
            None => {
                withheld.insert(w.warning_id);
            }
        }
    }
    // Repeated versions (an archive worker's replay after a kill) count once.
    let mut warnings: Vec<WarningHistory> = by_id
        .into_values()
        .map(|mut versions| {
            versions.dedup_by_key(|w| w.version);
            let latest = versions.last().cloned().expect("at least one version");
            WarningHistory { latest, versions }
        })
        .collect();
    warnings.sort_by(|x, y| {
        y.latest
            .severity
            .cmp(&x.latest.severity)
            .then(x.latest.first_seen.cmp(&y.latest.first_seen))
    });
    withheld.retain(|id| !warnings.iter().any(|w| &w.latest.warning_id == id));

    // Detections: counted over time, their indicators, and correlated again for the
    // candidates (in event-time order, as the live correlator saw them).
    let mut correlator = Correlator::new(crate::correlator_config(&sources.correlations, policy));
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut per_sector: Vec<(String, i64)> = Vec::new();
    let mut indicators: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
    for json in archive.texts(&format!(
        "SELECT json FROM detections WHERE {} ORDER BY time, id",
        period_sql("time", a.from, a.to)
    ))? {
        let d: Detection = serde_json::from_str(&json)
            .context("a detection in the archive is not a Tocsin detection")?;
        if !seen.insert(d.id.clone()) {
            continue;
        }
        per_sector.push((
            d.context
                .sector
                .map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
            d.event_time.0,
        ));
        if audience == Audience::Technical {
            for i in d.indicators.iter().filter(|i| i.tlp.permits(ceiling)) {
                let entry = indicators
                    .entry(format!("{}:{}", text_of(&i.kind), i.value))
                    .or_default();
                entry.0 += 1;
                if let Some(o) = &d.context.organisation {
                    entry.1.insert(o.clone());
                }
            }
        }
        correlator.push(&d, &mut out);
        out.clear();
    }
    correlator.finish(&mut out);
    let first = per_sector.iter().map(|(_, t)| *t).min();
    let last = per_sector.iter().map(|(_, t)| *t).max();
    let span = first.zip(last).map(|(f, l)| (Timestamp(f), Timestamp(l)));
    // Hours for up to three days, days beyond.
    let bucket_ms = match span {
        Some((first, last)) if last.0 - first.0 > 3 * 86_400_000 => 86_400_000,
        _ => 3_600_000,
    };
    let mut detections_over_time: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    for (sector, t) in per_sector {
        *detections_over_time
            .entry(sector)
            .or_default()
            .entry(t.div_euclid(bucket_ms) * bucket_ms)
            .or_default() += 1;
    }
    let all_candidates = correlator.candidates();
    let candidates: Vec<IncidentCandidate> = all_candidates
        .iter()
        .filter(|c| c.tlp.permits(ceiling))
        .map(|c| (*c).clone())
        .collect();
    let mut indicators: Vec<(String, u64, usize)> = indicators
        .into_iter()
        .map(|(k, (n, orgs))| (k, n, orgs.len()))
        .collect();
    indicators.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    indicators.truncate(15);
    Ok(Findings {
        events_by_sector,
        detections: seen.len() as u64,
        detections_over_time,
        bucket_ms,
        withheld_warnings: withheld.len(),
        warnings,
        withheld_candidates: all_candidates.len() - candidates.len(),
        candidates,
        indicators,
        span,
    })
}

/// The most restrictive TLP of what the report shows.
fn report_tlp(f: &Findings) -> Tlp {
    f.warnings
        .iter()
        .map(|w| w.latest.tlp)
        .chain(f.candidates.iter().map(|c| c.tlp))
        .max()
        .unwrap_or(Tlp::Clear)
}

fn joined<T: std::fmt::Display>(v: impl IntoIterator<Item = T>) -> String {
    let s: Vec<String> = v.into_iter().map(|x| x.to_string()).collect();
    if s.is_empty() {
        "—".into()
    } else {
        s.join(", ")
    }
}

/// How often each item occurs, most frequent first.
fn count_by<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for i in items {
        *counts.entry(i.to_string()).or_default() += 1;
    }
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    v
}

fn blocks(f: &Findings, a: &ReportArgs, audience: Audience, ceiling: Tlp) -> Result<Vec<Block>> {
    let technical = audience == Audience::Technical;
    let mut b = Vec::new();
    let period = match (a.from, a.to) {
        (None, None) => match f.span {
            Some((first, last)) => format!("{first} to {last} (every archived detection)"),
            None => "everything archived".to_owned(),
        },
        (from, to) => format!(
            "{} to {}",
            from.map_or("the start".into(), |t| t.to_string()),
            to.map_or("the end".into(), |t| t.to_string())
        ),
    };
    b.push(Block::Heading(1, "Situational-awareness report".into()));
    b.push(Block::Paragraph(format!(
        "Period: {period}. Audience: {}; TLP ceiling {ceiling}. Archive: {}.",
        text_of(&audience),
        a.archive.display()
    )));

    let events: u64 = f.events_by_sector.iter().map(|(_, n)| n).sum();
    let cross_border = f.warnings.iter().filter(|w| w.latest.cross_border).count();
    let cross_sector = f.warnings.iter().filter(|w| w.latest.cross_sector).count();
    let sectors: BTreeSet<String> = f
        .warnings
        .iter()
        .flat_map(|w| w.latest.affected.sectors.iter().map(|s| s.to_string()))
        .collect();
    let states: BTreeSet<String> = f
        .warnings
        .iter()
        .flat_map(|w| {
            w.latest
                .affected
                .member_states
                .iter()
                .map(|m| m.to_string())
        })
        .collect();
    b.push(Block::Heading(2, "Summary".into()));
    let mut summary = vec![
        format!(
            "{} early warnings ({cross_border} cross-border, {cross_sector} cross-sector), {} incident candidates",
            f.warnings.len(),
            f.candidates.len()
        ),
        format!("Sectors affected: {}", joined(&sectors)),
        format!("Member states affected: {}", joined(&states)),
        format!(
            "{events} events archived, {} distinct detections",
            f.detections
        ),
    ];
    if f.withheld_warnings + f.withheld_candidates > 0 {
        summary.push(format!(
            "Withheld by the TLP ceiling: {} warnings, {} candidates",
            f.withheld_warnings, f.withheld_candidates
        ));
    }
    if f.warnings.iter().any(|w| w.latest.exercise) {
        summary.push("Includes EXERCISE traffic: not a real incident".into());
    }
    b.push(Block::List(summary));

    // Charts.
    b.push(Block::Heading(2, "Charts".into()));
    let unit = if f.bucket_ms == 3_600_000 {
        "hour"
    } else {
        "day"
    };
    let title = format!("Detections per {unit} by sector");
    b.push(Block::Chart {
        name: "detections-over-time",
        svg: charts::lines(&title, &f.detections_over_time, f.bucket_ms)?,
        title,
    });
    let bars = |name, title: &str, counts: Vec<(String, u64)>| -> Result<Block> {
        Ok(Block::Chart {
            name,
            svg: charts::bars(title, &counts)?,
            title: title.to_owned(),
        })
    };
    let warned = || f.warnings.iter().map(|w| &w.latest.affected);
    b.push(bars(
        "warnings-by-member-state",
        "Warnings by member state",
        count_by(warned().flat_map(|a| a.member_states.iter())),
    )?);
    b.push(bars(
        "warnings-by-sector",
        "Warnings by sector",
        count_by(warned().flat_map(|a| a.sectors.iter())),
    )?);
    b.push(bars(
        "candidates-by-taxonomy",
        "Incident candidates by taxonomy class",
        count_by(f.candidates.iter().map(|c| {
            c.taxonomy
                .map_or("unclassified".into(), |t| t.class.to_string())
        })),
    )?);

    // Warnings.
    b.push(Block::Heading(2, "Early warnings".into()));
    if f.warnings.is_empty() {
        b.push(Block::Paragraph("No warning in the period.".into()));
    } else {
        b.push(Block::Table {
            head: vec![
                "Headline",
                "Severity",
                "Status",
                "Version",
                "Sectors",
                "Member states",
                "Organisations",
                "First seen",
                "Last seen",
                "TLP",
            ],
            rows: f
                .warnings
                .iter()
                .map(|w| {
                    let l = &w.latest;
                    vec![
                        l.headline.clone(),
                        text_of(&l.severity),
                        text_of(&l.status),
                        l.version.to_string(),
                        joined(&l.affected.sectors),
                        joined(&l.affected.member_states),
                        l.affected.organisation_count.to_string(),
                        l.first_seen.to_string(),
                        l.last_seen.to_string(),
                        l.tlp.to_string(),
                    ]
                })
                .collect(),
        });
    }

    // Candidates.
    b.push(Block::Heading(2, "Incident candidates".into()));
    if f.candidates.is_empty() {
        b.push(Block::Paragraph(
            "No incident candidate in the period.".into(),
        ));
    } else {
        let mut head = vec![];
        if technical {
            head.push("Correlation key");
        }
        head.extend([
            "Taxonomy",
            "Level",
            "Sectors",
            "Member states",
            "Organisations",
            "Detections",
            "First seen",
            "Last seen",
            "Warning",
        ]);
        let rows = f
            .candidates
            .iter()
            .map(|c| {
                let mut row = vec![];
                if technical {
                    row.push(c.correlation_key.clone());
                }
                // By incident id: renderings below technical redact the correlation key.
                let warned = f.warnings.iter().any(|w| w.latest.incident_id == c.id);
                row.extend([
                    c.taxonomy.map_or("—".into(), |t| t.to_string()),
                    text_of(&c.max_level),
                    joined(&c.sectors),
                    joined(&c.member_states),
                    c.organisations.len().to_string(),
                    c.detection_count.to_string(),
                    c.first_seen.to_string(),
                    c.last_seen.to_string(),
                    if warned { "yes" } else { "no" }.into(),
                ]);
                row
            })
            .collect();
        b.push(Block::Table { head, rows });
    }

    if technical {
        b.push(Block::Heading(2, "Top indicators".into()));
        if f.indicators.is_empty() {
            b.push(Block::Paragraph(
                "No indicator matched in the period.".into(),
            ));
        } else {
            b.push(Block::Table {
                head: vec!["Indicator", "Detections", "Organisations"],
                rows: f
                    .indicators
                    .iter()
                    .map(|(k, n, o)| vec![k.clone(), n.to_string(), o.to_string()])
                    .collect(),
            });
        }
    }

    // Per-incident timelines, for the post-incident review.
    b.push(Block::Heading(2, "Incident timelines".into()));
    for w in &f.warnings {
        let l = &w.latest;
        b.push(Block::Heading(3, l.headline.clone()));
        b.push(Block::Paragraph(format!(
            "Warning {} (incident {}), {} detections, {}.{}",
            l.warning_id,
            l.incident_id,
            l.detection_count,
            l.tlp,
            if l.recommended_actions.is_empty() {
                String::new()
            } else {
                format!(" Recommended: {}.", l.recommended_actions.join("; "))
            }
        )));
        b.push(Block::Table {
            head: vec![
                "Version",
                "Issued at",
                "Status",
                "Severity",
                "Organisations",
            ],
            rows: w
                .versions
                .iter()
                .map(|v| {
                    vec![
                        v.version.to_string(),
                        v.issued_at.to_string(),
                        text_of(&v.status),
                        text_of(&v.severity),
                        v.affected.organisation_count.to_string(),
                    ]
                })
                .collect(),
        });
        let mut head = vec!["First detection"];
        if technical {
            head.push("Organisation");
        }
        head.extend(["Sector", "Member state", "Detections"]);
        b.push(Block::Table {
            head,
            rows: l
                .timeline
                .iter()
                .map(|t| {
                    let mut row = vec![t.time.to_string()];
                    if technical {
                        row.push(t.organisation.clone().unwrap_or_else(|| "—".into()));
                    }
                    row.extend([
                        t.sector.map_or("—".into(), |s| s.to_string()),
                        t.member_state.map_or("—".into(), |m| m.to_string()),
                        t.detections.to_string(),
                    ]);
                    row
                })
                .collect(),
        });
    }
    Ok(b)
}

fn markdown(blocks: &[Block], tlp: Tlp, chart_dir: Option<(&Path, &str)>) -> Result<String> {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = format!("**{tlp}**\n\n");
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "{} {}\n", "#".repeat(usize::from(*level)), text);
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "{text}\n");
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(out, "- {i}");
                }
                out.push('\n');
            }
            Block::Table { head, rows } => {
                let _ = writeln!(out, "| {} |", head.join(" | "));
                let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
                for r in rows {
                    let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
                    let _ = writeln!(out, "| {} |", cells.join(" | "));
                }
                out.push('\n');
            }
            Block::Chart { name, title, svg } => match chart_dir {
                Some((dir, stem)) => {
                    let file = format!("{stem}.{name}.svg");
                    let path = dir.join(&file);
                    std::fs::write(&path, svg)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    let _ = writeln!(out, "![{title}]({file})\n");
                }
                None => {
                    let _ = writeln!(
                        out,
                        "*Chart \"{title}\": written beside the report with --output FILE.*\n"
                    );
                }
            },
        }
    }
    let _ = writeln!(out, "**{tlp}**");
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// TLP 2.0 colours: the label in its colour on black.
fn tlp_colour(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "#FFFFFF",
        Tlp::Green => "#33FF00",
        Tlp::Amber | Tlp::AmberStrict => "#FFC000",
        Tlp::Red => "#FF2B2B",
    }
}

fn html(blocks: &[Block], tlp: Tlp) -> String {
    let banner = format!(
        "<p class=\"tlp\"><span style=\"color:{}\">{}</span></p>",
        tlp_colour(tlp),
        escape(&tlp.to_string())
    );
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Tocsin situational-awareness report</title>\n<style>\n\
         body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222}\n\
         table{border-collapse:collapse;margin:1em 0;font-size:.85em;width:100%}\n\
         th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left;vertical-align:top;overflow-wrap:break-word}\n\
         th{background:#eee}\n\
         .tlp{display:inline-block;background:#000;padding:.2em .6em;font-weight:bold;font-family:monospace}\n\
         figure{margin:1em 0}\n\
         </style>\n</head>\n<body>\n",
    );
    out.push_str(&banner);
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", escape(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "<p>{}</p>", escape(text));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for i in items {
                    let _ = writeln!(out, "<li>{}</li>", escape(i));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { head, rows } => {
                out.push_str("<table>\n<tr>");
                for h in head {
                    let _ = write!(out, "<th>{}</th>", escape(h));
                }
                out.push_str("</tr>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        let _ = write!(out, "<td>{}</td>", escape(c));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</table>\n");
            }
            Block::Chart { title, svg, .. } => {
                // The chart draws its own title; the label is for screen readers.
                let _ = writeln!(
                    out,
                    "<figure role=\"img\" aria-label=\"{}\">{svg}</figure>",
                    escape(title)
                );
            }
        }
    }
    out.push_str(&banner);
    out.push_str("\n</body>\n</html>\n");
    out
}

pub fn report(a: ReportArgs) -> Result<ExitCode> {
    if let (Some(from), Some(to)) = (a.from, a.to) {
        anyhow::ensure!(from < to, "--from must be before --to");
    }
    let audience: Audience = a.audience.into();
    let ceiling = a
        .tlp_ceiling
        .unwrap_or_else(|| audience::default_ceiling(audience));
    let sources = match &a.rules {
        Some(dir) => {
            RuleSources::load_all(std::slice::from_ref(dir), &[], None, &mut LastGood::new())?
        }
        None => RuleSources::embedded(),
    };
    let archive = crate::open_archive(&a.archive)?;
    let findings = read(&archive, &a, audience, ceiling, &sources)?;
    let tlp = report_tlp(&findings);
    let blocks = blocks(&findings, &a, audience, ceiling)?;
    let text = match a.format {
        ReportFormat::Html => html(&blocks, tlp),
        ReportFormat::Md => {
            let beside = a.output.as_ref().map(|p| {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
                let stem = p
                    .file_stem()
                    .map_or("report".into(), |s| s.to_string_lossy().into_owned());
                (dir.unwrap_or(Path::new(".")).to_owned(), stem)
            });
            markdown(
                &blocks,
                tlp,
                beside.as_ref().map(|(d, s)| (d.as_path(), s.as_str())),
            )?
        }
    };
    match &a.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(text.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
