//! The Redis store against a real redis-server and a real three-node Redis Cluster, through
//! the same conformance suite as the embedded store; and two hub replicas sharing one Redis.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use repmilter::hub::store::{Redis, Store, conformance};

/// redis-server processes, killed when dropped.
struct Servers {
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `n` servers (in cluster mode when `cluster`), without persistence; their ports.
fn start(n: usize, cluster: bool) -> Option<(Servers, Vec<u16>)> {
    if !common::require_tool("redis-server") || !common::require_tool("redis-cli") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    let mut ports = Vec::new();
    for i in 0..n {
        let port = free_port();
        let node_dir = dir.path().join(i.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&node_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]);
        }
        children.push(cmd.spawn().expect("redis-server starts"));
        ports.push(port);
    }
    let servers = Servers {
        children,
        _dir: dir,
    };
    for &p in &ports {
        let start = Instant::now();
        while cli(p, &["ping"]).trim() != "PONG" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis on {p} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if cluster {
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(nodes.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = cli(ports[0], &args);
        assert!(out.contains("All 16384 slots covered"), "{out}");
        let start = Instant::now();
        while !ports
            .iter()
            .all(|&p| cli(p, &["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the cluster did not form"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Some((servers, ports))
}

#[test]
fn the_redis_store_passes_the_store_suite() {
    let Some((_servers, ports)) = start(1, false) else {
        return;
    };
    let url = vec![format!("redis://127.0.0.1:{}/", ports[0])];
    conformance::check_store(&Redis::open(&url, false).unwrap());
    // A second replica's store sees what the first wrote; both write at once.
    let other: Arc<dyn Store> = Arc::new(Redis::open(&url, false).unwrap());
    assert_eq!(other.counts().unwrap().events, 6);
    conformance::check_concurrent_ingest(other);
    // Event marks live as long as configured; pruning forgets decayed records.
    let store = Redis::open(&url, false).unwrap().with_event_retention(3600);
    let model = repmilter::hub::model::Model::default();
    conformance::ingest_fixed(&store, "gw1", &[("ttl-check".into(), vec![])], 10, &model);
    let marks = cli(ports[0], &["--scan", "--pattern", "rm:*:e:ttl-check"]);
    let ttl: i64 = cli(ports[0], &["ttl", marks.trim()])
        .trim()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&ttl), "{marks}: ttl {ttl}");
    conformance::check_forgetting(&store, true);
    conformance::check_learning(&store);
}

#[test]
fn the_redis_store_passes_the_store_suite_on_a_cluster() {
    let Some((_servers, ports)) = start(3, true) else {
        return;
    };
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}/"))
        .collect();
    let store = Redis::open(&urls, true).unwrap();
    conformance::check_store(&store);
    conformance::check_concurrent_ingest(Arc::new(store));
    // The data is spread over the nodes, not piled on one.
    for p in &ports {
        let keys: u64 = cli(*p, &["dbsize"]).trim().parse().unwrap();
        assert!(keys > 0, "node {p} holds nothing");
    }
    conformance::check_forgetting(&Redis::open(&urls, true).unwrap(), true);
    conformance::check_learning(&Redis::open(&urls, true).unwrap());
}

#[test]
fn a_redis_that_is_not_there_is_a_clear_error() {
    let port = free_port();
    let err = Redis::open(&[format!("redis://user:secret@127.0.0.1:{port}/")], false)
        .err()
        .expect("no server");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

async fn post(url: &str, token: &str, body: String) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{status} {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_replicas_share_one_redis() {
    use common::hub::{ADMIN, GW1, GW2, Hub};
    let Some((_servers, ports)) = start(1, false) else {
        return;
    };
    let store = format!(
        "store = \"redis\"\nredis_url = \"redis://127.0.0.1:{}/\"",
        ports[0]
    );
    let (a, b) = (Hub::start(&store), Hub::start(&store));
    let sample = |name: &str| {
        format!(
            "From: Prize <win@prizes.example>\r\nSubject: you won, {name}\r\n\r\n\
             Claim your prize at http://prizes.example/claim now\r\n"
        )
    };
    post(&format!("{}/v1/report/spam", a.url), GW1, sample("Ann")).await;
    post(&format!("{}/v1/report/spam", b.url), GW2, sample("Bob")).await;
    // Either replica answers from both reports.
    for hub in [&a, &b] {
        let v = post(
            &format!("{}/v1/lookup", hub.url),
            GW1,
            r#"{"keys": ["domain:prizes.example"]}"#.into(),
        )
        .await;
        assert_eq!(v["results"][0]["reporters"], 2, "{v}");
        assert!(v["results"][0]["score"].as_f64().unwrap() > 0.0, "{v}");
    }
    // A batch sent to both (a gateway retrying through the other replica) counts once.
    let events = serde_json::json!({ "events": [{
        "id": "0123456789abcdef0123456789abcdef", "gateway": "", "time": 1, "kind": "spam",
        "keys": ["ip:203.0.113.1"], "score": 0.0, "action": "", "symbols": []
    }]});
    let first = post(&format!("{}/v1/events", a.url), GW1, events.to_string()).await;
    let again = post(&format!("{}/v1/events", b.url), GW1, events.to_string()).await;
    assert_eq!(
        (first["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    let stats = reqwest::Client::new()
        .get(format!("{}/v1/stats", b.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(stats["store"]["events"], 3, "{stats}");
}
