//! The correlator under load: detections/s with 10^5 and 10^6 live correlation keys, memory
//! per key, and the time from the detection that completes a candidate to its warning.
//! Every measurement checks its answer (live keys, warnings produced).
//! Run: `cargo bench -p tocsin-benches --bench correlate`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use tocsin_benches::{record_figure, resident_bytes};
use tocsin_core::{
    Context, Detection, DetectionKind, IndicatorType, Level, MatchedIndicator, RuleRef, Timestamp,
    Tlp, DETECTION_SCHEMA,
};
use tocsin_correlate::{Correlator, CorrelatorConfig};

fn detection(key: usize, org: &str, n: u64) -> Detection {
    let value = format!("h{key:08x}.bad.test");
    Detection {
        schema: DETECTION_SCHEMA.into(),
        id: format!("det-{key}-{org}-{n}"),
        kind: DetectionKind::Indicator,
        rule: RuleRef {
            id: "ioc:bench".into(),
            title: "Indicator from feed bench".into(),
            level: Level::High,
        },
        event_time: Timestamp(1_772_438_400_000 + n as i64),
        context: Context {
            sector: Some(tocsin_core::Sector::Health),
            member_state: Some("DE".parse().unwrap()),
            organisation: Some(org.into()),
            sensor: None,
        },
        entities: vec![],
        indicators: vec![MatchedIndicator {
            kind: IndicatorType::Domain,
            value: value.clone(),
            feed: "bench".into(),
            tlp: Tlp::Green,
            field: "QueryName".into(),
        }],
        taxonomy: None,
        attack: vec![],
        tags: vec![],
        correlation_keys: vec![format!("indicator:domain:{value}")],
        tlp: Tlp::Green,
        source: None,
        fields: Default::default(),
        standalone: true,
    }
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
        let mut corr = Correlator::new(CorrelatorConfig::default());
        let mut out = Vec::new();
        for k in 0..keys {
            corr.push(&detection(k, "Org A", k as u64), &mut out);
        }
        assert_eq!(corr.live_keys(), keys);
        assert!(out.is_empty());
        let per_key = resident_bytes().saturating_sub(before) as f64 / keys as f64;
        eprintln!("{keys} live keys: about {per_key:.0} bytes of resident memory per key");
        record_figure(
            "correlate-resident-bytes",
            keys as u64,
            per_key * keys as f64,
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

criterion_group!(benches, bench);
criterion_main!(benches);
