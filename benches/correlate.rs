//! The correlator under load: detections/s with 10^5 and 10^6 live correlation keys, memory
//! per key, what a state write costs (the whole state, and a delta after a batch of 10^4
//! detections: `state-delta/…`), and the time from the detection that completes a candidate
//! to its warning; and
//! detections/s of a Sigma correlation rule with 10^3 to 10^5 live groups (one per source
//! address), whose cost must not grow with the groups; and one key gathering 10^3 or 10^4
//! indicators (`correlate-wide`). Every measurement checks its answer (live keys or groups,
//! warnings and firings produced).
//! Run: `cargo bench -p tocsin-benches --bench correlate`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use tocsin_benches::{live_heap_bytes, record_figure, resident_bytes, CountingAllocator};
use tocsin_core::{
    correlation_rule_key, Context, Detection, DetectionKind, Level, RuleRef, SourceRef, Timestamp,
    Tlp, DETECTION_SCHEMA,
};
use tocsin_correlate::{Correlator, CorrelatorConfig};
use tocsin_rules::CorrelationRule;

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator;

fn detection(key: usize, org: &str, n: u64) -> Detection {
    tocsin_core::samples::indicator_detection(
        format!("det-{key}-{org}-{n}"),
        &format!("h{key:08x}.bad.test"),
        "bench",
        org,
        Timestamp(1_772_438_400_000 + n as i64),
    )
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("correlate");
    group.sample_size(10);
    // TOCSIN_BENCH_KEYS=1000 for a quick run.
    let sizes: Vec<usize> = match std::env::var("TOCSIN_BENCH_KEYS") {
        Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![1_000, 10_000, 100_000, 1_000_000],
    };
    for keys in sizes {
        let before = resident_bytes();
        let heap_before = live_heap_bytes();
        let mut corr = Correlator::new(CorrelatorConfig::default());
        let mut out = Vec::new();
        for k in 0..keys {
            corr.push(&detection(k, "Org A", k as u64), &mut out);
        }
        assert_eq!(corr.live_keys(), keys);
        assert!(out.is_empty());
        let per_key = resident_bytes().saturating_sub(before) as f64 / keys as f64;
        // The heap the keys hold, counted by the bench's allocator: exact, where the
        // resident growth depends on what earlier sizes freed.
        let heap_per_key = live_heap_bytes().saturating_sub(heap_before) as f64 / keys as f64;
        eprintln!(
            "{keys} live keys: about {per_key:.0} bytes of resident memory per key, \
             {heap_per_key:.0} bytes of heap"
        );
        // What a correlate worker writes for a partition holding these keys when it writes
        // the state whole (then a delta is taken after it).
        let started = std::time::Instant::now();
        let whole = corr.snapshot().len();
        let whole_time = started.elapsed();
        corr.whole_state_written();
        eprintln!(
            "{keys} live keys: a whole state of {whole} bytes ({:.0} a key), written in {:.1} ms",
            whole as f64 / keys as f64,
            whole_time.as_secs_f64() * 1e3
        );
        record_figure("correlate-state-whole-bytes", keys as u64, whole as f64);
        record_figure(
            "correlate-state-whole-seconds",
            keys as u64,
            whole_time.as_secs_f64(),
        );
        record_figure(
            "correlate-resident-bytes",
            keys as u64,
            per_key * keys as f64,
        );
        record_figure(
            "correlate-heap-bytes",
            keys as u64,
            heap_per_key * keys as f64,
        );
        // A state delta after a batch of 10^4 detections: what it costs grows with the keys
        // the batch touched (each once in the delta, checked), not with the keys held. Each
        // round touches the next 10^4 keys, so that no key gathers detections round after
        // round (a key's state grows with the detections it holds).
        let touched = keys.min(10_000);
        let mut delta_bytes = 0;
        let mut delta_round = 0usize;
        group.throughput(Throughput::Elements(touched as u64));
        group.bench_function(format!("state-delta/{keys}-keys"), |b| {
            b.iter_custom(|iterations| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iterations {
                    delta_round += 1;
                    let mut out = Vec::new();
                    for i in 0..10_000 {
                        let n = delta_round * 10_000 + i;
                        let d = detection(n % keys, "Org A", (keys + n) as u64);
                        corr.push(&d, &mut out);
                    }
                    let started = std::time::Instant::now();
                    let delta = corr.take_delta().expect("after a whole state");
                    spent += started.elapsed();
                    // Every key touched, none more (each entry opens `["<key>"`).
                    let entries = String::from_utf8_lossy(&delta)
                        .matches("[\"indicator:")
                        .count();
                    assert_eq!(entries, touched, "keys in the delta");
                    delta_bytes = delta.len();
                }
                spent
            })
        });
        eprintln!(
            "{keys} live keys: a delta of {delta_bytes} bytes ({:.0} a key) after 10,000 detections into {touched} keys",
            delta_bytes as f64 / touched as f64
        );
        record_figure(
            "correlate-state-delta-bytes",
            keys as u64,
            delta_bytes as f64,
        );
        // Steady state: more detections from the same organisation into existing keys.
        let batch: Vec<Detection> = (0..10_000)
            .map(|i| detection((i * 7919) % keys, "Org A", keys as u64 + i as u64))
            .collect();
        group.throughput(Throughput::Elements(batch.len() as u64));
        let mut round = 0u64;
        group.bench_function(format!("push/{keys}-keys"), |b| {
            b.iter(|| {
                round += 1;
                let mut out = Vec::new();
                for d in &batch {
                    let mut d = d.clone();
                    d.id.push_str(&round.to_string());
                    corr.push(&d, &mut out);
                }
                assert!(out.is_empty(), "one organisation never warns");
                out.len()
            })
        });
        assert_eq!(corr.live_keys(), keys);
    }
    group.finish();

    // Latency: the second organisation completes a candidate; its push returns the warning.
    let mut group = c.benchmark_group("correlate-latency");
    let corr = std::cell::RefCell::new(Correlator::new(CorrelatorConfig::default()));
    let mut next = 0usize;
    group.bench_function("detection-to-warning", |b| {
        b.iter_batched(
            || {
                next += 1;
                // Each iteration leaves a key behind: start afresh well before the
                // correlator's live-key limit, which would refuse new keys. (Batches of one:
                // in a larger batch every setup runs before the routines, and a fresh
                // correlator between them would lose the first organisation's detections.)
                if next.is_multiple_of(500_000) {
                    *corr.borrow_mut() = Correlator::new(CorrelatorConfig::default());
                }
                let mut out = Vec::new();
                corr.borrow_mut()
                    .push(&detection(next, "Org A", next as u64), &mut out);
                detection(next, "Org B", next as u64 + 1)
            },
            |d| {
                let mut warnings = Vec::new();
                corr.borrow_mut().push(&d, &mut warnings);
                assert_eq!(
                    warnings.len(),
                    1,
                    "{:?} {:?}",
                    d.correlation_keys,
                    corr.borrow().stats()
                );
                warnings
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// A failed logon from address number `address`, the `n`th event read, at `at` ms after the
/// start, keyed for the correlation `few`.
fn failed_logon(address: usize, n: u64, at: i64) -> Detection {
    let ip = format!(
        "10.{}.{}.{}",
        address >> 16 & 255,
        address >> 8 & 255,
        address & 255
    );
    Detection {
        schema: DETECTION_SCHEMA.into(),
        id: format!("det-logon-{n}"),
        kind: DetectionKind::Sigma,
        rule: RuleRef {
            id: "failed_logon".into(),
            title: "Failed logon".into(),
            level: Level::Low,
        },
        event_time: Timestamp(1_772_438_400_000 + at),
        context: Context {
            sector: Some(tocsin_core::Sector::Health),
            member_state: Some("DE".parse().unwrap()),
            organisation: Some("Org A".into()),
            sensor: None,
        },
        entities: vec![],
        indicators: vec![],
        taxonomy: None,
        attack: vec![],
        tags: vec![],
        correlation_keys: vec![correlation_rule_key("few", &[ip.as_str()])],
        tlp: Tlp::Green,
        source: Some(SourceRef {
            name: "bench/0".into(),
            position: n,
        }),
        fields: [("IpAddress".to_owned(), ip)].into_iter().collect(),
        standalone: false,
    }
}

/// "Fewer than three failed logons from one address in an hour": a Sigma correlation
/// judged when its window closes, so that a window holds what it counts until then.
fn few_failed_logons() -> CorrelationRule {
    tocsin_rules::parse_sigma_source(
        "few.yml",
        "title: Few failed logons\nid: few\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 1h\n  condition: {lt: 3}\n",
    )
    .correlations
    .remove(0)
}

/// A Sigma correlation judged when its window closes ([`few_failed_logons`]), with one
/// open window per address: detections into existing windows, event time standing still,
/// so that nothing closes and none fires.
fn bench_sigma_groups(c: &mut Criterion) {
    let rule = few_failed_logons();
    let config = || CorrelatorConfig {
        correlation_rules: vec![rule.clone()],
        ..CorrelatorConfig::default()
    };
    // Busy windows: what each further detection into an open window holds (the group's
    // items and the identities it remembers for de-duplication).
    {
        let (groups, each) = (1_000, 100);
        let mut corr = Correlator::new(config());
        let mut warnings = Vec::new();
        for a in 0..groups {
            corr.push(&failed_logon(a, a as u64, 0), &mut warnings);
        }
        let before = live_heap_bytes();
        for n in 1..each {
            for a in 0..groups {
                corr.push(
                    &failed_logon(a, (n * groups + a) as u64, n as i64),
                    &mut warnings,
                );
            }
        }
        assert!(warnings.is_empty() && corr.take_derived().is_empty());
        let per_detection =
            live_heap_bytes().saturating_sub(before) as f64 / ((each - 1) * groups) as f64;
        eprintln!(
            "{groups} groups of {each} detections: {per_detection:.0} bytes of heap per further detection"
        );
        record_figure(
            "correlate-sigma-heap-bytes-per-detection",
            (groups * each) as u64,
            per_detection,
        );
    }
    let mut group = c.benchmark_group("correlate-sigma");
    group.sample_size(10);
    // TOCSIN_BENCH_GROUPS=1000 for a quick run.
    let sizes: Vec<usize> = match std::env::var("TOCSIN_BENCH_GROUPS") {
        Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![1_000, 10_000, 100_000],
    };
    for groups in sizes {
        let before = live_heap_bytes();
        let mut corr = Correlator::new(config());
        let mut warnings = Vec::new();
        // Every window opens within the first ten minutes of event time.
        let spread = |i: usize| (i % 600_000) as i64;
        for a in 0..groups {
            corr.push(&failed_logon(a, a as u64, spread(a)), &mut warnings);
        }
        assert_eq!(corr.live_correlation_groups(), groups);
        let per_group = live_heap_bytes().saturating_sub(before) as f64 / groups as f64;
        eprintln!("{groups} live groups of one detection: {per_group:.0} bytes of heap per group");
        record_figure(
            "correlate-sigma-heap-bytes",
            groups as u64,
            per_group * groups as f64,
        );
        let batch: Vec<Detection> = (0..10_000)
            .map(|i| (i * 7919) % groups)
            .map(|a| failed_logon(a, 0, spread(a)))
            .collect();
        let mut next = groups as u64;
        group.throughput(Throughput::Elements(batch.len() as u64));
        group.bench_function(format!("push/{groups}-groups"), |b| {
            b.iter(|| {
                for d in &batch {
                    // Another event each time (a new place), so that none is a redelivery.
                    let mut d = d.clone();
                    next += 1;
                    if let Some(source) = &mut d.source {
                        source.position = next;
                    }
                    corr.push(&d, &mut warnings);
                }
                assert!(warnings.is_empty(), "one organisation never warns");
                assert!(corr.take_derived().is_empty(), "no window closed");
            })
        });
        assert_eq!(corr.live_correlation_groups(), groups);
        drop(corr);
        // The state a correlate worker writes (every `correlate.state_interval_ms`) for a
        // partition holding these groups, each with ten detections.
        let mut corr = Correlator::new(config());
        for n in 0..10 {
            for a in 0..groups {
                let d = failed_logon(a, (n * groups + a) as u64, spread(a) + n as i64);
                corr.push(&d, &mut warnings);
            }
        }
        let snapshot = corr.snapshot();
        let size = snapshot.len();
        let restored = Correlator::restore(config(), &snapshot).expect("it restores");
        drop(snapshot);
        assert_eq!(restored.live_correlation_groups(), groups);
        drop(restored);
        eprintln!("{groups} groups: a snapshot of {size} bytes");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("snapshot/{groups}-groups"), |b| {
            b.iter(|| {
                let bytes = corr.snapshot();
                assert_eq!(bytes.len(), size);
                bytes.len()
            })
        });
    }
    group.finish();
}

/// Full engines: detections of keys not seen before, into a correlator holding its
/// maximum of live keys (whose windows have not ended: each is refused), and into a Sigma
/// correlation engine holding its maximum of groups (each makes room by evicting).
fn bench_full(c: &mut Criterion) {
    let rule = few_failed_logons();
    let full = 100_000;
    let mut group = c.benchmark_group("correlate-full");
    group.sample_size(10);

    let mut corr = Correlator::new(CorrelatorConfig {
        max_keys: full,
        ..CorrelatorConfig::default()
    });
    let mut out = Vec::new();
    for k in 0..full {
        corr.push(&detection(k, "Org A", k as u64), &mut out);
    }
    assert_eq!(corr.live_keys(), full);
    let mut next = full;
    group.throughput(Throughput::Elements(10_000));
    group.bench_function(format!("new-keys-refused/{full}-keys"), |b| {
        b.iter(|| {
            let refused = corr.stats().refused_keys;
            for _ in 0..10_000 {
                next += 1;
                corr.push(&detection(next, "Org A", full as u64), &mut out);
            }
            assert_eq!(corr.stats().refused_keys, refused + 10_000);
            assert_eq!(corr.live_keys(), full);
        })
    });

    let mut corr = Correlator::new(CorrelatorConfig {
        correlation_rules: vec![rule],
        max_correlation_groups: full,
        ..CorrelatorConfig::default()
    });
    for a in 0..full {
        corr.push(&failed_logon(a, a as u64, 0), &mut out);
    }
    assert_eq!(corr.live_correlation_groups(), full);
    let mut next = full;
    group.bench_function(format!("new-groups-evicting/{full}-groups"), |b| {
        b.iter(|| {
            let (evicted, live) = (
                corr.correlation_rule_stats().evicted,
                corr.live_correlation_groups(),
            );
            for _ in 0..10_000 {
                next += 1;
                corr.push(&failed_logon(next, next as u64, 0), &mut out);
            }
            // Every new address is a group; those it replaced were evicted.
            let evicted = corr.correlation_rule_stats().evicted - evicted;
            assert_eq!(
                live + 10_000,
                corr.live_correlation_groups() + evicted as usize
            );
            assert!(corr.live_correlation_groups() <= full);
            assert!(corr.take_derived().is_empty(), "no window closed");
        })
    });
    group.finish();
    assert!(out.is_empty());
}

/// One key gathering many indicators (a `campaign:` key whose campaign's indicators are all
/// hit): the cost of each new indicator as the key grows, with no warning meanwhile (one
/// organisation), then the warning a second organisation causes, which carries them all.
fn bench_wide_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("correlate-wide");
    group.sample_size(10);
    for indicators in [1_000usize, 10_000] {
        // Indicators in no order (7919 is prime: a permutation), so that each new one lands
        // anywhere among those before it.
        let detections: Vec<Detection> = (0..indicators)
            .map(|i| {
                let mut d = detection((i * 7919) % indicators, "Org A", i as u64);
                d.correlation_keys = vec![String::from("campaign:bench")];
                d
            })
            .collect();
        let mut last = detections[0].clone();
        last.id = String::from("det-last");
        last.context.organisation = Some(String::from("Org B"));
        group.throughput(Throughput::Elements(indicators as u64));
        group.bench_function(format!("new-indicators/{indicators}-into-one-key"), |b| {
            b.iter(|| {
                let mut corr = Correlator::new(CorrelatorConfig::default());
                let mut out = Vec::new();
                for d in &detections {
                    corr.push(d, &mut out);
                }
                assert!(out.is_empty(), "one organisation never warns");
                corr.push(&last, &mut out);
                assert_eq!(corr.live_keys(), 1);
                assert_eq!(out.len(), 1, "the second organisation warns");
                assert_eq!(out[0].indicators.len(), indicators);
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench,
    bench_sigma_groups,
    bench_full,
    bench_wide_key
);
criterion_main!(benches);
