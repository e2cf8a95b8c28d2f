//! Prefilter choices from how often each literal occurs in the events actually seen.
//!
//! Why: a rule whose selection ANDs several tests needs only one of them in its prefilter
//! set (the rule can only match when that one hits), and which one decides how often the
//! rule is verified for nothing. From the rule text alone the compiler can only guess
//! (`prior.rs`: literals many rules test, and short ones, are taken to be common).
//! When it preferred fewer and longer literals, `HandleKatz` was put on the candidate list
//! by `CallTrace|startswith: 'C:\Windows\System32\ntdll.dll+'` (in nearly every call
//! trace) rather than by `GrantedAccess: '0x1440'` (rare), and over the SigmaHQ Windows
//! rules and the OTRF events 2.9 rules were verified per event for 0.02 matches; the guess
//! leaves 0.9, a sample 0.5.
//!
//! Calibration measures instead: compile the rules once with every literal searched for
//! ([`MatchConfig::scan_every_literal`](crate::MatchConfig::scan_every_literal)), match a
//! sample of events, and count in how many events each literal occurs
//! ([`CompiledRules::observe_literals`]). Compiled again with these
//! [`LiteralFrequencies`] ([`MatchConfig::literal_frequencies`](crate::MatchConfig::literal_frequencies)),
//! each AND keeps the alternative whose literals occurred least. Matches are the same
//! either way (a prefilter only decides which rules are verified); only the work changes.
//! [`CompiledRules::compile_calibrated`] does the three steps.
//!
//! Literals are known by content (field paths, bytes, case), not by id, so frequencies
//! observed with one rule set still apply after a reload adds or removes rules; a literal
//! the sample never saw in its field counts as absent, one the table does not know at all
//! (a new rule's) as [`UNSEEN`].
//!
//! Frequencies can be saved and loaded ([`LiteralFrequencies::to_json`],
//! [`LiteralFrequencies::from_json`]; `tocsin rules calibrate` writes them, `--frequencies`
//! reads them): a worker started with a saved file matches with calibrated prefilters from
//! its first event, where `--calibrate` would first gather a sample and compile twice, in
//! every replica and after every restart. The table holds counts, not shares, and so does
//! the file: a loaded table chooses exactly what the observed one did.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use tocsin_core::{Event, EventIndex};
use tocsin_rules::{Diagnostic, Indicator, Profile, SigmaFilter, SigmaRule};

use crate::compile::{Atom, FieldSlot, KEYWORD_SLOT};
use crate::{CompiledRules, MatchConfig};

/// The assumed share of events holding a literal the frequencies do not know (one
/// compiled after they were observed): common enough that an observed rare literal wins
/// over it, rare enough that it wins over an observed common one.
pub const UNSEEN: f64 = 0.05;

/// A literal by content: the event paths of its field (empty for keywords), its bytes
/// (lower-cased unless case-sensitive) and whether it is case-sensitive.
type LiteralKey = (Box<str>, Box<[u8]>, bool);

/// How often each literal of a rule set occurred in a sample of events (in how many of the
/// sample's events it occurred where its tests look for it; its share is that count over
/// `events`).
#[derive(Clone, Default)]
pub struct LiteralFrequencies {
    counts: HashMap<LiteralKey, u64>,
    /// Per pair of adjacent bytes (lower-cased) seen in a raw event: the events holding
    /// it. Keyword presence tests search the raw event for pairs ([`crate::presence`]); a
    /// pair absent here never occurred.
    pair_counts: HashMap<[u8; 2], u64>,
    events: u64,
    /// The profile whose field mappings the literals' paths come from.
    profile: String,
}

impl fmt::Debug for LiteralFrequencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiteralFrequencies")
            .field("literals", &self.counts.len())
            .field("pairs", &self.pair_counts.len())
            .field("events", &self.events)
            .field("profile", &self.profile)
            .finish()
    }
}

impl LiteralFrequencies {
    /// Observe how often the literals of `rules` occur in `sample`: compile them (under
    /// `config`) with every literal searched for, and match the sample.
    pub fn observe<'e>(
        rules: &[SigmaRule],
        filters: &[SigmaFilter],
        profile: &Profile,
        config: &MatchConfig,
        sample: impl IntoIterator<Item = &'e [u8]>,
    ) -> LiteralFrequencies {
        let every = MatchConfig {
            scan_every_literal: true,
            literal_frequencies: None,
            ..config.clone()
        };
        // Indicators do not take part in prefilter choices: leave them out of this pass.
        let (observer, _) = CompiledRules::compile(rules, filters, &[], profile, &every);
        observer.observe_literals(sample)
    }

    /// Events the frequencies were observed over.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The name of the profile the frequencies were observed with: the literals' fields
    /// are known by the event paths it maps them to.
    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// Literals known.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when no literal is known.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The share of the sample's events that `count` events are.
    fn share_of(&self, count: u64) -> f64 {
        count as f64 / self.events.max(1) as f64
    }

    /// The share of events holding the literal, if known.
    fn share(&self, key: &LiteralKey) -> Option<f64> {
        self.counts.get(key).map(|&n| self.share_of(n))
    }

    /// The share of the sample's raw events holding `pair` (lower-cased) anywhere,
    /// ignoring ASCII case; `None` when nothing was observed.
    pub(crate) fn pair_share(&self, pair: [u8; 2]) -> Option<f64> {
        let count = self.pair_counts.get(&pair).copied().unwrap_or(0);
        (self.events > 0).then(|| self.share_of(count))
    }

    /// Frequencies of pairs alone, as if observed over `events` events.
    #[cfg(test)]
    pub(crate) fn from_pair_shares(events: u64, pairs: &[([u8; 2], f64)]) -> Self {
        LiteralFrequencies {
            pair_counts: pairs
                .iter()
                .map(|&(pair, share)| (pair, (share * events as f64).round() as u64))
                .collect(),
            events,
            ..LiteralFrequencies::default()
        }
    }

    /// Per atom of `compiled`: its observed share, or [`UNSEEN`].
    pub(crate) fn atom_weights(
        &self,
        atoms: &[Atom],
        atom_fields: &[FieldSlot],
        field_key: impl Fn(FieldSlot) -> Box<str>,
    ) -> Vec<f64> {
        atoms
            .iter()
            .zip(atom_fields)
            .map(|(atom, &field)| {
                let key = (field_key(field), atom.bytes.clone(), atom.cased);
                self.share(&key).unwrap_or(UNSEEN)
            })
            .collect()
    }
}

impl CompiledRules {
    /// Count, over `sample` (raw JSON events; undecodable ones are skipped), in how many
    /// events each literal occurred. Only literals that are searched for are seen: call it
    /// on a set compiled with [`MatchConfig::scan_every_literal`].
    pub fn observe_literals<'e>(
        &self,
        sample: impl IntoIterator<Item = &'e [u8]>,
    ) -> LiteralFrequencies {
        let mut hits = vec![0u64; self.atoms.len()];
        let mut scratch = self.new_scratch();
        let mut index = EventIndex::new();
        let mut events = 0u64;
        // Per pair of bytes (as a u16): the events holding it, and the last event counted.
        let mut pair_events = vec![0u32; 1 << 16];
        let mut pair_last = vec![u32::MAX; 1 << 16];
        for raw in sample {
            let Ok(event) = Event::parse(raw, &mut index) else {
                continue;
            };
            self.match_event(&event, &mut scratch);
            for &a in scratch.touched_atoms() {
                hits[a as usize] += 1;
            }
            for w in raw.windows(2) {
                let pair =
                    u16::from_le_bytes([w[0].to_ascii_lowercase(), w[1].to_ascii_lowercase()]);
                if pair_last[pair as usize] != events as u32 {
                    pair_last[pair as usize] = events as u32;
                    pair_events[pair as usize] += 1;
                }
            }
            events += 1;
        }
        let pair_counts = pair_events
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(pair, &n)| ((pair as u16).to_le_bytes(), u64::from(n)))
            .collect();
        let counts = self
            .atoms
            .iter()
            .zip(&self.atom_fields)
            .zip(&hits)
            .filter(|((atom, _), _)| atom.scanned)
            .map(|((atom, &field), &n)| {
                let key = (self.field_key(field), atom.bytes.clone(), atom.cased);
                (key, n)
            })
            .collect();
        LiteralFrequencies {
            counts,
            pair_counts,
            events,
            profile: self.profile().name.clone(),
        }
    }

    /// What a field is known by in [`LiteralFrequencies`]: its event paths.
    fn field_key(&self, field: FieldSlot) -> Box<str> {
        let paths = self
            .fields
            .get(field as usize)
            .into_iter()
            .flat_map(|p| p.iter());
        field_key(paths.map(tocsin_core::FieldName::as_str), field)
    }

    /// [`CompiledRules::compile`], with the prefilter sets chosen by how often their
    /// literals occur in `sample` (see the module docs). The sample is matched once
    /// against a set that searches for every literal; a few thousand events suffice.
    pub fn compile_calibrated<'e>(
        rules: &[SigmaRule],
        filters: &[SigmaFilter],
        indicators: &[Indicator],
        profile: &Profile,
        config: &MatchConfig,
        sample: impl IntoIterator<Item = &'e [u8]>,
    ) -> (CompiledRules, Vec<Diagnostic>, LiteralFrequencies) {
        let frequencies = LiteralFrequencies::observe(rules, filters, profile, config, sample);
        let calibrated = MatchConfig {
            literal_frequencies: Some(std::sync::Arc::new(frequencies.clone())),
            ..config.clone()
        };
        let (compiled, diagnostics) =
            CompiledRules::compile(rules, filters, indicators, profile, &calibrated);
        (compiled, diagnostics, frequencies)
    }
}

/// What field slot `field` is known by in [`LiteralFrequencies`]: its event paths.
pub(crate) fn field_key<'a>(paths: impl Iterator<Item = &'a str>, field: FieldSlot) -> Box<str> {
    if field == KEYWORD_SLOT {
        return "".into();
    }
    paths.collect::<Vec<_>>().join("|").into()
}

/// The `format` of a saved frequency table ([`LiteralFrequencies::to_json`]).
pub const FREQUENCIES_FORMAT: &str = "tocsin.literal-frequencies/v1";

/// Why a saved frequency table cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FrequenciesError {
    /// Not JSON, or not the table's shape (the message names the line and column).
    #[error("{0}")]
    Syntax(#[from] serde_json::Error),
    /// Another format, or another version of it.
    #[error("format is {found:?}, expected {FREQUENCIES_FORMAT:?}")]
    Format {
        /// The `format` the file gives.
        found: String,
    },
    /// An entry that cannot be right, named by its place in the file.
    #[error("{entry}: {reason}")]
    Entry {
        /// Which entry: `literals[3] (field "Image", "\\cmd.exe")` or `pairs["6d69"]`.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A saved frequency table, as written to a file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedFrequencies {
    format: String,
    /// The profile whose field mappings the literals' paths come from.
    profile: String,
    /// Events observed.
    events: u64,
    literals: Vec<SavedLiteral>,
    /// Per pair of adjacent bytes (lower-cased, in hex: `"6d69"` is `mi`): the events
    /// holding it. A pair not listed occurred in none.
    pairs: BTreeMap<String, u64>,
}

impl SavedFrequencies {
    /// One literal and one pair per line: a table diffs line by line, and is a third of
    /// the size it would be with every member on a line of its own.
    fn write(&self) -> String {
        let mut out = String::with_capacity(80 * self.literals.len() + 16 * self.pairs.len());
        out.push_str(&format!(
            "{{\n\"format\": {},\n\"profile\": {},\n\"events\": {},\n\"literals\": [",
            json(&self.format),
            json(&self.profile),
            self.events
        ));
        for (i, literal) in self.literals.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            out.push_str(&json(literal));
        }
        out.push_str("\n],\n\"pairs\": {");
        for (i, (pair, events)) in self.pairs.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            out.push_str(&format!("{}: {events}", json(pair)));
        }
        out.push_str("\n}\n}\n");
        out
    }
}

/// A value as compact JSON.
fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("strings and literals always serialise")
}

/// One literal of a saved table.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedLiteral {
    /// The event paths of its field, `|`-separated; empty for keywords.
    field: String,
    /// Its bytes as searched for (lower-cased unless `cased`; backslashes and quotes
    /// escaped as in the raw JSON event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// Its bytes in hex, instead of `text` when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
    /// Whether it is compared with its case.
    cased: bool,
    /// Events in which it occurred, of the table's `events`.
    events: u64,
}

impl LiteralFrequencies {
    /// The table as JSON ([`FREQUENCIES_FORMAT`]), literals in a stable order, so that
    /// two tables observed alike write the same file, one literal and one pair per line
    /// (for the SigmaHQ Windows rules, 26,000 literals in 2.2 MB; 0.3 MB gzip-compressed).
    pub fn to_json(&self) -> String {
        let mut literals: Vec<(&LiteralKey, &u64)> = self.counts.iter().collect();
        literals.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let saved = SavedFrequencies {
            format: FREQUENCIES_FORMAT.to_string(),
            profile: self.profile.clone(),
            events: self.events,
            literals: literals
                .into_iter()
                .map(|((field, bytes, cased), events)| {
                    let text = std::str::from_utf8(bytes).ok().map(str::to_string);
                    SavedLiteral {
                        field: field.to_string(),
                        hex: text.is_none().then(|| hex(bytes)),
                        text,
                        cased: *cased,
                        events: *events,
                    }
                })
                .collect(),
            pairs: self
                .pair_counts
                .iter()
                .map(|(pair, &n)| (hex(pair), n))
                .collect(),
        };
        saved.write()
    }

    /// Read a table written by [`LiteralFrequencies::to_json`].
    pub fn from_json(json: &str) -> Result<LiteralFrequencies, FrequenciesError> {
        let saved: SavedFrequencies = serde_json::from_str(json)?;
        if saved.format != FREQUENCIES_FORMAT {
            return Err(FrequenciesError::Format {
                found: saved.format,
            });
        }
        let events = saved.events;
        let count = |entry: &dyn Fn() -> String, n: u64| {
            if n > events {
                return Err(FrequenciesError::Entry {
                    entry: entry(),
                    reason: format!("occurred in {n} events, more than the {events} observed"),
                });
            }
            Ok(n)
        };
        let mut counts = HashMap::with_capacity(saved.literals.len());
        for (i, literal) in saved.literals.into_iter().enumerate() {
            let name = || {
                let shown = literal.text.as_deref().or(literal.hex.as_deref());
                format!(
                    "literals[{i}] (field {:?}, {:?})",
                    literal.field,
                    shown.unwrap_or("")
                )
            };
            let bytes: Box<[u8]> = match (&literal.text, &literal.hex) {
                (Some(text), None) => text.as_bytes().into(),
                (None, Some(digits)) => unhex(digits).ok_or_else(|| FrequenciesError::Entry {
                    entry: name(),
                    reason: "hex is not an even number of hexadecimal digits".into(),
                })?,
                _ => {
                    return Err(FrequenciesError::Entry {
                        entry: name(),
                        reason: "needs exactly one of text and hex".into(),
                    })
                }
            };
            let n = count(&name, literal.events)?;
            let key = (literal.field.as_str().into(), bytes, literal.cased);
            if counts.insert(key, n).is_some() {
                return Err(FrequenciesError::Entry {
                    entry: name(),
                    reason: "listed twice".into(),
                });
            }
        }
        let mut pair_counts = HashMap::with_capacity(saved.pairs.len());
        for (digits, n) in &saved.pairs {
            let name = || format!("pairs[{digits:?}]");
            let pair: [u8; 2] = unhex(digits)
                .and_then(|b| <[u8; 2]>::try_from(&*b).ok())
                .ok_or_else(|| FrequenciesError::Entry {
                    entry: name(),
                    reason: "a pair is two bytes in four hexadecimal digits".into(),
                })?;
            if pair != pair.map(|b| b.to_ascii_lowercase()) {
                return Err(FrequenciesError::Entry {
                    entry: name(),
                    reason: "pairs are lower-cased".into(),
                });
            }
            pair_counts.insert(pair, count(&name, *n)?);
        }
        Ok(LiteralFrequencies {
            counts,
            pair_counts,
            events,
            profile: saved.profile,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex digits (either case) as bytes; `None` unless an even number of hex digits.
fn unhex(digits: &str) -> Option<Box<[u8]>> {
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            Some((high * 16 + low) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal whose bytes are not UTF-8 (a Sigma value can be any bytes once escaped or
    /// encoded) is written as `hex` and reads back to the same bytes; a text one as `text`.
    #[test]
    fn literals_that_are_not_utf8_are_saved_in_hex_and_read_back() {
        let binary: LiteralKey = ("Payload".into(), (*b"\xff\xfeab").into(), false);
        let text: LiteralKey = ("CommandLine".into(), (*b"whoami").into(), true);
        let table = LiteralFrequencies {
            counts: HashMap::from([(binary.clone(), 3), (text.clone(), 1)]),
            pair_counts: HashMap::from([(*b"mi", 2)]),
            events: 5,
            profile: "sysmon".into(),
        };
        let json = table.to_json();
        assert!(json.contains(r#""hex":"fffe6162""#), "{json}");
        assert!(json.contains(r#""text":"whoami""#), "{json}");
        assert!(json.contains(r#""6d69": 2"#), "{json}");
        let back = LiteralFrequencies::from_json(&json).unwrap();
        assert_eq!(back.counts, table.counts);
        assert_eq!(back.pair_counts, table.pair_counts);
        assert_eq!((back.events, back.profile.as_str()), (5, "sysmon"));
        assert_eq!(back.to_json(), json);
    }
}
