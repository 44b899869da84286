//! How close repmilter's verdicts are to SpamAssassin's own with SpamAssassin's stock rules,
//! on a fixed sample of the public corpus: the measure issue 12 ("SpamAssassin rules that
//! judge like SpamAssassin") is judged by, shared by `cargo bench --bench sa_parity` (which
//! prints it) and `tests/sa_parity.rs` (which holds it to its targets in CI).
//!
//! SpamAssassin (`spamassassin -L -t --mbox`, network tests and Bayes off) and repmilter (the
//! rules of `/usr/share/spamassassin`, scanned in process) read the same messages: every 20th
//! message of the corpus in name order. Compared per (message, rule) over the rules repmilter
//! runs (regex, header, mimeheader and meta rules, and the eval tests it implements; not the
//! eval and plugin rules it leaves out): the precision and recall of repmilter's hits against
//! SpamAssassin's, the share of messages whose total scores are within 1.0, the rules that
//! differ most, and the rules repmilter does not run by the score they cost.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use repmilter::message::{Envelope, Message};
use repmilter::scan::ScanInput;
use repmilter::signatures::ruleset::RuleSet;

use super::corpus;

const EVERY: usize = 20;
/// The header SpamAssassin is told to add, with the score and the rules that hit.
const MARK: &str = "X-Spam-Parity-7f3a";

fn sample(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = corpus::FOLDERS
        .iter()
        .flat_map(|(folder, _)| corpus::files(dir, folder))
        .collect();
    files.sort();
    files
        .into_iter()
        .step_by(EVERY)
        .enumerate()
        .map(|(i, f)| {
            let msg = corpus::message(&f).unwrap();
            // Numbered, so that SpamAssassin's answers are matched to their messages
            // whatever its mbox reader makes of them; and as an mbox stores it: a body line
            // starting "From " gets a '>' (both sides read the same bytes).
            let mut escaped = format!("{INDEX}: {i}\n").into_bytes();
            for line in msg.split_inclusive(|&b| b == b'\n') {
                if line.starts_with(b"From ") {
                    escaped.push(b'>');
                }
                escaped.extend_from_slice(line);
            }
            (f, escaped)
        })
        .collect()
}

/// The header numbering the messages.
const INDEX: &str = "X-Parity-Index";

/// SpamAssassin's score and rule hits for each message (None: no answer for it).
/// Rules whose result SpamAssassin does not settle: those whose pattern holds a captured
/// template (`%{NAME}`, 4.0's capture rules) match only if the rule capturing NAME ran
/// before them, and the order changes from one run to the next (one run of this harness
/// found `GB_CUSTOM_HTM_URI` on 4 messages, three runs of the same code on none). With the
/// metas that use them, directly or not.
fn unsettled(dir: &Path) -> BTreeSet<String> {
    let mut lines = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "cf")
                && let Ok(text) = std::fs::read_to_string(e.path())
            {
                lines.extend(text.lines().map(str::to_string));
            }
        }
    }
    let defs: Vec<(&str, &str, &str)> = lines
        .iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (kind, name) = (words.next()?, words.next()?);
            Some((kind, name, l.as_str()))
        })
        .filter(|(kind, _, _)| !kind.starts_with('#'))
        .collect();
    let mut out: BTreeSet<String> = defs
        .iter()
        .filter(|(kind, _, line)| *kind != "meta" && line.contains("%{"))
        .map(|(_, name, _)| name.to_string())
        .collect();
    loop {
        let more: Vec<String> = defs
            .iter()
            .filter(|(kind, name, line)| {
                *kind == "meta"
                    && !out.contains(*name)
                    && line
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .any(|w| out.contains(w))
            })
            .map(|(_, name, _)| name.to_string())
            .collect();
        if more.is_empty() {
            return out;
        }
        out.extend(more);
    }
}

fn spamassassin(messages: &[(PathBuf, Vec<u8>)]) -> Vec<Option<(f64, BTreeSet<String>)>> {
    let mut mbox = Vec::new();
    for (_, m) in messages {
        mbox.extend_from_slice(b"From parity@example.invalid  Thu Jan  1 00:00:00 2026\n");
        mbox.extend_from_slice(m);
        if !m.ends_with(b"\n") {
            mbox.push(b'\n');
        }
        mbox.push(b'\n');
    }
    let mut child = Command::new("spamassassin")
        .args(["-L", "-t", "--mbox"])
        .arg("--cf=use_bayes 0")
        .arg("--cf=add_header all Parity-7f3a _SCORE_ _TESTS(,)_")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spamassassin runs");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&mbox));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The header and its folded lines, then the message's number (SpamAssassin puts its
    // headers above the message's own).
    let mut found = vec![None; messages.len()];
    let mut pending = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(n) = line.strip_prefix(INDEX).and_then(|r| r.strip_prefix(':')) {
            if let (Ok(i), Some(p)) = (n.trim().parse::<usize>(), pending.take())
                && i < found.len()
            {
                found[i] = Some(p);
            }
            continue;
        }
        let Some(rest) = line.strip_prefix(MARK).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let mut value = rest.trim().to_string();
        while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
            value.push_str(next.trim());
            lines.next();
        }
        let (score, tests) = value.split_once(' ').unwrap_or((value.as_str(), ""));
        pending = Some((
            score.parse().unwrap_or(f64::NAN),
            tests
                .split(',')
                .filter(|t| !t.is_empty() && *t != "none")
                .map(str::to_string)
                .collect(),
        ));
    }
    found
}

/// The three measures, in percent.
pub struct Parity {
    pub precision: f64,
    pub recall: f64,
    pub close: f64,
    /// Messages where the daemon's scan (sub-rules that only metas read run only where a
    /// meta's truth depends on them) and the full scan of `check` fire different rules or
    /// counts: the same verdict is owed either way.
    pub lazy_differs: usize,
}

/// Runs both on the sample of the corpus in `dir`, printing what differs.
pub fn run(dir: &Path) -> Parity {
    let messages = sample(dir);
    println!(
        "{} messages (every {EVERY}th of the corpus)",
        messages.len()
    );
    let answered = spamassassin(&messages);
    let missing = answered.iter().filter(|a| a.is_none()).count();
    println!(
        "SpamAssassin answered for {} of them",
        messages.len() - missing
    );
    let (messages, theirs): (Vec<_>, Vec<_>) = messages
        .into_iter()
        .zip(answered)
        .filter_map(|(m, a)| Some((m, a?)))
        .unzip();
    let rules = RuleSet::load(&[PathBuf::from("/usr/share/spamassassin")]);
    // The rules compared: those repmilter runs itself.
    let runs = |target: &str| !matches!(target, "eval/plugin (not run)" | "disabled (score 0)");
    let unsettled = unsettled(Path::new("/usr/share/spamassassin"));
    let compared: BTreeSet<String> = (0..rules.len())
        .map(|i| rules.rule(i))
        .filter(|r| runs(r.target) && !r.name.starts_with("__") && !unsettled.contains(&r.name))
        .map(|r| r.name.clone())
        .collect();
    if !unsettled.is_empty() {
        println!(
            "left out on both sides (SpamAssassin's result varies from run to run): {}",
            unsettled.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    let mut by_rule: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut close = 0;
    let mut lazy_differs = 0;
    // Rules SpamAssassin hit that repmilter does not run (evals and plugins it lacks), with
    // the score they cost on messages whose totals differ by more than 1.0.
    let mut missing: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    // `PARITY_RULE=NAME` lists the messages where the two differ on that rule.
    let watch = std::env::var("PARITY_RULE").ok();
    for ((path, m), (their_score, their_hits)) in messages.iter().zip(&theirs) {
        let unsettled_score: f64 = their_hits
            .iter()
            .filter(|r| unsettled.contains(*r))
            .filter_map(|r| rules.id(r))
            .map(|i| rules.rule(i).score)
            .sum();
        let their_score = their_score - unsettled_score;
        let input = ScanInput::new(Envelope::default(), Message::from_raw(m, 10 << 20));
        // As the daemon scans.
        let hits = rules.scan_until(&input, None).expect("no deadline").hits;
        let fired = |hits: &[repmilter::signatures::ruleset::Hit]| -> BTreeMap<String, u32> {
            hits.iter()
                .map(|h| (rules.rule(h.rule).name.clone(), h.count))
                .filter(|(n, _)| !n.starts_with("__"))
                .collect()
        };
        let every_rule = fired(&rules.scan(&input).hits);
        if fired(&hits) != every_rule {
            lazy_differs += 1;
            println!(
                "{}: the daemon's scan fires {:?}, the full scan {every_rule:?}",
                path.display(),
                fired(&hits)
            );
        }
        let ours: BTreeSet<String> = hits
            .iter()
            .map(|h| rules.rule(h.rule).name.clone())
            .filter(|n| !n.starts_with("__"))
            .collect();
        let our_score: f64 = hits
            .iter()
            .map(|h| rules.rule(h.rule))
            .filter(|r| !r.name.starts_with("__") && !unsettled.contains(&r.name))
            .map(|r| r.score)
            .sum();
        if (our_score - their_score).abs() <= 1.0 {
            close += 1;
        } else {
            for r in their_hits.iter().filter(|r| !compared.contains(*r)) {
                let score = rules.id(r).map_or(0.0, |i| rules.rule(i).score);
                let e = missing.entry(r.clone()).or_default();
                e.0 += 1;
                e.1 += score;
            }
        }
        if let Some(w) = &watch
            && ours.contains(w) != their_hits.contains(w)
        {
            let who = if ours.contains(w) {
                "repmilter"
            } else {
                "SpamAssassin"
            };
            println!("{w}: only {who} on {}", path.display());
        }
        for r in ours.iter().filter(|r| compared.contains(*r)) {
            if their_hits.contains(r) {
                tp += 1;
            } else {
                fp += 1;
                by_rule.entry(r.clone()).or_default().0 += 1;
            }
        }
        for r in their_hits.iter().filter(|r| compared.contains(*r)) {
            if !ours.contains(r) {
                fn_ += 1;
                by_rule.entry(r.clone()).or_default().1 += 1;
            }
        }
    }
    let pct = |a: usize, b: usize| 100.0 * a as f64 / (a + b).max(1) as f64;
    let parity = Parity {
        precision: pct(tp, fp),
        recall: pct(tp, fn_),
        close: 100.0 * close as f64 / messages.len().max(1) as f64,
        lazy_differs,
    };
    println!(
        "over {} rules repmilter runs: precision {:.1}% ({tp} of {} hits), recall {:.1}% ({tp} of {}); total score within 1.0 of SpamAssassin's on {:.1}% of messages",
        compared.len(),
        pct(tp, fp),
        tp + fp,
        pct(tp, fn_),
        tp + fn_,
        100.0 * close as f64 / messages.len() as f64
    );
    println!(
        "messages where the daemon's scan and the full scan differ: {lazy_differs} of {}",
        messages.len()
    );
    let mut worst: Vec<(&String, &(usize, usize))> = by_rule.iter().collect();
    worst.sort_by_key(|(n, (f, m))| (std::cmp::Reverse(f + m), n.to_string()));
    println!("rules that differ most (hits only repmilter has / only SpamAssassin has):");
    for (name, (only_ours, only_theirs)) in worst.into_iter().take(20) {
        println!("  {name:<32} {only_ours:>4} / {only_theirs:>4}");
    }
    let mut missing: Vec<(String, (usize, f64))> = missing.into_iter().collect();
    missing.sort_by(|a, b| b.1.1.abs().total_cmp(&a.1.1.abs()));
    println!(
        "rules repmilter does not run, on the messages whose scores differ (messages, score summed):"
    );
    for (name, (n, score)) in missing.into_iter().take(25) {
        println!("  {name:<32} {n:>4} {score:>8.1}");
    }
    parity
}
