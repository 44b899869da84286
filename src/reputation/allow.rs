//! Local allowlists: client networks, envelope sender domains and recipients, from `[allow]`
//! and from list files beside the config. The files are read when the engine is built, which
//! happens on SIGHUP and when the daemon sees one of them change.

use std::collections::HashSet;
use std::path::Path;

use ipnetwork::IpNetwork;

use crate::config::{Allow, names};
use crate::problem::Problem;
use crate::scan::{Compute, ScanInput, Symbol};

/// Entries read from one list file at most; a runaway file is cut, not loaded whole.
pub const MAX_FILE_ENTRIES: usize = 1_000_000;

/// Largest list file read: a million entries of typical length fit with room to spare.
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct AllowLists {
    networks: Vec<IpNetwork>,
    sender_domains: HashSet<String>,
    recipients: HashSet<String>,
    score: f64,
    pub problems: Vec<Problem>,
}

impl AllowLists {
    pub fn new(cfg: &Allow) -> AllowLists {
        let mut a = AllowLists {
            networks: cfg.networks.clone(),
            sender_domains: cfg.sender_domains.iter().cloned().collect(),
            recipients: cfg.recipients.iter().cloned().collect(),
            score: cfg.score,
            problems: Vec::new(),
        };
        for f in &cfg.files {
            a.read_file(f);
        }
        a
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.sender_domains.is_empty() && self.recipients.is_empty()
    }

    /// One entry per line: a network or address, an address or `@domain` (a recipient), or
    /// a domain (a sender domain). `#` starts a comment.
    fn read_file(&mut self, path: &Path) {
        let text = match crate::files::read_text(path, MAX_FILE_SIZE) {
            Ok(t) => t,
            Err(e) => {
                self.problems
                    .push(Problem::error(path, 0, 0, format!("cannot read: {e}")));
                return;
            }
        };
        for (i, line) in text.lines().enumerate().take(MAX_FILE_ENTRIES) {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let at = crate::problem::column_of(line, line.len() - line.trim_start().len());
            if let Some(n) = names::parse_network(entry) {
                self.networks.push(n);
            } else if entry.contains('@') {
                match names::parse_recipient(entry) {
                    Some(r) => {
                        self.recipients.insert(r);
                    }
                    None => self.problems.push(Problem::error(
                        path,
                        i + 1,
                        at,
                        format!("{entry:?} is not an address or @domain"),
                    )),
                }
            } else {
                let d = entry.trim_end_matches('.').to_ascii_lowercase();
                if names::is_dns_name(&d) {
                    self.sender_domains.insert(d);
                } else {
                    self.problems.push(Problem::error(
                        path,
                        i + 1,
                        at,
                        format!("{entry:?} is not a network, a domain or an address"),
                    ));
                }
            }
        }
    }

    fn domain_listed(&self, domain: &str) -> Option<&str> {
        // The domain itself or any parent: example.com covers mail.example.com.
        let mut d = domain;
        loop {
            if let Some(found) = self.sender_domains.get(d) {
                return Some(found);
            }
            d = d.split_once('.')?.1;
        }
    }

    /// The allowlist symbols for a message.
    pub fn check(&self, input: &ScanInput) -> Vec<Symbol> {
        let mut out = Vec::new();
        let env = &input.envelope;
        if let Some(ip) = env.client_ip
            && let Some(n) = self.networks.iter().find(|n| n.contains(ip.to_canonical()))
        {
            out.push(Symbol::new(
                "ALLOWLIST_NETWORK",
                self.score,
                format!("client {ip} is in allowlisted network {n}"),
            ));
        }
        let sender_domain = env
            .from
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase());
        if let Some(d) = sender_domain
            && let Some(found) = self.domain_listed(&d)
        {
            out.push(Symbol::new(
                "ALLOWLIST_SENDER",
                self.score,
                format!("envelope sender domain {d} is allowlisted ({found})"),
            ));
        }
        // Every recipient must be listed: one listed address (postmaster@) added to a spam
        // run must not carry it to everyone else. Recipients the session did not keep (past
        // its bounds) count as not listed.
        let listed = |rcpt: &String| {
            let r = rcpt.trim_matches(['<', '>']).to_ascii_lowercase();
            let domain = r.rsplit_once('@').map(|(_, d)| format!("@{d}"));
            self.recipients.contains(&r)
                || domain.as_ref().is_some_and(|d| self.recipients.contains(d))
        };
        if !env.rcpts.is_empty() && env.rcpts_dropped == 0 && env.rcpts.iter().all(listed) {
            out.push(Symbol::new(
                "ALLOWLIST_RECIPIENT",
                self.score,
                format!("every recipient is allowlisted ({})", env.rcpts.join(", ")),
            ));
        }
        out
    }
}

/// The allowlists as a pipeline stage.
pub struct AllowStage {
    pub lists: AllowLists,
}

impl Compute for AllowStage {
    fn name(&self) -> &'static str {
        "allow"
    }

    fn scan(&self, input: &ScanInput, _: std::time::Instant) -> Vec<Symbol> {
        self.lists.check(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message};

    fn input(ip: &str, from: &str, rcpts: &[&str]) -> ScanInput {
        ScanInput::new(
            Envelope {
                client_ip: Some(ip.parse().unwrap()),
                from: from.into(),
                rcpts: rcpts.iter().map(|s| s.to_string()).collect(),
                ..Envelope::default()
            },
            Message::default(),
        )
    }

    fn names(v: &[Symbol]) -> Vec<&str> {
        v.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn config_and_file_entries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("allow.txt");
        std::fs::write(
            &file,
            "# partners\n198.51.100.0/24\npartner.example   # their whole domain\n@vip.example\n\nnot a valid entry!\nx@\n",
        )
        .unwrap();
        let cfg = Allow {
            networks: vec!["192.0.2.0/24".parse().unwrap()],
            sender_domains: vec!["bank.example".into()],
            recipients: vec!["postmaster@our.example".into()],
            files: vec![file.clone(), dir.path().join("missing.txt")],
            score: -20.0,
        };
        let a = AllowLists::new(&cfg);
        let problems: Vec<String> = a.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].ends_with(
                "allow.txt:6:1: \"not a valid entry!\" is not a network, a domain or an address"
            ),
            "{problems:?}"
        );
        assert!(problems[1].contains("allow.txt:7:1:"), "{problems:?}");
        assert!(
            problems[2].contains("missing.txt:0:0: cannot read"),
            "{problems:?}"
        );

        let v = a.check(&input(
            "192.0.2.5",
            "a@mail.bank.example",
            &["x@our.example"],
        ));
        assert_eq!(names(&v), ["ALLOWLIST_NETWORK", "ALLOWLIST_SENDER"]);
        assert_eq!(v.iter().map(|s| s.score).sum::<f64>(), -40.0);
        let v = a.check(&input(
            "198.51.100.9",
            "a@notbank.example",
            &["Boss@VIP.example"],
        ));
        assert_eq!(names(&v), ["ALLOWLIST_NETWORK", "ALLOWLIST_RECIPIENT"]);
        let v = a.check(&input(
            "203.0.113.1",
            "a@partner.example",
            &["postmaster@our.example"],
        ));
        assert_eq!(names(&v), ["ALLOWLIST_SENDER", "ALLOWLIST_RECIPIENT"]);
        // One listed recipient among others is not enough.
        let v = a.check(&input(
            "203.0.113.1",
            "a@x.example",
            &["boss@vip.example", "joe@x.example"],
        ));
        assert!(v.is_empty(), "{v:?}");
        // A domain that merely ends in the same letters is not a subdomain.
        let v = a.check(&input(
            "203.0.113.1",
            "a@evilbank.example",
            &["someone@our.example"],
        ));
        assert!(v.is_empty(), "{v:?}");
    }
}
