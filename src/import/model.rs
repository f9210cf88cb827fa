//! What a conversion is asked for and what it returns.

use crate::config::diagnostic::KeyPath;

use super::diagnostics::{Extra, Note};
use super::yaml::Loc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Import,
    Audit,
}

pub struct Imported {
    pub project: String,
    pub toml: String,
    pub notes: Vec<Note>,
    /// In [`Mode::Audit`]: the services whose build context has no Containerfile, audited
    /// without their build (why, at the `build:` key).
    pub unbuilt: Vec<Note>,
    /// devbox key → where its setting is written in the compose file.
    pub locations: Vec<(KeyPath, Loc)>,
    pub extra: Vec<Extra>,
}

impl Imported {
    /// Where a devbox key's setting is in the compose file: the key itself, else the
    /// nearest enclosing key that was written there.
    pub fn locate(&self, key: &KeyPath) -> Option<Loc> {
        let mut k = key.0.clone();
        loop {
            if let Some((_, l)) = self.locations.iter().find(|(p, _)| p.0 == k) {
                return Some(*l);
            }
            k.pop()?;
        }
    }
}

#[derive(Debug)]
pub struct ImportError {
    pub at: Loc,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.at.line, self.at.column, self.message)
    }
}
