//! STIX 2.1 bundles: `indicator` objects whose pattern Tocsin can match exactly.
//!
//! A STIX indicator is a pattern, and the pattern language can say far more than "this value
//! is bad": `AND` across observations, `FOLLOWEDBY`, time windows (`WITHIN`, `START/STOP`),
//! repetitions, regular expressions (`MATCHES`), ranges. Tocsin's indicator matcher does
//! exact look-ups of single values, so this reader accepts the subset that is exactly a set
//! of values: `=` comparisons of
//!
//! | object path | indicator type |
//! |---|---|
//! | `ipv4-addr:value`, `ipv6-addr:value` | IPv4, IPv6 (address or CIDR range) |
//! | `domain-name:value` | domain |
//! | `url:value` | URL |
//! | `email-addr:value` | e-mail address |
//! | `file:name` | file name |
//! | `file:hashes.MD5`, `.'SHA-1'`, `.'SHA-256'`, `.'SHA-512'` | hash |
//!
//! combined with `OR`, inside one bracket (`[a OR b]`) or across brackets (`[a] OR [b]`).
//! Each value becomes one indicator with the STIX indicator's id as `source_id`. Anything
//! else is reported as unsupported for that indicator, with its id, and the indicator is
//! skipped whole: loading part of an `AND` would match more than the pattern says.
//!
//! The pattern is read by a small tokenizer and recursive-descent parser that follow the
//! structure of `STIXPattern.g4` (`cti-stix2-json-schemas`), so that a pattern that is
//! merely unsupported is told apart from one that is malformed.
//!
//! TLP comes from the indicator's marking references (`object_marking_refs` and the refs of
//! `granular_markings`): the predefined TLP 1.0 ids, the TLP 2.0 ids of
//! [`Tlp::stix_marking_id`], and marking-definition objects in the bundle (`definition_type:
//! "tlp"`, or the TLP 2.0 extension). The most restrictive wins; without one, the feed
//! default applies. Revoked indicators are skipped.

use std::collections::HashMap;

use serde_json::{Map, Value};
use tocsin_core::tlp::STIX_TLP_2_0_EXTENSION_ID;
use tocsin_core::{IndicatorType, Timestamp, Tlp};

use super::{json_error_location, FeedOptions, IndicatorMeta, IndicatorSink, JsonLines};
use crate::diagnostic::{Diagnostic, Location};

/// The TLP 1.0 marking definitions predefined by STIX 2.1 (WHITE is TLP 2.0's CLEAR).
const STIX_TLP_1_0_MARKINGS: [(&str, Tlp); 4] = [
    (
        "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
        Tlp::Clear,
    ),
    (
        "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
        Tlp::Green,
    ),
    (
        "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
        Tlp::Amber,
    ),
    (
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
        Tlp::Red,
    ),
];

/// The TLP that a well-known marking-definition id stands for.
fn predefined_marking(id: &str) -> Option<Tlp> {
    Tlp::ALL
        .into_iter()
        .find(|tlp| tlp.stix_marking_id() == id)
        .or_else(|| {
            STIX_TLP_1_0_MARKINGS
                .iter()
                .find(|(known, _)| *known == id)
                .map(|&(_, tlp)| tlp)
        })
}

/// Read one STIX bundle into `sink`.
pub(super) fn parse_bundle(
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
    let bundle = match &document {
        Value::Object(bundle) if bundle.get("type").and_then(Value::as_str) == Some("bundle") => {
            bundle
        }
        _ => {
            sink.diagnostic(Diagnostic::error(
                Location::line(file, 1),
                "bad-stix",
                "not a STIX bundle: expected a top-level object with \"type\": \"bundle\"",
            ));
            return;
        }
    };
    let objects = match bundle.get("objects") {
        None | Some(Value::Null) => return,
        Some(Value::Array(objects)) => objects,
        Some(_) => {
            sink.diagnostic(Diagnostic::error(
                Location::line(file, 1),
                "bad-stix",
                "the bundle's \"objects\" must be a list",
            ));
            return;
        }
    };
    let mut reader = BundleReader {
        file,
        feed,
        options,
        lines: JsonLines::new(text),
        markings: bundle_markings(objects),
        sink,
    };
    for (i, object) in objects.iter().enumerate() {
        match object {
            Value::Object(object) => {
                if object.get("type").and_then(Value::as_str) == Some("indicator") {
                    reader.read_indicator(object, i);
                }
            }
            _ => {
                let location = Location::line(file, 1);
                reader.sink.diagnostic(Diagnostic::error(
                    location,
                    "bad-stix",
                    format!("objects[{i}]: not a JSON object"),
                ));
            }
        }
    }
}

/// The TLP of each marking-definition object in the bundle that defines one.
fn bundle_markings(objects: &[Value]) -> HashMap<String, Tlp> {
    let mut markings = HashMap::new();
    for object in objects {
        if object.get("type").and_then(Value::as_str) != Some("marking-definition") {
            continue;
        }
        let Some(id) = object.get("id").and_then(Value::as_str) else {
            continue;
        };
        // TLP 1.0 style: definition_type "tlp", definition {"tlp": "amber"}.
        let tlp_1_0 = (object.get("definition_type").and_then(Value::as_str) == Some("tlp"))
            .then(|| {
                object
                    .get("definition")?
                    .get("tlp")?
                    .as_str()?
                    .parse::<Tlp>()
                    .ok()
            })
            .flatten();
        // TLP 2.0 style: the property extension {"tlp_2_0": "amber+strict"}.
        let tlp_2_0 = object
            .get("extensions")
            .and_then(|e| e.get(STIX_TLP_2_0_EXTENSION_ID))
            .and_then(|e| e.get("tlp_2_0"))
            .and_then(Value::as_str)
            .and_then(|label| label.parse::<Tlp>().ok());
        if let Some(tlp) = tlp_1_0.max(tlp_2_0) {
            markings.insert(id.to_owned(), tlp);
        }
    }
    markings
}

/// Reads the indicators of one bundle.
struct BundleReader<'a, 't> {
    file: &'a str,
    feed: &'a str,
    options: &'a FeedOptions,
    lines: JsonLines<'t>,
    markings: HashMap<String, Tlp>,
    sink: &'a mut IndicatorSink,
}

impl BundleReader<'_, '_> {
    fn diagnostic(&mut self, warning: bool, id: Option<&str>, code: &'static str, text: String) {
        let location = Location::line(self.file, self.lines.line_of(id));
        self.sink.diagnostic(if warning {
            Diagnostic::warning(location, code, text)
        } else {
            Diagnostic::error(location, code, text)
        });
    }

    /// The TLP a marking reference stands for: a bundle definition, a predefined id, or both
    /// (the more restrictive, should a bundle redefine a well-known id).
    fn marking_tlp(&self, id: &str) -> Option<Tlp> {
        predefined_marking(id).max(self.markings.get(id).copied())
    }

    fn read_indicator(&mut self, object: &Map<String, Value>, index: usize) {
        let id = object.get("id").and_then(Value::as_str);
        let name = match id {
            Some(id) => format!("indicator {id}"),
            None => format!("objects[{index}] (indicator without id)"),
        };
        if object.get("revoked").and_then(Value::as_bool) == Some(true) {
            return;
        }
        let pattern_type = object
            .get("pattern_type")
            .and_then(Value::as_str)
            // STIX 2.0 indicators have no pattern_type: their patterns are STIX patterns.
            .unwrap_or("stix");
        if !pattern_type.eq_ignore_ascii_case("stix") {
            self.diagnostic(
                true,
                id,
                "unsupported-pattern",
                format!(
                    "{name}: pattern_type '{pattern_type}' is not supported (only stix); skipped"
                ),
            );
            return;
        }
        let Some(pattern) = object.get("pattern").and_then(Value::as_str) else {
            self.diagnostic(false, id, "bad-stix", format!("{name}: no pattern"));
            return;
        };
        let comparisons = match parse_pattern(pattern) {
            Ok(comparisons) => comparisons,
            Err(PatternError::Unsupported(what)) => {
                self.diagnostic(
                    true,
                    id,
                    "unsupported-pattern",
                    format!(
                        "{name}: the pattern uses {what}; Tocsin supports '=' comparisons of \
                         IP, domain, URL, e-mail, file name and file hash values combined with \
                         OR; indicator skipped"
                    ),
                );
                return;
            }
            Err(PatternError::Syntax(why)) => {
                self.diagnostic(
                    false,
                    id,
                    "bad-pattern",
                    format!("{name}: the pattern is malformed: {why}; indicator skipped"),
                );
                return;
            }
        };

        let mut tlp: Option<Tlp> = None;
        let marking_refs = object
            .get("object_marking_refs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        let granular_refs = object
            .get("granular_markings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| g.get("marking_ref").and_then(Value::as_str));
        for marking in marking_refs.chain(granular_refs) {
            tlp = tlp.max(self.marking_tlp(marking));
        }

        let valid_from = self.timestamp(object, "valid_from", id, &name);
        let valid_until = self.timestamp(object, "valid_until", id, &name);
        let confidence = match object.get("confidence") {
            None | Some(Value::Null) => None,
            Some(raw) => {
                let parsed = raw.as_u64().filter(|c| *c <= 100).map(|c| c as u8);
                if parsed.is_none() {
                    self.diagnostic(
                        true,
                        id,
                        "bad-confidence",
                        format!("{name}: confidence {raw} is not an integer 0–100; ignored"),
                    );
                }
                parsed
            }
        };
        let tags = ["labels", "indicator_types"]
            .iter()
            .filter_map(|key| object.get(*key).and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let meta = IndicatorMeta {
            feed: self.feed.to_owned(),
            tlp: tlp.unwrap_or(self.options.default_tlp),
            source_id: id.map(str::to_owned),
            valid_from,
            valid_until,
            confidence,
            tags,
        };
        let location = Location::line(self.file, self.lines.line_of(id));
        for comparison in comparisons {
            self.sink.add(
                comparison.kind,
                &comparison.value,
                &meta,
                &location,
                &format!("{name} ({})", comparison.path),
            );
        }
    }

    fn timestamp(
        &mut self,
        object: &Map<String, Value>,
        key: &str,
        id: Option<&str>,
        name: &str,
    ) -> Option<Timestamp> {
        let raw = object.get(key)?;
        let parsed = raw.as_str().and_then(|t| Timestamp::parse(t).ok());
        if parsed.is_none() && !raw.is_null() {
            self.diagnostic(
                true,
                id,
                "bad-timestamp",
                format!("{name}: {key} {raw} is not a timestamp; ignored"),
            );
        }
        parsed
    }
}

/// One `path = 'value'` comparison of the supported subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Comparison {
    /// The object path as written, for messages.
    pub path: String,
    /// The indicator type the path stands for.
    pub kind: IndicatorType,
    /// The literal, unescaped, not yet normalised.
    pub value: String,
}

/// Why a pattern gives no indicators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatternError {
    /// Well-formed, but uses something outside the supported subset (named here).
    Unsupported(String),
    /// Not a STIX pattern.
    Syntax(String),
}

/// Parse a STIX pattern into the comparisons it ORs together (duplicates removed).
pub(crate) fn parse_pattern(pattern: &str) -> Result<Vec<Comparison>, PatternError> {
    let tokens = tokenize(pattern).map_err(PatternError::Syntax)?;
    let mut parser = PatternParser {
        tokens,
        at: 0,
        depth: 0,
        unsupported: None,
        comparisons: Vec::new(),
    };
    parser
        .observation_expressions()
        .map_err(PatternError::Syntax)?;
    if let Some(token) = parser.tokens.get(parser.at) {
        return Err(PatternError::Syntax(format!(
            "unexpected {} after the end of the pattern",
            token.describe()
        )));
    }
    if let Some(what) = parser.unsupported {
        return Err(PatternError::Unsupported(what));
    }
    let mut comparisons = parser.comparisons;
    let mut seen = std::collections::HashSet::new();
    comparisons.retain(|c| seen.insert((c.kind, c.value.clone())));
    Ok(comparisons)
}

/// An object path: `file:hashes.'SHA-256'` is type `file`, steps `hashes`, `SHA-256`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ObjectPath {
    object_type: String,
    steps: Vec<String>,
    text: String,
}

impl ObjectPath {
    /// The indicator type this path's values are, when Tocsin supports it.
    fn indicator_type(&self) -> Option<IndicatorType> {
        let steps: Vec<&str> = self.steps.iter().map(String::as_str).collect();
        Some(match (self.object_type.as_str(), steps.as_slice()) {
            ("ipv4-addr", ["value"]) => IndicatorType::Ipv4,
            ("ipv6-addr", ["value"]) => IndicatorType::Ipv6,
            ("domain-name", ["value"]) => IndicatorType::Domain,
            ("url", ["value"]) => IndicatorType::Url,
            ("email-addr", ["value"]) => IndicatorType::Email,
            ("file", ["name"]) => IndicatorType::Filename,
            ("file", ["hashes", algorithm]) => {
                match algorithm.to_ascii_uppercase().replace('-', "").as_str() {
                    "MD5" => IndicatorType::Md5,
                    "SHA1" => IndicatorType::Sha1,
                    "SHA256" => IndicatorType::Sha256,
                    "SHA512" => IndicatorType::Sha512,
                    _ => return None,
                }
            }
            _ => return None,
        })
    }
}

/// A pattern token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    OpenBracket,
    CloseBracket,
    OpenParen,
    CloseParen,
    Comma,
    /// `=`, `!=`, `<`, `<=`, `>`, `>=` (`==` and `<>` are read as `=` and `!=`).
    Operator(&'static str),
    /// A `'…'` literal, unescaped.
    String(String),
    /// `t'…'`, `h'…'` or `b'…'`: timestamp, hex and binary literals.
    Typed(char, String),
    /// An integer or float literal.
    Number(String),
    /// A keyword (`AND`, `WITHIN`…) or boolean.
    Word(String),
    Path(ObjectPath),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::OpenBracket => "'['".to_owned(),
            Token::CloseBracket => "']'".to_owned(),
            Token::OpenParen => "'('".to_owned(),
            Token::CloseParen => "')'".to_owned(),
            Token::Comma => "','".to_owned(),
            Token::Operator(op) => format!("'{op}'"),
            Token::String(s) => format!("the string '{}'", super::shown(s)),
            Token::Typed(kind, s) => format!("the literal {kind}'{}'", super::shown(s)),
            Token::Number(n) => format!("the number {n}"),
            Token::Word(w) => format!("'{}'", super::shown(w)),
            Token::Path(p) => format!("the object path {}", super::shown(&p.text)),
        }
    }

    /// True for the keyword `word` (keywords are upper case in the grammar; any case here).
    fn is_keyword(&self, word: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(word))
    }
}

/// Split a pattern into tokens.
fn tokenize(pattern: &str) -> Result<Vec<Token>, String> {
    let mut lexer = Lexer {
        text: pattern,
        at: 0,
    };
    let mut tokens = Vec::new();
    while let Some(c) = lexer.peek() {
        if c.is_whitespace() {
            lexer.bump();
            continue;
        }
        let token = match c {
            '[' => lexer.single(Token::OpenBracket),
            ']' => lexer.single(Token::CloseBracket),
            '(' => lexer.single(Token::OpenParen),
            ')' => lexer.single(Token::CloseParen),
            ',' => lexer.single(Token::Comma),
            '=' | '!' | '<' | '>' => lexer.operator()?,
            '\'' => Token::String(lexer.string()?),
            '-' | '+' | '0'..='9' => lexer.number()?,
            c if c.is_ascii_alphabetic() || c == '_' => lexer.word_or_path()?,
            other => return Err(format!("unexpected character '{other}'")),
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// A cursor over the pattern's characters.
struct Lexer<'p> {
    text: &'p str,
    at: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.at += expected.len_utf8();
            true
        } else {
            false
        }
    }

    fn single(&mut self, token: Token) -> Token {
        self.bump();
        token
    }

    fn operator(&mut self) -> Result<Token, String> {
        let first = self.bump().unwrap_or_default();
        let op = match (first, self.peek()) {
            ('=', Some('=')) | ('!', Some('=')) | ('<', Some('=' | '>')) | ('>', Some('=')) => {
                let second = self.bump().unwrap_or_default();
                match (first, second) {
                    ('=', _) => "=",
                    ('!', _) | ('<', '>') => "!=",
                    ('<', _) => "<=",
                    _ => ">=",
                }
            }
            ('=', _) => "=",
            ('<', _) => "<",
            ('>', _) => ">",
            _ => return Err("'!' must be followed by '='".to_owned()),
        };
        Ok(Token::Operator(op))
    }

    /// A `'…'` literal: the only escapes are `\'` and `\\`.
    fn string(&mut self) -> Result<String, String> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err("unterminated string literal".to_owned()),
                Some('\'') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c @ ('\'' | '\\')) => out.push(c),
                    Some(c) => return Err(format!("invalid escape '\\{c}' in a string literal")),
                    None => return Err("unterminated string literal".to_owned()),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Token, String> {
        let start = self.at;
        if matches!(self.peek(), Some('-' | '+')) {
            self.bump();
        }
        let digits_start = self.at;
        while matches!(self.peek(), Some('0'..='9')) {
            self.bump();
        }
        if self.at == digits_start {
            return Err("a sign must be followed by digits".to_owned());
        }
        if self.eat('.') {
            let fraction_start = self.at;
            while matches!(self.peek(), Some('0'..='9')) {
                self.bump();
            }
            if self.at == fraction_start {
                return Err("a decimal point must be followed by digits".to_owned());
            }
        }
        Ok(Token::Number(self.text[start..self.at].to_owned()))
    }

    fn identifier(&mut self) -> &str {
        let start = self.at;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            self.bump();
        }
        &self.text[start..self.at]
    }

    /// A keyword, a typed literal (`t'…'`) or an object path (`type:property…`).
    fn word_or_path(&mut self) -> Result<Token, String> {
        let start = self.at;
        let word = self.identifier().to_owned();
        if self.peek() == Some('\'') {
            let kind = match word.as_str() {
                "t" | "h" | "b" => word.chars().next().unwrap_or('t'),
                _ => return Err(format!("unexpected quote after '{word}'")),
            };
            return Ok(Token::Typed(kind, self.string()?));
        }
        if !self.eat(':') {
            return Ok(Token::Word(word));
        }
        let mut steps = vec![self.path_step()?];
        loop {
            if self.eat('.') {
                steps.push(self.path_step()?);
            } else if self.eat('[') {
                let index_start = self.at;
                if !self.eat('*') {
                    self.eat('-');
                    while matches!(self.peek(), Some('0'..='9')) {
                        self.bump();
                    }
                }
                let index = self.text[index_start..self.at].to_owned();
                if index.is_empty() || index == "-" || !self.eat(']') {
                    return Err("a list index must be [*] or [n]".to_owned());
                }
                steps.push(format!("[{index}]"));
            } else {
                break;
            }
        }
        Ok(Token::Path(ObjectPath {
            object_type: word,
            steps,
            text: self.text[start..self.at].to_owned(),
        }))
    }

    /// One property name: an identifier or a quoted name (`'SHA-256'`).
    fn path_step(&mut self) -> Result<String, String> {
        if self.peek() == Some('\'') {
            return self.string();
        }
        let name = self.identifier();
        if name.is_empty() {
            Err("an object path needs a property name after ':' and '.'".to_owned())
        } else {
            Ok(name.to_owned())
        }
    }
}

/// Nesting deeper than this is refused (a recursion bound, far above real patterns).
const MAX_PATTERN_DEPTH: usize = 64;

/// Recursive descent over the token list, after `STIXPattern.g4`: observation expressions
/// (`FOLLOWEDBY` < `OR` < `AND` < qualifiers) over bracketed comparison expressions (`OR` <
/// `AND`). Unsupported constructs are remembered, not fatal, so that a malformed pattern is
/// still reported as malformed.
struct PatternParser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
    unsupported: Option<String>,
    comparisons: Vec<Comparison>,
}

impl PatternParser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += usize::from(token.is_some());
        token
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_keyword(word)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, expected: &Token, what: &str) -> Result<(), String> {
        match self.next() {
            Some(ref token) if token == expected => Ok(()),
            Some(token) => Err(format!("expected {what}, found {}", token.describe())),
            None => Err(format!("expected {what} at the end of the pattern")),
        }
    }

    fn unsupported(&mut self, what: impl Into<String>) {
        if self.unsupported.is_none() {
            self.unsupported = Some(what.into());
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_PATTERN_DEPTH {
            Err(format!("nested more than {MAX_PATTERN_DEPTH} levels deep"))
        } else {
            Ok(())
        }
    }

    fn observation_expressions(&mut self) -> Result<(), String> {
        self.observation_or()?;
        while self.eat_keyword("FOLLOWEDBY") {
            self.unsupported("FOLLOWEDBY");
            self.observation_or()?;
        }
        Ok(())
    }

    fn observation_or(&mut self) -> Result<(), String> {
        self.observation_and()?;
        while self.eat_keyword("OR") {
            self.observation_and()?;
        }
        Ok(())
    }

    fn observation_and(&mut self) -> Result<(), String> {
        self.qualified_observation()?;
        while self.eat_keyword("AND") {
            self.unsupported("AND between observations");
            self.qualified_observation()?;
        }
        Ok(())
    }

    fn qualified_observation(&mut self) -> Result<(), String> {
        self.enter()?;
        match self.next() {
            Some(Token::OpenBracket) => {
                self.comparison_or()?;
                self.expect(&Token::CloseBracket, "']'")?;
            }
            Some(Token::OpenParen) => {
                self.observation_expressions()?;
                self.expect(&Token::CloseParen, "')'")?;
            }
            Some(token) => {
                return Err(format!(
                    "expected '[' or '(' to start an observation, found {}",
                    token.describe()
                ))
            }
            None => return Err("expected an observation '[…]'".to_owned()),
        }
        self.depth -= 1;
        loop {
            if self.eat_keyword("WITHIN") {
                self.unsupported("the WITHIN qualifier");
                match self.next() {
                    Some(Token::Number(_)) => {}
                    _ => return Err("WITHIN needs a number of seconds".to_owned()),
                }
                if !self.eat_keyword("SECONDS") {
                    return Err("expected SECONDS after WITHIN n".to_owned());
                }
            } else if self.eat_keyword("REPEATS") {
                self.unsupported("the REPEATS qualifier");
                match self.next() {
                    Some(Token::Number(_)) => {}
                    _ => return Err("REPEATS needs a number".to_owned()),
                }
                if !self.eat_keyword("TIMES") {
                    return Err("expected TIMES after REPEATS n".to_owned());
                }
            } else if self.eat_keyword("START") {
                self.unsupported("the START/STOP qualifier");
                let start = self.next();
                let stop_keyword = self.eat_keyword("STOP");
                let stop = self.next();
                if !matches!(
                    (start, stop_keyword, stop),
                    (Some(Token::Typed('t', _)), true, Some(Token::Typed('t', _)))
                ) {
                    return Err("expected START t'…' STOP t'…'".to_owned());
                }
            } else {
                return Ok(());
            }
        }
    }

    fn comparison_or(&mut self) -> Result<(), String> {
        self.comparison_and()?;
        while self.eat_keyword("OR") {
            self.comparison_and()?;
        }
        Ok(())
    }

    fn comparison_and(&mut self) -> Result<(), String> {
        self.comparison()?;
        while self.eat_keyword("AND") {
            self.unsupported("AND");
            self.comparison()?;
        }
        Ok(())
    }

    fn comparison(&mut self) -> Result<(), String> {
        self.enter()?;
        match self.next() {
            Some(Token::OpenParen) => {
                self.comparison_or()?;
                self.expect(&Token::CloseParen, "')'")?;
            }
            Some(token) if token.is_keyword("EXISTS") => {
                self.unsupported("EXISTS");
                match self.next() {
                    Some(Token::Path(_)) => {}
                    _ => return Err("EXISTS needs an object path".to_owned()),
                }
            }
            Some(Token::Path(path)) => self.property_test(path)?,
            Some(token) => {
                return Err(format!(
                    "expected an object path, found {}",
                    token.describe()
                ))
            }
            None => return Err("expected a comparison".to_owned()),
        }
        self.depth -= 1;
        Ok(())
    }

    fn property_test(&mut self, path: ObjectPath) -> Result<(), String> {
        let negated = self.eat_keyword("NOT");
        let literal = match self.next() {
            Some(Token::Operator(op)) => {
                if op != "=" {
                    self.unsupported(format!("the operator {op}"));
                }
                self.literal()?
            }
            Some(token) if token.is_keyword("IN") => {
                self.unsupported("IN");
                self.expect(&Token::OpenParen, "'(' after IN")?;
                self.literal()?;
                while self.peek() == Some(&Token::Comma) {
                    self.at += 1;
                    self.literal()?;
                }
                self.expect(&Token::CloseParen, "')' to close the IN list")?;
                return Ok(());
            }
            Some(Token::Word(word))
                if ["LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"]
                    .iter()
                    .any(|op| word.eq_ignore_ascii_case(op)) =>
            {
                self.unsupported(format!("the operator {}", word.to_ascii_uppercase()));
                self.literal()?;
                return Ok(());
            }
            Some(token) => {
                return Err(format!(
                    "expected a comparison operator after {}, found {}",
                    path.text,
                    token.describe()
                ))
            }
            None => return Err(format!("expected a comparison after {}", path.text)),
        };
        if negated {
            self.unsupported("NOT");
        }
        let Some(kind) = path.indicator_type() else {
            self.unsupported(format!("the object path {}", path.text));
            return Ok(());
        };
        match literal {
            Token::String(value) => self.comparisons.push(Comparison {
                path: path.text,
                kind,
                value,
            }),
            other => self.unsupported(format!("{} (values must be strings)", other.describe())),
        }
        Ok(())
    }

    fn literal(&mut self) -> Result<Token, String> {
        match self.next() {
            Some(token @ (Token::String(_) | Token::Typed(..) | Token::Number(_))) => Ok(token),
            Some(Token::Word(word))
                if word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("false") =>
            {
                Ok(Token::Word(word))
            }
            Some(token) => Err(format!("expected a literal, found {}", token.describe())),
            None => Err("expected a literal at the end of the pattern".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pattern: &str) -> Vec<(IndicatorType, String)> {
        parse_pattern(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e:?}"))
            .into_iter()
            .map(|c| (c.kind, c.value))
            .collect()
    }

    fn unsupported(pattern: &str) -> String {
        match parse_pattern(pattern) {
            Err(PatternError::Unsupported(what)) => what,
            other => panic!("{pattern}: expected unsupported, got {other:?}"),
        }
    }

    fn malformed(pattern: &str) -> String {
        match parse_pattern(pattern) {
            Err(PatternError::Syntax(why)) => why,
            other => panic!("{pattern}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn supported_subset() {
        assert_eq!(
            values("[ipv4-addr:value = '198.51.100.7']"),
            vec![(IndicatorType::Ipv4, "198.51.100.7".to_owned())]
        );
        assert_eq!(
            values("[file:hashes.'SHA-256' = 'ab' OR file:hashes.MD5 = 'cd'] OR ([url:value = 'http://x.test/'])"),
            vec![
                (IndicatorType::Sha256, "ab".to_owned()),
                (IndicatorType::Md5, "cd".to_owned()),
                (IndicatorType::Url, "http://x.test/".to_owned()),
            ]
        );
        assert_eq!(
            values("[(domain-name:value == 'a.test' OR email-addr:value = 'x@a.test')] OR [file:name = 'it\\'s \\\\ here']"),
            vec![
                (IndicatorType::Domain, "a.test".to_owned()),
                (IndicatorType::Email, "x@a.test".to_owned()),
                (IndicatorType::Filename, "it's \\ here".to_owned()),
            ]
        );
        assert_eq!(
            values("[file:hashes.sha1 = 'a' OR file:hashes.'SHA-1' = 'a']").len(),
            1
        );
    }

    #[test]
    fn unsupported_constructs_are_named() {
        assert_eq!(
            unsupported("[ipv4-addr:value = '1.2.3.4' AND domain-name:value = 'a.test']"),
            "AND"
        );
        assert_eq!(
            unsupported("[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'a.test']"),
            "AND between observations"
        );
        assert_eq!(
            unsupported("[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [url:value = 'http://a/']"),
            "FOLLOWEDBY"
        );
        assert_eq!(
            unsupported("[ipv4-addr:value = '1.2.3.4'] WITHIN 300 SECONDS"),
            "the WITHIN qualifier"
        );
        assert_eq!(
            unsupported("[ipv4-addr:value = '1.2.3.4'] REPEATS 5 TIMES"),
            "the REPEATS qualifier"
        );
        assert_eq!(
            unsupported("[ipv4-addr:value = '1.2.3.4'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'"),
            "the START/STOP qualifier"
        );
        assert_eq!(
            unsupported("[email-message:subject MATCHES '^x']"),
            "the operator MATCHES"
        );
        assert_eq!(
            unsupported("[domain-name:value LIKE '%.test']"),
            "the operator LIKE"
        );
        assert_eq!(
            unsupported("[ipv4-addr:value IN ('1.2.3.4', '5.6.7.8')]"),
            "IN"
        );
        assert_eq!(
            unsupported("[ipv4-addr:value != '1.2.3.4']"),
            "the operator !="
        );
        assert_eq!(unsupported("[ipv4-addr:value NOT = '1.2.3.4']"), "NOT");
        assert_eq!(
            unsupported("[x509-certificate:issuer = 'CN=x']"),
            "the object path x509-certificate:issuer"
        );
        assert_eq!(
            unsupported(
                "[email-message:body_multipart[*].body_raw_ref.name MATCHES '^F.+\\\\.exe$']"
            ),
            "the operator MATCHES"
        );
        assert_eq!(unsupported("[file:size = 25]"), "the object path file:size");
        assert_eq!(
            unsupported("[file:name = 25]"),
            "the number 25 (values must be strings)"
        );
        assert_eq!(
            unsupported("[file:hashes.'SHA3-256' = 'ab']"),
            "the object path file:hashes.'SHA3-256'"
        );
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for pattern in [
            "",
            "[",
            "[]",
            "ipv4-addr:value = '1.2.3.4'",
            "[ipv4-addr:value = '1.2.3.4'",
            "[ipv4-addr:value = '1.2.3.4]",
            "[ipv4-addr:value '1.2.3.4']",
            "[ipv4-addr:value = '1.2.3.4'] OR",
            "[ipv4-addr:value = '\\x']",
            "[ipv4-addr: = 'a']",
            "[a:b = 'c'] WITHIN SECONDS",
            "[a:b = 'c'] extra",
            "[a:b[ = 'c']",
            "[a:b = 'c' ! 'd']",
            "[a:b = 'c'] ; drop",
            "[a:b = -]",
        ] {
            malformed(pattern);
        }
        assert!(malformed(&"(".repeat(1000)).contains("nested"));
        assert!(malformed(&format!(
            "[{}a:b = 'c'{}]",
            "(".repeat(500),
            ")".repeat(500)
        ))
        .contains("nested"));
    }
}
