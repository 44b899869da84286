//! DNS list benchmarks against a real DNS list server (rbldnsd on loopback; skipped with a
//! message when it is not installed).
//!
//! - `dns/warm_cache_message`: the DNS stage on a message whose 6 lookups are all in the
//!   cache (3 IP lists for the client; a domain list for the sender domain, which the From
//!   header shares; a URI list for 2 URL domains); throughput in lookups.
//! - `dns/cold_lookup_loopback`: one A query to rbldnsd on loopback, no cache: the cost of a
//!   resolver round trip when the server is on the same host.
//!
//! Run: `cargo bench --bench dns`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use repmilter::config::Config;
use repmilter::message::{Envelope, Message};
use repmilter::reputation::lists::DnsLists;
use repmilter::reputation::resolver::{Resolve, Resolver};
use repmilter::scan::ScanInput;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Rbldnsd, Zone};

fn bench_dns(c: &mut Criterion) {
    let Some(server) = Rbldnsd::start(&[
        Zone {
            name: "ip.test",
            kind: "ip4set",
            data: "127.0.0.2\n",
        },
        Zone {
            name: "wl.test",
            kind: "ip4set",
            data: "127.0.0.9 :127.0.9.2:\n",
        },
        Zone {
            name: "pbl.test",
            kind: "ip4set",
            data: "127.0.0.10\n",
        },
        Zone {
            name: "dom.test",
            kind: "dnset",
            data: "listed.example\n",
        },
        Zone {
            name: "multi.test",
            kind: "dnset",
            data: "spammy.example :127.0.0.4:\n",
        },
    ]) else {
        eprintln!("dns benchmarks skipped: rbldnsd is not installed (apt-get install rbldnsd)");
        return;
    };
    let config = format!(
        r#"
[dns]
servers = ["127.0.0.1:{}"]
skip_private = false
[[dnsbl]]
name = "B_IP"
zone = "ip.test"
[[dnsbl]]
name = "B_PBL"
zone = "pbl.test"
[[dnswl]]
name = "B_WL"
zone = "wl.test"
[[dnsbl]]
name = "B_DOM"
zone = "dom.test"
kind = "domain"
checks = ["mail_from", "from"]
[[uribl]]
name = "B_URI"
zone = "multi.test"
"#,
        server.port
    );
    let config = Config::parse(&config, Path::new("bench.toml")).expect("bench config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = rt.enter();
    let lists = DnsLists::new(&config).expect("lists configured");
    let input = ScanInput::new(
        Envelope {
            client_ip: Some("127.0.0.2".parse().unwrap()),
            from: "a@listed.example".into(),
            ..Envelope::default()
        },
        Message::from_raw(
            b"From: a@listed.example\r\nSubject: x\r\n\r\nhttp://spammy.example/ http://www.other.example/\r\n",
            1 << 20,
        ),
    );
    // Warm the cache, and check what the bench measures: every lookup answered.
    let first = rt.block_on(lists.check(&input));
    let names: Vec<&str> = first.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["B_IP", "B_DOM", "B_URI"], "{first:?}");
    let queries = lists.queries();
    let lookups_per_message = lists
        .stats
        .lookups
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(lookups_per_message, 6);
    assert_eq!(queries, 6, "a cold message sends one query per lookup");

    let mut g = c.benchmark_group("dns");
    g.throughput(Throughput::Elements(lookups_per_message));
    g.bench_function("warm_cache_message", |b| {
        b.iter(|| {
            let symbols = rt.block_on(lists.check(black_box(&input)));
            assert_eq!(symbols.len(), 3);
        })
    });
    assert_eq!(
        lists.queries(),
        queries,
        "the warm-cache bench sent queries"
    );

    let resolver = Resolver::new(
        &[SocketAddr::from(([127, 0, 0, 1], server.port))],
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    g.throughput(Throughput::Elements(1));
    g.bench_function("cold_lookup_loopback", |b| {
        b.iter(|| {
            let (addrs, _) = rt
                .block_on(resolver.lookup_a(black_box("2.0.0.127.ip.test")))
                .expect("rbldnsd answers");
            assert_eq!(addrs.len(), 1);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_dns);
criterion_main!(benches);
