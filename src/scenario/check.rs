//! Reading a [`Node`] tree with every problem collected: the helpers the scenario checker uses to
//! read mappings (unknown, duplicate and missing keys) and typed values (durations, rates,
//! percentages, counts), each problem becoming a [`Diagnostic`] at the node's position.

use std::time::Duration;

use super::units::{parse_duration, parse_percent, parse_rate};
use super::yaml::{Kind, Node};
use super::{Diagnostic, Selection, did_you_mean};

/// Collects diagnostics for one file.
pub(crate) struct Checker {
    file: String,
    pub diags: Vec<Diagnostic>,
}

/// `parent.key` or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// `parent[i]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

impl Checker {
    pub fn new(file: String) -> Self {
        Checker { file, diags: Vec::new() }
    }

    /// Records a problem at `node`.
    pub fn error(&mut self, node: &Node, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.error_at(node.line, node.col, path, message, hint);
    }

    pub fn error_at(&mut self, line: usize, col: usize, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            column: col,
            path: path.to_string(),
            message: message.into(),
            hint,
        });
    }

    /// Reads `node` as a mapping that takes `allowed` keys. Unknown keys are reported with a
    /// did-you-mean hint, or with `hint(key)` when that says more.
    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
        hint: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(node, path, format!("expected a mapping, found {}", node.kind.describe()), None);
            return None;
        };
        let mut fields = Fields { node, path: path.to_string(), entries: Vec::new(), suggested: Vec::new() };
        for (k, v) in entries {
            let Some(key) = k.scalar_text() else {
                self.error(k, path, format!("a key must be a plain word, found {}", k.kind.describe()), None);
                continue;
            };
            if let Some((_, first, _)) = fields.entries.iter().find(|(n, _, _)| *n == key) {
                let first_line = first.line;
                self.error(k, &join(path, &key), format!("duplicate key (first set on line {first_line})"), None);
                continue;
            }
            // Top-level `x-…` keys are free, to hold YAML anchors (`x-base: &base {…}`).
            if path.is_empty() && key.starts_with("x-") {
                continue;
            }
            if !allowed.contains(&key.as_str()) {
                if let Some(s) = did_you_mean(&key, allowed) {
                    fields.suggested.push(s.to_string());
                }
                let h = hint(&key).or_else(|| unknown_key_hint(&key, allowed));
                self.error(k, &join(path, &key), format!("unknown key `{key}`"), h);
                continue;
            }
            fields.entries.push((key, k, v));
        }
        Some(fields)
    }

    /// The value of a required key, or a "missing" diagnostic at the mapping.
    pub fn require<'n>(&mut self, f: &Fields<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let v = f.get(key);
        // A misspelt key already reported with this key as its suggestion says it all.
        if v.is_none() && !f.suggested.iter().any(|s| s == key) {
            match f.key_node(key) {
                Some(k) => self.error(k, &f.path(key), "has no value", Some(what.to_string())),
                None => self.error(f.node, &f.path, format!("missing required key `{key}`"), Some(what.to_string())),
            }
        }
        v
    }

    /// Text: a string, or a number taken as written.
    pub fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) if !s.trim().is_empty() => Some(s.clone()),
            Kind::Str(_) => {
                self.error(node, path, "must not be empty", None);
                None
            }
            Kind::Int(_) => node.scalar_text(),
            // As written: `1.10` is not the text `1.1`, nor `007` the text `7`.
            Kind::Float(_) => node.written.clone().filter(|w| !w.starts_with('!')).or_else(|| node.scalar_text()),
            k => {
                self.error(node, path, format!("expected a string, found {}", k.describe()), None);
                None
            }
        }
    }

    /// A scalar handed to a unit parser: durations, rates, percentages.
    fn unit<T>(&mut self, node: &Node, path: &str, what: &str, parse: fn(&str) -> Result<T, String>) -> Option<T> {
        let Some(text) = node.scalar_text().filter(|_| !matches!(node.kind, Kind::Bool(_))) else {
            self.error(node, path, format!("expected {what}, found {}", node.kind.describe()), None);
            return None;
        };
        match parse(&text) {
            Ok(v) => Some(v),
            Err(m) => {
                self.error(node, path, m, None);
                None
            }
        }
    }

    /// `250ms`, `20s`, `2m`, `1m30s`.
    pub fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        self.unit(node, path, "a duration such as `30s`", parse_duration)
    }

    /// A duration that must not be zero.
    pub fn positive_duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let d = self.duration(node, path)?;
        if d.is_zero() {
            self.error(node, path, "must be longer than zero", None);
            return None;
        }
        Some(d)
    }

    /// `100/s`, `6000/m`, more than zero.
    pub fn rate(&mut self, node: &Node, path: &str) -> Option<f64> {
        let r = self.unit(node, path, "a rate such as `100/s`", parse_rate)?;
        if r <= 0.0 {
            self.error(node, path, "the rate must be above zero", None);
            return None;
        }
        if r > 100_000.0 {
            self.error(node, path, "rates above 100000/s are not supported", None);
            return None;
        }
        Some(r)
    }

    /// `50%` as a fraction, at most 100%.
    pub fn percent(&mut self, node: &Node, path: &str) -> Option<f64> {
        let p = self.unit(node, path, "a percentage such as `50%`", parse_percent)?;
        if p > 1.0 {
            let text = node.scalar_text().unwrap_or_default();
            self.error(node, path, format!("percentage `{}` is above 100%", text.trim()), None);
            return None;
        }
        Some(p)
    }

    /// A whole number in `min..=max`.
    pub fn count(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
        let n: i128 = match &node.kind {
            Kind::Int(i) => *i,
            Kind::Str(s) if s.trim().parse::<i128>().is_ok() => s.trim().parse::<i128>().unwrap_or(0),
            Kind::Float(x) => {
                let msg = match not_whole(node, *x) {
                    Some(m) => m,
                    // An integer too long for the tree arrives as a float: quoting it would show
                    // a rounded number that is not what was written.
                    None if *x >= 2f64.powi(64) => format!("too large: at most {max}"),
                    None if *x <= -(2f64.powi(64)) => format!("too small: at least {min}"),
                    None => format!("`{}` is not a whole number", shown(node, *x)),
                };
                self.error(node, path, msg, None);
                return None;
            }
            k => {
                self.error(node, path, format!("expected a whole number, found {}", k.describe()), None);
                return None;
            }
        };
        let (lo, hi) = (i128::from(min), i128::from(max));
        if n < lo || n > hi {
            let msg = match (min, max) {
                (0, m) if m >= i64::MAX as u64 && n < 0 => "must not be negative".to_string(),
                (_, m) if m >= i64::MAX as u64 && n < lo => format!("must be at least {min}"),
                (_, m) if m >= i64::MAX as u64 => format!("{n} is too large: at most {max}"),
                _ => format!("{n} is out of range: expected {min} to {max}"),
            };
            self.error(node, path, msg, None);
            return None;
        }
        u64::try_from(n).ok()
    }

    pub fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.kind {
            Kind::Bool(b) => Some(*b),
            k => {
                self.error(node, path, format!("expected `true` or `false`, found {}", k.describe()), None);
                None
            }
        }
    }

    /// A task count (`2`) or a percentage of the tasks (`50%`); selecting nothing is an error.
    pub fn selection(&mut self, node: &Node, path: &str) -> Option<Selection> {
        let hint = || Some("a task count such as `2`, or a percentage of the tasks such as `50%`".to_string());
        match &node.kind {
            Kind::Int(i) if *i >= 1 && *i <= 1000 => Some(Selection::Count(*i as u32)),
            Kind::Int(i) if *i > 1000 => {
                self.error(node, path, format!("selects {i} tasks: at most 1000"), hint());
                None
            }
            Kind::Int(i) if *i < 1 => {
                self.error(node, path, "selects no task", hint());
                None
            }
            Kind::Float(x) => {
                let msg = not_whole(node, *x).unwrap_or_else(|| format!("`{}` is not a whole number", shown(node, *x)));
                self.error(node, path, msg, hint());
                None
            }
            Kind::Str(s) if s.trim().ends_with('%') => {
                let p = self.percent(node, path)?;
                if p <= 0.0 {
                    self.error(node, path, "selects no task", hint());
                    return None;
                }
                Some(Selection::Percent(p))
            }
            k => {
                let what = node.scalar_text().map(|t| format!("`{t}`")).unwrap_or_else(|| k.describe().to_string());
                self.error(node, path, format!("expected a count or a percentage, found {what}"), hint());
                None
            }
        }
    }
}

/// A float as the user wrote it, or as it reads back when its text is unknown.
fn shown(node: &Node, x: f64) -> String {
    node.written.clone().unwrap_or_else(|| x.to_string())
}

/// What is wrong with how a number is written where a whole number belongs, when YAML read it
/// as a float: a float tag, exponent form, leading zeros (YAML 1.2 has no such integer; YAML 1.1
/// would read them as octal) or a decimal point. Each says how to write it. `None` when the text
/// is a plain run of digits (an integer too long to be one) or unknown.
pub(crate) fn not_whole(node: &Node, x: f64) -> Option<String> {
    let w = node.written.as_deref()?;
    // The number itself, exactly, when it has one small enough to print as digits.
    let plain = (x.is_finite() && x.fract() == 0.0 && x.abs() < 2f64.powi(53)).then(|| format!("{x:.0}"));
    let fix = |what: &str| match &plain {
        Some(n) => format!("`{w}` {what}: write it as a plain whole number, `{n}`"),
        None => format!("`{w}` {what}: write a plain whole number (digits only)"),
    };
    if w.starts_with('!') {
        return Some(fix("is tagged as a float"));
    }
    if !x.is_finite() || x.fract() != 0.0 {
        return Some(format!("`{w}` is not a whole number"));
    }
    let digits = w.trim_start_matches(['+', '-']);
    if digits.contains(['e', 'E']) {
        return Some(fix("is in exponent form"));
    }
    if digits.contains('.') {
        return Some(fix("has a decimal point"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Some(fix("has leading zeros"));
    }
    None
}

/// A did-you-mean hint for an unknown key.
fn unknown_key_hint(key: &str, allowed: &[&str]) -> Option<String> {
    match did_you_mean(key, allowed) {
        Some(s) => Some(format!("did you mean `{s}`?")),
        None => Some(format!("expected one of: {}", allowed.join(", "))),
    }
}

/// A mapping whose keys have been checked.
pub(crate) struct Fields<'n> {
    pub node: &'n Node,
    pub path: String,
    entries: Vec<(String, &'n Node, &'n Node)>,
    /// Allowed keys that an unknown key was taken for a typo of.
    suggested: Vec<String>,
}

impl<'n> Fields<'n> {
    /// The value of `key` (an empty value counts as absent).
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, v)| k == key && v.kind != Kind::Null).map(|(_, _, v)| *v)
    }

    /// The key node itself, for problems about the key rather than its value.
    pub fn key_node(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| k == key).map(|(_, k, _)| *k)
    }

    /// Every `(key, key node, value)` in document order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &'n Node, &'n Node)> {
        self.entries.iter().map(|(k, kn, v)| (k.as_str(), *kn, *v))
    }

    pub fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }
}
