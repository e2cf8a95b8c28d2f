//! Decode and match throughput over the `tocsin gen` workload, with the rules of rules/ and
//! with 1,000 extra synthetic rules (to show that cost stays nearly flat in the number of
//! rules). Every measurement checks its answer: the number of matches must equal the count
//! computed once without the prefilter, so a fast wrong answer fails.
//!
//! Run: `cargo bench -p tocsin-benches --bench pipeline`. Figures go to benches/RESULTS.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use tocsin_benches::{count_matches, generated_events, repo_rules};
use tocsin_core::{Event, EventIndex};
use tocsin_match::{CompiledRules, MatchConfig};
use tocsin_rules::{parse_sigma_source, SigmaRule};

const EVENTS: u64 = 100_000;

fn workload() -> Vec<Vec<u8>> {
    generated_events(EVENTS, 1)
}

/// Rules that look like real ones (process creation, literals on Image and CommandLine) but
/// never match the workload.
fn synthetic_rules(n: usize) -> Vec<SigmaRule> {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "title: synthetic {i}\nid: synthetic-{i}\nlogsource: {{category: process_creation, product: windows}}\ndetection:\n  sel_img:\n    Image|endswith: '\\tool{i}.exe'\n  sel_cli:\n    CommandLine|contains: ['--opt-{i}-x', 'payload{i}.bin']\n  condition: all of sel_*\n---\n"
        ));
    }
    let src = parse_sigma_source("synthetic.yml", &text);
    assert_eq!(src.diagnostics.error_count(), 0);
    src.rules
}

fn bench(c: &mut Criterion) {
    let events = workload();
    let bytes: usize = events.iter().map(Vec::len).sum();
    let (rules, iocs, profile) = repo_rules();

    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));

    group.bench_function("decode", |b| {
        let mut index = EventIndex::new();
        b.iter(|| {
            let mut members = 0usize;
            for e in &events {
                members += Event::parse(e, &mut index).unwrap().len();
            }
            assert!(members > events.len() * 10);
            members
        })
    });

    for extra in [0usize, 1000] {
        let mut all = rules.clone();
        all.extend(synthetic_rules(extra));
        let (compiled, diags) =
            CompiledRules::compile(&all, &[], &iocs, &profile, &MatchConfig::default());
        assert!(diags.iter().all(|d| !d.is_error()));
        let expected = count_matches(&compiled, &events, true);
        assert!(expected > 100);
        let name = format!("decode+match/{}-rules", compiled.stats().rules);
        group.bench_function(&name, |b| {
            b.iter(|| {
                let got = count_matches(&compiled, &events, false);
                assert_eq!(
                    got, expected,
                    "prefiltered matching disagrees with exhaustive matching"
                );
                got
            })
        });
    }
    group.finish();
    eprintln!(
        "workload: {} events, {:.0} bytes/event",
        events.len(),
        bytes as f64 / events.len() as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
