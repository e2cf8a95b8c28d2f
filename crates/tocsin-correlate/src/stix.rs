//! STIX 2.1 rendering of an early warning: what OpenCTI, TAXII servers and most threat-intel
//! platforms read.
//!
//! Why a bundle and not just the `tocsin.early-warning/v1` JSON: coordination centres and
//! CSIRTs already run STIX tooling, and a bundle they can import without a Tocsin-specific
//! parser reaches them sooner. STIX 2.1 has no vocabulary for most of what a NIS2 early
//! warning says, so the bundle is the standard objects plus carefully scoped extensions:
//!
//! - the `incident` (a stub in STIX 2.1: name and description) carries the OASIS DC3
//!   *incident-core* extension for `determination` and `investigation_status`, and
//!   `x_tocsin_*` top-level properties for the NIS2 flags, the reporting clock, the RSIT and
//!   EU taxonomies and PAP;
//! - the `x_tocsin_*` properties are declared by a Tocsin `extension-definition` of type
//!   `toplevel-property-extension` carried in the bundle, as STIX 2.1 asks of custom
//!   properties (§7.3), so validators accept them without warnings;
//! - sectors are mapped onto `industry-sector-ov` (lossy) and the exact NIS2 key travels
//!   beside it as `x_tocsin_nis2_sector` (`coordination.md` §4);
//! - TLP 2.0 is not predefined in STIX 2.1, so every TLP 2.0 `marking-definition` the
//!   bundle refers to is carried in it, byte for byte as published in
//!   `cti-stix-common-objects` (`coordination.md` §3).
//!
//! Determinism: replays must give byte-identical output (the correlator's invariant), so no
//! id is random. Objects that belong to one warning get ids hashed from the warning id, the
//! rendering (audience and TLP ceiling) and the object's own key, shaped as UUIDv4, and the
//! same ids in every version: a warning's versions are versions of its STIX objects
//! (§3.6), `created` the warning's `first_issued_at` in each of them and `modified` the
//! version's `issued_at`, which grows by at least a second from version to version. A
//! platform that keeps the latest version per id (OpenCTI, a TAXII collection) so holds one
//! incident per warning and rendering, updated in place, rather than one per version. The
//! rendering is part of the ids because two renderings of one version differ while their
//! `modified` is the same; the bundle's own id names the version too, as each bundle is a
//! message of its own. An object a later version leaves out (an organisation withheld once
//! one of its detections is above the ceiling) is not revoked: it stays as last rendered.
//! A warning written before `first_issued_at` existed has no date common to its versions,
//! so its objects keep the earlier scheme: ids per version, created when modified.
//! Objects shared by every bundle — the Tocsin
//! producer identity and the Tocsin extension definition — have fixed ids and fixed
//! timestamps, because STIX treats an id with another `created` as a conflicting object;
//! they are marked TLP:CLEAR for the same reason (their content must not vary per warning).
//!
//! Authorship: the warning's objects are created by its issuer (the escalation policy's
//! `issuer` when its first version was issued: the correlator keeps it for the later
//! ones), an `identity` of class `organization` with the same fixed timestamps, its id
//! derived from the issuer's UUID, name and contact (a renamed issuer is another identity,
//! not a conflicting version); or by the Tocsin identity when there is none. The issuer's
//! UUID is part of every object id, as only an object's creator may version it.
//!
//! Invariant: no I/O; a pure function of the warning.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{json, Map, Value};
use tocsin_core::id::{uuid_v4_shaped, IdHasher};
use tocsin_core::tlp::{STIX_TLP_2_0_CREATED, STIX_TLP_2_0_EXTENSION_ID};
use tocsin_core::{
    EarlyWarning, IndicatorType, Issuer, MemberState, Sector, Timestamp, Tlp, WarningIndicator,
    WarningStatus,
};

/// The OASIS DC3 Incident Core Extension, applied to the `incident` object.
pub const INCIDENT_CORE_EXTENSION_ID: &str =
    "extension-definition--ef765651-680c-498d-9894-99799f2fa126";

/// The Tocsin producer identity: `created_by_ref` of the Tocsin extension definition, and of
/// the objects of a warning that names no issuer.
///
/// Fixed, so that consumers see one producer across all bundles. It equals the
/// version-4-shaped UUID of the digest of `("tocsin.stix", "producer-identity")` (a unit
/// test checks it).
pub const TOCSIN_IDENTITY_ID: &str = "identity--6703c585-4101-4620-9e04-8f0afcced4d5";

/// The Tocsin extension definition that declares the `x_tocsin_*` top-level properties.
///
/// Fixed, like [`TOCSIN_IDENTITY_ID`]; derived from `("tocsin.stix", "extension-definition")`.
pub const TOCSIN_EXTENSION_ID: &str = "extension-definition--157e1624-b4d7-4896-9d62-458155462600";

/// The largest `count` a STIX 2.1 sighting may carry.
pub const STIX_SIGHTING_COUNT_MAX: u64 = 999_999_999;

/// `created` of the shared objects (producer identity, extension definition).
const SHARED_OBJECTS_CREATED: &str = "2026-11-26T00:00:00.000Z";

/// `modified` of the shared objects. Change it, and [`TOCSIN_EXTENSION_VERSION`], whenever
/// their content changes (e.g. a property is added to [`TOCSIN_PROPERTIES`]): STIX consumers
/// keep one version per (`id`, `modified`).
const SHARED_OBJECTS_MODIFIED: &str = "2026-11-26T00:00:00.000Z";

/// The version of the Tocsin extension definition.
const TOCSIN_EXTENSION_VERSION: &str = "1.0.0";

/// Every `x_tocsin_*` top-level property this renderer may write: the Tocsin extension
/// definition's `extension_properties`.
pub const TOCSIN_PROPERTIES: &[&str] = &[
    // incident
    "x_tocsin_warning_id",
    "x_tocsin_incident_id",
    "x_tocsin_version",
    "x_tocsin_status",
    "x_tocsin_audience",
    "x_tocsin_severity",
    "x_tocsin_suspected_malicious",
    "x_tocsin_cross_border",
    "x_tocsin_cross_sector",
    "x_tocsin_exercise",
    "x_tocsin_correlation_key",
    "x_tocsin_first_seen",
    "x_tocsin_last_seen",
    "x_tocsin_detection_count",
    "x_tocsin_organisation_count",
    "x_tocsin_nis2_sectors",
    "x_tocsin_member_states",
    "x_tocsin_reporting",
    "x_tocsin_rsit_class",
    "x_tocsin_rsit_type",
    "x_tocsin_eu_taxonomy",
    "x_tocsin_pap",
    "x_tocsin_rules",
    "x_tocsin_recommended_actions",
    // identity (affected organisation)
    "x_tocsin_nis2_sector",
    "x_tocsin_nis2_annex",
    // indicator
    "x_tocsin_feeds",
];

/// Render one version of a warning as a STIX 2.1 bundle.
///
/// Objects, in this order: the TLP 2.0 `marking-definition`s used, the Tocsin
/// `extension-definition` and producer `identity`, the issuer's `identity` (when the warning
/// names one: the author of the objects that follow), one `location` per member state, one
/// `identity` per affected organisation (technical audience only), the `incident`, one
/// `indicator` and one `sighting` per indicator, then the `relationship`s (organisation
/// `located-at` its member state, incident `related-to` each organisation and member state,
/// indicator `indicates` incident).
pub fn to_bundle(w: &EarlyWarning) -> Value {
    let mut bundle = BundleBuilder::new(w);
    bundle.push_shared_objects();
    let locations = bundle.push_locations();
    let organisations = bundle.push_organisations(&locations);
    let incident_id = bundle.push_incident();
    bundle.push_indicators(&incident_id, &organisations, &locations);
    bundle.push_incident_relationships(&incident_id, &organisations, &locations);
    bundle.finish()
}

/// An id hasher in `domain` fed the warning id and what names its rendering: the audience
/// and the TLP ceiling (none for the canonical warning).
/// With an issuer, its UUID too: STIX lets only an object's creator version it, so another
/// issuer's rendering is another object, not a version of this one.
pub(crate) fn rendering_hasher(domain: &str, w: &EarlyWarning) -> IdHasher {
    let hasher = IdHasher::new(domain)
        .part(w.warning_id.as_bytes())
        .part(w.audience.as_str().as_bytes())
        .part(w.tlp_ceiling.map_or("", Tlp::label).as_bytes());
    match &w.issuer {
        Some(issuer) => hasher.part(issuer.uuid.as_bytes()),
        None => hasher,
    }
}

/// The STIX id of the identity of a warning's issuer: from its UUID, name and contact,
/// which the identity carries. Its `created` and `modified` are fixed, so an identity with
/// another name or contact is another identity, not a conflicting version of this one.
pub fn issuer_identity_id(issuer: &Issuer) -> String {
    let digest = IdHasher::new("tocsin.stix.issuer")
        .part(issuer.uuid.as_bytes())
        .part(issuer.name.as_bytes())
        .part(issuer.contact.as_deref().unwrap_or("").as_bytes())
        .digest();
    format!("identity--{}", uuid_v4_shaped(digest))
}

/// The STIX pattern that matches one indicator value, e.g. `[ipv4-addr:value = '198.51.100.7']`.
///
/// A CIDR value (`203.0.113.0/24`) stays in `ipv4-addr:value` / `ipv6-addr:value`, which STIX
/// 2.1 defines to hold CIDR blocks. Quotes and backslashes in the value are escaped as the
/// pattern grammar requires.
pub fn stix_pattern(kind: IndicatorType, value: &str) -> String {
    let path = match kind {
        IndicatorType::Ipv4 => "ipv4-addr:value",
        IndicatorType::Ipv6 => "ipv6-addr:value",
        IndicatorType::Domain => "domain-name:value",
        IndicatorType::Url => "url:value",
        IndicatorType::Md5 => "file:hashes.MD5",
        IndicatorType::Sha1 => "file:hashes.'SHA-1'",
        IndicatorType::Sha256 => "file:hashes.'SHA-256'",
        IndicatorType::Sha512 => "file:hashes.'SHA-512'",
        IndicatorType::Email => "email-addr:value",
        IndicatorType::Filename => "file:name",
    };
    format!("[{path} = '{}']", escape_pattern_string(value))
}

/// Escape a value for a STIX pattern string literal: `\` → `\\`, `'` → `\'`.
fn escape_pattern_string(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' || c == '\'' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A JSON value for something whose `Serialize` is derived over plain enums and structs,
/// which cannot fail; `Null` keeps the renderer total all the same.
fn serialized<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The warning status as `tocsin.early-warning/v1` spells it.
pub(crate) fn status_name(status: WarningStatus) -> &'static str {
    match status {
        WarningStatus::New => "new",
        WarningStatus::Update => "update",
        WarningStatus::Escalated => "escalated",
        WarningStatus::Closed => "closed",
    }
}

/// The `investigation_status` of the incident-core extension for a warning status.
fn investigation_status(status: WarningStatus) -> &'static str {
    match status {
        WarningStatus::New => "new",
        WarningStatus::Update | WarningStatus::Escalated => "open",
        WarningStatus::Closed => "closed",
    }
}

/// An affected organisation as far as the warning tells: its sector and member state come
/// from its timeline entry.
struct OrganisationRef {
    name: String,
    id: String,
    member_state: Option<MemberState>,
    first_seen: Option<Timestamp>,
}

/// Collects the objects of one bundle and the TLP markings they refer to.
struct BundleBuilder<'w> {
    warning: &'w EarlyWarning,
    /// The warning's `issued_at` in STIX timestamp form: every object's `modified`.
    issued_at: String,
    /// The warning's `first_issued_at` (its `issued_at` when absent): every object's
    /// `created`.
    first_issued_at: String,
    /// `created_by_ref` of the warning's objects: the issuer's identity, or Tocsin's.
    author: String,
    objects: Vec<Value>,
    markings_used: BTreeSet<Tlp>,
}

impl<'w> BundleBuilder<'w> {
    fn new(warning: &'w EarlyWarning) -> Self {
        BundleBuilder {
            warning,
            issued_at: warning.issued_at.to_string(),
            first_issued_at: warning
                .first_issued_at
                .unwrap_or(warning.issued_at)
                .to_string(),
            author: warning
                .issuer
                .as_ref()
                .map_or_else(|| TOCSIN_IDENTITY_ID.to_owned(), issuer_identity_id),
            objects: Vec::new(),
            markings_used: BTreeSet::new(),
        }
    }

    /// The id of an object of this warning, the same in each of its versions:
    /// `<type>--<uuid>` from the warning id, the rendering, the type and the object's key.
    /// (Per version, without the rendering, for a warning without `first_issued_at`.)
    fn id(&self, object_type: &str, key: &str) -> String {
        let w = self.warning;
        let hasher = match w.first_issued_at {
            Some(_) => rendering_hasher("tocsin.stix.versioned", w),
            None => IdHasher::new("tocsin.stix")
                .part(w.warning_id.as_bytes())
                .part(&w.version.to_le_bytes()),
        };
        let digest = hasher
            .part(object_type.as_bytes())
            .part(key.as_bytes())
            .digest();
        format!("{object_type}--{}", uuid_v4_shaped(digest))
    }

    /// The id of this version's bundle: a bundle is a message, not a versioned object, so
    /// each version's has an id of its own.
    fn bundle_id(&self) -> String {
        let digest = rendering_hasher("tocsin.stix.bundle", self.warning)
            .part(&self.warning.version.to_le_bytes())
            .digest();
        format!("bundle--{}", uuid_v4_shaped(digest))
    }

    /// `object_marking_refs` for one label, recording that the bundle needs its definition.
    fn marking_refs(&mut self, tlp: Tlp) -> Value {
        self.markings_used.insert(tlp);
        json!([tlp.stix_marking_id()])
    }

    /// The common properties of an SDO or SRO of this warning version.
    fn common(&mut self, object_type: &str, id: &str, tlp: Tlp) -> Map<String, Value> {
        let mut object = Map::new();
        object.insert("type".into(), json!(object_type));
        object.insert("spec_version".into(), json!("2.1"));
        object.insert("id".into(), json!(id));
        object.insert("created".into(), json!(self.first_issued_at));
        object.insert("modified".into(), json!(self.issued_at));
        object.insert("created_by_ref".into(), json!(self.author));
        object.insert("object_marking_refs".into(), self.marking_refs(tlp));
        object
    }

    /// Declare that `object` uses the Tocsin top-level properties.
    fn uses_tocsin_properties(object: &mut Map<String, Value>) {
        let extensions = object
            .entry("extensions")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(extensions) = extensions {
            extensions.insert(
                TOCSIN_EXTENSION_ID.into(),
                json!({"extension_type": "toplevel-property-extension"}),
            );
        }
    }

    fn push(&mut self, object: Map<String, Value>) {
        self.objects.push(Value::Object(object));
    }

    /// The Tocsin producer identity and extension definition, identical in every bundle.
    fn push_shared_objects(&mut self) {
        let clear = self.marking_refs(Tlp::Clear);
        self.objects.push(json!({
            "type": "extension-definition",
            "spec_version": "2.1",
            "id": TOCSIN_EXTENSION_ID,
            "created": SHARED_OBJECTS_CREATED,
            "modified": SHARED_OBJECTS_MODIFIED,
            "created_by_ref": TOCSIN_IDENTITY_ID,
            "name": "Tocsin early-warning properties",
            "description": "Top-level x_tocsin_* properties that Tocsin adds to incidents, \
                identities and indicators of an early warning: the NIS2 Article 23 flags \
                and reporting clock, the RSIT and EU incident taxonomies, PAP, the exact \
                NIS2 sector keys and the feeds of each indicator.",
            "schema": "Plain-text definition. On the incident, x_tocsin_warning_id, \
                x_tocsin_incident_id, x_tocsin_version, x_tocsin_status, x_tocsin_audience, \
                x_tocsin_severity, x_tocsin_suspected_malicious, x_tocsin_cross_border, \
                x_tocsin_cross_sector, x_tocsin_exercise, x_tocsin_correlation_key, \
                x_tocsin_first_seen, x_tocsin_last_seen, x_tocsin_detection_count, \
                x_tocsin_reporting, x_tocsin_eu_taxonomy, x_tocsin_pap, x_tocsin_rules and \
                x_tocsin_recommended_actions are the fields of the same name, without the \
                prefix, of the Tocsin early-warning contract tocsin.early-warning/v1 \
                (schemas/early-warning.schema.json in the Tocsin repository), with the same \
                JSON types; x_tocsin_organisation_count, x_tocsin_nis2_sectors and \
                x_tocsin_member_states are its affected.organisation_count, affected.sectors \
                and affected.member_states; x_tocsin_rsit_class and x_tocsin_rsit_type are \
                its taxonomy.class and taxonomy.type (RSIT machine values). On an identity, \
                x_tocsin_nis2_sector is the organisation's NIS2 sector key (the MISP \
                nis2:impact-sectors-impacted value) and x_tocsin_nis2_annex its Annex, I or \
                II. On an indicator, x_tocsin_feeds lists the feeds that listed it.",
            "version": TOCSIN_EXTENSION_VERSION,
            "extension_types": ["toplevel-property-extension"],
            "extension_properties": TOCSIN_PROPERTIES,
            "object_marking_refs": clear,
        }));
        let clear = self.marking_refs(Tlp::Clear);
        self.objects.push(json!({
            "type": "identity",
            "spec_version": "2.1",
            "id": TOCSIN_IDENTITY_ID,
            "created": SHARED_OBJECTS_CREATED,
            "modified": SHARED_OBJECTS_MODIFIED,
            "name": "Tocsin",
            "description": "Tocsin security-event correlation engine: detections that share \
                an indicator or campaign across organisations, sectors and member states \
                become early warnings.",
            "identity_class": "system",
            "object_marking_refs": clear,
        }));
        if let Some(issuer) = &self.warning.issuer {
            let clear = self.marking_refs(Tlp::Clear);
            let mut identity = json!({
                "type": "identity",
                "spec_version": "2.1",
                "id": self.author,
                "created": SHARED_OBJECTS_CREATED,
                "modified": SHARED_OBJECTS_MODIFIED,
                "name": issuer.name,
                "identity_class": "organization",
                "object_marking_refs": clear,
            });
            if let Some(contact) = &issuer.contact {
                identity["contact_information"] = json!(contact);
            }
            self.objects.push(identity);
        }
    }

    /// One `location` per member state (affected, or named by the timeline), by code.
    fn push_locations(&mut self) -> BTreeMap<MemberState, String> {
        let w = self.warning;
        let member_states: BTreeSet<MemberState> = w
            .affected
            .member_states
            .iter()
            .copied()
            .chain(w.timeline.iter().filter_map(|entry| entry.member_state))
            .collect();
        let mut locations = BTreeMap::new();
        for member_state in member_states {
            let id = self.id("location", member_state.as_str());
            let mut location = self.common("location", &id, w.tlp);
            location.insert("name".into(), json!(member_state.as_str()));
            location.insert("country".into(), json!(member_state.as_str()));
            self.push(location);
            locations.insert(member_state, id);
        }
        locations
    }

    /// One `identity` per affected organisation, each `located-at` its member state.
    fn push_organisations(
        &mut self,
        locations: &BTreeMap<MemberState, String>,
    ) -> Vec<OrganisationRef> {
        let w = self.warning;
        let mut organisations: Vec<OrganisationRef> = Vec::new();
        let mut seen = BTreeSet::new();
        for name in &w.affected.organisations {
            if !seen.insert(name.as_str()) {
                continue;
            }
            let entry = w
                .timeline
                .iter()
                .find(|entry| entry.organisation.as_deref() == Some(name.as_str()));
            let sector: Option<Sector> = entry.and_then(|entry| entry.sector);
            let id = self.id("identity", &format!("organisation:{name}"));
            let mut identity = self.common("identity", &id, w.tlp);
            identity.insert("name".into(), json!(name));
            identity.insert("identity_class".into(), json!("organization"));
            if let Some(sector) = sector {
                identity.insert("sectors".into(), json!([sector.stix_sector()]));
                identity.insert("x_tocsin_nis2_sector".into(), json!(sector.slug()));
                identity.insert("x_tocsin_nis2_annex".into(), json!(sector.annex().as_str()));
                Self::uses_tocsin_properties(&mut identity);
            }
            self.push(identity);
            organisations.push(OrganisationRef {
                name: name.clone(),
                id,
                member_state: entry.and_then(|entry| entry.member_state),
                first_seen: entry.map(|entry| entry.time),
            });
        }
        for organisation in &organisations {
            let Some(location_id) = organisation
                .member_state
                .and_then(|member_state| locations.get(&member_state))
            else {
                continue;
            };
            let key = format!("located-at:organisation:{}", organisation.name);
            self.push_relationship(
                &key,
                "located-at",
                &organisation.id,
                location_id,
                w.tlp,
                None,
            );
        }
        organisations
    }

    /// The `incident` with the incident-core extension and the Tocsin properties.
    fn push_incident(&mut self) -> String {
        let w = self.warning;
        let id = self.id("incident", "incident");
        let mut incident = self.common("incident", &id, w.tlp);
        incident.insert("name".into(), json!(w.headline));
        incident.insert("description".into(), json!(incident_description(w)));
        if w.exercise {
            incident.insert("labels".into(), json!(["exercise"]));
        }
        if !w.attack.is_empty() {
            let references: Vec<Value> = w
                .attack
                .iter()
                .map(|technique| json!({"source_name": "mitre-attack", "external_id": technique}))
                .collect();
            incident.insert("external_references".into(), Value::Array(references));
        }
        incident.insert(
            "extensions".into(),
            json!({
                INCIDENT_CORE_EXTENSION_ID: {
                    "extension_type": "property-extension",
                    "determination": "suspected",
                    "investigation_status": investigation_status(w.status),
                }
            }),
        );
        Self::uses_tocsin_properties(&mut incident);
        let sectors: Vec<&str> = w.affected.sectors.iter().map(|s| s.slug()).collect();
        let member_states: Vec<&str> = w
            .affected
            .member_states
            .iter()
            .map(|m| m.as_str())
            .collect();
        let tocsin_properties = [
            ("x_tocsin_warning_id", json!(w.warning_id)),
            ("x_tocsin_incident_id", json!(w.incident_id)),
            ("x_tocsin_version", json!(w.version)),
            ("x_tocsin_status", json!(status_name(w.status))),
            ("x_tocsin_audience", serialized(&w.audience)),
            ("x_tocsin_severity", json!(w.severity.as_str())),
            ("x_tocsin_suspected_malicious", json!(w.suspected_malicious)),
            ("x_tocsin_cross_border", json!(w.cross_border)),
            ("x_tocsin_cross_sector", json!(w.cross_sector)),
            ("x_tocsin_exercise", json!(w.exercise)),
            ("x_tocsin_correlation_key", json!(w.correlation_key)),
            ("x_tocsin_first_seen", json!(w.first_seen.to_string())),
            ("x_tocsin_last_seen", json!(w.last_seen.to_string())),
            ("x_tocsin_detection_count", json!(w.detection_count)),
            (
                "x_tocsin_organisation_count",
                json!(w.affected.organisation_count),
            ),
            ("x_tocsin_nis2_sectors", json!(sectors)),
            ("x_tocsin_member_states", json!(member_states)),
            ("x_tocsin_reporting", serialized(&w.reporting)),
            ("x_tocsin_eu_taxonomy", serialized(&w.eu_taxonomy)),
            ("x_tocsin_pap", serialized(&w.pap)),
            ("x_tocsin_rules", serialized(&w.rules)),
            ("x_tocsin_recommended_actions", json!(w.recommended_actions)),
        ];
        for (name, value) in tocsin_properties {
            incident.insert(name.into(), value);
        }
        if let Some(taxonomy) = w.taxonomy {
            incident.insert("x_tocsin_rsit_class".into(), json!(taxonomy.class.slug()));
            incident.insert("x_tocsin_rsit_type".into(), json!(taxonomy.kind.slug()));
        }
        self.push(incident);
        id
    }

    /// One `indicator`, one `sighting` and one `indicates` relationship per indicator.
    fn push_indicators(
        &mut self,
        incident_id: &str,
        organisations: &[OrganisationRef],
        locations: &BTreeMap<MemberState, String>,
    ) {
        let w = self.warning;
        // Where it was seen: the organisations when the audience may know them, otherwise
        // the member states.
        let where_sighted: Vec<&str> = if organisations.is_empty() {
            locations.values().map(String::as_str).collect()
        } else {
            organisations.iter().map(|o| o.id.as_str()).collect()
        };
        for indicator in crate::misp::unique_indicators(&w.indicators) {
            let key = format!("{}:{}", indicator.kind.as_str(), indicator.value);
            // The indicator, its sighting and its relationship say what the warning saw
            // (its id and version, when it was first seen, which indicator it names), so
            // each is marked with the more restrictive of the warning's and the
            // indicator's labels: a CLEAR indicator in an AMBER warning is shared as AMBER
            // here (its feed shares it as CLEAR).
            let tlp = Tlp::most_restrictive(w.tlp, indicator.tlp);
            let indicator_id = self.push_indicator(&key, indicator, tlp);
            let sighting_id = self.id("sighting", &key);
            let mut sighting = self.common("sighting", &sighting_id, tlp);
            sighting.insert("sighting_of_ref".into(), json!(indicator_id));
            sighting.insert("first_seen".into(), json!(w.first_seen.to_string()));
            sighting.insert("last_seen".into(), json!(w.last_seen.to_string()));
            sighting.insert(
                "count".into(),
                json!(w.detection_count.min(STIX_SIGHTING_COUNT_MAX)),
            );
            sighting.insert(
                "description".into(),
                json!(format!(
                    "Seen during early warning {} version {}; first_seen, last_seen and count \
                     are those of the whole warning ({} detections at {} organisations).",
                    w.warning_id, w.version, w.detection_count, w.affected.organisation_count
                )),
            );
            if !where_sighted.is_empty() {
                sighting.insert("where_sighted_refs".into(), json!(where_sighted));
            }
            self.push(sighting);
            self.push_relationship(
                &format!("indicates:{key}"),
                "indicates",
                &indicator_id,
                incident_id,
                tlp,
                None,
            );
        }
    }

    fn push_indicator(&mut self, key: &str, indicator: &WarningIndicator, tlp: Tlp) -> String {
        let w = self.warning;
        let id = self.id("indicator", key);
        let mut object = self.common("indicator", &id, tlp);
        object.insert(
            "name".into(),
            json!(format!("{} {}", indicator.kind.as_str(), indicator.value)),
        );
        let feeds = if indicator.feeds.is_empty() {
            String::from("no feed")
        } else {
            indicator.feeds.join(", ")
        };
        object.insert(
            "description".into(),
            json!(format!(
                "{} indicator listed by {feeds}; correlated across organisations in Tocsin \
                 early warning {} version {}.",
                indicator.kind.as_str(),
                w.warning_id,
                w.version
            )),
        );
        object.insert("indicator_types".into(), json!(["malicious-activity"]));
        object.insert(
            "pattern".into(),
            json!(stix_pattern(indicator.kind, &indicator.value)),
        );
        object.insert("pattern_type".into(), json!("stix"));
        object.insert("pattern_version".into(), json!("2.1"));
        object.insert("valid_from".into(), json!(w.first_seen.to_string()));
        object.insert("x_tocsin_feeds".into(), json!(indicator.feeds));
        Self::uses_tocsin_properties(&mut object);
        self.push(object);
        id
    }

    /// The incident `related-to` each affected organisation (from its first detection) and
    /// each member state.
    fn push_incident_relationships(
        &mut self,
        incident_id: &str,
        organisations: &[OrganisationRef],
        locations: &BTreeMap<MemberState, String>,
    ) {
        let tlp = self.warning.tlp;
        for organisation in organisations {
            self.push_relationship(
                &format!("related-to:organisation:{}", organisation.name),
                "related-to",
                incident_id,
                &organisation.id,
                tlp,
                organisation.first_seen,
            );
        }
        for (member_state, location_id) in locations {
            self.push_relationship(
                &format!("related-to:location:{member_state}"),
                "related-to",
                incident_id,
                location_id,
                tlp,
                None,
            );
        }
    }

    fn push_relationship(
        &mut self,
        key: &str,
        relationship_type: &str,
        source_ref: &str,
        target_ref: &str,
        tlp: Tlp,
        start_time: Option<Timestamp>,
    ) {
        let id = self.id("relationship", key);
        let mut relationship = self.common("relationship", &id, tlp);
        relationship.insert("relationship_type".into(), json!(relationship_type));
        relationship.insert("source_ref".into(), json!(source_ref));
        relationship.insert("target_ref".into(), json!(target_ref));
        if let Some(start_time) = start_time {
            relationship.insert("start_time".into(), json!(start_time.to_string()));
        }
        self.push(relationship);
    }

    /// The bundle: the marking definitions used, then every other object in push order.
    fn finish(self) -> Value {
        let bundle_id = self.bundle_id();
        let mut objects: Vec<Value> = self
            .markings_used
            .iter()
            .map(|&tlp| tlp_marking_definition(tlp))
            .collect();
        objects.extend(self.objects);
        json!({
            "type": "bundle",
            "id": bundle_id,
            "objects": objects,
        })
    }
}

/// The TLP 2.0 marking-definition object for a label, exactly as published in
/// `cti-stix-common-objects` (`extension-definition-specifications/tlp-2.0`).
pub fn tlp_marking_definition(tlp: Tlp) -> Value {
    json!({
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": tlp.stix_marking_id(),
        "created": STIX_TLP_2_0_CREATED,
        "name": tlp.to_string(),
        "extensions": {
            STIX_TLP_2_0_EXTENSION_ID: {
                "extension_type": "property-extension",
                "tlp_2_0": tlp.stix_tlp_2_0_value(),
            }
        }
    })
}

/// The incident's description: what a human reads first in a STIX tool.
fn incident_description(w: &EarlyWarning) -> String {
    let yes_no = |flag: bool| if flag { "yes" } else { "no" };
    let sectors: Vec<String> = w
        .affected
        .sectors
        .iter()
        .map(|s| format!("{} (Annex {})", s.display_name(), s.annex()))
        .collect();
    let member_states: Vec<&str> = w
        .affected
        .member_states
        .iter()
        .map(|m| m.as_str())
        .collect();
    let mut text = String::new();
    if w.exercise {
        text.push_str("EXERCISE - not a real warning.\n\n");
    }
    text.push_str(&format!(
        "Tocsin early warning {} version {} ({}), severity {}, {}.\n",
        w.warning_id,
        w.version,
        status_name(w.status),
        w.severity.as_str(),
        w.tlp,
    ));
    text.push_str(&format!(
        "Suspected unlawful or malicious acts: {}. Possible cross-border impact: {}. \
         Cross-sector: {}.\n",
        yes_no(w.suspected_malicious),
        yes_no(w.cross_border),
        yes_no(w.cross_sector),
    ));
    text.push_str(&format!(
        "{} detections at {} organisations between {} and {}.\n",
        w.detection_count, w.affected.organisation_count, w.first_seen, w.last_seen
    ));
    if !sectors.is_empty() {
        text.push_str(&format!("Sectors: {}.\n", sectors.join(", ")));
    }
    if !member_states.is_empty() {
        text.push_str(&format!("Member states: {}.\n", member_states.join(", ")));
    }
    text.push_str(&format!(
        "Early warning due {}, incident notification due {}.\n",
        w.reporting.early_warning_due, w.reporting.notification_due
    ));
    if !w.recommended_actions.is_empty() {
        text.push_str("Recommended actions:\n");
        for action in &w.recommended_actions {
            text.push_str(&format!("- {action}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id of an object shared by every bundle, as the pinned constants were derived.
    fn shared_object_id(object_type: &str, key: &str) -> String {
        let digest = IdHasher::new("tocsin.stix").part(key.as_bytes()).digest();
        format!("{object_type}--{}", uuid_v4_shaped(digest))
    }

    #[test]
    fn shared_ids_are_the_pinned_ones() {
        assert_eq!(
            shared_object_id("identity", "producer-identity"),
            TOCSIN_IDENTITY_ID
        );
        assert_eq!(
            shared_object_id("extension-definition", "extension-definition"),
            TOCSIN_EXTENSION_ID
        );
    }

    #[test]
    fn uuids_are_version_4_shaped() {
        for digest in [0u128, u128::MAX, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef] {
            let uuid = uuid_v4_shaped(digest);
            assert_eq!(uuid.len(), 36, "{uuid}");
            let groups: Vec<&str> = uuid.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(groups[2].starts_with('4'), "{uuid}");
            assert!(
                matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "{uuid}"
            );
        }
        assert_eq!(
            uuid_v4_shaped(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            "01234567-89ab-4def-8123-456789abcdef"
        );
    }

    #[test]
    fn patterns_escape_quotes_and_backslashes() {
        assert_eq!(
            stix_pattern(IndicatorType::Filename, r"it's\evil.exe"),
            r"[file:name = 'it\'s\\evil.exe']"
        );
        assert_eq!(
            stix_pattern(IndicatorType::Ipv4, "203.0.113.0/24"),
            "[ipv4-addr:value = '203.0.113.0/24']"
        );
    }
}
