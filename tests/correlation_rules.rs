//! Sigma correlation rules end to end through `tocsin run`: base rules, a correlation over
//! them, and the detections published.

mod common;

use common::*;

const BRUTE_FORCE: &str = "title: Password guessing from one address\nid: brute-force\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 10m\n  condition: {gte: 5}\nlevel: high\n";
const SPRAY: &str = "title: Password spraying\nid: spray\ncorrelation:\n  type: value_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 10m\n  condition: {field: TargetUserName, gte: 3}\n  generate: true\nlevel: high\n";

/// A rules directory holding the sysmon profile, for the test's own rules.
fn rules_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
    std::fs::copy(
        repo().join("rules/profiles/sysmon.yaml"),
        dir.path().join("profiles/sysmon.yaml"),
    )
    .unwrap();
    dir
}

/// The detections `tocsin run` publishes with the rules of `dir` over `input`.
fn detections_of(dir: &std::path::Path, input: &std::path::Path) -> Vec<serde_json::Value> {
    let dets = dir.join("d.jsonl");
    run_ok(
        tocsin()
            .args(["run", "--quiet", "--rules"])
            .arg(dir)
            .arg("--input")
            .arg(input)
            .arg("--detections")
            .arg(&dets),
    );
    json_lines(&dets)
}

/// `tocsin rules check` over `dir`, which must fail; its output.
fn rules_check_fails(dir: &std::path::Path) -> String {
    let out = tocsin().args(["rules", "check"]).arg(dir).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    text
}

#[test]
fn correlations_fire_and_generate_decides_what_is_published() {
    let dir = rules_dir();
    std::fs::write(dir.path().join("failed_logon.yml"), FAILED_LOGON).unwrap();
    std::fs::write(
        dir.path().join("brute_force.yml"),
        format!("{BRUTE_FORCE}---\n{SPRAY}"),
    )
    .unwrap();
    let input = dir.path().join("e.jsonl");
    let mut lines = String::new();
    for i in 0..6 {
        // One address tries one user six times within six minutes.
        lines.push_str(&format!(
            "{{\"Channel\":\"Security\",\"EventID\":4625,\"IpAddress\":\"10.1.1.1\",\"TargetUserName\":\"alice\",\"@timestamp\":\"2026-03-02T08:0{i}:00Z\"}}\n"
        ));
    }
    for (i, user) in ["bob", "carol", "dave"].iter().enumerate() {
        // Another tries three users.
        lines.push_str(&format!(
            "{{\"Channel\":\"Security\",\"EventID\":4625,\"IpAddress\":\"10.2.2.2\",\"TargetUserName\":\"{user}\",\"@timestamp\":\"2026-03-02T09:0{i}:00Z\"}}\n"
        ));
    }
    std::fs::write(&input, lines).unwrap();
    let detections = detections_of(dir.path(), &input);
    let summary: Vec<(String, String)> = detections
        .iter()
        .map(|d| {
            (
                d["rule"]["id"].as_str().unwrap().to_owned(),
                d["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // spray has generate: true, so the failed logons are published (9); brute force fires
    // once for 10.1.1.1 (at the fifth attempt); spray fires once for 10.2.2.2.
    let count = |id: &str| summary.iter().filter(|(r, _)| r == id).count();
    assert_eq!(count("failed-logon"), 9, "{summary:?}");
    assert_eq!(count("brute-force"), 1, "{summary:?}");
    assert_eq!(count("spray"), 1, "{summary:?}");
    let bf = detections
        .iter()
        .find(|d| d["rule"]["id"] == "brute-force")
        .unwrap();
    assert_eq!(bf["kind"], "correlation");
    assert_eq!(bf["fields"]["IpAddress"], "10.1.1.1");
    assert_eq!(bf["fields"]["event_count"], "5");
    assert_eq!(bf["event_time"], "2026-03-02T08:04:00.000Z");
    let spray = detections
        .iter()
        .find(|d| d["rule"]["id"] == "spray")
        .unwrap();
    assert_eq!(spray["fields"]["IpAddress"], "10.2.2.2");

    // Without the generate: true correlation, the base detections only feed brute force.
    std::fs::write(dir.path().join("brute_force.yml"), BRUTE_FORCE).unwrap();
    let ids: Vec<String> = detections_of(dir.path(), &input)
        .iter()
        .map(|d| d["rule"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec!["brute-force"]);
}

/// Correlation rules that refer to each other in a circle are errors naming the rules, and
/// are set aside while the rest loads (each firing would otherwise feed the next forever).
#[test]
fn correlation_cycles_are_rejected_and_the_rest_loads() {
    let dir = rules_dir();
    std::fs::write(dir.path().join("failed_logon.yml"), FAILED_LOGON).unwrap();
    std::fs::write(dir.path().join("brute_force.yml"), BRUTE_FORCE).unwrap();
    let ping = "title: Ping\nid: ping\nname: ping\ncorrelation:\n  type: temporal\n  rules: [failed_logon, pong]\n  group-by: [IpAddress]\n  timespan: 10m\nlevel: high\n";
    let pong = "title: Pong\nid: pong\nname: pong\ncorrelation:\n  type: event_count\n  rules: [ping]\n  group-by: [IpAddress]\n  timespan: 10m\n  condition: {gte: 1}\nlevel: high\n";
    std::fs::write(dir.path().join("loop.yml"), format!("{ping}---\n{pong}")).unwrap();
    let text = rules_check_fails(dir.path());
    for id in ["ping", "pong"] {
        assert!(
            text.lines()
                .any(|l| l.contains("correlation-cycle") && l.contains(&format!("'{id}'"))),
            "{text}"
        );
    }
    assert!(text.contains("loop.yml"), "errors name the file: {text}");
    assert!(
        !text.contains("'brute-force' refers back"),
        "brute-force is not on the cycle: {text}"
    );
}

/// A correlation over another correlation groups by its own `group-by` (the
/// specification's failed-logins-then-success example), through its aliases for the
/// correlation it refers to; one that groups by a field the other does not carry is an
/// error naming that field, and is set aside while the rest loads.
#[test]
fn chained_correlations_group_by_their_own_fields() {
    const SUCCESS: &str = "title: Logon\nid: logon\nname: logon\nlogsource:\n  product: windows\n  service: security\ndetection:\n  selection:\n    EventID: 4624\n  condition: selection\nlevel: low\n";
    const MANY_FAILED: &str = "title: Many failed logons\nid: many-failed\nname: many_failed\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [TargetUserName, IpAddress]\n  timespan: 10m\n  condition: {gte: 3}\nlevel: medium\n";
    const THEN_SUCCESS: &str = "title: Failed logons then a logon\nid: then-success\ncorrelation:\n  type: temporal_ordered\n  rules: [many_failed, logon]\n  group-by: [user]\n  timespan: 1h\n  aliases:\n    user:\n      many_failed: TargetUserName\n      logon: TargetUserName\nlevel: high\n";
    const BY_WORKSTATION: &str = "title: By workstation\nid: by-workstation\ncorrelation:\n  type: temporal_ordered\n  rules: [many_failed, logon]\n  group-by: [WorkstationName]\n  timespan: 1h\nlevel: high\n";
    let dir = rules_dir();
    std::fs::write(dir.path().join("failed_logon.yml"), FAILED_LOGON).unwrap();
    std::fs::write(dir.path().join("logon.yml"), SUCCESS).unwrap();
    std::fs::write(
        dir.path().join("chain.yml"),
        format!("{MANY_FAILED}---\n{THEN_SUCCESS}---\n{BY_WORKSTATION}"),
    )
    .unwrap();
    let text = rules_check_fails(dir.path());
    assert!(
        text.lines().any(|l| l.contains("correlation-group-by")
            && l.contains("'WorkstationName'")
            && l.contains("chain.yml")),
        "{text}"
    );
    assert!(
        !text.contains("'then-success' groups by"),
        "the aliased chain loads: {text}"
    );

    std::fs::write(
        dir.path().join("chain.yml"),
        format!("{MANY_FAILED}---\n{THEN_SUCCESS}"),
    )
    .unwrap();
    let event = |id: u32, user: &str, ip: &str, minute: u32| {
        format!("{{\"Channel\":\"Security\",\"EventID\":{id},\"TargetUserName\":\"{user}\",\"IpAddress\":\"{ip}\",\"@timestamp\":\"2026-03-02T08:{minute:02}:00Z\"}}\n")
    };
    let mut lines = String::new();
    for minute in 0..3 {
        // Three failures each for alice and carol, from their own addresses.
        lines.push_str(&event(4625, "alice", "10.1.1.1", minute));
        lines.push_str(&event(4625, "carol", "10.3.3.3", minute));
    }
    // Then a logon by alice from elsewhere (the chain groups by user alone), and by dave.
    lines.push_str(&event(4624, "alice", "10.9.9.9", 5));
    lines.push_str(&event(4624, "dave", "10.3.3.3", 6));
    let input = dir.path().join("e.jsonl");
    std::fs::write(&input, lines).unwrap();
    let fired: Vec<(String, String)> = detections_of(dir.path(), &input)
        .iter()
        .map(|d| {
            (
                d["rule"]["id"].as_str().unwrap().to_owned(),
                d["fields"]["user"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(fired, [("then-success".to_owned(), "alice".to_owned())]);
}
