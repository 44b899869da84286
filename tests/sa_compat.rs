//! SpamAssassin compatibility, measured on the rule set that Debian's `spamassassin` package
//! installs in /usr/share/spamassassin: at least 90% of its regex rules must load.

mod common;

use std::path::{Path, PathBuf};

use repmilter::signatures::ruleset::RuleSet;

#[test]
fn debian_spamassassin_rules_load() {
    let dir = Path::new("/usr/share/spamassassin");
    if !dir.join("72_active.cf").exists() {
        common::skip("/usr/share/spamassassin is missing (.ci/run installs spamassassin)");
        return;
    }
    let rules = RuleSet::load(&[PathBuf::from(dir)]);
    let s = &rules.stats;
    let regex_kinds = ["header", "body", "rawbody", "full", "uri"];
    let loaded: usize = regex_kinds
        .iter()
        .map(|k| s.by_kind.get(k).copied().unwrap_or(0))
        .sum();
    let defined = loaded + s.unsupported.len();
    let share = loaded as f64 / defined as f64;
    eprintln!(
        "SpamAssassin rules: {loaded} of {defined} regex rules load ({:.1}%), {} metas, {} eval and {} plugin rules not run, {} on the backtracking engine; unsupported: {:?}",
        share * 100.0,
        s.by_kind.get("meta").copied().unwrap_or(0),
        s.eval,
        s.plugin,
        s.fancy,
        s.unsupported
    );
    assert!(
        defined > 1000,
        "only {defined} regex rules found: is the rule set complete?"
    );
    assert!(
        share >= 0.90,
        "only {:.1}% of the regex rules load",
        share * 100.0
    );
}
