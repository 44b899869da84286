//! Golden corpus: each `testdata/eml/NAME.eml` is scored with `repmilter check --json` and the
//! shipped config (so the shipped rules) and compared with `NAME.expect` (`action = ...`,
//! `symbols = A,B`). Refuses to pass with no cases.

mod common;

use std::path::Path;

use common::repmilter;

#[test]
fn every_golden_message_gets_its_expected_verdict() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/eml");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/repmilter.toml");
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for eml in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
    {
        let expect_path = eml.with_extension("expect");
        let expect = std::fs::read_to_string(&expect_path)
            .unwrap_or_else(|_| panic!("{} has no {}", eml.display(), expect_path.display()));
        let field = |key: &str| {
            expect
                .lines()
                .find_map(|l| {
                    l.strip_prefix(key)?
                        .trim_start()
                        .strip_prefix('=')
                        .map(|v| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("{}: no {key} line", expect_path.display()))
        };
        let want_action = field("action");
        let mut want_symbols: Vec<String> = field("symbols")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        want_symbols.sort();

        let out = repmilter()
            .args(["check", "--json", "--config"])
            .arg(&cfg)
            .arg(eml)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: no JSON ({e}): {}",
                eml.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let action = v["action"].as_str().unwrap().to_string();
        let mut symbols: Vec<String> = v["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        symbols.sort();
        if action != want_action || symbols != want_symbols {
            failures.push(format!(
                "{}: got action={action} symbols={symbols:?}, want action={want_action} symbols={want_symbols:?}",
                eml.display()
            ));
        }
        cases += 1;
    }
    assert!(
        cases >= 6,
        "only {cases} golden cases found in {}",
        dir.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
