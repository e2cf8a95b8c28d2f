//! Indicator feeds: MISP events and feeds, STIX 2.1 bundles, CSV, plain lists, and the
//! normalisation they share.
//!
//! The fixtures under `tests/fixtures/feeds/` were written for these tests from the formats'
//! public specifications (MISP core format RFC, STIX 2.1 and its pattern grammar, RFC 4180);
//! each holds the cases a reader must get right, good and bad. With `TOCSIN_TEST_DATA` set,
//! the real STIX example bundles and the IPsum list are loaded as well.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tocsin_core::{IndicatorType, Timestamp, Tlp};
use tocsin_rules::feeds::{
    detect_format, parse_feed, parse_misp_feed, CsvColumn, CsvOptions, FeedFormat, FeedLimits,
    FeedOptions,
};
use tocsin_rules::ioc::normalise;
use tocsin_rules::{Diagnostic, Indicator, Severity};

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/feeds")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not found"));
    text[..at].matches('\n').count() + 1
}

fn find<'a>(indicators: &'a [Indicator], kind: IndicatorType, value: &str) -> &'a Indicator {
    indicators
        .iter()
        .find(|i| i.kind == kind && i.value == value)
        .unwrap_or_else(|| panic!("no {kind:?} {value} in {:#?}", values(indicators)))
}

fn values(indicators: &[Indicator]) -> Vec<(IndicatorType, &str)> {
    indicators
        .iter()
        .map(|i| (i.kind, i.value.as_str()))
        .collect()
}

fn codes(diagnostics: &[Diagnostic]) -> Vec<(Severity, &'static str)> {
    diagnostics.iter().map(|d| (d.severity, d.code)).collect()
}

// ---------------------------------------------------------------------------------------
// Formats

#[test]
fn format_names_parse() {
    for (name, format) in [
        ("misp", FeedFormat::Misp),
        ("STIX", FeedFormat::Stix),
        ("csv", FeedFormat::Csv),
        ("plain", FeedFormat::Plain),
    ] {
        assert_eq!(name.parse::<FeedFormat>(), Ok(format));
        assert_eq!(format.as_str().parse::<FeedFormat>(), Ok(format));
    }
    let error = "yaml".parse::<FeedFormat>().expect_err("unknown");
    assert!(
        error.to_string().contains("misp, stix, csv or plain"),
        "{error}"
    );
}

#[test]
fn formats_are_detected() {
    assert_eq!(
        detect_format("e.json", &fixture("misp-event.json")),
        Some(FeedFormat::Misp)
    );
    assert_eq!(
        detect_format("x", "{\"response\": [{\"Event\": {}}]}"),
        Some(FeedFormat::Misp)
    );
    assert_eq!(
        detect_format("b.json", &fixture("stix-bundle.json")),
        Some(FeedFormat::Stix)
    );
    // A MISP manifest and other JSON are none of them.
    assert_eq!(
        detect_format("manifest.json", &fixture("misp-feed/manifest.json")),
        None
    );
    assert_eq!(detect_format("x.json", "{\"type\": \"campaign\"}"), None);
    assert_eq!(detect_format("x.json", "{\"type\": 5}"), None);
    // Broken JSON still goes to the reader that will say where it breaks.
    assert_eq!(
        detect_format("x.json", "{\"type\": \"bundle\", \"objects\": ["),
        Some(FeedFormat::Stix)
    );
    assert_eq!(
        detect_format("x.json", "\u{feff}{\"Event\": {\"uuid\": "),
        Some(FeedFormat::Misp)
    );
    assert_eq!(
        detect_format("export.CSV", "203.0.113.1\n"),
        Some(FeedFormat::Csv)
    );
    assert_eq!(
        detect_format("partner.txt", &fixture("indicators.csv")),
        Some(FeedFormat::Csv)
    );
    assert_eq!(
        detect_format("iocs.txt", "# list\n203.0.113.1\nevil.example\n"),
        Some(FeedFormat::Plain)
    );
    assert_eq!(detect_format("empty", ""), Some(FeedFormat::Plain));
}

// ---------------------------------------------------------------------------------------
// MISP

#[test]
fn misp_event_with_objects_tags_and_bad_attributes() {
    let text = fixture("misp-event.json");
    let (iocs, problems) = parse_feed(
        "misp-event.json",
        &text,
        FeedFormat::Misp,
        &FeedOptions::named("cert-example"),
    );
    let event = "5e9c2f4a-1b2c-4d3e-8f90-a1b2c3d4e5f6";
    assert_eq!(
        values(&iocs),
        vec![
            (IndicatorType::Ipv4, "203.0.113.7"),
            (IndicatorType::Ipv4, "198.51.100.0/24"),
            (IndicatorType::Domain, "c2.evil.example"),
            (IndicatorType::Ipv4, "192.0.2.5"),
            (
                IndicatorType::Sha256,
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            ),
            (IndicatorType::Filename, "invoice.exe"),
            (
                IndicatorType::Url,
                "http://evil.example/~user/%2Fgate.php?q=%3A"
            ),
            (IndicatorType::Ipv6, "2001:db8::1"),
            (IndicatorType::Email, "billing@evil.example"),
            (IndicatorType::Domain, "xn--bcher-c2-65a.example"),
            (IndicatorType::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            (
                IndicatorType::Sha1,
                "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
            ),
            (IndicatorType::Filename, "loader.dll"),
        ]
    );
    assert!(iocs.iter().all(|i| i.feed == "cert-example"));

    // TLP: the event's tag, an attribute's own tag, the most restrictive of several, WHITE.
    let first = &iocs[0];
    assert_eq!(first.tlp, Tlp::Amber);
    assert_eq!(
        first.source_id.as_deref(),
        Some(format!("{event}/a0000000-0000-4000-8000-000000000000").as_str())
    );
    assert_eq!(
        first.tags,
        vec!["tlp:amber", "rsit:malicious-code=\"c2-server\""]
    );
    assert_eq!(first.valid_from, None);
    assert_eq!(first.valid_until, None);
    assert_eq!(
        first.location.line,
        line_of(&text, "a0000000-0000-4000-8000-000000000000")
    );
    assert_eq!(
        find(&iocs, IndicatorType::Url, &iocs[6].value).tlp,
        Tlp::Red
    );
    assert_eq!(
        find(
            &iocs,
            IndicatorType::Md5,
            "d41d8cd98f00b204e9800998ecf8427e"
        )
        .tlp,
        Tlp::AmberStrict
    );
    let email = find(&iocs, IndicatorType::Email, "billing@evil.example");
    assert_eq!(email.tlp, Tlp::Clear);
    assert_eq!(email.tags.last().map(String::as_str), Some("tlp:white"));
    // first_seen is the start of validity; last_seen is not an expiry, the expiration
    // sighting is.
    assert_eq!(
        email.valid_from,
        Some(Timestamp::from_civil(2026, 2, 20, 8, 30, 0))
    );
    assert_eq!(email.valid_until, Some(Timestamp(1_775_000_000_000)));
    // Both halves of a composite share the attribute's id.
    let domain = find(&iocs, IndicatorType::Domain, "c2.evil.example");
    let address = find(&iocs, IndicatorType::Ipv4, "192.0.2.5");
    assert_eq!(domain.source_id, address.source_id);
    // Attributes in objects take the event's TLP and tags.
    let in_object = find(&iocs, IndicatorType::Filename, "loader.dll");
    assert_eq!(in_object.tlp, Tlp::Amber);
    assert_eq!(
        in_object.source_id.as_deref(),
        Some(format!("{event}/b0000000-0000-4000-8000-000000000002").as_str())
    );

    // Skipped: to_ids false, deleted attribute, deleted object.
    for skipped in ["benign-cdn.example", "192.0.2.99", "revoked.example"] {
        assert!(iocs.iter().all(|i| i.value != skipped), "{skipped} loaded");
    }

    assert_eq!(
        codes(&problems),
        vec![
            (Severity::Warning, "unsupported-type"),
            (Severity::Error, "bad-indicator"),
            (Severity::Error, "bad-indicator"),
        ],
        "{problems:#?}"
    );
    assert!(problems[0].message.contains("Event.Attribute[5]"));
    assert!(problems[0].message.contains("'regkey'"));
    assert_eq!(
        problems[0].location.line,
        line_of(&text, "a0000000-0000-4000-8000-000000000005")
    );
    assert!(problems[1].message.contains("Event.Attribute[8]"));
    assert!(problems[1].message.contains("300.1.2.3"));
    assert!(problems[2].message.contains("Event.Attribute[12]"));
    assert!(problems[2].message.contains("10.0.0.0/33"));
    assert_eq!(problems[2].location.file, "misp-event.json");
    assert_eq!(
        problems[2].location.line,
        line_of(&text, "a0000000-0000-4000-8000-00000000000c")
    );
}

#[test]
fn misp_non_ids_attributes_load_on_request() {
    let options = FeedOptions {
        include_non_ids: true,
        ..FeedOptions::named("f")
    };
    let (iocs, problems) = parse_feed(
        "e.json",
        &fixture("misp-event.json"),
        FeedFormat::Misp,
        &options,
    );
    assert_eq!(iocs.len(), 14);
    find(&iocs, IndicatorType::Domain, "benign-cdn.example");
    // The object's size-in-bytes attribute now counts, and is not an indicator type.
    assert_eq!(problems.len(), 4);
    assert!(problems.iter().any(
        |d| d.message.contains("Event.Object[0].Attribute[2]") && d.code == "unsupported-type"
    ));
}

#[test]
fn misp_response_wrapper_lists_and_defaults() {
    let text = r#"{"response": [
        {"Event": {"uuid": "e1", "Attribute": [{"uuid": "a1", "type": "domain", "value": "one.example", "to_ids": "1"}]}},
        {"Event": {"uuid": "e2", "Tag": [{"name": "TLP:RED"}], "Attribute": [{"uuid": "a2", "type": "sha512", "value": "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789", "to_ids": true}]}},
        {"NotAnEvent": {}},
        {"Event": {"uuid": "e3", "Attribute": [{"uuid": "a3", "type": "uri", "value": "/gate.php", "to_ids": true}, {"uuid": "a4", "value": "x"}, {"uuid": "a5", "type": "ip-src", "value": ""}, 7]}}
    ]}"#;
    let options = FeedOptions {
        default_tlp: Tlp::Amber,
        ..FeedOptions::named("search")
    };
    let (iocs, problems) = parse_feed("search.json", text, FeedFormat::Misp, &options);
    assert_eq!(iocs.len(), 2, "{iocs:#?}");
    assert_eq!(iocs[0].tlp, Tlp::Amber, "the feed default");
    assert_eq!(iocs[0].source_id.as_deref(), Some("e1/a1"));
    assert_eq!(iocs[1].tlp, Tlp::Red);
    assert_eq!(iocs[1].kind, IndicatorType::Sha512);
    let messages: Vec<&str> = problems.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(problems.len(), 5, "{messages:#?}");
    assert!(messages[0].starts_with("response[2]"));
    assert!(messages[1].contains("response[3].Event.Attribute[0] (uri)"));
    assert!(messages[1].contains("not an absolute URL"));
    assert!(messages[2].contains("has no type"));
    assert!(messages[3].contains("has no value"));
    assert!(messages[4].contains("Attribute[3]: an attribute must be an object"));

    // An attribute search, and a bare list of events.
    let attributes = r#"{"response": {"Attribute": [{"uuid": "a9", "type": "ip-dst", "value": "2001:db8::/32", "to_ids": true, "Tag": [{"name": "tlp:clear"}]}]}}"#;
    let (iocs, problems) = parse_feed("a.json", attributes, FeedFormat::Misp, &options);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(values(&iocs), vec![(IndicatorType::Ipv6, "2001:db8::/32")]);
    assert_eq!(iocs[0].tlp, Tlp::Clear);
    assert_eq!(iocs[0].source_id.as_deref(), Some("a9"));
    let list =
        r#"[{"Event": {"Attribute": [{"type": "hostname|port", "value": "c2.example|8443"}]}}]"#;
    assert_eq!(detect_format("l.json", list), Some(FeedFormat::Misp));
    let (iocs, problems) = parse_feed("l.json", list, FeedFormat::Misp, &options);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(values(&iocs), vec![(IndicatorType::Domain, "c2.example")]);
    assert_eq!(iocs[0].source_id, None);
}

#[test]
fn misp_broken_json_is_one_error_with_its_position() {
    let (iocs, problems) = parse_feed(
        "cut.json",
        "{\"Event\": {\n  \"Attribute\": [\n    {\"type\": ",
        FeedFormat::Misp,
        &FeedOptions::default(),
    );
    assert!(iocs.is_empty());
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].code, "bad-json");
    assert_eq!(problems[0].location.line, 3);
    let (_, problems) = parse_feed(
        "x.json",
        "[1, 2]",
        FeedFormat::Misp,
        &FeedOptions::default(),
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
    let (_, problems) = parse_feed(
        "x.json",
        "\"Event\"",
        FeedFormat::Misp,
        &FeedOptions::default(),
    );
    assert_eq!(problems[0].code, "bad-misp");
}

fn read_feed_dir(dir: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(fixture_path(dir))
        .expect("fixture dir")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            (
                format!("{dir}/{}", path.file_name().unwrap().to_string_lossy()),
                text,
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn misp_feed_directory_with_a_missing_event() {
    let files = read_feed_dir("misp-feed");
    let (iocs, problems) = parse_misp_feed(&files, &FeedOptions::default());
    assert_eq!(
        values(&iocs),
        vec![
            (IndicatorType::Ipv4, "203.0.113.50"),
            (IndicatorType::Ipv4, "203.0.113.51"),
            (IndicatorType::Domain, "login-portal.example"),
            (IndicatorType::Url, "https://login-portal.example/"),
        ]
    );
    assert!(
        iocs.iter().all(|i| i.feed == "misp-feed"),
        "the directory names the feed"
    );
    assert_eq!(iocs[0].tlp, Tlp::Green);
    assert_eq!(iocs[2].tlp, Tlp::Clear);
    assert_eq!(
        iocs[0].location.file,
        "misp-feed/7b3e1a90-0c1d-4e2f-9a3b-4c5d6e7f8091.json"
    );
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let missing = &problems[0];
    assert_eq!(missing.code, "missing-event");
    assert!(missing.is_error());
    assert_eq!(missing.location.file, "misp-feed/manifest.json");
    assert_eq!(
        missing.location.line,
        line_of(&fixture("misp-feed/manifest.json"), "9d503c12")
    );
    assert!(missing
        .message
        .contains("9d503c12-2e3f-4041-9c5d-6e7f80910213.json is missing"));

    // An event file the manifest does not list is skipped; a lost manifest still loads.
    let mut extra = files.clone();
    extra.push((
        "misp-feed/00000000-0000-4000-8000-00000000abcd.json".to_owned(),
        r#"{"Event": {"Attribute": [{"type": "domain", "value": "unlisted.example"}]}}"#.to_owned(),
    ));
    let (iocs, problems) = parse_misp_feed(&extra, &FeedOptions::named("partner"));
    assert_eq!(iocs.len(), 4);
    assert!(iocs.iter().all(|i| i.feed == "partner"));
    assert!(problems.iter().any(|d| d.code == "unlisted-event"));
    let without_manifest: Vec<_> = extra
        .into_iter()
        .filter(|(name, _)| !name.ends_with("manifest.json"))
        .collect();
    let (iocs, problems) = parse_misp_feed(&without_manifest, &FeedOptions::default());
    assert_eq!(iocs.len(), 5);
    assert_eq!(
        codes(&problems),
        vec![(Severity::Error, "missing-manifest")]
    );
    assert_eq!(problems[0].location.file, "misp-feed/manifest.json");
    // A broken manifest is reported, and the events still load.
    let mut broken = files.clone();
    for (name, text) in &mut broken {
        if name.ends_with("manifest.json") {
            *text = "{\"7b3e".to_owned();
        }
    }
    let (iocs, problems) = parse_misp_feed(&broken, &FeedOptions::default());
    assert_eq!(iocs.len(), 4);
    assert_eq!(codes(&problems), vec![(Severity::Error, "bad-manifest")]);
}

// ---------------------------------------------------------------------------------------
// STIX

#[test]
fn stix_bundle_subset_markings_and_unsupported_patterns() {
    let text = fixture("stix-bundle.json");
    let (iocs, problems) = parse_feed(
        "stix-bundle.json",
        &text,
        FeedFormat::Stix,
        &FeedOptions::named("partner-stix"),
    );
    assert_eq!(
        values(&iocs),
        vec![
            (IndicatorType::Ipv4, "203.0.113.10"),
            (IndicatorType::Ipv4, "198.51.100.0/24"),
            (IndicatorType::Ipv6, "2001:db8::10"),
            (
                IndicatorType::Sha256,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ),
            (IndicatorType::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            (IndicatorType::Filename, "invoice.pdf.exe"),
            (
                IndicatorType::Url,
                "https://download.example/payload-v2.bin"
            ),
            (IndicatorType::Domain, "mixed-marking.example"),
            (IndicatorType::Domain, "xn--80ak6aa92e.com"),
            (IndicatorType::Domain, "xn--e1afmkfd.xn--p1ai"),
            (IndicatorType::Email, "ceo.fraud@phish.example"),
        ]
    );
    let first = &iocs[0];
    let id1 = "indicator--01000000-0000-4000-8000-000000000001";
    assert_eq!(first.source_id.as_deref(), Some(id1));
    assert_eq!(first.tlp, Tlp::AmberStrict, "TLP 2.0 marking");
    assert_eq!(first.confidence, Some(85));
    assert_eq!(first.tags, vec!["c2", "ransomware", "malicious-activity"]);
    assert_eq!(
        first.valid_from,
        Some(Timestamp::from_civil(2026, 3, 1, 0, 0, 0))
    );
    assert_eq!(
        first.valid_until,
        Some(Timestamp::from_civil(2026, 6, 1, 0, 0, 0))
    );
    assert_eq!(
        first.location.line,
        line_of(&text, &format!("\"id\": \"{id1}\""))
    );
    assert_eq!(iocs[3].tlp, Tlp::Green, "TLP 1.0 GREEN");
    assert_eq!(iocs[3].confidence, None);
    assert_eq!(
        iocs[7].tlp,
        Tlp::Amber,
        "WHITE and AMBER: the more restrictive"
    );
    assert_eq!(
        iocs[8].tlp,
        Tlp::Red,
        "a TLP marking-definition in the bundle"
    );
    assert_eq!(iocs[10].tlp, Tlp::Red, "a granular TLP 2.0 marking");
    assert!(iocs.iter().all(|i| i.value != "192.0.2.200"), "revoked");

    assert_eq!(
        codes(&problems),
        vec![
            (Severity::Warning, "unsupported-pattern"),
            (Severity::Warning, "unsupported-pattern"),
            (Severity::Warning, "unsupported-pattern"),
            (Severity::Warning, "unsupported-pattern"),
            (Severity::Error, "bad-pattern"),
        ],
        "{problems:#?}"
    );
    let expectations = [
        ("000000000003", "AND"),
        ("000000000004", "FOLLOWEDBY"),
        ("000000000005", "the WITHIN qualifier"),
        ("000000000009", "pattern_type 'snort'"),
        ("00000000000a", "expected ']'"),
    ];
    for (problem, (id, what)) in problems.iter().zip(expectations) {
        let id = format!("indicator--01000000-0000-4000-8000-{id}");
        assert!(problem.message.contains(&id), "{problem}");
        assert!(problem.message.contains(what), "{problem}");
        assert_eq!(
            problem.location.line,
            line_of(&text, &format!("\"id\": \"{id}\""))
        );
    }
}

#[test]
fn stix_without_markings_takes_the_default_and_bad_fields_warn() {
    let bundle = r#"{"type": "bundle", "id": "bundle--1", "objects": [
        {"type": "indicator", "id": "indicator--a", "pattern": "[domain-name:value = 'x.example']", "valid_from": "yesterday", "confidence": 300, "object_marking_refs": ["marking-definition--unknown"]},
        {"type": "indicator", "id": "indicator--b", "pattern": "[domain-name:value = 'not a domain' OR domain-name:value = 'y.example']", "valid_from": "2026-03-01T00:00:00Z"},
        {"type": "indicator", "id": "indicator--c"},
        "junk"
    ]}"#;
    let options = FeedOptions {
        default_tlp: Tlp::Amber,
        ..FeedOptions::named("s")
    };
    let (iocs, problems) = parse_feed("s.json", bundle, FeedFormat::Stix, &options);
    assert_eq!(
        values(&iocs),
        vec![
            (IndicatorType::Domain, "x.example"),
            (IndicatorType::Domain, "y.example")
        ]
    );
    assert!(iocs.iter().all(|i| i.tlp == Tlp::Amber));
    assert_eq!(iocs[0].valid_from, None);
    assert_eq!(iocs[0].confidence, None);
    assert_eq!(
        codes(&problems),
        vec![
            (Severity::Warning, "bad-timestamp"),
            (Severity::Warning, "bad-confidence"),
            (Severity::Error, "bad-indicator"),
            (Severity::Error, "bad-stix"),
            (Severity::Error, "bad-stix"),
        ],
        "{problems:#?}"
    );
    assert!(problems[2].message.contains("indicator--b"));
    assert!(problems[2].message.contains("'not a domain'"));

    let (_, problems) = parse_feed(
        "c.json",
        r#"{"type": "campaign"}"#,
        FeedFormat::Stix,
        &options,
    );
    assert_eq!(codes(&problems), vec![(Severity::Error, "bad-stix")]);
}

// ---------------------------------------------------------------------------------------
// CSV

#[test]
fn csv_with_a_misp_type_column() {
    let text = fixture("misp-export.csv");
    let (iocs, problems) = parse_feed(
        "misp-export.csv",
        &text,
        FeedFormat::Csv,
        &FeedOptions::named("csv"),
    );
    assert_eq!(
        values(&iocs),
        vec![
            (IndicatorType::Ipv4, "203.0.113.80"),
            (IndicatorType::Domain, "update.example"),
            (IndicatorType::Ipv4, "203.0.113.81"),
            (
                IndicatorType::Sha1,
                "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
            ),
            (IndicatorType::Filename, "setup (1).exe"),
            (
                IndicatorType::Url,
                "http://203.0.113.80:8080/index.php?id=~1"
            ),
        ]
    );
    assert_eq!(
        iocs[0].source_id.as_deref(),
        Some("e0000000-0000-4000-8000-000000000001")
    );
    assert_eq!(iocs[0].location.line, 2);
    assert!(iocs.iter().all(|i| i.tlp == Tlp::Green));
    assert_eq!(
        codes(&problems),
        vec![
            (Severity::Error, "bad-indicator"),
            (Severity::Warning, "unsupported-type"),
        ]
    );
    assert_eq!(problems[0].location.line, 3);
    assert_eq!(problems[1].location.line, 6);
    assert!(problems[1].message.contains("'mutex'"));
}

#[test]
fn csv_without_a_type_column() {
    let (iocs, problems) = parse_feed(
        "indicators.csv",
        &fixture("indicators.csv"),
        FeedFormat::Csv,
        &FeedOptions::named("partner"),
    );
    assert_eq!(
        values(&iocs),
        vec![
            (IndicatorType::Domain, "evil-login.example"),
            (IndicatorType::Ipv4, "198.51.100.23"),
            (IndicatorType::Url, "https://evil-login.example/reset"),
            (IndicatorType::Md5, "44d88612fea8a8f36de82e1278abb02f"),
        ]
    );
    let tlps: Vec<Tlp> = iocs.iter().map(|i| i.tlp).collect();
    assert_eq!(tlps, vec![Tlp::Amber, Tlp::Green, Tlp::Red, Tlp::Clear]);
    assert_eq!(iocs[0].location.line, 3, "comment and header lines count");
    let lines: Vec<usize> = problems.iter().map(|d| d.location.line).collect();
    assert_eq!(lines, vec![6, 8, 9], "{problems:#?}");
    assert!(problems.iter().all(Diagnostic::is_error));
    assert_eq!(problems[2].code, "bad-tlp");
}

#[test]
fn csv_options_fixed_type_index_and_errors() {
    let text = "host;seen\n\"evil.example\";3\n\"a;b.example\";1\n";
    let options = FeedOptions {
        csv: CsvOptions {
            value_column: CsvColumn::Named("HOST".to_owned()),
            fixed_type: Some(IndicatorType::Domain),
            delimiter: b';',
            ..CsvOptions::default()
        },
        ..FeedOptions::named("c")
    };
    let (iocs, problems) = parse_feed("h.txt", text, FeedFormat::Csv, &options);
    assert_eq!(values(&iocs), vec![(IndicatorType::Domain, "evil.example")]);
    assert_eq!(codes(&problems), vec![(Severity::Error, "bad-indicator")]);
    assert_eq!(problems[0].location.line, 3);

    // A configured column that is not there skips the file with one error.
    let missing = FeedOptions {
        csv: CsvOptions {
            type_column: Some(CsvColumn::Named("kind".to_owned())),
            ..CsvOptions::default()
        },
        ..FeedOptions::named("c")
    };
    let (iocs, problems) = parse_feed("m.csv", "value\nevil.example\n", FeedFormat::Csv, &missing);
    assert!(iocs.is_empty());
    assert_eq!(codes(&problems), vec![(Severity::Error, "bad-csv-columns")]);
    let (iocs, problems) = parse_feed(
        "n.csv",
        "domain,seen\nevil.example,1\n",
        FeedFormat::Csv,
        &FeedOptions::default(),
    );
    assert!(iocs.is_empty());
    assert!(
        problems[0].message.contains("no value column"),
        "{problems:#?}"
    );

    // No header: columns by index.
    let options = FeedOptions {
        csv: CsvOptions {
            value_column: CsvColumn::Index(1),
            type_column: Some(CsvColumn::Index(0)),
            has_header: false,
            ..CsvOptions::default()
        },
        ..FeedOptions::named("c")
    };
    let (iocs, problems) = parse_feed(
        "i.csv",
        "sha256,E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\nip-dst,2001:db8::5\nshort\n",
        FeedFormat::Csv,
        &options,
    );
    assert_eq!(iocs.len(), 2, "{iocs:#?}");
    assert_eq!(iocs[1].value, "2001:db8::5");
    assert_eq!(codes(&problems), vec![(Severity::Error, "bad-indicator")]);
    assert_eq!(problems[0].location.line, 3);
}

// ---------------------------------------------------------------------------------------
// Plain lists through parse_feed

#[test]
fn plain_lists_take_the_feed_default_unless_they_say() {
    let options = FeedOptions {
        default_tlp: Tlp::Red,
        ..FeedOptions::named("named")
    };
    let (iocs, problems) = parse_feed(
        "p.txt",
        "evil.example\nhttp://EVIL.example/\n",
        FeedFormat::Plain,
        &options,
    );
    assert!(problems.is_empty());
    assert!(iocs.iter().all(|i| i.tlp == Tlp::Red && i.feed == "named"));
    assert_eq!(iocs[1].value, "http://evil.example/");
    let (iocs, _) = parse_feed(
        "p.txt",
        "#! tlp: clear\nevil.example\n",
        FeedFormat::Plain,
        &options,
    );
    assert_eq!(iocs[0].tlp, Tlp::Clear);
    // The file name names an unnamed feed.
    let (iocs, _) = parse_feed(
        "dir/cert-x.txt",
        "evil.example\n",
        FeedFormat::Plain,
        &FeedOptions::default(),
    );
    assert_eq!(iocs[0].feed, "cert-x");
}

// ---------------------------------------------------------------------------------------
// Limits

#[test]
fn limits_cut_feeds_with_a_diagnostic() {
    let limits = FeedLimits {
        max_indicators: 2,
        max_value_bytes: 40,
    };
    let options = FeedOptions {
        limits,
        ..FeedOptions::named("l")
    };
    let long = format!("http://evil.example/{}", "a".repeat(40));
    let plain = format!("a.example\n{long}\nb.example\nc.example\nd.example\n");
    for format in [FeedFormat::Plain, FeedFormat::Csv] {
        let text = if format == FeedFormat::Csv {
            format!("value\n{plain}")
        } else {
            plain.clone()
        };
        let (iocs, problems) = parse_feed("l.txt", &text, format, &options);
        assert_eq!(iocs.len(), 2, "{format}: {iocs:#?}");
        assert_eq!(
            codes(&problems),
            vec![
                (Severity::Error, "value-too-long"),
                (Severity::Error, "feed-limit")
            ],
            "{format}"
        );
    }
    let (iocs, problems) = parse_feed(
        "e.json",
        &fixture("misp-event.json"),
        FeedFormat::Misp,
        &options,
    );
    assert_eq!(iocs.len(), 2);
    let limit_hits =
        |problems: &[Diagnostic]| problems.iter().filter(|d| d.code == "feed-limit").count();
    assert_eq!(limit_hits(&problems), 1);
    let (iocs, problems) = parse_feed(
        "b.json",
        &fixture("stix-bundle.json"),
        FeedFormat::Stix,
        &options,
    );
    assert_eq!(iocs.len(), 2);
    assert_eq!(limit_hits(&problems), 1);
    let (iocs, problems) = parse_misp_feed(&read_feed_dir("misp-feed"), &options);
    assert_eq!(iocs.len(), 2);
    assert_eq!(limit_hits(&problems), 1);
    assert_eq!(FeedLimits::default().max_indicators, 10_000_000);
    assert_eq!(FeedLimits::default().max_value_bytes, 4096);
}

// ---------------------------------------------------------------------------------------
// Normalisation

#[test]
fn domains_are_idna_ascii_lower_case_without_the_root_dot() {
    let cases = [
        ("Evil.Example.", Some("evil.example")),
        ("bücher.example", Some("xn--bcher-kva.example")),
        ("BÜCHER.example", Some("xn--bcher-kva.example")),
        ("xn--bcher-kva.example", Some("xn--bcher-kva.example")),
        ("пример.рф", Some("xn--e1afmkfd.xn--p1ai")),
        // Full-width letters and the ideographic full stop map to ASCII.
        ("ｅｘａｍｐｌｅ。com", Some("example.com")),
        ("_dmarc.example", Some("_dmarc.example")),
        ("localhost", None),
        ("a..example", None),
        ("evil example", None),
        ("xn--zz.example", None),
        ("", None),
        (".", None),
    ];
    for (raw, want) in cases {
        assert_eq!(
            normalise(IndicatorType::Domain, raw).as_deref(),
            want,
            "{raw:?}"
        );
    }
}

#[test]
fn urls_are_normalised() {
    let cases = [
        ("HTTP://Example.COM", Some("http://example.com/")),
        ("http://example.com:80/a", Some("http://example.com/a")),
        ("https://example.com:443/a", Some("https://example.com/a")),
        (
            "https://example.com:8443/a",
            Some("https://example.com:8443/a"),
        ),
        ("http://example.com:443/", Some("http://example.com:443/")),
        // Unreserved characters decoded, the rest in upper-case hex; path case kept.
        (
            "http://example.com/%7Euser/%41b%2fC?x=%3d%2e&y=%zz",
            Some("http://example.com/~user/Ab%2FC?x=%3D.&y=%25zz"),
        ),
        // A `%` that starts no escape is a literal `%`, written `%25`: it cannot join the
        // text after it into an escape on a second pass (found by the idempotence property).
        ("http://A#%%330", Some("http://a/#%2530")),
        ("http://a/100%", Some("http://a/100%25")),
        (
            "http://bücher.example/Ä",
            Some("http://xn--bcher-kva.example/%C3%84"),
        ),
        (
            "http://example.com/a/./b/../c",
            Some("http://example.com/a/c"),
        ),
        ("http://[2001:DB8::1]:80/", Some("http://[2001:db8::1]/")),
        ("ftp://Files.Example:21/x", Some("ftp://files.example/x")),
        ("hxxp://Evil.Example/Path", Some("hxxp://evil.example/Path")),
        ("example.com/path", None),
        ("http://exa mple.com/", None),
        ("mailto:someone@example.com", None),
    ];
    for (raw, want) in cases {
        assert_eq!(
            normalise(IndicatorType::Url, raw).as_deref(),
            want,
            "{raw:?}"
        );
    }
}

#[test]
fn addresses_ranges_hashes_and_mail_are_normalised() {
    let cases = [
        (IndicatorType::Ipv4, "203.0.113.7", Some("203.0.113.7")),
        (
            IndicatorType::Ipv4,
            "203.0.113.77/24",
            Some("203.0.113.0/24"),
        ),
        (IndicatorType::Ipv4, "203.0.113.7/32", Some("203.0.113.7")),
        (IndicatorType::Ipv4, "10.1.2.3/0", Some("0.0.0.0/0")),
        (
            IndicatorType::Ipv4,
            "223.166.0.0/15",
            Some("223.166.0.0/15"),
        ),
        (
            IndicatorType::Ipv4,
            "223.167.0.0/15",
            Some("223.166.0.0/15"),
        ),
        (IndicatorType::Ipv4, "10.0.0.0/33", None),
        (IndicatorType::Ipv4, "10.0.0.0/+8", None),
        (IndicatorType::Ipv4, "10.0.0.0/", None),
        (IndicatorType::Ipv4, "10.0.0.0/8/8", None),
        (IndicatorType::Ipv4, "2001:db8::1", None),
        (
            IndicatorType::Ipv6,
            "2001:DB8:0:0:0:0:0:1",
            Some("2001:db8::1"),
        ),
        (
            IndicatorType::Ipv6,
            "2001:db8::ff/64",
            Some("2001:db8::/64"),
        ),
        (IndicatorType::Ipv6, "2001:db8::1/128", Some("2001:db8::1")),
        (IndicatorType::Ipv6, "2001:db8::/129", None),
        (IndicatorType::Ipv6, "203.0.113.7", None),
        (
            IndicatorType::Sha1,
            "A94A8FE5CCB19BA61C4C0873D391E987982FBBD3",
            Some("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
        ),
        (
            IndicatorType::Sha1,
            "A94A8FE5CCB19BA61C4C0873D391E987982FBBD",
            None,
        ),
        (IndicatorType::Md5, "g41d8cd98f00b204e9800998ecf8427e", None),
        (
            IndicatorType::Email,
            "Billing@Bücher.Example.",
            Some("billing@xn--bcher-kva.example"),
        ),
        (IndicatorType::Email, "@example.com", None),
        (IndicatorType::Email, "a b@example.com", None),
        (IndicatorType::Email, "nobody", None),
        (IndicatorType::Filename, "Setup.EXE", Some("setup.exe")),
        (IndicatorType::Filename, "C:\\x\\setup.exe", None),
    ];
    for (kind, raw, want) in cases {
        assert_eq!(normalise(kind, raw).as_deref(), want, "{kind:?} {raw:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Never panic

const KINDS: [IndicatorType; 10] = [
    IndicatorType::Ipv4,
    IndicatorType::Ipv6,
    IndicatorType::Domain,
    IndicatorType::Md5,
    IndicatorType::Sha1,
    IndicatorType::Sha256,
    IndicatorType::Sha512,
    IndicatorType::Url,
    IndicatorType::Email,
    IndicatorType::Filename,
];

/// Every reader, every format, with options that exercise the CSV variants.
fn parse_everything(text: &str) {
    let _ = detect_format("g.json", text);
    let _ = detect_format("g.csv", text);
    for format in [
        FeedFormat::Misp,
        FeedFormat::Stix,
        FeedFormat::Csv,
        FeedFormat::Plain,
    ] {
        let _ = parse_feed("g", text, format, &FeedOptions::default());
    }
    let no_header = FeedOptions {
        include_non_ids: true,
        csv: CsvOptions {
            has_header: false,
            delimiter: b'\t',
            comment: None,
            value_column: CsvColumn::Index(1),
            type_column: Some(CsvColumn::Index(0)),
            tlp_column: Some(CsvColumn::Index(2)),
            ..CsvOptions::default()
        },
        ..FeedOptions::default()
    };
    let _ = parse_feed("g", text, FeedFormat::Csv, &no_header);
    let _ = parse_feed("g", text, FeedFormat::Misp, &no_header);
    let _ = parse_misp_feed(
        &[
            ("d/manifest.json".to_owned(), text.to_owned()),
            ("d/x.json".to_owned(), text.to_owned()),
        ],
        &FeedOptions::default(),
    );
}

fn mutate(text: &str, at: usize, byte: u8, cut: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let at = at % bytes.len();
    bytes[at] = byte;
    bytes.truncate(cut % (bytes.len() + 1));
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_misp_events_never_panic(at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let text = mutate(&fixture("misp-event.json"), at, byte, cut);
        let _ = parse_feed("m.json", &text, FeedFormat::Misp, &FeedOptions::default());
        let _ = detect_format("m.json", &text);
    }

    #[test]
    fn mutated_stix_bundles_never_panic(at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let text = mutate(&fixture("stix-bundle.json"), at, byte, cut);
        let _ = parse_feed("s.json", &text, FeedFormat::Stix, &FeedOptions::default());
        let _ = detect_format("s.json", &text);
    }

    #[test]
    fn mutated_csv_never_panics(at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let text = mutate(&fixture("misp-export.csv"), at, byte, cut);
        parse_everything(&text);
    }

    #[test]
    fn generated_patterns_never_panic(
        pattern in "[\\[\\]() ]{0,3}([a-z0-9-]{1,10}:[a-z.'A-Z0-9*\\[\\]-]{1,12} ?(=|!=|<=|>|IN|LIKE|MATCHES|NOT =) ?('[^']{0,8}'|[0-9.]{1,4}|t'[0-9TZ:-]{0,10}'|\\([^)]{0,10}\\))[\\]) ]{0,3}( (AND|OR|FOLLOWEDBY|WITHIN [0-9]{1,3} SECONDS|REPEATS 2 TIMES|START t'x' STOP t'y') ?[\\[(]{0,2})?){1,5}"
    ) {
        let bundle = serde_json::json!({
            "type": "bundle",
            "id": "bundle--g",
            "objects": [{"type": "indicator", "id": "indicator--g", "pattern": pattern, "pattern_type": "stix"}]
        });
        let _ = parse_feed("p.json", &bundle.to_string(), FeedFormat::Stix, &FeedOptions::default());
    }

    #[test]
    fn generated_json_never_panics(text in "[\\[\\]{}\":,a-zA-Z0-9|./ \\\\-]{0,200}") {
        parse_everything(&text);
        let wrapped = format!("{{\"Event\": {{\"Attribute\": [{{\"type\": \"{t}\", \"value\": \"{t}\"}}]}}}}", t = text.replace(['"', '\\'], ""));
        parse_everything(&wrapped);
    }

    #[test]
    fn generated_text_never_panics(text in "\\PC{0,300}") {
        parse_everything(&text);
    }

    #[test]
    fn normalise_never_panics_and_is_idempotent(raw in "\\PC{0,60}", kind in 0usize..KINDS.len()) {
        let kind = KINDS[kind];
        if let Some(once) = normalise(kind, &raw) {
            prop_assert_eq!(normalise(kind, &once), Some(once.clone()), "{:?} {:?}", kind, raw);
        }
    }

    #[test]
    fn url_normalisation_is_idempotent(
        raw in "(http|https|HTTP|ftp)://[a-zA-Z0-9.-]{1,12}(:[0-9]{1,5})?(/[a-zA-Z0-9%._~!$&'()*+,;=:@-]{0,12}){0,3}(\\?[a-zA-Z0-9%=&/.-]{0,12})?(#[a-z%0-9]{0,5})?"
    ) {
        if let Some(once) = normalise(IndicatorType::Url, &raw) {
            prop_assert_eq!(normalise(IndicatorType::Url, &once), Some(once.clone()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Real data (TOCSIN_TEST_DATA)

fn test_data() -> Option<PathBuf> {
    match std::env::var_os("TOCSIN_TEST_DATA") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            println!("TOCSIN_TEST_DATA is unset: skipping the real-data feed test");
            None
        }
    }
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn real_stix_example_bundles() {
    let Some(data) = test_data() else { return };
    let mut files = Vec::new();
    json_files(&data.join("iocs/stix2-examples"), &mut files);
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let mut total = Vec::new();
    let mut problems = Vec::new();
    let mut per_file = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read");
        let name = path.to_string_lossy().into_owned();
        match detect_format(&name, &text) {
            Some(FeedFormat::Stix) => {
                let (iocs, found) =
                    parse_feed(&name, &text, FeedFormat::Stix, &FeedOptions::default());
                per_file.push((
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    iocs.len(),
                ));
                total.extend(iocs);
                problems.extend(found);
            }
            // interop-objectmarking-test.json is a lone campaign, not a bundle.
            other => assert!(name.contains("interop-objectmarking"), "{name}: {other:?}"),
        }
    }
    let count = |file: &str| per_file.iter().find(|(f, _)| f == file).map(|(_, n)| *n);
    assert_eq!(count("indicator-for-c2-ip-address.json"), Some(1));
    assert_eq!(count("indicators-for-C2-with-COA.json"), Some(2));
    assert_eq!(
        count("malicious-email-indicator-with-attachment.json"),
        Some(0)
    );
    // apt1: 4 CIDR ranges, 3 domains, 3 MD5 hashes; 2 x509 patterns with AND.
    assert_eq!(count("apt1.json"), Some(10));
    // poisonivy: 25 indicators, OR-ed domains and addresses (66 values, one malformed).
    assert_eq!(count("poisonivy.json"), Some(66));
    assert_eq!(total.len(), 80);
    find(&total, IndicatorType::Ipv4, "223.166.0.0/15");
    find(
        &total,
        IndicatorType::Md5,
        "001dd76872d80801692ff942308c64e6",
    );
    find(&total, IndicatorType::Domain, "www.webserver.dynssl.com");
    let unsupported = problems
        .iter()
        .filter(|d| d.code == "unsupported-pattern")
        .count();
    assert_eq!(unsupported, 4, "{problems:#?}");
    let errors: Vec<&Diagnostic> = problems.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].message.contains("'domain autuo.xicp.net'"));
    assert!(total.iter().all(|i| i
        .source_id
        .as_deref()
        .is_some_and(|id| id.starts_with("indicator--"))));
}

#[test]
fn real_ipsum_list() {
    use std::io::Read;
    let Some(data) = test_data() else { return };
    let path = data.join("iocs/ipsum/ipsum.txt.gz");
    let compressed = std::fs::read(&path).expect("ipsum");
    let mut text = String::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_string(&mut text)
        .expect("gunzip");
    // "ip<TAB>count" with '#' comments: tab-separated, no header, value in column 0.
    let options = FeedOptions {
        csv: CsvOptions {
            has_header: false,
            delimiter: b'\t',
            type_column: None,
            tlp_column: None,
            id_column: None,
            ..CsvOptions::default()
        },
        ..FeedOptions::named("ipsum")
    };
    let started = std::time::Instant::now();
    let (iocs, problems) = parse_feed("ipsum.txt", &text, FeedFormat::Csv, &options);
    println!(
        "ipsum: {} indicators in {:?}",
        iocs.len(),
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "{:#?}",
        &problems[..problems.len().min(5)]
    );
    assert_eq!(iocs.len(), 120_430);
    assert!(iocs
        .iter()
        .all(|i| i.kind == IndicatorType::Ipv4 && i.feed == "ipsum"));
    assert_eq!(iocs[0].value, "77.90.185.20");
    assert_eq!(iocs[0].location.line, 8, "after 7 comment lines");
}
