//! SpamAssassin's ReplaceTags: named pattern fragments (`replace_tag A (?:[aA4@]|...)`)
//! written into the patterns of the rules `replace_rules` lists (`/<V><I><A><G><R><A>/`),
//! with `<pre NAME>`, `<post NAME>` and `<inter NAME>` adding a fragment before, after or
//! between the tags of a pattern.
//!
//! The expansion follows the plugin's own steps (Mail::SpamAssassin::Plugin::ReplaceTags,
//! `finish_parsing_end`) rather than a cleaner reading of its manual, because the stock rules
//! were written and tuned against those steps: the pattern is split at every `<...>`; a pre
//! fragment goes before the first tag of each piece, a post one after each tag, an inter one
//! into every empty piece (between two adjacent tags, and before a tag that opens the
//! pattern); then each piece's tag is replaced; and all that again, up to five more times,
//! while replacements bring new tags.

use std::collections::BTreeMap;

/// The fragments and the rules they apply to, as the rule files set them.
#[derive(Debug, Clone)]
pub struct ReplaceTags {
    pub start: String,
    pub end: String,
    pub tags: BTreeMap<String, String>,
    pub pre: BTreeMap<String, String>,
    pub inter: BTreeMap<String, String>,
    pub post: BTreeMap<String, String>,
}

impl Default for ReplaceTags {
    fn default() -> ReplaceTags {
        ReplaceTags {
            start: "<".into(),
            end: ">".into(),
            tags: BTreeMap::new(),
            pre: BTreeMap::new(),
            inter: BTreeMap::new(),
            post: BTreeMap::new(),
        }
    }
}

/// Most passes over one pattern: the first and five more, as in SpamAssassin.
const PASSES: usize = 6;

/// Longest pattern an expansion may grow to; tags that name each other would otherwise
/// double it every pass.
pub const MAX_EXPANDED: usize = 1 << 20;

impl ReplaceTags {
    /// The pattern with its tags replaced, or why it could not be.
    pub fn expand(&self, pattern: &str) -> Result<String, String> {
        let mut re = pattern.to_string();
        for _ in 0..PASSES {
            let pre = self.take_modifier(&mut re, "pre");
            let post = self.take_modifier(&mut re, "post");
            let inter = self.take_modifier(&mut re, "inter");
            let mut pieces = split_tags(&re);
            let nonempty = |m: &BTreeMap<String, String>, name: Option<String>| {
                name.and_then(|n| m.get(&n).filter(|v| !v.is_empty()).cloned())
            };
            if let Some(pre) = nonempty(&self.pre, pre) {
                for p in &mut pieces {
                    if let Some((a, _)) = self.find_tag(p, 0) {
                        p.insert_str(a, &pre);
                    }
                }
            }
            if let Some(post) = nonempty(&self.post, post) {
                for p in &mut pieces {
                    let mut from = 0;
                    while let Some((_, b)) = self.find_tag(p, from) {
                        p.insert_str(b, &post);
                        from = b + post.len();
                    }
                }
            }
            if let Some(inter) = nonempty(&self.inter, inter) {
                for p in pieces.iter_mut().filter(|p| p.is_empty()) {
                    p.clone_from(&inter);
                }
            }
            let mut again = false;
            let too_long =
                || format!("replacing its tags makes the pattern longer than {MAX_EXPANDED} bytes");
            let mut total: usize = pieces.iter().map(String::len).sum();
            if total > MAX_EXPANDED {
                return Err(too_long());
            }
            for p in &mut pieces {
                let Some((a, b)) = self.find_tag(p, 0) else {
                    continue;
                };
                let name = &p[a + self.start.len()..b - self.end.len()];
                if let Some(value) = self.tags.get(name).filter(|v| !v.is_empty()) {
                    let tag = format!("{}{name}{}", self.start, self.end);
                    // Counted before it is built: a piece may hold the tag many times.
                    let grown = p.matches(&tag).count() * value.len().saturating_sub(tag.len());
                    total = total.saturating_add(grown);
                    if total > MAX_EXPANDED {
                        return Err(too_long());
                    }
                    *p = p.replace(&tag, value);
                    again |= has_tag(value);
                }
            }
            re = pieces.concat();
            if !again {
                break;
            }
        }
        Ok(re)
    }

    /// Removes the first `<KIND NAME>` and returns NAME.
    fn take_modifier(&self, re: &mut String, kind: &str) -> Option<String> {
        let open = format!("{}{kind} ", self.start);
        let a = re.find(&open)?;
        let from = a + open.len();
        let len = re[from..].get(1..)?.find(&self.end)? + 1;
        let name = re[from..from + len].to_string();
        re.replace_range(a..from + len + self.end.len(), "");
        Some(name)
    }

    /// The first `START.+?END` at or after `from`, as (its start, its end).
    fn find_tag(&self, s: &str, from: usize) -> Option<(usize, usize)> {
        let a = from + s.get(from..)?.find(&self.start)?;
        let inner = a + self.start.len();
        // `.+?`: at least one character, and not across a line end.
        let first = s[inner..].chars().next().filter(|&c| c != '\n')?;
        let search = inner + first.len_utf8();
        let b = search + s[search..].find(&self.end)?;
        (!s[inner..b].contains('\n')).then_some((a, b + self.end.len()))
    }
}

/// Whether a text holds something shaped like a tag (`<[^>]+>`).
fn has_tag(s: &str) -> bool {
    s.match_indices('<')
        .any(|(i, _)| s[i + 1..].find('>').is_some_and(|j| j > 0))
}

/// Perl's `split(/(<[^<>]+>)/, $re)`: the text between tags and the tags themselves, with an
/// empty piece between two adjacent tags and before a tag that opens the text, and no empty
/// pieces at the end.
fn split_tags(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut last = 0;
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<'
            && let Some(len) = bytes[i + 1..].iter().position(|&b| b == b'<' || b == b'>')
            && bytes[i + 1 + len] == b'>'
            && len > 0
        {
            out.push(s[last..i].to_string());
            out.push(s[i..i + len + 2].to_string());
            i += len + 2;
            last = i;
            continue;
        }
        i += 1;
    }
    out.push(s[last..].to_string());
    while out.last().is_some_and(|p| p.is_empty()) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock() -> ReplaceTags {
        let mut r = ReplaceTags::default();
        for (k, v) in [
            ("A", "[a4]"),
            ("B", "[b8]"),
            ("C", "[c(]"),
            ("NEST", "x<A>y"),
        ] {
            r.tags.insert(k.into(), v.into());
        }
        r.inter.insert("W1".into(), r"\W?".into());
        r.post.insert("P2".into(), "{1,2}".into());
        r.pre.insert("L".into(), r"\b".into());
        r
    }

    #[test]
    fn tags_modifiers_and_nesting_expand_as_spamassassin_does() {
        let r = stock();
        assert_eq!(r.expand("<A><B>c").unwrap(), "[a4][b8]c");
        assert_eq!(r.expand("x<A>y<C>").unwrap(), "x[a4]y[c(]");
        // Inter goes between adjacent tags, and (SpamAssassin's split) before a first tag.
        assert_eq!(
            r.expand("<inter W1><A><B><C>").unwrap(),
            r"\W?[a4]\W?[b8]\W?[c(]"
        );
        assert_eq!(r.expand("z<inter W1><A><B>").unwrap(), r"z[a4]\W?[b8]");
        assert_eq!(
            r.expand("<post P2>(?!ab)<A><B>").unwrap(),
            "(?!ab)[a4]{1,2}[b8]{1,2}"
        );
        assert_eq!(r.expand("<pre L>q<A>").unwrap(), r"q\b[a4]");
        // A tag whose value holds a tag is expanded in a later pass.
        assert_eq!(r.expand("<NEST>").unwrap(), "x[a4]y");
        // Unknown tags and other angle brackets stay as written.
        assert_eq!(r.expand("<UNKNOWN><A>").unwrap(), "<UNKNOWN>[a4]");
        assert_eq!(r.expand(r"<a href=x>\s*<A>").unwrap(), r"<a href=x>\s*[a4]");
        assert_eq!(r.expand("a < b > c").unwrap(), "a < b > c");
    }

    #[test]
    fn other_delimiters_and_runaway_tags() {
        let mut r = stock();
        r.start = "{{".into();
        r.end = "}}".into();
        // The split still looks for `<...>`, as SpamAssassin's does: the text stays one
        // piece, and one tag is replaced per piece and pass.
        assert_eq!(r.expand("{{A}}x{{B}}").unwrap(), "[a4]x{{B}}");
        assert_eq!(r.expand("{{A}}x{{A}}").unwrap(), "[a4]x[a4]");
        let mut r = stock();
        r.tags.insert("LOOP".into(), "<LOOP><LOOP>".into());
        // Five more passes at most: 2^6 copies, left as they are.
        assert_eq!(r.expand("<LOOP>").unwrap(), "<LOOP>".repeat(64));
        r.tags
            .insert("BIG".into(), format!("{}<BIG><BIG>", "x".repeat(40_000)));
        assert!(r.expand("<BIG>").is_err());
        // Refused before it is built: 20,000 tags of 20 KB each would be 400 MB.
        r.tags.insert("W".into(), "y".repeat(20_000));
        let start = std::time::Instant::now();
        assert!(r.expand(&"<W>".repeat(20_000)).is_err());
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn split_is_perls() {
        assert_eq!(split_tags("<A><B>"), ["", "<A>", "", "<B>"]);
        assert_eq!(split_tags("x<A>y"), ["x", "<A>", "y"]);
        assert_eq!(split_tags("<<A>>"), ["<", "<A>", ">"]);
        assert_eq!(split_tags(""), Vec::<String>::new());
    }
}
