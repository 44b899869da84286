//! What SpamAssassin's stock rules cost per message in repmilter's engine, on the whole public
//! corpus: the measure of issue 12's speed targets (2 ms of CPU per message on average, no
//! message over 50 ms). Every message is scanned once, in process, single-threaded, with the
//! rules of `/usr/share/spamassassin` (Debian's `spamassassin` package) compiled as `serve`
//! would; the MIME view is built inside the timed scan, as in the daemon.
//!
//! Prints the CPU time per message (the process's user+system time over the scans, from
//! /proc, so nothing else on the machine counts), and per message the wall time of the
//! slowest ones (a single-threaded scan on an otherwise idle machine: wall is CPU).
//!
//! Run: `cargo bench --bench sa_speed` (the corpus is fetched first if missing);
//! `SA_SPEED_ONLY=00229 cargo bench --bench sa_speed` repeats only the messages named so.

#[path = "common/corpus.rs"]
mod corpus;

use std::path::Path;
use std::time::{Duration, Instant};

use repmilter::message::{Envelope, Message};
use repmilter::scan::ScanInput;
use repmilter::signatures::ruleset::RuleSet;

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    repmilter::loadgen::process_cpu(std::process::id()).expect("/proc/self/stat")
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("SpamAssassin rule speed: run it with `cargo bench --bench sa_speed`");
        return;
    }
    let sa = Path::new("/usr/share/spamassassin");
    if !sa.is_dir() {
        println!("sa_speed skipped: no /usr/share/spamassassin (apt-get install spamassassin)");
        return;
    }
    let dir = corpus::fetched();
    let messages: Vec<(String, Vec<u8>)> = corpus::FOLDERS
        .iter()
        .flat_map(|(folder, _)| corpus::files(&dir, folder))
        .filter_map(|f| {
            let name = f
                .strip_prefix(&dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            Some((name, corpus::message(&f)?))
        })
        .collect();
    let started = Instant::now();
    let rules = RuleSet::load(&[sa.to_path_buf()]);
    println!(
        "{} rules compiled in {:.1} s; {} messages",
        rules.len(),
        started.elapsed().as_secs_f64(),
        messages.len()
    );
    // `SA_SPEED_ONLY=name` scans only the messages whose path holds `name`, 50 times each:
    // one slow message under a profiler.
    let messages: Vec<(String, Vec<u8>)> = match std::env::var("SA_SPEED_ONLY") {
        Ok(only) => messages
            .into_iter()
            .filter(|(name, _)| name.contains(&only))
            .flat_map(|m| std::iter::repeat_n(m, 50))
            .collect(),
        Err(_) => messages,
    };
    let mut took: Vec<(Duration, &str)> = Vec::with_capacity(messages.len());
    let cpu_before = cpu_time();
    for (name, raw) in &messages {
        let t = Instant::now();
        let input = ScanInput::new(Envelope::default(), Message::from_raw(raw, 10 << 20));
        // As the daemon scans: under a deadline (none here), hits without their evidence.
        let scan = rules.scan_until(&input, None).expect("no deadline");
        std::hint::black_box(scan.hits.len());
        took.push((t.elapsed(), name));
    }
    let cpu = cpu_time() - cpu_before;
    let n = messages.len() as f64;
    took.sort();
    let pct = |p: f64| took[((took.len() - 1) as f64 * p) as usize].0;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "CPU per message {:.2} ms ({:.1} messages/s per core); wall per message: median {:.2} ms, p99 {:.1} ms, max {:.1} ms; over 50 ms: {}",
        cpu.as_secs_f64() * 1e3 / n,
        n / cpu.as_secs_f64(),
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(took.last().unwrap().0),
        took.iter()
            .filter(|(d, _)| *d > Duration::from_millis(50))
            .count()
    );
    println!("slowest:");
    for (d, name) in took.iter().rev().take(10) {
        println!("  {:>8.1} ms  {name}", ms(*d));
    }
}
