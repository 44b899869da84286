//! The definition part of a rule line: a pattern with its modifiers, a header selection, a
//! phrase list (inline or from a file), a meta expression.

use std::path::{Path, PathBuf};

use super::meta::parse_meta;
use super::rules::{HeaderPart, HeaderSel, Pattern, Target, Test};

/// Longest phrase list file read.
pub const MAX_LIST_FILE: u64 = 64 * 1024 * 1024;

pub(super) fn parse_test(kind: &str, def: &str, file: &Path) -> Result<Test, String> {
    let def = def.trim();
    if def.is_empty() {
        return Err(format!("{kind} rule without a test"));
    }
    if let Some(eval) = def.strip_prefix("eval:") {
        return Ok(Test::Eval(eval.to_string()));
    }
    match kind {
        "header" => parse_header_test(def),
        "mimeheader" => mime_header_test(def),
        "body" => Ok(regex_test(Target::Body, parse_pattern(def)?)),
        "rawbody" => Ok(regex_test(Target::RawBody, parse_pattern(def)?)),
        "full" => Ok(regex_test(Target::Full, parse_pattern(def)?)),
        "uri" => Ok(regex_test(Target::Uri, parse_pattern(def)?)),
        "meta" => parse_meta(def).map(Test::Meta),
        "phrases" => parse_phrases(def, file),
        _ => unreachable!("kinds are matched by the caller"),
    }
}

fn regex_test(target: Target, (pattern, rest): (Pattern, &str)) -> Test {
    let _ = rest;
    Test::Regex {
        target,
        pattern,
        negate: false,
        if_unset: None,
    }
}

fn parse_header_sel(spec: &str) -> Result<Target, String> {
    // `:raw` may follow `:addr` or `:name` (`From:name:raw`); the address or name is then
    // taken from the undecoded value, which is what we do for them anyway.
    let spec = spec
        .strip_suffix(":raw")
        .filter(|s| s.contains(':'))
        .unwrap_or(spec);
    let (name, part) = match spec.rsplit_once(':') {
        Some((n, "raw")) => (n, HeaderPart::Raw),
        Some((n, "addr")) => (n, HeaderPart::Addr),
        Some((n, "name")) => (n, HeaderPart::Name),
        Some((_, other)) => {
            return Err(format!(
                "unknown header modifier :{other} (use :raw, :addr or :name)"
            ));
        }
        None => (spec, HeaderPart::Decoded),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(format!("bad header name {name:?}"));
    }
    Ok(Target::Header(match name {
        "ALL" => HeaderSel::All,
        "ToCc" => HeaderSel::ToCc(part),
        "MESSAGEID" => HeaderSel::MessageId(part),
        _ => HeaderSel::Named(name.to_string(), part),
    }))
}

/// `mimeheader NAME Header[:raw] =~ /re/`: as a header test, on each MIME part's headers.
fn mime_header_test(def: &str) -> Result<Test, String> {
    match parse_header_test(def)? {
        Test::Regex {
            target: Target::Header(sel),
            pattern,
            negate,
            if_unset,
        } => match sel {
            HeaderSel::All | HeaderSel::Named(_, HeaderPart::Decoded | HeaderPart::Raw) => {
                Ok(Test::Regex {
                    target: Target::MimeHeader(sel),
                    pattern,
                    negate,
                    if_unset,
                })
            }
            _ => Err("a mimeheader rule reads one header, decoded or :raw".into()),
        },
        _ => Err("a mimeheader rule needs =~ or !~ and a pattern".into()),
    }
}

fn parse_header_test(def: &str) -> Result<Test, String> {
    if let Some(name) = def.strip_prefix("exists:") {
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err("exists: needs one header name".into());
        }
        return Ok(Test::Exists(name.to_string()));
    }
    let (spec, rest) = split_word(def);
    let target = parse_header_sel(spec)?;
    let (op, rest) = split_word(rest);
    let negate = match op {
        "=~" => false,
        "!~" => true,
        "" => return Err("expected =~ or !~ after the header name".into()),
        other => {
            return Err(format!(
                "expected =~ or !~ after the header name, found {other:?}"
            ));
        }
    };
    let (pattern, after) = parse_pattern(rest)?;
    let if_unset = match after.trim() {
        "" => None,
        s => {
            let inner = s
                .strip_prefix("[if-unset:")
                .and_then(|s| s.strip_suffix(']'))
                .ok_or_else(|| format!("unexpected text after the pattern: {s:?}"))?;
            Some(inner.trim().to_string())
        }
    };
    Ok(Test::Regex {
        target,
        pattern,
        negate,
        if_unset,
    })
}

/// Parses `/re/flags`, `m{re}flags`, `m!re!flags`; returns the pattern and what follows.
pub fn parse_pattern(s: &str) -> Result<(Pattern, &str), String> {
    let s = s.trim_start();
    let (open, body_start) = if let Some(rest) = s.strip_prefix('m') {
        let c = rest.chars().next().ok_or("m without a delimiter")?;
        if c.is_alphanumeric() || c.is_whitespace() {
            return Err(format!("bad pattern delimiter {c:?}"));
        }
        (c, 1 + c.len_utf8())
    } else if s.starts_with('/') {
        ('/', 1)
    } else {
        return Err("expected a pattern such as /text/i".into());
    };
    let close = match open {
        '{' => '}',
        '(' => ')',
        '[' => ']',
        '<' => '>',
        c => c,
    };
    // The pattern ends at the last closing delimiter that is followed only by modifiers
    // (and an optional [if-unset: ...]), so unescaped delimiters inside still work.
    let body = &s[body_start..];
    let mut end = None;
    for (i, c) in body.char_indices().rev() {
        if c != close || is_escaped(body, i) {
            continue;
        }
        let after = &body[i + close.len_utf8()..];
        let flags_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let tail = after[flags_len..].trim_start();
        if tail.is_empty() || tail.starts_with("[if-unset:") {
            end = Some(i);
            break;
        }
    }
    let end = end.ok_or_else(|| format!("pattern has no closing {close:?}"))?;
    let source = &body[..end];
    let after = &body[end + close.len_utf8()..];
    let flags_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
    let mut p = Pattern {
        source: source.to_string(),
        case_insensitive: false,
        dot_all: false,
        multi_line: false,
        extended: false,
    };
    for f in after[..flags_len].chars() {
        match f {
            'i' => p.case_insensitive = true,
            's' => p.dot_all = true,
            'm' => p.multi_line = true,
            'x' => p.extended = true,
            // g and o mean nothing for a match test.
            'g' | 'o' => {}
            other => return Err(format!("unknown pattern modifier {other:?}")),
        }
    }
    if source.is_empty() {
        return Err("empty pattern".into());
    }
    Ok((p, &after[flags_len..]))
}

fn is_escaped(s: &str, i: usize) -> bool {
    s.as_bytes()[..i]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count()
        % 2
        == 1
}

/// The list file a phrases rule's `file:` names, relative to the rule file.
fn list_path(rest: &str, rule_file: &Path) -> Option<PathBuf> {
    let list = rest.trim().strip_prefix("file:")?;
    Some(
        rule_file
            .parent()
            .unwrap_or(Path::new("."))
            .join(list.trim()),
    )
}

/// The phrase list file a `phrases` definition reads, if any (read or not), so that a reload
/// can watch it.
pub(super) fn phrase_list_of(def: &str, rule_file: &Path) -> Option<PathBuf> {
    let (_, mut rest) = split_word(def);
    loop {
        let (w, r) = split_word(rest);
        match w {
            "word" | "case" | "perhit" => rest = r,
            _ => return list_path(rest, rule_file),
        }
    }
}

fn parse_phrases(def: &str, rule_file: &Path) -> Result<Test, String> {
    let (target_word, mut rest) = split_word(def);
    let target = match target_word {
        "body" => Target::Body,
        "rawbody" => Target::RawBody,
        "full" => Target::Full,
        "uri" => Target::Uri,
        t if t.starts_with("header:") => parse_header_sel(&t[7..])?,
        "" => return Err("phrases needs a target (body, rawbody, full, uri, header:NAME)".into()),
        other => return Err(format!("unknown phrases target {other:?}")),
    };
    let (mut word, mut case, mut perhit) = (false, false, false);
    loop {
        let (w, r) = split_word(rest);
        match w {
            "word" => word = true,
            "case" => case = true,
            "perhit" => perhit = true,
            _ => break,
        }
        rest = r;
    }
    let rest = rest.trim();
    let phrases = if let Some(path) = list_path(rest, rule_file) {
        let text = crate::files::read_text(&path, MAX_LIST_FILE)
            .map_err(|e| format!("cannot read phrase list {}: {e}", path.display()))?;
        text.lines()
            .map(|l| strip_comment(l).trim())
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    } else {
        parse_quoted_list(rest)?
    };
    if phrases.is_empty() {
        return Err("phrase list is empty".into());
    }
    Ok(Test::Phrases {
        target,
        phrases,
        word,
        case,
        perhit,
    })
}

fn parse_quoted_list(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Ok(out),
            Some('"') => {}
            Some(c) => return Err(format!("expected a quoted phrase, found {c:?}")),
        }
        let mut phrase = String::new();
        loop {
            match chars.next() {
                None => return Err("unclosed quote in phrase list".into()),
                Some('\\') => match chars.next() {
                    Some(c) => phrase.push(c),
                    None => return Err("unclosed quote in phrase list".into()),
                },
                Some('"') => break,
                Some(c) => phrase.push(c),
            }
        }
        if phrase.trim().is_empty() {
            return Err("empty phrase".into());
        }
        out.push(phrase);
    }
}

/// Removes a comment: `#` to the end of the line unless escaped as `\#` (SpamAssassin's rule).
pub(super) fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'#' && (i == 0 || b[i - 1] != b'\\') {
            return &line[..i];
        }
    }
    line
}

/// Splits off the first whitespace-separated word.
pub(super) fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}
