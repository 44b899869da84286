//! Rule files to rule definitions: SpamAssassin's line syntax plus our `phrases` lists.
//!
//! Parsing never stops at the first problem: every bad line is reported with its file, line
//! and column, the rest load (a broken rule is skipped, not the file). See rules/README.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::conditional::{Blocks, Plugins};
use super::definition::{parse_test, phrase_list_of, split_word, strip_comment};
use super::evals::FreemailDomains;
use super::replace::ReplaceTags;
use super::rules::{Location, Problem, RuleDef, Severity, Test};

/// Longest rule file read; a rule file is text that people edit, not data.
pub const MAX_RULE_FILE: u64 = 16 * 1024 * 1024;

/// Most rules in one rule set. SpamAssassin's whole stock set is about 3,000 rules, and a
/// compiled regex rule costs about 20 KiB: 200,000 of them took 7.3 GB and a minute to
/// compile, 20,000 took 400 MB. Large word lists belong in one `phrases` rule, which has no
/// such cost per entry.
pub const MAX_RULES: usize = 10_000;

/// Counts of lines that are accepted but not run, for the compatibility report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub files: usize,
    pub eval_rules: usize,
    pub plugin_rules: usize,
    pub ignored_directives: BTreeMap<String, usize>,
}

/// One rule file as it went into a rule set, so that a reload can fall back to it.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: Arc<str>,
    /// Rules this file defines (a test line of its own).
    pub rules: usize,
}

/// A file whose new version was refused on reload, its previous version kept in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub path: PathBuf,
    /// Why the new version was refused.
    pub why: String,
    /// Rules the previous version defines.
    pub rules: usize,
}

/// The result of reading rule files: definitions in the order first seen, and problems.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub rules: Vec<RuleDef>,
    index: BTreeMap<String, usize>,
    pub problems: Vec<Problem>,
    pub stats: Stats,
    /// The files read, in order.
    pub sources: Vec<Source>,
    /// Files whose previous version stands in for a new one that was refused.
    pub kept: Vec<Kept>,
    /// Rules left out past [`MAX_RULES`].
    pub over_limit: usize,
    /// Phrase list files the rules name (read or not).
    pub list_files: Vec<PathBuf>,
    /// The SpamAssassin plugins conditions see as loaded.
    pub plugins: Plugins,
    /// ReplaceTags' fragments, and the rules to write them into (with where each was
    /// named): done once every file is read, since a rule and its tags may be anywhere.
    pub replace: ReplaceTags,
    pub replace_rules: Vec<(String, Location)>,
    /// The FreeMail plugin's `freemail_domains` and `freemail_welcomelist`.
    pub freemail: FreemailDomains,
}

/// SpamAssassin settings that say nothing to our engine (lists, report templates, plugin
/// options): accepted and counted, so SpamAssassin's own files load.
const IGNORED: [&str; 29] = [
    "asn_lookup",
    "asn_lookup_ipv6",
    "priority",
    "lang",
    "test",
    "require_version",
    "version_tag",
    "report",
    "report_safe",
    "report_contact",
    "unsafe_report",
    "add_header",
    "remove_header",
    "required_score",
    "ok_locales",
    "ok_languages",
    "redirector_pattern",
    "enlist_uri_host",
    "enlist_addrlist",
    "reuse",
    "adsp_override",
    "originating_ip_headers",
    "dns_block_rule",
    "dns_local_ports_avoid",
    "fns_check",
    "fns_ignore_headers",
    "fns_ignore_dkim",
    "url_shortener",
    "url_shortener_get",
];

/// Prefixes of further SpamAssassin settings of the same sort.
const IGNORED_PREFIXES: [&str; 10] = [
    "util_rb_",
    "uridnsbl_skip",
    "def_whitelist_",
    "def_welcomelist_",
    "whitelist_",
    "welcomelist_",
    "blacklist_",
    "blocklist_",
    "bayes_",
    "clear_",
];

/// Directives that define a rule run by a SpamAssassin plugin (DNS lists, MIME part headers):
/// the name exists (metas may use it) but the rule never fires here.
const PLUGIN_RULES: [&str; 5] = ["askdns", "urirhssub", "uridnssub", "urirhsbl", "uridnsbl"];

fn ignored(directive: &str) -> bool {
    IGNORED.contains(&directive) || IGNORED_PREFIXES.iter().any(|p| directive.starts_with(p))
}

/// One directive line: where it starts, and its arguments.
struct Line<'a> {
    at: Location,
    /// The line, comment removed.
    text: &'a str,
    /// What follows the directive.
    rest: &'a str,
    /// The rule file, for the `file:` lists it names.
    file: &'a Path,
}

impl Line<'_> {
    /// Column (in characters) of a slice of the line.
    fn column_of(&self, s: &str) -> usize {
        let offset = (s.as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize);
        crate::problem::column_of(self.text, offset)
    }

    fn at_column_of(&self, s: &str) -> Location {
        Location {
            column: self.column_of(s),
            ..self.at.clone()
        }
    }
}

impl Parsed {
    pub fn get(&self, name: &str) -> Option<&RuleDef> {
        self.index.get(name).map(|&i| &self.rules[i])
    }

    /// The definition of `name`, created on first mention; None past [`MAX_RULES`].
    fn entry(&mut self, name: &str, at: &Location) -> Option<&mut RuleDef> {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None if self.rules.len() >= MAX_RULES => {
                if self.over_limit == 0 {
                    let msg = format!(
                        "{name}: more than {MAX_RULES} rules; this rule and every later new one \
                         are left out (put long word lists in one phrases rule)"
                    );
                    self.problem(at.clone(), Severity::Error, msg);
                }
                self.over_limit += 1;
                return None;
            }
            None => {
                self.rules.push(RuleDef {
                    name: name.to_string(),
                    test: None,
                    score: None,
                    describe: None,
                    multiple: false,
                    maxhits: None,
                    nice: false,
                    first_seen: at.clone(),
                });
                self.index.insert(name.to_string(), self.rules.len() - 1);
                self.rules.len() - 1
            }
        };
        Some(&mut self.rules[i])
    }

    fn problem(&mut self, at: Location, severity: Severity, message: impl Into<String>) {
        self.problems.push(at.problem(severity, message));
    }

    /// Reads files and directories (their `*.cf` files in name order).
    pub fn load(paths: &[PathBuf]) -> Parsed {
        Parsed::load_keeping(paths, &[])
    }

    /// Reads rule files as [`Parsed::load`] does, but where a file that had rules in
    /// `previous` now cannot be read, is empty, or yields errors and no rule at all (a failed
    /// deploy, an editor's half-written save, garbage), its previous text is used instead and
    /// the refusal is recorded in `kept`. A file that is gone is gone: deleting a file removes
    /// its rules.
    pub fn load_keeping(paths: &[PathBuf], previous: &[Source]) -> Parsed {
        let mut p = Parsed::default();
        for file in rule_files(paths, &mut p) {
            let old = previous.iter().find(|s| s.path == file && s.rules > 0);
            let text = match crate::files::read_text(&file, MAX_RULE_FILE) {
                Ok(text) => text,
                Err(e) => {
                    let why = format!("cannot read rule file: {e}");
                    match old {
                        Some(old) => p.keep(old, why),
                        None => p.problem(file_start(&file), Severity::Error, why),
                    }
                    continue;
                }
            };
            if let Some(old) = old {
                let why = if text.trim().is_empty() {
                    Some("the file is empty (delete it to remove its rules)".to_string())
                } else {
                    let mut alone = Parsed::default();
                    alone.parse_text(&file, &text);
                    let errors = alone.errors();
                    (errors > 0 && alone.defined() == 0).then(|| {
                        p.problems.extend(alone.problems);
                        format!("{errors} error(s) and no rule in the new version")
                    })
                };
                if let Some(why) = why {
                    p.keep(old, why);
                    continue;
                }
            }
            p.add_file(&file, Arc::from(text));
        }
        p
    }

    fn keep(&mut self, old: &Source, why: String) {
        self.kept.push(Kept {
            path: old.path.clone(),
            why,
            rules: old.rules,
        });
        self.add_file(&old.path, old.text.clone());
    }

    fn add_file(&mut self, path: &Path, text: Arc<str>) {
        let before = self.defined();
        self.stats.files += 1;
        self.parse_text(path, &text);
        self.sources.push(Source {
            path: path.to_path_buf(),
            rules: self.defined() - before,
            text,
        });
    }

    /// Rules with a test of their own.
    fn defined(&self) -> usize {
        self.rules.iter().filter(|r| r.test.is_some()).count()
    }

    fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }

    /// Parses the text of one file; `path` names it in problems and anchors `file:` lists.
    pub fn parse_text(&mut self, path: &Path, text: &str) {
        let file: Arc<Path> = Arc::from(path);
        let mut blocks: Blocks<Location> = Blocks::default();
        for (n, raw_line) in text.lines().enumerate() {
            let line = strip_comment(raw_line);
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let (directive, rest) = split_word(trimmed);
            let l = Line {
                at: Location {
                    file: file.clone(),
                    line: n + 1,
                    column: indent + 1,
                },
                text: line,
                rest,
                file: path,
            };
            match directive {
                "if" => {
                    let holds = match self.plugins.eval(rest) {
                        Ok(holds) => holds,
                        Err(why) => {
                            let msg = format!("cannot read the condition {rest:?}: {why}");
                            self.problem(l.at_column_of(rest), Severity::Error, msg);
                            false
                        }
                    };
                    let at = l.at.clone();
                    if let Err(e) = blocks.open(l.at, holds) {
                        self.problem(at, Severity::Error, e);
                    }
                }
                "ifplugin" => {
                    let holds = self.plugins.has(rest.trim());
                    let at = l.at.clone();
                    if let Err(e) = blocks.open(l.at, holds) {
                        self.problem(at, Severity::Error, e);
                    }
                }
                "else" => {
                    if let Err(e) = blocks.turn() {
                        self.problem(l.at, Severity::Error, e);
                    }
                }
                "endif" => {
                    if let Err(e) = blocks.close() {
                        self.problem(l.at, Severity::Error, e);
                    }
                }
                // What a branch that does not hold says is not read, as in SpamAssassin.
                _ if !blocks.active() => {}
                "header" | "body" | "rawbody" | "full" | "uri" | "meta" | "phrases"
                | "mimeheader" => self.test_line(directive, &l),
                "score" => self.score_line(&l),
                "describe" => self.describe_line(&l),
                "tflags" => self.tflags_line(&l),
                "replace_start" | "replace_end" | "replace_tag" | "replace_pre"
                | "replace_inter" | "replace_post" | "replace_rules" => {
                    self.replace_line(directive, &l)
                }
                "freemail_domains" => {
                    for bad in self.freemail.add_domains(rest) {
                        let msg = format!("freemail_domains: invalid domain {bad:?}");
                        self.problem(l.at_column_of(rest), Severity::Warning, msg);
                    }
                }
                "freemail_welcomelist" | "freemail_whitelist" => self.freemail.add_welcome(rest),
                "loadplugin" | "tryplugin" => {
                    let (plugin, _) = split_word(rest);
                    self.plugins.load(plugin);
                    self.count_ignored(directive);
                }
                plugin if PLUGIN_RULES.contains(&plugin) => self.plugin_line(plugin, &l),
                other if ignored(other) => self.count_ignored(other),
                other => {
                    let msg = format!("unknown directive {other:?}");
                    self.problem(l.at, Severity::Error, msg);
                }
            }
        }
        for at in blocks.unclosed() {
            self.problem(at, Severity::Error, "if without endif");
        }
    }

    /// ReplaceTags' settings: `replace_tag NAME FRAGMENT` (and `_pre`, `_inter`, `_post`),
    /// `replace_start`/`replace_end` DELIMITER, `replace_rules NAME...`.
    fn replace_line(&mut self, directive: &str, l: &Line<'_>) {
        let rest = l.rest.trim();
        if directive == "replace_rules" {
            for name in rest.split_whitespace() {
                if self.check_name(name, &l.at, l.column_of(name)) {
                    self.replace_rules
                        .push((name.to_string(), l.at_column_of(name)));
                }
            }
            return;
        }
        if let Some(kind) = directive.strip_prefix("replace_")
            && matches!(kind, "start" | "end")
        {
            if rest.is_empty() || rest.contains(char::is_whitespace) {
                let msg = format!("{directive} needs one delimiter, found {rest:?}");
                self.problem(l.at_column_of(rest), Severity::Error, msg);
            } else if kind == "start" {
                self.replace.start = rest.to_string();
            } else {
                self.replace.end = rest.to_string();
            }
            return;
        }
        let (name, value) = split_word(rest);
        let value = value.trim();
        if name.is_empty() || value.is_empty() {
            let msg = format!("{directive} needs a name and a pattern fragment");
            self.problem(l.at_column_of(rest), Severity::Error, msg);
            return;
        }
        let map = match directive {
            "replace_tag" => &mut self.replace.tags,
            "replace_pre" => &mut self.replace.pre,
            "replace_inter" => &mut self.replace.inter,
            _ => &mut self.replace.post,
        };
        map.insert(name.to_string(), value.to_string());
    }

    /// Writes ReplaceTags' fragments into the patterns of the rules `replace_rules` names.
    pub fn replace_tags(&mut self) {
        for (name, at) in std::mem::take(&mut self.replace_rules) {
            let Some(&i) = self.index.get(&name) else {
                let msg = format!("replace_rules names {name}, which is not defined");
                self.problem(at, Severity::Warning, msg);
                continue;
            };
            let Some((Test::Regex { pattern, .. }, def_at)) = &mut self.rules[i].test else {
                let msg = format!("replace_rules names {name}, which has no pattern");
                self.problem(at, Severity::Warning, msg);
                continue;
            };
            match self.replace.expand(&pattern.source) {
                Ok(expanded) => pattern.source = expanded,
                Err(why) => {
                    let def_at = def_at.clone();
                    self.problem(def_at, Severity::Error, format!("{name}: {why}"));
                }
            }
        }
    }

    fn count_ignored(&mut self, directive: &str) {
        *self
            .stats
            .ignored_directives
            .entry(directive.to_string())
            .or_default() += 1;
    }

    /// A test for `name` defined again: as in SpamAssassin, the later definition replaces
    /// the earlier (a site's `local.cf` redefines stock rules so); within one file that is
    /// more likely a slip, and said so.
    fn define(&mut self, name: &str, test: Test, at: Location) {
        let Some(entry) = self.entry(name, &at) else {
            return;
        };
        // A plugin directive names a rule its eval line (`urirhssub X ...` then `body X
        // eval:check_uridnsbl('X')`) defines: the pair is one rule.
        if let Test::Plugin(_) = test
            && entry.test.is_some()
        {
            return;
        }
        let before = entry.test.replace((test, at.clone()));
        if let Some((prev_test, prev)) = before
            && prev.file == at.file
            && !matches!(prev_test, Test::Plugin(_))
        {
            let msg =
                format!("{name} is defined again (first at {prev}); the later definition is used");
            self.problem(at, Severity::Note, msg);
        }
    }

    /// The rule name that starts a line's arguments, and the rest; None (with a problem) when
    /// the name is not one.
    fn name_of<'l>(&mut self, l: &Line<'l>) -> Option<(&'l str, &'l str)> {
        let (name, rest) = split_word(l.rest);
        self.check_name(name, &l.at, l.column_of(name))
            .then_some((name, rest))
    }

    /// `header`, `body`, `rawbody`, `full`, `uri`, `meta` or `phrases NAME DEFINITION`.
    fn test_line(&mut self, directive: &str, l: &Line<'_>) {
        let Some((name, def)) = self.name_of(l) else {
            return;
        };
        let def_at = l.at_column_of(def);
        if directive == "phrases"
            && let Some(list) = phrase_list_of(def, l.file)
        {
            self.list_files.push(list);
        }
        match parse_test(directive, def, l.file) {
            Ok(test) => {
                if matches!(test, Test::Eval(_)) {
                    self.stats.eval_rules += 1;
                }
                self.define(name, test, def_at);
            }
            Err(msg) => self.problem(def_at, Severity::Error, format!("{name}: {msg}")),
        }
    }

    /// `score NAME S` or SpamAssassin's `score NAME S1 S2 S3 S4`.
    fn score_line(&mut self, l: &Line<'_>) {
        let Some((name, value)) = self.name_of(l) else {
            return;
        };
        let scores: Vec<&str> = value.split_whitespace().collect();
        // SpamAssassin's four scores are for (no bayes, no network), (no bayes, network),
        // (bayes, no network), (bayes, network). Its network rules are eval rules, which do
        // not run here (our DNS lists are stages of their own), nor does its Bayes: the
        // first set is the one its scores were tuned for on the rules that do run.
        let chosen = match scores.len() {
            1 | 4 => Some(scores[0]),
            _ => None,
        };
        let score_at = l.at_column_of(value);
        match chosen.map(|s| s.parse::<f64>()) {
            Some(Ok(x)) if x.is_finite() => {
                if let Some(e) = self.entry(name, &l.at) {
                    e.score = Some((x, score_at));
                }
            }
            _ => self.problem(
                score_at,
                Severity::Error,
                format!("{name}: score must be one number or four, found {value:?}"),
            ),
        }
    }

    fn describe_line(&mut self, l: &Line<'_>) {
        if let Some((name, text)) = self.name_of(l)
            && let Some(e) = self.entry(name, &l.at)
        {
            e.describe = Some(text.trim().to_string());
        }
    }

    /// `tflags NAME multiple maxhits=N nice ...`; SpamAssassin's other flags (net, learn,
    /// userconf, noautolearn, publish, a, ...) change nothing here.
    fn tflags_line(&mut self, l: &Line<'_>) {
        let Some((name, flags)) = self.name_of(l) else {
            return;
        };
        for flag in flags.split_whitespace() {
            let Some(e) = self.entry(name, &l.at) else {
                return;
            };
            match flag {
                "multiple" => e.multiple = true,
                "nice" => e.nice = true,
                f if f.starts_with("maxhits=") => match f[8..].parse::<u32>() {
                    Ok(n) if n > 0 => {
                        e.maxhits = Some(n);
                        e.multiple = true;
                    }
                    _ => self.problem(
                        l.at_column_of(flag),
                        Severity::Error,
                        format!("{name}: bad {f}"),
                    ),
                },
                _ => {}
            }
        }
    }

    /// A rule a SpamAssassin plugin defines (`askdns`, `mimeheader`, ...): known, never run.
    fn plugin_line(&mut self, plugin: &str, l: &Line<'_>) {
        let Some((name, _)) = self.name_of(l) else {
            return;
        };
        self.stats.plugin_rules += 1;
        self.define(name, Test::Plugin(plugin.to_string()), l.at.clone());
    }

    fn check_name(&mut self, name: &str, at: &Location, column: usize) -> bool {
        if is_rule_name(name) {
            return true;
        }
        let at = Location {
            column,
            ..at.clone()
        };
        let msg = if name.is_empty() {
            "missing rule name".to_string()
        } else {
            format!("bad rule name {name:?}: use A-Z, 0-9 and _, starting with a letter or __")
        };
        self.problem(at, Severity::Error, msg);
        false
    }
}

fn file_start(path: &Path) -> Location {
    Location {
        file: Arc::from(path),
        line: 0,
        column: 0,
    }
}

/// The files named by the rule paths: every directory's `*.pre` entries first, then files as
/// given and directories' `*.cf` entries, each directory's in name order, as SpamAssassin
/// reads them (`.pre` files load plugins); an entry that is not a regular file is listed
/// too, so that reading it reports it.
pub fn rule_files(paths: &[PathBuf], p: &mut Parsed) -> Vec<PathBuf> {
    // Every directory's `.pre` files come before any `.cf` file, as in SpamAssassin: a
    // `loadplugin` in /etc/spamassassin must count for the stock rules' `ifplugin` blocks.
    let mut pre = Vec::new();
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        match std::fs::read_dir(path) {
            Ok(rd) => {
                let mut files: Vec<(bool, PathBuf)> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter_map(|f| match f.extension()?.to_str()? {
                        "pre" => Some((false, f)),
                        "cf" => Some((true, f)),
                        _ => None,
                    })
                    .collect();
                files.sort();
                for (cf, f) in files {
                    if cf { out.push(f) } else { pre.push(f) }
                }
            }
            Err(e) => p.problem(
                file_start(path),
                Severity::Error,
                format!("cannot read directory: {e}"),
            ),
        }
    }
    pre.extend(out);
    pre
}

/// `A-Z`, `0-9` and `_`, starting with a letter; sub-rules start with `__` and may then
/// start with a digit (SpamAssassin's `__4BYTE_UTF8_WORD`).
pub fn is_rule_name(s: &str) -> bool {
    let (body, sub) = match s.strip_prefix("__") {
        Some(b) => (b, true),
        None => (s, false),
    };
    let mut chars = body.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || (sub && c.is_ascii_digit()))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signatures::definition::parse_pattern;
    use crate::signatures::rules::{HeaderPart, HeaderSel, Target};

    fn parse(text: &str) -> Parsed {
        let mut p = Parsed::default();
        p.parse_text(Path::new("t.cf"), text);
        p
    }

    #[test]
    fn every_kind_parses() {
        let p = parse(
            r#"
# a comment
header   H1  Subject =~ /\bfree\b/i   # trailing comment
header   H2  From:addr !~ m{\@example\.com$}i [if-unset: none]
header   H3  exists:X-Mailer
header   H4  ALL =~ /^X-Foo: \#1/m
body     B1  /click (here|now)/i
rawbody  R1  /<font size=7/
full     F1  /^Received: /m
uri      U1  m!^https?://[^/]+\.top/!i
meta     M1  (H1 && !H3) || B1 + U1 > 1
phrases  P1  body word perhit "free money" "act \"now\""
header   E1  eval:check_for_missing_to_header()
score    H1  1.5
score    B1  2.0 3.0 0 2.5
describe H1  Free in subject
tflags   B1  multiple maxhits=3
if (version >= 3.004)
  loadplugin Mail::SpamAssassin::Plugin::Foo
endif
"#,
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.rules.len(), 11);
        let h2 = p.get("H2").unwrap();
        match &h2.test.as_ref().unwrap().0 {
            Test::Regex {
                target,
                pattern,
                negate,
                if_unset,
            } => {
                assert_eq!(
                    *target,
                    Target::Header(HeaderSel::Named("From".into(), HeaderPart::Addr))
                );
                assert_eq!(pattern.source, r"\@example\.com$");
                assert!(pattern.case_insensitive && *negate);
                assert_eq!(if_unset.as_deref(), Some("none"));
            }
            t => panic!("{t:?}"),
        }
        assert_eq!(p.get("B1").unwrap().score.as_ref().unwrap().0, 2.0);
        assert_eq!(p.get("B1").unwrap().maxhits, Some(3));
        assert!(p.get("B1").unwrap().multiple);
        match &p.get("H4").unwrap().test.as_ref().unwrap().0 {
            Test::Regex { pattern, .. } => assert_eq!(pattern.source, r"^X-Foo: \#1"),
            t => panic!("{t:?}"),
        }
        match &p.get("P1").unwrap().test.as_ref().unwrap().0 {
            Test::Phrases {
                phrases,
                word,
                perhit,
                case,
                ..
            } => {
                assert_eq!(phrases, &["free money", "act \"now\""]);
                assert!(*word && *perhit && !*case);
            }
            t => panic!("{t:?}"),
        }
        assert_eq!(p.stats.eval_rules, 1);
        assert_eq!(p.stats.ignored_directives.get("loadplugin"), Some(&1));
    }

    #[test]
    fn problems_have_file_line_column() {
        let p = parse(
            "body ok /x/\nbodyy X /y/\nbody bad-name /z/\nbody B2 /unclosed\nheader H Subject ~= /x/\nscore B2 high\nbody ok /again/\nmeta M (A && \ntflags ok maxhits=0\nendif\nbody Q /a/q\n",
        );
        let got: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
        let want = [
            "t.cf:2:1: unknown directive \"bodyy\"",
            "t.cf:3:6: bad rule name \"bad-name\"",
            "t.cf:4:9: B2: pattern has no closing '/'",
            "t.cf:5:10: H: expected =~ or !~ after the header name, found \"~=\"",
            "t.cf:6:10: B2: score must be one number or four",
            "t.cf:7:9: note: ok is defined again (first at t.cf:1:9)",
            "t.cf:8:8: M: meta expression ends early",
            "t.cf:9:11: ok: bad maxhits=0",
            "t.cf:10:1: endif without if",
            "t.cf:11:8: Q: unknown pattern modifier 'q'",
        ];
        for w in want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing {w:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn conditions_choose_what_is_read_and_later_definitions_replace() {
        let p = parse(
            "ifplugin Mail::SpamAssassin::Plugin::FreeMail\n\
             header F1 eval:check_freemail_from()\n\
             endif\n\
             ifplugin Mail::SpamAssassin::Plugin::TextCat\n\
             body T1 /never read/\n\
             else\n\
             body T2 /read/\n\
             endif\n\
             if !plugin(Mail::SpamAssassin::Plugin::ReplaceTags)\n\
             body R1 /fallback/\n\
             endif\n\
             if (version >= 3.004002)\n\
               if can(Mail::SpamAssassin::Conf::feature_nonesuch)\n\
               body N1 /no/\n\
               endif\n\
             body V1 /yes/\n\
             endif\n\
             loadplugin Mail::SpamAssassin::Plugin::TextCat\n\
             ifplugin Mail::SpamAssassin::Plugin::TextCat\n\
             body T3 /now read/\n\
             endif\n\
             if version >=\n\
             body B1 /bad condition: not read/\n\
             endif\n\
             else\n",
        );
        assert_eq!(names(&p), ["F1", "T2", "V1", "T3"]);
        let got: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].starts_with("t.cf:22:4: cannot read the condition"),
            "{got:#?}"
        );
        assert!(got[1].starts_with("t.cf:25:1: else without if"), "{got:#?}");

        // Another file redefines a rule: the later one counts, and that is no problem.
        let mut p = parse("body X1 /first/\nscore X1 2\n");
        p.parse_text(Path::new("local.cf"), "body X1 /second/\n");
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let x1 = p.get("X1").unwrap();
        match &x1.test.as_ref().unwrap().0 {
            Test::Regex { pattern, .. } => assert_eq!(pattern.source, "second"),
            t => panic!("{t:?}"),
        }
        assert_eq!(x1.score.as_ref().unwrap().0, 2.0);
    }

    #[test]
    fn replace_tags_are_written_into_the_rules_named() {
        let mut p = parse(
            "body M1 /<inter W1><M><E>/i\n\
             replace_rules M1 NOPE\n\
             replace_tag M (?:m|rn)\n\
             replace_tag E [e3]\n\
             replace_inter W1 \\W?\n\
             body M2 /<M><E>/\n\
             replace_start\n\
             replace_tag X\n",
        );
        p.replace_tags();
        let source = |name: &str| match &p.get(name).unwrap().test.as_ref().unwrap().0 {
            Test::Regex { pattern, .. } => pattern.source.clone(),
            t => panic!("{t:?}"),
        };
        assert_eq!(source("M1"), r"\W?(?:m|rn)\W?[e3]");
        // Only the rules named are touched.
        assert_eq!(source("M2"), "<M><E>");
        let got: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            got,
            [
                "t.cf:7:1: replace_start needs one delimiter, found \"\"",
                "t.cf:8:13: replace_tag needs a name and a pattern fragment",
                "t.cf:2:18: warning: replace_rules names NOPE, which is not defined",
            ]
        );
    }

    #[test]
    fn a_directory_reads_pre_files_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("10_a.cf"),
            "ifplugin Foo\nbody A1 /a/\nendif\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("v999.pre"), "loadplugin Foo\n").unwrap();
        let p = Parsed::load(&[dir.path().to_path_buf()]);
        assert_eq!(names(&p), ["A1"]);
        // Every path's .pre files come before any .cf file (the site's config directory is
        // listed after the stock rules).
        let site = tempfile::tempdir().unwrap();
        std::fs::write(site.path().join("v1.pre"), "loadplugin Bar\n").unwrap();
        std::fs::write(
            dir.path().join("20_b.cf"),
            "ifplugin Bar\nbody B1 /b/\nendif\n",
        )
        .unwrap();
        let p = Parsed::load(&[dir.path().to_path_buf(), site.path().to_path_buf()]);
        assert_eq!(names(&p), ["A1", "B1"]);
    }

    #[test]
    fn patterns_with_unescaped_delimiters_and_escaped_hash() {
        let (p, rest) = parse_pattern("/a/b/i [if-unset: x]").unwrap();
        assert_eq!(p.source, "a/b");
        assert!(p.case_insensitive);
        assert_eq!(rest.trim(), "[if-unset: x]");
        assert_eq!(strip_comment(r"body X /\#5/ # c"), r"body X /\#5/ ");
        let (p, _) = parse_pattern(r"/a\/b/").unwrap();
        assert_eq!(p.source, r"a\/b");
    }

    fn names(p: &Parsed) -> Vec<&str> {
        p.rules
            .iter()
            .filter(|r| r.test.is_some())
            .map(|r| r.name.as_str())
            .collect()
    }

    #[test]
    fn a_reload_keeps_a_file_that_turned_empty_unreadable_or_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.cf");
        let b = dir.path().join("b.cf");
        std::fs::write(&a, "body A_ONE /one/\nscore A_ONE 1\n").unwrap();
        std::fs::write(&b, "body B_ONE /two/\nbody B_TWO /three/\n").unwrap();
        let paths = [dir.path().to_path_buf()];
        let first = Parsed::load(&paths);
        assert_eq!(names(&first), ["A_ONE", "B_ONE", "B_TWO"]);
        assert_eq!(
            first.sources.iter().map(|s| s.rules).collect::<Vec<_>>(),
            [1, 2]
        );

        // Emptied: kept.
        std::fs::write(&a, "").unwrap();
        // Garbage: every line an error, no rule: kept, with the errors reported.
        std::fs::write(&b, "\u{1}\u{2}garbage\n%%%\n").unwrap();
        let second = Parsed::load_keeping(&paths, &first.sources);
        assert_eq!(names(&second), ["A_ONE", "B_ONE", "B_TWO"]);
        let kept: Vec<(&Path, usize)> = second
            .kept
            .iter()
            .map(|k| (k.path.as_path(), k.rules))
            .collect();
        assert_eq!(kept, [(a.as_path(), 1), (b.as_path(), 2)]);
        assert!(second.kept[0].why.contains("empty"), "{:?}", second.kept);
        assert!(
            second.kept[1].why.contains("2 error(s)"),
            "{:?}",
            second.kept
        );
        assert_eq!(second.problems.len(), 2);

        // The previous version carries over to the reload after that, too.
        let third = Parsed::load_keeping(&paths, &second.sources);
        assert_eq!(names(&third), ["A_ONE", "B_ONE", "B_TWO"]);

        // A partly broken file is a rule author's edit: its good rules load, the bad line is
        // reported. A deleted file takes its rules with it.
        std::fs::write(&b, "body B_NEW /new/\nbody BROKEN /(/\n").unwrap();
        std::fs::remove_file(&a).unwrap();
        let fourth = Parsed::load_keeping(&paths, &third.sources);
        assert_eq!(names(&fourth), ["B_NEW", "BROKEN"]);
        assert!(fourth.kept.is_empty());

        // Unreadable (here a FIFO in place of the file): kept; without a previous version,
        // an error that says what the file is.
        std::fs::remove_file(&b).unwrap();
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&b)
                .status()
                .unwrap()
                .success()
        );
        let fifth = Parsed::load_keeping(&paths, &fourth.sources);
        assert_eq!(names(&fifth), ["B_NEW", "BROKEN"]);
        assert!(fifth.kept[0].why.contains("FIFO"), "{:?}", fifth.kept);
        let fresh = Parsed::load(&paths);
        assert!(names(&fresh).is_empty());
        assert!(
            fresh.problems[0]
                .message
                .contains("a FIFO, not a regular file"),
            "{:?}",
            fresh.problems
        );
    }

    #[test]
    fn the_rule_count_is_capped() {
        let text: String = (0..MAX_RULES + 5)
            .map(|i| format!("body R{i} /x{i}y/\n"))
            .collect();
        let p = parse(&text);
        assert_eq!(p.rules.len(), MAX_RULES);
        assert_eq!(p.over_limit, 5);
        assert_eq!(p.problems.len(), 1);
        assert!(
            p.problems[0].message.contains("more than"),
            "{:?}",
            p.problems
        );
    }
}
