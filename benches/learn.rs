//! The learned model's evaluation on the SpamAssassin public corpus, as a user meets it:
//! train by reporting half the corpus through `repmilter feedback report` (no hub: the local
//! model), then send the other half through a running `repmilter serve` over the milter
//! protocol, with the model and without it, and read each message's score from the
//! `X-Spam-Score` header the daemon adds. Both daemons run the shipped rules and no DNS list
//! (the corpus is from 2002: today's lists say nothing of it).
//!
//! **Split.** In each corpus folder, files in name order; the even-numbered ones train, the
//! odd-numbered ones are scored: disjoint, the same every run, and each half holds each
//! folder (easy and hard ham, both spam sets) in the same share.
//!
//! Prints, with the model and without: the ROC curve's area, and the spam recall at a
//! false-positive rate of 0.1% and of 1% (the threshold set as high as needed so that at
//! most that share of the ham scores at or above it).
//!
//! Run: `cargo bench --bench learn` (fetches the corpus with `benches/fetch-corpus.sh` when
//! it is not in `target/corpus`; `REPMILTER_CORPUS` points elsewhere).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use repmilter::milter::client::{Client, Transaction};
use repmilter::milter::codec::{ConnectAddr, Reply};

#[path = "common/corpus.rs"]
mod corpus;

const ENV: Transaction<'static> = Transaction {
    from: "sender@example.org",
    rcpts: &["user@example.net"],
    mail_macros: &[],
};

/// (is spam, file) of each half: (train, test).
type Half = Vec<(bool, PathBuf)>;

fn split(dir: &Path) -> (Half, Half) {
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (folder, spam) in corpus::FOLDERS {
        for (i, f) in corpus::files(dir, folder).into_iter().enumerate() {
            if i % 2 == 0 {
                train.push((spam, f));
            } else {
                test.push((spam, f));
            }
        }
    }
    (train, test)
}

fn bar(n: usize, what: &str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(n as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what:>22} {{bar:40}} {{pos}}/{{len}} {{eta}} left"
        ))
        .unwrap(),
    );
    b
}

fn config(dir: &Path, model: &Path) -> PathBuf {
    let path = dir.join(format!(
        "{}.toml",
        model.file_stem().unwrap().to_string_lossy()
    ));
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    std::fs::write(
        &path,
        format!(
            "[milter]\nlisten = \"inet:127.0.0.1:0\"\nmessage_timeout = \"60s\"\n\
             [actions]\nadd_header = 1000.0\nrewrite_subject = 1000.0\nreject = 1000.0\n\
             [rules]\npaths = [{rules:?}]\n[learn]\nmodel = {model:?}\n[log]\nlevel = \"warn,repmilter=info\"\n"
        ),
    )
    .unwrap();
    path
}

/// Reports the training half through the CLI, a batch of files at a time.
fn train(config: &Path, train: &Half) {
    let b = bar(train.len(), "training (reporting)");
    for spam in [true, false] {
        let files: Vec<&PathBuf> = train
            .iter()
            .filter(|(s, _)| *s == spam)
            .map(|(_, f)| f)
            .collect();
        for chunk in files.chunks(500) {
            let out = Command::new(env!("CARGO_BIN_EXE_repmilter"))
                .args(["feedback", "report", "--config"])
                .arg(config)
                .arg(if spam { "--spam" } else { "--ham" })
                .args(chunk)
                .output()
                .unwrap();
            // Exit 4: some files skipped (named on stderr); the rest trained.
            assert!(
                out.status.success() || out.status.code() == Some(4),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            b.inc(chunk.len() as u64);
        }
    }
    b.finish();
}

struct Daemon {
    child: Child,
    addr: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(config: &Path) -> Daemon {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_repmilter"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(i) = line.find("listening on inet:") {
                let addr = line[i + "listening on inet:".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the daemon listens");
    Daemon { child, addr }
}

/// The message as an MTA passes it on: without an mbox From line.
fn without_mbox_line(raw: Vec<u8>) -> Vec<u8> {
    repmilter::feedback::report::strip_mbox_line(&raw).to_vec()
}

/// Each test message's score from the daemon at `config`.
async fn scores(config: &Path, test: &Half, what: &str) -> Vec<(bool, f64)> {
    let d = serve(config);
    let stream = tokio::net::TcpStream::connect(&d.addr).await.unwrap();
    let client = ConnectAddr::Inet {
        ip: "192.0.2.1".parse().unwrap(),
        port: 1,
    };
    let mut c = Client::open(stream, "relay.example", client)
        .await
        .unwrap()
        .0;
    let b = bar(test.len(), what);
    let mut out = Vec::with_capacity(test.len());
    for (spam, f) in test {
        let raw = std::fs::read(f).unwrap();
        let raw = without_mbox_line(raw);
        let replies = c.message(&ENV, &raw).await.unwrap();
        let score = replies
            .iter()
            .find_map(|r| match r {
                Reply::AddHeader { name, value } | Reply::InsHeader { name, value, .. }
                    if name.eq_ignore_ascii_case("X-Spam-Score") =>
                {
                    String::from_utf8_lossy(value).trim().parse::<f64>().ok()
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{}: no X-Spam-Score in {replies:?}", f.display()));
        out.push((*spam, score));
        b.inc(1);
    }
    b.finish();
    out
}

/// The ROC curve's area (ties count half) and the recall at each false-positive rate.
fn evaluate(scores: &[(bool, f64)], rates: &[f64]) -> (f64, Vec<f64>) {
    let mut s = scores.to_vec();
    s.sort_by(|a, b| b.1.total_cmp(&a.1));
    let spam = s.iter().filter(|x| x.0).count() as f64;
    let ham = s.len() as f64 - spam;
    // Walk thresholds from the highest score down, a group of equal scores at a time.
    let (mut tp, mut fp, mut area) = (0.0, 0.0, 0.0);
    let mut recall = vec![0.0; rates.len()];
    let mut i = 0;
    while i < s.len() {
        let mut j = i;
        let (mut dtp, mut dfp) = (0.0, 0.0);
        while j < s.len() && s[j].1 == s[i].1 {
            if s[j].0 {
                dtp += 1.0;
            } else {
                dfp += 1.0;
            }
            j += 1;
        }
        area += dfp * (tp + dtp / 2.0);
        tp += dtp;
        fp += dfp;
        for (r, rate) in recall.iter_mut().zip(rates) {
            if fp <= rate * ham {
                *r = tp / spam;
            }
        }
        i = j;
    }
    (area / (spam * ham), recall)
}

fn main() {
    // `cargo test --all-targets` builds benches and runs them with no arguments as a check;
    // this one takes minutes, so it runs only under `cargo bench`.
    self_check();
    if !std::env::args().any(|a| a == "--bench") {
        println!("learn evaluation: arithmetic checked; run it with `cargo bench --bench learn`");
        return;
    }
    let dir = corpus::fetched();
    let (train_half, test_half) = split(&dir);
    let count = |h: &Half, spam: bool| h.iter().filter(|x| x.0 == spam).count();
    println!(
        "split: training on {} spam and {} ham (even-numbered files of each folder), scoring {} spam and {} ham (odd-numbered)",
        count(&train_half, true),
        count(&train_half, false),
        count(&test_half, true),
        count(&test_half, false)
    );
    let work = tempfile::tempdir().unwrap();
    let on = config(work.path(), &work.path().join("learned.model"));
    let off = config(work.path(), &work.path().join("none.model"));
    let started = Instant::now();
    train(&on, &train_half);
    println!("trained in {:.1} s", started.elapsed().as_secs_f64());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rates = [0.001, 0.01];
    for (name, config) in [("model off", &off), ("model on", &on)] {
        let s = rt.block_on(scores(config, &test_half, &format!("scoring, {name}")));
        let (auc, recall) = evaluate(&s, &rates);
        println!(
            "{name:>9}: ROC area {auc:.4}; spam recall {:.1}% at 0.1% false positives, {:.1}% at 1%",
            recall[0] * 100.0,
            recall[1] * 100.0
        );
    }
    println!("the models alone, on the same split and features:");
    compare_models(&train_half, &test_half, &rates);
}

/// The models compared, on the features the daemon computes (`Engine::learn_features`,
/// with the shipped rules): each model's probability alone ranks the test half.
fn compare_models(train_half: &Half, test_half: &Half, rates: &[f64]) {
    use repmilter::config::Config;
    use repmilter::engine::Engine;
    use repmilter::learn::model::Model;
    use repmilter::message::{Envelope, Message};
    use repmilter::scan::ScanInput;
    let mut config = Config::default();
    config.rules.paths = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in = rt.enter();
    let engine = Engine::new(config);
    let features = |half: &Half, what: &str| -> Vec<(bool, Vec<u64>)> {
        let b = bar(half.len(), what);
        let out = half
            .iter()
            .map(|(spam, f)| {
                let raw = without_mbox_line(std::fs::read(f).unwrap());
                let input = ScanInput::new(Envelope::default(), Message::from_raw(&raw, 10 << 20));
                b.inc(1);
                (*spam, engine.learn_features(&input))
            })
            .collect();
        b.finish();
        out
    };
    let train = features(train_half, "features, training");
    let test = features(test_half, "features, test");

    // Naive Bayes, Robinson and Fisher (the shipped model).
    let mut nb = Model::default();
    for (spam, f) in &train {
        nb.train(f, *spam);
    }
    let nb_p: Vec<f64> = test.iter().map(|(_, f)| nb.score(f).probability).collect();

    // Hashed logistic regression: 2^20 weights, 10 epochs of SGD in a fixed shuffled order.
    const BITS: u32 = 20;
    let mut w = vec![0f32; 1 << BITS];
    let mut bias = 0f32;
    let slot = |f: u64| (f >> (64 - BITS)) as usize;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let predict = |w: &[f32], bias: f32, f: &[u64]| {
        let z: f32 =
            bias + f.iter().map(|&h| w[slot(h)]).sum::<f32>() / (f.len().max(1) as f32).sqrt();
        1.0 / (1.0 + (-z).exp())
    };
    for epoch in 0..10 {
        let rate = 0.5 / (1.0 + epoch as f32);
        for &i in &order {
            let (spam, f) = &train[i];
            let err = predict(&w, bias, f) - if *spam { 1.0 } else { 0.0 };
            let g = rate * err / (f.len().max(1) as f32).sqrt();
            for &h in f {
                w[slot(h)] -= g;
            }
            bias -= rate * err * 0.1;
        }
    }
    let lr_p: Vec<f64> = test
        .iter()
        .map(|(_, f)| f64::from(predict(&w, bias, f)))
        .collect();

    // The learner's own cost per message in the daemon: features of a message whose view
    // the other stages built, and the score.
    let mut spent = Duration::ZERO;
    for (_, f) in test_half {
        let raw = without_mbox_line(std::fs::read(f).unwrap());
        let input = ScanInput::new(Envelope::default(), Message::from_raw(&raw, 10 << 20));
        input.view();
        let symbols = engine.content_symbols(&input);
        let t = Instant::now();
        let features = repmilter::learn::features::with_symbols(
            repmilter::learn::features::of(&input),
            &symbols,
        );
        std::hint::black_box(nb.score(&features));
        spent += t.elapsed();
    }
    println!(
        "the learner's cost: {:.1} µs per message (features and score; {} messages, {} features in the model)",
        spent.as_secs_f64() * 1e6 / test_half.len() as f64,
        test_half.len(),
        nb.features.len()
    );

    let labels: Vec<bool> = test.iter().map(|(s, _)| *s).collect();
    let both: Vec<f64> = nb_p.iter().zip(&lr_p).map(|(a, b)| (a + b) / 2.0).collect();
    for (name, p) in [
        ("naive Bayes (Robinson, Fisher)", &nb_p),
        ("hashed logistic regression", &lr_p),
        ("both, averaged", &both),
    ] {
        let scored: Vec<(bool, f64)> = labels.iter().copied().zip(p.iter().copied()).collect();
        let (auc, recall) = evaluate(&scored, rates);
        println!(
            "{name:>31}: ROC area {auc:.4}; spam recall {:.1}% at 0.1% false positives, {:.1}% at 1%",
            recall[0] * 100.0,
            recall[1] * 100.0
        );
    }
}

/// What `cargo test --all-targets` runs: the evaluation arithmetic on known scores.
fn self_check() {
    // Perfect separation.
    let (auc, r) = evaluate(
        &[(true, 2.0), (true, 3.0), (false, 1.0), (false, 0.0)],
        &[0.0],
    );
    assert_eq!((auc, r[0]), (1.0, 1.0));
    // All tied: area 0.5, and no threshold keeps false positives at 0 while catching any.
    let (auc, r) = evaluate(&[(true, 1.0), (false, 1.0)], &[0.0]);
    assert_eq!((auc, r[0]), (0.5, 0.0));
    // One ham above one of two spams: area 0.5; at 50% false positives all spam is caught.
    let (auc, r) = evaluate(&[(true, 3.0), (false, 2.0), (true, 1.0)], &[0.0, 1.0]);
    assert_eq!((auc, r[0], r[1]), (0.5, 0.5, 1.0));
}
