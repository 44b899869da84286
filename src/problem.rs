//! A problem found in a file an operator or rule author wrote (the config, a rule file, a list
//! file): where (file, line, column in characters, both from 1; 0 for "the whole file"), how
//! bad, which key when there is one, and what. Printed as `file:line:col: [warning: ][key: ]message`,
//! the form editors and `grep -n` users jump to.

use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Advice beyond what SpamAssassin's own lint says (a rule without a score, a score
    /// without a rule): shown by `rules lint --pedantic`; nothing was left out.
    Note,
    /// Worth fixing; nothing was left out.
    Warning,
    /// What it names was left out (a rule, a list entry) or refused (a config).
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: Arc<Path>,
    pub line: usize,
    /// In characters, from 1.
    pub column: usize,
    pub severity: Severity,
    /// The dotted config key (`milter.listen`), or empty.
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn error(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Problem {
        Problem {
            file: Arc::from(file),
            line,
            column,
            severity: Severity::Error,
            key: String::new(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        match self.severity {
            Severity::Warning => f.write_str("warning: ")?,
            Severity::Note => f.write_str("note: ")?,
            Severity::Error => {}
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// A problem with its severity always named (`error: ` too), as `rules lint` lists them.
pub struct Labelled<'a>(pub &'a Problem);

impl std::fmt::Display for Labelled<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.0;
        if p.severity == Severity::Error {
            write!(f, "{}:{}:{}: error: ", p.file.display(), p.line, p.column)?;
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            f.write_str(&p.message)
        } else {
            write!(f, "{p}")
        }
    }
}

/// The 1-based character column of byte offset `offset` in `line`.
pub fn column_of(line: &str, offset: usize) -> usize {
    line.get(..offset).map_or(offset, |s| s.chars().count()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_as_editors_read_it() {
        let mut p = Problem::error(Path::new("/etc/r.cf"), 3, 7, "bad");
        assert_eq!(p.to_string(), "/etc/r.cf:3:7: bad");
        p.severity = Severity::Warning;
        p.key = "milter.listen".into();
        assert_eq!(p.to_string(), "/etc/r.cf:3:7: warning: milter.listen: bad");
        assert_eq!(column_of("é = x", 5), 5);
        assert_eq!(
            Labelled(&p).to_string(),
            "/etc/r.cf:3:7: warning: milter.listen: bad"
        );
        p.severity = Severity::Error;
        assert_eq!(
            Labelled(&p).to_string(),
            "/etc/r.cf:3:7: error: milter.listen: bad"
        );
        p.severity = Severity::Note;
        assert_eq!(p.to_string(), "/etc/r.cf:3:7: note: milter.listen: bad");
    }
}
