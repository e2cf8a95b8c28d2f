//! Through a real broker (#7): how many events per second one match worker gets through, and
//! how long an event takes to become a detection and a warning at a steady rate.
//!
//! Not criterion: the unit of work is a whole broker round trip, measured once per run over
//! a large workload. `benches/kafka.sh` starts a Tansu broker (SQLite storage, loopback) and
//! runs this with TOCSIN_KAFKA_BOOTSTRAP set; the figures go to benches/RESULTS.md.
//!
//! 1. Throughput: `TOCSIN_BENCH_EVENTS` generated events (default 200,000) are published to
//!    one partition first, then one `tocsin worker match` starts. Every detection carries the
//!    offset of its event, so the rate is (last offset − first offset) / (arrival of the
//!    last − arrival of the first): group join and rule loading are not counted. The run
//!    checks that the ids equal those `tocsin match` finds offline.
//! 2. Latency: `tocsin worker all` runs, and the campaign workload (20,048 events) is
//!    published at `TOCSIN_BENCH_RATE` events/s (default 2,000). Event → detection: arrival
//!    of the detection minus the moment its event was handed to the producer. Event →
//!    warning: the same for the event whose detection issued the warning version (the
//!    detection whose event time is the version's `issued_at`; a version dated a second after
//!    the one before names no detection and is counted apart).
//! 3. The correlate worker with many live keys, at each `correlate.state_interval_ms` of
//!    `TOCSIN_BENCH_STATE_INTERVALS`: detections/s and the bytes of state it writes
//!    ([`correlate_state`]).
//!
//! `TOCSIN_BENCH_PARTS` (default `throughput,latency,correlate`) picks the parts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tocsin_benches::{gen_command, repo, run_ok, tocsin};
use tocsin_core::Timestamp;
use tocsin_kafka::sink::Sink;
use tocsin_kafka::source::Source;
use tocsin_kafka::KafkaSettings;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A configuration naming this run's own topics.
fn config(dir: &Path, bootstrap: &str, id: &str) -> PathBuf {
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap = \"{bootstrap}\"\n[topics]\nevents = [\"bench.{id}.events\"]\ndetections = \"bench.{id}.detections\"\ncorrelate_state = \"bench.{id}.state\"\ndead_letter = \"bench.{id}.dead-letter\"\nwarnings_prefix = \"bench.{id}.warnings\"\n[rules]\npaths = [\"{}\"]\n[match]\ngroup = \"bench-{id}-match\"\n[correlate]\ngroup = \"bench-{id}-correlate\"\n",
            repo().join("rules").display()
        ),
    )
    .unwrap();
    run_ok(
        tocsin()
            .env_remove("TOCSIN_KAFKA_BOOTSTRAP")
            .args(["topics", "create", "--partitions", "3", "--config"])
            .arg(&path)
            .arg("--recipients")
            .arg(repo().join("rules/recipients.yaml")),
    );
    path
}

fn spawn(config: &Path, worker: &str) -> Child {
    spawn_with(config, worker, &[])
}

fn spawn_with(config: &Path, worker: &str, args: &[&str]) -> Child {
    tocsin()
        .env_remove("TOCSIN_KAFKA_BOOTSTRAP")
        .args(["worker", worker, "-q", "--config"])
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start worker")
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "worker exit {status}");
}

fn gen(dir: &Path, events: u64, seed: u64) -> (PathBuf, Vec<String>) {
    let path = dir.join(format!("events-{events}-{seed}.jsonl"));
    run_ok(gen_command(events, seed).arg("--output").arg(&path));
    let lines = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (path, lines)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50={:.0} ms p99={:.0} ms max={:.0} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

fn throughput(bootstrap: &str, dir: &Path) {
    let n = env_or("TOCSIN_BENCH_EVENTS", 200_000);
    let id = format!("tp{}", std::process::id());
    let cfg = config(dir, bootstrap, &id);
    let (path, lines) = gen(dir, n, 3);
    let expected: BTreeSet<String> = String::from_utf8(
        run_ok(
            tocsin()
                .args(["match", "--rules"])
                .arg(repo().join("rules"))
                .arg("--input")
                .arg(&path),
        )
        .stdout,
    )
    .unwrap()
    .lines()
    .map(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    })
    .collect();
    let settings = KafkaSettings::new(bootstrap);
    let mut sink = Sink::new(&settings).unwrap();
    let topic = format!("bench.{id}.events");
    let published = Instant::now();
    for l in &lines {
        sink.send_to(&topic, Some(0), None, l.as_bytes(), &[])
            .unwrap();
    }
    sink.flush(Duration::from_secs(300)).unwrap();
    println!(
        "published {} events to one partition in {:.1} s",
        lines.len(),
        published.elapsed().as_secs_f64()
    );
    let reader = Source::subscribe(
        &settings,
        &format!("bench-{id}-reader"),
        &[format!("bench.{id}.detections")],
    )
    .unwrap();
    let worker = spawn(&cfg, "match");
    let started = Instant::now();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // (arrival, event offset) of the detections of the lowest and the highest offset.
    let mut first: Option<(Instant, u64)> = None;
    let mut last: Option<(Instant, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen.len() < expected.len() && Instant::now() < deadline {
        let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) else {
            continue;
        };
        let d: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        let now = Instant::now();
        let pos = d["source"]["position"].as_u64().unwrap();
        seen.insert(d["id"].as_str().unwrap().to_owned());
        if first.is_none_or(|(_, p)| pos < p) {
            first = Some((now, pos));
        }
        if last.is_none_or(|(_, p)| pos > p) {
            last = Some((now, pos));
        }
    }
    stop(worker);
    assert_eq!(
        seen, expected,
        "the worker's detections differ from offline matching"
    );
    let ((t0, p0), (t1, p1)) = (first.unwrap(), last.unwrap());
    let secs = t1.duration_since(t0).as_secs_f64();
    println!(
        "match worker throughput: {} events in {:.2} s = {:.0} events/s ({} detections, all equal to offline; {:.1} s from start to the last detection)",
        p1 - p0,
        secs,
        (p1 - p0) as f64 / secs,
        seen.len(),
        t1.duration_since(started).as_secs_f64()
    );
}

fn latency(bootstrap: &str, dir: &Path) {
    let rate = env_or("TOCSIN_BENCH_RATE", 2000);
    let id = format!("lat{}", std::process::id());
    let cfg = config(dir, bootstrap, &id);
    let (path, lines) = gen(dir, 20_000, 7);
    let expected_versions = String::from_utf8(
        run_ok(
            tocsin()
                .args(["run", "-q", "--rules"])
                .arg(repo().join("rules"))
                .arg("--input")
                .arg(&path),
        )
        .stdout,
    )
    .unwrap()
    .lines()
    .count();
    let settings = KafkaSettings::new(bootstrap);
    // The observer must not add its own fetch wait to what it measures.
    let mut observer = settings.clone();
    observer
        .client
        .insert("fetch.wait.max.ms".into(), "10".into());
    let reader = Source::subscribe(
        &observer,
        &format!("bench-{id}-reader"),
        &[
            format!("bench.{id}.detections"),
            format!("bench.{id}.warnings.technical"),
        ],
    )
    .unwrap();
    let worker = spawn(&cfg, "all");
    // Let the worker join its groups before the clock starts.
    let warm = Instant::now() + Duration::from_secs(8);
    while Instant::now() < warm {
        let _ = reader.poll(Duration::from_millis(100));
    }
    let mut sink = Sink::new(&settings).unwrap();
    let topic = format!("bench.{id}.events");
    let mut sent_at: Vec<Instant> = Vec::with_capacity(lines.len());
    let mut detection_at: HashMap<String, (Instant, u64, String)> = HashMap::new();
    let mut warning_at: BTreeMap<(String, u64), (Instant, String)> = BTreeMap::new();
    let read = |reader: &Source,
                detection_at: &mut HashMap<String, (Instant, u64, String)>,
                warning_at: &mut BTreeMap<(String, u64), (Instant, String)>| {
        while let Some(Ok(m)) = reader.poll(Duration::ZERO) {
            let v: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
            let now = Instant::now();
            if m.topic().ends_with(".detections") {
                detection_at
                    .entry(v["id"].as_str().unwrap().to_owned())
                    .or_insert((
                        now,
                        v["source"]["position"].as_u64().unwrap(),
                        v["event_time"].as_str().unwrap().to_owned(),
                    ));
            } else {
                warning_at
                    .entry((
                        v["warning_id"].as_str().unwrap().to_owned(),
                        v["version"].as_u64().unwrap(),
                    ))
                    .or_insert((now, v["issued_at"].as_str().unwrap().to_owned()));
            }
        }
    };
    let start = Instant::now();
    for (i, l) in lines.iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        while Instant::now() < due {
            read(&reader, &mut detection_at, &mut warning_at);
            std::thread::sleep(Duration::from_micros(200));
        }
        sent_at.push(Instant::now());
        sink.send_to(&topic, Some(0), None, l.as_bytes(), &[])
            .unwrap();
    }
    sink.flush(Duration::from_secs(60)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while warning_at.len() < expected_versions && Instant::now() < deadline {
        read(&reader, &mut detection_at, &mut warning_at);
        std::thread::sleep(Duration::from_millis(1));
    }
    stop(worker);
    assert_eq!(
        warning_at.len(),
        expected_versions,
        "warning versions missing"
    );
    let ms =
        |later: Instant, earlier: Instant| later.duration_since(earlier).as_secs_f64() * 1000.0;
    let det: Vec<f64> = detection_at
        .values()
        .map(|(t, pos, _)| ms(*t, sent_at[*pos as usize]))
        .collect();
    let mut by_time: HashMap<&str, u64> = HashMap::new();
    for (_, pos, time) in detection_at.values() {
        let e = by_time.entry(time.as_str()).or_insert(*pos);
        *e = (*e).min(*pos);
    }
    let warn: Vec<f64> = warning_at
        .values()
        .filter_map(|(t, issued)| {
            by_time
                .get(issued.as_str())
                .map(|pos| ms(*t, sent_at[*pos as usize]))
        })
        .collect();
    println!(
        "steady rate {rate} events/s for {:.1} s ({} events), worker all with default batches (match 200 ms, correlate 500 ms):",
        lines.len() as f64 / rate as f64,
        lines.len()
    );
    let unmatched = warning_at.len() - warn.len();
    summary("  event -> detection", det);
    summary("  event -> warning", warn);
    if unmatched > 0 {
        // A version caused by a detection that arrived out of order is dated a second after
        // the one before, which no detection's event time names.
        println!("  ({unmatched} versions dated after the version before, not timed)");
    }
}

/// One indicator detection of its own correlation key (`indicator:domain:…`), from one
/// organisation: it makes a live key and no warning.
fn key_detection(key: u64) -> (String, Vec<u8>) {
    let d = tocsin_core::samples::indicator_detection(
        format!("det-{key:032x}"),
        &format!("h{key:08x}.bad.test"),
        "bench",
        "Org A",
        Timestamp(1_772_438_400_000 + key as i64),
    );
    tocsin_core::samples::keyed_message(&d)
}

/// The value of an unlabelled series on the worker serving metrics on `listen` (`None`
/// while the worker does not answer or has no such series).
fn metric(listen: &str, series: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(listen).ok()?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    conn.read_to_string(&mut body).ok()?;
    body.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Part 3, the correlate worker with many live keys: `TOCSIN_BENCH_KEYS` detections (default
/// 30,000), each of a key of its own, published to the three partitions of the detections
/// topic by key, then one `tocsin worker correlate` (batches of 1,000) for each
/// `correlate.state_interval_ms` of `TOCSIN_BENCH_STATE_INTERVALS` (default `0,5000`). A state
/// is written whole, so at 0 (every batch) the bytes sent to the changelog grow with the
/// square of the keys. The rate is over the keys merged from the first the worker's
/// `tocsin_correlation_keys` shows to the last (group join not counted); the run checks that
/// every key is live.
fn correlate_state(bootstrap: &str, dir: &Path) {
    let keys = env_or("TOCSIN_BENCH_KEYS", 30_000);
    let intervals: Vec<u64> = std::env::var("TOCSIN_BENCH_STATE_INTERVALS")
        .unwrap_or_else(|_| "0,5000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    for interval in intervals {
        let id = format!("cs{interval}x{}", std::process::id());
        let cfg = config(dir, bootstrap, &id);
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "[correlate]\n",
            &format!("[correlate]\nbatch = 1000\nstate_interval_ms = {interval}\n"),
        );
        std::fs::write(&cfg, text).unwrap();
        let mut sink = Sink::new(&KafkaSettings::new(bootstrap)).unwrap();
        let topic = format!("bench.{id}.detections");
        for k in 0..keys {
            let (key, payload) = key_detection(k);
            sink.send(&topic, Some(key.as_bytes()), &payload, &[])
                .unwrap();
        }
        sink.flush(Duration::from_secs(300)).unwrap();
        let listen = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().to_string()
        };
        let worker = spawn_with(&cfg, "correlate", &["--listen", &listen]);
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut first: Option<(Instant, f64)> = None;
        let done = loop {
            let live = metric(&listen, "tocsin_correlation_keys").unwrap_or(0.0);
            let now = Instant::now();
            if live > 0.0 && first.is_none() {
                first = Some((now, live));
            }
            if live >= keys as f64 {
                break now;
            }
            assert!(
                now < deadline,
                "state interval {interval} ms: {live} of {keys} keys live after 15 minutes"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let bytes = metric(&listen, "tocsin_state_bytes_total").unwrap_or(0.0);
        let records = metric(&listen, "tocsin_state_records_total").unwrap_or(0.0);
        stop(worker);
        let (t0, at0) = first.unwrap();
        let secs = done.duration_since(t0).as_secs_f64();
        println!(
            "correlate worker, {keys} live keys in 3 partitions, state_interval_ms = {interval}: {:.0} detections/s ({:.0} keys in {:.2} s after the first batch), {records} states written, {:.1} MB",
            (keys as f64 - at0) / secs,
            keys as f64 - at0,
            secs,
            bytes / 1e6
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let Ok(bootstrap) = std::env::var("TOCSIN_KAFKA_BOOTSTRAP") else {
        eprintln!("SKIPPED: TOCSIN_KAFKA_BOOTSTRAP is not set; run benches/kafka.sh");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // TOCSIN_BENCH_PARTS=correlate, say, for one part.
    let parts = std::env::var("TOCSIN_BENCH_PARTS")
        .unwrap_or_else(|_| "throughput,latency,correlate".into());
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    if parts.contains(&"throughput") {
        throughput(&bootstrap, dir.path());
    }
    if parts.contains(&"latency") {
        latency(&bootstrap, dir.path());
    }
    if parts.contains(&"correlate") {
        correlate_state(&bootstrap, dir.path());
    }
}
