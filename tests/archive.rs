//! The Parquet archive end to end: `tocsin run --archive` over the campaign workload, then
//! `tocsin query` answers must equal what the input and the run say.

mod common;

use std::collections::BTreeMap;

use common::{
    copy_dir, generate_events, json_lines, numbers_by, repo, run_ok, stdout_lines, texts, tocsin,
};

use common::archive_query as query;

#[test]
fn run_archives_everything_and_sql_answers_match_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    generate_events(&events, 20000, 7);
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
    let detection_ids = texts(&json_lines(&detections), "id");
    let final_versions = numbers_by(&stdout_lines(&out), "warning_id", "version");
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
    assert_eq!(numbers_by(&rows, "sector", "n"), by_sector);

    // Partition columns filter (and prune) like any other.
    let health = query(
        &archive,
        "SELECT count(*) AS n FROM events WHERE date = '2026-03-02' AND sector = 'health'",
    );
    assert_eq!(health[0]["n"].as_u64(), by_sector.get("health").copied());

    let ids = query(&archive, "SELECT DISTINCT id FROM detections");
    assert_eq!(texts(&ids, "id"), detection_ids);

    let versions = query(
        &archive,
        "SELECT warning_id, max(version) AS v FROM warnings GROUP BY warning_id",
    );
    assert_eq!(numbers_by(&versions, "warning_id", "v"), final_versions);

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

/// `tocsin hunt`: new indicators over an archive written before they were known give the
/// same detections and warnings as a live run that had them from the start; time and sector
/// filters select exactly their events; an unreadable Parquet file is named and skipped.
#[test]
fn hunt_over_the_archive_finds_what_a_live_run_would_have() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    generate_events(&events, 20000, 5);
    // The archive is written with Sigma rules only: the indicators come later.
    let sigma_only = dir.path().join("sigma-only");
    for sub in ["sigma", "profiles"] {
        copy_dir(&repo().join("rules").join(sub), &sigma_only.join(sub));
    }
    let archive = dir.path().join("archive");
    run_ok(
        tocsin()
            .args(["run", "-q", "--output", "/dev/null", "--rules"])
            .arg(&sigma_only)
            .arg("--input")
            .arg(&events)
            .arg("--archive")
            .arg(&archive),
    );

    // The new feed, and what a live run with only that feed would have said.
    let feed = dir.path().join("new-feed.txt");
    std::fs::copy(repo().join("rules/iocs/cert-eu-sample.txt"), &feed).unwrap();
    let live_rules = dir.path().join("live");
    copy_dir(&repo().join("rules/profiles"), &live_rules.join("profiles"));
    for f in ["escalation.yaml", "recipients.yaml"] {
        std::fs::copy(repo().join("rules").join(f), live_rules.join(f)).unwrap();
    }
    std::fs::create_dir_all(live_rules.join("iocs")).unwrap();
    std::fs::copy(&feed, live_rules.join("iocs/new-feed.txt")).unwrap();
    let live_detections = dir.path().join("live-detections.jsonl");
    let live = run_ok(
        tocsin()
            .args(["run", "-q", "--rules"])
            .arg(&live_rules)
            .arg("--input")
            .arg(&events)
            .arg("--detections")
            .arg(&live_detections),
    );
    let ids = |path: &std::path::Path| texts(&json_lines(path), "id");
    let live_ids = ids(&live_detections);
    assert!(live_ids.len() >= 5, "the feed should match: {live_ids:?}");
    let final_versions =
        |out: &std::process::Output| numbers_by(&stdout_lines(out), "warning_id", "version");
    let live_warnings = final_versions(&live);
    assert!(!live_warnings.is_empty(), "the feed should raise a warning");

    // The hunt: the same detections and warnings, from the archive.
    let hunted = dir.path().join("hunted.jsonl");
    let hunt = run_ok(
        tocsin()
            .args(["hunt", "--archive"])
            .arg(&archive)
            .arg("--base-rules")
            .arg(repo().join("rules"))
            .arg("--iocs")
            .arg(&feed)
            .arg("--detections")
            .arg(&hunted),
    );
    let stderr = String::from_utf8_lossy(&hunt.stderr);
    assert!(stderr.contains("20048 archived events"), "{stderr}");
    assert!(stderr.contains("candidate "), "{stderr}");
    assert_eq!(ids(&hunted), live_ids);
    assert_eq!(final_versions(&hunt), live_warnings);

    // Filters: exactly the detections of the events in range and sector.
    let all = json_lines(&hunted);
    let times: Vec<&str> = all
        .iter()
        .map(|d| d["event_time"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    let (from, to) = (sorted[1], sorted[sorted.len() - 1]);
    let sector = all[0]["context"]["sector"].as_str().unwrap().to_owned();
    let filtered = dir.path().join("filtered.jsonl");
    run_ok(
        tocsin()
            .args(["hunt", "-q", "--archive"])
            .arg(&archive)
            .arg("--iocs")
            .arg(&feed)
            .args(["--from", from, "--to", to, "--sector", &sector])
            .arg("--detections")
            .arg(&filtered)
            .args(["--output", "/dev/null"]),
    );
    let want: std::collections::BTreeSet<String> = all
        .iter()
        .filter(|d| {
            let t = d["event_time"].as_str().unwrap();
            t >= from && t < to && d["context"]["sector"] == sector.as_str()
        })
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!want.is_empty() && want.len() < live_ids.len());
    assert_eq!(ids(&filtered), want);

    // A truncated Parquet file is named and left out; the rest still answers.
    let count = |stderr_has: Option<&str>| -> u64 {
        let out = run_ok(
            tocsin()
                .args(["query", "--format", "json", "--archive"])
                .arg(&archive)
                .arg("SELECT count(*) AS n FROM events"),
        );
        if let Some(text) = stderr_has {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(text), "{err}");
        }
        let row: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        row["n"].as_u64().unwrap()
    };
    assert_eq!(count(None), 20048);
    let partition = archive.join(format!("events/date=2026-03-02/sector={sector}"));
    let victim = std::fs::read_dir(&partition)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let left = count(Some(&victim.display().to_string()));
    assert!(left < 20048, "{left}");
}

/// `tocsin report` over the campaign's archive: the technical report lists the warnings of
/// the run, the candidates, the top indicators and a timeline per incident, with its charts
/// as SVG files; the strategic one shows no indicator and no organisation; a ceiling below
/// the warnings' TLP withholds them and says so; the HTML carries its charts inline and the
/// TLP label at the top and the bottom.
#[test]
fn report_summarises_the_archive_within_the_audience_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    generate_events(&events, 20000, 7);
    let archive = dir.path().join("archive");
    let run = run_ok(
        tocsin()
            .args(["run", "-q", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(&events)
            .arg("--archive")
            .arg(&archive),
    );
    let mut headlines: BTreeMap<String, String> = BTreeMap::new();
    for l in String::from_utf8_lossy(&run.stdout).lines() {
        let w: serde_json::Value = serde_json::from_str(l).unwrap();
        headlines.insert(
            w["warning_id"].as_str().unwrap().to_owned(),
            w["headline"].as_str().unwrap().to_owned(),
        );
    }
    assert!(headlines.len() >= 3, "{headlines:?}");
    let report = |extra: &[&str], name: &str| -> String {
        let path = dir.path().join(name);
        run_ok(
            tocsin()
                .args(["report", "--archive"])
                .arg(&archive)
                .args(extra)
                .arg("--output")
                .arg(&path),
        );
        std::fs::read_to_string(&path).unwrap()
    };

    let technical = report(&[], "technical.md");
    let label = technical.lines().next().unwrap();
    assert_eq!(label, "**TLP:GREEN**", "the label of GREEN warnings");
    assert_eq!(technical.lines().last().unwrap(), label);
    assert!(technical.contains(&format!("{} early warnings", headlines.len())));
    for (id, headline) in &headlines {
        assert!(technical.contains(id), "warning {id} missing");
        assert!(
            technical.contains(&format!("### {headline}")),
            "no timeline for {id}"
        );
    }
    assert!(technical.contains("## Top indicators"));
    assert!(technical.contains("domain:invoice-viewer.example"));
    assert!(technical.contains("campaign:nightglass"));
    for chart in [
        "detections-over-time",
        "warnings-by-member-state",
        "warnings-by-sector",
        "candidates-by-taxonomy",
    ] {
        let file = format!("technical.{chart}.svg");
        assert!(
            technical.contains(&format!("]({file})")),
            "{chart} not linked"
        );
        let svg = std::fs::read_to_string(dir.path().join(&file)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<text"), "{file}");
    }
    let organisation = json_lines(&events)
        .iter()
        .find_map(|e| e["organisation"].as_str().map(str::to_owned))
        .unwrap();

    let strategic = report(&["--audience", "strategic"], "strategic.md");
    assert!(!strategic.contains("Top indicators"));
    assert!(!strategic.contains("invoice-viewer.example"));
    assert!(!strategic.contains("203.0.113.47"));
    assert!(!strategic.contains(&organisation));
    assert!(strategic.contains("## Incident timelines"));
    // Every candidate of this workload became a warning, in every audience's view (the
    // strategic rendering redacts the correlation keys; the incident ids link them).
    assert!(!strategic.contains("| no |") && !technical.contains("| no |"));

    let withheld = report(&["--tlp-ceiling", "CLEAR"], "clear.md");
    assert!(withheld.starts_with("**TLP:CLEAR**"));
    assert!(withheld.contains(&format!(
        "Withheld by the TLP ceiling: {} warnings",
        headlines.len()
    )));
    assert!(!withheld.contains("invoice-viewer.example"));

    let html = report(&["--format", "html"], "report.html");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 4);
    // The label at the top and the bottom, in its TLP 2.0 colour on black.
    assert_eq!(
        html.matches("<p class=\"tlp\"><span style=\"color:#33FF00\">TLP:GREEN</span></p>")
            .count(),
        2
    );
    assert!(!html.contains("<script"));
}

/// Retention: a later run with `--archive-retention-days` removes the date partitions older
/// than that before its newest event, in every table, and keeps the rest.
#[test]
fn retention_removes_old_date_partitions_only() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let events = dir.path().join("march.jsonl");
    generate_events(&events, 2000, 9);
    run_ok(
        tocsin()
            .args(["run", "-q", "--output", "/dev/null", "--input"])
            .arg(&events)
            .arg("--archive")
            .arg(&archive),
    );
    assert!(archive.join("events/date=2026-03-02").is_dir());
    assert!(archive.join("warnings/date=2026-03-02").is_dir());

    // Two days in June: 2026-06-01 is within 30 days of 2026-06-20, March is not.
    let june = dir.path().join("june.jsonl");
    let line = |t: &str| {
        format!(
            "{{\"@timestamp\":\"{t}\",\"EventID\":1,\"Hostname\":\"H1\",\"sector\":\"health\",\"member_state\":\"DE\",\"organisation\":\"Org\",\"Image\":\"C:\\\\x.exe\"}}\n"
        )
    };
    std::fs::write(
        &june,
        line("2026-06-01T10:00:00Z") + &line("2026-06-20T10:00:00Z"),
    )
    .unwrap();
    let out = run_ok(
        tocsin()
            .args(["run", "--output", "/dev/null", "--input"])
            .arg(&june)
            .arg("--archive")
            .arg(&archive)
            .args(["--archive-retention-days", "30"]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("date partitions expired"), "{stderr}");
    for table in ["events", "detections", "warnings"] {
        assert!(
            !archive.join(table).join("date=2026-03-02").exists(),
            "{table}: March kept"
        );
    }
    assert!(archive
        .join("events/date=2026-06-01/sector=health")
        .is_dir());
    assert!(archive
        .join("events/date=2026-06-20/sector=health")
        .is_dir());
    let rows = query(&archive, "SELECT count(*) AS n FROM events");
    assert_eq!(rows[0]["n"].as_u64(), Some(2));
}
