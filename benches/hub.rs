//! The hub under load, as gateways meet it: a release `repmilter hub` process on loopback,
//! driven over HTTP by concurrent clients, with the embedded store and (when redis-server is
//! installed) the Redis store. Reports, per store:
//!
//! - events ingested per second, in batches of 1,000 events of 16 keys (as a message's);
//! - key lookups per second, in batches of 20 keys, against a store holding those keys;
//!
//! each as wall-clock throughput and per CPU-second of the hub process (its utime + stime
//! from /proc, so the load client's CPU is not counted; with Redis, redis-server's CPU is
//! reported beside it). Then the milter side: the cost of a hub lookup whose every key is in
//! the gateway's cache, and of deriving a corpus message's keys.
//!
//! Run: `cargo bench --bench hub` (10 s per phase; `REPMILTER_HUB_SECONDS` changes it).
//! `cargo test --all-targets` runs it for a fraction of a second per phase, as a check.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "../tests/common/mod.rs"]
mod common;
use common::hub::{ADMIN, GW1 as TOKEN, Hub};

#[path = "common/corpus.rs"]
mod corpus;

const CLIENTS: usize = 4;
const EVENTS_PER_BATCH: usize = 1000;
const KEYS_PER_EVENT: usize = 16;
const KEYS_PER_LOOKUP: usize = 20;
/// Distinct keys the events draw from (and lookups ask about).
const KEY_POOL: u64 = 200_000;

struct Proc {
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds a process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    ticks / hz
}

/// A hub with `store` (embedded by default), its rate limit out of the way: the one the
/// tests start (`tests/common/hub.rs`).
fn start_hub(store: &str) -> Hub {
    Hub::start(&format!("{store}\nrate = 1000000\nburst = 1000000"))
}

fn start_redis() -> Option<(Proc, u16)> {
    let found = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("redis-server is not installed: the Redis store is not measured");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((
        Proc {
            child,
            _dir: Some(dir),
        },
        port,
    ))
}

/// The i-th key of the pool: the kinds a message has, in about its proportions.
fn key(i: u64) -> String {
    let i = i % KEY_POOL;
    match i % 8 {
        0 => format!("ip:10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        1 => format!("net:10.{}.{}.0/24", (i >> 16) & 255, (i >> 8) & 255),
        2 => format!("domain:d{i}.example"),
        3 => format!("from:f{i}.example"),
        4 => format!("url:{i:032x}"),
        5 => format!("file:{i:064x}"),
        _ => format!("fuzzy:{}:{i:016x}", i % 8),
    }
}

/// A batch of events with fresh ids, drawn from the pool by `seed`.
fn events_batch(seed: u64) -> String {
    let events: Vec<_> = (0..EVENTS_PER_BATCH as u64)
        .map(|e| {
            let n = seed * EVENTS_PER_BATCH as u64 + e;
            let keys: Vec<String> = (0..KEYS_PER_EVENT as u64)
                .map(|k| key(n.wrapping_mul(7919).wrapping_add(k * 104_729)))
                .collect();
            json!({
                "id": format!("{:032x}", n + seed.rotate_left(40)),
                "gateway": "", "time": 0, "kind": if n.is_multiple_of(5) { "ham" } else { "spam" },
                "keys": keys, "score": 0.0, "action": "", "symbols": []
            })
        })
        .collect();
    json!({ "events": events }).to_string()
}

fn lookup_batch(seed: u64) -> String {
    let keys: Vec<String> = (0..KEYS_PER_LOOKUP as u64)
        .map(|k| key(seed.wrapping_mul(6151).wrapping_add(k * 7919)))
        .collect();
    json!({ "keys": keys }).to_string()
}

/// Runs `CLIENTS` loops posting `body(seed)` to `path` for `seconds`; returns the requests
/// done and the hub's CPU seconds over the phase.
async fn phase(
    url: &str,
    path: &str,
    pid: u32,
    seconds: f64,
    first_seed: u64,
    body: fn(u64) -> String,
) -> (u64, f64, f64) {
    let client = reqwest::Client::new();
    let done = Arc::new(AtomicU64::new(0));
    let seeds = Arc::new(AtomicU64::new(first_seed));
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, done, seeds) = (client.clone(), done.clone(), seeds.clone());
            let url = format!("{url}{path}");
            tokio::spawn(async move {
                while Instant::now() < until {
                    let b = body(seeds.fetch_add(1, Ordering::Relaxed));
                    let resp = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .body(b)
                        .send()
                        .await
                        .unwrap();
                    assert!(resp.status().is_success(), "{}", resp.status());
                    resp.bytes().await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let wall = start.elapsed().as_secs_f64();
    (done.load(Ordering::Relaxed), wall, cpu_seconds(pid) - cpu0)
}

async fn measure(name: &str, store: &str, seconds: f64, redis_pid: Option<u32>) {
    let hub = start_hub(store);
    let (url, pid) = (hub.url.clone(), hub.child.id());
    let redis_cpu0 = redis_pid.map(cpu_seconds);
    let (batches, wall, cpu) = phase(&url, "/v1/events", pid, seconds, 1, events_batch).await;
    let events = (batches as usize * EVENTS_PER_BATCH) as f64;
    println!(
        "{name}: ingest {:>9.0} events/s, {:>9.0} events per hub CPU-second ({batches} batches of {EVENTS_PER_BATCH} events, {KEYS_PER_EVENT} keys each, {CLIENTS} clients)",
        events / wall,
        events / cpu.max(1e-9)
    );
    let stats: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/v1/stats"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!(
        "{name}: the store then held {} events and {} keys",
        stats["store"]["events"], stats["store"]["keys"]
    );
    let (reqs, wall, cpu) = phase(&url, "/v1/lookup", pid, seconds, 1, lookup_batch).await;
    let keys = (reqs as usize * KEYS_PER_LOOKUP) as f64;
    println!(
        "{name}: lookup {:>9.0} keys/s,   {:>9.0} keys per hub CPU-second ({reqs} requests of {KEYS_PER_LOOKUP} keys, {CLIENTS} clients)",
        keys / wall,
        keys / cpu.max(1e-9)
    );
    if let (Some(pid), Some(c0)) = (redis_pid, redis_cpu0) {
        println!(
            "{name}: redis-server used {:.1} CPU-seconds over both phases",
            cpu_seconds(pid) - c0
        );
    }
}

/// Corpus messages (up to 200 spam and 200 ham), or a made-up one, as the milter gets them.
fn messages() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(dir) = corpus::dir() {
        for folder in ["spam-1", "easy-ham-1"] {
            let files = corpus::files(&dir, folder);
            out.extend(files.iter().take(200).filter_map(|f| corpus::message(f)));
        }
    }
    if out.is_empty() {
        out.push(
            b"From: Prize <win@prizes.example>\r\nSubject: you won\r\n\r\n\
              Claim your prize at http://prizes.example/claim before Friday; the offer ends soon.\r\n"
                .to_vec(),
        );
    }
    out
}

async fn milter_side(url: &str, rounds: u32) {
    use repmilter::config::HubClient;
    use repmilter::message::{Envelope, Message};
    use repmilter::reputation::hub::HubLookups;
    use repmilter::reputation::keys::key_strings;
    use repmilter::scan::ScanInput;
    let input = |raw: &[u8]| {
        let i = ScanInput::new(
            Envelope {
                client_ip: Some("203.0.113.9".parse().unwrap()),
                helo: "mx.sender.example".into(),
                from: "bounce@sender.example".into(),
                ..Envelope::default()
            },
            Message::from_raw(raw, 10 << 20),
        );
        // The MIME view is built once per message and shared by every stage: not counted.
        i.view();
        i
    };
    let config = HubClient {
        url: url.to_string(),
        token: TOKEN.into(),
        timeout: Duration::from_secs(1),
        cache_size: 100_000,
        spool: PathBuf::from("unused"),
        spool_max: 1 << 20,
        share_samples: false,
        sync_interval: Duration::from_millis(500),
        cool_down: Duration::from_secs(30),
        model_interval: Duration::from_secs(300),
    };
    let raws = messages();
    // Deriving the keys, once per message.
    let inputs: Vec<ScanInput> = raws.iter().map(|r| input(r)).collect();
    let start = Instant::now();
    let keys: usize = inputs.iter().map(|i| key_strings(i).len()).sum();
    let derive = start.elapsed().as_secs_f64() / inputs.len() as f64;
    // Every message asked once (the cache fills from the hub), then again and again.
    let lookups = HubLookups::new(&config);
    for i in &inputs {
        lookups.check(i).await;
    }
    let start = Instant::now();
    for _ in 0..rounds {
        for i in &inputs {
            std::hint::black_box(lookups.check(i).await);
        }
    }
    let cached = start.elapsed().as_secs_f64() / (rounds as usize * inputs.len()) as f64;
    println!(
        "milter: {} messages, {:.1} keys each: a hub lookup with every key cached {:.2} µs; deriving the keys {:.1} µs",
        inputs.len(),
        keys as f64 / inputs.len() as f64,
        cached * 1e6,
        derive * 1e6
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let seconds: f64 = match std::env::var("REPMILTER_HUB_SECONDS") {
        Ok(s) => s.parse().expect("REPMILTER_HUB_SECONDS is a number"),
        Err(_) if full => 10.0,
        Err(_) => 0.3,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        measure("embedded", "store = \"embedded\"", seconds, None).await;
        if let Some((redis, port)) = start_redis() {
            let store = format!("store = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/\"");
            measure("redis", &store, seconds, Some(redis.child.id())).await;
        }
        let hub = start_hub("store = \"embedded\"");
        milter_side(&hub.url, if full { 500 } else { 2 }).await;
        drop(hub);
    });
}
