//! The Sigma condition language: `sel and not 1 of filter_*`.
//!
//! Grammar (precedence from weakest to strongest: or, and, not, x of, parentheses):
//! ```text
//! expr    := and_expr ("or" and_expr)*
//! and     := not_expr ("and" not_expr)*
//! not     := "not" not_expr | primary
//! primary := "(" expr ")" | ("1" | "all" | "any") "of" (pattern | "them") | identifier
//! ```
//! Identifiers and patterns are resolved against the rule's selections while parsing, so
//! a missing selection is an error that names it. `them` and patterns skip selections whose
//! names start with `_`, as the specification says.

use std::fmt;

/// A parsed condition over the rule's selections (by index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// One selection.
    Selection(usize),
    /// Negation.
    Not(Box<Condition>),
    /// All must hold.
    And(Vec<Condition>),
    /// One must hold.
    Or(Vec<Condition>),
    /// `1 of ...`: at least one of these selections.
    AnyOf(Vec<usize>),
    /// `all of ...`: every one of these selections.
    AllOf(Vec<usize>),
}

/// Why a condition could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// A name that is no selection.
    #[error("condition refers to selection '{0}', which the detection does not define")]
    UnknownSelection(String),
    /// A pattern that matches nothing.
    #[error("pattern '{0}' in the condition matches no selection")]
    EmptyPattern(String),
    /// Bad syntax.
    #[error("condition syntax error at '{near}': {what}")]
    Syntax {
        /// The token where it went wrong.
        near: String,
        /// What was expected.
        what: &'static str,
    },
    /// The old aggregation syntax.
    #[error("the '|' aggregation syntax ('| count() by ...', 'near') is obsolete in Sigma 2; use a correlation rule")]
    Aggregation,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token<'a> {
    And,
    Or,
    Not,
    Of,
    One,
    All,
    Them,
    Open,
    Close,
    Word(&'a str),
}

fn tokenize(text: &str) -> Result<Vec<Token<'_>>, ConditionError> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'(' {
            out.push(Token::Open);
            i += 1;
            continue;
        }
        if c == b')' {
            out.push(Token::Close);
            i += 1;
            continue;
        }
        if c == b'|' {
            return Err(ConditionError::Aggregation);
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && !b"()|".contains(&bytes[i]) {
            i += 1;
        }
        let word = &text[start..i];
        out.push(match word.to_ascii_lowercase().as_str() {
            "and" => Token::And,
            "or" => Token::Or,
            "not" => Token::Not,
            "of" => Token::Of,
            "1" | "any" => Token::One,
            "all" => Token::All,
            "them" => Token::Them,
            _ => Token::Word(word),
        });
    }
    Ok(out)
}

struct Parser<'a, 'n> {
    tokens: Vec<Token<'a>>,
    pos: usize,
    names: &'n [String],
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).copied()
    }

    fn near(&self) -> String {
        match self.tokens.get(self.pos) {
            None => "end of condition".to_owned(),
            Some(t) => format!("{t:?}"),
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Condition, ConditionError> {
        if depth > 64 {
            return Err(ConditionError::Syntax {
                near: self.near(),
                what: "nested too deeply",
            });
        }
        let mut items = vec![self.and_expr(depth)?];
        while self.peek() == Some(Token::Or) {
            self.pos += 1;
            items.push(self.and_expr(depth)?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Condition::Or(vec![]))
        } else {
            Condition::Or(items)
        })
    }

    fn and_expr(&mut self, depth: usize) -> Result<Condition, ConditionError> {
        let mut items = vec![self.not_expr(depth)?];
        while self.peek() == Some(Token::And) {
            self.pos += 1;
            items.push(self.not_expr(depth)?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Condition::And(vec![]))
        } else {
            Condition::And(items)
        })
    }

    fn not_expr(&mut self, depth: usize) -> Result<Condition, ConditionError> {
        if self.peek() == Some(Token::Not) {
            self.pos += 1;
            if depth > 64 {
                return Err(ConditionError::Syntax {
                    near: self.near(),
                    what: "nested too deeply",
                });
            }
            return Ok(Condition::Not(Box::new(self.not_expr(depth + 1)?)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Condition, ConditionError> {
        match self.peek() {
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.expr(depth + 1)?;
                if self.peek() != Some(Token::Close) {
                    return Err(ConditionError::Syntax {
                        near: self.near(),
                        what: "expected ')'",
                    });
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(quant @ (Token::One | Token::All)) => {
                self.pos += 1;
                if self.peek() != Some(Token::Of) {
                    return Err(ConditionError::Syntax {
                        near: self.near(),
                        what: "expected 'of' after '1' or 'all'",
                    });
                }
                self.pos += 1;
                let targets = match self.peek() {
                    Some(Token::Them) => {
                        self.pos += 1;
                        let all: Vec<usize> = (0..self.names.len())
                            .filter(|&i| !self.names[i].starts_with('_'))
                            .collect();
                        if all.is_empty() {
                            return Err(ConditionError::EmptyPattern("them".into()));
                        }
                        all
                    }
                    Some(Token::Word(pattern)) => {
                        self.pos += 1;
                        let hits: Vec<usize> = (0..self.names.len())
                            .filter(|&i| {
                                !self.names[i].starts_with('_')
                                    && glob_match(pattern, &self.names[i])
                            })
                            .collect();
                        if hits.is_empty() {
                            return Err(ConditionError::EmptyPattern(pattern.to_owned()));
                        }
                        hits
                    }
                    _ => {
                        return Err(ConditionError::Syntax {
                            near: self.near(),
                            what: "expected a selection pattern or 'them' after 'of'",
                        })
                    }
                };
                Ok(if quant == Token::One {
                    Condition::AnyOf(targets)
                } else {
                    Condition::AllOf(targets)
                })
            }
            Some(Token::Word(name)) => {
                self.pos += 1;
                match self.names.iter().position(|n| n == name) {
                    Some(i) => Ok(Condition::Selection(i)),
                    None => Err(ConditionError::UnknownSelection(name.to_owned())),
                }
            }
            _ => Err(ConditionError::Syntax {
                near: self.near(),
                what: "expected a selection, 'not', '(' or '1 of'/'all of'",
            }),
        }
    }
}

/// Parse `text` against the selection `names` (in their declaration order).
pub fn parse_condition(text: &str, names: &[String]) -> Result<Condition, ConditionError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        names,
    };
    let cond = parser.expr(0)?;
    if parser.pos != parser.tokens.len() {
        return Err(ConditionError::Syntax {
            near: parser.near(),
            what: "unexpected token after a complete condition",
        });
    }
    Ok(cond)
}

/// Match a selection-name pattern with `*` (any run) and `?` (one character).
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Selection(i) => write!(f, "#{i}"),
            Condition::Not(c) => write!(f, "not ({c})"),
            Condition::And(cs) | Condition::Or(cs) => {
                let op = if matches!(self, Condition::And(_)) {
                    " and "
                } else {
                    " or "
                };
                for (i, c) in cs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    write!(f, "({c})")?;
                }
                Ok(())
            }
            Condition::AnyOf(xs) => write!(f, "1 of {xs:?}"),
            Condition::AllOf(xs) => write!(f, "all of {xs:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn precedence_or_and_not() {
        let n = names(&["a", "b", "c"]);
        assert_eq!(
            parse_condition("a or b and not c", &n).unwrap(),
            Condition::Or(vec![
                Condition::Selection(0),
                Condition::And(vec![
                    Condition::Selection(1),
                    Condition::Not(Box::new(Condition::Selection(2)))
                ])
            ])
        );
        assert_eq!(
            parse_condition("(a or b) and c", &n).unwrap(),
            Condition::And(vec![
                Condition::Or(vec![Condition::Selection(0), Condition::Selection(1)]),
                Condition::Selection(2)
            ])
        );
    }

    #[test]
    fn quantifiers_and_patterns() {
        let n = names(&["selection_img", "selection_cli", "filter_a", "_hidden"]);
        assert_eq!(
            parse_condition("all of selection_* and not 1 of filter*", &n).unwrap(),
            Condition::And(vec![
                Condition::AllOf(vec![0, 1]),
                Condition::Not(Box::new(Condition::AnyOf(vec![2])))
            ])
        );
        assert_eq!(
            parse_condition("1 of them", &n).unwrap(),
            Condition::AnyOf(vec![0, 1, 2])
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let n = names(&["sel"]);
        assert_eq!(
            parse_condition("sel and missing", &n).unwrap_err(),
            ConditionError::UnknownSelection("missing".into())
        );
        assert!(matches!(
            parse_condition("1 of filter_*", &n).unwrap_err(),
            ConditionError::EmptyPattern(_)
        ));
        assert!(matches!(
            parse_condition("sel | count() > 5", &n).unwrap_err(),
            ConditionError::Aggregation
        ));
        assert!(parse_condition("(sel", &n).is_err());
        assert!(parse_condition("sel sel", &n).is_err());
        assert!(parse_condition("", &n).is_err());
        assert!(parse_condition(&"not ".repeat(1000), &n).is_err());
    }
}
