//! `tocsin hunt`: new indicators or rules over the archived events.
//!
//! When a CSIRT receives an indicator for an attack that began days ago, the question is
//! where it was already seen. A hunt reads the events of an archive (`run --archive`) with
//! only the time range and sectors asked for (pushed down to the Parquet scan), and runs them
//! through the same pipeline as `tocsin run`: the same matcher, then the same correlator, so
//! it shows the detections, the incident candidates and the warnings that would have fired
//! had the indicators or rules been loaded at the time.
//!
//! Only what is given is hunted: `--rules` and `--iocs` replace the rule set. The field
//! mapping profiles, the escalation policy and the recipients come from `--base-rules DIR`
//! (its own Sigma rules and feeds are not used), by default the built-in ones.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;

use tocsin_archive::query::EventFilter;
use tocsin_core::{Sector, Timestamp};
use tocsin_correlate::Correlator;
use tocsin_match::MatchConfig;

use crate::load::{LastGood, RuleSources};
use crate::pipeline::{DeadLetterSink, Pipeline, WarningOutputs};

#[derive(Args)]
#[command(group(clap::ArgGroup::new("hunted").required(true).multiple(true).args(["rules", "iocs"])))]
pub struct HuntArgs {
    /// The archive directory (written by `tocsin run --archive`).
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
    /// Sigma rules to hunt with: files or directories. Repeatable.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Indicator feeds to hunt with (plain lists, CSV, MISP event JSON, STIX 2.1 bundles,
    /// MISP feed directories). Repeatable.
    #[arg(long = "iocs", value_name = "FEED", num_args = 1..)]
    iocs: Vec<PathBuf>,
    /// Force the format of the feeds instead of detecting it.
    #[arg(long = "iocs-format", value_enum, value_name = "FORMAT")]
    iocs_format: Option<crate::feeds::FeedFormat>,
    /// Rules directory whose field-mapping profiles, escalation policy and recipients the
    /// hunt uses (its Sigma rules and feeds are not hunted). Default: the built-in ones.
    #[arg(long = "base-rules", value_name = "DIR")]
    base_rules: Option<PathBuf>,
    /// Field-mapping profile (by name; default: sysmon, else the first loaded).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Only events at or after this time (RFC 3339, or a date: YYYY-MM-DD is its midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<Timestamp>,
    /// Only events before this time (RFC 3339, or a date: YYYY-MM-DD is its midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: Option<Timestamp>,
    /// Only events of this NIS2 sector (e.g. `health`, `energy`). Repeatable.
    #[arg(long = "sector", value_name = "SECTOR")]
    sectors: Vec<Sector>,
    /// Write the detections here (JSON lines).
    #[arg(long, value_name = "FILE")]
    detections: Option<PathBuf>,
    /// Where the warnings that would have fired go (JSON lines, technical rendering);
    /// `-` is stdout.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    output: String,
    /// Print nothing on stderr but errors (the summary and the candidates included).
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text).map_err(|e| format!("{e} (expected RFC 3339 or YYYY-MM-DD)"))
}

/// The hunted rule set: the rules and feeds given, with the profiles, policy and recipients
/// of the base.
fn load(a: &HuntArgs) -> Result<(RuleSources, tocsin_match::CompiledRules)> {
    let mut last_good = LastGood::new();
    let hunted = RuleSources::load_all(&a.rules, &a.iocs, a.iocs_format, &mut last_good)?;
    let mut sources = match &a.base_rules {
        Some(dir) => RuleSources::load_all(std::slice::from_ref(dir), &[], None, &mut last_good)
            .with_context(|| format!("loading the base rules {}", dir.display()))?,
        None => RuleSources::embedded(),
    };
    sources.sigma = hunted.sigma;
    sources.filters = hunted.filters;
    sources.correlations = hunted.correlations;
    sources.indicators = hunted.indicators;
    sources.placeholders.extend(hunted.placeholders);
    // Profiles given with the hunted rules come first (a profile is found by name).
    let mut profiles = hunted.profiles;
    profiles.append(&mut sources.profiles);
    sources.profiles = profiles;
    if hunted.policy.is_some() {
        sources.policy = hunted.policy;
    }
    if !hunted.recipients.is_empty() {
        sources.recipients = hunted.recipients;
    }
    sources.diagnostics = hunted.diagnostics;
    sources.files = hunted.files;
    let profile = sources.profile(a.profile.as_deref())?;
    let compiled = sources.compile(&profile, &MatchConfig::default());
    sources.indicators = Vec::new();
    Ok((sources, compiled))
}

pub fn hunt(a: HuntArgs) -> Result<ExitCode> {
    if let (Some(from), Some(to)) = (a.from, a.to) {
        anyhow::ensure!(from < to, "--from must be before --to");
    }
    let (sources, compiled) = load(&a)?;
    if let Some(code) = crate::report_rules(&sources, &compiled, a.quiet, false) {
        return Ok(code);
    }
    let archive = crate::open_archive(&a.archive)?;
    let policy = sources.policy.clone().unwrap_or_default();
    let correlator = Correlator::new(crate::correlator_config(
        &sources.correlations,
        policy.clone(),
    ));
    let detections = match &a.detections {
        Some(p) => Some(crate::create_output(&p.to_string_lossy())?),
        None => None,
    };
    let outputs = WarningOutputs::technical(crate::create_output(&a.output)?, policy);
    let mut pipeline = Pipeline::new(
        Arc::new(compiled),
        correlator,
        usize::MAX,
        outputs,
        detections,
        DeadLetterSink::Summary(Vec::new()),
    );
    let filter = EventFilter {
        from_ms: a.from.map(Timestamp::millis),
        to_ms: a.to.map(Timestamp::millis),
        sectors: a.sectors.iter().map(Sector::to_string).collect(),
    };
    let source = format!("archive:{}", a.archive.display());
    let mut position = 0u64;
    archive.scan_events(&filter, |event| -> Result<()> {
        position += 1;
        pipeline.process_archived(&source, position, event)
    })?;
    let (stats, first_dead, latest, correlator) = pipeline.finish()?;
    if a.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let candidates = correlator.candidates();
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "tocsin hunt: {} archived events ({}, {}) in {:.2} s ({:.0} events/s): {} detections, {} incident candidates, {} warning versions ({} warnings)",
        stats.events,
        match (a.from, a.to) {
            (None, None) => "all dates".to_owned(),
            (from, to) => format!(
                "from {} to {}",
                from.map_or("the start".into(), |t| t.to_string()),
                to.map_or("the end".into(), |t| t.to_string())
            ),
        },
        if a.sectors.is_empty() {
            "all sectors".to_owned()
        } else {
            format!("sectors {}", filter.sectors.join(", "))
        },
        stats.seconds,
        stats.events as f64 / stats.seconds.max(1e-9),
        stats.detections,
        candidates.len(),
        stats.warning_versions,
        latest.len()
    )?;
    for c in &candidates {
        let warned = latest
            .iter()
            .find(|w| w.correlation_key == c.correlation_key)
            .map_or_else(
                || "no warning".to_owned(),
                |w| {
                    format!(
                        "warning {} v{} ({})",
                        w.warning_id,
                        w.version,
                        format!("{:?}", w.severity).to_lowercase()
                    )
                },
            );
        let sectors: Vec<String> = c.sectors.iter().map(ToString::to_string).collect();
        let states: Vec<&str> = c.member_states.iter().map(|m| m.as_str()).collect();
        writeln!(
            err,
            "  candidate {}: {} organisations, sectors {}, member states {}, {} detections, {} .. {}: {warned}",
            c.correlation_key,
            c.organisations.len(),
            sectors.join(","),
            states.join(","),
            c.detection_count,
            c.first_seen,
            c.last_seen
        )?;
    }
    for reason in &first_dead {
        writeln!(err, "tocsin hunt: undecodable archived event: {reason}")?;
    }
    Ok(ExitCode::SUCCESS)
}
