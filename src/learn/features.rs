//! What the learner sees of a message: its features, each a 64-bit hash of a prefixed token.
//! Training and scoring derive them with the same code, on the gateway, so that only hashes
//! leave it.
//!
//! | prefix     | from                                                                  |
//! |------------|-----------------------------------------------------------------------|
//! | `w:`       | words of the decoded text (plain and rendered HTML)                   |
//! | `h:NAME:`  | words of selected headers (Subject, From, Reply-To, To, X-Mailer, ...) |
//! | `ct:`      | each part's declared type; `cs:` its charset                          |
//! | `u:`, `d:` | each link's host and its registered domain                            |
//! | `a:`       | each attachment's declared and sniffed type, and its name's extension |
//! | `s:`       | the name of each content rule or stage symbol that fired              |
//!
//! **Normalisation.** Words are lower-cased. A word of letters with digits or look-alike
//! symbols in it (`v1agra`, `fr€e`) is read with them as the letters they imitate and
//! also kept as written with its digits as `#`; a number is its shape (`####`, `#.##`), so
//! amounts and dates do not each become a feature. Letters spelled out one by one
//! (`v i a g r a`, `v.i.a.g.r.a`) are joined. Words under 2 or over 24 characters are
//! dropped (long ones become `long:` with their first 8), URLs in the text are left to `u:`.

use crate::reputation::keys::{fnv, mix};
use crate::scan::{ScanInput, Symbol};

/// Text read per message: features past it add little and cost time.
pub const MAX_TEXT: usize = 256 * 1024;

/// Longest word kept whole; longer ones are `long:` and their first 8 characters.
const MAX_WORD: usize = 24;

/// Headers whose words are features (lower case).
const HEADERS: [&str; 9] = [
    "subject",
    "from",
    "reply-to",
    "to",
    "x-mailer",
    "user-agent",
    "content-type",
    "message-id",
    "list-unsubscribe",
];

/// The hash of one token under its prefix: fixed across versions and gateways.
pub fn hash(prefix: &str, token: &str) -> u64 {
    mix(fnv(prefix.as_bytes()) ^ mix(fnv(token.as_bytes())))
}

/// The message's content features, sorted and each once (symbols are added by
/// [`with_symbols`]).
pub fn of(input: &ScanInput) -> Vec<u64> {
    let mut out = Vec::with_capacity(512);
    tokens(input, &mut |prefix, token| out.push(hash(prefix, token)));
    out.sort_unstable();
    out.dedup();
    out
}

/// `features` with the names of the symbols that fired (those of the learner itself, and
/// zero-score notes such as timeouts, left out).
pub fn with_symbols(mut features: Vec<u64>, symbols: &[Symbol]) -> Vec<u64> {
    for s in symbols {
        if counts_as_feature(s) {
            features.push(hash("s:", &s.name));
        }
    }
    features.sort_unstable();
    features.dedup();
    features
}

fn counts_as_feature(s: &Symbol) -> bool {
    !s.name.starts_with("LEARN_") && !s.name.ends_with("_TIMEOUT") && s.name != "HUB_UNAVAILABLE"
}

/// The text of each feature of a message, by hash: for `check --explain` (never sent).
pub fn texts(input: &ScanInput, symbols: &[Symbol]) -> rustc_hash::FxHashMap<u64, String> {
    let mut out = rustc_hash::FxHashMap::default();
    tokens(input, &mut |prefix, token| {
        out.entry(hash(prefix, token))
            .or_insert_with(|| format!("{prefix}{token}"));
    });
    for s in symbols.iter().filter(|s| counts_as_feature(s)) {
        out.insert(hash("s:", &s.name), format!("s:{}", s.name));
    }
    out
}

/// Calls `f` with each token of the message and its prefix (repeats included).
pub fn tokens(input: &ScanInput, f: &mut dyn FnMut(&str, &str)) {
    let view = input.view();
    let mut budget = MAX_TEXT;
    for part in &view.texts {
        let text = &part.text[..part.text.floor_char_boundary(part.text.len().min(budget))];
        budget -= text.len();
        words(text, &mut |w| f("w:", w));
        f("ct:", if part.html { "text/html" } else { "text/plain" });
    }
    for h in input.headers() {
        let name = h.name.to_ascii_lowercase();
        if !HEADERS.contains(&name.as_str()) {
            continue;
        }
        let prefix = format!("h:{name}:");
        let value = &h.value[..h.value.floor_char_boundary(h.value.len().min(1024))];
        words(value, &mut |w| f(&prefix, w));
        if name == "content-type"
            && let Some(cs) = charset(value)
        {
            f("cs:", &cs);
        }
    }
    for u in &view.urls {
        f("u:", &u.host);
        f("d:", &u.domain);
    }
    for a in &view.attachments {
        f("a:", &a.declared_type);
        if let Some(t) = a.sniffed_type {
            f("a:", t);
        }
        if let Some(ext) = a
            .name
            .as_deref()
            .and_then(|n| n.rsplit_once('.'))
            .map(|p| p.1)
        {
            f("a:.", &ext.to_lowercase());
        }
    }
}

fn charset(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    let at = lower.find("charset=")? + "charset=".len();
    let cs: String = lower[at..]
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (!cs.is_empty()).then_some(cs)
}

/// Look-alike symbols and the letters they imitate.
fn letter_of(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        '€' => 'e',
        _ => return None,
    })
}

/// Calls `f` with each normalised word of `text`.
pub fn words(text: &str, f: &mut dyn FnMut(&str)) {
    let mut spelled = String::new();
    let mut spelled_n = 0;
    let flush_spelled = |spelled: &mut String, n: &mut usize, f: &mut dyn FnMut(&str)| {
        if *n > MAX_WORD {
            let head: String = spelled.chars().take(8).collect();
            f(&format!("long:{head}"));
        } else if *n >= 4 {
            f(spelled);
        }
        spelled.clear();
        *n = 0;
    };
    let mut word = String::new();
    for raw in text.split(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"') {
        // URLs are features of their own (`u:`, `d:`).
        if raw.contains("://") || raw.starts_with("www.") {
            flush_spelled(&mut spelled, &mut spelled_n, f);
            continue;
        }
        // Letters spelled out one by one, with or without separators (v.i.a.g.r.a).
        let letters: Vec<char> = raw.chars().filter(|c| c.is_alphabetic()).collect();
        let others = raw.chars().filter(|c| !c.is_alphabetic()).count();
        if letters.len() == 1 && others <= 1 {
            // Counted past the longest word, kept only up to it.
            if spelled_n <= MAX_WORD {
                spelled.extend(letters[0].to_lowercase());
            }
            spelled_n += 1;
            continue;
        }
        if letters.len() >= 4
            && raw
                .chars()
                .all(|c| c.is_alphabetic() || c == '.' || c == '-')
        {
            let parts: Vec<&str> = raw.split(['.', '-']).collect();
            if parts.len() == letters.len() {
                flush_spelled(&mut spelled, &mut spelled_n, f);
                f(&raw.replace(['.', '-'], "").to_lowercase());
                continue;
            }
        }
        flush_spelled(&mut spelled, &mut spelled_n, f);
        // A number, with its separators (amounts, dates, times): its shape.
        let number = raw.trim_matches(|c: char| !c.is_ascii_digit());
        if !number.is_empty()
            && number.len() <= 16
            && !raw.chars().any(char::is_alphabetic)
            && number
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '/' | ':' | '-'))
        {
            word.clear();
            word.extend(
                number
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c }),
            );
            f(&word);
            continue;
        }
        for piece in raw.split(|c: char| !(c.is_alphanumeric() || letter_of(c).is_some())) {
            word.clear();
            let trimmed = piece.trim_matches(|c: char| !c.is_alphanumeric());
            if trimmed.is_empty() {
                continue;
            }
            let has_letter = trimmed.chars().any(char::is_alphabetic);
            let has_other = trimmed.chars().any(|c| !c.is_alphabetic());
            if !has_letter {
                // A number: its shape.
                word.extend(
                    trimmed
                        .chars()
                        .map(|c| if c.is_ascii_digit() { '#' } else { c }),
                );
                if word.len() <= 12 {
                    f(&word);
                }
                continue;
            }
            let n = trimmed.chars().count();
            if n < 2 {
                continue;
            }
            if n > MAX_WORD {
                let head: String = trimmed
                    .chars()
                    .take(8)
                    .flat_map(char::to_lowercase)
                    .collect();
                word.push_str("long:");
                word.push_str(&head);
                f(&word);
                continue;
            }
            if has_other {
                // Look-alikes read as letters, and the word as written with digits as `#`.
                let mut plain = String::new();
                let mut all = true;
                for c in trimmed.chars() {
                    match letter_of(c) {
                        Some(l) => plain.push(l),
                        None if c.is_alphabetic() => plain.extend(c.to_lowercase()),
                        None => all = false,
                    }
                }
                if all {
                    f(&plain);
                }
                word.extend(
                    trimmed
                        .chars()
                        .flat_map(char::to_lowercase)
                        .map(|c| if c.is_ascii_digit() { '#' } else { c }),
                );
                f(&word);
                continue;
            }
            word.extend(trimmed.chars().flat_map(char::to_lowercase));
            f(&word);
        }
    }
    flush_spelled(&mut spelled, &mut spelled_n, f);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message};

    fn all(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        words(text, &mut |w| out.push(w.to_string()));
        out
    }

    #[test]
    fn words_are_normalised() {
        assert_eq!(all("Hello, WORLD! Héllo"), ["hello", "world", "héllo"]);
        // Numbers become their shape; amounts and dates collapse.
        assert_eq!(
            all("Pay $1,500.00 by 12/03/2024"),
            ["pay", "#,###.##", "by", "##/##/####"]
        );
        // Look-alikes read as letters, and are kept as written too.
        assert_eq!(all("V1AGRA"), ["viagra", "v#agra"]);
        assert_eq!(all("fr€e"), ["free", "fr€e"]);
        // Letters spelled out are joined, with or without separators.
        assert_eq!(all("buy v i a g r a now"), ["buy", "viagra", "now"]);
        assert_eq!(all("buy v.i.a.g.r.a now"), ["buy", "viagra", "now"]);
        // Too short, too long, and links.
        assert_eq!(all("a I ok"), ["ok"]);
        assert_eq!(all(&"x".repeat(40)), ["long:xxxxxxxx"]);
        assert_eq!(all(&"a ".repeat(100_000)), ["long:aaaaaaaa"]);
        // An address is its parts, not look-alike letters.
        assert_eq!(all("mail@example.com"), ["mail", "example", "com"]);
        assert_eq!(all("see https://evil.example/x now"), ["see", "now"]);
        // Nothing of garbage panics.
        for junk in ["\u{0}\u{ffff}", "....", "$$$$", "€", "1!|@"] {
            all(junk);
        }
    }

    #[test]
    fn a_message_s_features_cover_text_headers_links_and_attachments() {
        let raw = "From: \"Prize Desk\" <win@lottery.example>\r\nSubject: You WON a prize\r\n\
                   Content-Type: text/plain; charset=utf-8\r\n\r\n\
                   Claim your prize at https://claim.lottery.example/x today\r\n";
        let input = ScanInput::new(
            Envelope::default(),
            Message::from_raw(raw.as_bytes(), 1 << 20),
        );
        let f = of(&input);
        let texts = texts(
            &input,
            &[
                Symbol::new("GTUBE", 1.0, ""),
                Symbol::new("LEARN_SPAM_99", 1.0, ""),
            ],
        );
        let has = |t: &str| {
            f.contains(&hash(
                &t[..t.find(':').unwrap() + 1],
                &t[t.find(':').unwrap() + 1..],
            ))
        };
        for t in [
            "w:claim",
            "w:prize",
            "u:claim.lottery.example",
            "d:lottery.example",
            "cs:utf-8",
        ] {
            assert!(
                has(t),
                "{t} missing: {:?}",
                texts.values().collect::<Vec<_>>()
            );
        }
        assert!(f.contains(&hash("h:subject:", "won")));
        assert!(f.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
        // Symbols that fired are features; the learner's own are not.
        let with = with_symbols(
            f.clone(),
            &[
                Symbol::new("GTUBE", 1.0, ""),
                Symbol::new("LEARN_SPAM_99", 1.0, ""),
            ],
        );
        assert_eq!(with.len(), f.len() + 1);
        assert!(with.contains(&hash("s:", "GTUBE")));
        assert_eq!(texts[&hash("s:", "GTUBE")], "s:GTUBE");
        assert!(!texts.values().any(|t| t.contains("LEARN")));
    }
}
