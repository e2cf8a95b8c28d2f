//! Helpers shared by the integration tests: run the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A Sigma rule for failed Windows logons (`name: failed_logon`), which the correlation
/// tests' rules refer to.
pub const FAILED_LOGON: &str = "title: Failed logon\nid: failed-logon\nname: failed_logon\nlogsource:\n  product: windows\n  service: security\ndetection:\n  selection:\n    EventID: 4625\n  condition: selection\nlevel: low\n";

/// `rules/escalation.yaml` with its warning threshold set to `organisations`.
pub fn escalation_policy_wanting(organisations: u32) -> String {
    let policy = std::fs::read_to_string(repo().join("rules/escalation.yaml")).unwrap();
    let threshold = "warning:\n  min_organisations: 2\n";
    assert!(
        policy.contains(threshold),
        "rules/escalation.yaml changed: {policy}"
    );
    policy.replace(
        threshold,
        &format!("warning:\n  min_organisations: {organisations}\n"),
    )
}

/// Copy the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A free loopback port, for `--listen`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something listens on loopback `port`, failing at `deadline`.
pub fn wait_listening(port: u16, deadline: std::time::Instant) {
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "no listener");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `GET path` on a worker's metrics listener: (status code, body); (0, "not listening")
/// when nothing answers.
pub fn http_get(addr: impl std::net::ToSocketAddrs, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return (0, "not listening".into());
    };
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (code, body)
}

/// The sum of the series of a Prometheus exposition whose line starts with `prefix` (a
/// name, or a name and labels); `None` when there is none.
pub fn metric(exposition: &str, prefix: &str) -> Option<f64> {
    let values: Vec<f64> = exposition
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

pub fn tocsin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("run tocsin");
    assert!(
        out.status.success(),
        "tocsin failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `tocsin gen --events EVENTS --seed SEED --output PATH`: a reproducible workload.
pub fn generate_events(path: &Path, events: u64, seed: u64) {
    run_ok(
        tocsin()
            .args([
                "gen",
                "--events",
                &events.to_string(),
                "--seed",
                &seed.to_string(),
            ])
            .arg("--output")
            .arg(path),
    );
}

pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("read output");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// `tocsin query --format json` over `archive`: its rows.
pub fn archive_query(archive: &Path, sql: &str) -> Vec<serde_json::Value> {
    let out = run_ok(
        tocsin()
            .args(["query", "--format", "json", "--archive"])
            .arg(archive)
            .arg(sql),
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

/// The text values of `column` in `rows` (JSON objects), as a set.
pub fn texts(rows: &[serde_json::Value], column: &str) -> std::collections::BTreeSet<String> {
    rows.iter()
        .map(|r| r[column].as_str().expect("a text column").to_owned())
        .collect()
}

/// `key` → `value` (a whole number) of each row.
pub fn numbers_by(
    rows: &[serde_json::Value],
    key: &str,
    value: &str,
) -> std::collections::BTreeMap<String, u64> {
    rows.iter()
        .map(|r| {
            (
                r[key].as_str().expect("a text key").to_owned(),
                r[value].as_u64().expect("a whole number"),
            )
        })
        .collect()
}

/// JSON lines printed on stdout.
pub fn stdout_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// The latest version of each warning, by id.
pub fn latest_versions(
    warnings: &[serde_json::Value],
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut latest = std::collections::BTreeMap::new();
    for w in warnings {
        let id = w["warning_id"].as_str().unwrap().to_owned();
        let v = w["version"].as_u64().unwrap();
        let keep = latest
            .get(&id)
            .map(|old: &serde_json::Value| old["version"].as_u64().unwrap() < v)
            .unwrap_or(true);
        if keep {
            latest.insert(id, w.clone());
        }
    }
    latest
}

pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}
