//! The hub as gateways and operators meet it: a real `repmilter hub` process on a loopback
//! port, spoken to over HTTP.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::hub::{ADMIN, GW1, GW2, GW3, Hub};

async fn call(
    hub: &Hub,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<reqwest::Body>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{}{path}", hub.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} not JSON ({e}): {text}"))
    };
    (status, v, headers)
}

async fn post_json(hub: &Hub, path: &str, token: &str, v: Value) -> (u16, Value) {
    let (s, v, _) = call(
        hub,
        reqwest::Method::POST,
        path,
        Some(token),
        Some(v.to_string().into()),
    )
    .await;
    (s, v)
}

async fn lookup(hub: &Hub, keys: &[&str]) -> Vec<Value> {
    let (s, v) = post_json(hub, "/v1/lookup", GW1, json!({ "keys": keys })).await;
    assert_eq!(s, 200, "{v}");
    v["results"].as_array().unwrap().clone()
}

/// An ARF report (RFC 5965) of `feedback_type` about a campaign message.
fn arf(feedback_type: &str, source_ip: &str) -> String {
    let source = if source_ip.is_empty() {
        String::new()
    } else {
        format!("Source-IP: {source_ip}\r\n")
    };
    format!(
        "From: fbl@isp.example\r\nSubject: report\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\r\n\r\n\
         --arf\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\
         --arf\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: {feedback_type}\r\nVersion: 1\r\n{source}\r\n\
         --arf\r\nContent-Type: message/rfc822\r\n\r\n{}\r\n--arf--\r\n",
        campaign("Fay", 5)
    )
}

fn campaign(name: &str, n: u32) -> String {
    format!(
        "From: Security <alerts@bank-secure.example>\r\nSubject: account suspended\r\n\r\n\
         Dear {name}, your account at Example Bank was suspended on {n} March. To restore \
         access within 48 hours confirm your details at the secure portal below. Failure to \
         act will close the account permanently.\r\nhttps://login.evil-portal.example/u/{n}/verify\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_list_a_campaign_that_one_alone_cannot() {
    let hub = Hub::start("");
    let report = |token: &'static str, msg: String| {
        let hub = &hub;
        async move {
            let (s, v, _) = call(
                hub,
                reqwest::Method::POST,
                "/v1/report/spam",
                Some(token),
                Some(msg.into()),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            v
        }
    };
    // One gateway, many times: nothing is listed.
    for i in 0..20 {
        report(GW1, campaign("Ann", i)).await;
    }
    let r = lookup(&hub, &["domain:evil-portal.example"]).await;
    assert_eq!(r[0]["score"], 0.0, "{r:?}");
    // A second gateway reports a variant: the domain, the link and the fingerprint are listed.
    let v = report(GW2, campaign("Bob", 99)).await;
    let keys: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let r = lookup(&hub, &keys).await;
    let domain = r
        .iter()
        .find(|x| x["key"] == "domain:evil-portal.example")
        .unwrap();
    assert!(domain["score"].as_f64().unwrap() > 3.0, "{domain}");
    assert_eq!(domain["reporters"], 2);
    assert!(
        r.iter()
            .any(|x| x["key"].as_str().unwrap().starts_with("fuzzy:")
                && x["score"].as_f64().unwrap() > 0.0),
        "{r:?}"
    );
    // Ham reports from two gateways pull it down again.
    for token in [GW1, GW2] {
        let (s, _, _) = call(
            &hub,
            reqwest::Method::POST,
            "/v1/report/ham",
            Some(token),
            Some(campaign("Cy", 7).into()),
        )
        .await;
        assert_eq!(s, 200);
    }
    let after = lookup(&hub, &["domain:evil-portal.example"]).await;
    assert!(
        after[0]["score"].as_f64().unwrap() < domain["score"].as_f64().unwrap(),
        "{after:?}"
    );
    // The admin allowlist wins outright.
    let (s, _, _) = call(
        &hub,
        reqwest::Method::PUT,
        "/v1/allow/domain:evil-portal.example",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let r = lookup(&hub, &["domain:evil-portal.example"]).await;
    assert!(r[0]["score"].as_f64().unwrap() < 0.0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_counted_once_however_often_they_arrive() {
    let hub = Hub::start("");
    let event = |id: &str| {
        json!({ "id": id, "gateway": "anything", "time": 1, "kind": "spam",
                "keys": ["ip:192.0.2.9"], "score": 20.0, "action": "reject", "symbols": ["GTUBE"] })
    };
    let ids: Vec<String> = (0..50).map(|i| format!("{i:032x}")).collect();
    let batch: Vec<Value> = ids.iter().map(|i| event(i)).collect();
    let (s, v) = post_json(&hub, "/v1/events", GW1, json!({ "events": batch })).await;
    assert_eq!(
        (s, v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (200, Some(50), Some(0))
    );
    // The same batch again, as after a lost acknowledgement.
    let (s, v) = post_json(&hub, "/v1/events", GW1, json!({ "events": batch })).await;
    assert_eq!(
        (s, v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (200, Some(0), Some(50))
    );
    let (s, v, _) = call(&hub, reqwest::Method::GET, "/v1/stats", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["store"]["events"], 50);
    // The event's "gateway" field is not believed: fifty events from gw1 are one reporter.
    let r = lookup(&hub, &["ip:192.0.2.9"]).await;
    assert_eq!(r[0]["reporters"], 1, "{r:?}");
    assert_eq!(r[0]["score"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_cannot_list_through_spread_nor_shadow_another_s_events() {
    let hub = Hub::start("");
    let event = |id: String, keys: &[&str]| {
        json!({ "id": id, "gateway": "", "time": 1, "kind": "spam",
                "keys": keys, "score": 20.0, "action": "reject", "symbols": [] })
    };
    // Two gateways list an address.
    for (n, gw) in [GW1, GW2].into_iter().enumerate() {
        let e = event(format!("{:032x}", n + 1), &["ip:192.0.2.1"]);
        let (s, v) = post_json(&hub, "/v1/events", gw, json!({ "events": [e] })).await;
        assert_eq!((s, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    }
    assert!(
        lookup(&hub, &["ip:192.0.2.1"]).await[0]["score"]
            .as_f64()
            .unwrap()
            > 3.0
    );
    // One of them alone pairs victims with the listed address, over and over, repeating keys
    // inside an event too: the listed address's reputation spreads to them as that gateway's
    // own evidence, one voice, so none is listed.
    let victims = [
        "domain:victim.example",
        "net:198.51.100.0/24",
        "ip:198.51.100.7",
    ];
    let batch: Vec<Value> = (0..20)
        .map(|i| {
            event(
                format!("{:032x}", 100 + i),
                &[
                    "ip:192.0.2.1",
                    victims[0],
                    victims[0],
                    victims[0],
                    victims[1],
                    victims[2],
                ],
            )
        })
        .collect();
    let (s, v) = post_json(&hub, "/v1/events", GW1, json!({ "events": batch })).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(20)), "{v}");
    for r in lookup(&hub, &victims).await {
        assert_eq!(r["score"], 0.0, "{r}");
        assert_eq!(r["reporters"], 1, "{r}");
    }
    // Networks other than a client's /24 cannot be keys at all.
    for bad in ["net:0.0.0.0/0", "net:198.51.100.7/24"] {
        let (s, v) = post_json(
            &hub,
            "/v1/events",
            GW1,
            json!({ "events": [event(format!("{:032x}", 999), &[bad])] }),
        )
        .await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    // Event ids are per gateway: gw2 sending gw1's id is another event, not a duplicate.
    let e = event(format!("{:032X}", 100), &["ip:192.0.2.1"]);
    let (s, v) = post_json(&hub, "/v1/events", GW2, json!({ "events": [e.clone()] })).await;
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(1)), "{v}");
    // ...and the same id in capitals is the same event.
    let (s, v) = post_json(&hub, "/v1/events", GW2, json!({ "events": [e] })).await;
    assert_eq!((s, v["duplicates"].as_u64()), (200, Some(1)), "{v}");
}

/// Sends `raw` on a new connection and reads until the hub closes it or `within` passes;
/// answers what was read and whether the hub closed the connection.
async fn raw_exchange(hub: &Hub, raw: &[u8], within: Duration) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = hub.url.trim_start_matches("http://");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(raw).await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_and_oversized_clients_cannot_exhaust_the_hub() {
    let hub = Hub::start(
        "max_body = 4096\nmax_connections = 8\nheader_timeout = \"500ms\"\nbody_timeout = \"500ms\"",
    );
    let addr = hub.url.trim_start_matches("http://").to_string();
    // Eight idle connections fill the hub; a ninth is closed at once.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, closed) = raw_exchange(&hub, b"", Duration::from_millis(300)).await;
    assert!(closed, "a connection past max_connections stays open");
    // The idle ones are closed by the header timeout, and the hub serves again.
    for mut c in idle {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection stayed open: {r:?}"
        );
    }
    let (s, _, _) = call(&hub, reqwest::Method::GET, "/v1/health", None, None).await;
    assert_eq!(s, 200);
    // A body that never finishes: 408, with a reason.
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GW1}\r\n\
         Content-Length: 100\r\n\r\n{{\"events\""
    );
    let (reply, _) = raw_exchange(&hub, head.as_bytes(), Duration::from_secs(3)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("did not arrive within"), "{reply}");
    // A declared length over the cap: 413 before any of the body is sent.
    let head = format!(
        "POST /v1/report/spam HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GW1}\r\n\
         Content-Length: 1000000\r\n\r\n"
    );
    let (reply, _) = raw_exchange(&hub, head.as_bytes(), Duration::from_secs(1)).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // The scheme is case-insensitive; an undecodable path segment is a JSON 400; a message
    // with nothing to learn from is refused.
    let head = format!(
        "GET /v1/keys/ip:192.0.2.1 HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {GW1}\r\n\
         Connection: close\r\n\r\n"
    );
    let (reply, _) = raw_exchange(&hub, head.as_bytes(), Duration::from_secs(2)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (s, v, _) = call(&hub, reqwest::Method::GET, "/v1/keys/%ff", Some(GW1), None).await;
    assert_eq!(s, 400, "{v}");
    let (s, v, _) = call(
        &hub,
        reqwest::Method::POST,
        "/v1/report/spam",
        Some(GW1),
        Some("hello".into()),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no keys"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guesser_gets_few_tries_and_gateways_are_not_slowed() {
    let hub = Hub::start("");
    let client = reqwest::Client::new();
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..300 {
        let req = client
            .post(format!("{}/v1/lookup", hub.url))
            .bearer_auth(format!("guess-{i:016}"))
            .body("{\"keys\": []}");
        guesses.spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let retry = resp.headers().contains_key("retry-after");
            let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
            assert!(v["error"].is_string(), "{status} {v}");
            (status, retry)
        });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(r) = guesses.join_next().await {
        let (status, retry) = r.unwrap();
        assert_eq!(retry, status == 429);
        *statuses.entry(status).or_insert(0) += 1;
    }
    // The first hundred or so are told 401, the rest to wait.
    assert!(statuses[&401] >= 100, "{statuses:?}");
    assert!(statuses.get(&429).is_some_and(|n| *n >= 50), "{statuses:?}");
    let (s, v) = post_json(&hub, "/v1/lookup", GW2, json!({ "keys": ["ip:192.0.2.1"] })).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_json_errors() {
    let hub = Hub::start("max_body = 4096\nrate = 1\nburst = 12");
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let (s, v, _) = call(&hub, get.clone(), "/v1/health", None, None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    // No token, an unknown one, the wrong role.
    let (s, v, _) = call(&hub, post.clone(), "/v1/lookup", None, Some("{}".into())).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("bearer token"));
    let (s, _, _) = call(
        &hub,
        post.clone(),
        "/v1/lookup",
        Some("nope-nope-nope-nope"),
        Some("{}".into()),
    )
    .await;
    assert_eq!(s, 401);
    let (s, v, _) = call(
        &hub,
        post.clone(),
        "/v1/report/spam",
        Some(GW3),
        Some("x".into()),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    let (s, _, _) = call(&hub, get.clone(), "/v1/stats", Some(GW1), None).await;
    assert_eq!(s, 403);
    // Garbage, a bad key, an unknown field, too many bytes, an unknown route.
    let (s, v) = post_json(&hub, "/v1/lookup", GW2, json!("not an object")).await;
    assert_eq!(s, 400, "{v}");
    let (s, v, _) = call(
        &hub,
        post.clone(),
        "/v1/lookup",
        Some(GW2),
        Some("{\"keys\": [".into()),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = post_json(&hub, "/v1/lookup", GW2, json!({ "keys": ["ip:999.1.2.3"] })).await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("ip:999.1.2.3"), "{v}");
    let (s, _) = post_json(&hub, "/v1/lookup", GW2, json!({ "keys": [], "extra": 1 })).await;
    assert_eq!(s, 400);
    let (s, v) = post_json(
        &hub,
        "/v1/events",
        GW2,
        json!({ "events": [{ "id": "short" }] }),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let big = "x".repeat(10_000);
    let (s, v, _) = call(
        &hub,
        post.clone(),
        "/v1/report/spam",
        Some(GW2),
        Some(big.into()),
    )
    .await;
    assert_eq!(s, 413, "{v}");
    let (s, v, _) = call(&hub, get.clone(), "/v1/nothing", Some(GW2), None).await;
    assert_eq!(s, 404, "{v}");
    // An ARF report that is not one, and one without its original message.
    let (s, v, _) = call(
        &hub,
        post.clone(),
        "/v1/report/arf",
        Some(GW2),
        Some("Subject: hi\r\n\r\njust mail\r\n".into()),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not an ARF report"),
        "{v}"
    );
    let (s, v, _) = call(
        &hub,
        post.clone(),
        "/v1/report/arf",
        Some(GW2),
        Some(
            arf("abuse", "")
                .replace("message/rfc822", "text/plain")
                .into(),
        ),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no original message"),
        "{v}"
    );
    // Past its rate, a gateway is told when to come back; the others are not affected.
    let mut limited = None;
    for _ in 0..20 {
        let (s, _, h) = call(&hub, get.clone(), "/v1/keys/ip:192.0.2.1", Some(GW3), None).await;
        if s == 429 {
            limited = h
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            break;
        }
    }
    let retry: u64 = limited.expect("a 429").parse().unwrap();
    assert!(retry >= 1);
    let (s, _, _) = call(&hub, get.clone(), "/v1/keys/ip:192.0.2.1", Some(GW1), None).await;
    assert_eq!(s, 200);
    // Still serving after all that.
    let (s, _, _) = call(&hub, get, "/v1/health", None, None).await;
    assert_eq!(s, 200);
}

#[test]
fn the_sample_hub_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hub.toml");
    repmilter::config::hub::HubConfig::load(std::path::Path::new(path))
        .unwrap_or_else(|e| panic!("{e}"));
}

use common::Daemon;
use repmilter::milter::client::{Client, Transaction};
use repmilter::milter::codec::{ConnectAddr, Reply};

const ENV: Transaction<'static> = Transaction {
    from: "alerts@bank-secure.example",
    rcpts: &["bob@example.net"],
    mail_macros: &[],
};

async fn milter_client(d: &Daemon, ip: &str) -> Client<tokio::net::TcpStream> {
    let s = tokio::net::TcpStream::connect(d.addr()).await.unwrap();
    let addr = ConnectAddr::Inet {
        ip: ip.parse().unwrap(),
        port: 40000,
    };
    Client::open(s, "client.example", addr).await.unwrap().0
}

/// The X-Spam-Status the milter added, or the final reply if it added none.
fn status(r: &[Reply]) -> String {
    r.iter()
        .find_map(|r| match r {
            Reply::AddHeader { name, value } if name == "X-Spam-Status" => {
                Some(String::from_utf8_lossy(value).into_owned())
            }
            _ => None,
        })
        .unwrap_or_else(|| format!("{:?}", r.last()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_scores_a_campaign_other_gateways_reported() {
    let hub = Hub::start("");
    for (token, name) in [(GW1, "Ann"), (GW2, "Bob")] {
        let (s, v, _) = call(
            &hub,
            reqwest::Method::POST,
            "/v1/report/spam",
            Some(token),
            Some(campaign(name, 3).into()),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    // A third gateway (the milter, with gw3's lookup token) gets a variant of the campaign
    // from an address nobody reported.
    let d = Daemon::start(
        "",
        &format!(
            "[hub]\nurl = \"{}\"\ntoken = \"{GW3}\"\ntimeout = \"2s\"\n",
            hub.url
        ),
    );
    let mut c = milter_client(&d, "198.51.100.23").await;
    let r = c
        .message(&ENV, campaign("Dora", 11).as_bytes())
        .await
        .unwrap();
    // Rejected or marked, with the hub's symbols saying which keys carried the score.
    assert!(
        matches!(r.last(), Some(Reply::ReplyCode(_))) || status(&r).starts_with("Yes"),
        "{r:?}"
    );
    assert!(d.wait_log("message scored", Duration::from_secs(5)));
    let line = d
        .log()
        .lines()
        .find(|l| l.contains("message scored"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("HUB_SPAM_DOMAIN") && line.contains("HUB_FUZZY"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_hangs_never_holds_mail_past_the_budget() {
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            held.push(s);
        }
    });
    let d = Daemon::start(
        "",
        &format!("[hub]\nurl = \"{url}\"\ntoken = \"{GW1}\"\ntimeout = \"500ms\"\n"),
    );
    let mut c = milter_client(&d, "198.51.100.23").await;
    let mut seen = Vec::new();
    for i in 0..5 {
        let start = std::time::Instant::now();
        let r = c
            .message(&ENV, campaign("Eve", i).as_bytes())
            .await
            .unwrap();
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "message {i} took {took:?}");
        assert_eq!(r.last(), Some(&Reply::Accept));
        seen.push((status(&r), took));
    }
    // The first messages wait out the 500 ms budget; after three the breaker is open and the
    // next ones are judged without asking.
    assert!(seen[0].0.contains("HUB_TIMEOUT"), "{seen:?}");
    assert!(seen[4].0.contains("HUB_UNAVAILABLE"), "{seen:?}");
    assert!(seen[4].1 < Duration::from_millis(400), "{seen:?}");
}

async fn stored_events(hub: &Hub) -> u64 {
    let (s, v, _) = call(hub, reqwest::Method::GET, "/v1/stats", Some(ADMIN), None).await;
    assert_eq!(s, 200, "{v}");
    v["store"]["events"].as_u64().unwrap()
}

/// Waits until the hub holds `n` events (never more: each is counted once).
async fn wait_events(hub: &Hub, n: u64, within: Duration) {
    let start = std::time::Instant::now();
    loop {
        let got = stored_events(hub).await;
        assert!(got <= n, "{got} events stored, {n} sent");
        if got == n {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{got} of {n} events after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verdict_reaches_the_hub_through_an_outage_and_a_kill() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spool = tempfile::tempdir().unwrap();
    let config = format!(
        "[hub]\nurl = \"http://127.0.0.1:{port}\"\ntoken = \"{GW1}\"\ntimeout = \"300ms\"\n\
         spool = \"{}\"\n",
        spool.path().display()
    );
    // Campaign variants are accepted (nothing local knows them); GTUBE is rejected.
    let send = |d: &Daemon, n: u32, tag: &'static str| {
        let addr = d.addr();
        async move {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let ip = ConnectAddr::Inet {
                ip: "198.51.100.77".parse().unwrap(),
                port: 40000,
            };
            let mut c = Client::open(s, "client.example", ip).await.unwrap().0;
            for i in 0..n {
                let gtube = tag == "gtube";
                let body = if gtube {
                    common::gtube_mail()
                } else {
                    campaign(&format!("{tag}{i}"), i)
                };
                let r = c.message(&ENV, body.as_bytes()).await.unwrap();
                let rejected = matches!(r.last(), Some(Reply::ReplyCode(_)));
                assert_eq!(rejected, gtube, "{r:?}");
            }
        }
    };
    // The hub is down: mail flows, verdicts wait in the spool.
    let mut d = Daemon::start("", &config);
    send(&d, 20, "a").await;
    // Killed without warning: what was replied to is in the spool.
    d.signal("KILL");
    let killed = d.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed),
        Some(9)
    );
    let d = Daemon::start("", &config);
    // A second daemon on the same spool is refused at start.
    let clash = common::repmilter()
        .args(["serve", "--config"])
        .arg(&d.config_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&clash.stderr);
    assert!(!clash.status.success(), "{err}");
    assert!(err.contains("in use by another process"), "{err}");
    send(&d, 20, "b").await;
    // The hub comes up where the gateway expects it: all 40 arrive, each once.
    let hub = Hub::start_on(&format!("127.0.0.1:{port}"), "");
    wait_events(&hub, 40, Duration::from_secs(60)).await;
    send(&d, 10, "gtube").await;
    wait_events(&hub, 50, Duration::from_secs(10)).await;
    // Accepted mail is no evidence; the rejections are, a little (verdict_weight 0.25 each,
    // one gateway's evidence capped at 1), from gw1, the token's gateway.
    let (s, v, _) = call(
        &hub,
        reqwest::Method::GET,
        "/v1/keys/ip:198.51.100.77",
        Some(GW1),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // One reporter (it holds at least half a report's worth: two rejections or more), whose
    // evidence alone counts for nothing.
    assert_eq!(v["reporters"].as_u64(), Some(1), "{v}");
    assert_eq!(v["spam"].as_f64(), Some(0.0), "{v}");
    assert_eq!(
        v["score"].as_f64(),
        Some(0.0),
        "one gateway alone lists nothing: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_hub_refuses_does_not_hold_back_the_spool() {
    let hub = Hub::start("");
    let spool = tempfile::tempdir().unwrap();
    {
        let mut s = repmilter::feedback::spool::Spool::open(spool.path(), 1 << 20).unwrap();
        for key in ["ip:192.0.2.1", "no-such-kind:x", "ip:192.0.2.3"] {
            let e = json!({
                "id": repmilter::feedback::new_id(), "gateway": "", "time": 1,
                "kind": "spam", "keys": [key], "score": 0.0, "action": "", "symbols": []
            });
            s.append(e.to_string().as_bytes()).unwrap();
        }
    }
    let d = Daemon::start(
        "",
        &format!(
            "[hub]\nurl = \"{}\"\ntoken = \"{GW1}\"\nspool = \"{}\"\n",
            hub.url,
            spool.path().display()
        ),
    );
    wait_events(&hub, 2, Duration::from_secs(10)).await;
    assert!(d.wait_log("the hub refused a feedback event", Duration::from_secs(5)));
    assert!(d.log().contains("no-such-kind"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arf_reports_from_two_gateways_list_the_source_they_name() {
    let hub = Hub::start("");
    for token in [GW1, GW2] {
        let (s, v, _) = call(
            &hub,
            reqwest::Method::POST,
            "/v1/report/arf",
            Some(token),
            Some(arf("abuse", "203.0.113.50").into()),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["kind"], "spam", "{v}");
        assert_eq!(v["feedback_type"], "abuse", "{v}");
    }
    let r = lookup(&hub, &["ip:203.0.113.50", "domain:evil-portal.example"]).await;
    for x in &r {
        assert!(x["score"].as_f64().unwrap() > 0.0, "{x}");
        assert_eq!(x["reporters"], 2, "{x}");
    }
    // Not-spam reports pull the source back: one gateway's alone does not, two do.
    let mut after = Vec::new();
    for gw in [GW1, GW2] {
        let (s, v, _) = call(
            &hub,
            reqwest::Method::POST,
            "/v1/report/arf",
            Some(gw),
            Some(arf("not-spam", "203.0.113.50").into()),
        )
        .await;
        assert_eq!((s, &v["kind"]), (200, &json!("ham")), "{v}");
        after = lookup(&hub, &["ip:203.0.113.50"]).await;
        if gw == GW1 {
            // Unchanged but for the evidence's decay over the milliseconds between lookups.
            let (a, b) = (
                after[0]["score"].as_f64().unwrap(),
                r[0]["score"].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-3, "{after:?} vs {r:?}");
        }
    }
    assert!(
        after[0]["score"].as_f64().unwrap() < r[0]["score"].as_f64().unwrap(),
        "{after:?} vs {r:?}"
    );
}

/// `repmilter feedback report` with a daemon's config; its stdout, or a panic with stderr.
fn report_cli(d: &Daemon, kind: &str, files: &[&std::path::Path]) -> String {
    let out = common::repmilter()
        .args(["feedback", "report", "--config"])
        .arg(&d.config_path)
        .arg(kind)
        .args(files)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

const NEWS_ENV: Transaction<'static> = Transaction {
    from: "news@shop.example",
    rcpts: &["bob@example.net"],
    mail_macros: &[],
};

fn newsletter() -> String {
    "From: Shop <news@shop.example>\r\nSubject: this week's offers\r\n\r\n\
     Hello, this week our garden tools are on offer: spades, rakes and hoses at good prices. \
     See them all at https://shop.example/deals/garden before Sunday.\r\n"
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_reported_from_two_gateways_catch_a_new_variant_and_ham_clears_a_mistake() {
    // Answers may be cached for 1 s only, so that a cleared key is seen as such at once.
    let hub = Hub::start("\n[model]\nttl = \"1s\"");
    let gateway = |token: &str| {
        Daemon::start(
            "",
            &format!(
                "[hub]\nurl = \"{}\"\ntoken = \"{token}\"\ntimeout = \"2s\"\n",
                hub.url
            ),
        )
    };
    let (d1, d2) = (gateway(GW1), gateway(GW2));
    let files = tempfile::tempdir().unwrap();
    let file = |name: &str, text: String| common::write(files.path(), name, &text);
    let received = |ip: &str| {
        format!("Received: from mx.sender.example (mx.sender.example [{ip}]) by mx.example.net\r\n")
    };
    let spam1 = file("spam1.eml", received("203.0.113.7") + &campaign("Ann", 3));
    let spam2 = file("spam2.eml", received("203.0.113.8") + &campaign("Bob", 4));
    // A newsletter both gateways' users report by mistake.
    let news = file("news.eml", received("192.0.2.80") + &newsletter());
    let out = report_cli(&d1, "--spam", &[&spam1, &news]);
    assert!(
        out.contains("reported 2 of 2 files") && out.contains("2 new"),
        "{out}"
    );
    assert!(out.contains("keys and hashes only"), "{out}");
    report_cli(&d2, "--spam", &[&spam2, &news]);

    // A new variant, from an address nobody reported, reaches the second gateway.
    let mut c = milter_client(&d2, "198.51.100.99").await;
    let r = c
        .message(&ENV, campaign("Cleo", 17).as_bytes())
        .await
        .unwrap();
    assert!(d2.wait_log("message scored", Duration::from_secs(5)));
    let line = d2
        .log()
        .lines()
        .find(|l| l.contains("message scored"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("HUB_SPAM_DOMAIN") && line.contains("HUB_FUZZY"),
        "{line}\n{r:?}"
    );

    // The newsletter is now a false positive at the first gateway...
    let mut c = milter_client(&d1, "192.0.2.80").await;
    let r = c.message(&NEWS_ENV, newsletter().as_bytes()).await.unwrap();
    assert_ne!(r.last(), Some(&Reply::Accept), "{r:?}");
    assert!(d1.wait_log("message scored", Duration::from_secs(5)));
    assert!(d1.log().contains("HUB_SPAM_DOMAIN"), "{}", d1.log());
    // ... until both gateways' users say it is ham.
    report_cli(&d1, "--ham", &[&news]);
    report_cli(&d2, "--ham", &[&news]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = c.message(&NEWS_ENV, newsletter().as_bytes()).await.unwrap();
    assert!(!status(&r).contains("HUB_SPAM_"), "{}", status(&r));
    assert_eq!(r.last(), Some(&Reply::Accept));
}

#[test]
fn feedback_report_names_what_it_cannot_send() {
    let d = Daemon::start(
        "",
        "[hub]\nurl = \"http://127.0.0.1:9\"\ntoken = \"gw1-token-0123456789abcdef\"\n",
    );
    let files = tempfile::tempdir().unwrap();
    let junk = common::write(files.path(), "junk.bin", "\u{7f}ELF binary");
    let arf = common::write(files.path(), "bad.arf", "Subject: hi\r\n\r\nno report\r\n");
    let mail = common::write(files.path(), "ok.eml", &newsletter());
    let run = |args: &[&std::ffi::OsStr]| {
        common::repmilter()
            .args(["feedback", "report", "--config"])
            .arg(&d.config_path)
            .args(args)
            .output()
            .unwrap()
    };
    // Nothing sendable: each file named with its reason, exit 4 (input).
    let out = run(&["--spam".as_ref(), junk.as_os_str(), "missing.eml".as_ref()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("junk.bin: not a mail message"), "{err}");
    assert!(err.contains("missing.eml: cannot read"), "{err}");
    let out = run(&["--arf".as_ref(), arf.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.arf: not an ARF report"), "{err}");
    // A hub that is not there: exit 5, saying where it tried.
    let out = run(&["--ham".as_ref(), mail.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("cannot reach the hub at http://127.0.0.1:9"),
        "{err}"
    );
    // Exactly one kind.
    let out = run(&["--spam".as_ref(), "--ham".as_ref(), mail.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    // feedback status shows the spool the daemon holds.
    let out = common::repmilter()
        .args(["feedback", "status", "--config"])
        .arg(&d.config_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("running (holds the spool)"), "{text}");
    assert!(text.contains("waiting:  0 events"), "{text}");
}

/// Sends `n` messages over `conns` connections at once, each connection from a client
/// address nobody used before (so its lookup is no cache hit); all are accepted. Returns the
/// X-Spam-Status of each connection's last message.
async fn flood(d: &Daemon, conns: u32, n: u32) -> Vec<String> {
    static NEXT_CLIENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let addr = d.addr();
            let client = NEXT_CLIENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let s = tokio::net::TcpStream::connect(addr).await.unwrap();
                // In 198.18.0.0/15, the benchmarking range.
                let ip = ConnectAddr::Inet {
                    ip: std::net::Ipv4Addr::from(0xC612_0000 + client).into(),
                    port: 40000,
                };
                let mut client = Client::open(s, "client.example", ip).await.unwrap().0;
                let mut last = String::new();
                for i in 0..n / conns + u32::from(c < n % conns) {
                    let r = client
                        .message(&ENV, campaign("Gus", i % 7).as_bytes())
                        .await
                        .unwrap();
                    assert_eq!(r.last(), Some(&Reply::Accept), "{r:?}");
                    last = status(&r);
                }
                last
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_verdicts_arrive_exactly_once_through_hub_kills_and_a_milter_kill() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let hub_dir = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let config = format!(
        "[hub]\nurl = \"http://{listen}\"\ntoken = \"{GW1}\"\ntimeout = \"300ms\"\n\
         cool_down = \"1s\"\nsync_interval = \"100ms\"\nspool = \"{}\"\n",
        spool.path().display()
    );
    // Plenty of rate for one gateway shipping as fast as it can.
    let hub_config = "rate = 10000\nburst = 20000";
    let mut hub = Hub::start_in(hub_dir.path(), &listen, hub_config);
    let mut d = Daemon::start("", &config);
    let mut sent = 0;
    // Each phase: mail flows while the hub is killed (SIGKILL) or restarted under it.
    for phase in 0..4 {
        let mail = flood(&d, 4, 1500);
        let kill = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            hub.child.kill().unwrap();
            hub.child.wait().unwrap();
        };
        tokio::join!(mail, kill);
        sent += 1500;
        let statuses = flood(&d, 2, 500).await;
        sent += 500;
        // With the hub down the breaker is open: mail is judged without it.
        assert!(
            statuses.iter().all(|s| s.contains("HUB_UNAVAILABLE")),
            "phase {phase}: {statuses:?}"
        );
        if phase == 2 {
            // The milter too, without warning, between messages.
            d.signal("KILL");
            d.child.wait().unwrap();
            d = Daemon::start("", &config);
        }
        hub = Hub::start_in(hub_dir.path(), &listen, hub_config);
    }
    assert_eq!(sent, 8000);
    let statuses = flood(&d, 4, 2000).await;
    sent += 2000;
    wait_events(&hub, sent, Duration::from_secs(120)).await;
    // The hub is back: after the cool-down the breaker closed and lookups answer again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let last = flood(&d, 1, 1).await;
    assert!(
        !last[0].contains("HUB_UNAVAILABLE"),
        "{last:?} (before: {statuses:?})"
    );
    sent += 1;
    wait_events(&hub, sent, Duration::from_secs(10)).await;
    // Nothing was dropped or refused on the way.
    let out = common::repmilter()
        .args(["feedback", "status", "--config"])
        .arg(&d.config_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("waiting:  0 events"), "{text}");
    assert!(text.contains("0 dropped (spool full), 0 refused"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_exports_its_listed_addresses_as_a_dns_list() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start_in(dir.path(), &format!("127.0.0.1:{port}"), "");
    let arf_post = |token: &'static str, ip: &'static str| {
        let url = format!("{}/v1/report/arf", hub.url);
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .body(arf("abuse", ip))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    };
    for token in [GW1, GW2] {
        for ip in ["203.0.113.50", "203.0.113.51", "2001:db8::5"] {
            arf_post(token, ip).await;
        }
    }
    // One of them is known good.
    let (s, v, _) = call(
        &hub,
        reqwest::Method::PUT,
        "/v1/allow/ip:203.0.113.51",
        Some(ADMIN),
        None,
    )
    .await;
    assert!(s == 200 || s == 204, "{s} {v}");
    let export = |args: &[&str]| {
        let out = common::repmilter()
            .args(["hub", "export-zone", "--config"])
            .arg(dir.path().join("hub.toml"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Asked of the running hub.
    let zone = export(&[]);
    assert!(zone.contains("\n203.0.113.50 :127.0.0.2:score "), "{zone}");
    assert!(zone.contains("\n203.0.113.0/24 :127.0.0.3:"), "{zone}");
    assert!(zone.contains("\n127.0.0.2 :127.0.0.2:RFC 5782"), "{zone}");
    assert!(!zone.contains("203.0.113.51 "), "allowlisted: {zone}");
    assert!(!zone.contains("2001:db8"), "{zone}");
    let v6 = export(&["--family", "6"]);
    assert!(v6.contains("\n2001:db8::5 :127.0.0.2:"), "{v6}");
    assert!(v6.contains("\n2001:db8::/64 :127.0.0.3:"), "{v6}");
    assert!(!v6.contains("203.0.113"), "{v6}");
    // Nothing reaches a score of 11.
    let none = export(&["--min-score", "11"]);
    assert!(!none.contains("203.0.113.50"), "{none}");
    // A milter using the zone through rbldnsd sees the listed client.
    let Some(dns) = common::Rbldnsd::start(&[common::Zone {
        name: "hub.test",
        kind: "ip4set",
        data: &zone,
    }]) else {
        return;
    };
    let d = Daemon::start(
        "",
        &format!(
            "[dns]\nservers = [\"127.0.0.1:{}\"]\nskip_private = false\n\
             [[dnsbl]]\nname = \"HUB_ZONE\"\nzone = \"hub.test\"\nscore = 3.0\n",
            dns.port
        ),
    );
    let mut c = milter_client(&d, "203.0.113.50").await;
    let r = c.message(&ENV, common::ham().as_bytes()).await.unwrap();
    assert!(status(&r).contains("HUB_ZONE"), "{}", status(&r));
    // With the hub stopped, its store is read directly: the same listings.
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    let offline = export(&[]);
    let body = |z: &str| z.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&offline), body(&zone));
}
