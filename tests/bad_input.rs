//! Bad input never stops a run and is never silently skipped.

mod common;

use std::io::Write;

use common::*;

const GOOD: &str = r#"{"@timestamp":"2026-03-02T08:00:00.000Z","EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Image":"C:\\Windows\\System32\\whoami.exe","User":"ACME\\alice","organisation":"Acme","sector":"health","member_state":"DE"}"#;

fn run_on(
    input: &std::path::Path,
    extra: &[&str],
) -> (
    std::process::Output,
    Vec<serde_json::Value>,
    Vec<serde_json::Value>,
) {
    let dir = input.parent().unwrap();
    let dead = dir.join("dead.jsonl");
    let dets = dir.join("dets.jsonl");
    let out = run_ok(
        tocsin()
            .args(["run", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(input)
            .arg("--dead-letter")
            .arg(&dead)
            .arg("--detections")
            .arg(&dets)
            .args(["--output", "-"])
            .args(extra),
    );
    (out, json_lines(&dead), json_lines(&dets))
}

#[test]
fn malformed_lines_go_to_the_dead_letter_file_with_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    writeln!(f, "{GOOD}").unwrap(); // 1
    writeln!(f, "{}", &GOOD[..GOOD.len() / 2]).unwrap(); // 2: truncated
    f.write_all(b"{\"a\": \"\xff\xfe\"}\n").unwrap(); // 3: invalid UTF-8
    writeln!(f, "[1, 2, 3]").unwrap(); // 4: not an object
    writeln!(f).unwrap(); // 5: blank, a separator
    let big = format!("{{\"CommandLine\":\"{}\"}}", "A".repeat(10 * 1024 * 1024));
    writeln!(f, "{big}").unwrap(); // 6: 10 MB
    writeln!(f, "{GOOD}").unwrap(); // 7: still processed after all that
    write!(f, "{{\"unterminated\": tr").unwrap(); // 8: truncated at end of file, no newline
    drop(f);

    let (out, dead, dets) = run_on(&input, &[]);
    let lines: Vec<u64> = dead.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![2, 3, 4, 6, 8]);
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(reasons[0].contains("truncated"), "{reasons:?}");
    assert!(reasons[1].contains("UTF-8"), "{reasons:?}");
    assert!(reasons[2].contains("not a JSON object"), "{reasons:?}");
    assert!(reasons[3].contains("exceeds the limit"), "{reasons:?}");
    assert!(reasons[4].contains("truncated"), "{reasons:?}");
    assert!(dead
        .iter()
        .all(|d| d["source"].as_str().unwrap().ends_with("mixed.jsonl")));
    // Nothing is lost: the invalid UTF-8 payload is kept as base64, the oversized one
    // keeps its first 64 KiB and its true size.
    assert_eq!(dead[1]["payload_base64"], "eyJhIjogIv/+In0=");
    assert_eq!(dead[3]["bytes"], big.len() as u64);
    assert_eq!(dead[3]["truncated"], true);
    assert_eq!(dead[3]["payload"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(dead[0]["payload"], &GOOD[..GOOD.len() / 2]);
    // Both good events matched, before and after the bad ones.
    assert_eq!(dets.len(), 2);
    assert_eq!(dets[1]["source"]["position"], 7);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("5 dead letters"), "{stderr}");
}

/// Lines are read where the reader's buffer holds them when they fit, and copied when they
/// run across its end: over a file several buffers long, with CRLF and blank lines mixed
/// in, every event is read whole and numbered by its line.
#[test]
fn lines_across_the_read_buffer_are_read_whole_and_numbered() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let mut expected = Vec::new();
    for line in 1..=12_000u64 {
        match line % 3 {
            0 => writeln!(f).unwrap(),
            1 => write!(f, "{GOOD}\r\n").unwrap(),
            _ => writeln!(f, "{GOOD}").unwrap(),
        }
        if line % 3 != 0 {
            expected.push(line);
        }
    }
    drop(f);
    assert!(std::fs::metadata(&input).unwrap().len() > 4 * 256 * 1024);

    let (_, dead, dets) = run_on(&input, &[]);
    assert!(dead.is_empty(), "{:?}", dead.first());
    let positions: Vec<u64> = dets
        .iter()
        .map(|d| d["source"]["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, expected);
}

#[test]
fn without_a_dead_letter_file_reasons_are_summarised_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(&input, "{\"a\":\n{}\nnot json\n").unwrap();
    let out = run_ok(
        tocsin()
            .args(["run", "--quiet", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(&input),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 dead letters"), "{stderr}");
    assert!(
        stderr.contains("bad.jsonl:1: invalid JSON: truncated JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.jsonl:3: invalid JSON: malformed JSON at byte 0"),
        "{stderr}"
    );
}

#[test]
fn empty_file_gzip_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let (out, dead, dets) = run_on(&empty, &[]);
    assert!(dead.is_empty() && dets.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 events"));

    let gz = dir.path().join("events.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    writeln!(enc, "{GOOD}\n{GOOD}").unwrap();
    enc.finish().unwrap();
    let (_, dead, dets) = run_on(&gz, &[]);
    assert!(dead.is_empty());
    // The same event twice: two detections with one deterministic id, so consumers
    // (and the correlator) can de-duplicate.
    assert_eq!(dets.len(), 2);
    assert_eq!(dets[0]["id"], dets[1]["id"]);
}

#[test]
fn stdin_is_the_default_input() {
    use std::process::Stdio;
    let mut child = tocsin()
        .args(["run", "--quiet", "--rules"])
        .arg(repo().join("rules"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{GOOD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "one organisation: no warning");
}
