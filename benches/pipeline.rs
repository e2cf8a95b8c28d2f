//! Decode and match throughput over the `tocsin gen` workload, with the rules of rules/ and
//! with 1,000 extra synthetic rules (to show that cost stays nearly flat in the number of
//! rules). Every measurement checks its answer: the number of matches must equal the count
//! computed once without the prefilter, so a fast wrong answer fails.
//!
//! Run: `cargo bench --bench pipeline`. Figures go to benches/RESULTS.md.

use std::path::Path;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use tocsin_core::{Event, EventIndex};
use tocsin_match::{CompiledRules, MatchConfig};
use tocsin_rules::{parse_plain_list, parse_profile, parse_sigma_source, SigmaRule};

const EVENTS: u64 = 100_000;

fn workload() -> Vec<Vec<u8>> {
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["gen", "--events", &EVENTS.to_string(), "--seed", "1"])
        .output()
        .expect("run tocsin gen");
    assert!(out.status.success());
    out.stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn repo_rules() -> (
    Vec<SigmaRule>,
    Vec<tocsin_rules::Indicator>,
    tocsin_rules::Profile,
) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut rules = Vec::new();
    for entry in std::fs::read_dir(root.join("sigma")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".tests.yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let src = parse_sigma_source(&path.display().to_string(), &text);
        assert_eq!(src.diagnostics.error_count(), 0);
        rules.extend(src.rules);
    }
    let iocs_text = std::fs::read_to_string(root.join("iocs/cert-eu-sample.txt")).unwrap();
    let (iocs, _) = parse_plain_list("iocs", &iocs_text, "sample");
    let profile = parse_profile(
        "sysmon.yaml",
        &std::fs::read_to_string(root.join("profiles/sysmon.yaml")).unwrap(),
    )
    .unwrap();
    (rules, iocs, profile)
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

fn count_matches(compiled: &CompiledRules, events: &[Vec<u8>], unfiltered: bool) -> u64 {
    let mut scratch = compiled.new_scratch();
    let mut index = EventIndex::new();
    let mut n = 0u64;
    for e in events {
        let ev = Event::parse(e, &mut index).unwrap();
        if unfiltered {
            compiled.match_event_unfiltered(&ev, &mut scratch);
        } else {
            compiled.match_event(&ev, &mut scratch);
        }
        n += scratch.matched().len() as u64 + scratch.ioc_hits().len() as u64;
    }
    n
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
