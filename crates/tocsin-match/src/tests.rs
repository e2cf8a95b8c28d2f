//! Matcher semantics over small rules and events, and a property test that the prefilter
//! never changes the answer.

use proptest::prelude::*;

use tocsin_core::{Event, EventIndex};
use tocsin_rules::{parse_plain_list, parse_profile, parse_sigma_source, Profile};

use crate::{CompiledRules, LiteralFrequencies, MatchConfig};

const PROFILE: &str = r#"
name: test
fields:
  Image: [Image, NewProcessName]
logsources:
  product:
    windows: []
  category:
    process_creation:
      - {Channel: Microsoft-Windows-Sysmon/Operational, EventID: 1}
      - {Channel: Security, EventID: 4688}
    dns_query:
      - {Channel: Microsoft-Windows-Sysmon/Operational, EventID: 22}
  service:
    security:
      - {Channel: Security}
indicators:
  fields:
    ip: [DestinationIp]
    domain: [QueryName]
  hash_lists: [Hashes]
"#;

fn profile() -> Profile {
    parse_profile("p.yaml", PROFILE).unwrap()
}

fn rule(id: &str, detection: &str) -> String {
    format!("title: rule {id}\nid: {id}\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n{detection}\n---\n")
}

fn compile(rules: &str, iocs: &str) -> CompiledRules {
    let src = parse_sigma_source("r.yml", rules);
    assert_eq!(src.diagnostics.error_count(), 0, "{:?}", src.diagnostics);
    let rules = src.rules;
    let (iocs, _) = parse_plain_list("i.txt", iocs, "feed");
    let (compiled, diags) = CompiledRules::compile(
        &rules,
        &src.filters,
        &iocs,
        &profile(),
        &MatchConfig::default(),
    );
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    compiled
}

fn matched(c: &CompiledRules, event: &str) -> Vec<String> {
    let mut idx = EventIndex::new();
    let ev = Event::parse(event.as_bytes(), &mut idx).unwrap();
    let mut s = c.new_scratch();
    c.match_event(&ev, &mut s);
    let fast: Vec<String> = s
        .matched()
        .iter()
        .map(|&r| c.rules()[r as usize].id.clone())
        .collect();
    c.match_event_unfiltered(&ev, &mut s);
    let slow: Vec<String> = s
        .matched()
        .iter()
        .map(|&r| c.rules()[r as usize].id.clone())
        .collect();
    assert_eq!(fast, slow, "prefilter changed the answer on {event}");
    fast
}

const SYSMON: &str = r#""Channel":"Microsoft-Windows-Sysmon/Operational","EventID":1"#;

fn ev(fields: &str) -> String {
    format!("{{{SYSMON},{fields}}}")
}

#[test]
fn modifiers_and_wildcards() {
    let rules = [
        rule("eq", "  sel:\n    Image: 'C:\\Windows\\System32\\cmd.exe'\n  condition: sel"),
        rule("ends", "  sel:\n    Image|endswith: '\\cmd.exe'\n  condition: sel"),
        rule("starts", "  sel:\n    CommandLine|startswith: 'cmd /c'\n  condition: sel"),
        rule("all", "  sel:\n    CommandLine|contains|all: [whoami, /priv]\n  condition: sel"),
        rule("glob", "  sel:\n    CommandLine: '*\\AppData\\\\*\\Temp\\\\*.exe*'\n  condition: sel"),
        rule("re", "  sel:\n    CommandLine|re: '(?i)-e(nc|ncodedcommand) [a-z0-9+/=]{8,}'\n  condition: sel"),
        rule("cased", "  sel:\n    CommandLine|contains|cased: 'WhoAmI'\n  condition: sel"),
        rule("notfilter", "  sel:\n    Image|endswith: '\\cmd.exe'\n  filter:\n    ParentImage|endswith: '\\explorer.exe'\n  condition: sel and not filter"),
        rule("isnull", "  sel:\n    Image|endswith: '\\cmd.exe'\n    User: null\n  condition: sel"),
        rule("exists", "  sel:\n    ParentImage|exists: true\n  condition: sel"),
        rule("num", "  sel:\n    ProcessId|gt: 1000\n  condition: sel"),
        rule("oneof", "  sel_a:\n    CommandLine|contains: vssadmin\n  sel_b:\n    CommandLine|contains: wbadmin\n  condition: 1 of sel_*"),
        rule("windash", "  sel:\n    CommandLine|windash|contains: ' -nop '\n  condition: sel"),
        rule("neq", "  sel:\n    Image|endswith: '\\cmd.exe'\n    IntegrityLevel|neq: High\n  condition: sel"),
    ]
    .concat();
    let c = compile(&rules, "");
    assert_eq!(c.stats().rules, 14);
    assert_eq!(
        matched(
            &c,
            &ev(
                r#""Image":"C:\\Windows\\System32\\CMD.exe","CommandLine":"cmd /c whoami /PRIV","ParentImage":"C:\\Windows\\explorer.exe","ProcessId":4242,"IntegrityLevel":"Medium""#
            )
        ),
        vec!["eq", "ends", "starts", "all", "isnull", "exists", "num", "neq"]
    );
    assert_eq!(
        matched(
            &c,
            &ev(
                r#""Image":"C:\\x\\cmd.exe","CommandLine":"c:\\users\\a\\appdata\\local\\temp\\x.exe WhoAmI","ProcessId":"12""#
            )
        ),
        vec!["ends", "glob", "cased", "notfilter", "isnull"]
    );
    assert_eq!(
        matched(
            &c,
            &ev(r#""CommandLine":"powershell \u2013nop -EncodedCommand SQBFAFgAIAAo vssadmin""#)
        ),
        vec!["re", "oneof", "windash"]
    );
    // Another logsource: nothing of process_creation may run.
    assert!(matched(
        &c,
        r#"{"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":22,"Image":"C:\\Windows\\System32\\cmd.exe"}"#
    )
    .is_empty());
    // Security 4688 with the mapped field name.
    assert_eq!(
        matched(
            &c,
            r#"{"Channel":"Security","EventID":"4688","NewProcessName":"C:\\Windows\\System32\\cmd.exe"}"#
        ),
        vec!["eq", "ends", "notfilter", "isnull"]
    );
}

#[test]
fn encodings_keywords_fieldref_time_parts_placeholders() {
    let rules = [
        rule(
            "b64off",
            "  sel:\n    CommandLine|base64offset|contains: 'http://'\n  condition: sel",
        ),
        rule(
            "wide",
            "  sel:\n    CommandLine|wide|base64offset|contains: 'cmd'\n  condition: sel",
        ),
        rule(
            "b64",
            "  sel:\n    CommandLine|base64: 'secret'\n  condition: sel",
        ),
        rule(
            "kw",
            "  keywords:\n    - 'mimikatz'\n    - 'sekurlsa'\n  condition: keywords",
        ),
        rule(
            "kwall",
            "  keywords:\n    '|all':\n      - 'lsass'\n      - 'dump'\n  condition: keywords",
        ),
        rule(
            "ref",
            "  sel:\n    ParentImage|fieldref: Image\n  condition: sel",
        ),
        rule(
            "refends",
            "  sel:\n    CommandLine|fieldref|endswith: Image\n  condition: sel",
        ),
        rule(
            "night",
            "  sel:\n    UtcTime|hour|gte: 22\n  condition: sel",
        ),
        rule(
            "march",
            "  sel:\n    UtcTime|month: 3\n    UtcTime|week: 10\n  condition: sel",
        ),
        rule(
            "admins",
            "  sel:\n    User|expand: '%Admins%'\n  condition: sel",
        ),
    ]
    .concat();
    let src = parse_sigma_source("r.yml", &rules);
    assert_eq!(src.diagnostics.error_count(), 0, "{:?}", src.diagnostics);
    let mut config = MatchConfig::default();
    config.placeholders.insert(
        "Admins".into(),
        vec!["ACME\\adm_*".into(), "ACME\\root".into()],
    );
    let (c, diags) = CompiledRules::compile(&src.rules, &[], &[], &profile(), &config);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    assert_eq!(c.stats().rules, 10);
    // "http://evil" base64-encoded after two bytes of padding: contains the offset-2 variant.
    let blob = "QUJodHRwOi8vZXZpbA==";
    assert_eq!(
        matched(&c, &ev(&format!(r#""CommandLine":"powershell -e {blob}""#))),
        vec!["b64off"]
    );
    // "cmd" as UTF-16LE, base64: "YwBtAGQA".
    assert_eq!(
        matched(&c, &ev(r#""CommandLine":"x YwBtAGQAIAAvAGMA y""#)),
        vec!["wide"]
    );
    assert_eq!(matched(&c, &ev(r#""CommandLine":"c2VjcmV0""#)), vec!["b64"]);
    assert_eq!(
        matched(&c, &ev(r#""CommandLine":"c2VjcmV0 x""#)),
        Vec::<String>::new()
    );
    assert_eq!(
        matched(&c, &ev(r#""Payload":"Invoke-Mimikatz -DumpCreds""#)),
        vec!["kw"]
    );
    assert_eq!(
        matched(&c, &ev(r#""A":"LSASS access","B":"memory dump""#)),
        vec!["kwall"]
    );
    assert_eq!(
        matched(&c, &ev(r#""A":"lsass only""#)),
        Vec::<String>::new()
    );
    assert_eq!(
        matched(
            &c,
            &ev(r#""Image":"C:\\a.exe","ParentImage":"c:\\A.EXE","CommandLine":"run C:\\a.exe""#)
        ),
        vec!["ref", "refends"]
    );
    assert_eq!(
        matched(&c, &ev(r#""UtcTime":"2026-03-02 23:10:00.000""#)),
        vec!["night", "march"]
    );
    assert_eq!(
        matched(&c, &ev(r#""UtcTime":"2026-03-09 08:10:00.000""#)),
        Vec::<String>::new()
    );
    assert_eq!(
        matched(&c, &ev(r#""User":"acme\\adm_bob""#)),
        vec!["admins"]
    );
    assert_eq!(
        matched(&c, &ev(r#""User":"acme\\bob""#)),
        Vec::<String>::new()
    );
}

#[test]
fn global_filters_suppress_matches_of_the_rules_they_name() {
    let text = [
        rule("whoami", "  sel:\n    Image|endswith: '\\whoami.exe'\n  condition: sel"),
        "title: Admins may run whoami\nid: f1\nlogsource: {category: process_creation, product: windows}\nfilter:\n  rules: [whoami, not-loaded]\n  selection:\n    User|startswith: 'ACME\\adm_'\n  condition: selection\n".to_owned(),
    ]
    .concat();
    let src = parse_sigma_source("r.yml", &text);
    assert_eq!(src.filters.len(), 1);
    let (c, diags) = CompiledRules::compile(
        &src.rules,
        &src.filters,
        &[],
        &profile(),
        &MatchConfig::default(),
    );
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].code, "filter-target-missing");
    assert_eq!(
        matched(&c, &ev(r#""Image":"C:\\whoami.exe","User":"ACME\\bob""#)),
        vec!["whoami"]
    );
    assert!(matched(
        &c,
        &ev(r#""Image":"C:\\whoami.exe","User":"ACME\\adm_bob""#)
    )
    .is_empty());
}

#[test]
fn indicators_are_found_in_profile_fields() {
    let c = compile(
        "",
        "evil.example\n203.0.113.9\nsha256 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
    );
    let mut idx = EventIndex::new();
    let mut s = c.new_scratch();
    for (event, want) in [
        (
            r#"{"QueryName":"cdn.Evil.Example","DestinationIp":"203.0.113.9"}"#,
            2,
        ),
        (
            r#"{"Hashes":"MD5=00,SHA256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
            1,
        ),
        (
            r#"{"QueryName":"example","DestinationIp":"203.0.113.99"}"#,
            0,
        ),
    ] {
        let e = Event::parse(event.as_bytes(), &mut idx).unwrap();
        c.match_event(&e, &mut s);
        assert_eq!(s.ioc_hits().len(), want, "{event}");
    }
}

#[test]
fn unsupported_features_are_errors_for_that_rule_only() {
    let rules = [
        rule(
            "ok",
            "  sel:\n    Image|endswith: '\\cmd.exe'\n  condition: sel",
        ),
        rule(
            "expand",
            "  sel:\n    User|expand: '%Nope%'\n  condition: sel",
        ),
        rule(
            "badre",
            "  sel:\n    CommandLine|re: '(?<=x)y'\n  condition: sel",
        ),
        rule(
            "ok",
            "  sel:\n    Image|endswith: '\\cmd.exe'\n  condition: sel",
        ),
    ]
    .concat();
    let rules = parse_sigma_source("r.yml", &rules).rules;
    let (compiled, diags) =
        CompiledRules::compile(&rules, &[], &[], &profile(), &MatchConfig::default());
    assert_eq!(compiled.stats().rules, 1);
    let codes: Vec<&str> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code)
        .collect();
    assert_eq!(
        codes,
        vec!["unknown-placeholder", "bad-regex", "duplicate-id"]
    );
}

#[test]
fn no_allocation_shape_scratch_is_reused() {
    // The scratch keeps its buffers between events; matching twice gives the same answer.
    let c = compile(
        &rule(
            "ends",
            "  sel:\n    Image|endswith: '\\cmd.exe'\n  condition: sel",
        ),
        "",
    );
    let mut s = c.new_scratch();
    let mut idx = EventIndex::new();
    let raw = ev(r#""Image":"C:\\cmd.exe""#);
    for _ in 0..3 {
        let e = Event::parse(raw.as_bytes(), &mut idx).unwrap();
        c.match_event(&e, &mut s);
        assert_eq!(s.matched().len(), 1);
    }
    assert_eq!(s.stats.events, 3);
}

#[test]
fn regexes_are_prefiltered_by_the_literals_every_match_contains() {
    let c = compile(
        &(rule(
            "r1",
            "  sel:\n    CommandLine|re: '(?i)cmd.{0,5}/c.+power(shell|sploit)'\n  condition: sel",
        ) + &rule(
            "r2",
            "  sel:\n    CommandLine|re: '\\w+=\\d'\n  condition: sel",
        ) + &rule(
            "r3",
            "  sel:\n    Image|re: '(?i)\\\\taskkill'\n  condition: sel",
        )),
        "",
    );
    // r1 needs `power…` and r3 `\taskkill`; r2 has no literal and is verified on every
    // event of its route.
    assert_eq!(c.stats().unfiltered_rules, 1);
    let hit = ev(r#""CommandLine":"CMD.exe /c PowerShell -nop""#);
    assert_eq!(matched(&c, &hit), ["r1"]);
    assert_eq!(matched(&c, &ev(r#""CommandLine":"a=1""#)), ["r2"]);
    // `(?i)k` matches the Kelvin sign too: the prefilter has that spelling as well.
    let kelvin = ev("\"Image\":\"C:\\\\Windows\\\\TASK\u{212A}ILL.exe\"");
    assert_eq!(matched(&c, &kelvin), ["r3"]);
}

#[test]
fn fields_outnumbering_the_members_are_found_by_walking_them() {
    // Twelve fields scanned (and `Image` read by two paths, `Obj.inner` maybe nested):
    // more names than the events below have members, so the scan finds them by walking
    // the members (`Event::locate_all`). `matched` checks every answer against the
    // exhaustive matcher, which reads each field by name.
    let mut rules: String = (0..10)
        .map(|i| {
            rule(
                &format!("f{i}"),
                &format!("  sel:\n    F{i}|contains: hit\n  condition: sel"),
            )
        })
        .collect();
    rules += &rule(
        "image",
        "  sel:\n    Image|endswith: '\\hit.exe'\n  condition: sel",
    );
    rules += &rule(
        "nested",
        "  sel:\n    Obj.inner|contains: hit\n  condition: sel",
    );
    let c = compile(&rules, "");
    assert_eq!(matched(&c, &ev(r#""F3":"a hit""#)), ["f3"]);
    assert_eq!(matched(&c, &ev(r#""F3":"a hit","F9":"HIT""#)), ["f3", "f9"]);
    // Of duplicate keys the last one counts.
    assert_eq!(
        matched(&c, &ev(r#""F3":"hit","F3":"miss""#)),
        Vec::<String>::new()
    );
    assert_eq!(matched(&c, &ev(r#""F3":"miss","F3":"hit""#)), ["f3"]);
    // The profile's second path of `Image`, and the first when both are there.
    let security = r#"{"Channel":"Security","EventID":4688,"#;
    let new_process = format!(r#"{security}"NewProcessName":"C:\\hit.exe"}}"#);
    assert_eq!(matched(&c, &new_process), ["image"]);
    let both = format!(r#"{security}"Image":"C:\\miss.exe","NewProcessName":"C:\\hit.exe"}}"#);
    assert_eq!(matched(&c, &both), Vec::<String>::new());
    // A dotted path into an object, and the same path as a flat key (which wins).
    assert_eq!(matched(&c, &ev(r#""Obj":{"inner":"hit"}"#)), ["nested"]);
    let flat_wins = ev(r#""Obj.inner":"miss","Obj":{"inner":"hit"}"#);
    assert_eq!(matched(&c, &flat_wins), Vec::<String>::new());
    // A key written with an escape: the names are read one by one.
    assert_eq!(matched(&c, &ev(r#""F\u0033":"hit""#)), ["f3"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn prefilter_never_loses_a_match(
        values in proptest::collection::vec("[abc\\\\.]{1,4}", 1..4),
        field_text in "[abcABC\\\\. ]{0,16}",
        modifier in 0usize..6,
        negate in any::<bool>(),
    ) {
        let m = one_of_modifiers(&["", "|contains", "|startswith", "|endswith", "|contains|all", "|re"], modifier, &values);
        let list = yaml_list(&values);
        let cond = if negate { "sel and not other" } else { "sel or other" };
        let r = rule("p", &format!("  sel:\n    CommandLine{m}: {list}\n  other:\n    Image|contains: 'b*c'\n  condition: {cond}"));
        let src = parse_sigma_source("r.yml", &r);
        prop_assume!(src.diagnostics.error_count() == 0);
        let (c, _) = CompiledRules::compile(&src.rules, &[], &[], &profile(), &MatchConfig::default());
        let event = format!("{{{SYSMON},\"CommandLine\":{},\"Image\":{}}}", serde_json_string(&field_text), serde_json_string(&field_text));
        let _ = matched(&c, &event);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// A literal that no prefilter needs is compared at verification instead of scanned
    /// for; both ways must give the same answer (and with eight values or more, the scanned
    /// test is answered from the event's hits). Rule `s` puts the values on the candidate
    /// list (scanned; with `|all`, one of them); rule `u` only tests them under `not`
    /// (compared), so exactly one of the two matches. A `long` value is compared in its
    /// escaped form, as scans read it.
    #[test]
    fn compared_literals_agree_with_scanned_ones(
        values in proptest::collection::vec("[abnuAB01f\\\\.\" ]{1,4}", 1..12),
        field_text in "[abnuAB01f\\\\.\"\n\u{1}\u{1f} ]{0,12}",
        modifier in 0usize..7,
        field_is_number in any::<bool>(),
        long in any::<bool>(),
    ) {
        let m = one_of_modifiers(&["", "|contains", "|startswith", "|endswith", "|contains|all", "|cased", "|contains|cased"], modifier, &values);
        let sel = format!("  sel:\n    CommandLine{m}: {}\n", yaml_list(&values));
        let scanned = compile(&rule("s", &format!("{sel}  condition: sel")), "");
        let compared = compile(
            &rule("u", &format!("{sel}  gate:\n    Image: 'gate.exe'\n  condition: gate and not sel")),
            "",
        );
        prop_assert_eq!(compared.stats().scanned_atoms, 1, "only the gate is scanned for");
        let field_text = lengthened(field_text, long);
        let command_line = if field_is_number { "12".to_owned() } else { serde_json_string(&field_text) };
        let event = format!("{{{SYSMON},\"CommandLine\":{command_line},\"Image\":\"gate.exe\"}}");
        let hits = matched(&scanned, &event).len() + matched(&compared, &event).len();
        prop_assert_eq!(hits, 1, "{}", event);
    }
}

#[test]
fn many_scanned_values_are_answered_from_the_hits() {
    // Twelve values: both tests are answered from the hits. The same literals are scanned
    // for `any`'s prefilter, so `none`'s negated whole-value test reads their hits too.
    let names: Vec<String> = (0..12).map(|i| format!("'\\tool{i}.exe'")).collect();
    let c = compile(
        &(rule(
            "any",
            &format!(
                "  sel:\n    Image|endswith: [{}]\n  condition: sel",
                names.join(", ")
            ),
        ) + &rule(
            "none",
            &format!(
                "  sel:\n    CommandLine|contains: 'x'\n    Image|neq: [{}]\n  condition: sel",
                names.join(", ")
            ),
        )),
        "",
    );
    assert_eq!(c.stats().scanned_atoms, 13);
    // Both Image tests take the path under test (the answers below alone would also come
    // from value-by-value evaluation).
    for rule in &c.rules {
        let tests = &rule.selections[0].alternatives[0];
        assert!(
            tests.iter().any(|t| t.scanned_values.is_some()),
            "{}",
            rule.title
        );
    }
    let image = |img: &str| ev(&format!(r#""Image":"{img}","CommandLine":"x""#));
    assert_eq!(matched(&c, &image("C:\\\\TOOL7.exe")), ["any", "none"]);
    assert_eq!(matched(&c, &image("\\\\tool7.exe")), ["any"]);
    assert_eq!(matched(&c, &image("C:\\\\tool7.exe.bak")), ["none"]);
    // A listed literal hit, but not where the test needs it.
    assert_eq!(matched(&c, &image("C:\\\\tool1.exe\\\\x.dll")), ["none"]);
    assert!(matched(&c, &ev(r#""CommandLine":"x""#)).is_empty());
}

#[test]
fn compared_literals_use_their_own_fields_text() {
    // Many compared literals on two fields of one event: each field's text is compared
    // with its own literals, not the other field's.
    let c = compile(
        &rule(
            "f",
            "  sel:\n    Image|endswith: '\\cmd.exe'\n  filter_a:\n    CommandLine|contains: ['/x', '/y']\n  filter_b:\n    ParentImage|endswith: ['\\explorer.exe', '\\svchost.exe']\n  condition: sel and not 1 of filter_*",
        ),
        "",
    );
    assert_eq!(c.stats().scanned_atoms, 1);
    let base = |cl: &str, parent: &str| {
        ev(&format!(
            r#""Image":"C:\\cmd.exe","CommandLine":"{cl}","ParentImage":"{parent}""#
        ))
    };
    assert_eq!(matched(&c, &base("cmd /c", "C:\\\\Tools\\\\a.exe")), ["f"]);
    assert!(matched(&c, &base("cmd /Y", "C:\\\\Tools\\\\a.exe")).is_empty());
    assert!(matched(&c, &base("cmd /c", "C:\\\\Windows\\\\Explorer.EXE")).is_empty());
    // The command line holds the other filter's literal: no effect.
    assert_eq!(matched(&c, &base("\\\\svchost.exe", "C:\\\\x.exe")), ["f"]);
}

/// `|contains: '*'` (a pattern of wildcards alone) holds for any value with text, long
/// and escaped or not, which it does not read: as the general pattern `?*` does for
/// any but the empty one. A JSON `null` has no text (`contains: 'nul'` does not match it),
/// so neither holds for it; pySigma's SQLite backend, where a `null` is absent, agrees.
#[test]
fn a_pattern_of_wildcards_alone_holds_for_every_value_with_text() {
    let c = compile_rules(&[
        ("any", "  sel:\n    Payload|contains: '*'\n  condition: sel"),
        ("one", "  sel:\n    Payload: '?*'\n  condition: sel"),
    ]);
    let long = format!("C:\\\\{}\\n", "x".repeat(600));
    let cases = [
        (format!("\"{long}\""), vec!["any", "one"]),
        ("\"\"".to_owned(), vec!["any"]),
        ("12".to_owned(), vec!["any", "one"]),
        ("true".to_owned(), vec!["any", "one"]),
        ("null".to_owned(), vec![]),
        (r#"{"a":"b"}"#.to_owned(), vec![]),
        ("[1]".to_owned(), vec![]),
    ];
    for (value, want) in cases {
        assert_eq!(
            matched(&c, &ev(&format!(r#""Payload":{value}"#))),
            want,
            "{value}"
        );
    }
    assert!(matched(&c, &ev(r#""Other":"x""#)).is_empty());
}

/// A regex over a long value is run only when every literal set it requires occurs (the
/// prefilter checks one, the others are compared first); the answers are the regex's.
#[test]
fn a_regex_over_a_long_value_is_answered_as_the_regex_says() {
    let c = compile_rules(&[(
        "stdin",
        r#"  sel:
    Payload|re: 'cmd.{0,5}(?:/c|/r).+powershell.+(?:\$\{?input\}?|noexit).+"'
  condition: sel"#,
    )]);
    let pad = "x".repeat(600);
    let payload = |text: &str| ev(&format!(r#""Payload":"{pad}{text}{pad}""#));
    assert_eq!(
        matched(&c, &payload(r#"cmd /c echo | powershell -noexit \"x\""#)),
        ["stdin"]
    );
    // The regex is case-sensitive: an upper-case `PowerShell` does not do.
    assert!(matched(&c, &payload(r#"cmd /c echo | PowerShell -noexit \"x\""#)).is_empty());
    // Every required literal but one.
    assert!(matched(&c, &payload(r#"cmd /c echo | pwsh -noexit \"x\""#)).is_empty());
    assert!(matched(&c, &payload(r#"cmd /c echo | powershell -noexit x"#)).is_empty());
    // The literals, but not in the regex's order.
    assert!(matched(&c, &payload(r#"powershell -noexit \"x\" cmd /c"#)).is_empty());
    // A required literal right after an escape (a tab: `.` takes no line break), and a
    // regex that ignores case.
    assert_eq!(
        matched(&c, &payload(r#"cmd /c echo\tpowershell -noexit \"x\""#)),
        ["stdin"]
    );
    assert!(matched(&c, &payload(r#"cmd /c echo\npowershell -noexit \"x\""#)).is_empty());
    let folded = compile_rules(&[(
        "folded",
        "  sel:\n    Payload|re: '(?i)cmd.{0,5}/c.+powershell.+noexit'\n  condition: sel",
    )]);
    assert_eq!(
        matched(&folded, &payload(r#"CMD /C echo | PowerShell -NoExit"#)),
        ["folded"]
    );
    assert!(matched(&folded, &payload(r#"CMD /C echo | pwsh -NoExit"#)).is_empty());
}

/// In a long value, compared in its escaped form, an occurrence of a literal that
/// overlaps one inside an escape still counts: `nn` in a line break and two `n` (`\nnn`);
/// and escapes other than the canonical ones are rewritten before the comparison.
#[test]
fn a_literal_overlapping_an_escape_in_a_long_value_is_found() {
    filtered_payloads("nn", &[(r"\nnn", true), (r"\nn", false), (r"n\nn", false)]);
    filtered_payloads(
        "a/b",
        &[
            (r"\u0041\/B", true),
            (r"\u0061\u002fb", true),
            (r"\u0041\\B", false),
        ],
    );
}

/// A rule that `Payload|contains: literal` filters out, over each raw `Payload` of
/// `cases` (whether the filter holds), short and behind 600 bytes.
fn filtered_payloads(literal: &str, cases: &[(&str, bool)]) {
    let c = compile_rules(&[(
        "f",
        &format!("  sel:\n    Image: 'gate.exe'\n  filter:\n    Payload|contains: '{literal}'\n  condition: sel and not filter"),
    )]);
    for pad in [0, 600] {
        let x = "x".repeat(pad);
        for (payload, filtered) in cases {
            let event = ev(&format!(r#""Image":"gate.exe","Payload":"{x}{payload}""#));
            assert_eq!(matched(&c, &event).is_empty(), *filtered, "{pad} {payload}");
        }
    }
}

/// `text`, or (`long`) twice around 520 bytes of padding: a value over `LONG_VALUE`,
/// which unscanned literals are compared with in its escaped form.
fn lengthened(text: String, long: bool) -> String {
    if long {
        format!("{text}{}{text}", "x".repeat(520))
    } else {
        text
    }
}

/// `modifiers[i]`, with `|contains|all` made `|contains` for a single value (`all` needs two).
fn one_of_modifiers<'m>(modifiers: &[&'m str], i: usize, values: &[String]) -> &'m str {
    match modifiers[i] {
        "|contains|all" if values.len() < 2 => "|contains",
        m => m,
    }
}

/// `values` as a YAML flow list of single-quoted strings.
fn yaml_list(values: &[String]) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn serde_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            // Other control characters as JSON writers escape them.
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn tests_run_cheapest_first_and_are_explained_as_written() {
    let c = compile(
        &rule(
            "order",
            "  sel:\n    CommandLine|re: 'a.+b'\n    CommandLine|contains|all: ['x', 'y']\n    Image: 'C:\\x.exe'\n  condition: sel",
        ),
        "",
    );
    let evaluated: Vec<&str> = c.rules[0].selections[0].alternatives[0]
        .iter()
        .map(|t| t.key.as_str())
        .collect();
    assert_eq!(
        evaluated,
        ["Image", "CommandLine|contains|all", "CommandLine|re"]
    );
    let raw = ev(r#""Image":"C:\\x.exe","CommandLine":"a x y b""#);
    let mut idx = EventIndex::new();
    let e = Event::parse(raw.as_bytes(), &mut idx).unwrap();
    let mut s = c.new_scratch();
    c.match_event(&e, &mut s);
    assert_eq!(s.matched(), [0]);
    let explained = c.explain(0, &e, &mut s);
    let keys: Vec<&str> = explained.selections[0].alternatives[0]
        .iter()
        .map(|t| t.key.as_str())
        .collect();
    assert_eq!(
        keys,
        ["CommandLine|re", "CommandLine|contains|all", "Image"]
    );
    assert!(explained.matched);
}

/// Rules verified (candidates) over `events`, matched in turn with one scratch space.
/// `n` events, the `i`th holding the members `fields(i)` (besides the Sysmon routing).
fn events(n: usize, fields: impl Fn(usize) -> String) -> Vec<String> {
    (0..n).map(|i| ev(&fields(i))).collect()
}

/// Rules of one selection each, `(id, the selection's tests)`, compiled.
fn compile_selections(selections: &[(&str, &str)]) -> CompiledRules {
    let rules: String = selections
        .iter()
        .map(|(id, sel)| rule(id, &format!("  sel:\n    {sel}\n  condition: sel")))
        .collect();
    compile(&rules, "")
}

/// Rules of (id, detection), compiled together.
fn compile_rules(rules: &[(&str, &str)]) -> CompiledRules {
    let rules: String = rules
        .iter()
        .map(|(id, detection)| rule(id, detection))
        .collect();
    compile(&rules, "")
}

fn candidates_over(c: &CompiledRules, events: &[String]) -> u64 {
    let mut s = c.new_scratch();
    let mut idx = EventIndex::new();
    for e in events {
        let event = Event::parse(e.as_bytes(), &mut idx).unwrap();
        c.match_event(&event, &mut s);
    }
    s.stats.candidates
}

/// `rules` compiled with prefilters calibrated on `sample` (no filters, no indicators,
/// the test profile), with the compile diagnostics and the frequencies observed.
fn calibrated_on<'e>(
    rules: &[tocsin_rules::SigmaRule],
    sample: impl IntoIterator<Item = &'e [u8]>,
) -> (
    CompiledRules,
    Vec<tocsin_rules::Diagnostic>,
    LiteralFrequencies,
) {
    CompiledRules::compile_calibrated(rules, &[], &[], &profile(), &MatchConfig::default(), sample)
}

/// A rule that ANDs a literal found in nearly every event with a rare one: calibrated on
/// a sample, the prefilter keeps the rare one (fewer rules verified), and every answer
/// stays what exhaustive evaluation gives.
#[test]
fn calibration_keeps_the_rarer_literal_and_the_same_matches() {
    let rules = rule(
        "k",
        "  sel:\n    CommandLine|startswith: 'C:\\Windows\\System32\\ntdll.dll+'\n    Image|endswith: '\\x.exe'\n  condition: sel",
    ) + &rule("other", "  sel:\n    CommandLine|contains: 'whoami'\n  condition: sel");
    let src = parse_sigma_source("r.yml", &rules);
    assert_eq!(src.diagnostics.error_count(), 0, "{:?}", src.diagnostics);
    let events: Vec<String> = (0..200)
        .map(|i| {
            let image = if i % 50 == 0 {
                "C:\\\\t\\\\x.exe"
            } else {
                "C:\\\\t\\\\y.exe"
            };
            ev(&format!(
                r#""CommandLine":"C:\\Windows\\System32\\ntdll.dll+{i}","Image":"{image}""#
            ))
        })
        .collect();
    let sample = events.iter().step_by(2).map(|e| e.as_bytes());
    let (plain, _) =
        CompiledRules::compile(&src.rules, &[], &[], &profile(), &MatchConfig::default());
    let (calibrated, diags, frequencies) = calibrated_on(&src.rules, sample);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    assert_eq!(frequencies.events(), 100);
    // By length the compiler picks the `CommandLine` prefix, in every event; by
    // frequency the `Image` ending, in one event of fifty.
    assert_eq!(candidates_over(&plain, &events), 200);
    assert_eq!(candidates_over(&calibrated, &events), 4);
    for e in &events {
        assert_eq!(matched(&plain, e), matched(&calibrated, e));
    }
    assert_eq!(matched(&calibrated, &events[0]), ["k"]);
    assert!(matched(&calibrated, &events[1]).is_empty());
}

/// Saved and read back, a frequency table chooses exactly what the observed one chose
/// (its shares are the same to the bit), and writes the same file again.
#[test]
fn saved_frequencies_read_back_choose_the_same_prefilters() {
    let rules = rule(
        "k",
        "  sel:\n    CommandLine|startswith: 'C:\\Windows\\System32\\ntdll.dll+'\n    Image|endswith: '\\x.exe'\n  condition: sel",
    ) + &rule("kw", "  keywords:\n    - 'Mimikatz'\n  condition: keywords")
        + &rule("cased", "  sel:\n    User|cased: 'SYSTEM'\n  condition: sel");
    let src = parse_sigma_source("r.yml", &rules);
    assert_eq!(src.diagnostics.error_count(), 0, "{:?}", src.diagnostics);
    // Counts of 1, 3 and 7 in 7 events: shares that are no short binary fractions.
    let events: Vec<String> = (0..7)
        .map(|i| {
            let image = if i % 3 == 0 { "x.exe" } else { "y.exe" };
            ev(&format!(
                r#""CommandLine":"C:\\Windows\\System32\\ntdll.dll+{i}","Image":"C:\\t\\{image}","User":"SYSTEM""#
            ))
        })
        .collect();
    let (calibrated, _, observed) = calibrated_on(&src.rules, events.iter().map(|e| e.as_bytes()));
    let json = observed.to_json();
    let read = LiteralFrequencies::from_json(&json).unwrap();
    assert_eq!(read.events(), 7);
    assert_eq!(read.len(), observed.len());
    assert_eq!(read.profile(), profile().name);
    assert_eq!(read.to_json(), json);
    let saved: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(saved["format"], crate::FREQUENCIES_FORMAT);
    let counts: Vec<u64> = saved["literals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["events"].as_u64().unwrap())
        .collect();
    assert!(counts.contains(&3) && counts.contains(&7), "{json}");
    let config = MatchConfig {
        literal_frequencies: Some(std::sync::Arc::new(read)),
        ..MatchConfig::default()
    };
    let (loaded, _) = CompiledRules::compile(&src.rules, &[], &[], &profile(), &config);
    let (plain, _) =
        CompiledRules::compile(&src.rules, &[], &[], &profile(), &MatchConfig::default());
    let candidates = candidates_over(&loaded, &events);
    assert_eq!(candidates, candidates_over(&calibrated, &events));
    assert!(
        candidates_over(&plain, &events) > candidates,
        "{candidates}"
    );
}

/// A saved table that cannot be right is refused with the place of the fault: its line
/// and column for JSON that is not the table's, its entry otherwise.
#[test]
fn a_bad_frequency_table_names_what_is_wrong() {
    let table = |literals: &str, pairs: &str| {
        format!(
            "{{\n  \"format\": \"{}\",\n  \"profile\": \"p\",\n  \"events\": 10,\n  \"literals\": [{literals}],\n  \"pairs\": {{{pairs}}}\n}}",
            crate::FREQUENCIES_FORMAT
        )
    };
    let good = r#"{"field": "Image", "text": "\\x.exe", "cased": false, "events": 2}"#;
    let read = LiteralFrequencies::from_json(&table(good, r#""6d69": 10"#)).unwrap();
    assert_eq!((read.len(), read.events()), (1, 10));
    let error = |json: String| {
        LiteralFrequencies::from_json(&json)
            .unwrap_err()
            .to_string()
    };
    let e = error(
        table(good, r#""6d69": 10"#).replace("literal-frequencies/v1", "literal-frequencies/v9"),
    );
    assert!(e.contains("literal-frequencies/v9"), "{e}");
    let e = error(table(&good.replace("\"events\": 2", "\"events\": 11"), ""));
    assert!(
        e.contains("literals[0]") && e.contains("\"Image\"") && e.contains("11 events"),
        "{e}"
    );
    let e = error(table(&good.replace("\"text\"", "\"hex\""), ""));
    assert!(e.contains("literals[0]") && e.contains("hex"), "{e}");
    let e = error(table(&format!("{good}, {good}"), ""));
    assert!(e.contains("literals[1]") && e.contains("twice"), "{e}");
    let e = error(table(good, r#""6d": 1"#));
    assert!(e.contains(r#"pairs["6d"]"#), "{e}");
    let e = error(table(good, r#""4d69": 1"#));
    assert!(e.contains("lower-cased"), "{e}");
    let e = error(table(&good.replace("\"cased\"", "\"case\""), ""));
    assert!(e.contains("line 5"), "{e}");
}

/// Without a sample, the prefilter guesses from the rule set (`prior`): a literal that
/// several rules test (`ObjectType: 'Key'`), or that several rules' literals begin with
/// (the `CurrentVersion` key under their `Run` keys) or end with (`\svchost.exe` under
/// whole paths, in other fields), is common, so the rule's other test is searched for even
/// when it lists more values. Matches stay the same.
#[test]
fn without_a_sample_literals_many_rules_share_are_not_searched_for() {
    let rules = [
        ("syskey", "ObjectType: 'Key'\n    ObjectName|endswith:\n      - 'lsa\\JD'\n      - 'lsa\\GBG'"),
        ("sam", "ObjectType: 'Key'\n    ObjectName|endswith: '\\SAM'"),
        ("system", "ObjectType: 'Key'\n    ObjectName|endswith: '\\SYSTEM'"),
        ("vbs", "TargetObject|contains: '\\Software\\Microsoft\\Windows\\CurrentVersion'\n    Details|contains:\n      - 'vbscript:'\n      - 'jscript:'"),
        ("run", "TargetObject|contains: '\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\'"),
        ("once", "TargetObject|contains: '\\Software\\Microsoft\\Windows\\CurrentVersion\\RunOnce\\'"),
        ("access", "SourceImage|endswith: '\\svchost.exe'\n    GrantedAccess:\n      - '0x1410'\n      - '0x1010'"),
        ("child", "ParentImage: 'C:\\Windows\\System32\\svchost.exe'\n    Image|endswith: '\\cmd.exe'"),
        ("masquerade", "Image: 'C:\\Windows\\Temp\\svchost.exe'"),
    ];
    let c = compile_selections(&rules);
    let common = events(20, |i| {
        format!(
            r#""ObjectType":"Key","ObjectName":"\\REGISTRY\\MACHINE\\k{i}","TargetObject":"HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Policies","Details":"DWORD (0x00000001)","SourceImage":"C:\\Windows\\System32\\svchost.exe","GrantedAccess":"0x1000""#
        )
    });
    // No common literal puts a rule on the candidate list.
    assert_eq!(candidates_over(&c, &common), 0);
    let hits = [
        ev(
            r#""ObjectType":"Key","ObjectName":"\\REGISTRY\\MACHINE\\CurrentControlSet\\Control\\lsa\\JD""#,
        ),
        ev(
            r#""TargetObject":"HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\x","Details":"vbscript:run""#,
        ),
        ev(r#""SourceImage":"C:\\Windows\\System32\\svchost.exe","GrantedAccess":"0x1410""#),
    ];
    assert_eq!(matched(&c, &hits[0]), ["syskey"]);
    assert_eq!(matched(&c, &hits[1]), ["vbs"]);
    assert_eq!(matched(&c, &hits[2]), ["access"]);
    assert_eq!(candidates_over(&c, &hits), 3);
}

/// A whole value of a field the profile routes events by names the event's type (every
/// Security 4688 event holds `4688`), and a boolean is one of two values: the prior takes
/// both as common, so the rule's other test is searched for, though it is shorter.
#[test]
fn without_a_sample_event_types_and_booleans_are_taken_as_common() {
    let rules = [
        ("type", "EventID: 4688\n    CommandLine|contains: ' /c'"),
        ("bool", "Initiated: 'true'\n    DestinationPort: 88"),
    ];
    let c = compile_selections(&rules);
    let common: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"Channel":"Security","EventID":4688,"CommandLine":"whoami {i}","Initiated":"true","DestinationPort":"443"}}"#
            )
        })
        .collect();
    assert_eq!(candidates_over(&c, &common), 0);
    let hits = [
        r#"{"Channel":"Security","EventID":4688,"CommandLine":"cmd /c x"}"#.to_owned(),
        ev(r#""Initiated":"true","DestinationPort":88"#),
    ];
    assert_eq!(matched(&c, &hits[0]), ["type"]);
    assert_eq!(matched(&c, &hits[1]), ["bool"]);
    assert_eq!(candidates_over(&c, &hits), 2);
}

/// Of two alternatives the prior guesses alike (`.exe`, in any field), the prefilter
/// takes the one in the field fewer logsources test: `Image` is in process and DNS events
/// alike, a `QueryName` only in DNS events.
#[test]
fn without_a_sample_the_narrower_field_breaks_a_tie() {
    let rules = rule(
        "exe",
        "  sel:\n    Image|endswith: '.exe'\n    QueryName|endswith: '.exe'\n  condition: sel",
    )
    .replace("category: process_creation", "category: dns_query")
        + &rule(
            "cmd",
            "  sel:\n    Image|endswith: '\\cmd.exe'\n  condition: sel",
        );
    let c = compile(&rules, "");
    let dns = |name: &str| {
        format!(
            r#"{{"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":22,"Image":"C:\\x\\svc.exe","QueryName":"{name}"}}"#
        )
    };
    let common: Vec<String> = (0..20).map(|i| dns(&format!("host{i}.example"))).collect();
    assert_eq!(candidates_over(&c, &common), 0);
    assert_eq!(matched(&c, &dns("payload.exe")), ["exe"]);
}

/// The routing cache is keyed by the routing values as events write them; events that
/// write the same values otherwise (case, escapes, a number as a string) still route alike,
/// whatever came first into the one scratch space they share.
#[test]
fn events_route_alike_however_they_write_their_routing_values() {
    let c = compile(
        &rule(
            "x",
            "  sel:\n    Image|endswith: '\\x.exe'\n  condition: sel",
        ),
        "",
    );
    let image = r#""NewProcessName":"C:\\x.exe""#;
    let cases = [
        (
            format!(r#"{{"Channel":"Security","EventID":4688,{image}}}"#),
            true,
        ),
        (
            format!(r#"{{"Channel":"SECURITY","EventID":"4688",{image}}}"#),
            true,
        ),
        (
            format!(r#"{{"Channel":"Secur\u0069ty","EventID":4688,{image}}}"#),
            true,
        ),
        (
            format!(r#"{{"Channel":"Security","EventID":4689,{image}}}"#),
            false,
        ),
        (
            format!(r#"{{"Channel":"Security ","EventID":4688,{image}}}"#),
            false,
        ),
        (
            format!(r#"{{"Channel":["Security"],"EventID":4688,{image}}}"#),
            false,
        ),
        (format!(r#"{{"EventID":4688,{image}}}"#), false),
    ];
    let mut s = c.new_scratch();
    let mut idx = EventIndex::new();
    for round in 0..2 {
        for k in 0..cases.len() {
            // Forward, then backward: each key meets a cache that others filled.
            let (event, hit) = &cases[if round == 0 { k } else { cases.len() - 1 - k }];
            let e = Event::parse(event.as_bytes(), &mut idx).unwrap();
            c.match_event(&e, &mut s);
            assert_eq!(!s.matched().is_empty(), *hit, "{event}");
            assert_eq!(matched(&c, event).is_empty(), !*hit, "{event}");
        }
    }
}

/// A regex offers each of its required literals to the prefilter, which takes the least
/// common: not the long path that begins every call trace (other rules test it too), but
/// the `|unknown(` of an injected thread.
#[test]
fn a_regex_is_prefiltered_by_its_least_common_required_literal() {
    let rules = [
        ("bof", r"CallTrace|re: '^C:\\Windows\\SYSTEM32\\ntdll\.dll\+[a-z0-9]{4,6}\|UNKNOWN\('"),
        ("python", "CallTrace|contains: 'C:\\Windows\\SYSTEM32\\ntdll.dll+'\n    TargetImage|endswith: '\\lsass.exe'"),
        ("dump", "CallTrace|contains: 'C:\\Windows\\SYSTEM32\\ntdll.dll+'\n    TargetImage|endswith: '\\procdump.exe'"),
    ];
    let c = compile_selections(&rules);
    let common = events(20, |i| {
        format!(
            r#""CallTrace":"C:\\Windows\\SYSTEM32\\ntdll.dll+9c58{i}|C:\\Windows\\System32\\KERNELBASE.dll+2c1a""#
        )
    });
    assert_eq!(candidates_over(&c, &common), 0);
    let hit =
        ev(r#""CallTrace":"C:\\Windows\\SYSTEM32\\ntdll.dll+9c584|UNKNOWN(00000000DEADBEEF)""#);
    assert_eq!(matched(&c, &hit), ["bof"]);
    assert_eq!(candidates_over(&c, std::slice::from_ref(&hit)), 1);
}

/// Frequencies know literals by content: compiled with more rules (as after a reload),
/// the calibrated choice of the old rule stays, and the new rule's literals, which the
/// sample never measured, are assumed neither common nor absent.
#[test]
fn literal_frequencies_outlive_a_change_of_rules() {
    let old = rule(
        "k",
        "  sel:\n    CommandLine|startswith: 'C:\\Windows\\System32\\ntdll.dll+'\n    Image|endswith: '\\x.exe'\n  condition: sel",
    );
    let events: Vec<String> = (0..10)
        .map(|i| {
            ev(&format!(
                r#""CommandLine":"C:\\Windows\\System32\\ntdll.dll+{i}","Image":"y.exe""#
            ))
        })
        .collect();
    let src = parse_sigma_source("r.yml", &old);
    let (_, _, frequencies) = calibrated_on(&src.rules, events.iter().map(|e| e.as_bytes()));
    assert_eq!(frequencies.len(), 2);
    let more = old + &rule("new", "  sel:\n    CommandLine|contains: 'whoami'\n    Image|endswith: '\\cmd.exe'\n  condition: sel");
    let src = parse_sigma_source("r.yml", &more);
    let config = MatchConfig {
        literal_frequencies: Some(std::sync::Arc::new(frequencies)),
        ..MatchConfig::default()
    };
    let (c, _) = CompiledRules::compile(&src.rules, &[], &[], &profile(), &config);
    // Neither `\x.exe` (the old rule's choice) nor anything of the new rule occurs.
    assert_eq!(candidates_over(&c, &events), 0);
}
#[test]
fn literals_never_match_inside_a_unicode_escape() {
    // A control character other than `\n`, `\r`, `\t`, `\b`, `\f` is written `\u00XX`:
    // the scan searches the escaped text, where `1f` occurs at the end of `abc\u001f`
    // though the text `abc` + U+001F does not end with it.
    let rules = [
        rule(
            "ends1f",
            "  sel:\n    CommandLine|endswith: '1f'\n  condition: sel",
        ),
        rule(
            "cased",
            "  sel:\n    CommandLine|contains|cased: '001'\n  condition: sel",
        ),
        rule("kw", "  keywords:\n    - '01f'\n  condition: keywords"),
        rule(
            "starts",
            "  sel:\n    CommandLine|startswith: 'abc'\n  condition: sel",
        ),
    ]
    .concat();
    let c = compile(&rules, "");
    for written in [r"abc\u001f", r"abc\u001F"] {
        let event = ev(&format!(r#""CommandLine":"{written}""#));
        assert_eq!(matched(&c, &event), ["starts"], "{event}");
    }
    // Written as text, the same characters match; so does a literal backslash before `u`.
    let event = ev(r#""CommandLine":"abc\\u001f""#);
    assert_eq!(matched(&c, &event), ["ends1f", "cased", "kw", "starts"]);
}

#[test]
fn keywords_are_found_in_values_written_with_unicode_escapes() {
    // The keyword presence test searches the raw event, where `\u006dimikatz` does not
    // spell `mimikatz`; the value's text does, so the test must not rule the keyword out.
    let rules = [
        rule("kw", "  keywords:\n    - 'mimikatz'\n  condition: keywords"),
        rule(
            "cl",
            "  sel:\n    CommandLine|contains: 'mimikatz'\n  condition: sel",
        ),
    ]
    .concat();
    let c = compile(&rules, "");
    let event = ev(r#""CommandLine":"run \u006dimikatz now""#);
    assert_eq!(matched(&c, &event), ["kw", "cl"], "{event}");
    // Spaced out, the event is not compact: the decoder's general scan reads it.
    let spaced = event.replace(',', ", ");
    assert_eq!(matched(&c, &spaced), ["kw", "cl"], "{spaced}");
    assert!(matched(&c, &ev(r#""CommandLine":"run \u006dimi now""#)).is_empty());
    // In a nested object, whose values keywords read one by one.
    let nested = ev(r#""o":{"x":["run \u006dimikatz"]}"#);
    assert_eq!(matched(&c, &nested), ["kw"], "{nested}");
    // A line break between tokens (a control byte) leaves it to the byte-by-byte scan.
    let broken = format!("{{{SYSMON},\"o\":\n{{\"x\":\"run \\u006dimikatz\"}}}}");
    assert_eq!(matched(&c, &broken), ["kw"], "{broken}");
    // Escapes of characters keywords are not searched by (Go writes `&` as `\u0026`) leave
    // the raw-bytes test to rule the keyword out: no value is scanned for it.
    let scanned = |event: &str| {
        let mut idx = EventIndex::new();
        let e = Event::parse(event.as_bytes(), &mut idx).unwrap();
        let mut s = c.new_scratch();
        c.match_event(&e, &mut s);
        assert!(s.matched().is_empty() || event.contains("006d"), "{event}");
        s.stats.scanned_bytes
    };
    let plain = scanned(&ev(r#""CommandLine":"a \u0026 b \u00e9""#));
    let escaped = scanned(&ev(r#""CommandLine":"a \u0026 b \u006d""#));
    assert!(plain < escaped, "{plain} {escaped}");
}

/// `s` as a JSON string, each character whose flag in `spelled` (cycled) is set written as
/// a `\u` escape, as some JSON writers do; the others as [`serde_json_string`] writes them.
fn json_string_respelled(s: &str, spelled: &[bool]) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        if spelled[i % spelled.len()] && u32::from(c) <= 0xFFFF {
            out.push_str(&format!("\\u{:04X}", u32::from(c)));
        } else {
            let one = serde_json_string(&c.to_string());
            out.push_str(&one[1..one.len() - 1]);
        }
    }
    out.push('"');
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// The same text written two ways, canonically and with some of its characters as `\u`
    /// escapes, matches the same rules: field tests, keywords and regexes read the text,
    /// not how the event spells it.
    #[test]
    fn the_spelling_of_escapes_does_not_change_the_answer(
        values in proptest::collection::vec("[abmu01fAB\\\\.\" ]{1,4}", 1..6),
        text in "[abmu01fAB\\\\.\"\n\u{1}\u{1f} ]{0,16}",
        spelled in proptest::collection::vec(any::<bool>(), 1..8),
        modifier in 0usize..8,
    ) {
        let m = one_of_modifiers(
            &["", "|contains", "|startswith", "|endswith", "|contains|all", "|cased", "|contains|cased", "|re"],
            modifier,
            &values,
        );
        let list = yaml_list(&values);
        let rules = rule("field", &format!("  sel:\n    CommandLine{m}: {list}\n  condition: sel"))
            + &rule("keyword", &format!("  keywords: {list}\n  condition: keywords"));
        let src = parse_sigma_source("r.yml", &rules);
        prop_assume!(src.diagnostics.error_count() == 0);
        let (c, diags) = CompiledRules::compile(&src.rules, &[], &[], &profile(), &MatchConfig::default());
        prop_assume!(diags.iter().all(|d| !d.is_error()));
        let canonical = ev(&format!("\"CommandLine\":{}", serde_json_string(&text)));
        let respelled = ev(&format!("\"CommandLine\":{}", json_string_respelled(&text, &spelled)));
        prop_assert_eq!(matched(&c, &canonical), matched(&c, &respelled), "{} {}", canonical, respelled);
        // Nested, where keywords read the object's values one by one.
        let canonical = ev(&format!("\"o\":[{{\"x\":{}}}]", serde_json_string(&text)));
        let respelled = ev(&format!("\"o\":[{{\"x\":{}}}]", json_string_respelled(&text, &spelled)));
        prop_assert_eq!(matched(&c, &canonical), matched(&c, &respelled), "{} {}", canonical, respelled);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// The same event written compactly and spread out with whitespace, its members in the
    /// other order, matches the same rules (the decoder takes different paths for the two).
    #[test]
    fn layout_and_member_order_do_not_change_the_answer(
        values in proptest::collection::vec("[abmu01fAB\\\\.\" ]{1,4}", 1..6),
        texts in proptest::collection::vec("[abmu01fAB\\\\.\"\n\u{1f} ]{0,12}", 3),
        modifier in 0usize..8,
        field in 0usize..3,
    ) {
        let m = one_of_modifiers(
            &["", "|contains", "|startswith", "|endswith", "|contains|all", "|cased", "|contains|cased", "|re"],
            modifier,
            &values,
        );
        let names = ["CommandLine", "Image", "ParentImage"];
        let list = yaml_list(&values);
        let rules = rule("field", &format!("  sel:\n    {}{m}: {list}\n  condition: sel", names[field]))
            + &rule("keyword", &format!("  keywords: {list}\n  condition: keywords"))
            + &rule("not", &format!("  sel:\n    {}{m}: {list}\n  condition: not sel", names[field]));
        let src = parse_sigma_source("r.yml", &rules);
        prop_assume!(src.diagnostics.error_count() == 0);
        let (c, diags) = CompiledRules::compile(&src.rules, &[], &[], &profile(), &MatchConfig::default());
        prop_assume!(diags.iter().all(|d| !d.is_error()));
        // Alone, under `not` and behind a gate, the literals are compared, not scanned for.
        let compared = compile(
            &rule("compared", &format!("  sel:\n    {}{m}: {list}\n  gate:\n    EventID: 1\n  condition: gate and not sel", names[field])),
            "",
        );
        let members: Vec<String> = names
            .iter()
            .zip(&texts)
            .map(|(n, t)| format!("\"{n}\":{}", serde_json_string(t)))
            .collect();
        let compact = ev(&members.join(","));
        let mut reversed = members.clone();
        reversed.reverse();
        let spread = format!(
            "{{ \"Channel\" : \"Microsoft-Windows-Sysmon/Operational\" ,\n \"EventID\" : 1 , {} }}",
            reversed.iter().map(|m| m.replacen(':', " :\t", 1)).collect::<Vec<_>>().join(" , ")
        );
        prop_assert_eq!(matched(&c, &compact), matched(&c, &spread), "{} {}", compact, spread);
        prop_assert_eq!(matched(&compared, &compact), matched(&compared, &spread), "{} {}", compact, spread);
        // Without `|cased` or a regex, the values' ASCII case does not matter either.
        if !m.contains("cased") && m != "|re" {
            let flipped: Vec<String> = names
                .iter()
                .zip(&texts)
                .map(|(n, t)| {
                    let t: String = t
                        .chars()
                        .map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                        .collect();
                    format!("\"{n}\":{}", serde_json_string(&t))
                })
                .collect();
            let flipped = ev(&flipped.join(","));
            prop_assert_eq!(matched(&c, &compact), matched(&c, &flipped), "{} {}", compact, flipped);
            prop_assert_eq!(matched(&compared, &compact), matched(&compared, &flipped), "{} {}", compact, flipped);
        }
    }
}

/// Work counters over `events`, matched in turn with one scratch space; every answer is
/// checked against exhaustive evaluation (see [`matched`]).
fn stats_over(c: &CompiledRules, events: &[String]) -> crate::ScratchStats {
    let mut s = c.new_scratch();
    let mut idx = EventIndex::new();
    for e in events {
        matched(c, e);
        let event = Event::parse(e.as_bytes(), &mut idx).unwrap();
        c.match_event(&event, &mut s);
    }
    s.stats
}

#[test]
fn guards_turn_candidates_away_without_reading_the_rule() {
    // By length the prefilter is the call trace's prefix, which every event has; the
    // guard is the exact `GrantedAccess`, which turns away the events without it.
    let katz = rule(
        "katz",
        "  sel:\n    CallTrace|startswith: 'C:\\Windows\\System32\\ntdll.dll+'\n    GrantedAccess: '0x1440'\n    TargetImage|endswith: '\\lsass.exe'\n  condition: sel",
    );
    let event = |access: &str, target: &str| {
        ev(&format!(
            r#""CallTrace":"C:\\Windows\\System32\\ntdll.dll+9d234","GrantedAccess":"{access}","TargetImage":"C:\\Windows\\{target}""#
        ))
    };
    let events = [
        event("0x1010", "lsass.exe"),
        event("0x1440", "lsass.exe"),
        event("0x1440", "svchost.exe"),
        event("0X1440", "LSASS.EXE"),
    ];
    let c = compile(&katz, "");
    let s = stats_over(&c, &events);
    assert_eq!((s.candidates, s.guard_rejections, s.matches), (4, 1, 2));
    assert_eq!(matched(&c, &events[1]), ["katz"]);
    assert_eq!(matched(&c, &events[3]), ["katz"]);
    // The access it turns away, not the target: the whole value is chosen over the suffix.
    assert_eq!(stats_over(&c, &events[..1]).guard_rejections, 1);
    assert_eq!(stats_over(&c, &events[2..3]).guard_rejections, 0);

    // A guard of several values holds when one does; with `all`, each value is a test of
    // its own. Another rule's prefilter makes `0x1440` a scanned literal: the guard then
    // reads its hit bits.
    let either = rule(
        "either",
        "  sel:\n    CallTrace|startswith: 'C:\\Windows\\System32\\ntdll.dll+'\n    GrantedAccess:\n      - '0x1440'\n      - '0x1fffff'\n  condition: sel",
    );
    let every = rule(
        "every",
        "  sel:\n    CallTrace|startswith: 'C:\\Windows\\System32\\ntdll.dll+'\n    TargetImage|contains|all:\n      - 'lsass'\n      - '.exe'\n  condition: sel",
    );
    let access = rule(
        "access",
        "  sel:\n    GrantedAccess: '0x1440'\n  condition: sel",
    );
    for (set, rejected) in [(either.clone() + &every, 2), (either + &every + &access, 2)] {
        let c = compile(&set, "");
        let s = stats_over(&c, &events);
        assert_eq!(s.guard_rejections, rejected, "{set}");
        assert_eq!(matched(&c, &events[0]), ["every"]);
        assert!(matched(&c, &events[2]).starts_with(&["either".to_owned()]));
    }

    // Tests under `not`, `or` and of several alternatives are not needed: no guard.
    let loose = rule(
        "loose",
        "  sel:\n    CallTrace|startswith: 'C:\\Windows\\System32\\ntdll.dll+'\n  access:\n    GrantedAccess: '0x1440'\n  target:\n    - TargetImage|endswith: '\\lsass.exe'\n    - GrantedAccess: '0x1010'\n  condition: sel and (access or not target) and target",
    );
    // Nor are the tests of `1 of` several selections, nor a test whose values do not fit
    // in a guard's cache line.
    let one_of = rule(
        "one_of",
        "  sel:\n    CallTrace|startswith: 'C:\\Windows\\System32\\ntdll.dll+'\n  access_a:\n    GrantedAccess: '0x1440'\n  access_b:\n    GrantedAccess: '0x1010'\n  condition: sel and 1 of access_*",
    );
    let many: Vec<String> = (0..10).map(|i| format!("0x10{i}0")).collect();
    let wide = rule(
        "wide",
        &format!(
            "  sel:\n    CallTrace|startswith: 'C:\\Windows\\System32\\ntdll.dll+'\n    GrantedAccess: {}\n  condition: sel",
            yaml_list(&many)
        ),
    );
    let c = compile(&(loose + &one_of + &wide), "");
    let s = stats_over(&c, &events);
    assert_eq!((s.candidates, s.guard_rejections), (12, 0));
    assert_eq!(matched(&c, &events[0]), ["one_of", "wide"]);
    assert_eq!(matched(&c, &events[1]), ["loose", "one_of"]);
}

#[test]
fn guards_read_every_path_of_their_field() {
    // `Image` is read from `NewProcessName` in Security events (the profile's second path):
    // the guard reads the same value the test does, and turns away an event without it.
    let r = rule(
        "r",
        "  sel:\n    CommandLine|contains: 'launcher --start'\n    Image|endswith: '\\x.exe'\n  condition: sel",
    );
    let c = compile(&r, "");
    let security = |image: &str| {
        format!(
            r#"{{"Channel":"Security","EventID":4688,"CommandLine":"launcher --start",{image}}}"#
        )
    };
    let events = [
        security(r#""NewProcessName":"C:\\t\\x.exe""#),
        security(r#""NewProcessName":"C:\\t\\y.exe""#),
        security(r#""Image":null"#),
        security(r#""Other":"C:\\t\\x.exe""#),
        ev(r#""CommandLine":"launcher --start","Image":"C:\\t\\X.EXE""#),
    ];
    let s = stats_over(&c, &events);
    assert_eq!((s.candidates, s.guard_rejections, s.matches), (5, 3, 2));
    assert_eq!(matched(&c, &events[0]), ["r"]);
    assert_eq!(matched(&c, &events[4]), ["r"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// A guard answers as the test it copies: rule `g` is put on the candidate list by its
    /// gate, and guarded by `sel`, compared (alone) or read from the hits (beside rule `s`,
    /// whose prefilter `sel` is). Exhaustive evaluation, which skips guards, must agree
    /// (see [`matched`]), and `g` must match exactly when `s` does. A `long` value is
    /// compared in its escaped form.
    #[test]
    fn guards_answer_as_the_tests_they_copy(
        values in proptest::collection::vec("[abnuAB01f\\\\.\" ]{1,4}", 1..8),
        field_text in "[abnuAB01f\\\\.\"\n\u{1}\u{1f} ]{0,12}",
        modifier in 0usize..7,
        field_is_number in any::<bool>(),
        echo in 0usize..4,
        long in any::<bool>(),
    ) {
        let m = one_of_modifiers(&["", "|contains", "|startswith", "|endswith", "|contains|all", "|cased", "|contains|cased"], modifier, &values);
        let sel = format!("  sel:\n    CommandLine{m}: {}\n", yaml_list(&values));
        // Often the field holds the values themselves: as written, inside other text (where
        // no prefix, suffix or whole value holds), or in the other case.
        let field_text = match echo {
            0 => field_text,
            1 => values.concat(),
            2 => format!(" {} ", values.concat()),
            _ => values.concat().chars().map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect(),
        };
        let guarded = rule("g", &format!("{sel}  gate:\n    Image: 'gate.exe'\n  condition: gate and sel"));
        let alone = rule("s", &format!("{sel}  condition: sel"));
        let field_text = lengthened(field_text, long);
        let command_line = if field_is_number { "12".to_owned() } else { serde_json_string(&field_text) };
        let event = format!("{{{SYSMON},\"CommandLine\":{command_line},\"Image\":\"gate.exe\"}}");
        let with_scanned = compile(&(guarded.clone() + &alone), "");
        let answer = matched(&with_scanned, &event);
        prop_assert_eq!(answer.contains(&"g".to_owned()), answer.contains(&"s".to_owned()), "{}", event);
        let compared = compile(&guarded, "");
        let s = stats_over(&compared, std::slice::from_ref(&event));
        prop_assert_eq!(s.matches > 0, answer.contains(&"s".to_owned()), "{}", event);
        if m != "|contains|all" {
            // The guard is the whole test: it alone turns `g` away, whether it compares its
            // values or reads their hits.
            prop_assert_eq!(s.guard_rejections, 1 - s.matches, "{}", event);
            let s = stats_over(&with_scanned, std::slice::from_ref(&event));
            let g_matched = u64::from(answer.contains(&"g".to_owned()));
            prop_assert_eq!(s.guard_rejections, 1 - g_matched, "{}", event);
        }
    }
}

/// The exhaustive matcher is what guards are checked against, so it must not use them:
/// with two rules' guards swapped (each now wrong), `match_event` loses the match and
/// `match_event_unfiltered` still finds it.
#[test]
fn exhaustive_matching_ignores_guards() {
    // The two rules share no value: whichever test is a rule's guard, the other rule's
    // guard fails on that rule's events.
    let access = |id: &str, dll: &str, value: &str| {
        rule(
            id,
            &format!("  sel:\n    CallTrace|startswith: 'C:\\Windows\\System32\\{dll}+'\n    GrantedAccess: '{value}'\n  condition: sel"),
        )
    };
    let rules = access("a", "ntdll.dll", "0x1440") + &access("b", "KERNELBASE.dll", "0x1010");
    let mut c = compile(&rules, "");
    let event =
        ev(r#""CallTrace":"C:\\Windows\\System32\\KERNELBASE.dll+9d234","GrantedAccess":"0x1010""#);
    assert_eq!(matched(&c, &event), ["b"]);
    c.guards.swap(0, 1);
    let mut idx = EventIndex::new();
    let parsed = Event::parse(event.as_bytes(), &mut idx).unwrap();
    let mut s = c.new_scratch();
    c.match_event(&parsed, &mut s);
    assert!(s.matched().is_empty(), "the swapped guard turns `b` away");
    c.match_event_unfiltered(&parsed, &mut s);
    assert_eq!(s.matched(), [1]);
}

#[test]
fn a_rule_without_a_needed_value_is_guarded_by_a_field_it_needs() {
    // Nothing these rules test by value is needed (a field reference, selections under
    // `not`, a regular expression without a literal long enough to search for), but each
    // needs a field to be there: `TargetFilename`, `Image` (`not Image: null`),
    // `CommandLine`. An event without it is turned away by the guard.
    let c = compile_rules(&[
        ("own", "  sel:\n    TargetFilename|fieldref: Image\n  condition: sel"),
        (
            "missing",
            "  filter_main:\n    Image|contains: '\\'\n  filter_null:\n    Image: null\n  condition: not 1 of filter_*",
        ),
        ("pattern", "  sel:\n    CommandLine|re: 'a.b'\n  condition: sel"),
    ]);
    let events = [
        ev(r#""Other":"x""#),
        ev(r#""TargetFilename":"C:\\x.exe","Image":"C:\\x.exe""#),
        ev(r#""Image":"System""#),
        ev(r#""Image":null,"CommandLine":"a-b""#),
        ev(r#""CommandLine":"xyz""#),
    ];
    assert_eq!(matched(&c, &events[0]), Vec::<String>::new());
    assert_eq!(matched(&c, &events[1]), ["own"]);
    assert_eq!(matched(&c, &events[2]), ["missing"]);
    assert_eq!(matched(&c, &events[3]), ["pattern"]);
    assert_eq!(matched(&c, &events[4]), Vec::<String>::new());
    let s = stats_over(&c, &events);
    // Three candidates per event. Turned away: all three from the first event; `pattern`
    // from the second; `own` and `pattern` from the third; `own` from the fourth (whose
    // `Image` is there, if `null`); `own` and `missing` from the fifth.
    assert_eq!(
        (s.candidates, s.guard_rejections, s.matches),
        (15, 3 + 1 + 2 + 1 + 2, 3)
    );

    // Absence that makes a rule hold is no guard: `not` of a value test, `exists: false`.
    let c = compile_rules(&[
        (
            "not_value",
            "  sel:\n    Image|contains: 'a'\n  condition: not sel",
        ),
        (
            "absent",
            "  sel:\n    Image|exists: false\n  condition: sel",
        ),
    ]);
    assert_eq!(matched(&c, &events[0]), ["not_value", "absent"]);
    assert_eq!(stats_over(&c, &events[..1]).guard_rejections, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    /// A guard of presence never turns away a match: over conditions of `and`, `or`, `not`
    /// and `1 of` of tests that hold or fail on an absent or `null` field, matching agrees
    /// with the exhaustive matcher (which skips guards) on events with the fields absent,
    /// `null` or set.
    #[test]
    fn guards_of_presence_agree_with_exhaustive_matching(
        tests in proptest::collection::vec(0usize..14, 3),
        condition in 0usize..10,
        image in 0usize..5,
        command_line in 0usize..4,
    ) {
        const TESTS: [&str; 14] = [
            "Image: null",
            "Image|exists: true",
            "Image|exists: false",
            "Image|contains: 'a'",
            "Image|re: 'a.'",
            "Image|fieldref: CommandLine",
            "CommandLine: null",
            "CommandLine|neq: 'b'",
            "Image:\n      - ''\n      - 'xa'",
            "- Image: null\n    - CommandLine|contains: 'b'",
            "Image|endswith:\n      - '1'\n      - 'A'",
            "- Image|startswith: 'x'\n    - CommandLine|startswith: 'a'",
            "Image|contains: 'a'\n    CommandLine|contains: 'b'",
            "- Image|endswith: '1'\n      CommandLine: null\n    - CommandLine|contains: 'b'",
        ];
        const CONDITIONS: [&str; 10] = [
            "s1",
            "not s1",
            "s1 and not s2",
            "not (s1 or s2)",
            "not 1 of s*",
            "s1 or not s2",
            "all of s*",
            "not s1 and not s2 and s3",
            "(s1 or s2) and not s3",
            "not (s1 and not s2) and s3",
        ];
        let selection = |i: usize| format!("  s{}:\n    {}\n", i + 1, TESTS[tests[i]]);
        let detection = format!(
            "{}{}{}  condition: {}",
            selection(0),
            selection(1),
            selection(2),
            CONDITIONS[condition]
        );
        let c = compile(&rule("r", &detection), "");
        let image = [None, Some("null"), Some(r#""a1""#), Some(r#""xa""#), Some(r#""C:\\a""#)][image];
        let command_line = [None, Some("null"), Some(r#""b""#), Some(r#""a1""#)][command_line];
        let fields: Vec<String> = [("Image", image), ("CommandLine", command_line)]
            .iter()
            .filter_map(|(name, value)| value.map(|v| format!(r#""{name}":{v}"#)))
            .chain(std::iter::once(r#""Other":"x""#.to_owned()))
            .collect();
        // `matched` asserts the agreement.
        let _ = matched(&c, &ev(&fields.join(",")));
    }
}

#[test]
fn keyword_scans_are_skipped_without_the_rarest_keyword_a_rule_needs() {
    // `script` is in many events, `Set-OabVirtualDirectory` in few: a search needing both
    // (`|all`), or a rule needing a search for each, scans for keywords only where the
    // longer occurs.
    let c = compile_rules(&[
        (
            "all",
            "  keywords:\n    '|all':\n      - 'Set-OabVirtualDirectory'\n      - 'script'\n  condition: keywords",
        ),
        (
            "both",
            "  cmdlet:\n    - 'Set-OabVirtualDirectory'\n  params:\n    - 'http://f/<script'\n    - 'eval(request'\n  condition: cmdlet and params",
        ),
    ]);
    let common = ev(r#""Message":"a PowerShell script ran from http://f/<script""#);
    let all_of = ev(r#""Message":"Set-OabVirtualDirectory -ExternalUrl <script>""#);
    let params = ev(r#""Message":"Set-OabVirtualDirectory -ExternalUrl http://f/<script""#);
    let rare_only = ev(r#""Message":"Set-OabVirtualDirectory -ExternalUrl x""#);
    assert_eq!(matched(&c, &common), Vec::<String>::new());
    assert_eq!(matched(&c, &all_of), ["all"]);
    assert_eq!(matched(&c, &params), ["all", "both"]);
    assert_eq!(matched(&c, &rare_only), Vec::<String>::new());
    let scanned = |c: &CompiledRules, event: &String| {
        stats_over(c, std::slice::from_ref(event)).scanned_bytes
    };
    assert_eq!(
        scanned(&c, &common),
        0,
        "no keyword scan without the rarer value"
    );
    assert!(scanned(&c, &all_of) > 0);

    // A search the rule does not need to hold (here under `not`) keeps all its keywords:
    // skipping the scan would read `script` as absent, and match.
    let unless = rule(
        "unless",
        "  sel:\n    Message|contains: 'ran'\n  keywords:\n    - 'script'\n  condition: sel and not keywords",
    );
    let c = compile(&unless, "");
    assert_eq!(matched(&c, &common), Vec::<String>::new());
    assert_eq!(matched(&c, &ev(r#""Message":"it ran""#)), ["unless"]);
}

/// A value scanned before is answered from the scan memo: the same literal hits (anywhere,
/// at the start, at the end, the whole value, cased or not) and the same candidates, for
/// events of another route too, as a scan without the memo and exhaustive evaluation.
#[test]
fn values_scanned_before_are_answered_from_the_memo_alike() {
    let dns = |id: &str, detection: &str| {
        format!("title: rule {id}\nid: {id}\nlogsource:\n  product: windows\n  category: dns_query\ndetection:\n{detection}\n---\n")
    };
    let rules = rule(
        "contains",
        "  sel:\n    CommandLine|contains: 'invoke-mimikatz'\n  condition: sel",
    ) + &rule(
        "starts",
        "  sel:\n    CommandLine|startswith: 'powershell.exe -enc'\n  condition: sel",
    ) + &rule(
        "ends",
        "  sel:\n    CommandLine|endswith: '-nop -w hidden'\n  condition: sel",
    ) + &rule(
        "whole",
        "  sel:\n    CommandLine: 'cmd.exe /c whoami /all > out.txt'\n  condition: sel",
    ) + &rule(
        "cased",
        "  sel:\n    CommandLine|contains|cased: 'Invoke-Mimikatz'\n  condition: sel",
    ) + &dns(
        "dns",
        "  sel:\n    CommandLine|contains: 'invoke-mimikatz'\n  condition: sel",
    );
    let src = parse_sigma_source("r.yml", &rules);
    assert_eq!(src.diagnostics.error_count(), 0, "{:?}", src.diagnostics);
    let with_slots = |slots| {
        let config = MatchConfig {
            scan_memo_slots: slots,
            ..MatchConfig::default()
        };
        CompiledRules::compile(&src.rules, &[], &[], &profile(), &config).0
    };
    let (remembering, scanning) = (with_slots(64), with_slots(0));
    let command_lines = [
        "powershell.exe -enc AAAA; Invoke-Mimikatz -nop -w hidden",
        "powershell.exe -enc AAAA; invoke-mimikatz -nop -w hidden",
        "cmd.exe /c whoami /all > out.txt",
        "cmd.exe /c whoami /all > out.txt and more",
        "notepad.exe C:\\Users\\Public\\invoke-mimikatz.txt",
    ];
    let routes = [
        r#""Channel":"Microsoft-Windows-Sysmon/Operational","EventID":1"#,
        r#""Channel":"Microsoft-Windows-Sysmon/Operational","EventID":22"#,
    ];
    let mut events = Vec::new();
    for round in 0..3 {
        for (i, line) in command_lines.iter().enumerate() {
            let route = routes[(i + round) % 2];
            events.push(format!(
                "{{{route},\"CommandLine\":{}}}",
                serde_json_string(line)
            ));
        }
    }
    let ids = |c: &CompiledRules, s: &crate::MatchScratch| -> Vec<String> {
        s.matched()
            .iter()
            .map(|&r| c.rules()[r as usize].id.clone())
            .collect()
    };
    let (mut remembered, mut scanned) = (remembering.new_scratch(), scanning.new_scratch());
    let mut idx = EventIndex::new();
    for event in &events {
        let parsed = Event::parse(event.as_bytes(), &mut idx).unwrap();
        remembering.match_event(&parsed, &mut remembered);
        scanning.match_event(&parsed, &mut scanned);
        let answer = ids(&remembering, &remembered);
        assert_eq!(answer, ids(&scanning, &scanned), "{event}");
        assert_eq!(answer, matched(&scanning, event), "{event}");
    }
    // Each distinct value was scanned once; every later event with it was replayed.
    assert_eq!(remembered.stats.memo_replays, 10);
    assert_eq!(scanned.stats.memo_replays, 0);
    assert!(remembered.stats.scanned_bytes < scanned.stats.scanned_bytes);
    // And the replays found something: every rule matched some event.
    let mut every = std::collections::BTreeSet::new();
    let mut s = remembering.new_scratch();
    for event in &events {
        let parsed = Event::parse(event.as_bytes(), &mut idx).unwrap();
        remembering.match_event(&parsed, &mut s);
        every.extend(ids(&remembering, &s));
    }
    assert_eq!(every.len(), 6, "{every:?}");
}

/// A rule for the whole `Security` channel whose detection names event ids.
fn security_rule(id: &str, detection: &str) -> String {
    format!("title: rule {id}\nid: {id}\nlogsource:\n  product: windows\n  service: security\ndetection:\n{detection}\n---\n")
}

/// `events` matched one after the other with one scratch space (so that routing tuples
/// are answered from its cache), each answer checked against exhaustive evaluation; the
/// rule ids matched per event, and the bytes scanned per event.
fn matched_in_turn(c: &CompiledRules, events: &[String]) -> Vec<(Vec<String>, u64)> {
    let mut s = c.new_scratch();
    let mut exhaustive = c.new_scratch();
    let mut idx = EventIndex::new();
    let ids = |s: &crate::MatchScratch| -> Vec<String> {
        s.matched()
            .iter()
            .map(|&r| c.rules()[r as usize].id.clone())
            .collect()
    };
    events
        .iter()
        .map(|e| {
            let event = Event::parse(e.as_bytes(), &mut idx).unwrap();
            let before = s.stats.scanned_bytes;
            c.match_event(&event, &mut s);
            c.match_event_unfiltered(&event, &mut exhaustive);
            assert_eq!(
                ids(&s),
                ids(&exhaustive),
                "prefilter changed the answer on {e}"
            );
            (ids(&s), s.stats.scanned_bytes - before)
        })
        .collect()
}

/// The rule ids of each event of [`matched_in_turn`]'s answer.
fn rule_ids(got: &[(Vec<String>, u64)]) -> Vec<Vec<&str>> {
    got.iter()
        .map(|(ids, _)| ids.iter().map(String::as_str).collect())
        .collect()
}

#[test]
fn rules_their_routing_values_rule_out_are_not_scanned_for() {
    let rules = security_rule(
        "needs",
        "  sel:\n    EventID: 4663\n    ObjectName|contains: 'lsass'\n  condition: sel",
    ) + &security_rule(
        "either",
        "  sel_a:\n    EventID: 4656\n    ObjectName|endswith: '.kdbx'\n  sel_b:\n    EventID: 4663\n    AccessMask: '0x10'\n  condition: 1 of sel_*",
    ) + &security_rule(
        "unless",
        "  sel:\n    ProcessName|contains: 'mimi'\n  filter:\n    EventID: 4658\n  condition: sel and not filter",
    ) + &security_rule(
        "later",
        "  sel:\n    EventID|gte: 5000\n    Application|endswith: 'svchost.exe'\n  condition: sel",
    );
    let c = compile(&rules, "");
    let security = |id: &str| {
        format!(
            r#"{{"Channel":"Security","EventID":{id},"ObjectName":"C:\\lsass\\x.kdbx","ProcessName":"mimi.exe","AccessMask":"0x10","Application":"C:\\svchost.exe"}}"#
        )
    };
    let events = [
        security("4658"),
        security("4663"),
        security("4658"),
        security("\"4656\""),
        security("5156"),
        security("4663"),
        // Without an event id nothing is ruled out, and the tests read the event.
        r#"{"Channel":"Security","ObjectName":"C:\\lsass","ProcessName":"mimi"}"#.to_owned(),
        r#"{"Channel":"Security","EventID":null,"ProcessName":"mimi"}"#.to_owned(),
        r#"{"Channel":"Security","EventID":{"n":4663},"ProcessName":"mimi"}"#.to_owned(),
    ];
    let got = matched_in_turn(&c, &events);
    let ids = rule_ids(&got);
    assert_eq!(
        ids,
        [
            vec![],
            vec!["needs", "either", "unless"],
            vec![],
            vec!["either", "unless"],
            vec!["unless", "later"],
            vec!["needs", "either", "unless"],
            vec!["unless"],
            vec!["unless"],
            vec!["unless"],
        ]
    );
    // Event 4658 rules every rule out: no field is scanned, though each holds a literal.
    assert_eq!(got[0].1, 0, "{:?}", got);
    assert_eq!(got[2].1, 0, "{:?}", got);
    assert!(got[1].1 > 0 && got[3].1 > 0 && got[4].1 > 0, "{got:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Rules that name event ids in every way a condition can (needed, under `not`, in
    /// one alternative of several, compared as numbers, as `null`), beside rules that read
    /// only the event id or none, over events whose ids
    /// are numbers, strings, `null` or missing, in any order through one scratch space:
    /// what routing values rule out is what exhaustive evaluation finds no match for.
    #[test]
    fn routing_values_rule_out_only_rules_that_cannot_match(
        templates in proptest::collection::vec((0usize..10, 0usize..3, 0usize..3), 1..7),
        events in proptest::collection::vec((0usize..6, any::<bool>(), any::<bool>()), 1..10),
    ) {
        let ids = ["4656", "4658", "5156"];
        let rules: String = templates
            .iter()
            .enumerate()
            .map(|(i, &(t, a, b))| {
                let (a, b) = (ids[a], ids[b]);
                let detection = match t {
                    0 => format!("  sel:\n    EventID: {a}\n    ObjectName|contains: 'x'\n  condition: sel"),
                    1 => format!("  sel:\n    ObjectName|contains: 'x'\n  f:\n    EventID: {a}\n  condition: sel and not f"),
                    2 => format!("  a:\n    EventID: {a}\n    ObjectName|contains: 'x'\n  b:\n    EventID|gte: {b}\n    ProcessName|contains: 'y'\n  condition: a or b"),
                    3 => format!("  sel:\n    EventID:\n      - {a}\n      - {b}\n    ObjectName|endswith: 'x'\n  condition: sel"),
                    4 => "  sel:\n    ObjectName|contains: 'x'\n  f:\n    EventID: null\n  condition: sel and not f".to_owned(),
                    5 => format!("  sel:\n    ProcessName|contains: 'y'\n  f:\n    - EventID: {a}\n    - ObjectName: 'bx'\n  condition: sel and not f"),
                    6 => "  sel:\n    EventID: null\n    ProcessName|endswith: 'y'\n  condition: sel".to_owned(),
                    // Rules beside which a field can be left to others: one that reads no
                    // event id, one that reads nothing else, one with no prefilter.
                    7 => "  sel:\n    ObjectName|contains: 'x'\n  condition: sel".to_owned(),
                    8 => format!("  sel:\n    EventID: {a}\n  condition: sel"),
                    _ => format!("  sel:\n    ProcessName|exists: true\n  f:\n    EventID: {a}\n  condition: sel and not f"),
                };
                security_rule(&format!("r{i}"), &detection)
            })
            .collect();
        let c = compile(&rules, "");
        let events: Vec<String> = events
            .iter()
            .map(|&(id, object, process)| {
                let id = match id {
                    0..=2 => format!(r#","EventID":{}"#, ids[id]),
                    3 => r#","EventID":"4658""#.to_owned(),
                    4 => r#","EventID":null"#.to_owned(),
                    _ => String::new(),
                };
                let object = if object { "bx" } else { "b" };
                let process = if process { "y" } else { "z" };
                format!(r#"{{"Channel":"Security"{id},"ObjectName":"{object}","ProcessName":"{process}"}}"#)
            })
            .collect();
        // `matched_in_turn` asserts the agreement.
        matched_in_turn(&c, &events);
    }
}

#[test]
fn literals_of_rules_verified_on_every_event_are_scanned_where_their_field_is() {
    // `host` has no prefilter (its selection holds for every text): it is verified on
    // every event, and its filters' literals are found by the scan of `ContextInfo`,
    // which `other` needs anyway, rather than compared each time.
    let host = (
        "host",
        "  sel:\n    ContextInfo|contains: '*'\n  filter:\n    ContextInfo|contains:\n      - '= powershell'\n      - 'dsac.exe'\n  condition: sel and not filter",
    );
    let other = (
        "other",
        "  sel:\n    ContextInfo|contains: 'mimikatz'\n  condition: sel",
    );
    let c = compile_rules(&[host, other]);
    assert_eq!(c.stats().unfiltered_rules, 1);
    assert_eq!(c.stats().scanned_atoms, 3, "mimikatz and both filters");
    let context = |text: &str, long: bool| {
        ev(&format!(
            "\"ContextInfo\":{}",
            serde_json_string(&lengthened(text.to_owned(), long))
        ))
    };
    for long in [false, true] {
        let m = |text: &str| matched(&c, &context(text, long));
        assert_eq!(
            m("Host Application = PowerShell.exe -nop"),
            Vec::<String>::new()
        );
        assert_eq!(m("Host Application = C:\\dsac.exe"), Vec::<String>::new());
        assert_eq!(m("Host Application = evil.exe"), ["host"]);
        assert_eq!(m("= evil.exe mimikatz"), ["host", "other"]);
    }
    // Alone, `host` leaves the field unscanned: its literals are compared.
    let c = compile_rules(&[host]);
    assert_eq!(c.stats().scanned_atoms, 0);
    assert_eq!(matched(&c, &context("= evil.exe", false)), ["host"]);
    assert_eq!(
        matched(&c, &context("= powershell", true)),
        Vec::<String>::new()
    );
}

/// At event 4658, `only_id`, `present` and `unless` are ruled out, so nothing needs the
/// scan of `EventID` (whose literals `only_id` and, having no prefilter of its own,
/// `present` make scanned); `plain` still needs `ProcessName`, whose hit on `mimi` makes
/// `unless` a candidate. Verified there, `unless` would read `EventID: 4658` as not hit
/// (never scanned for) and match. [`RULED_OUT_ANSWERS`] are its answers for
/// [`mimi_event`]s 4658, 4663, 4658 and 4794 in turn.
fn ruled_out_through_another_field() -> CompiledRules {
    let rules = security_rule("only_id", "  sel:\n    EventID: 4794\n  condition: sel")
        + &security_rule(
            "present",
            "  sel:\n    ProcessName|exists: true\n  filter:\n    EventID: 4658\n  condition: sel and not filter",
        )
        + &security_rule(
            "unless",
            "  sel:\n    ProcessName|contains: 'mimi'\n  filter:\n    EventID: 4658\n  condition: sel and not filter",
        )
        + &security_rule("plain", "  sel:\n    ProcessName|contains: 'mimi'\n  condition: sel");
    compile(&rules, "")
}

/// A Security event of event id `id` whose process is `mimi.exe`.
fn mimi_event(id: u32) -> String {
    format!(r#"{{"Channel":"Security","EventID":{id},"ProcessName":"mimi.exe"}}"#)
}

const RULED_OUT_ANSWERS: [&[&str]; 4] = [
    &["plain"],
    &["present", "unless", "plain"],
    &["plain"],
    &["only_id", "present", "unless", "plain"],
];

#[test]
fn a_rule_its_routing_values_rule_out_is_no_candidate_through_another_field() {
    let c = ruled_out_through_another_field();
    let events = [4658, 4663, 4658, 4794].map(mimi_event);
    assert_eq!(rule_ids(&matched_in_turn(&c, &events)), RULED_OUT_ANSWERS);
}

#[test]
fn past_the_routing_caches_limit_each_event_gets_a_set_of_its_own() {
    // Four thousand and more distinct event ids fill the routing cache; the tuples after
    // that are planned per event and not kept, and answer as the cached ones do (ruled-out
    // rules dropped from the candidates included).
    let c = ruled_out_through_another_field();
    let mut events: Vec<String> = (10_000..14_200).map(mimi_event).collect();
    events.extend([4658, 4663, 4658, 4794].map(mimi_event));
    let got = matched_in_turn(&c, &events);
    let ids = rule_ids(&got);
    assert_eq!(ids[0], ["present", "unless", "plain"]);
    assert_eq!(ids[ids.len() - 4..], RULED_OUT_ANSWERS);
}

/// A keyword search mixing plain keywords with wildcard or regular-expression ones. The
/// presence test over the raw event, which lets the keyword scan be skipped, must look for
/// the literals a wildcard or a regex needs too, or an event holding only such a keyword
/// is missed (SigmaHQ's `lnx_shell_clear_cmd_history` has `'rm *sh_history'` beside
/// `'history -c'`).
#[test]
fn keywords_with_wildcards_or_regexes_are_found_beside_plain_ones() {
    let c = compile_rules(&[
        (
            "mixed",
            "  keywords:\n    - 'history -c'\n    - 'rm *sh_history'\n  condition: keywords",
        ),
        (
            "glob",
            "  keywords:\n    - 'shred *_history'\n  condition: keywords",
        ),
        (
            "regex",
            "  keywords:\n    - 'unset histfile'\n  pattern:\n    '|re': 'export +histfilesize=0'\n  condition: keywords or pattern",
        ),
        (
            "regex_only",
            "  pattern:\n    '|re': 'truncate -s ?0 .*history'\n  condition: pattern",
        ),
        (
            "either",
            "  sel:\n    Image|endswith: '\\bash'\n  keywords:\n    - 'wipe *_history'\n  condition: sel or keywords",
        ),
    ]);
    let cases = [
        ("rm /root/.bash_history", vec!["mixed"]),
        ("history -c", vec!["mixed"]),
        ("shred -u ~/.zsh_history", vec!["glob"]),
        ("export  histfilesize=0", vec!["regex"]),
        ("truncate -s0 ~/.bash_history", vec!["regex_only"]),
        ("unset HISTFILE", vec!["regex"]),
        ("wipe ~/.bash_history", vec!["either"]),
        ("ls -la", vec![]),
    ];
    for (message, want) in cases {
        let event = ev(&format!(r#""Message":"{message}""#));
        assert_eq!(matched(&c, &event), want, "{message}");
    }
}

/// Keywords search the values inside objects and arrays too (ECS events nest their fields:
/// `process.command_line`), wildcard and regex keywords as well as plain ones, each nested
/// value on its own: a wildcard does not span a key and a value, or two values, and keys
/// are not searched (as at the top level).
#[test]
fn keywords_search_nested_values_whatever_their_kind() {
    let c = compile_rules(&[
        (
            "plain",
            "  keywords:\n    - 'mimikatz'\n  condition: keywords",
        ),
        (
            "glob",
            "  keywords:\n    - 'rm *sh_history'\n  condition: keywords",
        ),
        (
            "regex",
            "  pattern:\n    '|re': 'mimi.atz'\n  condition: pattern",
        ),
        (
            "span",
            "  keywords:\n    - 'line*run'\n  condition: keywords",
        ),
    ]);
    for (fields, want) in [
        (
            r#""process":{"command_line":"run mimikatz now"}"#,
            &["plain", "regex"][..],
        ),
        (
            r#""process":{"args":["-f","rm ~/.bash_history"]}"#,
            &["glob"][..],
        ),
        (
            r#""a":[{"b":{"c":["x","rm -f .zsh_history"]}}]"#,
            &["glob"][..],
        ),
        (r#""process":{"command_line":"run"}"#, &[][..]),
        (r#""process":{"args":["rm x","sh_history"]}"#, &[][..]),
        // Keys are not values, nested or not.
        (r#""mimikatz":{"line":{"run":1}}"#, &[][..]),
        (r#""process":{"mimikatz":1}"#, &[][..]),
        // Escapes are read, nested too, and an object whose raw text hides the keyword
        // behind an escape is still walked value by value.
        (
            r#""process":{"args":["\u006dimi\u006batz"]}"#,
            &["plain", "regex"][..],
        ),
    ] {
        assert_eq!(matched(&c, &ev(fields)), want, "{fields}");
    }
}

/// `windash` replaces each flag's dash independently: all the combinations, as the
/// specification asks, so that a command line mixing `-` and `/` (PsExec's `/s -i`) is
/// found by a value written with `-` throughout.
#[test]
fn windash_combines_the_dashes_of_each_flag() {
    let c = compile_rules(&[(
        "psexec",
        "  sel:\n    CommandLine|windash|contains: ' -s -i cmd'\n  condition: sel",
    )]);
    for (command_line, hit) in [
        ("PsExec.exe -s -i cmd", true),
        ("PsExec.exe /s -i cmd", true),
        ("PsExec.exe -s /i cmd", true),
        ("PsExec.exe \\u2013s \\u2015i cmd", true),
        ("PsExec.exe /s /i cmd", true),
        ("PsExec.exe +s -i cmd", false),
    ] {
        let event = ev(&format!(r#""CommandLine":"{command_line}""#));
        let want: &[&str] = if hit { &["psexec"] } else { &[] };
        assert_eq!(matched(&c, &event), want, "{command_line}");
    }
}

/// `exists` asks whether the field is there, "not its value, be it empty or null" (the
/// specification's modifiers appendix).
#[test]
fn exists_holds_for_a_field_whose_value_is_null_or_empty() {
    let c = compile_rules(&[
        ("there", "  sel:\n    Field|exists: true\n  condition: sel"),
        (
            "missing",
            "  sel:\n    Field|exists: false\n  condition: sel",
        ),
    ]);
    for (fields, want) in [
        (r#""Field":null"#, "there"),
        (r#""Field":"""#, "there"),
        (r#""Field":"x""#, "there"),
        (r#""Field":{"a":1}"#, "there"),
        (r#""Other":"x""#, "missing"),
    ] {
        assert_eq!(matched(&c, &ev(fields)), [want], "{fields}");
    }
}

/// A JSON `null` has no text: only the `null` test holds for it, not a regular expression
/// that matches the empty text, nor a field reference to or from it (pySigma's SQLite
/// backend, where a `null` is absent, agrees).
#[test]
fn a_null_has_no_text_for_any_test() {
    let c = compile_rules(&[
        ("empty-re", "  sel:\n    A|re: '^$'\n  condition: sel"),
        ("same", "  sel:\n    A|fieldref: B\n  condition: sel"),
        (
            "holds",
            "  sel:\n    A|fieldref|contains: B\n  condition: sel",
        ),
        ("nothing", "  sel:\n    A: null\n  condition: sel"),
    ]);
    for (fields, want) in [
        (r#""A":null,"B":null"#, &["nothing"][..]),
        (r#""A":"x","B":null"#, &[][..]),
        (r#""A":null,"B":"""#, &["nothing"][..]),
        (
            r#""A":"","B":"""#,
            &["empty-re", "same", "holds", "nothing"][..],
        ),
        (r#""A":"xyz","B":"y""#, &["holds"][..]),
    ] {
        assert_eq!(matched(&c, &ev(fields)), want, "{fields}");
    }
}

/// "All values are treated as case-insensitive strings": letters outside ASCII too, as in
/// the accounts of a localised Windows (`AUTORITE NT\Système`, `NT AUTHORITY\СИСТЕМА`),
/// which SigmaHQ rules name; `cased` still compares as written.
#[test]
fn letters_outside_ascii_match_in_either_case() {
    let c = compile_rules(&[
        (
            "fr",
            "  sel:\n    User|endswith: '\\Système'\n  condition: sel",
        ),
        (
            "ru",
            "  sel:\n    User|contains: 'СИСТЕМА'\n  condition: sel",
        ),
        (
            "glob",
            "  sel:\n    CommandLine: '*net* localgroup administratör*'\n  condition: sel",
        ),
        (
            "cased",
            "  sel:\n    User|contains|cased: 'Système'\n  condition: sel",
        ),
    ]);
    for (fields, want) in [
        (r#""User":"AUTORITE NT\\SYSTÈME""#, vec!["fr"]),
        (r#""User":"AUTORITE NT\\système""#, vec!["fr"]),
        (r#""User":"AUTORITE NT\\Système""#, vec!["fr", "cased"]),
        (r#""User":"AUTORITE NT\\Syst\u00e8me""#, vec!["fr", "cased"]),
        (r#""User":"AUTORITE NT\\Systeme""#, vec![]),
        (r#""User":"AUTORITE NT\\Système x""#, vec!["cased"]),
        (r#""User":"NT AUTHORITY\\система""#, vec!["ru"]),
        (
            r#""CommandLine":"NET.EXE LOCALGROUP ADMINISTRATÖR eve /add""#,
            vec!["glob"],
        ),
        (
            r#""CommandLine":"net localgroup administrator eve /add""#,
            vec![],
        ),
    ] {
        assert_eq!(matched(&c, &ev(fields)), want, "{fields}");
    }
    // A field compared with another, too.
    let c = compile_rules(&[
        (
            "same",
            "  sel:\n    User|fieldref: TargetUser\n  condition: sel",
        ),
        (
            "ends",
            "  sel:\n    User|fieldref|endswith: TargetUser\n  condition: sel",
        ),
        (
            "cased",
            "  sel:\n    User|fieldref|cased: TargetUser\n  condition: sel",
        ),
    ]);
    for (fields, want) in [
        (
            r#""User":"AUTORITE NT\\SYSTÈME","TargetUser":"autorite nt\\système""#,
            vec!["same", "ends"],
        ),
        (
            r#""User":"AUTORITE NT\\SYSTÈME","TargetUser":"Système""#,
            vec!["ends"],
        ),
        (
            r#""User":"NT AUTHORITY\\система","TargetUser":"NT AUTHORITY\\система""#,
            vec!["same", "ends", "cased"],
        ),
        (
            r#""User":"AUTORITE NT\\SYSTÈME","TargetUser":"Systeme""#,
            vec![],
        ),
    ] {
        assert_eq!(matched(&c, &ev(fields)), want, "{fields}");
    }
}

/// A whole number written as a float (`4242.0`) is that number, as pySigma reads it, and
/// matches the text events write (`4242`); other floats keep their text.
#[test]
fn a_whole_number_written_as_a_float_is_that_number() {
    let c = compile_rules(&[(
        "f",
        "  sel:\n    ProcessId: 4242.0\n    Version: 1.5\n  condition: sel",
    )]);
    let none = Vec::<String>::new();
    assert_eq!(
        matched(&c, &ev(r#""ProcessId":4242,"Version":"1.5""#)),
        ["f"]
    );
    assert_eq!(
        matched(&c, &ev(r#""ProcessId":"4242","Version":1.5"#)),
        ["f"]
    );
    assert_eq!(matched(&c, &ev(r#""ProcessId":42420,"Version":1.5"#)), none);
    assert_eq!(
        matched(&c, &ev(r#""ProcessId":4242,"Version":"1.50""#)),
        none
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Keyword searches of plain, wildcard and regex keywords, needed by their rule or not,
    /// beside another rule's plain keywords on the same route (so that the keyword
    /// presence test has something to skip by): the prefiltered answer is the exhaustive
    /// one. (Wildcard keywords beside plain ones once lost matches here.)
    #[test]
    fn keyword_searches_agree_with_exhaustive_matching(
        keywords in proptest::collection::vec("[ab]{1,3}(\\*[ab]{1,3})?", 1..4),
        pattern in proptest::option::of("[ab]{2,3}\\.?[ab]{0,2}"),
        condition in 0usize..5,
        message in "[abz. ]{0,14}",
        image in "[ab]{0,3}",
    ) {
        const CONDITIONS: [&str; 5] = [
            "keywords",
            "keywords or sel",
            "keywords and sel",
            "sel and not keywords",
            "sel or not keywords",
        ];
        let pattern = pattern.map_or(String::new(), |p| {
            format!("  pattern:\n    '|re': '{p}'\n")
        });
        let with_pattern = if pattern.is_empty() { "" } else { " or pattern" };
        let detection = format!(
            "  keywords:\n{}{pattern}  sel:\n    Image|endswith: 'a'\n  condition: ({}){with_pattern}",
            keywords.iter().map(|k| format!("    - '{k}'\n")).collect::<String>(),
            CONDITIONS[condition],
        );
        let rules = [rule("r", &detection), rule("other", "  keywords:\n    - 'zz'\n  condition: keywords")].concat();
        let src = parse_sigma_source("r.yml", &rules);
        prop_assume!(src.diagnostics.error_count() == 0);
        let (c, _) = CompiledRules::compile(&src.rules, &[], &[], &profile(), &MatchConfig::default());
        let event = ev(&format!(r#""Message":"{message}","Image":"{image}""#));
        let _ = matched(&c, &event);
    }
}
