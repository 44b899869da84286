//! `repmilter stats`: the running daemon's summary (from its monitor listener) as terminal
//! tables.

use std::fmt::Write;
use std::time::Duration;

use crate::metrics::Summary;

/// Why the summary could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("cannot reach the monitor at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} did not answer with a summary")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Time allowed for the whole request: the monitor answers from memory.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches the summary from the monitor at `base` (`http://127.0.0.1:11334`).
pub async fn fetch(base: &str) -> Result<Summary, StatsError> {
    let url = format!("{}/api/summary", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|source| StatsError::Unreachable {
            url: url.clone(),
            source,
        })?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|source| StatsError::Unreachable {
            url: url.clone(),
            source,
        })?;
    if !response.status().is_success() {
        return Err(StatsError::Status {
            url,
            status: response.status().as_u16(),
        });
    }
    response
        .json()
        .await
        .map_err(|source| StatsError::Body { url, source })
}

/// The summary as plain-text tables.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let total: u64 = s.actions.iter().map(|(_, n)| n).sum();
    let uptime = s.now.saturating_sub(s.started);
    let _ = writeln!(
        out,
        "repmilter {}: up {}, {} rules, {} sessions open, {} connections, {} messages",
        s.version,
        human_duration(uptime),
        s.rules,
        s.sessions_open,
        s.connections,
        total
    );
    let _ = writeln!(
        out,
        "reloads: {} ok, {} refused",
        s.reloads_ok, s.reloads_refused
    );

    out.push_str("\nactions\n");
    let rows: Vec<Vec<String>> = s
        .actions
        .iter()
        .map(|(a, n)| vec![a.clone(), n.to_string(), percent(*n, total)])
        .collect();
    table(&mut out, &["action", "messages", "share"], &rows);

    out.push_str("\ntop symbols\n");
    let rows: Vec<Vec<String>> = s
        .top_symbols
        .iter()
        .map(|(name, n)| vec![name.clone(), n.to_string(), percent(*n, total)])
        .collect();
    table(&mut out, &["symbol", "messages", "share"], &rows);

    out.push_str("\nstage time per message\n");
    let rows: Vec<Vec<String>> = s
        .stages
        .iter()
        .map(|t| {
            vec![
                t.stage.clone(),
                t.count.to_string(),
                format!("{:.3}", t.mean_ms),
            ]
        })
        .collect();
    table(&mut out, &["stage", "messages", "mean ms"], &rows);

    if !s.lists.is_empty() {
        let asked = s.dns_cache_hits + s.dns_cache_misses;
        let _ = writeln!(
            out,
            "\nDNS lists (cache: {} of {} lookups answered, {})",
            s.dns_cache_hits,
            asked,
            percent(s.dns_cache_hits, asked)
        );
        let rows: Vec<Vec<String>> = s
            .lists
            .iter()
            .map(|l| {
                let r = |k: &str| l.results.get(k).copied().unwrap_or(0).to_string();
                vec![
                    l.list.clone(),
                    match l.enabled {
                        Some(true) => "enabled",
                        Some(false) => "DISABLED",
                        None => "not probed",
                    }
                    .to_string(),
                    l.lookups.to_string(),
                    r("listed"),
                    r("not_listed"),
                    r("blocked"),
                    r("timeout"),
                    r("fail"),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "list", "state", "lookups", "listed", "clean", "blocked", "timeout", "fail",
            ],
            &rows,
        );
    }

    if !s.errors.is_empty() {
        out.push_str("\nconnections closed on errors\n");
        let rows: Vec<Vec<String>> = s
            .errors
            .iter()
            .map(|(k, n)| vec![k.clone(), n.to_string()])
            .collect();
        table(&mut out, &["kind", "connections"], &rows);
    }
    out
}

fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        "-".into()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / total as f64)
    }
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Left-aligned first column, right-aligned numbers, columns two spaces apart.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        out.push_str("  (none yet)\n");
        return;
    }
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        out.push_str("  ");
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            if i == 0 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str("  ");
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.push('\n');
    };
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    line(out, &head);
    for r in rows {
        line(out, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ListHealth, StageTime};

    #[test]
    fn the_summary_reads_as_tables() {
        let s = Summary {
            version: "0.1.0".into(),
            now: 10_000,
            started: 6_400,
            rules: 66,
            sessions_open: 2,
            connections: 40,
            actions: vec![("accept".into(), 30), ("reject".into(), 10)],
            top_symbols: vec![("GTUBE".into(), 10)],
            stages: vec![StageTime {
                stage: "signatures".into(),
                count: 40,
                mean_ms: 0.25,
            }],
            lists: vec![ListHealth {
                list: "IPBL".into(),
                enabled: Some(false),
                lookups: 40,
                results: [("listed".to_string(), 4), ("not_listed".to_string(), 36)]
                    .into_iter()
                    .collect(),
            }],
            dns_cache_hits: 30,
            dns_cache_misses: 10,
            reloads_ok: 1,
            reloads_refused: 0,
            errors: Default::default(),
            history: vec![],
            recent: vec![],
        };
        let text = render(&s);
        for want in [
            "repmilter 0.1.0: up 60m, 66 rules, 2 sessions open, 40 connections, 40 messages",
            "  accept        30  75.0%",
            "  reject        10  25.0%",
            "  GTUBE         10  25.0%",
            "  signatures        40    0.250",
            "DNS lists (cache: 30 of 40 lookups answered, 75.0%)",
            "  IPBL  DISABLED       40       4     36        0        0     0",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
