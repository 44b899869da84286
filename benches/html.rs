//! The HTML renderer over every HTML part of the SpamAssassin public corpus (fetched by
//! `benches/fetch-corpus.sh` when it is not there), throughput in bytes of HTML. Spam is mostly
//! HTML, so its renderer is a tenth of a held-out message's instructions.
//!
//! Before measuring, it prints how many parts and bytes it renders and a digest of what they
//! render to (text, links, tags): a change meant to be faster, not different, keeps the digest.
//!
//! Run: `cargo bench --bench html`.

use std::hash::{Hash, Hasher};
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/corpus.rs"]
mod corpus;
use repmilter::message::html;

/// The decoded text of every `text/html` part of the corpus, in folder and file order.
fn html_parts() -> Vec<String> {
    let dir = corpus::fetched();
    let mut parts = Vec::new();
    for (folder, _) in corpus::FOLDERS {
        for path in corpus::files(&dir, folder) {
            let Some(raw) = corpus::message(&path) else {
                continue;
            };
            let Some(msg) = mail_parser::MessageParser::default().parse(&raw) else {
                continue;
            };
            for part in &msg.parts {
                if let mail_parser::PartType::Html(text) = &part.body {
                    parts.push(text.to_string());
                }
            }
        }
    }
    parts
}

fn render(c: &mut Criterion) {
    let parts = html_parts();
    let bytes: usize = parts.iter().map(String::len).sum();
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    for p in &parts {
        let r = html::render(p);
        (r.text, r.links, r.tags).hash(&mut digest);
    }
    println!(
        "html: {} parts, {bytes} bytes, digest of their renders {:016x}",
        parts.len(),
        digest.finish()
    );
    let mut group = c.benchmark_group("html");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(20);
    group.bench_function("corpus_parts", |b| {
        b.iter(|| {
            for p in &parts {
                black_box(html::render(black_box(p)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
