//! Content signatures: rule files (SpamAssassin syntax plus phrase lists) compiled into one
//! rule set that scans each part of a message once; and the built-in GTUBE test.
//!
//! - [`parse`]: rule files to definitions, every problem with file:line:col.
//! - [`literals`]: the literals a regex requires, for the Aho-Corasick prefilter.
//! - [`multi`]: many literals found at once (sampling for long ones, a DFA for short ones).
//! - [`relax`]: a linear over-approximation of a backtracking regex, to skip it.
//! - [`engine`]: the compiled rule set and the scan.

pub mod engine;
pub mod gtube;
pub mod literals;
pub mod multi;
pub mod parse;
pub mod relax;

use std::sync::Arc;

use crate::scoring::{ScanInput, Stage, StageFuture, Symbol};
use engine::RuleSet;

/// The stage that runs a rule set: one symbol per rule that fired (sub-rules excepted).
pub struct SignatureStage {
    pub rules: Arc<RuleSet>,
}

impl Stage for SignatureStage {
    fn name(&self) -> &'static str {
        "signatures"
    }

    fn scan<'a>(&'a self, input: &'a ScanInput) -> StageFuture<'a> {
        let (hits, limited) = self.rules.scan(input);
        let mut out: Vec<Symbol> = hits
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
        for name in limited {
            out.push(Symbol::new(
                "RULE_STEP_LIMIT",
                0.0,
                format!("{name} hit the backtracking step limit and counts as not matching"),
            ));
        }
        Box::pin(std::future::ready(out))
    }
}
