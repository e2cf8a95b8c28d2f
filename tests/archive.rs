//! The Parquet archive end to end: `tocsin run --archive` over the campaign workload, then
//! `tocsin query` answers must equal what the input and the run say.

mod common;

use std::collections::BTreeMap;

use common::{json_lines, repo, run_ok, tocsin};

fn query(archive: &std::path::Path, sql: &str) -> Vec<serde_json::Value> {
    let out = run_ok(
        tocsin()
            .args(["query", "--format", "json", "--archive"])
            .arg(archive)
            .arg(sql),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn run_archives_everything_and_sql_answers_match_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    run_ok(
        tocsin()
            .args(["gen", "--events", "20000", "--seed", "7", "--output"])
            .arg(&events),
    );
    let archive = dir.path().join("archive");
    let detections = dir.path().join("detections.jsonl");
    let out = run_ok(
        tocsin()
            .args(["run", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(&events)
            .arg("--detections")
            .arg(&detections)
            .arg("--archive")
            .arg(&archive),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("archived 20048 events"), "{stderr}");

    // What the input and the run say.
    let text = std::fs::read_to_string(&events).unwrap();
    let mut by_sector: BTreeMap<String, u64> = BTreeMap::new();
    for l in text.lines() {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        *by_sector
            .entry(e["sector"].as_str().unwrap_or("unknown").to_owned())
            .or_default() += 1;
    }
    let detection_ids: std::collections::BTreeSet<String> = json_lines(&detections)
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let mut final_versions: BTreeMap<String, u64> = BTreeMap::new();
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        let w: serde_json::Value = serde_json::from_str(l).unwrap();
        final_versions.insert(
            w["warning_id"].as_str().unwrap().to_owned(),
            w["version"].as_u64().unwrap(),
        );
    }
    assert!(!final_versions.is_empty());

    // Files: Hive partitions, zstd Parquet.
    assert!(archive.join("archive.json").is_file());
    assert!(archive
        .join("events/date=2026-03-02/sector=health")
        .is_dir());

    let rows = query(
        &archive,
        "SELECT sector, count(*) AS n FROM events GROUP BY sector ORDER BY sector",
    );
    let got: BTreeMap<String, u64> = rows
        .iter()
        .map(|r| {
            (
                r["sector"].as_str().unwrap().to_owned(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, by_sector);

    // Partition columns filter (and prune) like any other.
    let health = query(
        &archive,
        "SELECT count(*) AS n FROM events WHERE date = '2026-03-02' AND sector = 'health'",
    );
    assert_eq!(health[0]["n"].as_u64(), by_sector.get("health").copied());

    let ids = query(&archive, "SELECT DISTINCT id FROM detections");
    let archived: std::collections::BTreeSet<String> = ids
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(archived, detection_ids);

    let versions = query(
        &archive,
        "SELECT warning_id, max(version) AS v FROM warnings GROUP BY warning_id",
    );
    let archived: BTreeMap<String, u64> = versions
        .iter()
        .map(|r| {
            (
                r["warning_id"].as_str().unwrap().to_owned(),
                r["v"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(archived, final_versions);

    // Extracted columns: the raw event is there too, and agrees.
    let rows = query(
        &archive,
        "SELECT command_line, raw FROM events WHERE command_line IS NOT NULL LIMIT 5",
    );
    assert!(!rows.is_empty());
    for r in &rows {
        let raw: serde_json::Value = serde_json::from_str(r["raw"].as_str().unwrap()).unwrap();
        assert_eq!(raw["CommandLine"], r["command_line"]);
    }

    // Table and CSV output.
    let table = run_ok(
        tocsin()
            .args(["query", "--archive"])
            .arg(&archive)
            .arg("SELECT count(*) AS n FROM warnings"),
    );
    assert!(String::from_utf8_lossy(&table.stdout).contains("| n "));
    let csv = run_ok(
        tocsin()
            .args(["query", "--format", "csv", "--archive"])
            .arg(&archive)
            .arg("SELECT sector, count(*) AS n FROM events GROUP BY sector ORDER BY sector"),
    );
    assert!(String::from_utf8_lossy(&csv.stdout).starts_with("sector,n\n"));

    // A SQL error is DataFusion's message, exit 2.
    let bad = tocsin()
        .args(["query", "--archive"])
        .arg(&archive)
        .arg("SELECT no_such_column FROM events")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_column"));

    // An archive of another format is named, not misread.
    std::fs::write(
        archive.join("archive.json"),
        "{\"format\": \"tocsin.archive/v9\"}",
    )
    .unwrap();
    let other = tocsin()
        .args(["query", "--archive"])
        .arg(&archive)
        .arg("SELECT 1")
        .output()
        .unwrap();
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("archive.json") && err.contains("v9"), "{err}");
}
