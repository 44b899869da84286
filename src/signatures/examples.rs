//! Examples kept next to the rules (`repmilter rules test`): `NAME.spam.eml` must make rule
//! `NAME` fire and `NAME.ham.eml` must not (`NAME.spam.2.eml` and so on for more).

use std::path::{Path, PathBuf};

use super::ruleset::RuleSet;
use crate::message::{Envelope, Message};
use crate::scan::ScanInput;

/// Largest example message read.
const MAX_EXAMPLE: u64 = 64 * 1024 * 1024;

/// What one example file said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    /// Not named `RULE.spam.*` or `RULE.ham.*`.
    Skip,
}

/// One example file and its outcome.
#[derive(Debug, Clone)]
pub struct Example {
    pub path: PathBuf,
    pub rule: String,
    pub spam: bool,
    pub outcome: Outcome,
}

/// Runs every `*.eml` file of `dir`, in name order.
pub fn run(rules: &RuleSet, dir: &Path) -> std::io::Result<Vec<Example>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    Ok(paths.into_iter().map(|p| example(rules, p)).collect())
}

fn example(rules: &RuleSet, path: PathBuf) -> Example {
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default()
        .to_string();
    let (rule, spam) = if let Some((n, _)) = file.split_once(".spam.") {
        (n.to_string(), true)
    } else if let Some((n, _)) = file.split_once(".ham.") {
        (n.to_string(), false)
    } else {
        return Example {
            path,
            rule: file,
            spam: false,
            outcome: Outcome::Skip,
        };
    };
    let outcome = match (
        rules.id(&rule),
        crate::files::read_bounded(&path, MAX_EXAMPLE),
    ) {
        (None, _) => Outcome::Fail(format!("no rule named {rule}")),
        (_, Err(e)) => Outcome::Fail(format!("cannot read: {e}")),
        (Some(id), Ok(raw)) => {
            let input = ScanInput::new(Envelope::default(), Message::from_raw(&raw, usize::MAX));
            let hit = rules.scan(&input).hits.iter().any(|h| h.rule == id);
            match (hit, spam) {
                (true, true) | (false, false) => Outcome::Pass,
                (false, true) => Outcome::Fail("did not fire".into()),
                (true, false) => Outcome::Fail("fired on ham".into()),
            }
        }
    };
    Example {
        path,
        rule,
        spam,
        outcome,
    }
}
