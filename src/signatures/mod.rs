//! Content signatures: rule files (SpamAssassin syntax plus phrase lists) compiled into one
//! rule set that scans each part of a message once; and the built-in GTUBE test.
//!
//! - [`rules`]: what rule files define; [`parse`]: rule files to definitions, every problem
//!   with file:line:col (`definition` reads a rule's pattern or list, [`meta`] its expression).
//! - [`conditional`]: which lines `if`/`ifplugin` blocks let take effect; [`replace`]:
//!   SpamAssassin's ReplaceTags, written into rule patterns once every file is read.
//! - [`perl`]: Perl regexes in the `regex` crate's syntax (Perl's byte semantics).
//! - [`literals`]: the literals a regex requires, for the Aho-Corasick prefilter; [`lines`]:
//!   whether its matches stay within a line, so only the lines holding one need searching.
//! - [`multi`]: many literals found at once (sampling for long ones, a DFA for short ones).
//! - [`relax`]: a linear over-approximation of a backtracking regex, to skip it.
//! - [`linear`]: linear regexes on long texts, zone by zone under the deadline.
//! - [`backtrack`]: backtracking rules searched zone by zone under step and time budgets.
//! - [`ruleset`]: the compiled rule set; `run`: the scan of a message.
//! - [`examples`]: the spam and ham examples kept next to the rules.

pub mod backtrack;
pub mod conditional;
mod definition;
pub mod evals;
pub mod examples;
pub mod gtube;
pub mod linear;
pub mod lines;
pub mod literals;
pub mod meta;
pub mod multi;
pub mod parse;
pub mod perl;
pub mod relax;
pub mod replace;
pub mod rules;
pub mod ruleset;
mod run;

use std::sync::Arc;

use std::time::Instant;

use crate::scan::{Compute, ScanInput, Symbol};
use backtrack::Cut;
use ruleset::RuleSet;

/// The stage that runs a rule set: one symbol per rule that fired (sub-rules excepted).
pub struct SignatureStage {
    pub rules: Arc<RuleSet>,
}

impl Compute for SignatureStage {
    fn name(&self) -> &'static str {
        "signatures"
    }

    fn may_run_long(&self) -> bool {
        self.rules.stats.fancy > 0
    }

    fn scan(&self, input: &ScanInput, deadline: Instant) -> Vec<Symbol> {
        let scan = match self.rules.scan_until(input, Some(deadline)) {
            Ok(scan) => scan,
            Err(_) => return vec![Symbol::timed_out(self.name())],
        };
        let mut out: Vec<Symbol> = scan
            .hits
            .iter()
            .map(|h| (self.rules.rule(h.rule), h.count))
            .filter(|(r, _)| !r.name.starts_with("__"))
            .map(|(r, count)| {
                let detail = if count > 1 {
                    format!("{} ({count} hits)", r.describe)
                } else {
                    r.describe.clone()
                };
                Symbol::new(r.name.clone(), r.score * f64::from(count), detail)
            })
            .collect();
        for (rule, cut) in scan.cut {
            let name = &self.rules.rule(rule).name;
            let (symbol, why) = match cut {
                Cut::Steps => ("RULE_STEP_LIMIT", "the backtracking step limit"),
                _ => ("RULE_TIME_LIMIT", "its time limit"),
            };
            out.push(Symbol::new(
                symbol,
                0.0,
                format!("{name} hit {why} on part of the text, which counts as not matching"),
            ));
        }
        out
    }
}
