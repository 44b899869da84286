//! The monitor listener as an operator meets it: Prometheus metrics that move when mail
//! flows, `repmilter stats`, and the dashboard rendered with data in a real headless Chromium.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, gtube_mail, ham, repmilter, require_tool};
use repmilter::milter::client::{Client, Transaction};
use repmilter::milter::codec::ConnectAddr;
use tokio::net::TcpStream;

const SPAM: Transaction<'static> = Transaction {
    from: "spammer@example.org",
    rcpts: &["bob@example.net", "carol@example.net"],
    mail_macros: &[("i", "SPAMQ1")],
};

const HAM: Transaction<'static> = Transaction {
    from: "alice@example.org",
    rcpts: &["bob@example.net"],
    mail_macros: &[("i", "HAMQ1")],
};

/// A daemon with the monitor on a free port, and the monitor's base URL.
fn start() -> (Daemon, String) {
    let d = Daemon::start(
        "",
        "[metrics]\nlisten = \"127.0.0.1:0\"\n[rules]\npaths = [\"$DIR/rules\"]\n",
    );
    assert!(
        d.wait_log("monitor listening on http://", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    let log = d.log();
    let at = log.find("monitor listening on ").unwrap() + "monitor listening on ".len();
    let url = log[at..].split_whitespace().next().unwrap().to_string();
    (d, url)
}

async fn send(d: &Daemon, tx: &Transaction<'_>, message: &str) {
    let stream = TcpStream::connect(d.addr()).await.unwrap();
    let peer = ConnectAddr::Inet {
        ip: "192.0.2.7".parse().unwrap(),
        port: 1,
    };
    let mut c = Client::open(stream, "c.example", peer).await.unwrap().0;
    c.message(tx, message.as_bytes()).await.unwrap();
}

async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, r.text().await.unwrap())
}

/// The value of one sample line of the metrics text, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_when_mail_flows_and_stats_reads_them() {
    let (d, url) = start();
    let (status, kind, before) = get(&format!("{url}/metrics")).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(sample(&before, "repmilter_rules"), 1.0, "{before}");
    let reject = "repmilter_messages_total{action=\"reject\"}";
    let accept = "repmilter_messages_total{action=\"accept\"}";
    assert_eq!(sample(&before, reject), 0.0);

    send(&d, &SPAM, &gtube_mail()).await;
    send(&d, &SPAM, &gtube_mail()).await;
    send(&d, &HAM, &ham()).await;

    let (_, _, after) = get(&format!("{url}/metrics")).await;
    assert_eq!(sample(&after, reject), 2.0, "{after}");
    assert_eq!(sample(&after, accept), 1.0, "{after}");
    assert_eq!(
        sample(&after, "repmilter_symbol_hits_total{symbol=\"GTUBE\"}"),
        2.0,
        "{after}"
    );
    assert_eq!(sample(&after, "repmilter_connections_total"), 3.0);
    assert_eq!(
        sample(&after, "repmilter_scan_seconds_count{stage=\"message\"}"),
        3.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "repmilter_scan_seconds_count{stage=\"signatures\"}"),
        3.0,
        "{after}"
    );

    // The summary behind the dashboard: the recent verdicts with their envelope.
    let (status, _, json) = get(&format!("{url}/api/summary")).await;
    assert_eq!(status, 200);
    let s: serde_json::Value = serde_json::from_str(&json).unwrap();
    let recent = s["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 3, "{json}");
    let spam = &recent[0];
    assert_eq!(spam["queue_id"], "SPAMQ1", "{json}");
    assert_eq!(spam["from"], "spammer@example.org");
    assert_eq!(spam["rcpts"], 2);
    assert_eq!(spam["action"], "reject");
    assert!(spam["size"].as_u64().unwrap() > 60, "{json}");
    assert_eq!(recent[2]["queue_id"], "HAMQ1");

    // The per-message log line carries the same.
    assert!(
        d.log().lines().any(|l| l.contains("message scored")
            && l.contains("queue_id=\"SPAMQ1\"")
            && l.contains("rcpts=2")
            && l.contains("action=reject")),
        "{}",
        d.log()
    );

    // Anything else is a 404, and the listener keeps serving.
    let (status, _, _) = get(&format!("{url}/nope")).await;
    assert_eq!(status, 404);

    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || repmilter().args(["stats", "--url", &url]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 rules, 0 sessions open, 3 connections, 3 messages"),
        "{text}"
    );
    // Table rows, whatever the column widths.
    for want in [
        ["reject", "2", "66.7%"],
        ["accept", "1", "33.3%"],
        ["GTUBE", "2", "66.7%"],
    ] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().eq(want.iter().copied())),
            "missing row {want:?} in\n{text}"
        );
    }
}

#[test]
fn stats_needs_a_monitor_and_says_which_setting_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write(
        dir.path(),
        "r.toml",
        "[milter]\nlisten = \"inet:127.0.0.1:1\"\n",
    );
    let out = repmilter()
        .args(["stats", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no [metrics] listen"), "{err}");
    // Nothing listening there: a clear error, exit 5.
    let out = repmilter()
        .args(["stats", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the monitor at http://127.0.0.1:1/api/summary"),
        "{err}"
    );
}

fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1400,1400",
            // Let the page's script fetch the summary and draw before the capture.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("run chromium")
}

/// A screenshot of `page`: how many pixels have exactly each of `colours`.
async fn screenshot_counts(page: &str, colours: &[[u8; 3]]) -> Vec<usize> {
    let shot = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
    let path = shot.path().to_path_buf();
    let out = tokio::task::spawn_blocking({
        let arg = format!("--screenshot={}", path.display());
        let page = page.to_string();
        move || chromium(&[&arg, &page])
    })
    .await
    .unwrap();
    let file = std::fs::File::open(&path).unwrap();
    assert!(
        file.metadata().unwrap().len() > 0,
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    colours
        .iter()
        .map(|rgb| {
            pixels
                .chunks(channels)
                .filter(|p| p[..3] == rgb[..])
                .count()
        })
        .collect()
}

/// The action chart's reject colour and the symbol bars' colour.
const REJECT: [u8; 3] = [0xe5, 0x39, 0x35];
const SYMBOL_BAR: [u8; 3] = [0x3f, 0x6f, 0xd8];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_with_data_in_headless_chromium() {
    if !require_tool("chromium") {
        return;
    }
    let (d, url) = start();
    let page = format!("{url}/");
    // Before any mail: the legend's swatches only, no bar.
    let empty = screenshot_counts(&page, &[REJECT, SYMBOL_BAR]).await;
    assert_eq!(empty[1], 0, "symbol bars with no mail");

    send(&d, &SPAM, &gtube_mail()).await;
    send(&d, &SPAM, &gtube_mail()).await;
    send(&d, &HAM, &ham()).await;

    let dom = tokio::task::spawn_blocking({
        let page = page.clone();
        move || chromium(&["--dump-dom", &page])
    })
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains("data-loaded=\"yes\""),
        "the page did not load its summary:\n{html}\n{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    // Drawn from the data: the action chart's bars, GTUBE's bar, both verdicts.
    for want in [
        "data-action=\"reject\"",
        "data-action=\"accept\"",
        "data-symbol=\"GTUBE\"",
        "SPAMQ1",
        "HAMQ1",
        "spammer@example.org",
    ] {
        assert!(
            html.contains(want),
            "missing {want:?} in the rendered page:\n{html}"
        );
    }

    // On screen, not only in the DOM: the reject bar and the symbol bar have pixels.
    let full = screenshot_counts(&page, &[REJECT, SYMBOL_BAR]).await;
    assert!(
        full[0] > empty[0] + 200,
        "no reject bar on screen: {} reject-coloured pixels before mail, {} after",
        empty[0],
        full[0]
    );
    assert!(full[1] > 200, "no symbol bar on screen: {} pixels", full[1]);
}
