//! Content signatures: rule files (SpamAssassin syntax plus phrase lists) compiled into one
//! rule set that scans each part of a message once; and the built-in GTUBE test.
//!
//! - [`parse`]: rule files to definitions, every problem with file:line:col.
//! - [`literals`]: the literals a regex requires, for the Aho-Corasick prefilter.
//! - [`multi`]: many literals found at once (sampling for long ones, a DFA for short ones).
//! - [`relax`]: a linear over-approximation of a backtracking regex, to skip it.
//! - [`backtrack`]: backtracking rules searched zone by zone under step and time budgets.
//! - [`engine`]: the compiled rule set and the scan.

pub mod backtrack;
pub mod engine;
pub mod gtube;
pub mod literals;
pub mod multi;
pub mod parse;
pub mod relax;

use std::sync::Arc;

use crate::scoring::{ScanInput, Stage, StageFuture, Symbol};
use backtrack::Cut;
use engine::RuleSet;
use tokio::time::Instant;

/// The stage that runs a rule set: one symbol per rule that fired (sub-rules excepted).
pub struct SignatureStage {
    pub rules: Arc<RuleSet>,
}

impl Stage for SignatureStage {
    fn name(&self) -> &'static str {
        "signatures"
    }

    fn scan<'a>(&'a self, input: &'a ScanInput, deadline: Instant) -> StageFuture<'a> {
        let scan = match self.rules.scan_until(input, Some(deadline.into_std())) {
            Ok(scan) => scan,
            Err(_) => return Box::pin(std::future::ready(vec![self.timed_out()])),
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
        Box::pin(std::future::ready(out))
    }
}
