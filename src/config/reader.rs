//! Reads typed values out of a spanned TOML tree, collecting every problem with its line.
//!
//! serde's `deny_unknown_fields` stops at the first problem and loses the position of bad
//! values; an operator fixing a file wants all of them at once, each with file, line and key.

use std::path::Path;
use std::sync::Arc;

pub use crate::problem::Problem;
use crate::problem::Severity;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub(crate) struct Reader<'s> {
    src: &'s str,
    file: &'s Path,
    /// Problems by byte offset; lines and columns are worked out once, in [`Reader::finish`],
    /// so that checking a file with many problems stays linear in its size.
    pending: Vec<(usize, String, String)>,
    /// Whether the files a config names are checked for existence and readability
    /// ([`Reader::readable`]); off for config text checked on its own.
    check_files: bool,
}

pub(crate) type Table<'i> = DeTable<'i>;
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

impl<'s> Reader<'s> {
    pub fn new(src: &'s str, file: &'s Path) -> Self {
        Self {
            src,
            file,
            pending: Vec::new(),
            check_files: false,
        }
    }

    /// Also checks that the files the config names exist and can be read.
    pub fn checking_files(mut self) -> Self {
        self.check_files = true;
        self
    }

    /// A problem at `offset` unless `path` can be read now: a file that opens, or (when
    /// `dir_ok`) a directory that lists. A daemon started or reloaded with a missing file
    /// would otherwise run without the rules or allowlist the operator believes it has.
    pub fn readable(&mut self, path: &Path, dir_ok: bool, offset: usize, key: &str) {
        if !self.check_files {
            return;
        }
        let shown = path.display();
        let outcome = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "{shown} does not exist (a relative path is taken from the config file's directory)"
            )),
            Err(e) => Err(format!("cannot reach {shown}: {e}")),
            Ok(m) if m.is_dir() && !dir_ok => Err(format!("{shown} is a directory: name a file")),
            Ok(m) if m.is_dir() => std::fs::read_dir(path)
                .map(drop)
                .map_err(|e| format!("cannot list directory {shown}: {e}")),
            Ok(_) => std::fs::File::open(path)
                .map(drop)
                .map_err(|e| format!("cannot read {shown}: {e}")),
        };
        if let Err(message) = outcome {
            self.problem_at(offset, key, message);
        }
    }

    pub fn problem_count(&self) -> usize {
        self.pending.len()
    }

    /// The problems in the order they were found, each with its line and column (1-based;
    /// the column counts characters).
    pub fn finish(self) -> Vec<Problem> {
        let file: Arc<Path> = Arc::from(self.file);
        let mut order: Vec<usize> = (0..self.pending.len()).collect();
        order.sort_by_key(|&i| self.pending[i].0);
        let mut at = vec![(0, 0); self.pending.len()];
        // One walk over the text in offset order.
        let (mut pos, mut line, mut column) = (0usize, 1usize, 1usize);
        for i in order {
            let target = self.pending[i].0.min(self.src.len());
            for c in self.src[pos..].chars() {
                if pos >= target {
                    break;
                }
                pos += c.len_utf8();
                if c == '\n' {
                    line += 1;
                    column = 1;
                } else {
                    column += 1;
                }
            }
            at[i] = (line, column);
        }
        self.pending
            .into_iter()
            .zip(at)
            .map(|((_, key, message), (line, column))| Problem {
                file: file.clone(),
                line,
                column,
                severity: Severity::Error,
                key,
                message,
            })
            .collect()
    }

    pub fn problem_at(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        self.pending.push((offset, key.to_string(), message.into()));
    }

    pub fn problem(&mut self, value: &Value<'_>, key: &str, message: impl Into<String>) {
        self.problem_at(value.span().start, key, message);
    }

    /// Reports every key of `table` not in `known`.
    pub fn known_keys(&mut self, table: &Table<'_>, prefix: &str, known: &[&str]) {
        for (k, _) in table.iter() {
            if !known.contains(&k.get_ref().as_ref()) {
                let key = join(prefix, k.get_ref());
                let hint = if known.is_empty() {
                    String::new()
                } else {
                    format!(" (known keys: {})", known.join(", "))
                };
                self.problem_at(k.span().start, &key, format!("unknown key{hint}"));
            }
        }
    }

    /// A sub-table, or None (with a problem if the key holds something else).
    pub fn table<'t, 'i>(
        &mut self,
        parent: &'t Table<'i>,
        prefix: &str,
        name: &str,
    ) -> Option<&'t Table<'i>> {
        let v = parent.get(name)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                let msg = format!("expected a table, found {}", other.type_str());
                self.problem(v, &join(prefix, name), msg);
                None
            }
        }
    }

    pub fn string(&mut self, t: &Table<'_>, prefix: &str, name: &str) -> Option<String> {
        let v = t.get(name)?;
        match v.get_ref().as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                let msg = format!("expected a string, found {}", v.get_ref().type_str());
                self.problem(v, &join(prefix, name), msg);
                None
            }
        }
    }

    pub fn bool(&mut self, t: &Table<'_>, prefix: &str, name: &str) -> Option<bool> {
        let v = t.get(name)?;
        match v.get_ref().as_bool() {
            Some(b) => Some(b),
            None => {
                let msg = format!("expected true or false, found {}", v.get_ref().type_str());
                self.problem(v, &join(prefix, name), msg);
                None
            }
        }
    }

    /// A number; integers are accepted where a float is meant (`reject = 15`).
    pub fn number(&mut self, t: &Table<'_>, prefix: &str, name: &str) -> Option<f64> {
        let v = t.get(name)?;
        self.number_value(v, &join(prefix, name))
    }

    pub fn number_value(&mut self, v: &Value<'_>, key: &str) -> Option<f64> {
        let parsed = match v.get_ref() {
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Integer(i) if i.radix() == 10 => i.as_str().replace('_', "").parse().ok(),
            _ => None,
        };
        match parsed {
            Some(x) if x.is_finite() => Some(x),
            Some(_) => {
                self.problem(v, key, "expected a finite number");
                None
            }
            None => {
                let msg = format!("expected a number, found {}", v.get_ref().type_str());
                self.problem(v, key, msg);
                None
            }
        }
    }

    /// A non-negative integer within `max`.
    pub fn integer(&mut self, t: &Table<'_>, prefix: &str, name: &str, max: u64) -> Option<u64> {
        let v = t.get(name)?;
        let key = join(prefix, name);
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                u64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            _ => None,
        };
        match parsed {
            Some(n) if n <= max => Some(n),
            Some(n) => {
                self.problem(v, &key, format!("{n} is larger than the maximum {max}"));
                None
            }
            None => {
                let msg = format!(
                    "expected a non-negative integer, found {}",
                    v.get_ref().type_str()
                );
                self.problem(v, &key, msg);
                None
            }
        }
    }

    /// A duration written as `"30s"`, `"500ms"`, `"5m"` or `"1h"`.
    pub fn duration(&mut self, t: &Table<'_>, prefix: &str, name: &str) -> Option<Duration> {
        let v = t.get(name)?;
        let key = join(prefix, name);
        let Some(s) = v.get_ref().as_str() else {
            let msg = format!(
                "expected a duration such as \"30s\", found {}",
                v.get_ref().type_str()
            );
            self.problem(v, &key, msg);
            return None;
        };
        match parse_duration(s) {
            Some(d) => Some(d),
            None => {
                let msg = format!("{s:?} is not a duration: write a number and ms, s, m or h");
                self.problem(v, &key, msg);
                None
            }
        }
    }

    pub fn string_list(
        &mut self,
        t: &Table<'_>,
        prefix: &str,
        name: &str,
    ) -> Option<Vec<(String, usize)>> {
        let v = t.get(name)?;
        let key = join(prefix, name);
        let Some(items) = v.get_ref().as_array() else {
            let msg = format!(
                "expected a list of strings, found {}",
                v.get_ref().type_str()
            );
            self.problem(v, &key, msg);
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref().as_str() {
                Some(s) => out.push((s.to_string(), item.span().start)),
                None => {
                    let msg = format!("expected a string, found {}", item.get_ref().type_str());
                    self.problem(item, &key, msg);
                }
            }
        }
        Some(out)
    }
}

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1.5s"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_in_any_order() {
        let src = "a = 1\nb = \"\u{e9}\u{e9}\" x\n\nc\n";
        let mut r = Reader::new(src, Path::new("f.toml"));
        let x = src.find('x').unwrap();
        r.problem_at(src.find('c').unwrap(), "c", "third");
        r.problem_at(x, "x", "second");
        r.problem_at(0, "a", "first");
        r.problem_at(src.len() + 10, "end", "past the end");
        let got: Vec<(String, usize, usize)> = r
            .finish()
            .into_iter()
            .map(|p| (p.key, p.line, p.column))
            .collect();
        assert_eq!(
            got,
            [
                ("c".to_string(), 4, 1),
                ("x".to_string(), 2, 10),
                ("a".to_string(), 1, 1),
                ("end".to_string(), 5, 1),
            ]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("10 parsecs"), None);
    }
}
