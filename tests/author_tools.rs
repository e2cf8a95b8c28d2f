//! `tocsin rules check`, `tocsin rules test` and `tocsin match --explain` through the binary.

mod common;

use common::*;

fn rules_dir_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("profiles")).unwrap();
    std::fs::create_dir_all(root.join("sigma")).unwrap();
    std::fs::copy(
        repo().join("rules/profiles/sysmon.yaml"),
        root.join("profiles/sysmon.yaml"),
    )
    .unwrap();
    for f in ["whoami_discovery.yml", "whoami_discovery.tests.yml"] {
        std::fs::copy(
            repo().join("rules/sigma").join(f),
            root.join("sigma").join(f),
        )
        .unwrap();
    }
    for (name, text) in extra {
        std::fs::write(root.join(name), text).unwrap();
    }
    dir
}

#[test]
fn check_reports_errors_with_position_in_text_and_json() {
    let bad = "title: Bad regex\nid: bad-re\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  sel:\n    Image|endswith: x.exe\n    CommandLine|re: '(?<=a)b'\n  condition: sel\n";
    let dir = rules_dir_with(&[("sigma/bad.yml", bad)]);
    let out = tocsin()
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.yml:9:5: error[bad-regex] rule bad-re (Bad regex)"),
        "{text}"
    );
    assert!(text.contains("1 compiled"), "{text}");

    let out = tocsin()
        .args(["rules", "check", "--format", "json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], 1);
    assert_eq!(report["rules_compiled"], 1);
    let d = &report["diagnostics"][0];
    assert_eq!(d["code"], "bad-regex");
    assert_eq!(d["location"]["line"], 9);
    assert_eq!(d["location"]["column"], 5);
    assert_eq!(d["rule_id"], "bad-re");

    let good = tocsin()
        .args(["rules", "check"])
        .arg(repo().join("rules"))
        .output()
        .unwrap();
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
}

#[test]
fn rule_tests_pass_fail_and_explain_failures() {
    let out = tocsin()
        .args(["rules", "test"])
        .arg(repo().join("rules"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.trim_end().ends_with("20 passed, 0 failed"), "{text}");

    let wrong = "rule: 9d1f3b5c-7a9e-4c0d-b2e4-6f8a0c2e4b05\ncases:\n  - name: SYSTEM is expected to match (wrongly)\n    match: true\n    event: {EventID: 1, Channel: Microsoft-Windows-Sysmon/Operational, Image: 'C:\\x\\whoami.exe', User: 'NT AUTHORITY\\SYSTEM'}\n";
    let dir = rules_dir_with(&[("sigma/wrong.tests.yml", wrong)]);
    let out = tocsin()
        .args(["rules", "test"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("expected a match, got no match"), "{text}");
    assert!(text.contains("selection filter_system: MATCH"), "{text}");
    assert!(
        text.contains("condition: (selection and not filter_system) => no match"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("3 passed, 1 failed"), "{text}");
}

#[test]
fn match_explains_each_detection() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","ParentImage":"C:\\Office\\WINWORD.EXE","Image":"C:\\Windows\\System32\\cmd.exe","User":"ACME\\bob"}"#,
            "\n",
            r#"{"EventID":22,"Channel":"Microsoft-Windows-Sysmon/Operational","QueryName":"x.invoice-viewer.example"}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = run_ok(
        tocsin()
            .args(["match", "--explain", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(&input),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("e.jsonl:1: rule 7c1e5a0b-4f7e-4d7a-9b0e-1a6f3c2d9e01 (Office Application Spawns a Script Interpreter) on [product:windows category:process_creation]: MATCH"), "{text}");
    assert!(
        text.contains(r"✓ ParentImage|endswith: ParentImage = 'C:\Office\WINWORD.EXE'"),
        "{text}"
    );
    assert!(
        text.contains("condition: all of [selection_parent, selection_child] => MATCH"),
        "{text}"
    );
    assert!(text.contains("e.jsonl:2: indicator domain invoice-viewer.example from feed sample-cert (TLP:GREEN) in field QueryName"), "{text}");

    let out = run_ok(
        tocsin()
            .args(["match", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(&input),
    );
    let detections: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(detections.len(), 2);
    assert_eq!(detections[1]["kind"], "indicator");
}
