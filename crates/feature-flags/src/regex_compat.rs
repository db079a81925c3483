//! The `regex` / `not_regex` operators with the reference SDK's rules.
//!
//! PostHog's server matches with a Rust regex engine and the Python SDK with `re`; the
//! SDK only decides locally when both engines agree and defers everything else to the
//! server (lookaround, backreferences, flags, word boundaries, nested quantified groups,
//! some class syntax, some inputs). This module applies the same deferral rules, then
//! matches with the `regex` crate. It is not a general Python-regex emulator.

use std::sync::OnceLock;

use regex::Regex;

/// The pattern (or this pattern on this input) must be decided by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deferred;

/// `Ok(Some(matched))`, `Ok(None)` for an invalid pattern (which matches nothing), or
/// `Err(Deferred)` when local evaluation must not decide.
pub(crate) fn is_match(pattern: &str, value: &str) -> Result<Option<bool>, Deferred> {
    if pattern.is_empty() {
        return Ok(Some(true));
    }
    let scanned = Scanner::new(pattern).run()?;
    if scanned.invalid {
        return Ok(None);
    }
    let Ok(regex) = Regex::new(&scanned.translated) else {
        return Ok(None);
    };
    if scanned.end_anchor && scanned.quantifier_or_alternation && value.ends_with('\n') {
        return Err(Deferred);
    }
    if !value.is_ascii()
        && scanned.word_class
        && value
            .chars()
            .any(|c| !c.is_ascii() && !is_letter_or_decimal(c))
    {
        return Err(Deferred);
    }
    if scanned.space_class && value.chars().any(|c| ('\x1c'..='\x1f').contains(&c)) {
        return Err(Deferred);
    }
    Ok(Some(regex.is_match(value)))
}

fn is_letter_or_decimal(c: char) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"^[\p{L}\p{Nd}]$").ok());
    let mut buf = [0u8; 4];
    re.as_ref()
        .is_some_and(|re| re.is_match(c.encode_utf8(&mut buf)))
}

struct Scanned {
    translated: String,
    /// Python's `re` rejects it (e.g. a repeated repeat) although the Rust engine may not.
    invalid: bool,
    word_class: bool,
    space_class: bool,
    end_anchor: bool,
    quantifier_or_alternation: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    Start,
    Char(char),
    Literal,
    Quantifier,
    EmptyGroup,
}

struct Scanner {
    chars: Vec<char>,
    i: usize,
    out: String,
    class_start: Option<usize>,
    prev: Prev,
    /// For each open group: does it contain a quantifier?
    groups: Vec<bool>,
    closed_group_quantified: bool,
    /// The last quantifier already took its lazy `?`.
    lazy_taken: bool,
    invalid: bool,
    word_class: bool,
    space_class: bool,
    end_anchor: bool,
    quantifier_or_alternation: bool,
}

impl Scanner {
    fn new(pattern: &str) -> Self {
        Scanner {
            chars: pattern.chars().collect(),
            i: 0,
            out: String::with_capacity(pattern.len() + 8),
            class_start: None,
            prev: Prev::Start,
            groups: Vec::new(),
            closed_group_quantified: false,
            lazy_taken: false,
            invalid: false,
            word_class: false,
            space_class: false,
            end_anchor: false,
            quantifier_or_alternation: false,
        }
    }

    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    fn run(mut self) -> Result<Scanned, Deferred> {
        while self.i < self.chars.len() {
            let c = self.chars[self.i];
            if self.class_start.is_none() {
                self.track_groups(c)?;
            }
            self.step(c)?;
            self.i += 1;
        }
        Ok(Scanned {
            translated: self.out,
            invalid: self.invalid,
            word_class: self.word_class,
            space_class: self.space_class,
            end_anchor: self.end_anchor,
            quantifier_or_alternation: self.quantifier_or_alternation,
        })
    }

    fn track_groups(&mut self, c: char) -> Result<(), Deferred> {
        self.end_anchor |= c == '$';
        self.quantifier_or_alternation |= "*+?{|".contains(c);
        match c {
            '(' => self.groups.push(false),
            ')' => {
                self.closed_group_quantified = self.groups.pop().unwrap_or(false);
                if let Some(last) = self.groups.last_mut() {
                    *last |= self.closed_group_quantified;
                }
            }
            '*' | '+' | '?' | '{' => {
                // A quantified group that is quantified again can backtrack badly.
                if self.prev == Prev::Char(')') && self.closed_group_quantified {
                    return Err(Deferred);
                }
                if let Some(last) = self.groups.last_mut() {
                    *last = true;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn step(&mut self, c: char) -> Result<(), Deferred> {
        match c {
            '\\' => self.escape(),
            '[' => {
                if self.class_start.is_some() {
                    return Err(Deferred);
                }
                self.class_start = Some(self.i);
                self.out.push('[');
                Ok(())
            }
            ']' if self.class_start.is_some() => {
                let start = self.class_start.unwrap_or(0);
                let content = start
                    + if self.at(start + 1) == Some('^') {
                        2
                    } else {
                        1
                    };
                if self.i == content {
                    return Err(Deferred);
                }
                self.class_start = None;
                self.prev = Prev::Literal;
                self.out.push(']');
                Ok(())
            }
            _ if self.class_start.is_some() => self.class_char(c),
            _ => self.outside_class(c),
        }
    }

    fn escape(&mut self) -> Result<(), Deferred> {
        self.i += 1;
        let Some(e) = self.at(self.i) else {
            self.out.push('\\'); // invalid trailing backslash: fails to compile
            return Ok(());
        };
        if e == 'x' {
            let digits: String = self.chars.iter().skip(self.i + 1).take(2).collect();
            if digits.len() != 2 || !digits.chars().all(|d| d.is_ascii_hexdigit()) {
                return Err(Deferred);
            }
            self.out.push_str("\\x");
            self.out.push_str(&digits);
            self.i += 2;
            self.prev = Prev::Literal;
            return Ok(());
        }
        let in_class = self.class_start.is_some();
        if "bB<>".contains(e) && !in_class {
            return Err(Deferred);
        }
        if !"dDsSwWbfnrt".contains(e) {
            if !(' '..='~').contains(&e) || e.is_ascii_alphanumeric() {
                return Err(Deferred);
            }
            if in_class && !"\\-[]^.$*+?(){}|".contains(e) {
                return Err(Deferred);
            }
        }
        self.word_class |= e == 'w' || e == 'W';
        self.space_class |= e == 's' || e == 'S';
        if e == 'b' {
            self.out.push_str("\\x08"); // backspace inside a class
        } else if e.is_ascii_alphanumeric() {
            self.out.push('\\');
            self.out.push(e);
        } else {
            // An escaped punctuation character is that literal character.
            self.out.push_str(&format!("\\x{:02X}", e as u32));
        }
        self.prev = Prev::Literal;
        Ok(())
    }

    fn class_char(&mut self, c: char) -> Result<(), Deferred> {
        let two: String = self.chars.iter().skip(self.i).take(2).collect();
        if two == "&&" || two == "--" || two == "~~" {
            return Err(Deferred);
        }
        if c == '-' && self.at(self.i + 1).is_some_and(|n| n != ']') {
            let next_shorthand = self.at(self.i + 1) == Some('\\')
                && self.at(self.i + 2).is_some_and(|s| "dDsSwW".contains(s));
            let prev_shorthand = self.i >= 2
                && self.chars[self.i - 2] == '\\'
                && "dDsSwW".contains(self.chars[self.i - 1]);
            if next_shorthand || prev_shorthand {
                return Err(Deferred);
            }
        }
        self.out.push(c);
        Ok(())
    }

    fn outside_class(&mut self, c: char) -> Result<(), Deferred> {
        match c {
            '(' if self.at(self.i + 1) == Some('?') => {
                if self.at(self.i + 2) != Some(':') {
                    return Err(Deferred);
                }
                self.out.push_str("(?:");
                self.i += 2;
                self.prev = Prev::Char('(');
                Ok(())
            }
            '{' => self.repetition(),
            '*' | '+' | '?' => {
                if matches!(
                    self.prev,
                    Prev::Char('^') | Prev::Char('$') | Prev::EmptyGroup
                ) || matches!(self.at(self.i + 1), Some('+') | Some('{'))
                {
                    return Err(Deferred);
                }
                match self.prev {
                    // The lazy modifier of the quantifier before.
                    Prev::Quantifier if c == '?' && !self.lazy_taken => self.lazy_taken = true,
                    // Python refuses a quantifier on a quantifier, or on nothing.
                    Prev::Quantifier | Prev::Start | Prev::Char('|') | Prev::Char('(') => {
                        self.invalid = true;
                    }
                    _ => self.lazy_taken = false,
                }
                self.prev = Prev::Quantifier;
                self.out.push(c);
                Ok(())
            }
            _ => {
                self.prev = if c == ')' && matches!(self.prev, Prev::Char('(') | Prev::EmptyGroup) {
                    Prev::EmptyGroup
                } else {
                    Prev::Char(c)
                };
                if c == '}' || c == ']' {
                    self.out.push_str(&format!("\\x{:02X}", c as u32));
                } else {
                    self.out.push(c);
                }
                Ok(())
            }
        }
    }

    /// `{m}`, `{m,}` or `{m,n}` after something repeatable; anything else is deferred.
    fn repetition(&mut self) -> Result<(), Deferred> {
        if matches!(
            self.prev,
            Prev::Start
                | Prev::Char('|')
                | Prev::Char('(')
                | Prev::Char('^')
                | Prev::Char('$')
                | Prev::EmptyGroup
                | Prev::Quantifier
        ) {
            return Err(Deferred);
        }
        let mut j = self.i + 1;
        let mut numbers = vec![String::new()];
        let mut closed = false;
        while let Some(c) = self.at(j) {
            match c {
                '0'..='9' => numbers.last_mut().map_or((), |n| n.push(c)),
                ',' if numbers.len() == 1 && !numbers[0].is_empty() => numbers.push(String::new()),
                '}' => {
                    closed = true;
                    break;
                }
                _ => break,
            }
            j += 1;
        }
        if !closed || numbers[0].is_empty() {
            return Err(Deferred);
        }
        for n in numbers.iter().filter(|n| !n.is_empty()) {
            if n.len() > 10 || n.parse::<u64>().map_or(true, |v| v > 0xFFFF_FFFF) {
                return Err(Deferred);
            }
        }
        let text: String = self.chars[self.i..=j].iter().collect();
        self.out.push_str(&text);
        self.i = j;
        if matches!(self.at(self.i + 1), Some('+') | Some('{')) {
            return Err(Deferred);
        }
        self.lazy_taken = false;
        self.prev = Prev::Quantifier;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_patterns_match_like_re_search() {
        assert_eq!(is_match("ab+c", "xxabbbc"), Ok(Some(true)));
        assert_eq!(is_match("^abc$", "abc"), Ok(Some(true)));
        assert_eq!(is_match("^abc$", "abcd"), Ok(Some(false)));
        assert_eq!(is_match(r"\.com$", "a.com"), Ok(Some(true)));
        assert_eq!(is_match(r"\.com$", "acom"), Ok(Some(false)));
        assert_eq!(is_match("[a-c]{2}", "xbcx"), Ok(Some(true)));
        assert_eq!(is_match("(?:ab)+", "abab"), Ok(Some(true)));
        assert_eq!(is_match("", "anything"), Ok(Some(true)));
    }

    #[test]
    fn invalid_patterns_match_nothing() {
        assert_eq!(is_match("(abc", "abc"), Ok(None));
        assert_eq!(is_match("a**", "true"), Ok(None));
        assert_eq!(is_match("a*?*", "a"), Ok(None));
        assert_eq!(is_match("x|*", "a"), Ok(None));
        assert_eq!(is_match("a*?", "aa"), Ok(Some(true)));
        assert_eq!(is_match("a{2}?", "aa"), Ok(Some(true)));
        assert_eq!(is_match("*abc", "abc"), Ok(None));
    }

    #[test]
    fn engine_specific_syntax_is_deferred() {
        for p in [
            r"(?=a)", r"(?i)abc", r"\bword", r"(a)\1", r"(a+)+", r"[[a]]", r"[]", r"a{", r"\p{L}",
            r"[a&&b]",
        ] {
            assert_eq!(is_match(p, "a"), Err(Deferred), "{p}");
        }
        // Strict end anchor plus repetition on an input ending in a newline.
        assert_eq!(is_match("a+$", "aa\n"), Err(Deferred));
        // \w on non-letter Unicode input.
        assert_eq!(is_match(r"\w", "a\u{300}"), Err(Deferred));
        assert_eq!(is_match(r"\w", "été"), Ok(Some(true)));
    }
}
