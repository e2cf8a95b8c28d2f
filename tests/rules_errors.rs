//! A bad rule is reported with file:line and rule id while the rest load; `--strict`
//! makes it fatal (exit code 3). Bad usage exits with 2.

mod common;

use common::*;

#[test]
fn bad_rules_are_reported_and_the_rest_load() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("sigma")).unwrap();
    std::fs::copy(
        repo().join("rules/escalation.yaml"),
        rules.join("escalation.yaml"),
    )
    .unwrap();
    std::fs::create_dir_all(rules.join("profiles")).unwrap();
    std::fs::copy(
        repo().join("rules/profiles/sysmon.yaml"),
        rules.join("profiles/sysmon.yaml"),
    )
    .unwrap();
    std::fs::copy(
        repo().join("rules/sigma/whoami_discovery.yml"),
        rules.join("sigma/whoami.yml"),
    )
    .unwrap();
    std::fs::write(
        rules.join("sigma/broken.yml"),
        "title: Broken\nid: broken-1\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  sel:\n    Image|endswoth: x\n  condition: sel\n",
    )
    .unwrap();
    std::fs::write(rules.join("sigma/notyaml.yml"), "title: [unclosed\n").unwrap();

    let input = dir.path().join("e.jsonl");
    std::fs::write(&input, r#"{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Image":"C:\\x\\whoami.exe"}"#).unwrap();
    let dets = dir.path().join("d.jsonl");
    let out = run_ok(
        tocsin()
            .args(["run", "--rules"])
            .arg(&rules)
            .arg("--input")
            .arg(&input)
            .arg("--detections")
            .arg(&dets),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let broken = format!("{}:8:5: error[unknown-modifier] rule broken-1 (Broken): selection 'sel': unknown modifier 'endswoth'", rules.join("sigma/broken.yml").display());
    assert!(stderr.contains(&broken), "{stderr}");
    assert!(
        stderr.contains("notyaml.yml:2:1: error[yaml]: invalid YAML"),
        "{stderr}"
    );
    assert!(stderr.contains("loaded 1 Sigma rules"), "{stderr}");
    assert_eq!(json_lines(&dets).len(), 1, "the good rule still matches");

    let strict = tocsin()
        .args(["run", "--strict", "--rules"])
        .arg(&rules)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(3));

    // `rules calibrate` too: the table is written without the bad rules' literals, and
    // not at all with --strict.
    let table = dir.path().join("f.json");
    let calibrate = |strict: &[&str]| {
        tocsin()
            .args(["rules", "calibrate", "--rules"])
            .arg(&rules)
            .args(strict)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&table)
            .output()
            .unwrap()
    };
    let out = calibrate(&["--strict"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(!table.exists());
    let out = calibrate(&[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 rule errors"), "{stderr}");
    assert!(table.exists());
    // A table given to `calibrate` would be silently ignored: refused instead.
    let out = calibrate(&["--frequencies", table.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--frequencies") && stderr.contains("f.json"),
        "{stderr}"
    );

    std::fs::write(rules.join("escalation.yaml"), "version: 1\nwindow: soon\n").unwrap();
    let out = tocsin()
        .args(["run", "--rules"])
        .arg(&rules)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("escalation.yaml:"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let out = tocsin().args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = tocsin()
        .args(["run", "--input", "/nonexistent/file.jsonl", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file.jsonl"));
}
