//! Diagnostics that point at the file: `sandbox.toml:12:9`, the line, a caret, the key,
//! what was expected and a hint.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::path::PathBuf;

use serde::Serialize;

/// A dotted key path such as `services.server.ports[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyPath(pub Vec<Seg>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    pub fn key(&self, k: impl Into<String>) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.into()));
        Self(v)
    }

    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        Self(v)
    }

    /// Parses figment's path segments, where array indices are plain numbers.
    pub fn from_figment(
        prefix: &KeyPath,
        segs: &[String],
        arrays: &dyn Fn(&KeyPath) -> bool,
    ) -> Self {
        let mut path = prefix.clone();
        for s in segs {
            path = match s.parse::<usize>() {
                Ok(i) if arrays(&path) => path.index(i),
                _ => path.key(s.clone()),
            };
        }
        path
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_char('.')?;
                    }
                    if k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        && !k.is_empty()
                    {
                        f.write_str(k)?;
                    } else {
                        write!(f, "\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\""))?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// A position in a file; `line` and `column` count from 1, the column in characters.
    /// Made with [`Origin::in_line`], which keeps a long line's text to a window around
    /// the column.
    File {
        file: PathBuf,
        line: usize,
        column: usize,
        /// The line, or for a long line a window of it with `…` where it was cut.
        #[serde(skip)]
        text: String,
        /// The column of `text`'s first character (1 unless the line was cut).
        #[serde(skip)]
        text_column: usize,
        /// Characters under the caret, at most to the end of `text`.
        #[serde(skip)]
        width: usize,
    },
    /// An environment variable.
    Env { var: String },
    /// A command-line flag.
    Flag { flag: String },
}

/// A line longer than this many characters is shown as a window of it.
pub const LINE_SHOWN: usize = 120;
/// Characters of context a window keeps before the caret, when the line has them.
const BEFORE_CARET: usize = 40;

impl Origin {
    /// A position in `line_text` (the whole line, without its newline): `caret` is the
    /// byte offset of `column` in it. Only a window of a long line is kept, so that many
    /// diagnostics on one huge line stay small; the work is bounded by the window, not
    /// the line.
    pub fn in_line(
        file: PathBuf,
        line: usize,
        column: usize,
        line_text: &str,
        caret: usize,
        width: usize,
    ) -> Self {
        let mut caret = caret.min(line_text.len());
        while !line_text.is_char_boundary(caret) {
            caret -= 1;
        }
        let (before, after) = line_text.split_at(caret);
        let left_has = before.chars().rev().take(LINE_SHOWN).count();
        let right_has = after.chars().take(LINE_SHOWN + 1).count();
        // Context before the caret, more of it when the line ends soon after.
        let left = if right_has < LINE_SHOWN - BEFORE_CARET {
            (LINE_SHOWN - right_has).min(left_has)
        } else {
            BEFORE_CARET.min(left_has)
        };
        let right = (LINE_SHOWN - left).min(right_has);
        let start = match left {
            0 => caret,
            n => before.char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i),
        };
        let end = after
            .char_indices()
            .nth(right)
            .map_or(line_text.len(), |(i, _)| caret + i);
        let (cut_left, cut_right) = (start > 0, end < line_text.len());
        let mut text = String::with_capacity(end - start + 6);
        if cut_left {
            text.push('…');
        }
        text.push_str(&line_text[start..end]);
        if cut_right {
            text.push('…');
        }
        Origin::File {
            file,
            line,
            column,
            text,
            text_column: column.saturating_sub(left + usize::from(cut_left)).max(1),
            width: width.min(right).max(1),
        }
    }
}

/// `s` with control characters (ESC, BEL, NUL, DEL, C1) and bidirectional overrides
/// written as `\u{1b}`, so that text from a file cannot drive the terminal it is shown
/// on. Tabs stay.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    if needs_escape(c) {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    } else {
        out.push(c);
    }
}

/// How many columns `c` takes once escaped.
fn shown_width(c: char) -> usize {
    if needs_escape(c) {
        format!("{:x}", c as u32).len() + 4
    } else {
        1
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    #[serde(serialize_with = "ser_display")]
    pub key: KeyPath,
    pub origin: Option<Origin>,
    pub expected: Option<String>,
    pub hint: Option<String>,
    /// Replaces "error"/"warning" at the start, for other kinds of report (audit).
    #[serde(skip)]
    pub label: Option<String>,
    /// Extra `= name: text` lines after the hint.
    #[serde(skip)]
    pub notes: Vec<(String, String)>,
}

fn ser_display<S: serde::Serializer>(k: &KeyPath, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(k)
}

impl Diagnostic {
    pub fn error(key: KeyPath, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            key,
            origin: None,
            expected: None,
            hint: None,
            label: None,
            notes: Vec::new(),
        }
    }

    pub fn warning(key: KeyPath, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(key, message)
        }
    }

    pub fn expected(mut self, e: impl Into<String>) -> Self {
        self.expected = Some(e.into());
        self
    }

    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }

    /// Adds "did you mean `X`?" when `word` is a likely typo of one of `candidates`.
    pub fn suggest<'a>(self, word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match did_you_mean(word, candidates) {
            Some(s) => self.hint(format!("did you mean `{s}`?")),
            None => self,
        }
    }

    /// A hint for when no better one was found.
    pub fn or_hint(self, h: impl Into<String>) -> Self {
        if self.hint.is_some() {
            self
        } else {
            self.hint(h)
        }
    }

    pub fn with_origin(mut self, o: Option<Origin>) -> Self {
        self.origin = o;
        self
    }
}

impl fmt::Display for Diagnostic {
    /// ```text
    /// error: unknown key `imagee`
    ///   --> sandbox.toml:12:1
    ///    |
    /// 12 | imagee = "core"
    ///    | ^^^^^^
    ///    = key: services.server.imagee
    ///    = expected: ...
    ///    = hint: did you mean `image`?
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match (&self.label, self.severity) {
            (Some(l), _) => l.as_str(),
            (None, Severity::Error) => "error",
            (None, Severity::Warning) => "warning",
        };
        writeln!(f, "{label}: {}", escape_controls(&self.message))?;
        let gutter = match &self.origin {
            Some(Origin::File { line, .. }) => line.to_string().len(),
            _ => 1,
        };
        let pad = " ".repeat(gutter);
        match &self.origin {
            Some(Origin::File {
                file,
                line,
                column,
                text,
                text_column,
                width,
            }) => {
                let file = file.display().to_string();
                writeln!(f, "{pad}--> {}:{line}:{column}", escape_controls(&file))?;
                writeln!(f, "{pad} |")?;
                writeln!(f, "{line} | {}", escape_controls(text))?;
                // The caret goes under the character, counting what escaping widened.
                let before = column.saturating_sub(*text_column);
                let mut chars = text.chars();
                let mut lead = String::new();
                for c in chars.by_ref().take(before) {
                    match c {
                        '\t' => lead.push('\t'),
                        c => lead.extend(std::iter::repeat_n(' ', shown_width(c))),
                    }
                }
                let under: usize = chars
                    .chain(std::iter::repeat(' '))
                    .take((*width).max(1))
                    .map(shown_width)
                    .sum();
                writeln!(f, "{pad} | {lead}{}", "^".repeat(under))?;
            }
            Some(Origin::Env { var }) => {
                writeln!(f, "{pad}--> environment variable {}", escape_controls(var))?
            }
            Some(Origin::Flag { flag }) => writeln!(f, "{pad}--> command-line flag {flag}")?,
            None => {}
        }
        if !self.key.is_empty() {
            let key = self.key.to_string();
            writeln!(f, "{pad} = key: {}", escape_controls(&key))?;
        }
        if let Some(e) = &self.expected {
            writeln!(f, "{pad} = expected: {}", escape_controls(e))?;
        }
        if let Some(h) = &self.hint {
            writeln!(f, "{pad} = hint: {}", escape_controls(h))?;
        }
        for (name, text) in &self.notes {
            writeln!(f, "{pad} = {name}: {}", escape_controls(text))?;
        }
        Ok(())
    }
}

/// The suggestion closest to `word` among `candidates`, if close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        // Short words need a closer match: `db` is not a typo of `web`.
        .filter(|(d, c)| {
            let allowed = match word.chars().count().min(c.len()) {
                0..=3 => 1,
                4..=7 => 2,
                _ => 3,
            };
            *d <= allowed && *d < c.len()
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every caret position of long and short lines, ASCII and multi-byte: the window
    /// never slices inside a character, and the caret sits under the character at its
    /// column (counted in the shown, escaped text).
    #[test]
    fn windows_and_carets_line_up_for_every_column() {
        let lines = [
            "a = 1".to_owned(),
            "x".repeat(500),
            "é".repeat(300),
            format!("{}\u{1b}[2J{}", "ü".repeat(90), "😀".repeat(90)),
        ];
        for line in &lines {
            for (column, (caret, c)) in line.char_indices().enumerate() {
                let o = Origin::in_line("f".into(), 1, column + 1, line, caret, 3);
                let Origin::File {
                    text, text_column, ..
                } = &o
                else {
                    unreachable!()
                };
                assert!(text.chars().count() <= LINE_SHOWN + 2, "{text}");
                let at = column + 1 - text_column;
                assert_eq!(text.chars().nth(at), Some(c), "column {}", column + 1);
                let shown = Diagnostic::error(KeyPath::root(), "m")
                    .with_origin(Some(o.clone()))
                    .to_string();
                let rows: Vec<&str> = shown.lines().collect();
                let lead = rows[4].find('^').unwrap() - "  | ".len();
                let before: usize = text.chars().take(at).map(shown_width).sum();
                assert_eq!(lead, before, "{shown}");
            }
        }
    }
}
