//! Perl regexes (SpamAssassin's) in the `regex` crate's syntax: modifiers as inline flags, and
//! the Perl escapes the crate lacks rewritten into equivalents.

use super::rules::Pattern;

/// Builds the pattern text with the modifiers as inline flags, rewriting the Perl escapes the
/// `regex` crate lacks into equivalents.
pub fn regex_source(p: &Pattern, with_ci: bool) -> String {
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
                            src.push_str(&format!("\\x{{{value:x}}}"));
                            i += 1 + digits.len();
                            continue;
                        }
                        src.push('\\');
                        src.push(*d);
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
            c => src.push(c),
        }
        i += 1;
    }
    src
}
