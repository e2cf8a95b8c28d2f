//! MISP events and feeds (MISP core format, `MISP/misp-rfc:misp-core-format`).
//!
//! MISP is how most European CSIRT communities share indicators, so Tocsin reads its event
//! export as it is: `{"Event": …}`, the REST search output `{"response": [{"Event": …}]}`
//! (and `{"response": {"Attribute": […]}}` from an attribute search), and a list of events.
//! A MISP feed is a directory of such files plus a `manifest.json`; [`parse_misp_feed`]
//! reads it from `(file name, text)` pairs that the caller has read.
//!
//! Attributes are MISP's indicators. Only the ones flagged `to_ids` are meant for detection,
//! so the others are skipped unless [`FeedOptions::include_non_ids`] asks for them; deleted
//! attributes (and deleted objects) are revocations and always skipped. Attributes inside
//! objects count like the event's own. Composite types are split (`domain|ip` gives both;
//! `filename|sha256` the hash and the file name; `ip-dst|port` the address). Types Tocsin
//! cannot match (`regkey`, `mutex`, `text`…) are a warning per attribute.
//!
//! TLP comes from the attribute's `tlp:` tags, else the event's, else the feed default; the
//! most restrictive tag wins when there are several. `tlp:white` is TLP 1.0's name for CLEAR.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use tocsin_core::{Timestamp, Tlp};

use super::{
    feed_name, json_error_location, json_flag, json_text, json_timestamp, shown, FeedOptions,
    IndicatorMeta, IndicatorSink, JsonLines, ValueShape,
};
use crate::diagnostic::{Diagnostic, Location};
use crate::ioc::Indicator;

/// Read one MISP event export into `sink`.
pub(super) fn parse_event_file(
    file: &str,
    text: &str,
    feed: &str,
    options: &FeedOptions,
    sink: &mut IndicatorSink,
) {
    let document: Value = match serde_json::from_str(text) {
        Ok(document) => document,
        Err(error) => {
            sink.diagnostic(Diagnostic::error(
                json_error_location(file, &error),
                "bad-json",
                format!("not valid JSON: {error}"),
            ));
            return;
        }
    };
    let mut reader = EventReader {
        file,
        feed,
        options,
        lines: JsonLines::new(text),
        sink,
    };
    match &document {
        Value::Object(top) if top.contains_key("Event") => {
            reader.read_event(&top["Event"], "Event");
        }
        Value::Object(top) if top.contains_key("response") => match &top["response"] {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    reader.read_wrapped_event(item, &format!("response[{i}]"));
                }
            }
            Value::Object(found) if found.contains_key("Attribute") => {
                // An attribute search: attributes without their event's tags.
                let context = EventContext::default();
                reader.read_attributes(&context, found.get("Attribute"), "response.Attribute");
            }
            _ => reader.error(
                None,
                "bad-misp",
                "'response' is neither a list of events nor an attribute search result",
            ),
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                reader.read_wrapped_event(item, &format!("[{i}]"));
            }
        }
        _ => reader.error(
            None,
            "bad-misp",
            "not a MISP event export: expected a top-level \"Event\" or \"response\"",
        ),
    }
}

/// Read a MISP feed: `manifest.json` plus one `<event uuid>.json` per event, given as
/// `(file name, text)` pairs (names may include directories). Events the manifest lists but
/// that are missing are errors; event files it does not list are skipped with a warning, as
/// MISP itself only fetches listed events. Without a manifest, every event file is read
/// after an error saying so. The limits of `options` apply to the feed as a whole; the feed
/// name, when `options` gives none, is the directory's name.
pub fn parse_misp_feed(
    files: &[(String, String)],
    options: &FeedOptions,
) -> (Vec<Indicator>, Vec<Diagnostic>) {
    let mut sink = IndicatorSink::new(options.limits);
    let feed = if options.feed_name.trim().is_empty() {
        files
            .first()
            .and_then(|(name, _)| {
                let mut parts = name.rsplit(['/', '\\']);
                parts.next();
                parts.next().filter(|dir| !dir.is_empty() && *dir != ".")
            })
            .map_or_else(|| "misp-feed".to_owned(), str::to_owned)
    } else {
        feed_name(options, "")
    };
    let base_name = |name: &str| name.rsplit(['/', '\\']).next().unwrap_or(name).to_owned();

    // Event files by uuid (the file name's stem).
    let mut events: BTreeMap<String, &(String, String)> = BTreeMap::new();
    let mut manifest: Option<&(String, String)> = None;
    for entry in files {
        let base = base_name(&entry.0);
        if base.eq_ignore_ascii_case("manifest.json") {
            manifest = Some(entry);
        } else if let Some(uuid) = base.strip_suffix(".json") {
            events.insert(uuid.to_ascii_lowercase(), entry);
        } else if !(base.eq_ignore_ascii_case("hashes.csv") || base.ends_with(".asc")) {
            sink.diagnostic(Diagnostic::warning(
                Location::line(&entry.0, 1),
                "not-feed-file",
                "not part of a MISP feed (manifest.json, <uuid>.json, hashes.csv); ignored",
            ));
        }
    }

    let listed = manifest.and_then(|(name, text)| read_manifest(name, text, &mut sink));
    let Some(listed) = listed else {
        if manifest.is_none() {
            let dir = files
                .first()
                .map(|(name, _)| name[..name.len() - base_name(name).len()].to_owned())
                .unwrap_or_default();
            sink.diagnostic(Diagnostic::error(
                Location::line(&format!("{dir}manifest.json"), 1),
                "missing-manifest",
                "the MISP feed has no manifest.json; reading every event file found",
            ));
        }
        for (name, text) in events.values() {
            parse_event_file(name, text, &feed, options, &mut sink);
        }
        return sink.finish();
    };
    let (manifest_name, manifest_text) = manifest.map_or(("manifest.json", ""), |(n, t)| (n, t));
    let mut manifest_lines = ManifestLines::new(manifest_text);
    for uuid in &listed {
        match events.remove(&uuid.to_ascii_lowercase()) {
            Some((name, text)) => parse_event_file(name, text, &feed, options, &mut sink),
            None => sink.diagnostic(Diagnostic::error(
                Location::line(manifest_name, manifest_lines.line_of(uuid)),
                "missing-event",
                format!("event {uuid} is listed in manifest.json but {uuid}.json is missing"),
            )),
        }
    }
    for (uuid, (name, _)) in events {
        sink.diagnostic(Diagnostic::warning(
            Location::line(name, 1),
            "unlisted-event",
            format!("event {uuid} is not listed in manifest.json; skipped"),
        ));
    }
    sink.finish()
}

/// The event uuids a manifest lists, in its order; `None` (with a diagnostic) when it cannot
/// be read.
fn read_manifest(name: &str, text: &str, sink: &mut IndicatorSink) -> Option<Vec<String>> {
    // `serde_json::Map` sorts its keys; the order of events does not matter.
    match serde_json::from_str::<Map<String, Value>>(text) {
        Ok(map) => Some(map.keys().cloned().collect()),
        Err(error) => {
            sink.diagnostic(Diagnostic::error(
                json_error_location(name, &error),
                "bad-manifest",
                format!(
                    "manifest.json is not a JSON object of event uuids ({error}); reading every \
                     event file found"
                ),
            ));
            None
        }
    }
}

/// Lines of the manifest's keys (event uuids), found on demand.
struct ManifestLines<'t> {
    text: &'t str,
}

impl<'t> ManifestLines<'t> {
    fn new(text: &'t str) -> Self {
        ManifestLines { text }
    }

    fn line_of(&mut self, uuid: &str) -> usize {
        let quoted = format!("\"{uuid}\"");
        self.text
            .find(&quoted)
            .map_or(1, |at| self.text[..at].matches('\n').count() + 1)
    }
}

/// What an event gives its attributes.
#[derive(Debug, Default)]
struct EventContext {
    uuid: Option<String>,
    tags: Vec<String>,
    tlp: Option<Tlp>,
}

/// Reads the events of one file.
struct EventReader<'a, 't> {
    file: &'a str,
    feed: &'a str,
    options: &'a FeedOptions,
    lines: JsonLines<'t>,
    sink: &'a mut IndicatorSink,
}

impl EventReader<'_, '_> {
    fn location(&mut self, id: Option<&str>) -> Location {
        Location::line(self.file, self.lines.line_of(id))
    }

    fn error(&mut self, id: Option<&str>, code: &'static str, message: impl Into<String>) {
        let location = self.location(id);
        self.sink
            .diagnostic(Diagnostic::error(location, code, message));
    }

    fn warning(&mut self, id: Option<&str>, code: &'static str, message: impl Into<String>) {
        let location = self.location(id);
        self.sink
            .diagnostic(Diagnostic::warning(location, code, message));
    }

    /// `{"Event": …}` inside a list.
    fn read_wrapped_event(&mut self, item: &Value, path: &str) {
        match item.get("Event") {
            Some(event) => self.read_event(event, &format!("{path}.Event")),
            None => self.error(None, "bad-misp", format!("{path}: not an {{\"Event\": …}}")),
        }
    }

    fn read_event(&mut self, event: &Value, path: &str) {
        let Value::Object(event) = event else {
            self.error(
                None,
                "bad-misp",
                format!("{path}: an event must be an object"),
            );
            return;
        };
        let uuid = event.get("uuid").and_then(Value::as_str).map(str::to_owned);
        let mut tags = tag_names(event.get("Tag"));
        // Some exports nest them as EventTag[].Tag.
        if let Some(Value::Array(event_tags)) = event.get("EventTag") {
            tags.extend(
                event_tags
                    .iter()
                    .filter_map(|wrapped| wrapped.get("Tag").and_then(tag_name)),
            );
        }
        dedup_in_order(&mut tags);
        let context = EventContext {
            tlp: tlp_of_tags(&tags),
            uuid,
            tags,
        };
        self.read_attributes(
            &context,
            event.get("Attribute"),
            &format!("{path}.Attribute"),
        );
        match event.get("Object") {
            None | Some(Value::Null) => {}
            Some(Value::Array(objects)) => {
                for (j, object) in objects.iter().enumerate() {
                    let object_path = format!("{path}.Object[{j}]");
                    let Value::Object(object) = object else {
                        self.error(
                            context.uuid.as_deref(),
                            "bad-misp",
                            format!("{object_path}: an object must be an object"),
                        );
                        continue;
                    };
                    if json_flag(object.get("deleted")) == Some(true) {
                        continue;
                    }
                    self.read_attributes(
                        &context,
                        object.get("Attribute"),
                        &format!("{object_path}.Attribute"),
                    );
                }
            }
            Some(_) => self.error(
                context.uuid.as_deref(),
                "bad-misp",
                format!("{path}.Object: must be a list"),
            ),
        }
    }

    fn read_attributes(&mut self, context: &EventContext, list: Option<&Value>, path: &str) {
        match list {
            None | Some(Value::Null) => {}
            Some(Value::Array(attributes)) => {
                for (i, attribute) in attributes.iter().enumerate() {
                    self.read_attribute(context, attribute, &format!("{path}[{i}]"));
                }
            }
            Some(_) => self.error(
                context.uuid.as_deref(),
                "bad-misp",
                format!("{path}: must be a list"),
            ),
        }
    }

    fn read_attribute(&mut self, context: &EventContext, attribute: &Value, path: &str) {
        let Value::Object(attribute) = attribute else {
            self.error(
                context.uuid.as_deref(),
                "bad-misp",
                format!("{path}: an attribute must be an object"),
            );
            return;
        };
        // `deleted` is MISP's revocation.
        if json_flag(attribute.get("deleted")) == Some(true) {
            return;
        }
        // `to_ids` says whether the attribute is meant for detection; exports always carry
        // it, and a hand-written feed that omits it means its attributes to be used.
        let to_ids = json_flag(attribute.get("to_ids")).unwrap_or(true);
        if !to_ids && !self.options.include_non_ids {
            return;
        }
        let uuid = attribute.get("uuid").and_then(Value::as_str);
        let anchor = uuid.or(context.uuid.as_deref()).map(str::to_owned);
        let anchor = anchor.as_deref();
        let Some(kind_name) = attribute.get("type").and_then(Value::as_str) else {
            self.error(
                anchor,
                "bad-misp",
                format!("{path}: the attribute has no type"),
            );
            return;
        };
        let value = attribute
            .get("value")
            .and_then(json_text)
            .unwrap_or_default();
        if value.trim().is_empty() {
            self.error(
                anchor,
                "bad-misp",
                format!("{path} ({kind_name}): the attribute has no value"),
            );
            return;
        }
        let Some(shape) = ValueShape::from_type_name(kind_name) else {
            self.warning(
                anchor,
                "unsupported-type",
                format!(
                    "{path}: MISP type '{kind_name}' is not an indicator type Tocsin matches; \
                     attribute skipped"
                ),
            );
            return;
        };
        // MISP's `uri` is often only a path (`/gate.php`): not matchable as a URL.
        if kind_name.eq_ignore_ascii_case("uri") && !value.contains("://") {
            self.warning(
                anchor,
                "unsupported-value",
                format!(
                    "{path} (uri): '{}' is not an absolute URL; attribute skipped",
                    shown(&value)
                ),
            );
            return;
        }
        let parts = match shape.split(&value) {
            Ok(parts) => parts,
            Err(why) => {
                self.error(
                    anchor,
                    "bad-indicator",
                    format!("{path} ({kind_name}): {why}"),
                );
                return;
            }
        };
        let mut tags = context.tags.clone();
        let own_tags = tag_names(attribute.get("Tag"));
        let tlp = tlp_of_tags(&own_tags)
            .or(context.tlp)
            .unwrap_or(self.options.default_tlp);
        tags.extend(own_tags);
        dedup_in_order(&mut tags);
        let valid_from = match attribute.get("first_seen") {
            None | Some(Value::Null) => None,
            Some(raw) => {
                let parsed = json_timestamp(raw);
                if parsed.is_none() {
                    self.warning(
                        anchor,
                        "bad-timestamp",
                        format!("{path}: first_seen {raw} is not a timestamp; ignored"),
                    );
                }
                parsed
            }
        };
        let meta = IndicatorMeta {
            feed: self.feed.to_owned(),
            tlp,
            source_id: uuid.map(|u| match &context.uuid {
                Some(event) => format!("{event}/{u}"),
                None => u.to_owned(),
            }),
            valid_from,
            // `last_seen` is when the attribute was last observed, not an expiry: an
            // indicator seen last week is still worth matching. The one expiry MISP records
            // is an "expiration" sighting (type 2) dated when the attribute stops being
            // valid. Decay scores (`decay_score`) are a score at export time with no
            // instant attached, so they cannot become a `valid_until` and are not used.
            valid_until: expiry_of(attribute.get("Sighting")),
            confidence: None,
            tags,
        };
        let location = self.location(anchor);
        let entry = format!("{path} ({kind_name})");
        for (kind, raw) in parts {
            self.sink.add(kind, raw, &meta, &location, &entry);
        }
    }
}

/// The names of a MISP `Tag` list.
fn tag_names(list: Option<&Value>) -> Vec<String> {
    match list {
        Some(Value::Array(tags)) => tags.iter().filter_map(tag_name).collect(),
        _ => Vec::new(),
    }
}

/// The name of one tag: an object with a `name`, or a plain string.
fn tag_name(tag: &Value) -> Option<String> {
    let name = match tag {
        Value::String(name) => name,
        Value::Object(tag) => tag.get("name")?.as_str()?,
        _ => return None,
    };
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The most restrictive TLP among `tlp:` tags (`tlp:ex:chr` and the like are not labels).
fn tlp_of_tags(tags: &[String]) -> Option<Tlp> {
    tags.iter()
        .filter(|t| t.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("tlp:")))
        .filter_map(|t| t.parse::<Tlp>().ok())
        .max()
}

/// The earliest expiration sighting (type 2), when there is one.
fn expiry_of(sightings: Option<&Value>) -> Option<Timestamp> {
    let Some(Value::Array(sightings)) = sightings else {
        return None;
    };
    sightings
        .iter()
        .filter(|s| s.get("type").and_then(json_text).as_deref() == Some("2"))
        .filter_map(|s| s.get("date_sighting").and_then(json_timestamp))
        .min()
}

fn dedup_in_order(tags: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    tags.retain(|t| seen.insert(t.clone()));
}
