//! Diagnostics that point at the file: `sandbox.toml:12:9`, the line, a caret, the key,
//! what was expected and a hint.

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
    File {
        file: PathBuf,
        line: usize,
        column: usize,
        #[serde(skip)]
        text: String,
        #[serde(skip)]
        width: usize,
    },
    /// An environment variable.
    Env { var: String },
    /// A command-line flag.
    Flag { flag: String },
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
        writeln!(f, "{label}: {}", self.message)?;
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
                width,
            }) => {
                writeln!(f, "{pad}--> {}:{line}:{column}", file.display())?;
                writeln!(f, "{pad} |")?;
                writeln!(f, "{line} | {text}")?;
                let lead: String = text
                    .chars()
                    .take(column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                writeln!(f, "{pad} | {lead}{}", "^".repeat((*width).max(1)))?;
            }
            Some(Origin::Env { var }) => writeln!(f, "{pad}--> environment variable {var}")?,
            Some(Origin::Flag { flag }) => writeln!(f, "{pad}--> command-line flag {flag}")?,
            None => {}
        }
        if !self.key.is_empty() {
            writeln!(f, "{pad} = key: {}", self.key)?;
        }
        if let Some(e) = &self.expected {
            writeln!(f, "{pad} = expected: {e}")?;
        }
        if let Some(h) = &self.hint {
            writeln!(f, "{pad} = hint: {h}")?;
        }
        for (name, text) in &self.notes {
            writeln!(f, "{pad} = {name}: {text}")?;
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
