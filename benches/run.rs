//! End to end: `tocsin run` over a generated workload in a file, the whole process as an
//! operator runs it (start-up, rule loading, decoding, matching, correlation, writing the
//! detections and warnings).
//!
//! Every run is checked: it must report every generated event, and as many detections as
//! the library finds over the same events by exhaustive evaluation (every rule of every
//! active route, no prefilter), so a fast wrong answer fails.
//!
//! Run: `cargo build --release && cargo bench -p tocsin-benches --bench run`
//! (`TOCSIN_BENCH_EVENTS`, default 200,000).

use std::path::Path;
use std::process::Output;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use tocsin_benches::{count_detections, generated_events, repo, repo_rules, run_ok, tocsin};
use tocsin_match::{CompiledRules, MatchConfig};

/// The figure after `label` in the run's summary line ("… 12 detections, …").
fn summary_figure(stderr: &str, label: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("events/s"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == label)
        .unwrap_or_else(|| panic!("no '{label}' in: {line}"));
    words[at - 1]
        .parse()
        .unwrap_or_else(|_| panic!("not a number before '{label}' in: {line}"))
}

fn run(input: &Path, out_dir: &Path) -> Output {
    let mut cmd = tocsin();
    cmd.arg("run")
        .arg("--rules")
        .arg(repo().join("rules"))
        .arg("--input")
        .arg(input)
        .arg("--detections")
        .arg(out_dir.join("detections.jsonl"))
        .arg("--output")
        .arg(out_dir.join("warnings.jsonl"));
    run_ok(&mut cmd)
}

fn bench(c: &mut Criterion) {
    let events: u64 = std::env::var("TOCSIN_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let generated = generated_events(events, 1);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let mut text = generated.join(&b'\n');
    text.push(b'\n');
    std::fs::write(&input, &text).unwrap();

    let (rules, iocs, profile) = repo_rules();
    let (compiled, _) =
        CompiledRules::compile(&rules, &[], &iocs, &profile, &MatchConfig::default());
    let expected_detections = count_detections(&compiled, &generated);
    let expected_events = generated.len() as u64;
    eprintln!(
        "{expected_events} events ({} MB): {expected_detections} detections expected",
        text.len() / 1_000_000
    );

    let mut group = c.benchmark_group("run");
    group.sample_size(10);
    group.throughput(Throughput::Elements(expected_events));
    group.bench_function(format!("tocsin-run/{expected_events}-events"), |b| {
        b.iter(|| {
            let out = run(&input, dir.path());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(summary_figure(&stderr, "events"), expected_events);
            assert_eq!(
                summary_figure(&stderr, "detections"),
                expected_detections,
                "tocsin run disagrees with exhaustive matching"
            );
            out
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
