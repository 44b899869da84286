//! SpamAssassin parity, printed: see `common/parity.rs`.
//!
//! Run: `cargo bench --bench sa_parity` (needs `spamassassin` and the corpus, which
//! `benches/fetch-corpus.sh` fetches). `PARITY_RULE=NAME` lists the messages where the two
//! differ on that rule.

#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/parity.rs"]
mod parity;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("SpamAssassin parity: run it with `cargo bench --bench sa_parity`");
        return;
    }
    parity::run(&corpus::fetched());
}
