//! Perl regexes (SpamAssassin's) in the `regex` crate's syntax: modifiers as inline flags, and
//! the Perl escapes the crate lacks rewritten into equivalents.
//!
//! SpamAssassin matches its rules against UTF-8 octets (`normalize_charset`, on by default,
//! re-encodes every text as UTF-8 bytes), and its rule files are read as bytes too: a rule's
//! `\w` and `\b` are ASCII, `.` is one byte, `/i` folds ASCII only, and `[\xc3][\xa9]` spells
//! "é". [`Mode::Bytes`] is that: the pattern for `regex::bytes` with Unicode off, every
//! character outside ASCII written as its UTF-8 bytes. It is also the fast one: ASCII word
//! boundaries keep the lazy DFA on non-ASCII text, where Unicode ones leave it for the PikeVM.
//! The backtracking engine (fancy-regex) only searches `&str` with Unicode classes:
//! [`Mode::Unicode`] is for it, and is as close as it gets.

use super::rules::Pattern;

/// Which engine a pattern is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `regex::bytes`, Unicode off: Perl's semantics on octets.
    Bytes,
    /// `regex` or fancy-regex on `&str`.
    Unicode,
    /// PCRE2 without UTF, the backtracking engine: Perl's own syntax and byte semantics, as
    /// [`Mode::Bytes`] writes them but without the `regex` crate's `u` flag.
    Pcre,
}

/// A byte that never occurs in UTF-8 text: what a code point above 0xFF becomes in
/// [`Mode::Bytes`] (Perl never matches one against octets either).
const NEVER: &str = r"\xFF";

/// Builds the pattern text with the modifiers as inline flags, rewriting the Perl escapes the
/// `regex` crate lacks into equivalents.
pub fn regex_source(p: &Pattern, with_ci: bool, mode: Mode) -> String {
    let mut flags = String::new();
    if with_ci && p.case_insensitive {
        flags.push('i');
    }
    if p.dot_all {
        flags.push('s');
    }
    if p.multi_line {
        flags.push('m');
    }
    if p.extended {
        flags.push('x');
    }
    if mode == Mode::Bytes {
        flags.push_str("-u");
    }
    let bytes = mode != Mode::Unicode;
    let mut src = String::with_capacity(p.source.len() + 8);
    if !flags.is_empty() {
        src.push_str(&format!("(?{flags})"));
    }
    // Perl lets `[` stand unescaped inside a class (`[({[<]`); the regex crate reads it as
    // a nested class, so it is escaped unless it opens a POSIX class such as `[:alpha:]`.
    let chars: Vec<char> = p.source.chars().collect();
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                match chars.get(i + 1) {
                    // End of text or before a final newline.
                    Some('Z') => src.push_str(r"\n?\z"),
                    Some('h') => src.push_str(r"[\t\x20\xA0]"),
                    // Perl's vertical white space (the `regex` crate reads `\v` as VT alone).
                    Some('v') if mode != Mode::Pcre => src.push_str(r"[\n\x0B\x0C\r\x85]"),
                    Some('H') => src.push_str(r"[^\t\x20\xA0]"),
                    // Perl's octal escapes (`\015`, `\0`): a leading 0 or three digits.
                    // A lone `\1`..`\9` stays a back-reference.
                    Some(d) if d.is_digit(8) => {
                        let digits: String = chars[i + 1..]
                            .iter()
                            .take(3)
                            .take_while(|c| c.is_digit(8))
                            .collect();
                        if *d == '0' || digits.len() == 3 {
                            let value = u32::from_str_radix(&digits, 8).unwrap_or(0);
                            push_code(&mut src, value, mode);
                            i += 1 + digits.len();
                            continue;
                        }
                        src.push('\\');
                        src.push(*d);
                    }
                    // `\xH`, `\xHH`, `\x{H...}`: one byte in Perl's byte semantics.
                    Some('x') if bytes => {
                        let (value, used) = hex_escape(&chars[i + 2..]);
                        push_code(&mut src, value, mode);
                        i += 2 + used;
                        continue;
                    }
                    Some(&other) => {
                        src.push('\\');
                        src.push(other);
                    }
                    None => src.push('\\'),
                }
                i += 2;
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                src.push('[');
                // A leading `^` and a leading `]` belong to the class.
                if chars.get(i + 1) == Some(&'^') {
                    src.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    src.push_str(r"\]");
                    i += 1;
                }
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                // A POSIX class inside a class: copy through its closing `:]`.
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&k| chars[k] == ':' && chars[k + 1] == ']')
                    .map_or(chars.len(), |k| k + 2);
                src.extend(&chars[i..end]);
                i = end;
                continue;
            }
            '[' => src.push_str(r"\["),
            ']' if in_class => {
                in_class = false;
                src.push(']');
            }
            c if bytes && !c.is_ascii() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    src.push_str(&format!("\\x{b:02X}"));
                }
            }
            c => src.push(c),
        }
        i += 1;
    }
    src
}

/// A character code from an escape: in [`Mode::Bytes`] a byte (or [`NEVER`] above 0xFF).
fn push_code(src: &mut String, value: u32, mode: Mode) {
    match mode {
        Mode::Bytes | Mode::Pcre if value > 0xFF => src.push_str(NEVER),
        Mode::Bytes | Mode::Pcre => src.push_str(&format!("\\x{value:02X}")),
        Mode::Unicode => src.push_str(&format!("\\x{{{value:x}}}")),
    }
}

/// The value of what follows `\x` and how many characters it took: `{HHHH}`, or one or two
/// hex digits (none is 0, as in Perl).
fn hex_escape(rest: &[char]) -> (u32, usize) {
    if rest.first() == Some(&'{')
        && let Some(close) = rest.iter().position(|&c| c == '}')
    {
        let digits: String = rest[1..close]
            .iter()
            .filter(|c| !c.is_whitespace())
            .collect();
        let value = u32::from_str_radix(&digits, 16).unwrap_or(u32::MAX);
        return (value, close + 1);
    }
    let digits: String = rest
        .iter()
        .take(2)
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    (u32::from_str_radix(&digits, 16).unwrap_or(0), digits.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signatures::definition::parse_pattern;

    fn bytes(rule: &str) -> regex::bytes::Regex {
        let (p, _) = parse_pattern(rule).unwrap();
        regex::bytes::Regex::new(&regex_source(&p, true, Mode::Bytes)).unwrap()
    }

    #[test]
    fn perl_semantics_on_utf8_octets() {
        let yes = [
            // SpamAssassin's ReplaceTags spell letters as UTF-8 bytes.
            (r"/caf[\xc3][\xa9]/", "café"),
            (r"/caf\x{c3}\xA9/", "café"),
            (r"/caf\303\251/", "café"),
            // A character written in the rule is its bytes.
            ("/café/i", "CAFé"),
            ("/[é]/", "\u{e9}"),
            // `.` is one byte: two of them make one two-byte character.
            ("/^caf..$/", "café"),
            // ASCII word characters: "é" is a boundary.
            (r"/\bcaf\b/", "café"),
        ];
        for (rule, text) in yes {
            assert!(bytes(rule).is_match(text.as_bytes()), "{rule} on {text}");
        }
        let no = [
            // `/i` folds ASCII only.
            ("/café/i", "CAFÉ"),
            (r"/^\w+$/", "café"),
            ("/^caf.$/", "café"),
            // A code point above 0xFF never matches octets, as in Perl.
            (r"/b[i\x{0456}]tcoin/", "b\u{456}tcoin"),
        ];
        for (rule, text) in no {
            assert!(!bytes(rule).is_match(text.as_bytes()), "{rule} on {text}");
        }
        assert!(bytes(r"/b[i\x{0456}]tcoin/").is_match(b"bitcoin"));
    }

    #[test]
    fn unicode_mode_is_what_it_was() {
        let (p, _) = parse_pattern(r"/caf\351/i").unwrap();
        assert_eq!(regex_source(&p, true, Mode::Unicode), r"(?i)caf\x{e9}");
        assert_eq!(regex_source(&p, false, Mode::Bytes), r"(?-u)caf\xE9");
    }
}
