//! `tocsin demo`: the NIGHTGLASS exercise end to end.
//!
//! Generates the workload in memory (background activity of 30 organisations plus the
//! campaign), runs it through the same embedded pipeline as `tocsin run` with the rules
//! built into the binary (or `--rules`), marks every warning as exercise traffic, and
//! prints a table of the warnings raised.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use tocsin_core::EarlyWarning;
use tocsin_correlate::Correlator;

use crate::pipeline::{DeadLetterSink, Pipeline};
use crate::{create_output, gen, prepare_rules, RuleArgs};

pub fn demo(
    seed: u64,
    events: u64,
    output: Option<PathBuf>,
    rules: &[PathBuf],
) -> Result<ExitCode> {
    let args = RuleArgs {
        rules: rules.to_vec(),
        profile: None,
        strict: true,
        iocs: Vec::new(),
        iocs_format: None,
        frequencies: None,
    };
    let (sources, compiled) = match prepare_rules(&args, true)? {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let mut workload = Vec::with_capacity(events as usize * 700);
    let mix = gen::Workload::new(events, seed, gen::Shape::Sysmon);
    let written = gen::generate(&mut workload, &mix)?;
    let mut policy = sources.policy.clone().unwrap_or_default();
    policy.exercise = true;
    let correlator = Correlator::new(crate::correlator_config(&sources.correlations, policy));
    let warnings_out: Box<dyn Write> = match &output {
        Some(p) => create_output(&p.to_string_lossy())?,
        None => Box::new(io::sink()),
    };
    let stats_of_rules = compiled.stats();
    let mut pipeline = Pipeline::new(
        std::sync::Arc::new(compiled),
        correlator,
        1 << 20,
        crate::pipeline::WarningOutputs::technical(
            warnings_out,
            sources.policy.clone().unwrap_or_default(),
        ),
        None,
        DeadLetterSink::Summary(Vec::new()),
    );
    pipeline.process_source("<demo workload>", &mut io::Cursor::new(&workload))?;
    let (stats, _, latest, correlator) = pipeline.finish()?;

    let mut out = io::stdout().lock();
    writeln!(out, "NIGHTGLASS exercise (seed {seed}): {written} events from {} organisations in {} sectors and {} member states, {} rules, {} indicators", mix.topology.orgs.len(), mix.topology.sectors, mix.topology.member_states, stats_of_rules.rules, stats_of_rules.indicators)?;
    writeln!(
        out,
        "processed in {:.2} s ({:.0} events/s); {} detections ({} not correlated: no shared indicator or campaign); {} warning versions",
        stats.seconds,
        stats.events as f64 / stats.seconds.max(1e-9),
        stats.detections,
        correlator.stats().unkeyed,
        stats.warning_versions
    )?;
    writeln!(out)?;
    print_table(&mut out, &latest)?;
    writeln!(out)?;
    match &output {
        Some(p) => writeln!(out, "Warnings (every version, JSON lines): {}", p.display())?,
        None => writeln!(out, "Use --output FILE to keep the warnings as JSON lines.")?,
    }
    writeln!(out, "All warnings carry \"exercise\": true.")?;
    Ok(ExitCode::SUCCESS)
}

fn print_table(out: &mut dyn Write, warnings: &[EarlyWarning]) -> io::Result<()> {
    if warnings.is_empty() {
        return writeln!(out, "No warnings.");
    }
    writeln!(
        out,
        "{:<3} {:<10} {:<3} {:<9} {:<44} {:<40} {:<18} {:<24} {:>4} {:>5}",
        "#",
        "warning",
        "v",
        "severity",
        "headline",
        "sectors",
        "member states",
        "first seen",
        "orgs",
        "dets"
    )?;
    for (i, w) in warnings.iter().enumerate() {
        let subject = w.headline.split(" seen at ").next().unwrap_or(&w.headline);
        let sectors: Vec<&str> = w.affected.sectors.iter().map(|s| s.slug()).collect();
        let states: Vec<&str> = w
            .affected
            .member_states
            .iter()
            .map(|m| m.as_str())
            .collect();
        let mut flags = Vec::new();
        if w.cross_border {
            flags.push("cross-border");
        }
        if w.cross_sector {
            flags.push("cross-sector");
        }
        writeln!(
            out,
            "{:<3} {:<10} {:<3} {:<9} {:<44} {:<40} {:<18} {:<24} {:>4} {:>5}",
            i + 1,
            &w.warning_id[..10.min(w.warning_id.len())],
            w.version,
            w.severity.as_str(),
            truncate(subject, 44),
            truncate(&sectors.join(","), 40),
            states.join(","),
            w.first_seen.to_string(),
            w.affected.organisation_count,
            w.detection_count
        )?;
        let indicators: Vec<String> = w
            .indicators
            .iter()
            .map(|i| format!("{} {} ({})", i.kind.as_str(), i.value, i.tlp.label()))
            .collect();
        if !indicators.is_empty() {
            writeln!(out, "    indicators: {}", indicators.join("; "))?;
        }
        writeln!(
            out,
            "    {} | TLP:{} | {}",
            flags.join(", "),
            w.tlp.label(),
            w.taxonomy.map(|t| t.to_string()).unwrap_or_default()
        )?;
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
