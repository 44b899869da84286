//! Rule files to rule definitions: SpamAssassin's line syntax plus our `phrases` lists.
//!
//! Parsing never stops at the first problem: every bad line is reported with its file, line
//! and column, the rest load (a broken rule is skipped, not the file). See rules/README.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest rule file read; a rule file is text that people edit, not data.
pub const MAX_RULE_FILE: u64 = 16 * 1024 * 1024;

/// Longest phrase list file read.
pub const MAX_LIST_FILE: u64 = 64 * 1024 * 1024;

/// Most rules in one rule set. SpamAssassin's whole stock set is about 3,000 rules, and a
/// compiled regex rule costs about 20 KiB: 200,000 of them took 7.3 GB and a minute to
/// compile, 20,000 took 400 MB. Large word lists belong in one `phrases` rule, which has no
/// such cost per entry.
pub const MAX_RULES: usize = 10_000;

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in the rule files, printed as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Location,
    pub severity: Severity,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning: ",
            Severity::Error => "",
        };
        write!(f, "{}: {sev}{}", self.at, self.message)
    }
}

/// Which part of a header a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeaderPart {
    /// RFC 2047 decoded and unfolded.
    Decoded,
    /// As sent.
    Raw,
    /// Only the addresses (`From:addr`).
    Addr,
    /// Only the display names (`From:name`).
    Name,
}

/// What a header rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeaderSel {
    /// One header by name (all its occurrences, one per line).
    Named(String, HeaderPart),
    /// Every header as `Name: value` lines.
    All,
    /// To and Cc.
    ToCc(HeaderPart),
}

/// The text a pattern runs on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Header(HeaderSel),
    Body,
    RawBody,
    Full,
    Uri,
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Header(_) => "header",
            Target::Body => "body",
            Target::RawBody => "rawbody",
            Target::Full => "full",
            Target::Uri => "uri",
        }
    }
}

/// A Perl-style pattern with its modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub source: String,
    pub case_insensitive: bool,
    pub dot_all: bool,
    pub multi_line: bool,
    pub extended: bool,
}

/// A meta expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Rule(String),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(Box<Expr>, Op, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

/// What a rule tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Regex {
        target: Target,
        pattern: Pattern,
        negate: bool,
        if_unset: Option<String>,
    },
    Exists(String),
    Meta(Expr),
    Phrases {
        target: Target,
        phrases: Vec<String>,
        word: bool,
        case: bool,
        perhit: bool,
    },
    /// A SpamAssassin plugin test (`eval:...`): counted, never run.
    Eval(String),
    /// A rule defined by a plugin directive (`askdns`, `mimeheader`...): never run.
    Plugin(String),
}

/// Everything said about one rule name.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDef {
    pub name: String,
    pub test: Option<(Test, Location)>,
    pub score: Option<(f64, Location)>,
    pub describe: Option<String>,
    pub multiple: bool,
    pub maxhits: Option<u32>,
    pub nice: bool,
    pub first_seen: Location,
}

impl RuleDef {
    /// Sub-rules (`__NAME`) are evaluated for metas but never scored or reported.
    pub fn is_sub(&self) -> bool {
        self.name.starts_with("__")
    }
}

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
}

/// SpamAssassin settings that say nothing to our engine (lists, report templates, plugin
/// options): accepted and counted, so SpamAssassin's own files load.
const IGNORED: [&str; 32] = [
    "asn_lookup",
    "asn_lookup_ipv6",
    "loadplugin",
    "tryplugin",
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
    "freemail_domains",
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
const IGNORED_PREFIXES: [&str; 11] = [
    "util_rb_",
    "uridnsbl_skip",
    "def_whitelist_",
    "def_welcomelist_",
    "whitelist_",
    "welcomelist_",
    "blacklist_",
    "blocklist_",
    "bayes_",
    "replace_",
    "clear_",
];

/// Directives that define a rule run by a SpamAssassin plugin (DNS lists, MIME part headers):
/// the name exists (metas may use it) but the rule never fires here.
const PLUGIN_RULES: [&str; 6] = [
    "mimeheader",
    "askdns",
    "urirhssub",
    "uridnssub",
    "urirhsbl",
    "uridnsbl",
];

fn ignored(directive: &str) -> bool {
    IGNORED.contains(&directive) || IGNORED_PREFIXES.iter().any(|p| directive.starts_with(p))
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
        self.problems.push(Problem {
            at,
            severity,
            message: message.into(),
        });
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
        let mut conditionals: Vec<Location> = Vec::new();
        for (n, raw_line) in text.lines().enumerate() {
            let line = strip_comment(raw_line);
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let at = Location {
                file: file.clone(),
                line: n + 1,
                column: indent + 1,
            };
            let (directive, rest) = split_word(trimmed);
            let rest_col = indent + 1 + (trimmed.len() - rest.len());
            let col_of = |s: &str| -> usize {
                // Column of a slice of `rest` within the line.
                rest_col + (s.as_ptr() as usize).saturating_sub(rest.as_ptr() as usize)
            };
            match directive {
                "if" | "ifplugin" => conditionals.push(at),
                "else" => {
                    if conditionals.is_empty() {
                        self.problem(at, Severity::Error, "else without if");
                    }
                }
                "endif" => {
                    if conditionals.pop().is_none() {
                        self.problem(at, Severity::Error, "endif without if");
                    }
                }
                "header" | "body" | "rawbody" | "full" | "uri" | "meta" | "phrases" => {
                    let (name, def) = split_word(rest);
                    if !self.check_name(name, &at, col_of(name)) {
                        continue;
                    }
                    let def_at = Location {
                        column: col_of(def),
                        ..at.clone()
                    };
                    if directive == "phrases"
                        && let Some(list) = phrase_list_of(def, path)
                    {
                        self.list_files.push(list);
                    }
                    match parse_test(directive, def, path) {
                        Ok(test) => {
                            if matches!(test, Test::Eval(_)) {
                                self.stats.eval_rules += 1;
                            }
                            let Some(entry) = self.entry(name, &at) else {
                                continue;
                            };
                            if let Some((_, prev)) = &entry.test {
                                let msg =
                                    format!("duplicate rule {name} (first defined at {prev})");
                                self.problem(at, Severity::Error, msg);
                            } else {
                                entry.test = Some((test, def_at));
                            }
                        }
                        Err(msg) => self.problem(def_at, Severity::Error, format!("{name}: {msg}")),
                    }
                }
                "score" => {
                    let (name, value) = split_word(rest);
                    if !self.check_name(name, &at, col_of(name)) {
                        continue;
                    }
                    let scores: Vec<&str> = value.split_whitespace().collect();
                    // SpamAssassin's four scores are for (no bayes, no network), (no bayes,
                    // network), (bayes, no network), (bayes, network): we run network tests and
                    // no bayes, so the second applies.
                    let chosen = match scores.len() {
                        1 => Some(scores[0]),
                        4 => Some(scores[1]),
                        _ => None,
                    };
                    match chosen.map(|s| s.parse::<f64>()) {
                        Some(Ok(x)) if x.is_finite() => {
                            let score_at = Location {
                                column: col_of(value),
                                ..at.clone()
                            };
                            if let Some(e) = self.entry(name, &at) {
                                e.score = Some((x, score_at));
                            }
                        }
                        _ => self.problem(
                            Location {
                                column: col_of(value),
                                ..at
                            },
                            Severity::Error,
                            format!("{name}: score must be one number or four, found {value:?}"),
                        ),
                    }
                }
                "describe" => {
                    let (name, text) = split_word(rest);
                    if self.check_name(name, &at, col_of(name))
                        && let Some(e) = self.entry(name, &at)
                    {
                        e.describe = Some(text.trim().to_string());
                    }
                }
                "tflags" => {
                    let (name, flags) = split_word(rest);
                    if !self.check_name(name, &at, col_of(name)) {
                        continue;
                    }
                    for flag in flags.split_whitespace() {
                        let Some(e) = self.entry(name, &at) else {
                            break;
                        };
                        match flag {
                            "multiple" => e.multiple = true,
                            "nice" => e.nice = true,
                            f if f.starts_with("maxhits=") => match f[8..].parse::<u32>() {
                                Ok(n) if n > 0 => {
                                    e.maxhits = Some(n);
                                    e.multiple = true;
                                }
                                _ => {
                                    let flag_at = Location {
                                        column: col_of(flag),
                                        ..at.clone()
                                    };
                                    self.problem(
                                        flag_at,
                                        Severity::Error,
                                        format!("{name}: bad {f}"),
                                    );
                                }
                            },
                            // SpamAssassin's other flags (net, learn, userconf, noautolearn,
                            // publish, a, ...) change nothing here.
                            _ => {}
                        }
                    }
                }
                plugin if PLUGIN_RULES.contains(&plugin) => {
                    let (name, _) = split_word(rest);
                    if !self.check_name(name, &at, col_of(name)) {
                        continue;
                    }
                    self.stats.plugin_rules += 1;
                    if let Some(entry) = self.entry(name, &at)
                        && entry.test.is_none()
                    {
                        entry.test = Some((Test::Plugin(plugin.to_string()), at.clone()));
                    }
                }
                other if ignored(other) => {
                    *self
                        .stats
                        .ignored_directives
                        .entry(other.to_string())
                        .or_default() += 1;
                }
                other => {
                    let msg = format!("unknown directive {other:?}");
                    self.problem(at, Severity::Error, msg);
                }
            }
        }
        for at in conditionals {
            self.problem(at, Severity::Error, "if without endif");
        }
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

/// The files named by the rule paths: files as given, directories' `*.cf` entries in name
/// order (an entry that is not a regular file is listed too, so that reading it reports it).
pub fn rule_files(paths: &[PathBuf], p: &mut Parsed) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        match std::fs::read_dir(path) {
            Ok(rd) => {
                let mut files: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.extension().is_some_and(|e| e == "cf"))
                    .collect();
                files.sort();
                out.extend(files);
            }
            Err(e) => p.problem(
                file_start(path),
                Severity::Error,
                format!("cannot read directory: {e}"),
            ),
        }
    }
    out
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

/// Removes a comment: `#` to the end of the line unless escaped as `\#` (SpamAssassin's rule).
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'#' && (i == 0 || b[i - 1] != b'\\') {
            return &line[..i];
        }
    }
    line
}

/// Splits off the first whitespace-separated word.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn parse_test(kind: &str, def: &str, file: &Path) -> Result<Test, String> {
    let def = def.trim();
    if def.is_empty() {
        return Err(format!("{kind} rule without a test"));
    }
    if let Some(eval) = def.strip_prefix("eval:") {
        return Ok(Test::Eval(eval.to_string()));
    }
    match kind {
        "header" => parse_header_test(def),
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
        _ => HeaderSel::Named(name.to_string(), part),
    }))
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
fn phrase_list_of(def: &str, rule_file: &Path) -> Option<PathBuf> {
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

/// Deepest nesting of parentheses and unary operators in a meta expression; the parser
/// recurses per level.
const MAX_META_DEPTH: usize = 64;

/// Most tokens in one meta expression. An expression is a tree that evaluation walks
/// recursively, and a chain of N terms is N deep: 30,000 terms overflowed the stack. The
/// longest metas SpamAssassin ships have a few dozen terms.
const MAX_META_TOKENS: usize = 2000;

pub fn parse_meta(s: &str) -> Result<Expr, String> {
    let tokens = tokenize(s)?;
    if tokens.len() > MAX_META_TOKENS {
        return Err(format!(
            "meta expression of {} tokens; at most {MAX_META_TOKENS}",
            tokens.len()
        ));
    }
    let mut p = MetaParser {
        t: &tokens,
        i: 0,
        depth: 0,
    };
    let e = p.or()?;
    if p.i != tokens.len() {
        return Err(format!("unexpected {:?} in meta expression", tokens[p.i]));
    }
    Ok(e)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Op(&'static str),
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            out.push(Tok::Num(
                s[start..i]
                    .parse()
                    .map_err(|_| format!("bad number {:?}", &s[start..i]))?,
            ));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Name(s[start..i].to_string()));
        } else if c == b'(' {
            out.push(Tok::Open);
            i += 1;
        } else if c == b')' {
            out.push(Tok::Close);
            i += 1;
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            let op = ["&&", "||", "==", "!=", "<=", ">="]
                .into_iter()
                .find(|o| *o == two);
            if let Some(op) = op {
                out.push(Tok::Op(op));
                i += 2;
            } else {
                let one = match c {
                    b'!' => "!",
                    b'<' => "<",
                    b'>' => ">",
                    b'+' => "+",
                    b'-' => "-",
                    b'*' => "*",
                    b'/' => "/",
                    _ => {
                        return Err(format!(
                            "unexpected character {:?} in meta expression",
                            c as char
                        ));
                    }
                };
                out.push(Tok::Op(one));
                i += 1;
            }
        }
    }
    if out.is_empty() {
        return Err("empty meta expression".into());
    }
    Ok(out)
}

struct MetaParser<'a> {
    t: &'a [Tok],
    i: usize,
    depth: usize,
}

impl MetaParser<'_> {
    fn peek_op(&self) -> Option<&'static str> {
        match self.t.get(self.i) {
            Some(Tok::Op(o)) => Some(o),
            _ => None,
        }
    }

    fn binary(
        &mut self,
        ops: &[(&str, Op)],
        next: fn(&mut Self) -> Result<Expr, String>,
    ) -> Result<Expr, String> {
        let mut left = next(self)?;
        while let Some(op) = self
            .peek_op()
            .and_then(|o| ops.iter().find(|(s, _)| *s == o))
        {
            self.i += 1;
            let right = next(self)?;
            left = Expr::Bin(Box::new(left), op.1, Box::new(right));
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, String> {
        self.binary(&[("||", Op::Or)], Self::and)
    }

    fn and(&mut self) -> Result<Expr, String> {
        self.binary(&[("&&", Op::And)], Self::cmp)
    }

    fn cmp(&mut self) -> Result<Expr, String> {
        self.binary(
            &[
                ("==", Op::Eq),
                ("!=", Op::Ne),
                ("<", Op::Lt),
                ("<=", Op::Le),
                (">", Op::Gt),
                (">=", Op::Ge),
            ],
            Self::sum,
        )
    }

    fn sum(&mut self) -> Result<Expr, String> {
        self.binary(&[("+", Op::Add), ("-", Op::Sub)], Self::product)
    }

    fn product(&mut self) -> Result<Expr, String> {
        self.binary(&[("*", Op::Mul), ("/", Op::Div)], Self::unary)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        let op = match self.peek_op() {
            Some(op @ ("!" | "-")) => op,
            _ => return self.primary(),
        };
        self.i += 1;
        self.depth += 1;
        if self.depth > MAX_META_DEPTH {
            return Err(format!(
                "meta expression nested deeper than {MAX_META_DEPTH}"
            ));
        }
        let inner = Box::new(self.unary()?);
        self.depth -= 1;
        Ok(if op == "!" {
            Expr::Not(inner)
        } else {
            Expr::Neg(inner)
        })
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let tok = self.t.get(self.i).cloned();
        self.i += 1;
        match tok {
            Some(Tok::Num(n)) => Ok(Expr::Num(n)),
            Some(Tok::Name(n)) => Ok(Expr::Rule(n)),
            Some(Tok::Open) => {
                self.depth += 1;
                if self.depth > MAX_META_DEPTH {
                    return Err(format!(
                        "meta expression nested deeper than {MAX_META_DEPTH}"
                    ));
                }
                let e = self.or()?;
                self.depth -= 1;
                match self.t.get(self.i) {
                    Some(Tok::Close) => {
                        self.i += 1;
                        Ok(e)
                    }
                    _ => Err("missing ) in meta expression".into()),
                }
            }
            Some(other) => Err(format!("unexpected {other:?} in meta expression")),
            None => Err("meta expression ends early".into()),
        }
    }
}

/// Rule names an expression refers to.
pub fn referenced(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Num(_) => {}
        Expr::Rule(n) => out.push(n.clone()),
        Expr::Not(x) | Expr::Neg(x) => referenced(x, out),
        Expr::Bin(a, _, b) => {
            referenced(a, out);
            referenced(b, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
score    B1  0 2.0 0 2.5
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
            "t.cf:7:1: duplicate rule ok (first defined at t.cf:1:9)",
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
    fn patterns_with_unescaped_delimiters_and_escaped_hash() {
        let (p, rest) = parse_pattern("/a/b/i [if-unset: x]").unwrap();
        assert_eq!(p.source, "a/b");
        assert!(p.case_insensitive);
        assert_eq!(rest.trim(), "[if-unset: x]");
        assert_eq!(strip_comment(r"body X /\#5/ # c"), r"body X /\#5/ ");
        let (p, _) = parse_pattern(r"/a\/b/").unwrap();
        assert_eq!(p.source, r"a\/b");
    }

    #[test]
    fn meta_precedence() {
        let e = parse_meta("A || B && !C + 2 > 1").unwrap();
        // || binds loosest, then &&, then comparison, then +.
        match e {
            Expr::Bin(_, Op::Or, right) => match *right {
                Expr::Bin(_, Op::And, cmp) => assert!(matches!(*cmp, Expr::Bin(_, Op::Gt, _))),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert!(parse_meta(&"(".repeat(100)).is_err());
        // Deep unary chains and long term chains are refused, not parsed into a tree that
        // evaluation would recurse through.
        assert!(parse_meta(&format!("{}A", "-".repeat(50_000))).is_err());
        assert!(parse_meta(&format!("{}A", "!".repeat(60))).is_ok());
        let long = vec!["__A"; 30_000].join(" + ");
        assert!(parse_meta(&long).unwrap_err().contains("at most 2000"));
        assert!(parse_meta(&vec!["__A"; 900].join(" + ")).is_ok());
        assert!(parse_meta("A &&").is_err());
        assert!(parse_meta("A $ B").is_err());
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
