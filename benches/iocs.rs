//! Indicators at scale: loading 10^6 mixed indicators (time and resident memory), and
//! matching throughput over the `tocsin gen` workload with 10^3 and 10^6 indicators.
//! Lookups are hash lookups, so 10^6 should cost about the same per event as 10^3.
//!
//! Each run checks its answer: both sets hold the campaign's three indicators plus random
//! ones that never occur in the workload, so both must find exactly the same hits.
//! Run: `cargo bench -p tocsin-benches --bench iocs`.

use std::fmt::Write as _;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use tocsin_benches::{generated_events, record_figure, resident_bytes, sysmon_profile};
use tocsin_core::{Event, EventIndex};
use tocsin_match::{CompiledRules, MatchConfig};
use tocsin_rules::parse_plain_list;

/// A plain list of `n` indicators: a quarter each IPv4, /24 ranges, domains, SHA-256.
fn indicator_list(n: usize) -> String {
    let mut s = String::with_capacity(n * 48);
    s.push_str("#! feed: bench\n#! tlp: GREEN\ndomain invoice-viewer.example\nipv4 203.0.113.47\nsha256 9f2c4b7e1d3a5c6b8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f\n");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n.saturating_sub(3) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let _ = match i % 4 {
            // 100.64.0.0/10 (shared address space): never in the workload.
            0 => writeln!(
                s,
                "ipv4 100.{}.{}.{}",
                64 + (x % 64),
                (x >> 8) % 256,
                (x >> 16) % 256
            ),
            1 => writeln!(s, "ipv4 100.{}.{}.0/24", 64 + (x % 64), (x >> 8) % 256),
            2 => writeln!(s, "domain h{:x}.bad.test", x),
            _ => writeln!(
                s,
                "sha256 {:016x}{:016x}{:016x}{:016x}",
                x,
                x.rotate_left(7),
                x.rotate_left(19),
                x.rotate_left(31)
            ),
        };
    }
    s
}

fn bench(c: &mut Criterion) {
    let events = generated_events(100_000, 1);
    let profile = sysmon_profile();

    let mut group = c.benchmark_group("iocs");
    group.sample_size(10);
    let mut expected = None;
    for n in [1_000usize, 10_000, 100_000, 1_000_000] {
        let text = indicator_list(n);
        let before = resident_bytes();
        let started = Instant::now();
        let (iocs, diags) = parse_plain_list("bench.txt", &text, "bench");
        assert!(diags.is_empty(), "{:?}", &diags[..diags.len().min(3)]);
        let (compiled, _) =
            CompiledRules::compile(&[], &[], &iocs, &profile, &MatchConfig::default());
        let load = started.elapsed();
        drop(iocs);
        let resident = resident_bytes().saturating_sub(before);
        eprintln!(
            "{n} indicators: parsed and indexed in {:.2} s, resident growth {:.0} MiB ({} distinct)",
            load.as_secs_f64(),
            resident as f64 / (1024.0 * 1024.0),
            compiled.indicators().len()
        );
        record_figure("iocs-resident-bytes", n as u64, resident as f64);
        let count = || {
            let mut scratch = compiled.new_scratch();
            let mut index = EventIndex::new();
            let mut hits = 0u64;
            for e in &events {
                let ev = Event::parse(e, &mut index).unwrap();
                compiled.match_event(&ev, &mut scratch);
                hits += scratch.ioc_hits().len() as u64;
            }
            hits
        };
        let hits = count();
        assert!(hits > 0);
        match expected {
            None => expected = Some(hits),
            Some(e) => assert_eq!(hits, e, "10^6 indicators must find the same hits as 10^3"),
        }
        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_function(format!("match/{n}-indicators"), |b| {
            b.iter(|| {
                let h = count();
                assert_eq!(h, hits);
                h
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
