//! How the time to judge a message spreads over the SpamAssassin public corpus (fetched by
//! `benches/fetch-corpus.sh` when it is not there): each message read as `repmilter check`
//! reads it and judged through the daemon's pipeline, in one thread, three passes, the best
//! of each message's three times kept. It prints the mean, median, p90, p99 and slowest, the
//! share of the time the slowest 1% take, and the slowest messages with their sizes: the
//! messages that make the p99 latency of issue 13, to profile (`valgrind --tool=callgrind`
//! on `repmilter check FILE...`).
//!
//! Run: `cargo bench --bench tail` (the shipped config), or `cargo bench --bench tail --
//! CONFIG` (relative rule paths are read from the config file's folder, as `serve` does).
//! Under `cargo test` it judges the first messages once, to show that it runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[path = "common/corpus.rs"]
mod corpus;

use repmilter::config::Config;
use repmilter::engine::Engine;
use repmilter::message::Envelope;
use repmilter::signatures::ruleset::RuleSet;

/// Passes over the corpus; each message keeps its fastest.
const PASSES: usize = 3;

/// Slowest messages listed.
const LISTED: usize = 15;

/// Messages judged under `cargo test`, once each.
const TESTED: usize = 50;

fn main() {
    // `cargo bench` passes `--bench`; anything else is the config.
    let measuring = std::env::args().any(|a| a == "--bench");
    let config_path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("config/repmilter.toml"),
            PathBuf::from,
        );
    let config =
        Config::load(&config_path).unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));
    let rules = RuleSet::load(&config.rules.paths);
    assert!(rules.problems.is_empty(), "{:?}", rules.problems);
    let rt = repmilter::daemon::runtime();
    let _in_runtime = rt.enter();
    let engine = Engine::with_rules(config.clone(), Arc::new(rules));

    let dir = corpus::fetched();
    let mut messages: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for (folder, _) in corpus::FOLDERS {
        for path in corpus::files(&dir, folder) {
            if let Ok(raw) = std::fs::read(&path) {
                messages.push((path, raw));
            }
        }
    }
    assert!(!messages.is_empty(), "no messages in {}", dir.display());
    let passes = if measuring {
        PASSES
    } else {
        messages.truncate(TESTED);
        1
    };

    let mut best = vec![f64::MAX; messages.len()];
    let mut flagged = 0;
    for pass in 0..passes {
        for (i, (_, raw)) in messages.iter().enumerate() {
            let started = Instant::now();
            let input = repmilter::batch::saved_message(&config, Envelope::default(), raw);
            let (_, decision) = rt.block_on(engine.judge(Arc::new(input)));
            best[i] = best[i].min(started.elapsed().as_secs_f64() * 1e6);
            if pass == 0 && decision.action != repmilter::policy::Action::Accept {
                flagged += 1;
            }
        }
    }

    let mut sorted = best.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let total: f64 = sorted.iter().sum();
    let at = |q: f64| sorted[((n as f64 * q) as usize).min(n - 1)];
    let slowest_1pc: f64 = sorted[n - n.div_ceil(100)..].iter().sum();
    println!(
        "tail: {n} messages ({} config, {flagged} not accepted), best of {passes} passes, µs a message",
        config_path.display()
    );
    println!(
        "mean {:.1}  median {:.1}  p90 {:.1}  p99 {:.1}  slowest {:.1}; the slowest 1% take {:.1}% of the time",
        total / n as f64,
        at(0.5),
        at(0.9),
        at(0.99),
        sorted[n - 1],
        slowest_1pc / total * 100.0
    );
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| best[*b].total_cmp(&best[*a]));
    for &i in order.iter().take(LISTED) {
        let (path, raw) = &messages[i];
        let name = path.strip_prefix(&dir).unwrap_or(path);
        println!(
            "{:10.1} µs {:8} bytes  {}",
            best[i],
            raw.len(),
            name.display()
        );
    }
}
