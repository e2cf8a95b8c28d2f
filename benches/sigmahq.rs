//! Decoding alone, and matching throughput with 10, 100, 1,000 and all SigmaHQ Windows
//! rules, over the real OTRF events (`TOCSIN_TEST_DATA`, see ../shared/data); all rules
//! again with prefilter sets calibrated on a sample of the events (`…-rules-calibrated`);
//! compile time of the full set.
//! Without the data it falls back to the `tocsin gen` workload and our own rules only.
//!
//! The timed loop keeps one scratch space across iterations, as a worker thread does, so
//! the lazily built regex automata and the routing cache are warm.
//!
//! Every measurement checks its answer: the number of (event, rule) matches must equal the
//! count from exhaustive evaluation (every rule of every active route, no prefilter),
//! computed once per rule set. Run: `cargo bench -p tocsin-benches --bench sigmahq`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use tocsin_benches::{
    count_matches, count_matches_with, generated_events, live_heap_bytes, match_all,
    peak_heap_bytes, record_figure, repo_rules, reset_peak_heap, resident_bytes, sigmahq_windows,
    sysmon_profile, CountingAllocator,
};
use tocsin_core::{Event, EventIndex};
use tocsin_match::{CompiledRules, MatchConfig};
use tocsin_rules::SigmaRule;

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

/// (events, windows rules, label)
fn inputs() -> (Vec<Vec<u8>>, Vec<SigmaRule>, &'static str) {
    if let Some((events, rules)) = sigmahq_windows() {
        return (events, rules, "SigmaHQ windows rules over OTRF events");
    }
    eprintln!("TOCSIN_TEST_DATA not set: falling back to the tocsin gen workload and rules/");
    (
        generated_events(100_000, 1),
        repo_rules().0,
        "rules/ over the gen workload",
    )
}

/// What the prefilter did, per event on average: shows where the time goes.
fn work_per_event(compiled: &CompiledRules, events: &[Vec<u8>]) -> String {
    let s = match_all(compiled, events, false, |_| {});
    let per = |x: u64| x as f64 / s.events as f64;
    format!(
        "{:.1} routes active, {:.0} bytes scanned, {:.1} literal hits, {:.2} candidate rules ({:.2} turned away by their guard), {:.3} matches",
        per(s.active_routes),
        per(s.scanned_bytes),
        per(s.literal_hits),
        per(s.candidates),
        per(s.guard_rejections),
        per(s.matches)
    )
}

fn bench(c: &mut Criterion) {
    let (events, rules, label) = inputs();
    let profile = sysmon_profile();
    eprintln!("{label}: {} events, {} rules", events.len(), rules.len());
    let mut group = c.benchmark_group("sigmahq");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));
    // Decoding alone (validate and index every event): the floor under every rule count.
    // The answer to check: the number of top-level members, as serde_json counts them.
    let members: usize = events
        .iter()
        .map(|e| {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(e)
                .map_or(0, |m| m.len())
        })
        .sum();
    group.bench_function("decode", |b| {
        let mut index = EventIndex::new();
        b.iter(|| {
            let got: usize = events
                .iter()
                .map(|e| Event::parse(e, &mut index).map_or(0, |ev| ev.len()))
                .sum();
            assert_eq!(got, members);
            got
        })
    });
    let mut sizes: Vec<usize> = [10, 100, 1000]
        .into_iter()
        .filter(|&n| n < rules.len())
        .collect();
    sizes.push(rules.len());
    for n in sizes {
        let before = resident_bytes();
        let heap_before = live_heap_bytes();
        reset_peak_heap();
        let (compiled, _) =
            CompiledRules::compile(&rules[..n], &[], &[], &profile, &MatchConfig::default());
        // Exact: the bytes the compiled set keeps on the heap (the compiler's temporaries
        // and the diagnostics are freed by now), and the most the compiler held at once.
        let compiled_heap = live_heap_bytes().saturating_sub(heap_before);
        let compile_peak = peak_heap_bytes().saturating_sub(heap_before);
        record_figure(
            "sigmahq-compile-peak-heap-bytes",
            n as u64,
            compile_peak as f64,
        );
        let compiled_bytes = resident_bytes().saturating_sub(before);
        record_figure(
            "sigmahq-compiled-heap-bytes",
            n as u64,
            compiled_heap as f64,
        );
        record_figure(
            "sigmahq-compiled-resident-bytes",
            n as u64,
            compiled_bytes as f64,
        );
        let expected = count_matches(&compiled, &events, true);
        eprintln!(
            "{n} rules ({} compiled, {} without a prefilter): {expected} matches expected",
            compiled.stats().rules,
            compiled.stats().unfiltered_rules
        );
        let work = work_per_event(&compiled, &events);
        eprintln!("{n} rules, per event: {work}");
        // One scratch for all iterations, as a worker keeps one: its regex caches and
        // routing cache stay warm.
        let heap_before = live_heap_bytes();
        let mut scratch = compiled.new_scratch();
        count_matches_with(&compiled, &mut scratch, &events, false);
        let scratch_heap = live_heap_bytes().saturating_sub(heap_before);
        record_figure("sigmahq-scratch-heap-bytes", n as u64, scratch_heap as f64);
        eprintln!(
            "{n} rules: compiled set {:.2} MiB on the heap ({:.1} KB per rule; {:.2} MiB at \
             the compiler's peak), a warm scratch space {:.2} MiB; resident set grew {:.2} \
             MiB while compiling",
            compiled_heap as f64 / 1048576.0,
            compiled_heap as f64 / n as f64 / 1000.0,
            compile_peak as f64 / 1048576.0,
            scratch_heap as f64 / 1048576.0,
            compiled_bytes as f64 / 1048576.0
        );
        group.bench_function(format!("match/{n}-rules"), |b| {
            b.iter(|| {
                let got = count_matches_with(&compiled, &mut scratch, &events, false);
                assert_eq!(
                    got, expected,
                    "prefiltered matching disagrees with exhaustive evaluation"
                );
                got
            })
        });
    }

    // Prefilter sets chosen by literal frequencies (see tocsin_match::calibrate), observed
    // on every fifth event of the first half (its datasets only: the second half's attacks
    // are unseen), measured over all events.
    let sample = events[..events.len() / 2].iter().step_by(5);
    let sample_len = sample.len();
    let (calibrated, _, frequencies) = CompiledRules::compile_calibrated(
        &rules,
        &[],
        &[],
        &profile,
        &MatchConfig::default(),
        sample.map(Vec::as_slice),
    );
    let expected = count_matches(&calibrated, &events, true);
    eprintln!(
        "{} rules calibrated on {sample_len} events ({} literals observed): {expected} matches expected",
        rules.len(),
        frequencies.len()
    );
    let second_half = &events[events.len() / 2..];
    eprintln!(
        "{} rules calibrated, per event: {}; on the unseen half: {}",
        rules.len(),
        work_per_event(&calibrated, &events),
        work_per_event(&calibrated, second_half)
    );
    let mut scratch = calibrated.new_scratch();
    group.bench_function(format!("match/{}-rules-calibrated", rules.len()), |b| {
        b.iter(|| {
            let got = count_matches_with(&calibrated, &mut scratch, &events, false);
            assert_eq!(
                got, expected,
                "prefiltered matching disagrees with exhaustive evaluation"
            );
            got
        })
    });
    group.finish();

    let mut group = c.benchmark_group("sigmahq-compile");
    group.sample_size(10);
    group.bench_function(format!("compile/{}-rules", rules.len()), |b| {
        b.iter(|| {
            let (compiled, _) =
                CompiledRules::compile(&rules, &[], &[], &profile, &MatchConfig::default());
            assert!(compiled.stats().rules > 0);
            compiled.stats().rules
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
