//! The learned model as an operator meets it without a hub: `feedback report` trains the
//! local model file, and `check` and the running daemon score with it.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::hub::{GW1, GW2, GW3, Hub};
use common::{Daemon, repmilter, write};
use repmilter::milter::client::{Client, Transaction};
use repmilter::milter::codec::{ConnectAddr, Reply};
use tokio::net::TcpStream;

const ENV: Transaction<'static> = Transaction {
    from: "sender@example.org",
    rcpts: &["bob@example.net"],
    mail_macros: &[],
};

const SPAM_WORDS: [&str; 16] = [
    "cheap", "pills", "pharmacy", "discount", "viagra", "order", "now", "offer", "limited",
    "bonus", "casino", "winner", "prize", "claim", "credit", "approved",
];
const HAM_WORDS: [&str; 16] = [
    "meeting", "agenda", "project", "review", "tomorrow", "notes", "draft", "team", "lunch",
    "schedule", "report", "budget", "quarter", "minutes", "attached", "thanks",
];

/// A message of 40 words drawn from `words` (and a few shared ones) by `seed`.
fn message(words: &[&str], seed: u64, subject: &str) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let body: Vec<&str> = (0..40)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(5) {
                ["the", "and", "your", "with"][(x >> 8) as usize % 4]
            } else {
                words[(x >> 16) as usize % words.len()]
            }
        })
        .collect();
    format!(
        "From: someone{seed}@example.org\r\nTo: bob@example.net\r\nSubject: {subject} {seed}\r\n\
         Message-ID: <{seed}@example.org>\r\n\r\n{}\r\n",
        body.join(" ")
    )
}

fn samples(dir: &std::path::Path, kind: &str, words: &[&str], n: u64) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            write(
                dir,
                &format!("{kind}{i}.eml"),
                &message(words, i + 1000 * n, kind),
            )
        })
        .collect()
}

fn report(config: &std::path::Path, kind: &str, files: &[PathBuf]) -> String {
    let out = repmilter()
        .args(["feedback", "report", "--config"])
        .arg(config)
        .arg(kind)
        .args(files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn check_symbols(config: &std::path::Path, msg: &std::path::Path) -> Vec<String> {
    let out = repmilter()
        .args(["check", "--json", "--config"])
        .arg(config)
        .arg(msg)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    v["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn learned(r: &[Reply]) -> Option<String> {
    r.iter().find_map(|x| match x {
        Reply::AddHeader { value, .. } | Reply::InsHeader { value, .. } => {
            let v = String::from_utf8_lossy(value);
            v.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .find(|w| w.starts_with("LEARN_"))
                .map(str::to_string)
        }
        _ => None,
    })
}

async fn client(d: &Daemon) -> Client<TcpStream> {
    let addr = ConnectAddr::Inet {
        ip: "192.0.2.1".parse().unwrap(),
        port: 1,
    };
    let stream = TcpStream::connect(d.addr()).await.unwrap();
    Client::open(stream, "c.example", addr).await.unwrap().0
}

/// Sends `text` to the daemon until it carries a LEARN_ symbol (within 20 s); that symbol.
async fn wait_learned(d: &Daemon, c: &mut Client<TcpStream>, text: &[u8]) -> String {
    let start = Instant::now();
    loop {
        let r = c.message(&ENV, text).await.unwrap();
        if let Some(s) = learned(&r) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{r:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_reports_train_a_model_that_check_and_the_daemon_use() {
    let d = Daemon::start("", "[learn]\nmin_spam = 10\nmin_ham = 10\n");
    let dir = d.dir.path();
    let spam = samples(dir, "spam", &SPAM_WORDS, 12);
    let ham = samples(dir, "ham", &HAM_WORDS, 12);
    let unseen_spam = write(dir, "new-spam.eml", &message(&SPAM_WORDS, 7, "spam"));
    let unseen_ham = write(dir, "new-ham.eml", &message(&HAM_WORDS, 7, "ham"));

    // No model yet: nothing learned.
    assert!(
        !check_symbols(&d.config_path, &unseen_spam)
            .iter()
            .any(|s| s.starts_with("LEARN_"))
    );
    let out = report(&d.config_path, "--spam", &spam);
    assert!(
        out.contains("trained 12 of 12 files") && out.contains("it scores once"),
        "{out}"
    );
    // Spam only: too young to score.
    assert!(
        !check_symbols(&d.config_path, &unseen_spam)
            .iter()
            .any(|s| s.starts_with("LEARN_"))
    );
    let out = report(&d.config_path, "--ham", &ham);
    assert!(out.contains("12 spam and 12 ham messages"), "{out}");
    assert!(dir.join("learn.model").exists());

    let spam_symbols = check_symbols(&d.config_path, &unseen_spam);
    assert!(
        spam_symbols.iter().any(|s| s.starts_with("LEARN_SPAM_9")),
        "{spam_symbols:?}"
    );
    let ham_symbols = check_symbols(&d.config_path, &unseen_ham);
    assert!(
        ham_symbols.iter().any(|s| s.starts_with("LEARN_HAM_")),
        "{ham_symbols:?}"
    );

    // The running daemon reads the new model by itself.
    let text = std::fs::read(&unseen_spam).unwrap();
    let mut c = client(&d).await;
    let s = wait_learned(&d, &mut c, &text).await;
    assert!(s.starts_with("LEARN_SPAM_9"), "{s}");
    assert!(
        d.wait_log("learned model read from", Duration::from_secs(5)),
        "{}",
        d.log()
    );

    // Reports at once all count: each waits for the others' turn at the file.
    let before = repmilter::learn::read(&dir.join("learn.model"))
        .unwrap()
        .unwrap()
        .spam;
    let runs: Vec<_> = (0..8)
        .map(|i| {
            repmilter()
                .args(["feedback", "report", "--config"])
                .arg(&d.config_path)
                .arg("--spam")
                .arg(&spam[i])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut r in runs {
        assert!(r.wait().unwrap().success());
    }
    let after = repmilter::learn::read(&dir.join("learn.model"))
        .unwrap()
        .unwrap()
        .spam;
    assert!((after - before - 8.0).abs() < 0.01, "{before} -> {after}");

    // A file that is not a model is a clear error, and trains nothing.
    std::fs::write(dir.join("learn.model"), "hello").unwrap();
    let out = repmilter()
        .args(["feedback", "report", "--config"])
        .arg(&d.config_path)
        .arg("--spam")
        .arg(&spam[0])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("learn.model: not a repmilter model file"),
        "{err}"
    );
}

/// A gateway's config: reporting to `hub` with `token`, its spool and model in `dir`.
fn gateway_config(dir: &std::path::Path, hub: &Hub, token: &str) -> PathBuf {
    write(
        dir,
        "gateway.toml",
        &format!(
            "[milter]\nlisten = \"inet:127.0.0.1:0\"\n[hub]\nurl = \"{}\"\ntoken = \"{token}\"\n\
             spool = \"spool\"\n",
            hub.url
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_learns_from_two_gateways_and_a_third_scores_with_what_it_learned() {
    let hub = Hub::start("\n[learn]\ninterval = \"1s\"");
    // Two gateways report samples (their features travel, their text does not).
    for (n, token) in [(1u64, GW1), (2, GW2)] {
        let dir = tempfile::tempdir().unwrap();
        let config = gateway_config(dir.path(), &hub, token);
        let spam = samples(dir.path(), "spam", &SPAM_WORDS, 8 + n);
        let ham = samples(dir.path(), "ham", &HAM_WORDS, 8 + n);
        let out = report(&config, "--spam", &spam);
        assert!(out.contains("keys and hashes only"), "{out}");
        report(&config, "--ham", &ham);
        // Nothing is trained locally when there is a hub.
        assert!(!dir.path().join("learn.model").exists());
    }
    // The third gateway reported nothing; it fetches the network's model and scores with it.
    let d = Daemon::start(
        "",
        &format!(
            "[hub]\nurl = \"{}\"\ntoken = \"{GW3}\"\nspool = \"$DIR/spool\"\nmodel_interval = \"1s\"\n\
             [learn]\nmin_spam = 10\nmin_ham = 10\n",
            hub.url
        ),
    );
    let unseen_spam = write(
        d.dir.path(),
        "new-spam.eml",
        &message(&SPAM_WORDS, 77, "spam"),
    );
    let text = std::fs::read(&unseen_spam).unwrap();
    let mut c = client(&d).await;
    let s = wait_learned(&d, &mut c, &text).await;
    assert!(s.starts_with("LEARN_SPAM_9"), "{s}");
    assert!(
        d.wait_log("the hub's learned model fetched", Duration::from_secs(5)),
        "{}",
        d.log()
    );
    // The hub gone, the gateway goes on with the model it has, across a restart (a new
    // process reading the same config) too.
    drop(hub);
    let r = c.message(&ENV, &text).await.unwrap();
    assert!(
        learned(&r).is_some_and(|s| s.starts_with("LEARN_SPAM_9")),
        "{r:?}"
    );
    let symbols = check_symbols(&d.config_path, &unseen_spam);
    assert!(
        symbols.iter().any(|s| s.starts_with("LEARN_SPAM_9")),
        "{symbols:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_alone_teaches_the_network_nothing() {
    let hub = Hub::start("\n[learn]\ninterval = \"1s\"");
    let dir = tempfile::tempdir().unwrap();
    let config = gateway_config(dir.path(), &hub, GW1);
    report(
        &config,
        "--spam",
        &samples(dir.path(), "spam", &SPAM_WORDS, 30),
    );
    report(
        &config,
        "--ham",
        &samples(dir.path(), "ham", &HAM_WORDS, 30),
    );
    // Compiled, but empty: gw1's samples may make up at most half of the model.
    let client = reqwest::Client::new();
    let start = Instant::now();
    let stats = loop {
        let v: serde_json::Value = client
            .get(format!("{}/v1/stats", hub.url))
            .bearer_auth(common::hub::ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["store"]["events"] == 60 && !v["model"].is_null() {
            // Compiled after the reports: wait one more interval.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            break client
                .get(format!("{}/v1/stats", hub.url))
                .bearer_auth(common::hub::ADMIN)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (
            stats["model"]["spam"].as_f64(),
            stats["model"]["ham"].as_f64()
        ),
        (Some(0.0), Some(0.0)),
        "{stats}"
    );
    // The model is fetched as a file, and asked again with its version it is not sent.
    let resp = client
        .get(format!("{}/v1/model", hub.url))
        .bearer_auth(GW3)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let bytes = resp.bytes().await.unwrap();
    assert!(repmilter::learn::model::Model::from_bytes(&bytes).is_ok());
    // Compiled again since (every second), the same counts are the same version.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = client
        .get(format!("{}/v1/model", hub.url))
        .bearer_auth(GW3)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let none = client
        .get(format!("{}/v1/model", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
}
