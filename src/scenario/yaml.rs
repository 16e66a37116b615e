//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde stops at the first error, but `siege validate` must report every problem in a file. So
//! the file is first read into this permissive tree (only a YAML syntax error can stop it), and
//! the scenario is then checked node by node, each problem carrying its own line and column.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One YAML node and its position (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub line: usize,
    pub col: usize,
    /// A float's text as written (`007`, `1e3`, `!!float 5`), so that a field that takes a
    /// whole number can say what is wrong with how it is written; the float itself has lost
    /// that. `None` for every other node, and where the text could not be found.
    pub written: Option<String>,
    /// Where the node is written, in bytes of the source, until [`parse`] fills in `written`.
    span: Option<(usize, usize)>,
}

/// What a node holds. Plain scalars are typed the YAML 1.2 core way (`20` is an integer, `20s` a
/// string); only `true` and `false` are booleans.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    /// Wide enough for every `i64` and `u64` (a seed may be any `u64`), so that no integer a
    /// field accepts is rounded through a float on the way.
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; repeated keys are kept so that they can be reported.
    Map(Vec<(Node, Node)>),
}

impl Kind {
    /// What the node is, for messages: "a string", "a list"…
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "empty",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "a number",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The node as text when it is a scalar, as written (numbers and booleans rendered back).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
        }
    }
}

/// A syntax error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Parses one YAML document. An empty document (or one holding only comments) is `Kind::Null`.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    // Repeated keys reach the tree so that every one of them is reported with its position,
    // instead of the parse stopping at the first.
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::PassThrough;
    // `on`, `yes`, `n`… stay strings: a scenario has no field where they would mean a boolean.
    options.strict_booleans = true;
    options.with_snippet = false;
    // A scenario is a page of YAML: refuse alias bombs long before the generic limits would.
    if let Some(budget) = options.budget.as_mut() {
        budget.max_nodes = 20_000;
        budget.max_events = 100_000;
    }
    options.alias_limits.max_total_replayed_events = 50_000;
    match serde_saphyr::from_str_with_options::<Option<Node>>(text, options) {
        Ok(Some(mut node)) => {
            fill_written(&mut node, text);
            Ok(node)
        }
        Ok(None) => Ok(Node { kind: Kind::Null, line: 1, col: 1, written: None, span: None }),
        Err(e) => {
            let (line, col) = e.location().map(|l| (l.line() as usize, l.column() as usize)).unwrap_or((1, 1));
            let message = e.without_snippet().to_string();
            Err(SyntaxError { line: line.max(1), col: col.max(1), message: clean_message(&message) })
        }
    }
}

/// Sets `written` on every float node from the source text.
fn fill_written(node: &mut Node, text: &str) {
    match &mut node.kind {
        Kind::Float(_) => {
            node.written = node.span.and_then(|(at, len)| written_at(text, at, len));
        }
        Kind::Seq(items) => items.iter_mut().for_each(|n| fill_written(n, text)),
        Kind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            fill_written(k, text);
            fill_written(v, text);
        }),
        _ => {}
    }
}

/// The scalar written at byte `at` (`len` bytes), with a tag written just before it on the
/// same line (`!!float 5`): the span of a tagged scalar may or may not cover its tag.
fn written_at(text: &str, at: usize, len: usize) -> Option<String> {
    let scalar = text.get(at..at.checked_add(len)?)?.trim();
    if scalar.is_empty() {
        return None;
    }
    let before = text.get(..at)?;
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let tag = line.trim_end().rsplit([' ', '\t', '[', '{', ',', ':', '-']).next().unwrap_or("");
    Some(if tag.starts_with('!') && !scalar.starts_with('!') { format!("{tag} {scalar}") } else { scalar.to_string() })
}

/// serde-saphyr's messages may end with ` at line L column C`, which the diagnostic prefix
/// already says; keep the first line, without the position.
fn clean_message(m: &str) -> String {
    if m.contains("multiple YAML documents") {
        return "a scenario file holds one YAML document, found a second one after `---`".into();
    }
    if m.contains("budget breached") {
        return "the document is too large for a scenario (too many nodes or aliases)".into();
    }
    let first = m.lines().next().unwrap_or("").trim();
    let cut = first.find(" at line ").map(|i| &first[..i]).unwrap_or(first);
    cut.trim_end_matches(['.', ':']).to_string()
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Kind>::deserialize(d)?;
        // `defined`: for a value reached through an alias or a merge key, the place where it is
        // written, which is where a mistake in it gets fixed.
        let span = s.defined.span();
        let span = span
            .byte_offset()
            .zip(span.byte_len())
            .and_then(|(at, len)| Some((usize::try_from(at).ok()?, usize::try_from(len).ok()?)));
        Ok(Node {
            kind: s.value,
            line: s.defined.line() as usize,
            col: s.defined.column() as usize,
            written: None,
            span,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Int(i128::from(v)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        Ok(i128::try_from(v).map(Kind::Int).unwrap_or(Kind::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Kind, E> {
        Ok(Kind::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut v = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            v.push(n);
        }
        Ok(Kind::Seq(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut v = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let val = map.next_value::<Node>()?;
            v.push((k, val));
        }
        Ok(Kind::Map(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: &Node) -> &[(Node, Node)] {
        match &n.kind {
            Kind::Map(m) => m,
            k => panic!("not a map: {k:?}"),
        }
    }

    #[test]
    fn nodes_keep_positions_and_core_types() {
        let root = parse("a: 1\nb: 20s\nc: \"5\"\nd: [1, x]\ne: on\ng: < 1%\n").unwrap();
        let m = map(&root);
        assert_eq!((m[0].1.kind.clone(), m[0].1.line, m[0].1.col), (Kind::Int(1), 1, 4));
        assert_eq!(m[1].1.kind, Kind::Str("20s".into()));
        assert_eq!(m[2].1.kind, Kind::Str("5".into()));
        let Kind::Seq(items) = &m[3].1.kind else { panic!() };
        assert_eq!((items[1].line, items[1].col), (4, 8));
        assert_eq!(m[4].1.kind, Kind::Str("on".into()), "only true/false are booleans");
        assert_eq!(m[5].1.kind, Kind::Str("< 1%".into()));
    }

    #[test]
    fn repeated_keys_are_kept_and_merge_keys_expand() {
        let root = parse("a: 1\na: 2\n").unwrap();
        assert_eq!(map(&root).len(), 2);
        let root = parse("x: &a {p: 1}\ny:\n  <<: *a\n  q: 2\n").unwrap();
        let y = &map(&root)[1].1;
        assert_eq!(map(y).len(), 2);
    }

    #[test]
    fn floats_keep_their_text_as_written() {
        let root = parse("a: 007\nb: 1e3\nc: !!float 5\nd: [ 2.50, -0.5 ]\ne: {f: !!float 07}\ng: 5\n").unwrap();
        let m = map(&root);
        let written = |n: &Node| n.written.clone();
        assert_eq!(written(&m[0].1).as_deref(), Some("007"), "{:?}", m[0].1);
        assert_eq!(written(&m[1].1).as_deref(), Some("1e3"));
        assert_eq!(written(&m[2].1).as_deref(), Some("!!float 5"));
        let Kind::Seq(items) = &m[3].1.kind else { panic!() };
        assert_eq!(written(&items[0]).as_deref(), Some("2.50"));
        assert_eq!(written(&items[1]).as_deref(), Some("-0.5"));
        assert_eq!(written(&map(&m[4].1)[0].1).as_deref(), Some("!!float 07"));
        assert_eq!(m[5].1.written, None, "only floats carry their text");
    }

    #[test]
    fn empty_documents_and_syntax_errors() {
        assert_eq!(parse("").unwrap().kind, Kind::Null);
        assert_eq!(parse("# only a comment\n").unwrap().kind, Kind::Null);
        let e = parse("a: [1,\n").unwrap_err();
        assert_eq!((e.line, e.col), (1, 4));
        assert!(!e.message.contains(" at line "), "{e:?}");
        assert!(parse("h: >= 2\n").is_err());
    }
}
