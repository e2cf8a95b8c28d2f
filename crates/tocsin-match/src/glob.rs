//! Sigma wildcard matching (`*`, `?`) over field text, without allocating.
//!
//! Used to verify values whose wildcards sit in the middle (`\AppData\*\Temp\*.exe`); the
//! literal pieces are prefiltered by the shared literal sets first, so this runs only on the
//! few candidate rules. Case-insensitive comparison folds ASCII only, the same folding the
//! literal sets use, so prefilter and verifier always agree.

/// One piece of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobPart {
    /// Literal bytes (lower-cased unless the pattern is case-sensitive).
    Literal(Box<[u8]>),
    /// `*`
    AnyRun,
    /// `?`: one character (one UTF-8 scalar value).
    AnyOne,
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    parts: Vec<GlobPart>,
    cased: bool,
}

fn char_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Glob {
    /// Build from parts; literals are lower-cased here when `cased` is false.
    pub fn new(parts: Vec<GlobPart>, cased: bool) -> Self {
        let parts = parts
            .into_iter()
            .map(|p| match p {
                GlobPart::Literal(b) if !cased => GlobPart::Literal(b.to_ascii_lowercase().into()),
                p => p,
            })
            .collect();
        Glob { parts, cased }
    }

    /// Whether every text matches: the pattern is only `*` (`|contains: '*'`), so a value
    /// need not be read, nor unescaped, to be tested.
    pub fn matches_every_text(&self) -> bool {
        self.parts.iter().all(|p| *p == GlobPart::AnyRun)
    }

    /// Whether `text` matches the whole pattern.
    pub fn is_match(&self, text: &[u8]) -> bool {
        self.match_from(0, text)
    }

    fn eq(&self, lit: &[u8], text: &[u8]) -> bool {
        if self.cased {
            lit == text
        } else {
            lit.len() == text.len()
                && lit
                    .iter()
                    .zip(text)
                    .all(|(a, b)| *a == b.to_ascii_lowercase())
        }
    }

    fn find(&self, lit: &[u8], text: &[u8]) -> Option<usize> {
        if lit.is_empty() {
            return Some(0);
        }
        if self.cased {
            return memchr::memmem::find(text, lit);
        }
        (0..=text.len().checked_sub(lit.len())?).find(|&i| self.eq(lit, &text[i..i + lit.len()]))
    }

    fn match_from(&self, part: usize, text: &[u8]) -> bool {
        let mut p = part;
        let mut t = 0usize;
        while p < self.parts.len() {
            match &self.parts[p] {
                GlobPart::Literal(lit) => {
                    if text.len() - t < lit.len() || !self.eq(lit, &text[t..t + lit.len()]) {
                        return false;
                    }
                    t += lit.len();
                    p += 1;
                }
                GlobPart::AnyOne => {
                    if t >= text.len() {
                        return false;
                    }
                    t += char_len(text[t]);
                    p += 1;
                }
                GlobPart::AnyRun => {
                    // Collapse following `?`s into a minimum length, then try each position
                    // of the next literal (backtracking only at stars).
                    p += 1;
                    if p == self.parts.len() {
                        return true;
                    }
                    let mut start = t;
                    loop {
                        if let GlobPart::Literal(lit) = &self.parts[p] {
                            let Some(off) = self.find(lit, &text[start.min(text.len())..]) else {
                                return false;
                            };
                            let at = start + off;
                            if self.match_from(p, &text[at..]) {
                                return true;
                            }
                            start = at + 1;
                            if start > text.len() {
                                return false;
                            }
                        } else {
                            // `*?` or `**`: try every remaining offset.
                            return (start..=text.len()).any(|s| {
                                (s == text.len() || (text[s] & 0xC0) != 0x80)
                                    && self.match_from(p, &text[s..])
                            });
                        }
                    }
                }
            }
        }
        t == text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str, cased: bool) -> Glob {
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        for b in pattern.bytes() {
            match b {
                b'*' | b'?' => {
                    if !lit.is_empty() {
                        parts.push(GlobPart::Literal(std::mem::take(&mut lit).into()));
                    }
                    parts.push(if b == b'*' {
                        GlobPart::AnyRun
                    } else {
                        GlobPart::AnyOne
                    });
                }
                _ => lit.push(b),
            }
        }
        if !lit.is_empty() {
            parts.push(GlobPart::Literal(lit.into()));
        }
        Glob::new(parts, cased)
    }

    #[test]
    fn wildcard_semantics() {
        let cases = [
            (
                r"*\appdata\*\temp\*.exe",
                r"C:\Users\a\AppData\Local\Temp\x.EXE",
                true,
            ),
            (
                r"*\appdata\*\temp\*.exe",
                r"C:\Users\a\AppData\Local\Tmp\x.exe",
                false,
            ),
            ("a?c", "abc", true),
            ("a?c", "aéc", true),
            ("a?c", "ac", false),
            ("*", "", true),
            ("a*", "a", true),
            ("*a*a*", "banana", true),
            ("*ab", "aab", true),
            ("x*?y", "xy", false),
            ("x*?y", "xzy", true),
            ("abc", "ABC", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p, false).is_match(t.as_bytes()), want, "{p} vs {t}");
        }
        assert!(!glob("abc", true).is_match(b"ABC"));
    }
}
