//! Man pages, generated so that they cannot drift from what they describe: `repmilter(8)` and
//! one page per subcommand from the command line's definitions (clap_mangen), and
//! `repmilter.toml(5)` from the documented sample config, whose comments are the reference.

use roff::{Roff, bold, italic, roman};

/// The sample config, as shipped: every key with its default and its comment.
pub const SAMPLE_CONFIG: &str = include_str!("../config/repmilter.toml");

/// `repmilter.toml(5)`: the sample config's comments as a reference page. A table header
/// (`[milter]`, or `# [[dnsbl]]` in a comment) starts a section; a comment block ends at a
/// key, which it describes, or at a blank line, where it stands as a paragraph; a commented
/// key (`# quarantine = 12.0`) is an example of a key that is off by default.
pub fn config_page(sample: &str, version: &str) -> String {
    let mut page = Roff::new();
    page.control(
        "TH",
        [
            "REPMILTER.TOML",
            "5",
            "",
            &format!("repmilter {version}"),
            "File formats",
        ],
    );
    page.control("SH", ["NAME"]);
    page.text([roman(
        "repmilter.toml - configuration of the repmilter mail filter",
    )]);
    page.control("SH", ["SYNOPSIS"]);
    page.text([
        roman("/etc/repmilter/repmilter.toml; check a file with "),
        bold("repmilter config check --config"),
        roman(" "),
        italic("FILE"),
        roman("."),
    ]);
    page.control("SH", ["DESCRIPTION"]);
    let mut comment: Vec<String> = Vec::new();
    let flush = |page: &mut Roff, comment: &mut Vec<String>| {
        if comment.is_empty() {
            return;
        }
        paragraph(page, comment);
        comment.clear();
    };
    for line in sample.lines() {
        let trimmed = line.trim();
        if let Some(header) = table_header(trimmed) {
            flush(&mut page, &mut comment);
            page.control("SH", [header]);
        } else if trimmed.is_empty() {
            flush(&mut page, &mut comment);
        } else if let Some((key, value, commented)) = key_line(trimmed) {
            page.control("TP", []);
            let mut head = vec![bold(key), roman(" = "), roman(value)];
            if commented {
                head.push(italic(" (off unless set; an example)"));
            }
            page.text(head);
            lines(&mut page, &comment);
            comment.clear();
        } else if let Some(text) = trimmed.strip_prefix('#') {
            comment.push(text.strip_prefix(' ').unwrap_or(text).to_string());
        }
    }
    flush(&mut page, &mut comment);
    page.control("SH", ["SEE ALSO"]);
    page.text([
        bold("repmilter"),
        roman("(8), "),
        bold("postconf"),
        roman("(5) (milter settings of Postfix)"),
    ]);
    page.render()
}

/// A comment block as a paragraph; lines indented past the comment's own space (a table of
/// fields, aligned examples) keep their lines.
fn paragraph(page: &mut Roff, comment: &[String]) {
    page.control("PP", []);
    lines(page, comment);
}

/// Comment text, filled, or line by line when some line is indented.
fn lines(page: &mut Roff, comment: &[String]) {
    if comment.is_empty() {
        return;
    }
    if comment.iter().any(|l| l.starts_with("  ")) {
        page.control("nf", []);
        for l in comment {
            page.text([roman(l.clone())]);
        }
        page.control("fi", []);
    } else {
        page.text([roman(comment.join(" "))]);
    }
}

/// `[milter]`, `[[dnsbl]]`, or the same commented out.
fn table_header(line: &str) -> Option<&str> {
    let line = line.strip_prefix('#').map_or(line, str::trim);
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let name = inner.trim_start_matches('[').trim_end_matches(']');
    let table_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    (!name.is_empty() && name.chars().all(table_name)).then_some(line)
}

/// `key = value`, or `# key = value` (commented: true).
fn key_line(line: &str) -> Option<(&str, &str, bool)> {
    let (text, commented) = match line.strip_prefix('#') {
        Some(rest) => (rest.strip_prefix(' ')?, true),
        None => (line, false),
    };
    let (key, value) = text.split_once(" = ")?;
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    is_key.then_some((key, value.trim(), commented))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_and_key_of_the_sample_config_is_in_the_page() {
        let page = config_page(SAMPLE_CONFIG, "0.1.0");
        assert!(page.contains("\n.TH REPMILTER.TOML 5"), "{page}");
        for line in SAMPLE_CONFIG.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                assert!(page.contains(&format!(".SH {line}")), "no section {line}");
            } else if let Some((key, _, false)) = key_line(line) {
                assert!(page.contains(&format!("\\fB{key}\\fR")), "no key {key}");
            }
        }
        // The comment above a key describes it, after its name.
        let mode = page.find("\\fBsocket_mode\\fR").unwrap();
        let next = page.find("\\fBmax_connections\\fR").unwrap();
        let between = &page[mode..next];
        assert!(
            between.contains("Permissions of a unix socket"),
            "{between}"
        );
    }

    #[test]
    fn keys_and_headers_are_told_from_prose() {
        assert_eq!(key_line("reject = 15.0"), Some(("reject", "15.0", false)));
        assert_eq!(
            key_line("# quarantine = 12.0"),
            Some(("quarantine", "12.0", true))
        );
        assert_eq!(key_line("#            ... } or { bits = 4, ... }"), None);
        assert_eq!(key_line("# Score thresholds. The action taken is"), None);
        assert_eq!(table_header("[milter]"), Some("[milter]"));
        assert_eq!(table_header("# [[dnsbl]]"), Some("[[dnsbl]]"));
        assert_eq!(table_header("# [SPAM] prefix"), None);
    }
}
