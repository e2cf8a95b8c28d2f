//! Hot reload: rules and feeds are swapped between two events, so that no event is lost or
//! matched twice, and each event is matched by exactly one set (old or new).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

fn event(n: u32) -> String {
    let domain = if n.is_multiple_of(2) {
        "x.first.example"
    } else {
        "x.second.example"
    };
    format!(
        r#"{{"EventID":22,"Channel":"Microsoft-Windows-Sysmon/Operational","QueryName":"{domain}","n":{n},"organisation":"Org {n}"}}"#
    )
}

fn rules_dir(iocs: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
    std::fs::create_dir_all(dir.path().join("iocs")).unwrap();
    std::fs::copy(
        repo().join("rules/profiles/sysmon.yaml"),
        dir.path().join("profiles/sysmon.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("iocs/watch.txt"), iocs).unwrap();
    dir
}

/// Spawn `tocsin run` reading stdin, its warnings to `warnings`; stderr lines arrive on the
/// channel.
fn spawn(
    rules: &std::path::Path,
    warnings: &std::path::Path,
    detections: &std::path::Path,
    extra: &[&str],
) -> (Child, mpsc::Receiver<String>) {
    let mut child = tocsin()
        .args(["run", "--rules"])
        .arg(rules)
        .args(["--input", "-", "--output"])
        .arg(warnings)
        .arg("--detections")
        .arg(detections)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
    }
    panic!("no stderr line containing {needle:?} within 20 s; saw: {seen:#?}");
}

/// Feed 200 events around a reload and check the switch.
fn check_reload(args: &[&str], cause: &str, trigger: impl FnOnce(&Child, &std::path::Path)) {
    let rules = rules_dir("domain first.example\n");
    let work = tempfile::tempdir().unwrap();
    let detections = work.path().join("d.jsonl");
    let warnings = work.path().join("w.jsonl");
    let (mut child, rx) = spawn(rules.path(), &warnings, &detections, args);
    let mut stdin = child.stdin.take().unwrap();
    for n in 0..100 {
        writeln!(stdin, "{}", event(n)).unwrap();
    }
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(
        rules.path().join("iocs/watch.txt"),
        "domain second.example\n",
    )
    .unwrap();
    trigger(&child, rules.path());
    let line = wait_for(&rx, "reloaded");
    assert!(line.contains("1 indicators"), "{line}");
    assert!(line.contains(cause), "{line}");
    for n in 100..200 {
        writeln!(stdin, "{}", event(n)).unwrap();
    }
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
    let summary = wait_for(&rx, " events (");
    assert!(
        summary.contains("tocsin: 200 events"),
        "no event lost: {summary}"
    );

    let detected: Vec<u32> = json_lines(&detections)
        .iter()
        .map(|d| {
            let org = d["context"]["organisation"].as_str().unwrap();
            org.trim_start_matches("Org ").parse().unwrap()
        })
        .collect();
    let unique: std::collections::BTreeSet<u32> = detected.iter().copied().collect();
    assert_eq!(
        unique.len(),
        detected.len(),
        "an event was matched twice: {detected:?}"
    );
    // One switch point s: the old set (first.example) matched the even events before s, the
    // new one (second.example) the odd events from s on; nothing else.
    let consistent = |s: u32| -> bool {
        let expected: Vec<u32> = (0..200)
            .filter(|n| (n % 2 == 0 && *n < s) || (n % 2 == 1 && *n >= s))
            .collect();
        detected == expected
    };
    let switch = (1..=101).find(|&s| consistent(s));
    assert!(
        switch.is_some(),
        "no single switch point explains the detections: {detected:?}"
    );
}

#[test]
fn watch_reloads_between_events() {
    check_reload(
        &["--watch", "--watch-interval", "0.2"],
        "files changed",
        |_, _| {},
    );
}

#[test]
fn sighup_reloads_between_events() {
    check_reload(&[], "SIGHUP", |child, _| sighup(child));
}

/// The escalation policy comes with a reload: ten organisations under a policy that wants
/// fifty for a warning raise none; after a SIGHUP with a policy that wants two, the next
/// detection raises the warning, of eleven organisations, still marked as exercise traffic
/// (`--exercise`, which the file does not say).
#[test]
fn sighup_reloads_the_escalation_policy() {
    let rules = rules_dir("domain first.example\n");
    let path = rules.path().join("escalation.yaml");
    std::fs::write(&path, escalation_policy_wanting(50)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let warnings = work.path().join("w.jsonl");
    let detections = work.path().join("d.jsonl");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (mut child, rx) = spawn(
        rules.path(),
        &warnings,
        &detections,
        &["--exercise", "--listen", &listen],
    );
    // Even events hit the indicator, each from an organisation of its own.
    let stdin = first_twenty_read(&mut child, &rx, port);
    std::fs::write(&path, escalation_policy_wanting(2)).unwrap();
    reload_then_finish(&mut child, stdin, &rx);
    wait_for(&rx, "escalation policy replaced");
    let warnings = json_lines(&warnings);
    assert!(!warnings.is_empty(), "no warning after the reload");
    assert_eq!(
        warnings[0]["affected"]["organisation_count"], 11,
        "the first warning came at the first detection after the reload: {:#?}",
        warnings[0]
    );
    // `--exercise` holds for the reloaded policy too.
    assert_eq!(warnings[0]["exercise"], true);
}

/// The recipients come with a reload: after a SIGHUP that replaces recipient `before` by
/// `after`, `before`'s file holds the versions issued before the reload and `after`'s those
/// issued after it.
#[test]
fn sighup_reloads_the_recipients() {
    let rules = rules_dir("domain first.example\n");
    let recipient = |id: &str| {
        format!("recipients:\n  - {{id: {id}, audience: technical, tlp: AMBER, all: true}}\n")
    };
    let path = rules.path().join("recipients.yaml");
    std::fs::write(&path, recipient("before")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("recipients");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (mut child, rx) = spawn(
        rules.path(),
        &work.path().join("w.jsonl"),
        &work.path().join("d.jsonl"),
        &[
            "--recipients-out",
            out.to_str().unwrap(),
            "--listen",
            &listen,
        ],
    );
    let stdin = first_twenty_read(&mut child, &rx, port);
    std::fs::write(&path, recipient("after")).unwrap();
    reload_then_finish(&mut child, stdin, &rx);
    wait_for(&rx, "recipients replaced: 1 added, 0 kept, 1 removed");
    let organisations = |id: &str| -> Vec<u64> {
        json_lines(&out.join(format!("{id}.jsonl")))
            .iter()
            .map(|w| w["affected"]["organisation_count"].as_u64().unwrap())
            .collect()
    };
    let (before, after) = (organisations("before"), organisations("after"));
    assert!(
        !before.is_empty() && before.iter().all(|&n| n <= 10),
        "{before:?}"
    );
    assert!(
        !after.is_empty() && after.iter().all(|&n| n >= 11),
        "{after:?}"
    );
}

/// SIGHUP `child`, wait for its reload, give it events 20 to 23 (the reload is taken before
/// the first of them), end its input and wait for it to exit successfully.
fn reload_then_finish(
    child: &mut Child,
    mut stdin: std::process::ChildStdin,
    rx: &mpsc::Receiver<String>,
) {
    sighup(child);
    wait_for(rx, "reloaded (SIGHUP)");
    for n in 20..24 {
        writeln!(stdin, "{}", event(n)).unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// Once `child` (`tocsin run --listen 127.0.0.1:port`) has loaded its rules, give it events
/// 0 to 19 and wait until it has read them all; its stdin, for more.
fn first_twenty_read(
    child: &mut Child,
    rx: &mpsc::Receiver<String>,
    port: u16,
) -> std::process::ChildStdin {
    wait_for(rx, " scanned for");
    let mut stdin = child.stdin.take().unwrap();
    for n in 0..20 {
        writeln!(stdin, "{}", event(n)).unwrap();
    }
    stdin.flush().unwrap();
    wait_for_events(port, 20.0);
    stdin
}

/// Send `child` a SIGHUP (reload).
fn sighup(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Wait until `tocsin run --listen 127.0.0.1:port` has read `events` events from stdin.
fn wait_for_events(port: u16, events: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    wait_listening(port, deadline);
    let read = || {
        metric(
            &http_get(("127.0.0.1", port), "/metrics").1,
            "tocsin_events_total{source=\"-\"}",
        )
        .unwrap_or(0.0)
    };
    while read() < events {
        assert!(
            std::time::Instant::now() < deadline,
            "the events were not read"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tocsin run` over `input` with `extra` flags, every detection written to `detections`:
/// the detections file's bytes and the run's stderr.
fn run_detecting<S: AsRef<std::ffi::OsStr>>(
    input: &std::path::Path,
    detections: &std::path::Path,
    extra: &[S],
) -> (Vec<u8>, String) {
    let out = run_ok(
        tocsin()
            .args(["run", "--output", "-", "--input"])
            .arg(input)
            .arg("--detections")
            .arg(detections)
            .args(extra),
    );
    (
        std::fs::read(detections).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--calibrate`: once the first events are in, the rules are compiled again with each
/// rule's prefilter chosen by how often its literals occurred in them, and swapped in
/// before the next event. The detections are exactly those of a run without it.
#[test]
fn calibrated_prefilters_give_the_same_detections() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    generate_events(&input, 6000, 11);
    let detections =
        |name: &str, extra: &[&str]| run_detecting(&input, &dir.path().join(name), extra);
    let (plain, plain_log) = detections("plain.jsonl", &[]);
    let (calibrated, log) = detections("calibrated.jsonl", &["--calibrate", "1000"]);
    assert!(
        log.contains("prefilters calibrated on 1000 events"),
        "{log}"
    );
    assert!(!plain_log.contains("calibrated"), "{plain_log}");
    assert!(json_lines(&dir.path().join("plain.jsonl")).len() > 10);
    assert_eq!(plain, calibrated, "calibration changed the detections");
}

/// The repository's rules and beside them one whose two tests the guess and a sample of
/// generated events rank apart: two long prefixes (common in the events, guessed rare by
/// their length) against a short switch (guessed common, absent from the events). The
/// directory of that rule, and the `--rules` arguments for both.
fn rules_with_a_rare_switch() -> (tempfile::TempDir, [std::ffi::OsString; 4]) {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("rare-switch.yml"),
        "title: A system binary with a rare switch\nid: 5f0c2a8e-3b1d-4c7e-9a64-0d2f7b1e8c35\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  sel:\n    Image|startswith:\n      - 'C:\\Windows\\System32\\'\n      - 'C:\\Windows\\SysWOW64\\'\n    CommandLine|contains: ' -zq'\n  condition: sel\nlevel: low\n",
    )
    .unwrap();
    let rules = [
        "--rules".into(),
        repo().join("rules").into(),
        "--rules".into(),
        site.path().into(),
    ];
    (site, rules)
}

/// "… literals of which N scanned for" (start-up) or "(N literals scanned for)" (a
/// reload): how many literals the prefilters search for.
fn scanned_for(log: &str) -> u32 {
    let before = log.split(" scanned for").next().unwrap();
    let before = before.strip_suffix(" literals").unwrap_or(before);
    before
        .rsplit([' ', '('])
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no count of literals scanned for in {log:?}"))
}

/// `rules calibrate` saves the frequencies of a sample, and `--frequencies` compiles with
/// them from the first event: the prefilters are others than the guessed ones, the
/// detections the same. A table that cannot be right stops the run, naming the file and
/// the place.
#[test]
fn saved_frequencies_choose_the_prefilters_from_the_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    generate_events(&input, 4000, 13);
    let (_site, rules) = rules_with_a_rare_switch();
    // `rules calibrate` over the first 1,000 events into `table`; its stderr.
    let calibrate = |table: &std::path::Path| {
        let out = run_ok(
            tocsin()
                .args(["rules", "calibrate"])
                .args(&rules)
                .args(["--events", "1000", "--input"])
                .arg(&input)
                .arg("--output")
                .arg(table),
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let table = dir.path().join("frequencies.json");
    let log = calibrate(&table);
    assert!(log.contains("over 1000 events"), "{log}");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&table).unwrap()).unwrap();
    assert_eq!(saved["format"], "tocsin.literal-frequencies/v1");
    assert_eq!(saved["events"], 1000);
    let literals = saved["literals"].as_array().unwrap();
    assert!(literals.iter().any(|l| l["events"].as_u64() > Some(0)));
    assert!(literals.iter().any(|l| l["events"] == 0));

    let run = |name: &str, extra: &[&std::ffi::OsStr]| {
        let args: Vec<&std::ffi::OsStr> = rules
            .iter()
            .map(|a| a.as_os_str())
            .chain(extra.iter().copied())
            .collect();
        run_detecting(&input, &dir.path().join(name), &args)
    };
    let (plain, plain_log) = run("plain.jsonl", &[]);
    let (chosen, log) = run(
        "chosen.jsonl",
        &["--frequencies".as_ref(), table.as_os_str()],
    );
    assert!(
        log.contains("prefilters chosen by the literal frequencies in"),
        "{log}"
    );
    // The guess searches for both prefixes, the table for the switch alone.
    assert_eq!(
        scanned_for(&plain_log),
        scanned_for(&log) + 1,
        "{plain_log}\n{log}"
    );
    assert!(json_lines(&dir.path().join("plain.jsonl")).len() > 10);
    assert_eq!(
        plain, chosen,
        "the saved frequencies changed the detections"
    );

    // Written gzip-compressed when its name says so, and read so.
    let packed = dir.path().join("frequencies.json.gz");
    calibrate(&packed);
    let bytes = std::fs::read(&packed).unwrap();
    assert!(bytes.starts_with(&[0x1f, 0x8b]));
    assert!(bytes.len() * 3 < std::fs::metadata(&table).unwrap().len() as usize);
    let (unpacked, log) = run(
        "unpacked.jsonl",
        &["--frequencies".as_ref(), packed.as_os_str()],
    );
    assert_eq!(scanned_for(&plain_log), scanned_for(&log) + 1, "{log}");
    assert_eq!(plain, unpacked);

    let text = std::fs::read_to_string(&table).unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, text.replacen("\"cased\"", "\"case\"", 1)).unwrap();
    let out = tocsin()
        .args(["run", "--output", "-", "--input"])
        .arg(&input)
        .arg("--frequencies")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("bad.json") && e.contains("line "), "{e}");
}

/// A changed frequency table is read again by the next reload (with `--watch`, its change
/// triggers one) and the rules are compiled by it; a table that cannot be read is reported
/// and the one in use kept. No event is lost across the reloads.
#[test]
fn a_changed_frequency_table_is_read_again_by_the_next_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (_site, rules) = rules_with_a_rare_switch();
    // `rules calibrate` over the first `events` of `input`, into `output`.
    let calibrate = |input: &std::path::Path, events: &str, output: &std::path::Path| {
        run_ok(
            tocsin()
                .args(["rules", "calibrate"])
                .args(&rules)
                .args(["--events", events, "--input"])
                .arg(input)
                .arg("--output")
                .arg(output),
        );
    };
    // Table A: a sample where the switch is everywhere and the prefixes nowhere. Table B:
    // generated events, where it is the other way round.
    let switches = dir.path().join("switches.jsonl");
    let line = r#"{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Image":"D:\\tools\\x.exe","CommandLine":"x.exe -zq"}"#;
    std::fs::write(&switches, format!("{line}\n").repeat(50)).unwrap();
    let generated = dir.path().join("generated.jsonl");
    generate_events(&generated, 1000, 13);
    let (table_a, table_b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    calibrate(&switches, "50", &table_a);
    calibrate(&generated, "1000", &table_b);
    // What a start with table B searches for.
    let args = |table: &std::path::Path| {
        let mut args: Vec<std::ffi::OsString> = rules.to_vec();
        args.extend(["--frequencies".into(), table.into()]);
        args
    };
    let (_, log_b) = run_detecting(&generated, &dir.path().join("b.jsonl"), &args(&table_b));
    let (_, log_a) = run_detecting(&generated, &dir.path().join("a.jsonl"), &args(&table_a));
    assert_ne!(scanned_for(&log_a), scanned_for(&log_b), "{log_a}\n{log_b}");

    let table = dir.path().join("frequencies.json");
    std::fs::copy(&table_a, &table).unwrap();
    let iocs = rules_dir("domain first.example\n");
    let detections = dir.path().join("d.jsonl");
    let mut extra: Vec<&std::ffi::OsStr> = rules.iter().map(|a| a.as_os_str()).collect();
    extra.extend(["--frequencies".as_ref(), table.as_os_str()]);
    extra.extend(["--watch", "--watch-interval", "0.2"].map(std::ffi::OsStr::new));
    let extra: Vec<&str> = extra.iter().map(|a| a.to_str().unwrap()).collect();
    let warnings = dir.path().join("w.jsonl");
    let (mut child, rx) = spawn(iocs.path(), &warnings, &detections, &extra);
    let started = wait_for(&rx, " scanned for");
    assert_eq!(scanned_for(&started), scanned_for(&log_a), "{started}");
    let mut stdin = child.stdin.take().unwrap();
    let mut feed = |from: u32| {
        for n in from..from + 50 {
            writeln!(stdin, "{}", event(n)).unwrap();
        }
        stdin.flush().unwrap();
    };
    feed(0);

    // Replaced by table B (as a ConfigMap update replaces a file): read again, compiled by.
    std::fs::copy(&table_b, &table).unwrap();
    let read = wait_for(&rx, "literal frequencies read again");
    assert!(
        read.contains("frequencies.json") && read.contains("over 1000 events"),
        "{read}"
    );
    let reloaded = wait_for(&rx, "reloaded (files changed)");
    assert_eq!(scanned_for(&reloaded), scanned_for(&log_b), "{reloaded}");
    feed(50);

    // A broken table: said, and table B stays in use.
    std::fs::write(&table, "{\"format\": \"tocsin.literal-frequencies/v1\",").unwrap();
    let kept = wait_for(&rx, "keeping the literal frequencies in use");
    assert!(kept.contains("frequencies.json"), "{kept}");
    let reloaded = wait_for(&rx, "reloaded (files changed)");
    assert_eq!(scanned_for(&reloaded), scanned_for(&log_b), "{reloaded}");
    feed(100);
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let summary = wait_for(&rx, " events (");
    assert!(summary.contains("tocsin: 150 events"), "{summary}");
    assert_eq!(json_lines(&detections).len(), 75, "the even events of 150");
}

/// A reload brings the correlation rules with the detection rules: a correlation added
/// while `tocsin run --watch` runs counts the detections that come after it (not those
/// before, which it did not exist for), and a changed one starts afresh under its new
/// condition.
#[test]
fn watch_reloads_correlation_rules() {
    let burst = |gte: u32| {
        format!("title: Failed logons from one address\nid: burst\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 1h\n  condition: {{gte: {gte}}}\n  generate: true\nlevel: high\n")
    };
    let failure = |minute: u32| {
        format!("{{\"Channel\":\"Security\",\"EventID\":4625,\"IpAddress\":\"10.1.1.1\",\"@timestamp\":\"2026-03-02T08:{minute:02}:00Z\"}}")
    };
    let rules = rules_dir("");
    std::fs::write(rules.path().join("failed_logon.yml"), FAILED_LOGON).unwrap();
    let work = tempfile::tempdir().unwrap();
    let detections = work.path().join("d.jsonl");
    let warnings = work.path().join("w.jsonl");
    let (mut child, rx) = spawn(
        rules.path(),
        &warnings,
        &detections,
        &["--watch", "--watch-interval", "0.2"],
    );
    let mut stdin = child.stdin.take().unwrap();
    let mut feed = |minutes: std::ops::Range<u32>| {
        for m in minutes {
            writeln!(stdin, "{}", failure(m)).unwrap();
        }
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(500));
    };
    // Four failures before any correlation rule exists.
    feed(0..4);
    std::fs::write(rules.path().join("burst.yml"), burst(3)).unwrap();
    let line = wait_for(&rx, "reloaded");
    assert!(line.contains("1 correlation rules"), "{line}");
    // Four more: the new rule fires at the third of them, and the fourth starts a new count.
    feed(4..8);
    wait_for(&rx, "correlation rules replaced: 1 added");
    // The condition changes: the group's count of one is dropped and starts again under
    // gte 2, so the rule fires at the second failure after the reload, not the first.
    std::fs::write(rules.path().join("burst.yml"), burst(2)).unwrap();
    wait_for(&rx, "reloaded");
    feed(8..10);
    wait_for(&rx, "correlation rules replaced: 0 added, 1 changed");
    drop(stdin);
    assert!(child.wait().unwrap().success());

    let fired: Vec<(String, String)> = json_lines(&detections)
        .iter()
        .filter(|d| d["kind"] == "correlation")
        .map(|d| {
            (
                d["event_time"].as_str().unwrap().to_owned(),
                d["fields"]["event_count"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        fired,
        vec![
            ("2026-03-02T08:06:00.000Z".to_owned(), "3".to_owned()),
            ("2026-03-02T08:09:00.000Z".to_owned(), "2".to_owned()),
        ]
    );
    let failed = json_lines(&detections)
        .iter()
        .filter(|d| d["rule"]["id"] == "failed-logon")
        .count();
    assert_eq!(failed, 10, "every failure is published (generate: true from the reload on, and no correlation before it)");
}
