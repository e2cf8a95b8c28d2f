//! Sigma values and modifiers.
//!
//! A Sigma value is a string with wildcards (`*`, `?`, escaped with `\`), a number, a
//! boolean or null; modifiers after the field name (`CommandLine|contains|all`) change how
//! it is compared. Modifiers are parsed into [`Modifier`] here, with the whole
//! specification's list, so that the compiler can say precisely which one it does not
//! support rather than misreading a rule.

use std::fmt;

/// One piece of a Sigma string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StrPart {
    /// Literal text (wildcard escapes removed).
    Literal(String),
    /// `*`: any run of characters.
    AnyRun,
    /// `?`: exactly one character.
    AnyOne,
}

/// A Sigma string value, split into literals and wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SigmaString {
    /// The pieces in order; adjacent literals are merged.
    pub parts: Vec<StrPart>,
}

impl SigmaString {
    /// Parse a raw value: `*` and `?` are wildcards; `\*`, `\?` and `\\` are escapes; a
    /// backslash before anything else is a literal backslash (as the specification says).
    pub fn parse(raw: &str) -> Self {
        let mut s = SigmaString::default();
        let mut lit = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.peek() {
                    Some('*') | Some('?') | Some('\\') => {
                        lit.push(chars.next().unwrap_or('\\'));
                    }
                    _ => lit.push('\\'),
                },
                '*' => {
                    s.flush(&mut lit);
                    if s.parts.last() != Some(&StrPart::AnyRun) {
                        s.parts.push(StrPart::AnyRun);
                    }
                }
                '?' => {
                    s.flush(&mut lit);
                    s.parts.push(StrPart::AnyOne);
                }
                c => lit.push(c),
            }
        }
        s.flush(&mut lit);
        s
    }

    /// A plain literal with no wildcards.
    pub fn literal(text: &str) -> Self {
        let mut s = SigmaString::default();
        if !text.is_empty() {
            s.parts.push(StrPart::Literal(text.to_owned()));
        }
        s
    }

    fn flush(&mut self, lit: &mut String) {
        if !lit.is_empty() {
            self.parts.push(StrPart::Literal(std::mem::take(lit)));
        }
    }

    /// Whether it holds any wildcard.
    pub fn has_wildcards(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, StrPart::Literal(_)))
    }

    /// The text if it is a plain literal (`""` for the empty string).
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [StrPart::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Prepend `*` (for `endswith` / `contains`).
    pub fn star_before(&mut self) {
        if self.parts.first() != Some(&StrPart::AnyRun) {
            self.parts.insert(0, StrPart::AnyRun);
        }
    }

    /// Append `*` (for `startswith` / `contains`).
    pub fn star_after(&mut self) {
        if self.parts.last() != Some(&StrPart::AnyRun) {
            self.parts.push(StrPart::AnyRun);
        }
    }
}

impl fmt::Display for SigmaString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                StrPart::Literal(s) => {
                    for c in s.chars() {
                        if matches!(c, '*' | '?') {
                            write!(f, "\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                }
                StrPart::AnyRun => write!(f, "*")?,
                StrPart::AnyOne => write!(f, "?")?,
            }
        }
        Ok(())
    }
}

/// A value in a detection.
#[derive(Debug, Clone, PartialEq)]
pub enum SigmaValue {
    /// A string, possibly with wildcards.
    String(SigmaString),
    /// A number (kept with its source text, which is what string comparison uses).
    Number {
        /// The number.
        value: f64,
        /// As written in the rule.
        text: String,
    },
    /// `true` / `false`.
    Bool(bool),
    /// `null`: the field is absent or empty.
    Null,
}

impl fmt::Display for SigmaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigmaValue::String(s) => write!(f, "'{s}'"),
            SigmaValue::Number { text, .. } => write!(f, "{text}"),
            SigmaValue::Bool(b) => write!(f, "{b}"),
            SigmaValue::Null => write!(f, "null"),
        }
    }
}

/// Every value modifier of the Sigma specification 2.1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modifier {
    /// `contains`
    Contains,
    /// `startswith`
    StartsWith,
    /// `endswith`
    EndsWith,
    /// `all`: the values are ANDed.
    All,
    /// `exists`
    Exists,
    /// `cased`: case-sensitive.
    Cased,
    /// `neq`
    Neq,
    /// `windash`
    Windash,
    /// `re`
    Re,
    /// `i` (after `re`)
    ReIgnoreCase,
    /// `m` (after `re`)
    ReMultiLine,
    /// `s` (after `re`)
    ReDotAll,
    /// `base64`
    Base64,
    /// `base64offset`
    Base64Offset,
    /// `utf16le` / `wide`
    Utf16Le,
    /// `utf16be`
    Utf16Be,
    /// `utf16`
    Utf16,
    /// `lt`
    Lt,
    /// `lte`
    Lte,
    /// `gt`
    Gt,
    /// `gte`
    Gte,
    /// `cidr`
    Cidr,
    /// `expand`
    Expand,
    /// `fieldref`
    FieldRef,
    /// `minute`
    Minute,
    /// `hour`
    Hour,
    /// `day`
    Day,
    /// `week`
    Week,
    /// `month`
    Month,
    /// `year`
    Year,
}

impl Modifier {
    /// Parse a modifier name as written after `|`.
    pub fn parse(name: &str) -> Option<Modifier> {
        use Modifier::*;
        Some(match name {
            "contains" => Contains,
            "startswith" => StartsWith,
            "endswith" => EndsWith,
            "all" => All,
            "exists" => Exists,
            "cased" => Cased,
            "neq" => Neq,
            "windash" => Windash,
            "re" => Re,
            "i" => ReIgnoreCase,
            "m" => ReMultiLine,
            "s" => ReDotAll,
            "base64" => Base64,
            "base64offset" => Base64Offset,
            "utf16le" | "wide" => Utf16Le,
            "utf16be" => Utf16Be,
            "utf16" => Utf16,
            "lt" => Lt,
            "lte" => Lte,
            "gt" => Gt,
            "gte" => Gte,
            "cidr" => Cidr,
            "expand" => Expand,
            "fieldref" => FieldRef,
            "minute" => Minute,
            "hour" => Hour,
            "day" => Day,
            "week" => Week,
            "month" => Month,
            "year" => Year,
            _ => return None,
        })
    }

    /// The spelling in rules.
    pub fn name(self) -> &'static str {
        use Modifier::*;
        match self {
            Contains => "contains",
            StartsWith => "startswith",
            EndsWith => "endswith",
            All => "all",
            Exists => "exists",
            Cased => "cased",
            Neq => "neq",
            Windash => "windash",
            Re => "re",
            ReIgnoreCase => "i",
            ReMultiLine => "m",
            ReDotAll => "s",
            Base64 => "base64",
            Base64Offset => "base64offset",
            Utf16Le => "utf16le",
            Utf16Be => "utf16be",
            Utf16 => "utf16",
            Lt => "lt",
            Lte => "lte",
            Gt => "gt",
            Gte => "gte",
            Cidr => "cidr",
            Expand => "expand",
            FieldRef => "fieldref",
            Minute => "minute",
            Hour => "hour",
            Day => "day",
            Week => "week",
            Month => "month",
            Year => "year",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_escapes() {
        let s = SigmaString::parse(r"C:\Windows\\*\cmd?.exe");
        assert_eq!(
            s.parts,
            vec![
                StrPart::Literal(r"C:\Windows\".into()),
                StrPart::AnyRun,
                StrPart::Literal(r"\cmd".into()),
                StrPart::AnyOne,
                StrPart::Literal(".exe".into()),
            ]
        );
        // `\*` is an escaped wildcard, not a backslash followed by a wildcard.
        assert_eq!(
            SigmaString::parse(r"C:\Windows\*").as_literal(),
            Some(r"C:\Windows*")
        );
        let s = SigmaString::parse(r"a\*b\?c\\d");
        assert_eq!(s.as_literal(), Some(r"a*b?c\d"));
        assert_eq!(SigmaString::parse("**x").parts.len(), 2);
    }
}
