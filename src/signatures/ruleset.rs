//! Rule definitions compiled into a rule set that scans each target of a message once.
//!
//! Every regex's required literals and every phrase go into one Aho-Corasick automaton per
//! target; a regex runs only on the texts where one of its literals occurred. Regexes with no
//! usable literal (and negated ones) run on every text of their target. Patterns the linear
//! `regex` crate cannot express (look-around, back-references) run on fancy-regex under a
//! step limit. A rule set is built once per config or rule change and shared (`Arc`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::backtrack::{self, Backtracking};
use super::evals;
use super::lines;
use super::literals;
use super::meta::{self, Compute};
use super::multi;
use super::parse::{self, Parsed};
use super::perl::{Mode, regex_source};
use super::relax;
use super::rules::{Expr, HeaderSel, Location, Pattern, Problem, Severity, Target, Test};
pub use super::run::{Expired, Scan};

/// Compiled size allowed per regex (the `regex` crate's own default is 10 MiB; rules are many).
const REGEX_SIZE_LIMIT: usize = 8 * 1024 * 1024;

/// The lazy DFA cache of one regex, per thread. The `regex` crate's 2 MiB was rebuilt over
/// and over by SpamAssassin's largest rules (`__FILL_THIS_FORM_LONG2`: 0.2 ms of every
/// message); a cache only grows as far as a rule's states need, and on the corpus the
/// whole process stays at the same size with this one.
const DFA_CACHE: usize = 16 << 20;

/// Memory for the gated rules' dense DFAs (see [`super::linear::Regex`]), in all and each:
/// past these a rule keeps only its lazy DFA.
const DENSE_TOTAL: usize = 4 << 20;
const DENSE_EACH: usize = 512 << 10;

/// Score of a rule without a `score` line, as in SpamAssassin: 1.0, but 0.01 for a test rule
/// (`T_` name) and -1.0 for one with `tflags nice`.
pub const DEFAULT_SCORE: f64 = 1.0;

pub fn default_score(name: &str, nice: bool) -> f64 {
    if name.starts_with("T_") {
        0.01
    } else if nice {
        -1.0
    } else {
        DEFAULT_SCORE
    }
}

/// Default `maxhits` for `tflags multiple` (SpamAssassin counts without limit; we do not).
pub const DEFAULT_MAXHITS: u32 = 10;

pub(super) enum Matcher {
    /// Perl's semantics on UTF-8 octets (see `perl`).
    Fast(super::linear::Regex),
    Fancy(Backtracking),
}

pub(super) enum Kind {
    Regex {
        matcher: Matcher,
        negate: bool,
        if_unset: Option<String>,
        /// No match spans a line end (see [`lines::within_one_line`]).
        one_line: bool,
    },
    Exists(String),
    Meta(Expr),
    Phrases {
        phrases: Vec<String>,
        word: bool,
        case: bool,
        perhit: bool,
    },
    /// A SpamAssassin eval test run here (see `evals`).
    Eval(evals::Eval),
    /// A SpamAssassin eval or plugin rule: known by name (metas may use it), never fires.
    Inert,
}

/// A compiled rule.
pub struct Rule {
    pub name: String,
    pub score: f64,
    pub describe: String,
    pub at: Location,
    pub target: &'static str,
    pub(super) multiple: bool,
    pub(super) maxhits: u32,
    pub(super) kind: Kind,
}

#[derive(Clone, Copy)]
pub(super) enum Owner {
    Rule(usize),
    Phrase(usize, usize),
}

/// The automaton and rule lists of one target.
#[derive(Default)]
pub(super) struct Index {
    /// Distinct literals (lower case; the matcher folds ASCII case), each with every rule or
    /// phrase that wants it: five rules sharing "name" must not make five hits of each one.
    pub(super) literals: Vec<Vec<u8>>,
    pub(super) owners: Vec<Vec<Owner>>,
    pub(super) by_literal: HashMap<Vec<u8>, usize>,
    pub(super) literals_matcher: Option<multi::Literals>,
    /// Rules run on every text of the target.
    pub(super) always: Vec<usize>,
    /// Sub-rules (named `__`) without literals, which only metas read: the daemon's scan
    /// runs them last, and only those that a meta's truth depends on (see
    /// [`RuleSet::lazy`]); a scan with evidence runs them with the others.
    pub(super) lazy: Vec<usize>,
    /// Rules that run only where their literals occur this many times (in one line, where
    /// `per_line`): every match holds that many (see [`literals::Required`]).
    pub(super) times: super::multi::FastMap<usize, u32>,
    /// The regex rules that fire when their header is absent, each on its `if-unset` text or
    /// the empty string (a negated rule that does not match it, most often): the same for
    /// every message, so worked out once.
    pub(super) unset: Vec<usize>,
    /// The text is SpamAssassin's body, one paragraph per line, which its rules match line
    /// by line: a match must lie within one line (see `targets::body`).
    pub(super) per_line: bool,
    /// Some rule found through its literals matches within one line (`Kind::Regex`'s
    /// `one_line`): on a long text, such rules are searched only on their literals' lines.
    pub(super) one_line: bool,
}

impl Index {
    fn add_literal(&mut self, literal: Vec<u8>, owner: Owner) {
        let literal = literal.to_ascii_lowercase();
        let i = *self.by_literal.entry(literal.clone()).or_insert_with(|| {
            self.literals.push(literal);
            self.owners.push(Vec::new());
            self.literals.len() - 1
        });
        self.owners[i].push(owner);
    }

    fn finish(&mut self, rules: &[Rule]) {
        self.by_literal = HashMap::new();
        if !self.literals.is_empty() {
            self.literals_matcher = multi::Literals::new(&self.literals);
        }
        let mut ids: Vec<usize> = self
            .owners
            .iter()
            .flatten()
            .filter_map(|o| match o {
                Owner::Rule(r) => Some(*r),
                Owner::Phrase(..) => None,
            })
            .chain(self.always.iter().copied())
            .collect();
        self.one_line = self.owners.iter().flatten().any(|o| {
            matches!(o, Owner::Rule(r)
                if matches!(rules[*r].kind, Kind::Regex { one_line: true, .. }))
        });
        ids.sort_unstable();
        ids.dedup();
        self.unset = ids
            .into_iter()
            .filter(|&r| match &rules[r].kind {
                Kind::Regex {
                    matcher,
                    negate,
                    if_unset,
                    ..
                } => {
                    let text = if_unset.as_deref().unwrap_or_default();
                    let matches = match matcher {
                        Matcher::Fast(re) => re.is_match(text.as_bytes()),
                        Matcher::Fancy(bt) => !bt.find(text, 1, None).spans.is_empty(),
                    };
                    matches != *negate
                }
                _ => false,
            })
            .collect();
    }
}

impl Index {
    /// Whether any rule reads this target (building its text costs a copy).
    pub(super) fn wanted(&self) -> bool {
        !self.owners.is_empty() || !self.always.is_empty() || !self.lazy.is_empty()
    }
}

/// What a scan found for one rule, for symbols and `check --explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub rule: usize,
    pub count: u32,
    pub evidence: Option<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub matched: String,
    pub context: String,
}

/// Counts for `rules lint` and the compatibility report.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub by_kind: BTreeMap<&'static str, usize>,
    /// Automaton bytes of the regexes, against [`REGEX_BUDGET`].
    pub regex_bytes: usize,
    pub fancy: usize,
    pub prefiltered: usize,
    pub unsupported: Vec<(String, String)>,
    pub eval: usize,
    pub plugin: usize,
}

pub struct RuleSet {
    pub(super) rules: Vec<Rule>,
    pub(super) body: Index,
    pub(super) rawbody: Index,
    pub(super) full: Index,
    pub(super) uri: Index,
    pub(super) headers: Vec<(HeaderSel, Index)>,
    /// `mimeheader` rules, run on each MIME part's headers.
    pub(super) mime_headers: Vec<(HeaderSel, Index)>,
    /// Negated `mimeheader` rules: compiled as positive ones, and turned around once every
    /// part is scanned: a hit when no part matches, as SpamAssassin's manual says. (Its
    /// 4.0.1 code hits on every message instead; no stock rule is negated.)
    pub(super) mime_negated: Vec<usize>,
    /// Whether a header rule reads SpamAssassin's relay pseudo-headers (parsing the
    /// Received chain costs, so only then).
    pub(super) reads_relays: bool,
    /// Eval rules, run once the header rules have (they read what those read).
    pub(super) evals: Vec<usize>,
    /// FreeMail's domains; None without any (its tests then never hold).
    pub(super) freemail: Option<evals::Freemail>,
    pub(super) exists: Vec<usize>,
    /// Meta rules in an order where each comes after the rules it uses, with their
    /// expressions resolved to rule ids.
    pub(super) metas: Vec<(usize, Compute)>,
    /// The literal-less lazy sub-rules of the body, rawbody and full texts (see
    /// [`Index::lazy`]).
    pub(super) lazy: Vec<usize>,
    /// Each rule's most hits if it is lazy (without literals, or a sub-rule of the same
    /// texts found through its literals, whose search waits once they are found), NaN if
    /// not.
    pub(super) lazy_most: Vec<f64>,
    /// For each meta in `metas`: whether its value depends on a lazy sub-rule (directly or
    /// through other metas), and the lazy sub-rules it reads directly.
    pub(super) lazy_reads: Vec<(bool, Vec<usize>)>,
    pub(super) by_name: BTreeMap<String, usize>,
    pub problems: Vec<Problem>,
    pub stats: Stats,
    /// The files compiled, kept for the next reload to fall back on (see
    /// [`Parsed::load_keeping`]).
    pub sources: Vec<parse::Source>,
    /// Files of this set whose new version was refused, their previous version compiled.
    pub kept: Vec<parse::Kept>,
    /// Phrase list files the rules name.
    pub list_files: Vec<PathBuf>,
}

/// Literals one of which every match contains (see [`literals::required`]).
type Literals = Option<literals::Required>;

/// A compiled regex with what lets the scan skip it: its required literals.
struct Compiled {
    matcher: Matcher,
    literals: Literals,
    /// No match spans a line end (only worked out for linear regexes).
    one_line: bool,
}

/// `ascii_fold`: the regex has byte semantics, where case-insensitive means ASCII only.
fn literals_of(src: &str, ci: bool, ascii_fold: bool) -> Literals {
    parse_hir(src).and_then(|hir| literals::required(&hir, ci, ascii_fold))
}

/// A pattern as `regex::bytes` reads it.
fn parse_hir(src: &str) -> Option<regex_syntax::hir::Hir> {
    regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(src)
        .ok()
}

/// Most memory the compiled regexes of one rule set may take, counted as the size of their
/// automata. A compiled regex takes a few times its automaton (a reverse one, engines,
/// caches): eighty rules such as `/\w{150}1\b/` count 201 MiB and took 743 MB to compile.
/// SpamAssassin's stock rules count 52 MiB, so this leaves room for as much again and more.
pub const REGEX_BUDGET: usize = 128 * 1024 * 1024;

/// The size of a pattern's automaton, the measure of [`REGEX_BUDGET`]; for a backtracking
/// pattern, that of its relaxed form, which its delegates resemble.
fn regex_cost(p: &Pattern) -> usize {
    use regex_automata::nfa::thompson;
    let nfa = |pattern: &str| {
        thompson::Compiler::new()
            .syntax(regex_automata::util::syntax::Config::new().utf8(false))
            .configure(
                thompson::Config::new()
                    .utf8(false)
                    .nfa_size_limit(Some(REGEX_SIZE_LIMIT)),
            )
            .build(pattern)
            .map(|n| n.memory_usage())
            .ok()
    };
    nfa(&regex_source(p, true, Mode::Bytes))
        .or_else(|| relax::relaxed(&regex_source(p, true, Mode::Unicode)).and_then(|r| nfa(&r)))
        .unwrap_or(REGEX_SIZE_LIMIT)
}

/// The pattern as its target needs it: body rules see one paragraph per line, where
/// SpamAssassin's `^` and `$` are the paragraph's ends, so they are compiled multi-line.
fn for_target(p: &Pattern, target: &Target) -> Pattern {
    let mut p = p.clone();
    if *target == Target::Body {
        p.multi_line = true;
    }
    p
}

/// `body`: the pattern is a body rule's (searched paragraph by paragraph); `negate`: it fires
/// when absent, so it runs on every text whatever its literals.
fn compile_regex(
    p: &Pattern,
    body: bool,
    negate: bool,
    dense: &mut super::linear::DenseBudget,
) -> Result<Compiled, String> {
    let bytes = regex_source(p, true, Mode::Bytes);
    let literals = literals_of(
        &regex_source(p, false, Mode::Bytes),
        p.case_insensitive,
        true,
    );
    let one_line = parse_hir(&bytes).is_some_and(|hir| lines::within_one_line(&hir));
    // A rule with literals that runs only on the lines where the Aho-Corasick pass found one
    // needs no prefilter of its own; a rule without (or run over whole texts) keeps the
    // regex's, which is then the only thing skipping text (SpamAssassin's stock rules took
    // 5% more without it).
    let gated = literals.is_some() && !negate && (body || one_line);
    let built =
        super::linear::Regex::build(&bytes, REGEX_SIZE_LIMIT, DFA_CACHE, !gated).map(|re| {
            match gated {
                true => re.with_dense(&bytes, REGEX_SIZE_LIMIT, dense),
                false => re,
            }
        });
    match built {
        Ok(re) => Ok(Compiled {
            literals,
            one_line,
            matcher: Matcher::Fast(re),
        }),
        Err(fast_err) => {
            // The linear pattern the gate and literals come from: fancy-regex's parser reads
            // look-around and back-references, which it drops (see `relax`).
            let src = regex_source(p, true, Mode::Unicode);
            match backtrack::compile(&regex_source(p, true, Mode::Pcre)) {
                Ok(re) => {
                    // Octets, as PCRE2 without UTF reads the rule (and folds ASCII only).
                    let literals = relax::relaxed(&regex_source(p, false, Mode::Unicode))
                        .and_then(|r| literals_of(&format!("(?-u){r}"), p.case_insensitive, true));
                    let anchor = relax::relaxed(&src).and_then(|r| {
                        regex::bytes::RegexBuilder::new(&format!("(?-u){r}"))
                            .size_limit(REGEX_SIZE_LIMIT)
                            .dfa_size_limit(DFA_CACHE)
                            .build()
                            .ok()
                    });
                    Ok(Compiled {
                        matcher: Matcher::Fancy(Backtracking::new(re, anchor)),
                        literals,
                        one_line: false,
                    })
                }
                Err(_) => Err(match fast_err {
                    regex::Error::Syntax(s) => {
                        let last = s.lines().last().unwrap_or("syntax error").trim();
                        last.strip_prefix("error: ").unwrap_or(last).to_string()
                    }
                    other => other.to_string(),
                }),
            }
        }
    }
}

impl RuleSet {
    /// Reads and compiles rule files; bad rules are reported in `problems` and left out.
    pub fn load(paths: &[PathBuf]) -> RuleSet {
        RuleSet::compile(Parsed::load(paths))
    }

    /// Reads and compiles rule files again; a file that turned empty, unreadable or into
    /// nothing but errors keeps the version `running` compiled (see [`Parsed::load_keeping`]).
    pub fn reload(paths: &[PathBuf], running: &RuleSet) -> RuleSet {
        RuleSet::compile(Parsed::load_keeping(paths, &running.sources))
    }

    pub fn compile(parsed: Parsed) -> RuleSet {
        RuleSet::compile_within(parsed, REGEX_BUDGET)
    }

    /// Compiles with another regex budget than [`REGEX_BUDGET`] (tests).
    pub fn compile_within(mut parsed: Parsed, regex_budget: usize) -> RuleSet {
        parsed.replace_tags();
        let mut set = RuleSet {
            rules: Vec::new(),
            body: Index {
                per_line: true,
                ..Index::default()
            },
            rawbody: Index::default(),
            full: Index::default(),
            uri: Index::default(),
            headers: Vec::new(),
            mime_headers: Vec::new(),
            mime_negated: Vec::new(),
            reads_relays: false,
            evals: Vec::new(),
            freemail: parsed.freemail.compile(),
            exists: Vec::new(),
            metas: Vec::new(),
            lazy: Vec::new(),
            lazy_most: Vec::new(),
            lazy_reads: Vec::new(),
            by_name: BTreeMap::new(),
            sources: parsed.sources.clone(),
            kept: parsed.kept.clone(),
            list_files: parsed.list_files.clone(),
            problems: parsed.problems.clone(),
            stats: Stats {
                eval: parsed.stats.eval_rules,
                plugin: parsed.stats.plugin_rules,
                ..Stats::default()
            },
        };
        let mut header_index: BTreeMap<HeaderSel, Index> = BTreeMap::new();
        let mut mime_index: BTreeMap<HeaderSel, Index> = BTreeMap::new();
        let mut dense = super::linear::DenseBudget {
            left: DENSE_TOTAL,
            each: DENSE_EACH,
        };
        for def in &parsed.rules {
            let Some((test, at)) = &def.test else {
                let msg = format!(
                    "{} has a score, describe or tflags line but no test",
                    def.name
                );
                set.problem(def.first_seen.clone(), Severity::Note, msg);
                continue;
            };
            if let Test::Regex { pattern, .. } = test {
                let cost = regex_cost(pattern);
                if set.stats.regex_bytes + cost > regex_budget {
                    let msg = format!(
                        "{}: the rule set's regexes would take more than {} KiB; left out",
                        def.name,
                        regex_budget >> 10
                    );
                    set.problem(at.clone(), Severity::Error, msg);
                    continue;
                }
                set.stats.regex_bytes += cost;
            }
            // A score of 0 disables a rule, as in SpamAssassin (sub-rules, `__` names, run
            // whatever their score: metas read them).
            let disabled = !def.is_sub() && matches!(def.score, Some((s, _)) if s == 0.0);
            let (kind, target, literals) = match test {
                _ if disabled => (Kind::Inert, None, None),
                Test::Eval(call) => match evals::parse(call) {
                    Ok(Some(e)) => (Kind::Eval(e), None, None),
                    Ok(None) => (Kind::Inert, None, None),
                    Err(why) => {
                        set.problem(at.clone(), Severity::Error, format!("{}: {why}", def.name));
                        continue;
                    }
                },
                Test::Plugin(_) => (Kind::Inert, None, None),
                Test::Exists(h) => (Kind::Exists(h.clone()), None, None),
                Test::Meta(e) => (Kind::Meta(e.clone()), None, None),
                Test::Phrases {
                    target,
                    phrases,
                    word,
                    case,
                    perhit,
                } => (
                    Kind::Phrases {
                        phrases: phrases.clone(),
                        word: *word,
                        case: *case,
                        perhit: *perhit,
                    },
                    Some(target.clone()),
                    None,
                ),
                Test::Regex {
                    target,
                    pattern,
                    negate,
                    if_unset,
                } => match compile_regex(
                    &for_target(pattern, target),
                    *target == Target::Body,
                    *negate,
                    &mut dense,
                ) {
                    Ok(Compiled {
                        matcher,
                        literals: lits,
                        one_line,
                    }) => {
                        if matches!(matcher, Matcher::Fancy(_)) {
                            set.stats.fancy += 1;
                        }
                        let across_parts = matches!(target, Target::MimeHeader(_)) && *negate;
                        if across_parts {
                            set.mime_negated.push(set.rules.len());
                        }
                        let negate = *negate && !across_parts;
                        // A negated rule fires when its pattern is absent: never skip it.
                        let lits = if negate { None } else { lits };
                        (
                            Kind::Regex {
                                matcher,
                                negate,
                                if_unset: if_unset.clone(),
                                one_line,
                            },
                            Some(target.clone()),
                            lits,
                        )
                    }
                    Err(reason) => {
                        set.stats
                            .unsupported
                            .push((def.name.clone(), reason.clone()));
                        let msg = format!("{}: unsupported regex: {reason}", def.name);
                        set.problem(at.clone(), Severity::Error, msg);
                        continue;
                    }
                },
            };
            let score = match &def.score {
                Some((s, _)) => *s,
                None if def.is_sub() || matches!(kind, Kind::Inert) => 0.0,
                None => {
                    // SpamAssassin's default, as there (where a missing score is no error).
                    let d = default_score(&def.name, def.nice);
                    let msg = format!(
                        "{} has no score (SpamAssassin's default {d} applies)",
                        def.name
                    );
                    set.problem(at.clone(), Severity::Note, msg);
                    d
                }
            };
            if score < 0.0 && !def.nice {
                let msg = format!("{} has a negative score without tflags nice", def.name);
                set.problem(at.clone(), Severity::Note, msg);
            }
            let id = set.rules.len();
            let kind_name = match (&kind, &target) {
                (Kind::Inert, _) if disabled => "disabled (score 0)",
                (Kind::Inert, _) => "eval/plugin (not run)",
                (Kind::Exists(_), _) => "header",
                (Kind::Eval(_), _) => "eval",
                (Kind::Meta(_), _) => "meta",
                (_, Some(t)) => t.kind(),
                (_, None) => "meta",
            };
            *set.stats.by_kind.entry(kind_name).or_default() += 1;
            let index = match &target {
                None => None,
                Some(Target::Body) => Some(&mut set.body),
                Some(Target::RawBody) => Some(&mut set.rawbody),
                Some(Target::Full) => Some(&mut set.full),
                Some(Target::Uri) => Some(&mut set.uri),
                Some(Target::Header(sel)) => Some(header_index.entry(sel.clone()).or_default()),
                Some(Target::MimeHeader(sel)) => Some(mime_index.entry(sel.clone()).or_default()),
            };
            match (&kind, index) {
                (Kind::Exists(_), _) => set.exists.push(id),
                (Kind::Eval(_), _) => set.evals.push(id),
                (Kind::Meta(_) | Kind::Inert, _) => {}
                (Kind::Phrases { phrases, .. }, Some(ix)) => {
                    for (i, p) in phrases.iter().enumerate() {
                        ix.add_literal(p.as_bytes().to_vec(), Owner::Phrase(id, i));
                    }
                }
                (Kind::Regex { .. }, Some(ix)) => match literals {
                    Some(literals::Required {
                        literals: lits,
                        times,
                    }) => {
                        set.stats.prefiltered += 1;
                        if times > 1 {
                            ix.times.insert(id, times);
                        }
                        for l in lits {
                            ix.add_literal(l, Owner::Rule(id));
                        }
                    }
                    None => ix.always.push(id),
                },
                (_, None) => {}
            }
            set.by_name.insert(def.name.clone(), id);
            set.rules.push(Rule {
                name: def.name.clone(),
                score,
                describe: def.describe.clone().unwrap_or_default(),
                at: at.clone(),
                target: kind_name,
                multiple: def.multiple,
                maxhits: def
                    .maxhits
                    .unwrap_or(if def.multiple { DEFAULT_MAXHITS } else { 1 }),
                kind,
            });
        }
        for ix in [&mut set.body, &mut set.rawbody, &mut set.full, &mut set.uri] {
            ix.finish(&set.rules);
        }
        let rules = &set.rules;
        let finish = |index: BTreeMap<HeaderSel, Index>| {
            index
                .into_iter()
                .map(|(sel, mut ix)| {
                    ix.finish(rules);
                    (sel, ix)
                })
                .collect()
        };
        set.reads_relays = header_index.keys().any(|sel| {
            matches!(sel, HeaderSel::Named(name, _) if crate::message::received::is_pseudo_header(name))
        });
        set.headers = finish(header_index);
        set.mime_headers = finish(mime_index);
        set.order_metas();
        set.split_lazy();
        set
    }

    /// Moves the sub-rules without literals of the body, rawbody and full texts out of
    /// `always`: they run on every message, over the whole text (a regex with no literal
    /// to find first), while most metas that read them are decided by their other rules
    /// (`A + B + (C || __NO_LITERAL) >= 2` is false where A and B are). Their names say
    /// nothing reads them but metas: the signature stage makes no symbol of a `__` rule.
    /// Header, URI and MIME header rules stay: their texts are several per message.
    fn split_lazy(&mut self) {
        let rules = &self.rules;
        for ix in [&mut self.body, &mut self.rawbody, &mut self.full] {
            let (lazy, always): (Vec<usize>, Vec<usize>) = ix
                .always
                .iter()
                .partition(|&&r| rules[r].name.starts_with("__"));
            ix.always = always;
            ix.lazy = lazy;
        }
        self.lazy_most = vec![f64::NAN; rules.len()];
        self.lazy.clear();
        // `run_regex` counts at most `maxhits` of a `multiple` rule, one of another; a
        // negated rule counts one.
        let most = |r: usize| {
            let rule = &rules[r];
            f64::from(if rule.multiple {
                rule.maxhits.max(1)
            } else {
                1
            })
        };
        for ix in [&self.body, &self.rawbody, &self.full] {
            for &r in &ix.lazy {
                self.lazy_most[r] = most(r);
                self.lazy.push(r);
            }
            // The sub-rules found through their literals wait as well, once found.
            for owner in ix.owners.iter().flatten() {
                if let Owner::Rule(r) = *owner
                    && rules[r].name.starts_with("__")
                    && matches!(rules[r].kind, Kind::Regex { .. })
                {
                    self.lazy_most[r] = most(r);
                }
            }
        }
        // Metas come after the metas they read: one pass finds every dependence.
        let mut depends: Vec<bool> = self.lazy_most.iter().map(|m| !m.is_nan()).collect();
        self.lazy_reads = self
            .metas
            .iter()
            .map(|(m, e)| {
                let mut read = Vec::new();
                meta::rules_read(e, &mut read);
                depends[*m] = read.iter().any(|&r| depends[r]);
                read.retain(|&r| !self.lazy_most[r].is_nan());
                (depends[*m], read)
            })
            .collect();
    }

    fn problem(&mut self, at: Location, severity: Severity, message: String) {
        self.problems.push(at.problem(severity, message));
    }

    /// Puts metas in dependency order; drops those that use unknown rules or form cycles.
    fn order_metas(&mut self) {
        let metas: Vec<usize> = (0..self.rules.len())
            .filter(|&i| matches!(self.rules[i].kind, Kind::Meta(_)))
            .collect();
        let mut dropped = vec![false; self.rules.len()];
        for &m in &metas {
            let Kind::Meta(e) = &self.rules[m].kind else {
                unreachable!()
            };
            let mut refs = Vec::new();
            meta::referenced(e, &mut refs);
            let missing: Vec<String> = refs
                .into_iter()
                .filter(|r| !self.by_name.contains_key(r))
                .collect();
            if !missing.is_empty() {
                // SpamAssassin counts a rule it does not know as not hit: a meta over a
                // plugin that is not loaded (`DCC_CHECK`) still works on the rest.
                let msg = format!(
                    "meta {} refers to unknown rule(s) {}, counted as not hit",
                    self.rules[m].name,
                    missing.join(", ")
                );
                self.problem(self.rules[m].at.clone(), Severity::Note, msg);
            }
        }
        // Depth-first topological order; 0 = new, 1 = in progress, 2 = done.
        let mut state = vec![0u8; self.rules.len()];
        let mut order = Vec::new();
        for &m in &metas {
            let mut stack = vec![(m, false)];
            while let Some((r, children_done)) = stack.pop() {
                if children_done {
                    state[r] = 2;
                    if matches!(self.rules[r].kind, Kind::Meta(_)) {
                        order.push(r);
                    }
                    continue;
                }
                if state[r] != 0 {
                    continue;
                }
                state[r] = 1;
                stack.push((r, true));
                if let Kind::Meta(e) = &self.rules[r].kind {
                    let mut refs = Vec::new();
                    meta::referenced(e, &mut refs);
                    for name in refs {
                        if let Some(&d) = self.by_name.get(&name) {
                            if state[d] == 1 {
                                dropped[r] = true;
                                dropped[d] = true;
                            } else if state[d] == 0 {
                                stack.push((d, false));
                            }
                        }
                    }
                }
            }
        }
        let cyclic: Vec<usize> = metas
            .iter()
            .copied()
            .filter(|&m| dropped[m] && self.meta_in_cycle(m))
            .collect();
        for m in cyclic {
            let msg = format!("meta {} is part of a cycle", self.rules[m].name);
            self.problem(self.rules[m].at.clone(), Severity::Error, msg);
        }
        self.metas = order
            .into_iter()
            .filter(|&m| !dropped[m])
            .filter_map(|m| match &self.rules[m].kind {
                Kind::Meta(e) => Some((m, self.resolve(e))),
                _ => None,
            })
            .collect();
    }

    /// The expression with rule names looked up once, not on every message.
    fn resolve(&self, e: &Expr) -> Compute {
        let boxed = |x: &Expr| Box::new(self.resolve(x));
        match e {
            Expr::Num(n) => Compute::Num(*n),
            Expr::Rule(name) => self
                .by_name
                .get(name)
                .map_or(Compute::Num(0.0), |&i| Compute::Rule(i)),
            Expr::Not(x) => Compute::Not(boxed(x)),
            Expr::Neg(x) => Compute::Neg(boxed(x)),
            Expr::Bin(l, op, r) => Compute::Bin(boxed(l), *op, boxed(r)),
        }
    }

    fn meta_in_cycle(&self, start: usize) -> bool {
        let mut seen = vec![false; self.rules.len()];
        let mut stack = vec![start];
        while let Some(r) = stack.pop() {
            if let Kind::Meta(e) = &self.rules[r].kind {
                let mut refs = Vec::new();
                meta::referenced(e, &mut refs);
                for name in refs {
                    if let Some(&d) = self.by_name.get(&name) {
                        if d == start {
                            return true;
                        }
                        if !seen[d] {
                            seen[d] = true;
                            stack.push(d);
                        }
                    }
                }
            }
        }
        false
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rule(&self, id: usize) -> &Rule {
        &self.rules[id]
    }

    pub fn id(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message};
    use crate::scan::ScanInput;
    use crate::signatures::backtrack::Cut;
    use std::path::Path;

    fn set(rules: &str) -> RuleSet {
        let mut p = Parsed::default();
        p.parse_text(Path::new("t.cf"), rules);
        let s = RuleSet::compile(p);
        assert_eq!(s.errors(), 0, "{:?}", s.problems);
        s
    }

    fn new_input(msg: &str) -> ScanInput {
        ScanInput::new(
            Envelope::default(),
            Message::from_raw(msg.as_bytes(), 1 << 20),
        )
    }

    fn fired(s: &RuleSet, msg: &str) -> Vec<(String, u32)> {
        let input = ScanInput::new(
            Envelope::default(),
            Message::from_raw(msg.as_bytes(), 1 << 20),
        );
        let hits = s.scan(&input).hits;
        // The daemon's scan (no evidence, a match's existence enough where one hit is all
        // a rule can count) fires the same rules as many times, but for the lazy sub-rules
        // that no meta needed (see `a_sub_rule_only_metas_read_runs_where_a_meta_needs_it`).
        let quick = s.scan_until(&new_input(msg), None).unwrap().hits;
        let counts = |hits: &[Hit]| -> Vec<(usize, u32)> {
            hits.iter()
                .filter(|h| s.lazy_most[h.rule].is_nan())
                .map(|h| (h.rule, h.count))
                .collect()
        };
        assert_eq!(counts(&hits), counts(&quick), "{msg}");
        let mut v: Vec<(String, u32)> = hits
            .iter()
            .map(|h| (s.rule(h.rule).name.clone(), h.count))
            .collect();
        v.sort();
        v
    }

    /// The rules the daemon's scan fires, sorted: the lazy sub-rules no meta needed are
    /// not among them.
    fn daemon_names(s: &RuleSet, msg: &str) -> Vec<String> {
        let mut v: Vec<String> = s
            .scan_until(&new_input(msg), None)
            .unwrap()
            .hits
            .iter()
            .map(|h| s.rule(h.rule).name.clone())
            .collect();
        v.sort();
        v
    }

    fn names(s: &RuleSet, msg: &str) -> Vec<String> {
        fired(s, msg).into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn a_sub_rule_only_metas_read_runs_where_a_meta_needs_it() {
        // __WALLET has no literal: it would run over every body. SEXTORTION needs it only
        // where exactly one of the two claims is made; __UNREAD is read by nothing.
        let s = set(r#"
body     __HACKED   /\bhacked your (?:device|computer)\b/i
body     __VIDEO    /\brecorded (?:a )?video\b/i
body     __WALLET   /\b[13][a-km-zA-HJ-NP-Z1-9]{25,34}\b/
body     __UNREAD   /\b[0-9]{6}\b/
meta     SEXTORTION __HACKED + __VIDEO + __WALLET >= 2
score    SEXTORTION 3
body     __LOOSE    /\b(?:v[\W_]{0,2}[i1!|l][\W_]{0,2}[a@4][\W_]{0,2}g[\W_]{0,2}r[\W_]{0,2}[a@4]|c[\W_]{0,2}[i1!|l][\W_]{0,2}[a@4][\W_]{0,2}l[\W_]{0,2}[i1!|l][\W_]{0,2}s)\b/i
tflags   __LOOSE    multiple maxhits=5
body     __PLAIN    /\bviagra\b/i
tflags   __PLAIN    multiple maxhits=5
meta     OBFUSCATED __LOOSE > __PLAIN
score    OBFUSCATED 2
body     __FREE     /\bfree money\b/i
meta     FREE_HACKED __FREE && __HACKED
score    FREE_HACKED 1
"#);
        // The three without a literal of three characters.
        let lazy: Vec<&str> = s.lazy.iter().map(|&r| s.rule(r).name.as_str()).collect();
        assert_eq!(lazy, ["__WALLET", "__UNREAD", "__LOOSE"]);
        let wallet = "1BoatSLRHtKNngkdXEeobR76b53LETtpyT";
        let daemon = |msg: &str| daemon_names(&s, msg);
        // A sub-rule found through its literal waits too: with no `__HACKED`, FREE_HACKED
        // is false whatever `__FREE` counts, and nothing else reads it.
        let msg = "Subject: x\n\nfree money\n";
        assert_eq!(daemon(msg), Vec::<String>::new());
        assert_eq!(names(&s, msg), ["__FREE"]);
        // No claim: the meta is false whatever the wallet; the wallet rule is not run.
        let msg = format!("Subject: x\n\npay {wallet} now, code 123456\n");
        assert_eq!(daemon(&msg), Vec::<String>::new());
        assert_eq!(names(&s, &msg), ["__UNREAD", "__WALLET"]);
        // One claim: the wallet decides, so it runs, and the meta fires.
        let msg = format!("Subject: x\n\nI hacked your device. Pay {wallet}\n");
        assert_eq!(daemon(&msg), ["SEXTORTION", "__HACKED", "__WALLET"]);
        // Both claims: the two found through their literals run first (an open meta reads
        // them), which makes the meta true whatever the wallet, which is not run.
        let msg = format!("Subject: x\n\nI hacked your computer and recorded a video. {wallet}\n");
        assert_eq!(daemon(&msg), ["SEXTORTION", "__HACKED", "__VIDEO"]);
        // A count against a count: the loose rule must run, and counts as the full scan.
        let msg = "Subject: x\n\nv-i-agra viagra v_1_agra\n";
        assert_eq!(daemon(msg), ["OBFUSCATED", "__LOOSE", "__PLAIN"]);
        assert_eq!(
            fired(&s, msg),
            [
                ("OBFUSCATED".to_string(), 1),
                ("__LOOSE".to_string(), 3),
                ("__PLAIN".to_string(), 1)
            ]
        );
        // `__PLAIN` at its most (5): the loose rule cannot count more, the meta is false
        // without it.
        let msg = "Subject: x\n\nviagra viagra viagra viagra viagra viagra v-i-agra\n";
        assert_eq!(daemon(msg), ["__PLAIN"]);
        assert_eq!(names(&s, msg), ["__LOOSE", "__PLAIN"]);
    }

    #[test]
    fn a_meta_that_may_be_nan_is_left_open() {
        // `inf * 0 / 1` is NaN, and `NaN <= inf` false: the bounds must not decide it
        // true without `__B` (found by review; 400 digits parse to infinity).
        let inf = format!("1{}", "0".repeat(400));
        let s = set(&format!(
            "body __A /\\bzzzqqq\\b/\nbody __B /[a-z]{{5}}\\s[a-z]{{5}}/\n\
             meta M ({inf} * __A) / __B <= {inf}\nscore M 1\n"
        ));
        let msg = "Subject: x\n\nhello world\n";
        assert_eq!(daemon_names(&s, msg), ["__B"]);
        assert_eq!(names(&s, msg), ["__B"]);
    }

    const RULES: &str = r#"
header   SUBJ_FREE    Subject =~ /\bfree\b/i
score    SUBJ_FREE    1
header   SUBJ_CASE    Subject =~ /FREE/
score    SUBJ_CASE    1
header   FROM_BANK    From:name =~ /\bbank\b/i
score    FROM_BANK    1
header   FROM_ADDR    From:addr =~ /\@example\.com$/
score    FROM_ADDR    1
header   NO_DATE      Date !~ /./
score    NO_DATE      1
header   UNSET        X-Nope =~ /^missing$/ [if-unset: missing]
score    UNSET        1
header   HAS_MAILER   exists:X-Mailer
score    HAS_MAILER   1
header   FOLDED       X-Long =~ /one two/
score    FOLDED       1
body     BODY_CLICK   /click here/i
score    BODY_CLICK   1
body     BODY_LOOK    /money(?! back)/i
score    BODY_LOOK    1
body     BODY_MULTI   /win/i
tflags   BODY_MULTI   multiple maxhits=3
score    BODY_MULTI   0.5
rawbody  RAW_FONT     /<font size=7/i
score    RAW_FONT     1
uri      URI_TOP      /^https?:\/\/[^\/]+\.top\//i
score    URI_TOP      1
full     FULL_HDR     /^X-Mailer: spamkit/m
score    FULL_HDR     1
phrases  PH_PHARMA    body word perhit "cheap pills" "no prescription" "rx"
tflags   PH_PHARMA    maxhits=2
score    PH_PHARMA    1
phrases  PH_CASE      body case "ACT NOW"
score    PH_CASE      1
meta     META_BOTH    SUBJ_FREE && BODY_CLICK
score    META_BOTH    2
meta     __SUB        BODY_MULTI > 2
meta     META_COUNT   __SUB || (URI_TOP + RAW_FONT >= 2)
score    META_COUNT   1
"#;

    #[test]
    fn matching_semantics() {
        let s = set(RULES);
        let spam = "From: Your Bank <alerts@example.com>\r\nSubject: =?utf-8?B?RlJFRSBvZmZlcg==?=\r\nX-Mailer: spamkit 1.0\r\nX-Long: one\r\n two\r\nContent-Type: text/html\r\n\r\n<p>Click   here to win, win, win, win!</p><font size=7>cheap pills, CHEAP PILLS, no prescription, rx</font> money now <a href=\"http://x.shop.top/a\">ACT NOW</a>\r\n";
        let got = fired(&s, spam);
        let want: Vec<(String, u32)> = [
            ("BODY_CLICK", 1),
            ("BODY_LOOK", 1),
            ("BODY_MULTI", 3),
            ("FOLDED", 1),
            ("FROM_ADDR", 1),
            ("FROM_BANK", 1),
            ("FULL_HDR", 1),
            ("HAS_MAILER", 1),
            ("META_BOTH", 1),
            ("META_COUNT", 1),
            ("NO_DATE", 1),
            ("PH_CASE", 1),
            ("PH_PHARMA", 2),
            ("RAW_FONT", 1),
            ("SUBJ_CASE", 1),
            ("SUBJ_FREE", 1),
            ("UNSET", 1),
            ("URI_TOP", 1),
            ("__SUB", 1),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
        assert_eq!(got, want);

        let ham = "From: Alice <alice@example.org>\r\nDate: Mon, 1 Jan 2026 00:00:00 +0000\r\nSubject: freedom and prescriptions\r\n\r\nYour money back guarantee; act now. The rxjs library. See https://example.top.example.com/\r\n";
        assert_eq!(names(&s, ham), ["UNSET"]);
    }

    #[test]
    fn case_insensitive_rules_with_octets_past_ascii_fold_ascii_only() {
        // Perl on octets: `/i` folds the ASCII letters, the octets of "\u{e9}" match
        // themselves; the literal prefilter must agree, for linear and backtracking rules.
        let s = set(concat!(
            "body LINEAR /caf\\xC3\\xA9 au lait/i\n",
            "body BACKTRACKING /caf\\xC3\\xA9(?! noir)/i\n",
        ));
        assert_eq!(
            names(&s, "Subject: s\r\n\r\nUn CAF\u{e9} AU LAIT\r\n"),
            ["BACKTRACKING", "LINEAR"]
        );
        assert_eq!(
            names(&s, "Subject: s\r\n\r\nUn CAF\u{c9} AU LAIT\r\n"),
            Vec::<String>::new()
        );
        assert_eq!(
            names(&s, "Subject: s\r\n\r\ncaf\u{e9} noir\r\n"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn negated_rules_and_absent_headers() {
        let s = set("header NEG Subject !~ /hello/\nscore NEG 1\n");
        assert_eq!(names(&s, "Subject: hello\r\n\r\nx"), Vec::<String>::new());
        assert_eq!(names(&s, "Subject: bye\r\n\r\nx"), ["NEG"]);
        assert_eq!(names(&s, "From: a@b\r\n\r\nx"), ["NEG"]);
        // What rules do on an absent header is worked out once, for rules with and without
        // a literal, negated or on their `if-unset` text.
        let s = set("header U1 X-Foo =~ /^yes$/ [if-unset: yes]\nscore U1 1\n\
             header U2 X-Foo =~ /^yes$/ [if-unset: no]\nscore U2 1\n\
             header U3 X-Foo !~ /^.{3}/\nscore U3 1\n\
             header U4 X-Foo =~ /^.{0,3}$/\nscore U4 1\n");
        assert_eq!(names(&s, "Subject: a\r\n\r\nx"), ["U1", "U3", "U4"]);
        assert_eq!(names(&s, "X-Foo: yes\r\n\r\nx"), ["U1", "U2", "U4"]);
        assert_eq!(names(&s, "X-Foo: nope\r\n\r\nx"), Vec::<String>::new());
    }

    #[test]
    fn spamassassin_pseudo_headers_exist_and_match() {
        let mut p = Parsed::default();
        p.parse_text(
            Path::new("t.cf"),
            "header __TOCC exists:ToCc\nheader __MID exists:MESSAGEID\nheader __ANY exists:ALL\n\
             meta NO_TOCC !__TOCC\nscore NO_TOCC 1\nmeta NO_MID !__MID\nscore NO_MID 1\n\
             meta HAS_ANY __ANY\nscore HAS_ANY 1\n\
             header MID_LIST MESSAGEID =~ /\\@lists\\.example>/\nscore MID_LIST 1\n",
        );
        let s = RuleSet::compile(p);
        assert_eq!(
            names(&s, "Cc: a@b\r\nX-Message-Id: <1@lists.example>\r\n\r\nx"),
            ["HAS_ANY", "MID_LIST", "__ANY", "__MID", "__TOCC"]
        );
        assert_eq!(
            names(&s, "Subject: x\r\n\r\nx"),
            ["HAS_ANY", "NO_MID", "NO_TOCC", "__ANY"]
        );
    }

    #[test]
    fn scores_default_and_disable_as_in_spamassassin() {
        let mut p = Parsed::default();
        p.parse_text(
            Path::new("t.cf"),
            "body PLAIN /x/\nbody T_TRY /x/\nbody KIND /x/\ntflags KIND nice\n\
             body OFF /x/\nscore OFF 0\nbody __SUB /x/\nscore __SUB 0\n\
             meta USES __SUB && !OFF\nscore USES 2\n",
        );
        let s = RuleSet::compile(p);
        let score = |n: &str| {
            (0..s.len())
                .map(|i| s.rule(i))
                .find(|r| r.name == n)
                .unwrap()
                .score
        };
        assert_eq!(
            (score("PLAIN"), score("T_TRY"), score("KIND")),
            (1.0, 0.01, -1.0)
        );
        // A score of 0 turns a rule off; a sub-rule runs whatever its score.
        assert_eq!(
            names(&s, "Subject: x\r\n\r\nx"),
            ["KIND", "PLAIN", "T_TRY", "USES", "__SUB"]
        );
    }

    #[test]
    fn body_rules_match_within_one_paragraph_as_in_spamassassin() {
        let s = set(concat!(
            "body PARAS /^\\s*\\S/\ntflags PARAS multiple maxhits=3\n",
            "body ACROSS_LINE /click\\s+here/\n",
            "body ACROSS_PARA /here\\s+now/\n",
            "body LAST_WORD /\\bnow$/\n",
        ));
        let msg = "Subject: s\r\n\r\nplease click\r\nhere\r\n\r\nnow\r\n";
        // "click\nhere" is one paragraph ("click here"); "here" and "now" are two.
        assert_eq!(
            fired(&s, msg),
            [("ACROSS_LINE".to_string(), 1), ("PARAS".to_string(), 3)]
        );
        let msg = "Subject: s\r\n\r\nover here now\r\n";
        assert_eq!(names(&s, msg), ["ACROSS_PARA", "PARAS"]);
        // `$` is a paragraph's end: "now " ends with the space its line end became.
        let msg = "Subject: now\r\n\r\nx\r\n";
        assert_eq!(names(&s, msg), ["LAST_WORD", "PARAS"]);
        // A rule with a literal is searched on the paragraphs that hold it, each alone: every
        // hit on every one of them counts, and `^` and look-behind see the paragraph's start.
        let s = set(concat!(
            "body FREE /\\bfree\\b/\ntflags FREE multiple\n",
            "body FIRST_FREE /^free/\ntflags FIRST_FREE multiple\n",
            "body NOT_AFTER_TOLL /(?<!toll\\s)free/\n",
        ));
        let msg =
            "Subject: s\r\n\r\nfree\r\n\r\nbe free, free\r\n\r\nfreely\r\n\r\ntoll\r\n\r\nfree\r\n";
        assert_eq!(
            fired(&s, msg),
            [
                ("FIRST_FREE".to_string(), 3),
                ("FREE".to_string(), 4),
                ("NOT_AFTER_TOLL".to_string(), 1)
            ]
        );
        // "toll" ends the paragraph before: the look-behind does not see it.
        let msg = "Subject: s\r\n\r\ntoll\r\n\r\nfree\r\n";
        assert_eq!(names(&s, msg), ["FIRST_FREE", "FREE", "NOT_AFTER_TOLL"]);
    }

    #[test]
    fn mimeheader_rules_read_each_parts_headers() {
        let s = set(concat!(
            "mimeheader GIF_PART Content-Type =~ /^image\\/gif/\n",
            "mimeheader RAW_NAME Content-Type:raw =~ /;\\n\\s+name=\"a\\.gif\"$/s\n",
            "mimeheader NO_TEXT Content-Type !~ /text\\//\n",
            "mimeheader NO_PDF Content-Type !~ /pdf/\n",
            "mimeheader CID Content-ID =~ /./\n",
            "mimeheader ALL_CTE ALL =~ /^Content-Transfer-Encoding: base64$/m\n",
            "header TOP_GIF Content-Type =~ /gif/\n",
        ));
        let msg = "Subject: x\r\nMIME-Version: 1.0\r\n\
                   Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
                   --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
                   --b\r\nContent-Type: image/gif;\r\n\tname=\"a.gif\"\r\n\
                   Content-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n--b--\r\n";
        // NO_TEXT: one part is text, so it does not fire (no part may match a negated one).
        assert_eq!(
            names(&s, msg),
            ["ALL_CTE", "GIF_PART", "NO_PDF", "RAW_NAME"]
        );
        let plain = "Subject: x\r\nContent-Type: application/pdf\r\n\r\nx\r\n";
        assert_eq!(names(&s, plain), ["NO_TEXT"]);
    }

    #[test]
    fn problems_of_compilation() {
        let mut p = Parsed::default();
        p.parse_text(
            Path::new("t.cf"),
            "body A /(unclosed/\nscore A 1\nbody NOSCORE /x/\nmeta M1 A || MISSING\nscore M1 1\nmeta C1 C2\nmeta C2 C1\nscore C1 1\nscore C2 1\nscore ORPHAN 1\nbody NEG /y/\nscore NEG -1\n",
        );
        let s = RuleSet::compile(p);
        let got: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        for want in [
            "t.cf:1:8: A: unsupported regex: unclosed group",
            "t.cf:3:14: note: NOSCORE has no score (SpamAssassin's default 1 applies)",
            "t.cf:4:9: note: meta M1 refers to unknown rule(s) A, MISSING, counted as not hit",
            "t.cf:6:9: meta C1 is part of a cycle",
            "t.cf:7:9: meta C2 is part of a cycle",
            "t.cf:10:1: note: ORPHAN has a score, describe or tflags line but no test",
            "t.cf:11:10: note: NEG has a negative score without tflags nice",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "missing {want:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), 7, "{got:#?}");
        // The good rules still run.
        assert_eq!(names(&s, "Subject: x\r\n\r\ny"), ["NEG", "NOSCORE"]);
    }

    #[test]
    fn the_regexes_of_a_rule_set_have_a_memory_budget() {
        let one = regex_cost(
            &super::super::definition::parse_pattern(r"/\w{20}x/")
                .unwrap()
                .0,
        );
        let mut p = Parsed::default();
        let text: String = (0..6)
            .map(|i| format!("body BIG{i} /\\w{{20}}x/\nscore BIG{i} 1\n"))
            .collect::<String>()
            + "body SMALL /zorglub/\nscore SMALL 1\n";
        p.parse_text(Path::new("t.cf"), &text);
        let s = RuleSet::compile_within(p, 4 * one + 1000);
        // Four fit; the fifth and sixth are refused; a small one after them still fits.
        assert!(s.id("BIG3").is_some() && s.id("BIG4").is_none() && s.id("BIG5").is_none());
        assert!(s.id("SMALL").is_some());
        assert_eq!(s.errors(), 2);
        assert!(
            s.problems[0].message.contains("would take more than"),
            "{:?}",
            s.problems
        );
    }

    #[test]
    fn backtracking_is_bounded() {
        let s = set("body EVIL /(a+)+\\1b/\nscore EVIL 1\n");
        assert_eq!(s.stats.fancy, 1);
        // The `b` lets the relaxed pattern match, so the backtracking engine does run.
        let msg = format!("Subject: x\r\n\r\n{}cb\r\n", "a".repeat(5000));
        let input = ScanInput::new(
            Envelope::default(),
            Message::from_raw(msg.as_bytes(), 1 << 20),
        );
        let scan = s.scan(&input);
        assert!(scan.hits.is_empty());
        assert_eq!(scan.cut, [(s.id("EVIL").unwrap(), Cut::Steps)]);
    }

    #[test]
    fn literal_prefilter_is_used() {
        let s = set("body A /viagra/i\nscore A 1\nbody B /\\d{5}/\nscore B 1\n");
        assert_eq!(s.stats.prefiltered, 1);
        assert_eq!(s.body.always.len(), 1);
        assert_eq!(names(&s, "Subject: x\r\n\r\nVIAGRA 12345"), ["A", "B"]);
    }

    #[test]
    fn a_repeated_part_runs_only_where_its_literals_occur_as_often() {
        let s = set(concat!(
            "body FORM /(?:(?:name|phone|age):\\s*_+\\s*){3}/i\nscore FORM 1\n",
            "header HFORM Subject =~ /(?:(?:name|phone|age)=\\d\\s*){2}/\nscore HFORM 1\n",
        ));
        assert_eq!(s.body.times.values().copied().collect::<Vec<_>>(), [3]);
        assert_eq!(s.headers.len(), 1);
        assert_eq!(
            s.headers[0].1.times.values().copied().collect::<Vec<_>>(),
            [2]
        );
        let form = "Name: ____ Phone: ____\r\nAge: ___";
        // One paragraph holds three fields: a match.
        let msg = format!("Subject: name=1 age=2\r\n\r\nHello\r\n\r\n{form}\r\n");
        assert_eq!(names(&s, &msg), ["FORM", "HFORM"]);
        // Three fields in three paragraphs, as many literals in all, one per line: none.
        let apart = "Name: ____\r\n\r\nPhone: ____\r\n\r\nAge: ___\r\n";
        let msg = format!("Subject: name=1 x age=2\r\n\r\n{apart}");
        assert!(names(&s, &msg).is_empty());
        // Enough literals on a line, not matching: still none.
        let msg = "Subject: name age phone\r\n\r\nname, phone and age, please\r\n";
        assert!(names(&s, msg).is_empty());
    }

    #[test]
    fn line_local_rules_on_long_texts_run_on_their_literals_lines_and_find_the_same() {
        let s = set(concat!(
            "full ATT /^(?:Content-Type:|[ \\t])[^\\n]*\\bname=[ \\t]*\"?[^\"\\n;]*\\.exe(?:[\";\\s]|$)/mi\n",
            "score ATT 1\n",
            "full CROSS /name=\\s*\"?x\\.exe/i\nscore CROSS 1\n",
            "rawbody RAWN /\\bpay\\b[^\\n]{0,9}now/i\ntflags RAWN multiple maxhits=5\nscore RAWN 1\n",
            "full TWICE /(?:zz\\d[^\\n]*){2}/\nscore TWICE 1\n",
        ));
        let rule = |name: &str| &s.rules[s.by_name[name]].kind;
        assert!(matches!(rule("ATT"), Kind::Regex { one_line: true, .. }));
        assert!(matches!(
            rule("CROSS"),
            Kind::Regex {
                one_line: false,
                ..
            }
        ));
        assert!(s.full.one_line && s.rawbody.one_line);
        // Longer than LINES_FROM, the literals on a few of many lines.
        let filler = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n".repeat(200);
        let msg = |part: &str| {
            format!(
                "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
                 Content-Type: text/plain\r\n\r\npay it now, pay them now\r\nzz1 zz2\r\n\
                 zz3\r\n--b\r\n{part}\r\n\r\n{filler}--b--\r\n"
            )
        };
        let exe = "Content-Type: application/octet-stream;\r\n\tname=\"x.exe\"";
        assert_eq!(
            fired(&s, &msg(exe)),
            [
                ("ATT".to_string(), 1),
                ("CROSS".to_string(), 1),
                ("RAWN".to_string(), 2),
                ("TWICE".to_string(), 1)
            ]
        );
        // "name=" on a line of its own, the file name folded onto the next: only the
        // pattern that may cross lines sees it (searched over the whole text).
        let folded = "Content-Type: application/octet-stream; name=\r\n \"x.exe\"";
        assert_eq!(
            names(&s, &msg(folded)),
            ["CROSS", "RAWN", "TWICE"],
            "the line-local ATT does not see a name folded away from its name="
        );
        let harmless = "Content-Type: application/pdf; name=\"x.pdf\"";
        assert_eq!(names(&s, &msg(harmless)), ["RAWN", "TWICE"]);
        // More lines with the literal than are searched one by one: the whole text is, and
        // finds what the lines would.
        let many = format!("{}{exe}", " name=x.pdf\r\n".repeat(300));
        assert_eq!(
            fired(&s, &msg(&many)),
            [
                ("ATT".to_string(), 1),
                ("CROSS".to_string(), 1),
                ("RAWN".to_string(), 2),
                ("TWICE".to_string(), 1)
            ]
        );
        let many_harmless = format!("{}{harmless}", " name=x.pdf\r\n".repeat(300));
        assert_eq!(names(&s, &msg(&many_harmless)), ["RAWN", "TWICE"]);
    }

    #[test]
    fn perl_syntax_the_regex_crate_lacks() {
        let s = set(concat!(
            "header OCT Subject:raw =~ /\\015\\012?x\\0/\nscore OCT 1\n",
            "body BRACKET /[({[<]deal[)}\\]>]/\nscore BRACKET 1\n",
            "body POSIX /[[:digit:]]{3}-[[:alpha:]]+\\Z/\nscore POSIX 1\n",
            "body BACKREF /(\\w)\\1\\1/\nscore BACKREF 1\n",
            "body HSPACE /a\\hb/\nscore HSPACE 1\n",
        ));
        assert_eq!(s.stats.fancy, 1);
        let msg = "Subject: y\r\n\r\nbig [deal] today aaa a b 123-end";
        assert_eq!(names(&s, msg), ["BACKREF", "BRACKET", "HSPACE", "POSIX"]);
        let input = ScanInput::new(
            Envelope::default(),
            Message {
                headers: vec![("Subject".into(), b"a\rx\0".to_vec())],
                ..Message::default()
            },
        );
        let hits = s.scan(&input).hits;
        assert_eq!(hits.len(), 1);
        assert_eq!(s.rule(hits[0].rule).name, "OCT");
    }

    #[test]
    fn explain_evidence_has_context() {
        let s = set("body A /lottery winner/i\nscore A 1\n");
        let input = ScanInput::new(
            Envelope::default(),
            Message::from_raw(
                b"Subject: x\r\n\r\nDear friend, you are our Lottery Winner this week.\r\n",
                1 << 20,
            ),
        );
        let hits = s.scan(&input).hits;
        let ev = hits[0].evidence.as_ref().unwrap();
        assert_eq!(ev.matched, "Lottery Winner");
        assert!(ev.context.contains("you are our Lottery Winner this week"));
    }
}
