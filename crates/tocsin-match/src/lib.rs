//! Matching events against a compiled rule set: Sigma rules on shared literal sets, and
//! indicators by hash lookup. The hot path.
//!
//! Shape (after regex-automata): [`CompiledRules::compile`] builds an immutable engine
//! from parsed rules, indicators and a field-mapping profile; share it (`Arc`) between
//! threads and give each thread a [`MatchScratch`] from [`CompiledRules::new_scratch`].
//! [`CompiledRules::match_event`] then routes, prefilters and verifies one event without
//! allocating; [`CompiledRules::detections`] turns the result into [`tocsin_core::Detection`]s.
//!
//! Why shared literal sets: with thousands of rules, checking each rule against each event
//! costs rules × fields. Instead the literals of all rules are put, per field, into one
//! literal set (a fragment filter, see `literals`); an event's field is scanned once,
//! and only the rules whose literals hit are verified. The cost grows with the number of
//! hits, not with the number of rules. The compile pipeline is documented in [`compile`].
//!
//! Invariants: no I/O; nothing allocated per event on the no-detection path (except URL
//! fields when URL indicators are loaded: `url::Url` parsing allocates), once the
//! scratch space's caches have warmed up (the routing cache, the regexes' lazy DFAs, the
//! scan memo and the text cache, whose entries keep their buffers); a rule that
//! uses something the matcher cannot evaluate exactly is rejected with a diagnostic, never
//! approximated.

pub mod calibrate;
mod class_run;
pub mod compile;
pub mod detect;
pub mod explain;
pub mod glob;
mod guard;
pub mod ioc;
mod literals;
pub mod matcher;
mod presence;
mod prior;
mod required;
mod scan_memo;
mod text_cache;

pub use calibrate::{FrequenciesError, LiteralFrequencies, FREQUENCIES_FORMAT};
pub use compile::{
    CompileStats, CompiledRule, CompiledRules, CorrelationUse, MatchConfig, RuleIdx,
};
pub use detect::indicator_key;
pub use explain::Explanation;
pub use ioc::IocTable;
pub use matcher::{IocHit, MatchScratch, ScratchStats};

#[cfg(test)]
mod tests;
