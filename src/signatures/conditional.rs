//! SpamAssassin's conditional blocks (`if EXPR`, `ifplugin NAME`, `else`, `endif`): which
//! lines of a rule file take effect.
//!
//! SpamAssassin decides with the plugins it has loaded and the features its version has. Rule
//! sets are written for that: `ifplugin X` around the rules plugin X runs, `if
//! !plugin(X)` around a plain fallback for setups without it, `if (version >= 3.004002)`
//! around what needs a recent release. We answer as SpamAssassin 4.0.1 with its stock plugins
//! loaded (the `loadplugin` lines of Debian's `/etc/spamassassin/*.pre`) would, plus whatever
//! `loadplugin`/`tryplugin` lines the rule files add: then the same branches take effect and
//! the same rules exist. A plugin's eval rules that we do not run still exist as names (metas
//! use them) and never fire; see DESIGN.md.

use std::collections::BTreeSet;

/// The SpamAssassin version we answer `version` with: 4.0.1, in its own notation.
pub const VERSION: f64 = 4.000001;

/// Plugins SpamAssassin 4.0.1 loads with its stock `.pre` files (Debian's
/// `/etc/spamassassin/v*.pre` and `init.pre`), without the `Mail::SpamAssassin::Plugin::`
/// prefix.
const STOCK_PLUGINS: [&str; 28] = [
    "URIDNSBL",
    "SPF",
    "Pyzor",
    "Razor2",
    "SpamCop",
    "AutoLearnThreshold",
    "WelcomeListSubject",
    "MIMEHeader",
    "ReplaceTags",
    "DKIM",
    "Check",
    "HTTPSMismatch",
    "URIDetail",
    "Bayes",
    "BodyEval",
    "DNSEval",
    "HTMLEval",
    "HeaderEval",
    "MIMEEval",
    "RelayEval",
    "URIEval",
    "WLBLEval",
    "VBounce",
    "ImageInfo",
    "FreeMail",
    "AskDNS",
    "HashBL",
    "DMARC",
];

/// What `can(Mail::SpamAssassin::Conf::NAME)` finds in SpamAssassin 4.0.1.
const CONF_FEATURES: [&str; 26] = [
    "feature_originating_ip_headers",
    "feature_dns_local_ports_permit_avoid",
    "feature_bayes_auto_learn_on_error",
    "feature_uri_host_listed",
    "feature_yesno_takes_args",
    "feature_bug6558_free",
    "feature_edns",
    "feature_dns_query_restriction",
    "feature_registryboundaries",
    "feature_geodb",
    "feature_dns_block_rule",
    "feature_compile_regexp",
    "feature_meta_rules_matching",
    "feature_subjprefix",
    "feature_bayes_stopwords",
    "feature_get_host",
    "feature_blocklist_welcomelist",
    "feature_welcomelist_blocklist",
    "feature_header_address_parser",
    "feature_local_tests_only",
    "feature_header_first_last",
    "feature_header_match_many",
    "feature_capture_rules",
    "has_tflags_nosubject",
    "has_tflags_nolog",
    "perl_min_version_5010000",
];

/// What `can(Mail::SpamAssassin::Plugin::P::NAME)` finds in SpamAssassin 4.0.1's plugins,
/// as (plugin, function); it holds only while the plugin is loaded.
const PLUGIN_FEATURES: [(&str, &str); 21] = [
    ("BodyEval", "has_check_body_length"),
    ("BodyEval", "has_plaintext_body_sig_ratio"),
    ("MIMEEval", "has_check_for_ascii_text_illegal"),
    ("MIMEEval", "has_check_abundant_unicode_ratio"),
    ("MIMEEval", "has_check_qp_ratio"),
    ("DKIM", "has_arc"),
    ("SPF", "has_check_for_spf_errors"),
    ("SPF", "has_check_spf_skipped_noenvfrom"),
    ("URIDNSBL", "has_tflags_domains_only"),
    ("URIDNSBL", "has_subtest_for_ranges"),
    ("URIDNSBL", "has_uridnsbl_for_a"),
    ("URIDNSBL", "has_uridnsbl_a_ns"),
    ("URIDNSBL", "has_tflags_notrim"),
    ("URIDNSBL", "has_uridnsbl_skip_mailto"),
    ("DecodeShortURLs", "has_short_url"),
    ("DecodeShortURLs", "has_autoclean"),
    ("DecodeShortURLs", "has_short_url_code"),
    ("DecodeShortURLs", "has_user_agent"),
    ("DecodeShortURLs", "has_get"),
    ("DecodeShortURLs", "has_clear"),
    ("DecodeShortURLs", "has_short_url_redir"),
];

const PLUGIN_PREFIX: &str = "Mail::SpamAssassin::Plugin::";

/// The plugins taken as loaded: SpamAssassin's stock ones and those rule files load.
#[derive(Debug, Clone)]
pub struct Plugins {
    loaded: BTreeSet<String>,
}

impl Default for Plugins {
    fn default() -> Plugins {
        Plugins {
            loaded: STOCK_PLUGINS.iter().map(|p| p.to_string()).collect(),
        }
    }
}

impl Plugins {
    /// `loadplugin NAME [file]`: later `ifplugin NAME` blocks take effect.
    pub fn load(&mut self, name: &str) {
        self.loaded.insert(short(name).to_string());
    }

    pub fn has(&self, name: &str) -> bool {
        self.loaded.contains(short(name))
    }

    fn can(&self, name: &str) -> bool {
        if let Some(f) = name.strip_prefix("Mail::SpamAssassin::Conf::") {
            return CONF_FEATURES.contains(&f);
        }
        let Some((plugin, f)) = short(name).rsplit_once("::") else {
            return false;
        };
        self.has(plugin) && PLUGIN_FEATURES.contains(&(plugin, f))
    }

    /// The value of an `if` expression, or what in it cannot be read.
    pub fn eval(&self, expr: &str) -> Result<bool, String> {
        let tokens = tokens(expr)?;
        let mut p = Parser {
            tokens: &tokens,
            at: 0,
            plugins: self,
            depth: 0,
        };
        let v = p.or()?;
        match p.tokens.get(p.at) {
            None => Ok(v != 0.0),
            Some(t) => Err(format!("unexpected {t:?}")),
        }
    }
}

fn short(name: &str) -> &str {
    // Old names SpamAssassin 4 still answers to.
    match name.strip_prefix(PLUGIN_PREFIX).unwrap_or(name) {
        "Dmarc" => "DMARC",
        "WhiteListSubject" => "WelcomeListSubject",
        other => other,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    /// `plugin(...)`, `can(...)`, `has(...)` with the name inside.
    Call(String, String),
    Word(String),
    Op(&'static str),
}

const OPS: [&str; 12] = [
    "&&", "||", ">=", "<=", "==", "!=", ">", "<", "!", "(", ")", "-",
];

fn tokens(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Token::Op(op));
            rest = &rest[op.len()..];
        } else if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
                .unwrap_or(rest.len());
            let n: f64 = rest[..end]
                .replace('_', "")
                .parse()
                .map_err(|_| format!("bad number {:?}", &rest[..end]))?;
            out.push(Token::Num(n));
            rest = &rest[end..];
        } else if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            rest = rest[end..].trim_start();
            if let Some(inner) = rest.strip_prefix('(')
                && matches!(word, "plugin" | "can" | "has")
            {
                let close = inner
                    .find(')')
                    .ok_or_else(|| format!("{word}( without its closing ')'"))?;
                out.push(Token::Call(
                    word.to_string(),
                    inner[..close].trim().to_string(),
                ));
                rest = &inner[close + 1..];
            } else {
                out.push(Token::Word(word.to_string()));
            }
        } else {
            return Err(format!(
                "cannot read {:?}",
                rest.chars().take(16).collect::<String>()
            ));
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

/// Perl's precedence for what conditions use: `||`/`or` below `&&`/`and` below comparisons
/// below `!`. Values are numbers, truth being non-zero.
struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    plugins: &'a Plugins,
    /// Open parentheses and `!`s: bounded, a condition is one line a person writes.
    depth: usize,
}

/// Deepest nesting of parentheses and negations in one condition, and of blocks in a file.
pub const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn next_is(&self, op: &str) -> bool {
        match self.tokens.get(self.at) {
            Some(Token::Op(o)) => *o == op,
            Some(Token::Word(w)) => w == op,
            _ => false,
        }
    }

    fn or(&mut self) -> Result<f64, String> {
        let mut v = self.and()?;
        while self.next_is("||") || self.next_is("or") {
            self.at += 1;
            let r = self.and()?;
            v = f64::from(u8::from(v != 0.0 || r != 0.0));
        }
        Ok(v)
    }

    fn and(&mut self) -> Result<f64, String> {
        let mut v = self.compare()?;
        while self.next_is("&&") || self.next_is("and") {
            self.at += 1;
            let r = self.compare()?;
            v = f64::from(u8::from(v != 0.0 && r != 0.0));
        }
        Ok(v)
    }

    fn compare(&mut self) -> Result<f64, String> {
        let l = self.unary()?;
        let Some(Token::Op(op)) = self.tokens.get(self.at) else {
            return Ok(l);
        };
        let op = *op;
        if !matches!(op, ">=" | "<=" | "==" | "!=" | ">" | "<") {
            return Ok(l);
        }
        self.at += 1;
        let r = self.unary()?;
        let v = match op {
            ">=" => l >= r,
            "<=" => l <= r,
            "==" => l == r,
            "!=" => l != r,
            ">" => l > r,
            _ => l < r,
        };
        Ok(f64::from(u8::from(v)))
    }

    fn unary(&mut self) -> Result<f64, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} deep"));
        }
        let v = self.unary_inner();
        self.depth -= 1;
        v
    }

    fn unary_inner(&mut self) -> Result<f64, String> {
        let t = self
            .tokens
            .get(self.at)
            .ok_or("the condition ends early")?
            .clone();
        self.at += 1;
        match t {
            Token::Op("!") => Ok(f64::from(u8::from(self.unary()? == 0.0))),
            Token::Op("-") => Ok(-self.unary()?),
            Token::Op("(") => {
                let v = self.or()?;
                if !self.next_is(")") {
                    return Err("'(' without its closing ')'".into());
                }
                self.at += 1;
                Ok(v)
            }
            Token::Num(n) => Ok(n),
            Token::Call(f, name) => Ok(f64::from(u8::from(match f.as_str() {
                "plugin" => self.plugins.has(&name),
                _ => self.plugins.can(&name),
            }))),
            Token::Word(w) => match w.as_str() {
                "version" => Ok(VERSION),
                // Perl 5.36, Debian 12's.
                "perl_version" => Ok(5.036),
                // Only what runs here runs: SpamAssassin's network tests never do.
                "local_tests_only" => Ok(1.0),
                "true" => Ok(1.0),
                "not" => Ok(f64::from(u8::from(self.unary()? == 0.0))),
                other => Err(format!("unknown word {other:?}")),
            },
            Token::Op(o) => Err(format!("unexpected {o:?}")),
        }
    }
}

/// The nesting of conditional blocks in one file: whether lines take effect here.
#[derive(Debug)]
pub struct Blocks<L> {
    /// Per open block: where it opened, whether its current branch holds, whether an `else`
    /// was seen.
    open: Vec<(L, bool, bool)>,
    /// Open blocks whose branch does not hold (so `active` costs nothing per line).
    failing: usize,
}

impl<L> Default for Blocks<L> {
    fn default() -> Blocks<L> {
        Blocks {
            open: Vec::new(),
            failing: 0,
        }
    }
}

impl<L> Blocks<L> {
    /// Lines take effect only where every open block's branch holds.
    pub fn active(&self) -> bool {
        self.failing == 0
    }

    /// A new block; an error when blocks are nested more than [`MAX_DEPTH`] deep (the block
    /// still opens, so that its `endif` balances, and does not hold).
    pub fn open(&mut self, at: L, holds: bool) -> Result<(), String> {
        let deep = self.open.len() >= MAX_DEPTH;
        let holds = holds && !deep;
        self.failing += usize::from(!holds);
        self.open.push((at, holds, false));
        if deep {
            return Err(format!("blocks nested more than {MAX_DEPTH} deep"));
        }
        Ok(())
    }

    /// `else`: an error text when there is no block to turn, or it was turned already.
    pub fn turn(&mut self) -> Result<(), &'static str> {
        match self.open.last_mut() {
            None => Err("else without if"),
            Some((_, _, true)) => Err("a second else in one if"),
            Some((_, holds, seen)) => {
                if *holds {
                    self.failing += 1;
                } else {
                    self.failing -= 1;
                }
                *holds = !*holds;
                *seen = true;
                Ok(())
            }
        }
    }

    pub fn close(&mut self) -> Result<(), &'static str> {
        let (_, holds, _) = self.open.pop().ok_or("endif without if")?;
        self.failing -= usize::from(!holds);
        Ok(())
    }

    /// Where the blocks left open began.
    pub fn unclosed(self) -> impl Iterator<Item = L> {
        self.open.into_iter().map(|(at, _, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_of_the_stock_rules() {
        let p = Plugins::default();
        let yes = [
            "(version >= 3.004002)",
            "(version >= 4.000000)",
            "can(Mail::SpamAssassin::Conf::feature_bug6558_free)",
            "!(!plugin(Mail::SpamAssassin::Plugin::DKIM))",
            "can(Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length)",
            "plugin(Mail::SpamAssassin::Plugin::ReplaceTags) && version >= 3.3",
            "perl_version >= 5.010",
            "!plugin(Mail::SpamAssassin::Plugin::TextCat) or 0",
        ];
        for c in yes {
            assert_eq!(p.eval(c), Ok(true), "{c}");
        }
        let no = [
            "!plugin(Mail::SpamAssassin::Plugin::ReplaceTags)",
            "!((version >= 3.004000))",
            "(version >= 4.000002)",
            "!can(Mail::SpamAssassin::Conf::feature_welcomelist_blocklist)",
            "can(Mail::SpamAssassin::Conf::compat_welcomelist_blocklist)",
            "plugin(Mail::SpamAssassin::Plugin::TextCat)",
            "can(Mail::SpamAssassin::Plugin::DecodeShortURLs::has_get)",
            "1 && 0",
        ];
        for c in no {
            assert_eq!(p.eval(c), Ok(false), "{c}");
        }
        for bad in ["version >=", "(1", "frobnicate", "plugin(X", "1 $ 2"] {
            assert!(p.eval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loading_a_plugin_turns_its_blocks_on() {
        let mut p = Plugins::default();
        assert!(!p.has("Mail::SpamAssassin::Plugin::DecodeShortURLs"));
        p.load("Mail::SpamAssassin::Plugin::DecodeShortURLs");
        assert!(p.has("DecodeShortURLs"));
        assert_eq!(
            p.eval("can(Mail::SpamAssassin::Plugin::DecodeShortURLs::has_get)"),
            Ok(true)
        );
    }

    #[test]
    fn nested_blocks_and_else() {
        let mut b: Blocks<u32> = Blocks::default();
        assert!(b.active());
        b.open(1, true).unwrap();
        b.open(2, false).unwrap();
        assert!(!b.active());
        assert_eq!(b.turn(), Ok(()));
        assert!(b.active());
        assert_eq!(b.turn(), Err("a second else in one if"));
        assert_eq!(b.close(), Ok(()));
        assert_eq!(b.turn(), Ok(()));
        assert!(!b.active());
        b.open(3, true).unwrap();
        assert!(!b.active(), "an inner true block inside a false one");
        assert_eq!(b.close(), Ok(()));
        assert_eq!(b.close(), Ok(()));
        assert_eq!(b.close(), Err("endif without if"));
        assert_eq!(b.turn(), Err("else without if"));
        b.open(4, true).unwrap();
        assert_eq!(b.unclosed().collect::<Vec<_>>(), [4]);
        // Too deep: refused, but balanced by its endif.
        let mut b: Blocks<usize> = Blocks::default();
        for i in 0..MAX_DEPTH {
            b.open(i, true).unwrap();
        }
        assert!(b.open(MAX_DEPTH, true).is_err());
        assert!(!b.active());
        assert_eq!(b.close(), Ok(()));
        assert!(b.active());
        let p = Plugins::default();
        assert!(p.eval(&"(".repeat(200_000)).is_err());
        assert!(p.eval(&format!("{}1", "!".repeat(1_000_000))).is_err());
        assert_eq!(p.eval(&format!("{}1", "!".repeat(10))), Ok(true));
        assert!(p.has("Mail::SpamAssassin::Plugin::Dmarc"));
    }
}
