//! `report.md` as a web page: the Markdown that [`super::markdown`] writes (headings,
//! paragraphs, `**bold**`, `` `code` ``, tables, lists, chart images), turned into one HTML
//! document with its SVG charts inline, so that the game-day page can open the debrief as a
//! class reads it. Only that subset is understood; anything else is shown as text, escaped.

/// The page of `md`; `chart` gives the SVG of an image's file (`rate.svg`), or `None` to keep
/// its alt text.
pub fn render(md: &str, chart: impl Fn(&str) -> Option<String>) -> String {
    let title = md.lines().find_map(|l| l.strip_prefix("# ")).unwrap_or("siege report");
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title>\
         <style>{STYLE}</style></head><body><main>\n",
        escape(title)
    );
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() {
            i += 1;
        } else if line.starts_with('|') {
            let start = i;
            while i < lines.len() && lines[i].starts_with('|') {
                i += 1;
            }
            table(&lines[start..i], &mut out);
        } else if let Some((level, text)) = heading(line) {
            out.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text)));
            i += 1;
        } else if let Some((alt, file)) = image(line) {
            match chart(file) {
                Some(svg) => out.push_str(&format!("<figure>{svg}<figcaption>{}</figcaption></figure>\n", escape(alt))),
                None => out.push_str(&format!("<p>[{}]</p>\n", escape(alt))),
            }
            i += 1;
        } else if let Some(ordered) = list_item(line).map(|(o, _)| o) {
            let tag = if ordered { "ol" } else { "ul" };
            out.push_str(&format!("<{tag}>\n"));
            while let Some((o, text)) = lines.get(i).and_then(|l| list_item(l)) {
                if o != ordered {
                    break;
                }
                out.push_str(&format!("<li>{}</li>\n", inline(text)));
                i += 1;
            }
            out.push_str(&format!("</{tag}>\n"));
        } else {
            let start = i;
            while i < lines.len() && !lines[i].trim().is_empty() && starts_block(lines[i]).is_none() {
                i += 1;
            }
            let text = lines[start..i].join(" ");
            out.push_str(&format!("<p>{}</p>\n", inline(&text)));
        }
    }
    out.push_str("</main></body></html>\n");
    out
}

const STYLE: &str = "body{margin:0;font:17px/1.5 system-ui,sans-serif;color:#1d2330}\
main{max-width:1100px;margin:0 auto;padding:1em 1.5em}\
table{border-collapse:collapse;margin:.5em 0}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #d9dde6}\
code{background:#f3f4f7;padding:0 .2em;border-radius:3px}figure{margin:1em 0}\
figure svg{max-width:100%;height:auto}figcaption{color:#687087}";

/// A line that begins a block other than a paragraph.
fn starts_block(line: &str) -> Option<()> {
    (line.starts_with('|') || heading(line).is_some() || image(line).is_some() || list_item(line).is_some())
        .then_some(())
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|c| *c == '#').count();
    ((1..=6).contains(&level) && line[level..].starts_with(' ')).then(|| (level, line[level..].trim()))
}

/// `![alt](file)` alone on its line.
fn image(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim().strip_prefix("![")?;
    let (alt, rest) = rest.split_once("](")?;
    let file = rest.strip_suffix(')')?;
    (!file.contains(['(', ')', ' '])).then_some((alt, file))
}

/// `- text` or `1. text`: (ordered, text).
fn list_item(line: &str) -> Option<(bool, &str)> {
    if let Some(text) = line.strip_prefix("- ") {
        return Some((false, text));
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    let text = line[digits..].strip_prefix(". ")?;
    (digits > 0).then_some((true, text))
}

fn table(rows: &[&str], out: &mut String) {
    let cells = |row: &str| -> Vec<String> {
        let row = row.trim().trim_start_matches('|').trim_end_matches('|');
        row.split('|').map(|c| c.trim().to_string()).collect()
    };
    let is_rule = |row: &str| row.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '));
    out.push_str("<table>\n");
    for (n, row) in rows.iter().enumerate() {
        if is_rule(row) {
            continue;
        }
        let tag = if n == 0 && rows.get(1).is_some_and(|r| is_rule(r)) { "th" } else { "td" };
        out.push_str("<tr>");
        for c in cells(row) {
            out.push_str(&format!("<{tag}>{}</{tag}>", inline(&c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// Escaped text with `**bold**` and `` `code` `` spans.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let code = rest.find('`');
        let bold = rest.find("**");
        match (code, bold) {
            (Some(c), b) if b.is_none_or(|b| c < b) => {
                let Some(end) = rest[c + 1..].find('`') else { break };
                out.push_str(&escape(&rest[..c]));
                out.push_str(&format!("<code>{}</code>", escape(&rest[c + 1..c + 1 + end])));
                rest = &rest[c + 2 + end..];
            }
            (_, Some(b)) => {
                let Some(end) = rest[b + 2..].find("**") else { break };
                out.push_str(&escape(&rest[..b]));
                out.push_str(&format!("<b>{}</b>", inline(&rest[b + 2..b + 2 + end])));
                rest = &rest[b + 4 + end..];
            }
            _ => break,
        }
    }
    out.push_str(&escape(rest));
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_of_markdown_a_report_uses_becomes_html_with_its_charts_inline() {
        let md = "# kill: PASSED\n\n**Verdict: PASSED** (exit 0). Steady state `error_rate < 1%`\nheld.\n\n\
            ## Faults\n\n| fault | outage |\n|---|---|\n| kill | 2.0 s |\n\n![Error rate](errors.svg)\n\
            ![Missing](gone.svg)\n\n1. What did we see <first>?\n2. Why?\n\n- a & b\n";
        let html = render(md, |f| (f == "errors.svg").then(|| "<svg id=\"e\"></svg>".to_string()));
        assert!(html.contains("<title>kill: PASSED</title>"), "{html}");
        assert!(html.contains("<h1>kill: PASSED</h1>"));
        assert!(
            html.contains("<p><b>Verdict: PASSED</b> (exit 0). Steady state <code>error_rate &lt; 1%</code> held.</p>"),
            "{html}"
        );
        assert!(
            html.contains("<tr><th>fault</th><th>outage</th></tr>\n<tr><td>kill</td><td>2.0 s</td></tr>"),
            "{html}"
        );
        assert!(html.contains("<figure><svg id=\"e\"></svg><figcaption>Error rate</figcaption></figure>"), "{html}");
        assert!(html.contains("<p>[Missing]</p>"));
        assert!(html.contains("<ol>\n<li>What did we see &lt;first&gt;?</li>\n<li>Why?</li>\n</ol>"), "{html}");
        assert!(html.contains("<ul>\n<li>a &amp; b</li>\n</ul>"), "{html}");
    }

    #[test]
    fn unclosed_spans_stay_text() {
        assert_eq!(inline("a `b and **c"), "a `b and **c");
        assert_eq!(inline("**x `y` z**"), "<b>x <code>y</code> z</b>");
    }
}
