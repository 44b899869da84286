//! What rule files define: rules, their tests and patterns, and where each was written.

use std::path::Path;
use std::sync::Arc;

pub use crate::message::targets::{HeaderPart, HeaderSel};
pub use crate::problem::{Problem, Severity};

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// A problem found here.
    pub fn problem(&self, severity: Severity, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            severity,
            key: String::new(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// The text a pattern runs on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Header(HeaderSel),
    /// SpamAssassin's `mimeheader`: a header of each MIME part (the message's own first).
    MimeHeader(HeaderSel),
    Body,
    RawBody,
    Full,
    Uri,
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Header(_) => "header",
            Target::MimeHeader(_) => "mimeheader",
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
