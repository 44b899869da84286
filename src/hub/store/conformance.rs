//! The behaviour every [`Store`] must have, as one suite each implementation runs: the
//! embedded store in its unit tests, the Redis store against a real redis-server and a real
//! Redis Cluster (tests/redis_store.rs). Each function panics on the first difference.

use super::{Counts, Ingest, Store};
use crate::hub::model::{KeyRecord, Model, Update};

/// Ingests events whose updates are given (not computed from the records).
pub fn ingest_fixed(
    store: &dyn Store,
    gateway: &str,
    events: &[(String, Vec<(String, Update)>)],
    now: u64,
    model: &Model,
) -> Vec<bool> {
    let batch: Vec<Ingest> = events
        .iter()
        .map(|(id, ups)| Ingest {
            event_id: id.clone(),
            keys: ups.iter().map(|(k, _)| k.clone()).collect(),
        })
        .collect();
    let ups: Vec<Vec<Update>> = events
        .iter()
        .map(|(_, ups)| ups.iter().map(|(_, u)| *u).collect())
        .collect();
    let fixed = move |i: usize, records: &[Option<&KeyRecord>]| {
        assert_eq!(records.len(), ups[i].len(), "a record per key");
        ups[i].clone()
    };
    store
        .ingest(gateway, batch, Box::new(fixed), now, model)
        .unwrap()
}

/// Ingest (batches, repeats, decay, ham), records, the allowlist, exports, counts,
/// on an empty store.
pub fn check_store(store: &dyn Store) {
    let m = Model::default();
    let hl = m.half_life;
    let u = |spam: f64, ham: f64| Update { spam, ham };
    let ev = |id: &str, ks: &[&str], up: Update| {
        (
            id.to_string(),
            ks.iter().map(|k| (k.to_string(), up)).collect::<Vec<_>>(),
        )
    };
    let spam = u(1.0, 0.0);
    // A batch: two new events, and one whose id repeats inside the batch.
    let got = ingest_fixed(
        store,
        "gw1",
        &[
            ev("e1", &["ip:192.0.2.1", "domain:evil.example"], spam),
            ev("e2", &["ip:192.0.2.2"], u(0.0, 1.0)),
            ev("e1", &["ip:192.0.2.1"], spam),
        ],
        10,
        &m,
    );
    assert_eq!(got, [true, true, false]);
    // The same event again, from another gateway even, changes nothing.
    let got = ingest_fixed(store, "gw2", &[ev("e1", &["ip:192.0.2.1"], spam)], 11, &m);
    assert_eq!(got, [false]);
    // Evidence decays: one half-life later gw1's spam counts half, then 1 more is added.
    let got = ingest_fixed(
        store,
        "gw1",
        &[
            ev("e3", &["ip:192.0.2.1"], spam),
            ev("e4", &["ip:192.0.2.1"], u(0.4, 0.0)),
            ev("e5", &[], spam),
        ],
        10 + hl,
        &m,
    );
    assert_eq!(got, [true, true, true]);
    let got = ingest_fixed(store, "gw2", &[ev("e6", &["ip:192.0.2.1"], spam)], 12, &m);
    assert_eq!(got, [true]);
    let recs = store
        .records(&[
            "ip:192.0.2.1".into(),
            "domain:evil.example".into(),
            "ip:192.0.2.2".into(),
            "ip:192.0.2.99".into(),
        ])
        .unwrap();
    let ip = recs[0].as_ref().unwrap();
    assert_eq!(ip.gateways().count(), 2, "{ip:?}");
    let gw1 = ip.evidence_of("gw1").unwrap();
    assert!((gw1.spam - 1.9).abs() < 1e-9, "{ip:?}");
    assert_eq!(gw1.at, 10 + hl);
    // Each gateway's evidence is its own, with its own time.
    let gw2 = ip.evidence_of("gw2").unwrap();
    assert!((gw2.spam - 1.0).abs() < 1e-9 && gw2.at == 12, "{ip:?}");
    assert_eq!(recs[1].as_ref().unwrap().gateways().count(), 1);
    let ham = recs[2].as_ref().unwrap().evidence_of("gw1").unwrap();
    assert!((ham.ham - 1.0).abs() < 1e-9 && ham.spam == 0.0, "{ham:?}");
    assert!(recs[3].is_none());
    store.set_allowed("domain:good.example", true).unwrap();
    store.set_allowed("domain:good.example", true).unwrap();
    assert_eq!(
        store
            .allowed(&["domain:good.example".into(), "ip:192.0.2.1".into()])
            .unwrap(),
        [true, false]
    );
    let mut ips = store.keys_with_prefix("ip:").unwrap();
    ips.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = ips.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["ip:192.0.2.1", "ip:192.0.2.2"]);
    assert_eq!(ips[0].1, *ip);
    assert_eq!(
        store.counts().unwrap(),
        Counts {
            events: 6,
            keys: 3,
            allowlisted: 1
        }
    );
    store.set_allowed("domain:good.example", false).unwrap();
    store.set_allowed("domain:never.example", false).unwrap();
    assert_eq!(store.counts().unwrap().allowlisted, 0);
}

/// Many writers at once, each sending the same events (as gateways retrying through a hub
/// replica that died): each event counts once and its evidence lands once.
pub fn check_concurrent_ingest(store: std::sync::Arc<dyn Store>) {
    let m = Model::default();
    let spam = Update {
        spam: 0.001,
        ham: 0.0,
    };
    let events: Vec<(String, Vec<(String, Update)>)> = (0..200)
        .map(|i| {
            (
                format!("c{i}"),
                vec![
                    ("ip:198.51.100.1".to_string(), spam),
                    (format!("url:{i:032x}"), spam),
                ],
            )
        })
        .collect();
    let before = store.counts().unwrap().events;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, events, m) = (store.clone(), events.clone(), m.clone());
            std::thread::spawn(move || {
                let mut new = 0;
                for chunk in events.chunks(25) {
                    new += ingest_fixed(&*store, "gw9", chunk, 100, &m)
                        .iter()
                        .filter(|n| **n)
                        .count();
                }
                new
            })
        })
        .collect();
    let new: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(new, 200);
    assert_eq!(store.counts().unwrap().events, before + 200);
    let rec = store.records(&["ip:198.51.100.1".into()]).unwrap()[0]
        .clone()
        .unwrap();
    assert!(
        (rec.evidence_of("gw9").unwrap().spam - 0.2).abs() < 1e-9,
        "{rec:?}"
    );
}
