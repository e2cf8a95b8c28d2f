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

use std::collections::HashMap;
use std::fmt;

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

/// How often each literal of a rule set occurred in a sample of events (the share of the
/// sample's events in which it occurred where its tests look for it).
#[derive(Clone, Default)]
pub struct LiteralFrequencies {
    shares: HashMap<LiteralKey, f64>,
    /// Per pair of adjacent bytes (lower-cased) seen in a raw event: the share of events
    /// holding it. Keyword presence tests search the raw event for pairs
    /// ([`crate::presence`]); a pair absent here never occurred.
    pair_shares: HashMap<[u8; 2], f64>,
    events: u64,
}

impl fmt::Debug for LiteralFrequencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiteralFrequencies")
            .field("literals", &self.shares.len())
            .field("pairs", &self.pair_shares.len())
            .field("events", &self.events)
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

    /// Literals known.
    pub fn len(&self) -> usize {
        self.shares.len()
    }

    /// True when no literal is known.
    pub fn is_empty(&self) -> bool {
        self.shares.is_empty()
    }

    /// The share of events holding the literal, if known.
    fn share(&self, key: &LiteralKey) -> Option<f64> {
        self.shares.get(key).copied()
    }

    /// The share of the sample's raw events holding `pair` (lower-cased) anywhere,
    /// ignoring ASCII case; `None` when nothing was observed.
    pub(crate) fn pair_share(&self, pair: [u8; 2]) -> Option<f64> {
        (self.events > 0).then(|| self.pair_shares.get(&pair).copied().unwrap_or(0.0))
    }

    /// Frequencies of pairs alone, as if observed over `events` events.
    #[cfg(test)]
    pub(crate) fn from_pair_shares(events: u64, pairs: &[([u8; 2], f64)]) -> Self {
        LiteralFrequencies {
            pair_shares: pairs.iter().copied().collect(),
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
        let pair_shares = pair_events
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(pair, &n)| {
                (
                    (pair as u16).to_le_bytes(),
                    f64::from(n) / events.max(1) as f64,
                )
            })
            .collect();
        let shares = self
            .atoms
            .iter()
            .zip(&self.atom_fields)
            .zip(&hits)
            .filter(|((atom, _), _)| atom.scanned)
            .map(|((atom, &field), &n)| {
                let key = (self.field_key(field), atom.bytes.clone(), atom.cased);
                (key, n as f64 / events.max(1) as f64)
            })
            .collect();
        LiteralFrequencies {
            shares,
            pair_shares,
            events,
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
