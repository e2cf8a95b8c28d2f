//! `tocsin run --listen`: /metrics moves as events flow; /healthz and /readyz answer.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn metrics_move_as_events_flow() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("e.jsonl");
    generate_events(&events, 3000, 4);
    let text = std::fs::read_to_string(&events).unwrap();
    let (first, rest) = text.split_at(text.len() / 2);
    let cut = first.rfind('\n').unwrap() + 1;
    let (first, rest) = (&text[..cut], format!("{}{rest}", &first[cut..]));

    let mut child = tocsin()
        .args([
            "run",
            "--quiet",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--rules",
        ])
        .arg(repo().join("rules"))
        .args(["--input", "-", "--output", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Wait for the listener.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    wait_listening(port, deadline);
    assert_eq!(http_get(("127.0.0.1", port), "/healthz").0, 200);
    // Not ready (503) while the rules load, then ready.
    loop {
        let status = http_get(("127.0.0.1", port), "/readyz").0;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http_get(("127.0.0.1", port), "/nope").0, 404);

    stdin.write_all(first.as_bytes()).unwrap();
    stdin.write_all(b"{broken\n").unwrap();
    stdin.flush().unwrap();
    let read_events = |body: &str| metric(body, "tocsin_events_total{source=\"-\"}").unwrap_or(0.0);
    let mut before = String::new();
    for _ in 0..100 {
        before = http_get(("127.0.0.1", port), "/metrics").1;
        if read_events(&before) >= (first.lines().count() + 1) as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        read_events(&before),
        (first.lines().count() + 1) as f64,
        "{before}"
    );
    assert_eq!(
        metric(
            &before,
            "tocsin_dead_letters_total{reason=\"invalid-json\"}"
        )
        .unwrap_or(0.0),
        1.0
    );
    assert_eq!(metric(&before, "tocsin_rules_loaded").unwrap_or(0.0), 6.0);
    assert_eq!(
        metric(&before, "tocsin_rule_set_version").unwrap_or(0.0),
        1.0
    );

    stdin.write_all(rest.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let after = loop {
        let body = http_get(("127.0.0.1", port), "/metrics").1;
        if read_events(&body) >= (text.lines().count() + 1) as f64 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rest of the input was never counted:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        metric(&after, "tocsin_indicator_hits_total{feed=\"sample-cert\"}").unwrap_or(0.0) > 0.0,
        "{after}"
    );
    assert!(
        metric(
            &after,
            "tocsin_warnings_total{audience=\"technical\",status=\"new\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{after}"
    );
    assert!(after.contains("tocsin_event_processing_seconds_bucket"));
    // The matcher's work: the prefilter handed rules to evaluation and scanned values;
    // a guard turns away candidates only.
    let candidates = metric(&after, "tocsin_match_candidate_rules_total").unwrap_or(0.0);
    assert!(candidates > 0.0, "{after}");
    assert!(
        metric(&after, "tocsin_match_guard_rejections_total").unwrap_or(0.0) <= candidates,
        "{after}"
    );
    assert!(
        metric(&after, "tocsin_match_scanned_bytes_total").unwrap_or(0.0) > 0.0,
        "{after}"
    );
    assert!(
        metric(&after, "tocsin_match_literal_hits_total").unwrap_or(0.0) > 0.0,
        "{after}"
    );
    assert!(
        after.contains("tocsin_match_scan_memo_replays_total "),
        "{after}"
    );
    // Label values come from the rule set, never from events.
    let rule_ids: Vec<String> = std::fs::read_dir(repo().join("rules/sigma"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("id: ").map(str::to_owned))
        })
        .collect();
    let detection_lines: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("tocsin_detections_total{"))
        .collect();
    assert!(!detection_lines.is_empty(), "{after}");
    for line in detection_lines {
        let rule = line.split('"').nth(1).unwrap();
        assert!(
            rule.starts_with("ioc:") || rule_ids.iter().any(|id| id == rule),
            "{line} is not a rule of rules/sigma"
        );
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
