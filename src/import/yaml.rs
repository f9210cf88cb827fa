//! A compose file as a tree whose every key and item knows its line and column, with
//! aliases expanded and `<<` merge keys applied (as compose does).

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// A position in the YAML file; both count from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub at: Loc,
    pub v: V,
}

#[derive(Debug, Clone)]
pub enum V {
    /// Entries in file order; each key with its own position.
    Map(Vec<(String, Loc, Node)>),
    Seq(Vec<Node>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

#[derive(Debug)]
pub struct ParseError {
    pub at: Loc,
    pub message: String,
}

pub fn parse(text: &str) -> Result<Node, ParseError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| ParseError {
        at: Loc {
            line: e.marker().line(),
            column: e.marker().col() + 1,
        },
        message: e.info().to_owned(),
    })?;
    match docs.first() {
        None => Ok(Node {
            at: Loc { line: 1, column: 1 },
            v: V::Map(Vec::new()),
        }),
        Some(d) => convert(d),
    }
}

fn loc(y: &MarkedYaml) -> Loc {
    Loc {
        line: y.span.start.line(),
        column: y.span.start.col() + 1,
    }
}

fn convert(y: &MarkedYaml) -> Result<Node, ParseError> {
    let at = loc(y);
    let v = match &y.data {
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(s, ..) => V::Str(s.to_string()),
        YamlData::Tagged(_, inner) => return convert(inner),
        YamlData::Sequence(items) => V::Seq(items.iter().map(convert).collect::<Result<_, _>>()?),
        YamlData::Mapping(m) => {
            let mut own: Vec<(String, Loc, Node)> = Vec::new();
            let mut merged: Vec<(String, Loc, Node)> = Vec::new();
            for (k, val) in m.iter() {
                let key = match &k.data {
                    YamlData::Value(s) => scalar_text(s),
                    YamlData::Representation(s, ..) => s.to_string(),
                    _ => {
                        return Err(ParseError {
                            at: loc(k),
                            message: "a mapping key must be a scalar".into(),
                        })
                    }
                };
                let node = convert(val)?;
                if key == "<<" {
                    // Merge keys: a mapping or a list of them; earlier ones win, and keys
                    // written in this mapping win over all of them.
                    let sources = match node.v {
                        V::Seq(s) => s,
                        other => vec![Node {
                            at: node.at,
                            v: other,
                        }],
                    };
                    for s in sources {
                        let V::Map(entries) = s.v else {
                            return Err(ParseError {
                                at: s.at,
                                message: "`<<` must merge a mapping or a list of mappings".into(),
                            });
                        };
                        for e in entries {
                            if !merged.iter().any(|(k, ..)| *k == e.0) {
                                merged.push(e);
                            }
                        }
                    }
                } else {
                    own.retain(|(k2, ..)| *k2 != key);
                    own.push((key, loc(k), node));
                }
            }
            for e in merged {
                if !own.iter().any(|(k, ..)| *k == e.0) {
                    own.push(e);
                }
            }
            V::Map(own)
        }
        YamlData::Alias(_) | YamlData::BadValue => V::Null,
    };
    Ok(Node { at, v })
}

fn scalar(s: &Scalar) -> V {
    match s {
        Scalar::Null => V::Null,
        Scalar::Boolean(b) => V::Bool(*b),
        Scalar::Integer(i) => V::Int(*i),
        Scalar::FloatingPoint(f) => V::Float(f.into_inner()),
        Scalar::String(s) => V::Str(s.to_string()),
    }
}

fn scalar_text(s: &Scalar) -> String {
    match s {
        Scalar::Null => "null".into(),
        Scalar::Boolean(b) => b.to_string(),
        Scalar::Integer(i) => i.to_string(),
        Scalar::FloatingPoint(f) => f.to_string(),
        Scalar::String(s) => s.to_string(),
    }
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.v {
            V::Map(m) => m.iter().find(|(k, ..)| k == key).map(|(.., n)| n),
            _ => None,
        }
    }

    /// Where `key` itself is written in this mapping.
    pub fn key_at(&self, key: &str) -> Option<Loc> {
        match &self.v {
            V::Map(m) => m.iter().find(|(k, ..)| k == key).map(|(_, l, _)| *l),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[(String, Loc, Node)] {
        match &self.v {
            V::Map(m) => m,
            _ => &[],
        }
    }

    /// The items of a sequence; a scalar counts as a one-item list (compose allows both
    /// for `env_file`, `tmpfs`, `dns`, …).
    pub fn items(&self) -> Vec<&Node> {
        match &self.v {
            V::Seq(s) => s.iter().collect(),
            V::Null => Vec::new(),
            _ => vec![self],
        }
    }

    /// A scalar as text (numbers and booleans as written); `None` for maps, lists, null.
    pub fn text(&self) -> Option<String> {
        match &self.v {
            V::Str(s) => Some(s.clone()),
            V::Int(i) => Some(i.to_string()),
            V::Float(f) => Some(f.to_string()),
            V::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn bool(&self) -> Option<bool> {
        match &self.v {
            V::Bool(b) => Some(*b),
            V::Str(s) => match s.as_str() {
                "true" | "True" | "TRUE" | "yes" | "on" => Some(true),
                "false" | "False" | "FALSE" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.v, V::Map(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keys_and_aliases_keep_positions() {
        let n = parse(
            "x-common: &c\n  read_only: true\n  user: \"1000\"\nservices:\n  web:\n    <<: *c\n    user: root\n",
        )
        .unwrap();
        let web = n.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("user").unwrap().text().as_deref(), Some("root"));
        assert_eq!(web.key_at("user"), Some(Loc { line: 7, column: 5 }));
        // A merged key points to where it is written: in the anchor.
        assert_eq!(web.key_at("read_only"), Some(Loc { line: 2, column: 3 }));
        assert_eq!(web.get("read_only").unwrap().bool(), Some(true));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = parse("services:\n  web: [\n").unwrap_err();
        assert!(e.at.line >= 2, "{e:?}");
    }
}
