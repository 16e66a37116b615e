//! Formatting shared by the report writers: durations and values as people read them, escaping
//! for Markdown and XML, aligned Markdown tables, and the [`Redactor`] that replaces the values
//! which differ from run to run (timestamps, run ids, measured durations) in snapshot tests.

use std::fmt::Write as _;

/// Seconds as people write them: `850ms`, `3s`, `12.4s`, `1m30s`, `2m5.5s`.
pub(crate) fn secs(s: f64) -> String {
    if !s.is_finite() {
        return "n/a".into();
    }
    let neg = s < 0.0;
    let a = s.abs();
    let body = if a > 0.0 && a < 1.0 {
        format!("{}ms", (a * 1000.0).round() as u64)
    } else {
        // Round to a tenth first so that 59.96 becomes 1m, not 59s + 60.0s.
        let tenths = (a * 10.0).round() as u64;
        let (m, t) = (tenths / 600, tenths % 600);
        let s = if t % 10 == 0 { format!("{}s", t / 10) } else { format!("{}.{}s", t / 10, t % 10) };
        match m {
            0 => s,
            m if t == 0 => format!("{m}m"),
            m => format!("{m}m{s}"),
        }
    };
    if neg { format!("-{body}") } else { body }
}

/// A point on the load's clock: `t+20s`, `t-5s`.
pub(crate) fn offset(t: f64) -> String {
    if t < 0.0 { format!("t{}", secs(t)) } else { format!("t+{}", secs(t)) }
}

/// Milliseconds: `4.2ms`, `250ms`, `1.80s`.
pub(crate) fn ms(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v < 10.0 {
        format!("{}ms", trim(format!("{v:.1}")))
    } else {
        format!("{v:.0}ms")
    }
}

/// A fraction as a percentage: `0.4%`, `12.5%`, `100%`.
pub(crate) fn percent(fraction: f64) -> String {
    value(fraction * 100.0, "%")
}

/// A value in the display unit of a steady-state check (`%`, `ms` or none).
pub(crate) fn value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    match unit {
        "ms" => ms(v),
        "%" if v != 0.0 && v.abs() < 0.1 => format!("{}%", trim(format!("{v:.2}"))),
        "%" => format!("{}%", trim(format!("{v:.1}"))),
        u => format!("{}{u}", trim(format!("{v:.1}"))),
    }
}

/// A count with thousands separators: `12,000`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Drops a trailing `.0` (and `.00`).
fn trim(s: String) -> String {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// Text for a Markdown table cell or a list item: one line, `|` escaped, and `<` escaped where
/// GitHub would otherwise start an HTML tag and swallow the text (e.g. `<none>`).
pub(crate) fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push_str("\\|"),
            '\r' => {}
            '\n' | '\t' => out.push(' '),
            '<' if chars.peek().is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) => {
                out.push_str("\\<")
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Text as inline code: `` `error_rate < 1%` ``, with `|` escaped for table cells.
pub(crate) fn code(text: &str) -> String {
    let one_line = md_line(text).replace('|', "\\|");
    if one_line.contains('`') { format!("`` {one_line} ``") } else { format!("`{one_line}`") }
}

fn md_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Escapes text for XML content and attribute values. Characters that XML 1.0 cannot carry at
/// all (most control characters) are replaced with U+FFFD rather than dropped silently.
pub(crate) fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Newlines and tabs are legal, but in attributes they would be normalised to spaces.
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A Markdown table whose columns are padded to equal width, so that it reads as a table in a
/// terminal too (GitHub ignores the padding).
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<const N: usize>(header: [&str; N]) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    /// Adds a row of already escaped cells.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let n = self.header.len();
        let width = |i: usize| {
            let cells = std::iter::once(&self.header[i]).chain(self.rows.iter().filter_map(|r| r.get(i)));
            cells.map(|c| c.chars().count()).max().unwrap_or(0).max(3)
        };
        let widths: Vec<usize> = (0..n).map(width).collect();
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            out.push('|');
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = w - c.chars().count().min(*w);
                let _ = write!(out, " {c}{} |", " ".repeat(pad));
            }
            out.push('\n');
        };
        line(&mut out, &self.header);
        out.push('|');
        for w in &widths {
            let _ = write!(out, "{}|", "-".repeat(w + 2));
        }
        out.push('\n');
        for r in &self.rows {
            line(&mut out, r);
        }
        out
    }
}

/// Replaces values that differ between two runs of the same scenario with fixed placeholders,
/// so that snapshot tests of rendered reports stay stable (after nextest's `redact.rs`). The
/// writers use [`Redactor::noop`]; only tests build an active one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Redactor {
    active: bool,
}

impl Redactor {
    /// Renders every value as it is.
    pub fn noop() -> Redactor {
        Redactor { active: false }
    }

    /// Replaces timestamps, run ids, seeds and measured durations with placeholders.
    pub fn for_snapshots() -> Redactor {
        Redactor { active: true }
    }

    pub(crate) fn timestamp(&self, t: &str) -> String {
        if self.active { "[timestamp]".into() } else { t.into() }
    }

    pub(crate) fn run_id(&self, id: &str) -> String {
        if self.active { "[run-id]".into() } else { id.into() }
    }

    pub(crate) fn path(&self, p: &str) -> String {
        if self.active { "[path]".into() } else { p.into() }
    }

    pub(crate) fn seed(&self, seed: u64) -> String {
        if self.active { "[seed]".into() } else { seed.to_string() }
    }

    /// A measured duration in seconds, formatted by `f` when not redacted.
    pub(crate) fn duration(&self, s: f64, f: impl Fn(f64) -> String) -> String {
        if self.active { "[duration]".into() } else { f(s) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(secs(0.0), "0s");
        assert_eq!(secs(0.25), "250ms");
        assert_eq!(secs(3.0), "3s");
        assert_eq!(secs(12.44), "12.4s");
        assert_eq!(secs(59.96), "1m");
        assert_eq!(secs(90.0), "1m30s");
        assert_eq!(secs(125.5), "2m5.5s");
        assert_eq!(secs(-5.0), "-5s");
        assert_eq!(offset(20.0), "t+20s");
        assert_eq!(offset(-5.0), "t-5s");
        assert_eq!(secs(f64::NAN), "n/a");
    }

    #[test]
    fn values_carry_their_unit() {
        assert_eq!(ms(4.23), "4.2ms");
        assert_eq!(ms(250.4), "250ms");
        assert_eq!(ms(1800.0), "1.80s");
        assert_eq!(percent(0.004), "0.4%");
        assert_eq!(percent(0.125), "12.5%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(value(0.05, "%"), "0.05%");
        assert_eq!(value(3.0, ""), "3");
        assert_eq!(value(99.5, ""), "99.5");
        assert_eq!(count(12_000), "12,000");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn markdown_escaping_keeps_tables_and_text_intact() {
        assert_eq!(md("a | b\nc"), "a \\| b c");
        assert_eq!(md("value <none>, p95 < 250ms"), "value \\<none>, p95 < 250ms");
        assert_eq!(code("error_rate < 1%"), "`error_rate < 1%`");
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("a`b"), "`` a`b ``");
    }

    #[test]
    fn xml_escaping_covers_markup_quotes_and_control_characters() {
        assert_eq!(xml(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&apos;");
        assert_eq!(xml("a\u{1}b\nc"), "a\u{FFFD}b&#10;c");
    }

    #[test]
    fn tables_are_aligned() {
        let mut t = Table::new(["check", "before"]);
        t.row(vec!["`p95 < 250ms`".into(), "42ms".into()]);
        assert_eq!(t.render(), "| check         | before |\n|---------------|--------|\n| `p95 < 250ms` | 42ms   |\n");
    }
}
