//! A configuration file's text, parsed once with spans, so any key path can be mapped
//! back to `file:line:column`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, Value};

use super::diagnostic::{Diagnostic, KeyPath, Origin, Seg};

/// Files larger than this are refused before parsing: a sandbox.toml is a few KiB.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// Byte spans of an entry's key (absent for array elements) and value.
type Spans = (Option<Range<usize>>, Option<Range<usize>>);

/// Which part of an entry a diagnostic points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The key itself (`imagee` in `imagee = "core"`).
    Key,
    /// The value (`"core"`), or a table's header.
    Value,
}

pub struct SourceFile {
    /// The path as shown to the user (relative to the working directory when possible).
    pub display: PathBuf,
    pub path: PathBuf,
    pub text: String,
    pub doc: ImDocument<String>,
    lines: LineIndex,
}

/// Where lines start, and how many characters come before regular byte offsets, so that
/// a byte offset becomes a line and column in logarithmic time, not by rescanning the
/// file for each diagnostic.
struct LineIndex {
    starts: Vec<usize>,
    /// (byte offset, characters before it), one every [`MARK_BYTES`] or so.
    marks: Vec<(usize, usize)>,
}

const MARK_BYTES: usize = 1024;

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        let mut marks = vec![(0, 0)];
        for (n, (i, c)) in text.char_indices().enumerate() {
            if i >= marks[marks.len() - 1].0 + MARK_BYTES {
                marks.push((i, n));
            }
            if c == '\n' {
                starts.push(i + 1);
            }
        }
        Self { starts, marks }
    }

    /// Characters before byte `at` (a char boundary).
    fn chars_before(&self, text: &str, at: usize) -> usize {
        let k = self.marks.partition_point(|(b, _)| *b <= at) - 1;
        let (b, n) = self.marks[k];
        n + text[b..at].chars().count()
    }

    /// The origin of a byte span of `text`.
    fn origin(&self, display: &Path, text: &str, span: Range<usize>) -> Origin {
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let line = self.starts.partition_point(|s| *s <= start);
        let line_start = self.starts[line - 1];
        let line_end = self.starts.get(line).map_or(text.len(), |next| next - 1);
        let line_text = text[line_start..line_end].trim_end_matches('\r');
        let column = self.chars_before(text, start) - self.chars_before(text, line_start) + 1;
        let mut end = span.end.clamp(start, line_start + line_text.len());
        // Only the part of the span the window can show is counted.
        end = end.min(start + 4 * crate::config::diagnostic::LINE_SHOWN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let width = text[start..end].chars().count().max(1);
        Origin::in_line(
            display.to_path_buf(),
            line,
            column,
            line_text,
            start - line_start,
            width,
        )
    }
}

impl SourceFile {
    /// Reads and parses a TOML file. Errors come back as located diagnostics.
    pub fn read(path: &Path, display: PathBuf) -> Result<Self, Box<Diagnostic>> {
        let bytes = std::fs::read(path).map_err(|e| {
            Box::new(
                Diagnostic::error(
                    KeyPath::root(),
                    format!("cannot read {}: {e}", display.display()),
                )
                .hint("check the path given with -f/--file"),
            )
        })?;
        Self::from_bytes(path.to_path_buf(), display, bytes)
    }

    pub fn from_bytes(
        path: PathBuf,
        display: PathBuf,
        bytes: Vec<u8>,
    ) -> Result<Self, Box<Diagnostic>> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(Box::new(
                Diagnostic::error(
                    KeyPath::root(),
                    format!(
                        "{} is {:.1} MiB; devbox reads at most {} MiB",
                        display.display(),
                        bytes.len() as f64 / (1024.0 * 1024.0),
                        MAX_FILE_BYTES / (1024 * 1024)
                    ),
                )
                .hint("a sandbox.toml describes an environment; keep large data in files it references"),
            ));
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                let valid = String::from_utf8_lossy(&bytes[..at]).into_owned();
                let origin = origin_at(&display, &valid, at..at + 1);
                return Err(Box::new(
                    Diagnostic::error(KeyPath::root(), format!("invalid UTF-8 at byte {at}"))
                        .with_origin(Some(origin))
                        .expected("a UTF-8 text file")
                        .hint("re-save the file as UTF-8"),
                ));
            }
        };
        match ImDocument::parse(text.clone()) {
            Ok(doc) => Ok(Self {
                display,
                path,
                lines: LineIndex::new(&text),
                text,
                doc,
            }),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let origin = origin_at(&display, &text, span);
                // toml_edit puts context and detail on separate lines; keep one line.
                let message = e
                    .message()
                    .lines()
                    .map(|l| l.trim().trim_end_matches('.'))
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(": ");
                let message = lower_first(&message);
                let mut d = Diagnostic::error(KeyPath::root(), format!("invalid TOML: {message}"))
                    .with_origin(Some(origin));
                if message.contains("duplicate key") {
                    d = d.hint("each key and table may appear once; merge the two definitions");
                } else if message.contains("recursion limit") {
                    d = d.hint("nest arrays and tables less deeply");
                } else {
                    d = d.hint("see https://toml.io for the syntax");
                }
                Err(Box::new(d))
            }
        }
    }

    /// Does this file define the value at `path`?
    pub fn contains(&self, path: &KeyPath) -> bool {
        self.find(path).is_some()
    }

    /// The origin of `path` in this file, at the key or the value. When the path
    /// is not in the file, the nearest enclosing entry that is.
    pub fn locate(&self, path: &KeyPath, point: Point) -> Option<Origin> {
        let mut p = path.clone();
        loop {
            if let Some((key_span, value_span)) = self.find(&p) {
                let exact = p.0.len() == path.0.len();
                let span = match (point, exact) {
                    (Point::Key, true) => key_span.or(value_span),
                    _ => value_span.or(key_span),
                }?;
                return Some(self.lines.origin(&self.display, &self.text, span));
            }
            p.0.pop()?;
        }
    }

    /// Spans of the key and the value at `path`.
    fn find(&self, path: &KeyPath) -> Option<Spans> {
        let mut node = Node::Item(self.doc.as_item());
        let mut key_span = None;
        for seg in &path.0 {
            let (k, next) = node.child(seg)?;
            key_span = k;
            node = next;
        }
        Some((key_span, node.span()))
    }
}

/// A position in the parsed document: table items, inline values and the tables of
/// an array of tables are three different types in toml_edit.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn child(self, seg: &Seg) -> Option<(Option<Range<usize>>, Node<'a>)> {
        if let Node::Item(item) = self {
            if let Some(v) = item.as_value() {
                return Node::Value(v).child(seg);
            }
        }
        match (self, seg) {
            (Node::Item(item), Seg::Key(k)) => {
                let (key, next) = item.as_table_like()?.get_key_value(k)?;
                Some((key.span(), Node::Item(next)))
            }
            (Node::Table(t), Seg::Key(k)) => {
                let (key, next) = t.get_key_value(k)?;
                Some((key.span(), Node::Item(next)))
            }
            (Node::Value(v), Seg::Key(k)) => {
                let (key, next) = v.as_inline_table()?.get_key_value(k)?;
                Some((key.span(), Node::Item(next)))
            }
            (Node::Item(item), Seg::Index(i)) => {
                Some((None, Node::Table(item.as_array_of_tables()?.get(*i)?)))
            }
            (Node::Value(v), Seg::Index(i)) => Some((None, Node::Value(v.as_array()?.get(*i)?))),
            (Node::Table(_), Seg::Index(_)) => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
            Node::Item(Item::Table(t)) => t.span(),
            Node::Item(Item::ArrayOfTables(a)) => a.get(0).and_then(|t| t.span()),
            Node::Item(other) => other.span(),
        }
    }
}

/// Line, column, line text and caret width of a byte span, for a text met once (an
/// error while reading it); a [`SourceFile`] keeps an index for its many lookups.
pub fn origin_at(display: &Path, text: &str, span: Range<usize>) -> Origin {
    LineIndex::new(text).origin(display, text, span)
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
