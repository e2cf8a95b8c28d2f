//! Matching time per event over repeated passes, for comparisons on a noisy machine.
//!
//! Criterion reports one mean per run; on a shared host a neighbour moves it by more than
//! a change under test. This runs the `sigmahq` bench's workload (all SigmaHQ Windows rules
//! over the OTRF events, static and calibrated prefilters, decoding included) pass after
//! pass in one process, alternating the two sets, and prints the fastest, the median and
//! the mean pass: run two builds alternately and compare their fastest passes. (Criterion
//! reports a mean, which takes in every pause a neighbour causes: run one after the other
//! on this shared host, its figure came out near this loop's mean pass.)
//!
//! `TOCSIN_TEST_DATA=../shared/data cargo run --release -p tocsin-benches --example passes -- 8`
//!
//! A second argument, `static` or `calibrated` (or `both`), runs that set alone: for a
//! profiler, whose report should not mix the two; `memo` runs both sets with and without
//! the scan memo (`MatchConfig::scan_memo_slots`). A third names a profile file to match
//! with instead of `rules/profiles/sysmon.yaml` (the peers' `any.yaml`, which routes no
//! rule by its logsource).

use std::time::Instant;

use tocsin_benches::{count_matches, sigmahq_windows, sysmon_profile};
use tocsin_core::{Event, EventIndex};
use tocsin_match::{CompiledRules, MatchConfig};

fn main() {
    let passes: usize = std::env::args()
        .nth(1)
        .map_or(8, |n| n.parse().expect("passes: a number"));
    let Some((events, rules)) = sigmahq_windows() else {
        eprintln!("TOCSIN_TEST_DATA is not set: this example needs the OTRF events");
        std::process::exit(2);
    };
    let profile = match std::env::args().nth(3) {
        Some(path) => {
            let text = std::fs::read_to_string(&path).expect("the profile file reads");
            tocsin_rules::parse_profile(&path, &text).expect("the profile parses")
        }
        None => sysmon_profile(),
    };
    let compile_both = |config: &MatchConfig| {
        let (static_set, _) = CompiledRules::compile(&rules, &[], &[], &profile, config);
        // Calibrated as the bench does: on every fifth event of the first half.
        let sample = events[..events.len() / 2].iter().step_by(5);
        let (calibrated, _, _) = CompiledRules::compile_calibrated(
            &rules,
            &[],
            &[],
            &profile,
            config,
            sample.map(Vec::as_slice),
        );
        [static_set, calibrated]
    };
    let only = std::env::args().nth(2).unwrap_or_else(|| "both".into());
    let [static_set, calibrated] = compile_both(&MatchConfig::default());
    let mut sets = vec![("static", static_set), ("calibrated", calibrated)];
    if only == "memo" {
        let [static_set, calibrated] = compile_both(&MatchConfig {
            scan_memo_slots: 0,
            ..MatchConfig::default()
        });
        sets.push(("static, no memo", static_set));
        sets.push(("calibrated, no memo", calibrated));
    } else {
        sets.retain(|(name, _)| only == "both" || only == *name);
    }
    assert!(
        !sets.is_empty(),
        "the second argument names a set: static, calibrated, both, or memo (both, with and without the scan memo)"
    );
    let expected: Vec<u64> = sets
        .iter()
        .map(|(_, set)| count_matches(set, &events, true))
        .collect();
    let mut scratches: Vec<_> = sets.iter().map(|(_, set)| set.new_scratch()).collect();
    let mut times = vec![Vec::new(); sets.len()];
    let mut index = EventIndex::new();
    // One pass more than asked for: the first warms the caches and is not counted.
    for pass in 0..=passes {
        for (k, (_, set)) in sets.iter().enumerate() {
            let start = Instant::now();
            let mut found = 0u64;
            for raw in &events {
                let event = Event::parse(raw, &mut index).expect("OTRF events decode");
                set.match_event(&event, &mut scratches[k]);
                found += (scratches[k].matched().len() + scratches[k].ioc_hits().len()) as u64;
            }
            let per_event = start.elapsed().as_nanos() as f64 / events.len() as f64;
            assert_eq!(
                found, expected[k],
                "prefiltered matching disagrees with exhaustive"
            );
            if pass > 0 {
                times[k].push(per_event);
            }
        }
    }
    println!(
        "{} events, {} rules, {passes} passes",
        events.len(),
        rules.len()
    );
    for (k, ((name, _), t)) in sets.iter().zip(&mut times).enumerate() {
        t.sort_by(f64::total_cmp);
        let (fastest, median) = (t[0], t[t.len() / 2]);
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        let stats = scratches[k].stats;
        let per = |x: u64| x as f64 / stats.events as f64;
        println!(
            "{name:>19}: fastest {fastest:.0} ns/event ({:.0} k events/s), median {median:.0} ns/event ({:.0} k/s), mean {mean:.0} ns/event ({:.0} k/s), {} matches; per event {:.2} candidates, {:.2} turned away by a guard, {:.2} values answered from the scan memo",
            1e6 / fastest,
            1e6 / median,
            1e6 / mean,
            expected[k],
            per(stats.candidates),
            per(stats.guard_rejections),
            per(stats.memo_replays)
        );
    }
}
