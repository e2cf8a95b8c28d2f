//! `tocsin rules calibrate`: observe how often each rule literal occurs in sample events,
//! and save the table for `--frequencies`.
//!
//! Why a file: `run --calibrate` gathers its sample and compiles the rules twice in the
//! process that matches, so every match-worker replica would do it again after every
//! restart, on whatever its partitions held first, matching with guessed prefilters
//! meanwhile. A table observed once over a representative sample (a day of the sensors'
//! events) and shipped with the rules gives every replica the calibrated prefilters from
//! its first event. Frequencies know literals by content, so a table stays useful as the
//! rules change: a new rule's literals count as unseen.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::input::{self, Line};
use crate::{create_output, load, logging, RuleArgs};

/// Flags of `tocsin rules calibrate`.
#[derive(Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    rules: RuleArgs,
    /// Sample events: JSON lines, optionally gzip-compressed, or `-` for stdin. Repeatable;
    /// read in order until --events events.
    #[arg(long = "input", value_name = "FILE|-", required = true)]
    input: Vec<String>,
    /// How many events to observe (the first ones of the inputs; undecodable lines are
    /// skipped). At most 1,000,000: the sample is held in memory.
    #[arg(long, value_name = "EVENTS", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    events: u32,
    /// Where to write the table (JSON); `-` is stdout. A name ending in `.gz` is written
    /// gzip-compressed (an eighth of the size: a Kubernetes ConfigMap holds at most 1 MiB).
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    output: String,
    /// Lines longer than this are not events (as `run --max-event-bytes`).
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    max_event_bytes: usize,
}

/// Read the sample, observe it, write the table.
pub fn calibrate(a: CalibrateArgs) -> Result<ExitCode> {
    if let Some(table) = &a.rules.frequencies {
        bail!(
            "--frequencies {}: `rules calibrate` searches for every literal and reads no table; a new table comes from calibrating again over a new sample",
            table.display()
        );
    }
    let wanted = a.events as usize;
    let mut sample: Vec<Vec<u8>> = Vec::with_capacity(wanted.min(100_000));
    let mut line = Vec::new();
    'inputs: for name in &a.input {
        let mut reader = input::open(name)?;
        let mut line_no = 0u64;
        while sample.len() < wanted {
            let read = input::read_line(&mut *reader, &mut line, a.max_event_bytes)
                .with_context(|| format!("error reading {name} at line {}", line_no + 1))?;
            line_no += 1;
            match read {
                None => continue 'inputs,
                Some(Line::Oversized { total }) => logging::warn(&format!(
                    "tocsin: {name}:{line_no}: event of {total} bytes exceeds --max-event-bytes, left out of the sample"
                )),
                Some(Line::Ok) if line.iter().all(u8::is_ascii_whitespace) => {}
                Some(Line::Ok) => sample.push(line.clone()),
            }
        }
        break;
    }
    let (sources, observed) = a
        .rules
        .spec()
        .observe(&mut load::LastGood::new(), &sample)?;
    let errors = sources.diagnostics.error_count();
    if errors > 0 && a.rules.strict {
        logging::warn(&format!(
            "tocsin: {errors} rule errors (`tocsin rules check` lists them) and --strict: no table written"
        ));
        return Ok(ExitCode::from(3));
    }
    if errors > 0 {
        logging::warn(&format!(
            "tocsin: {errors} rule errors (`tocsin rules check` lists them): those rules' literals are not in the table"
        ));
    }
    if observed.events() == 0 {
        bail!(
            "no event to observe: {} lines read, none a JSON object",
            sample.len()
        );
    }
    let json = observed.to_json();
    let written = if a.output.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(json.as_bytes())?;
        gz.finish()?
    } else {
        json.into_bytes()
    };
    let mut out = create_output(&a.output)?;
    out.write_all(&written)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {}", a.output))?;
    logging::say(&format!(
        "tocsin: observed {} literals of {} rules over {} events ({} lines read, profile '{}'); wrote {} ({} bytes)",
        observed.len(),
        sources.sigma.len(),
        observed.events(),
        sample.len(),
        observed.profile(),
        a.output,
        written.len()
    ));
    Ok(ExitCode::SUCCESS)
}
