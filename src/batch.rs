//! `repmilter check` on many saved messages at once (a directory, or several files): each
//! message scored through the daemon's pipeline, one line (or JSON object) per message as it
//! goes, then a summary table. The rule author's everyday loop: edit a rule, run it over the
//! spam and ham folders, compare.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::engine::Engine;
use crate::message::{Envelope, Message};
use crate::policy::Action;
use crate::scan::ScanInput;

/// One message's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    pub path: PathBuf,
    pub action: Action,
    pub score: f64,
    pub symbols: Vec<(String, f64)>,
}

/// What a batch came to.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub messages: u64,
    pub by_action: BTreeMap<String, u64>,
    /// Messages each symbol was added to.
    pub symbols: BTreeMap<String, u64>,
    /// Files that could not be read, each with why.
    pub unreadable: Vec<(PathBuf, String)>,
    #[serde(skip)]
    pub elapsed: Duration,
}

impl Summary {
    /// Messages judged anything but accept.
    pub fn flagged(&self) -> u64 {
        self.messages - self.by_action.get("accept").copied().unwrap_or(0)
    }
}

/// Symbols listed in the summary table.
const TOP_SYMBOLS: usize = 20;

/// Scores every file in `files` with `engine` on `rt`, calling `each` with each verdict (in
/// file order) and `progress` after each file.
pub fn run(
    engine: &Engine,
    rt: &tokio::runtime::Runtime,
    files: &[PathBuf],
    envelope: &Envelope,
    read: impl Fn(&Path) -> Result<Vec<u8>, String>,
    mut each: impl FnMut(&Scored),
    mut progress: impl FnMut(),
) -> Summary {
    let started = Instant::now();
    let mut sum = Summary::default();
    for path in files {
        let raw = match read(path) {
            Ok(raw) => raw,
            Err(e) => {
                sum.unreadable.push((path.clone(), e));
                progress();
                continue;
            }
        };
        let input = saved_message(&engine.config, envelope.clone(), &raw);
        let (verdict, decision) = rt.block_on(engine.judge(Arc::new(input)));
        let scored = Scored {
            path: path.clone(),
            action: decision.action,
            score: verdict.score,
            symbols: verdict
                .symbols
                .iter()
                .map(|s| (s.name.clone(), s.score))
                .collect(),
        };
        sum.messages += 1;
        *sum.by_action
            .entry(decision.action.to_string())
            .or_default() += 1;
        for (name, _) in &scored.symbols {
            *sum.symbols.entry(name.clone()).or_default() += 1;
        }
        each(&scored);
        progress();
    }
    sum.elapsed = started.elapsed();
    sum
}

/// A saved message as the daemon would have seen it: without the mbox `From ` line it
/// starts with (no MTA passes it on, and no header is), cut at `max_message_size`, with the
/// trusted networks the Received chain is read with.
pub fn saved_message(config: &Config, envelope: Envelope, raw: &[u8]) -> ScanInput {
    let mut input = ScanInput::new(
        envelope,
        Message::from_raw(
            crate::feedback::report::strip_mbox_line(raw),
            config.milter.max_message_size,
        ),
    );
    if !config.trust.networks.is_empty() {
        input.trusted = Some(Arc::from(config.trust.networks.clone()));
    }
    input
}

/// One line per message: path, action, score, symbols.
pub fn line(s: &Scored) -> String {
    let symbols: Vec<String> = s
        .symbols
        .iter()
        .map(|(n, sc)| format!("{n}({sc:.1})"))
        .collect();
    format!(
        "{}: {} {:.1} {}",
        s.path.display(),
        s.action,
        s.score,
        symbols.join(",")
    )
}

/// The summary as tables: messages by action, the most frequent symbols, unreadable files.
pub fn table(sum: &Summary) -> String {
    let mut out = String::new();
    let rate = sum.messages as f64 / sum.elapsed.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "{} messages in {:.2} s ({:.0} per second), {} flagged, {} unreadable",
        sum.messages,
        sum.elapsed.as_secs_f64(),
        rate,
        sum.flagged(),
        sum.unreadable.len()
    );
    let pct = |n: u64| {
        if sum.messages == 0 {
            0.0
        } else {
            n as f64 * 100.0 / sum.messages as f64
        }
    };
    let width = sum
        .by_action
        .keys()
        .chain(sum.symbols.keys())
        .map(String::len)
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "\n  {:<width$}  {:>8}  {:>6}",
        "action", "messages", "share"
    );
    for a in crate::metrics::ACTIONS {
        if let Some(&n) = sum.by_action.get(a) {
            let _ = writeln!(out, "  {a:<width$}  {n:>8}  {:>5.1}%", pct(n));
        }
    }
    let mut top: Vec<(&String, &u64)> = sum.symbols.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    if !top.is_empty() {
        let _ = writeln!(
            out,
            "\n  {:<width$}  {:>8}  {:>6}",
            "symbol", "messages", "share"
        );
        for (name, &n) in top.into_iter().take(TOP_SYMBOLS) {
            let _ = writeln!(out, "  {name:<width$}  {n:>8}  {:>5.1}%", pct(n));
        }
    }
    if !sum.unreadable.is_empty() {
        out.push_str("\nunreadable:\n");
        for (p, why) in &sum.unreadable {
            let _ = writeln!(out, "  {}: {why}", p.display());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_actions_and_symbols() {
        let mut sum = Summary {
            messages: 4,
            elapsed: Duration::from_secs(2),
            ..Summary::default()
        };
        sum.by_action.insert("accept".into(), 3);
        sum.by_action.insert("reject".into(), 1);
        sum.symbols.insert("GTUBE".into(), 1);
        sum.symbols.insert("HTML_MESSAGE".into(), 2);
        sum.unreadable
            .push(("/x/gone.eml".into(), "No such file".into()));
        let t = table(&sum);
        assert!(
            t.starts_with("4 messages in 2.00 s (2 per second), 1 flagged, 1 unreadable"),
            "{t}"
        );
        let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        for want in [
            vec!["accept", "3", "75.0%"],
            vec!["reject", "1", "25.0%"],
            vec!["HTML_MESSAGE", "2", "50.0%"],
            vec!["GTUBE", "1", "25.0%"],
        ] {
            assert!(rows.contains(&want), "missing {want:?} in\n{t}");
        }
        // Most frequent symbol first.
        assert!(t.find("HTML_MESSAGE").unwrap() < t.find("GTUBE").unwrap());
        assert!(t.contains("  /x/gone.eml: No such file"), "{t}");
    }
}
