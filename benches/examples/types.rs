//! Decoding and matching time per event type (`Channel`/`EventID`) over the OTRF events,
//! all SigmaHQ Windows rules and the `sysmon` profile (static prefilters): where the
//! matching time of the `sigmahq` bench goes, type by type, and how much of it decoding
//! alone takes.
//!
//! `TOCSIN_TEST_DATA=../shared/data cargo run --release -p tocsin-benches --example types`
//!
//! Each type's events are decoded, then decoded and matched, in passes (`PASSES`, 7 by
//! default); the fastest of each is reported, and the matches found are checked against
//! exhaustive matching. `ONLY=Security/4658` runs one type alone, for a profiler. Per
//! event of each type it also prints the work the matcher did in the last pass (from its
//! `ScratchStats`): candidate rules, bytes of field values scanned, values answered from
//! the scan memo instead, and literal hits.

use std::collections::BTreeMap;
use std::time::Instant;

use tocsin_benches::{count_matches, sigmahq_windows, sysmon_profile};
use tocsin_core::{Event, EventIndex, FieldName};
use tocsin_match::{CompiledRules, MatchConfig, ScratchStats};

/// One event type's figures: the fastest pass of each loop, and the matcher's work.
struct Row<'n> {
    name: &'n str,
    events: usize,
    bytes: usize,
    /// Seconds, fastest pass: decoding alone, and decoding and matching.
    decoding: f64,
    matching: f64,
    work: ScratchStats,
}

fn main() {
    let Some((events, rules)) = sigmahq_windows() else {
        eprintln!("TOCSIN_TEST_DATA is not set: this example needs the OTRF events");
        std::process::exit(2);
    };
    let only = std::env::var("ONLY").ok();
    let passes: usize = std::env::var("PASSES")
        .ok()
        .map_or(7, |n| n.parse().expect("PASSES: a number"));
    let (set, _) =
        CompiledRules::compile(&rules, &[], &[], &sysmon_profile(), &MatchConfig::default());
    let mut index = EventIndex::new();
    let (channel, event_id) = (FieldName::new("Channel"), FieldName::new("EventID"));
    let mut types: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
    for raw in &events {
        let event = Event::parse(raw, &mut index).expect("OTRF events decode");
        let text = |name: &FieldName| {
            event.get_named(name).map_or(String::new(), |v| {
                v.to_text()
                    .unwrap_or_else(|| String::from_utf8_lossy(v.raw()).into_owned())
            })
        };
        let name = format!("{}/{}", text(&channel), text(&event_id));
        types.entry(name).or_default().push(raw);
    }
    let mut scratch = set.new_scratch();
    let mut rows = Vec::new();
    // Matches found, checked against exhaustive matching: a fast wrong answer fails.
    let mut found = 0u64;
    for (name, events) in &types {
        if only.as_ref().is_some_and(|o| o != name) {
            continue;
        }
        let (mut decoding, mut matching) = (f64::MAX, f64::MAX);
        let mut work = ScratchStats::default();
        for pass in 0..passes {
            let start = Instant::now();
            for raw in events {
                let event = Event::parse(raw, &mut index).expect("OTRF events decode");
                std::hint::black_box(event.len());
            }
            decoding = decoding.min(start.elapsed().as_secs_f64());
            let before = scratch.stats;
            let start = Instant::now();
            for raw in events {
                let event = Event::parse(raw, &mut index).expect("OTRF events decode");
                set.match_event(&event, &mut scratch);
                if pass == 0 {
                    found += scratch.matched().len() as u64;
                }
            }
            matching = matching.min(start.elapsed().as_secs_f64());
            // The work of a pass like those timed: the last, the scan memo warm.
            if pass + 1 == passes {
                work = scratch.stats.since(&before);
            }
        }
        rows.push(Row {
            name,
            events: events.len(),
            bytes: events.iter().map(|e| e.len()).sum(),
            decoding,
            matching,
            work,
        });
    }
    if let Some(only) = &only {
        if rows.is_empty() {
            eprintln!("ONLY={only}: no event of that type (the table names the types)");
            std::process::exit(2);
        }
    }
    if only.is_none() {
        assert_eq!(
            found,
            count_matches(&set, &events, true),
            "prefiltered matching disagrees with exhaustive"
        );
    }
    let total: f64 = rows.iter().map(|r| r.matching).sum();
    let decoded: f64 = rows.iter().map(|r| r.decoding).sum();
    let count: usize = rows.iter().map(|r| r.events).sum();
    println!(
        "{count} events: decoding {:.1} ms, decoding and matching {:.1} ms ({:.0} ns per event)",
        decoded * 1e3,
        total * 1e3,
        total * 1e9 / count.max(1) as f64
    );
    println!(
        "{:>48} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6} {:>8} {:>6} {:>6}",
        "type",
        "events",
        "bytes",
        "decode ns",
        "all ns",
        "share",
        "cands",
        "scanned",
        "memo",
        "hits"
    );
    rows.sort_by(|a, b| b.matching.total_cmp(&a.matching));
    for Row {
        name,
        events: n,
        bytes,
        decoding,
        matching,
        work,
    } in rows
    {
        let per = |t: f64| t * 1e9 / n as f64;
        let each = |x: u64| x as f64 / n as f64;
        println!(
            "{name:>48} {n:>7} {:>7} {:>9.0} {:>9.0} {:>5.1}% {:>6.2} {:>8.0} {:>6.2} {:>6.2}",
            bytes / n,
            per(decoding),
            per(matching),
            100.0 * matching / total,
            each(work.candidates),
            each(work.scanned_bytes),
            each(work.memo_replays),
            each(work.literal_hits)
        );
    }
}
