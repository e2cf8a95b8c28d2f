//! Indicator feeds through the binary: MISP and STIX files given with --iocs, provenance and
//! TLP in detections, CIDR ranges, and a broken feed update keeping the previous version.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn fixture(name: &str) -> std::path::PathBuf {
    repo()
        .join("crates/tocsin-rules/tests/fixtures/feeds")
        .join(name)
}

const SYSMON: &str = r#""Channel":"Microsoft-Windows-Sysmon/Operational""#;

#[test]
fn misp_and_stix_feeds_match_with_provenance_and_tlp() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.jsonl");
    std::fs::write(
        &input,
        format!(
            "{{{SYSMON},\"EventID\":22,\"QueryName\":\"www.c2.evil.example\"}}\n\
             {{{SYSMON},\"EventID\":3,\"DestinationIp\":\"198.51.100.200\"}}\n\
             {{{SYSMON},\"EventID\":3,\"DestinationIp\":\"192.0.2.99\"}}\n"
        ),
    )
    .unwrap();
    let out = run_ok(
        tocsin()
            .args(["match", "--rules"])
            .arg(repo().join("rules"))
            .arg("--iocs")
            .arg(fixture("misp-event.json"))
            .arg("--input")
            .arg(&input),
    );
    let dets: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The subdomain matches the domain indicator; the address is inside the /24 range; the
    // to_ids:false attribute (192.0.2.99) does not match.
    assert_eq!(dets.len(), 2, "{dets:#?}");
    let i = &dets[0]["indicators"][0];
    assert_eq!(i["value"], "c2.evil.example");
    assert_eq!(
        i["tlp"], "AMBER",
        "the event's tlp:amber tag travels with the hit"
    );
    assert_eq!(dets[0]["tlp"], "AMBER");
    assert_eq!(dets[1]["indicators"][0]["value"], "198.51.100.0/24");
}

#[test]
fn a_broken_feed_update_keeps_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.json");
    std::fs::copy(fixture("misp-event.json"), &feed).unwrap();
    let detections = dir.path().join("d.jsonl");
    let mut child = tocsin()
        .args(["run", "--watch", "--watch-interval", "0.2", "--iocs"])
        .arg(&feed)
        .args(["--input", "-", "--output", "-", "--detections"])
        .arg(&detections)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let event = format!("{{{SYSMON},\"EventID\":3,\"DestinationIp\":\"203.0.113.7\"}}");
    writeln!(stdin, "{event}").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // A truncated update: the feed fails as a whole.
    let text = std::fs::read_to_string(&feed).unwrap();
    std::fs::write(&feed, &text[..text.len() / 2]).unwrap();
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline
        && !lines.iter().any(|l: &String| l.contains("reloaded"))
    {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
    assert!(
        lines.iter().any(|l| l.contains("kept-previous")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reloaded") && l.contains("1 errors")),
        "{lines:#?}"
    );
    writeln!(stdin, "{event}").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(
        json_lines(&detections).len(),
        2,
        "the indicator still matches after the failed update"
    );
}
