//! The behaviour every [`Store`] must have, as one suite each implementation runs: the
//! embedded store in its unit tests, the Redis store against a real redis-server and a real
//! Redis Cluster (tests/redis_store.rs). Each function panics on the first difference.

use super::{Counts, Ingest, LearnedCounts, Pruned, Store};
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
    let mut ips = Vec::new();
    store
        .each_with_prefix("ip:", &mut |k, r| ips.push((k.to_string(), r.clone())))
        .unwrap();
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

/// Prunes until a pass is done; answers what it removed.
fn prune_all(store: &dyn Store, now: u64, half_life: u64, retention: u64, floor: f64) -> Pruned {
    let mut sum = Pruned::default();
    for _ in 0..100_000 {
        let p = store.prune(now, half_life, retention, floor).unwrap();
        sum.events += p.events;
        sum.keys += p.keys;
        sum.features += p.features;
        if p.pass_done {
            sum.pass_done = true;
            return sum;
        }
    }
    panic!("pruning never finished a pass");
}

/// Pruning forgets evidence that decayed below `FORGET_BELOW`, a record with none left, and
/// (unless `ids_expire_by_clock`: then the store's own clock does it) event ids past their
/// retention; and nothing else.
pub fn check_forgetting(store: &dyn Store, ids_expire_by_clock: bool) {
    let hl = 3600;
    let m = Model {
        half_life: hl,
        ..Model::default()
    };
    let retention = 10 * hl;
    let t0 = 2_000_000_000;
    let up = |spam: f64| Update { spam, ham: 0.0 };
    let ip = "ip:203.0.113.7".to_string();
    let faint = "domain:faint.example".to_string();
    let keys = [ip.clone(), faint.clone()];
    ingest_fixed(
        store,
        "f1",
        &[(
            "forget-1".into(),
            vec![(ip.clone(), up(1.0)), (faint.clone(), up(0.005))],
        )],
        t0,
        &m,
    );
    let allowlisted = store.counts().unwrap().allowlisted;
    // Below the threshold from the start: forgotten at once; the rest stays.
    prune_all(store, t0, hl, retention, 0.0);
    let recs = store.records(&keys).unwrap();
    assert!(recs[1].is_none(), "{recs:?}");
    assert_eq!(
        recs[0].as_ref().unwrap().evidence_of("f1").unwrap().spam,
        1.0
    );
    // A gateway's evidence goes when it decayed, another's on the same key stays.
    let late = t0 + 5 * hl;
    ingest_fixed(
        store,
        "f2",
        &[("forget-2".into(), vec![(ip.clone(), up(1.0))])],
        late,
        &m,
    );
    prune_all(store, t0 + 7 * hl, hl, retention, 0.0);
    let rec = store.records(&keys).unwrap()[0].clone().unwrap();
    assert_eq!(rec.gateways().map(|(g, _)| g).collect::<Vec<_>>(), ["f2"]);
    // In the end everything decays: no record is left, the allowlist stays.
    let events = store.counts().unwrap().events;
    let end = t0 + 20 * hl;
    prune_all(store, end, hl, retention, 0.0);
    assert_eq!(store.records(&keys).unwrap(), [None, None]);
    let counts = store.counts().unwrap();
    assert_eq!((counts.keys, counts.allowlisted), (0, allowlisted));
    // Pruning ids does not take back the count of events applied.
    assert_eq!(counts.events, events);
    if ids_expire_by_clock {
        return;
    }
    // An id past its retention is forgotten: sent again, the event counts again. One within
    // it is still known.
    ingest_fixed(store, "f1", &[("forget-3".into(), vec![])], end, &m);
    prune_all(store, end + retention - 1, hl, retention, 0.0);
    let again = ingest_fixed(
        store,
        "f1",
        &[("forget-1".into(), vec![]), ("forget-3".into(), vec![])],
        end + retention,
        &m,
    );
    assert_eq!(again, [true, false]);
    assert_eq!(store.counts().unwrap().events, events + 2);
}

/// Learned counts add up per gateway and feature, by their weights.
pub fn check_learning(store: &dyn Store) {
    store
        .train("la", &[(true, vec![1, 2, u64::MAX])], 1.0, 100)
        .unwrap();
    store.train("la", &[(false, vec![2, 3])], 2.5, 100).unwrap();
    store
        .train("lb", &[(true, vec![1]), (true, vec![])], 1.0, 100)
        .unwrap();
    let mut got = store.learned().unwrap();
    got.retain(|c| c.gateway.starts_with('l'));
    assert_eq!(
        got,
        [
            LearnedCounts {
                gateway: "la".into(),
                spam: 1.0,
                ham: 2.5,
                features: vec![
                    (1, 1.0, 0.0),
                    (2, 1.0, 2.5),
                    (3, 0.0, 2.5),
                    (u64::MAX, 1.0, 0.0)
                ],
            },
            LearnedCounts {
                gateway: "lb".into(),
                spam: 2.0,
                ham: 0.0,
                features: vec![(1, 1.0, 0.0)],
            },
        ]
    );
    // A gateway at its most features goes on counting those it has, and no new ones (a
    // store may pass the limit by one message's features).
    for m in 0..5u64 {
        let f: Vec<u64> = (0..3).map(|i| 100 + 10 * m + i).collect();
        store.train("lc", &[(true, f)], 1.0, 2).unwrap();
    }
    store.train("lc", &[(true, vec![100])], 1.0, 2).unwrap();
    let lc = store
        .learned()
        .unwrap()
        .into_iter()
        .find(|c| c.gateway == "lc")
        .unwrap();
    assert!((3..=8).contains(&lc.features.len()), "{lc:?}");
    assert_eq!(lc.features[0], (100, 2.0, 0.0));
    assert_eq!(lc.spam, 6.0);
    // Pruning drops the counts under the floor, and only those.
    store.train("ld", &[(true, vec![40])], 0.001, 100).unwrap();
    store.train("ld", &[(false, vec![41])], 5.0, 100).unwrap();
    let pruned = prune_all(store, 10, 3600, 1 << 40, 0.01);
    assert!(pruned.features >= 1, "{pruned:?}");
    let ld = store
        .learned()
        .unwrap()
        .into_iter()
        .find(|c| c.gateway == "ld")
        .unwrap();
    assert_eq!(ld.features, [(41, 0.0, 5.0)]);
}
