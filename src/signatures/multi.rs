//! Finding every occurrence of many literals at once, ASCII case-insensitively.
//!
//! An Aho-Corasick DFA looks at every byte of the text, and with thousands of patterns its
//! transition table no longer fits in the cache: it runs at a few hundred MB/s. Long literals
//! do not need every byte looked at. If every pattern is at least `m` bytes long, any
//! occurrence covers `s = m - B + 1` consecutive starting positions of a `B`-byte block, and
//! exactly one of those positions is a multiple of `s`. `B` grows with `m` (4 to 8 bytes):
//! longer blocks are rarer in text, so fewer samples pass the filter, at the price of a
//! shorter stride. So the [`Sampler`] reads one block
//! every `s` bytes, tests it against a bit filter of all the blocks the patterns have at
//! offsets `0..s`, and only on a filter hit works out which pattern starts could match and
//! compares them. Each occurrence is found exactly once, at its one sampled block; the text
//! between samples is never read unless a candidate is verified. (This is q-gram sampling,
//! the idea behind Hyperscan's FDR and the Wu-Manber family, without SIMD.)
//!
//! Short literals (fewer than [`SAMPLED_MIN_LEN`] bytes) would make `s` tiny, so they stay in
//! an Aho-Corasick DFA of their own; a [`Literals`] runs both and merges the matches.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::ControlFlow;
use std::sync::OnceLock;

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored};

/// Literals at least this long are found by sampling; shorter ones by the DFA.
pub const SAMPLED_MIN_LEN: usize = 8;

/// Bytes per sampled block: at least this many, at most 8 (one `u64`).
const MIN_BLOCK: usize = 4;

/// The sample stride is capped so a block's possible offsets fit in a `u64` mask.
const MAX_STRIDE: usize = 64;

/// Bytes of a candidate start hashed to narrow the patterns to compare.
const MAX_PREFIX: usize = 16;

/// One occurrence: the pattern's index in the list given to [`Literals::new`] and its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub end: usize,
    pub start: usize,
    pub pattern: usize,
}

/// Every pattern's occurrences in a text, overlapping ones included.
pub struct Literals {
    short: Option<Short>,
    long: Option<Sampler>,
}

/// At most this many spellings (ASCII case variants) of the literals' first bytes, and this
/// many literals, are searched by the packed (SIMD) searcher instead of the DFA (and the
/// sampler).
const PACKED_SPELLINGS: usize = 64;

/// The short literals' searcher, and their ids in the caller's list.
enum Short {
    /// Case-insensitively through the DFA, every byte looked at. A set with common bytes in
    /// every literal (`name=` in a whole message's HTML and quoted-printable) has no
    /// prefilter that helps: the DFA ran over 30 KB for a handful of occurrences.
    Dfa(Box<DFA>, Vec<usize>),
    /// A few literals: every case spelling of their first bytes in the packed searcher
    /// (Teddy), which finds the leftmost start where any begins; the literals are compared
    /// there, and the search goes on from the next byte, so overlapping occurrences are all
    /// found.
    Packed {
        searcher: aho_corasick::packed::Searcher,
        patterns: Vec<Vec<u8>>,
        ids: Vec<usize>,
        linear: Linear,
    },
}

impl Short {
    fn new(patterns: Vec<&[u8]>, ids: Vec<usize>) -> Option<Short> {
        if let Some(packed) = Short::packed(&patterns, &ids) {
            return Some(packed);
        }
        // No prefilter: with hundreds of literals none helps, and without one only match
        // states (no dead state is reachable unanchored) are special, so the loop in
        // `for_each` tests one flag a byte.
        let dfa = aho_corasick::dfa::Builder::new()
            .ascii_case_insensitive(true)
            .match_kind(aho_corasick::MatchKind::Standard)
            .prefilter(false)
            .build(&patterns)
            .ok()?;
        Some(Short::Dfa(Box::new(dfa), ids))
    }

    /// The packed searcher over every case spelling of the literals' first bytes (as many
    /// as the shortest has, up to four: what Teddy looks at), when there are few enough of
    /// them and of the literals (each is compared at every start found).
    fn packed(patterns: &[&[u8]], ids: &[usize]) -> Option<Short> {
        let k = patterns.iter().map(|p| p.len()).min()?.min(4);
        if k == 0 || patterns.len() > PACKED_SPELLINGS {
            return None;
        }
        let mut spellings = std::collections::BTreeSet::new();
        for p in patterns {
            let prefix = &p[..k];
            if 1usize << prefix.iter().filter(|b| b.is_ascii_alphabetic()).count()
                > PACKED_SPELLINGS
            {
                return None;
            }
            spellings.extend(case_spellings(prefix));
            if spellings.len() > PACKED_SPELLINGS {
                return None;
            }
        }
        let mut builder = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .builder();
        builder.extend(&spellings);
        Some(Short::Packed {
            searcher: builder.build()?,
            patterns: patterns.iter().map(|p| p.to_vec()).collect(),
            ids: ids.to_vec(),
            linear: Linear::default(),
        })
    }

    fn for_each(
        &self,
        text: &[u8],
        budget: &mut Budget,
        f: &mut impl FnMut(Found) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        match self {
            Short::Dfa(dfa, ids) => {
                // The automaton's own overlapping search spent about 20 instructions a
                // byte (it keeps its place in a state struct, to resume after each match);
                // this loop is a table lookup and a flag test.
                let Ok(mut sid) = dfa.start_state(Anchored::No) else {
                    return ControlFlow::Continue(());
                };
                for (i, &b) in text.iter().enumerate() {
                    sid = dfa.next_state(Anchored::No, sid, b);
                    if !dfa.is_special(sid) || !dfa.is_match(sid) {
                        continue;
                    }
                    for k in 0..dfa.match_len(sid) {
                        let p = dfa.match_pattern(sid, k);
                        f(Found {
                            end: i + 1,
                            start: i + 1 - dfa.pattern_len(p),
                            pattern: ids[p.as_usize()],
                        })?;
                    }
                }
            }
            Short::Packed {
                searcher,
                patterns,
                ids,
                linear,
            } => {
                let total: usize = patterns.iter().map(Vec::len).sum();
                let mut at = 0;
                while let Some(m) = searcher.find_in(text, aho_corasick::Span::from(at..text.len()))
                {
                    let start = m.start();
                    // Every occurrence that starts before `start` has been reported.
                    if budget.spent()
                        && let Some(flow) = linear.finish(patterns, ids, text, start, f)
                    {
                        return flow;
                    }
                    budget.charge(total);
                    for (p, &id) in patterns.iter().zip(ids) {
                        report_at(text, start, p, id, f)?;
                    }
                    at = start + 1;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Every spelling of `p` with its ASCII letters in either case.
fn case_spellings(p: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::with_capacity(p.len())];
    for &b in p {
        if b.is_ascii_alphabetic() {
            out = out
                .into_iter()
                .flat_map(|s| {
                    [b.to_ascii_lowercase(), b.to_ascii_uppercase()].map(|c| {
                        let mut s = s.clone();
                        s.push(c);
                        s
                    })
                })
                .collect();
        } else {
            for s in &mut out {
                s.push(b);
            }
        }
    }
    out
}

/// Reports `pattern` if it occurs at `start`, ASCII case-insensitively; breaks if the
/// caller asks to stop.
#[inline]
fn report_at(
    text: &[u8],
    start: usize,
    pattern: &[u8],
    id: usize,
    f: &mut impl FnMut(Found) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let end = start + pattern.len();
    if text
        .get(start..end)
        .is_some_and(|t| t.eq_ignore_ascii_case(pattern))
    {
        return f(Found {
            end,
            start,
            pattern: id,
        });
    }
    ControlFlow::Continue(())
}

/// Bytes of literal comparisons the packed searcher and the sampler may make, per byte of
/// text, and once per text. Ordinary mail makes a small fraction of this. A rule file whose
/// literals share long prefixes, given mail that repeats them, would make positions x
/// literals x length; past the budget the search finishes in [`Linear`]'s automaton.
const WORK_PER_BYTE: usize = 16;
const WORK_BASE: usize = 1 << 16;

/// What is left of a search's comparison budget. Spending is checked before each position
/// is compared, so the work done is at most the budget plus one position's comparisons,
/// which the rule set bounds (if [`Linear`]'s automaton can be built: it fails only past
/// aho-corasick's state limits, and then the comparisons go on as before the budget). The
/// charge is an upper bound (every candidate's whole length), so a rule set of many long
/// literals with common first bytes may reach it on ordinary mail: then the automaton, built
/// once per rule set, finishes the search, with the same occurrences.
struct Budget {
    left: usize,
    used: usize,
    /// Nothing is left to report: the automaton has reported every occurrence left, or the
    /// caller asked to stop (`stopped`).
    finished: bool,
    /// The caller asked to stop (its deadline passed).
    stopped: bool,
}

impl Budget {
    fn new(text_len: usize) -> Budget {
        Budget::of(
            text_len
                .saturating_mul(WORK_PER_BYTE)
                .saturating_add(WORK_BASE),
        )
    }

    fn of(left: usize) -> Budget {
        Budget {
            left,
            used: 0,
            finished: false,
            stopped: false,
        }
    }

    fn charge(&mut self, bytes: usize) {
        self.left = self.left.saturating_sub(bytes);
        self.used = self.used.saturating_add(bytes);
    }

    fn spent(&self) -> bool {
        self.left == 0
    }

    /// Records the end of the search; `flow` tells whether the caller asked for it.
    fn finish(&mut self, flow: ControlFlow<()>) {
        self.finished = true;
        self.stopped |= flow.is_break();
    }
}

/// Where the sampler reports occurrences, and the budget it spends finding them: one
/// pointer through its sampling loop, as the reporting closure alone was (a second one cost
/// 5K instructions a message).
struct Sink<'a, F> {
    report: &'a mut F,
    budget: &'a mut Budget,
}

/// The automaton a search finishes with once its budget is spent: linear in the text
/// whatever the literals. Built on first need, which ordinary mail never is.
#[derive(Default)]
struct Linear(OnceLock<Option<AhoCorasick>>);

impl Linear {
    /// Reports every occurrence that starts at `from` or later (until the caller asks to
    /// stop); `None`, having reported nothing, if the automaton could not be built (the
    /// caller then goes on comparing).
    fn finish(
        &self,
        patterns: &[Vec<u8>],
        ids: &[usize],
        text: &[u8],
        from: usize,
        f: &mut impl FnMut(Found) -> ControlFlow<()>,
    ) -> Option<ControlFlow<()>> {
        let built = self.0.get_or_init(|| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .build(patterns)
                .ok()
        });
        let ac = built.as_ref()?;
        for m in ac.find_overlapping_iter(&text[from..]) {
            let flow = f(Found {
                end: from + m.end(),
                start: from + m.start(),
                pattern: ids[m.pattern().as_usize()],
            });
            if flow.is_break() {
                return Some(flow);
            }
        }
        Some(ControlFlow::Continue(()))
    }
}

impl Literals {
    /// `None` when the short patterns cannot be built into an automaton (too large).
    pub fn new(patterns: &[Vec<u8>]) -> Option<Literals> {
        // A few literals, short and long, whose first bytes have few spellings: one packed
        // search finds them all (the rules on whole messages: `name=`, base64 "MZ" headers).
        let all: Vec<&[u8]> = patterns.iter().map(Vec::as_slice).collect();
        let ids: Vec<usize> = (0..patterns.len()).collect();
        if let Some(packed) = Short::packed(&all, &ids) {
            return Some(Literals {
                short: Some(packed),
                long: None,
            });
        }
        let (mut short, mut short_ids, mut long, mut long_ids) = (vec![], vec![], vec![], vec![]);
        for (i, p) in patterns.iter().enumerate() {
            if p.len() >= SAMPLED_MIN_LEN {
                long.push(p.to_ascii_lowercase());
                long_ids.push(i);
            } else {
                short.push(p.as_slice());
                short_ids.push(i);
            }
        }
        let short = if short.is_empty() {
            None
        } else {
            Some(Short::new(short, short_ids)?)
        };
        let long = (!long.is_empty()).then(|| Sampler::new(long, long_ids));
        Some(Literals { short, long })
    }

    /// Calls `f` with every occurrence (overlapping ones included), without collecting them:
    /// a text of one short literal repeated has millions. Short literals' occurrences come
    /// first, then long ones'; neither in text order (the caller does not need it). When `f`
    /// breaks (a deadline), the search reports nothing more and breaks.
    pub fn for_each(
        &self,
        text: &[u8],
        f: impl FnMut(Found) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        self.search(text, || Budget::new(text.len()), f).1
    }

    /// Searches with a fresh budget for each of the two searchers; returns the comparison
    /// bytes charged, and whether `f` broke.
    fn search(
        &self,
        text: &[u8],
        budget: impl Fn() -> Budget,
        mut f: impl FnMut(Found) -> ControlFlow<()>,
    ) -> (usize, ControlFlow<()>) {
        let mut used = 0;
        if let Some(short) = &self.short {
            let mut b = budget();
            let flow = short.for_each(text, &mut b, &mut f);
            used += b.used;
            if flow.is_break() {
                return (used, flow);
            }
        }
        if let Some(s) = &self.long {
            let mut b = budget();
            s.for_each(
                text,
                &mut Sink {
                    report: &mut f,
                    budget: &mut b,
                },
            );
            used += b.used;
            if b.stopped {
                return (used, ControlFlow::Break(()));
            }
        }
        (used, ControlFlow::Continue(()))
    }

    #[cfg(test)]
    fn packed(&self) -> bool {
        matches!(self.short, Some(Short::Packed { .. }))
    }

    /// All occurrences, ordered by end, then start, then pattern.
    pub fn find_all(&self, text: &[u8]) -> Vec<Found> {
        let mut out = Vec::new();
        let _ = self.for_each(text, |m| {
            out.push(m);
            ControlFlow::Continue(())
        });
        out.sort_unstable();
        out
    }
}

/// A multiplicative hasher for keys that are already well mixed or small integers (block
/// values, rule numbers): SipHash's resistance to chosen keys buys nothing there, and it
/// cost a per cent of a message's instructions in the scan's per-rule tallies.
#[derive(Default)]
pub(super) struct MulHasher(u64);

impl Hasher for MulHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

pub(super) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MulHasher>>;
pub(super) type FastSet<K> = std::collections::HashSet<K, BuildHasherDefault<MulHasher>>;

struct Sampler {
    /// Lower-cased patterns and their ids in the caller's list.
    patterns: Vec<Vec<u8>>,
    ids: Vec<usize>,
    block: usize,
    block_mask: u64,
    stride: usize,
    prefix: usize,
    filter: Vec<u64>,
    filter_shift: u32,
    /// For each block value, the offsets (bit j = offset j) at which some pattern has it.
    offsets: FastMap<u64, u64>,
    /// Hash of a pattern's first `prefix` bytes to the patterns that begin so.
    by_prefix: FastMap<u64, Vec<u32>>,
    linear: Linear,
}

impl Sampler {
    fn new(patterns: Vec<Vec<u8>>, ids: Vec<usize>) -> Sampler {
        let min = patterns
            .iter()
            .map(Vec::len)
            .min()
            .unwrap_or(SAMPLED_MIN_LEN);
        let block = min.div_ceil(2).clamp(MIN_BLOCK, 8);
        // Keys ignore bit 0x20 of every byte, which is all that tells an ASCII letter's cases
        // apart: one AND per sample instead of a lower-casing. It also pairs a few other
        // bytes (space with NUL, digits with control characters); that only costs a rare
        // extra comparison, which is exact.
        let block_mask = (u64::MAX >> (64 - 8 * block)) & !(0x20 * ONES);
        let stride = (min - block + 1).min(MAX_STRIDE);
        let prefix = min.min(MAX_PREFIX);
        let mut offsets: FastMap<u64, u64> = FastMap::default();
        let mut by_prefix: FastMap<u64, Vec<u32>> = FastMap::default();
        for (i, p) in patterns.iter().enumerate() {
            for j in 0..stride {
                *offsets.entry(load(p, j, block_mask)).or_default() |= 1 << j;
            }
            by_prefix
                .entry(prefix_hash(&p[..prefix]))
                .or_default()
                .push(i as u32);
        }
        // About 16 filter bits per distinct block: one in sixteen empty samples passes.
        let bits = (offsets.len() * 16)
            .next_power_of_two()
            .clamp(1 << 12, 1 << 26);
        let log = bits.trailing_zeros();
        let mut filter = vec![0u64; bits / 64];
        let filter_shift = 64 - log;
        for &b in offsets.keys() {
            let h = filter_index(b, filter_shift);
            filter[h / 64] |= 1 << (h % 64);
        }
        Sampler {
            patterns,
            ids,
            block,
            block_mask,
            stride,
            prefix,
            filter,
            filter_shift,
            offsets,
            by_prefix,
            linear: Linear::default(),
        }
    }

    fn for_each<F: FnMut(Found) -> ControlFlow<()>>(&self, text: &[u8], sink: &mut Sink<F>) {
        if text.len() < self.block {
            return;
        }
        let last = text.len() - self.block;
        let mut p = 0;
        // Whole words while eight bytes remain, then the padded tail. Once the search is
        // finished (the budget spent and the automaton done, or the caller asking to stop),
        // the samples find nothing more to do: checking for that in this loop would cost
        // every sample, and the rest of the loop is a filter lookup every `stride` bytes.
        while p + 8 <= text.len() {
            let word = u64::from_le_bytes(text[p..p + 8].try_into().expect("8 bytes"));
            self.sample(text, p, word & self.block_mask, sink);
            p += self.stride;
        }
        while p <= last {
            self.sample(text, p, load(text, p, self.block_mask), sink);
            p += self.stride;
        }
    }

    #[inline(always)]
    fn sample<F: FnMut(Found) -> ControlFlow<()>>(
        &self,
        text: &[u8],
        p: usize,
        block: u64,
        sink: &mut Sink<F>,
    ) {
        let h = filter_index(block, self.filter_shift);
        // h has 64 - filter_shift bits: always inside the filter.
        if self.filter[h / 64] & (1 << (h % 64)) != 0 {
            self.verify(text, p, block, sink);
        }
    }

    #[cold]
    fn verify<F: FnMut(Found) -> ControlFlow<()>>(
        &self,
        text: &[u8],
        p: usize,
        block: u64,
        sink: &mut Sink<F>,
    ) {
        if sink.budget.finished {
            return;
        }
        let Some(&mask) = self.offsets.get(&block) else {
            return;
        };
        // Each occurrence is reported at the one sample `p` at most `stride - 1` bytes past
        // its start: those that start `stride - 1` bytes before `p` or later are not yet.
        if sink.budget.spent() {
            let from = (p + 1).saturating_sub(self.stride);
            if let Some(flow) =
                self.linear
                    .finish(&self.patterns, &self.ids, text, from, sink.report)
            {
                sink.budget.finish(flow);
                return;
            }
        }
        let mut mask = mask;
        while mask != 0 {
            let j = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let Some(start) = p.checked_sub(j) else {
                continue;
            };
            let Some(head) = text.get(start..start + self.prefix) else {
                continue;
            };
            let Some(cands) = self.by_prefix.get(&prefix_hash(head)) else {
                continue;
            };
            for &c in cands {
                let pat = &self.patterns[c as usize];
                sink.budget.charge(pat.len());
                let flow = report_at(text, start, pat, self.ids[c as usize], sink.report);
                if flow.is_break() {
                    sink.budget.finish(flow);
                    return;
                }
            }
        }
    }
}

/// The block at `at`: the bytes under `mask` of the little-endian `u64` there, the caller
/// having checked that the block's own bytes are in bounds.
#[inline]
fn load(bytes: &[u8], at: usize, mask: u64) -> u64 {
    let word = match bytes.get(at..at + 8) {
        Some(w) => u64::from_le_bytes(w.try_into().expect("8 bytes")),
        None => {
            let mut w = [0u8; 8];
            let tail = &bytes[at..];
            w[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(w)
        }
    };
    word & mask
}

#[inline]
fn filter_index(block: u64, shift: u32) -> usize {
    (block.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

const ONES: u64 = 0x0101_0101_0101_0101;

fn prefix_hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ b.to_ascii_lowercase() as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::xorshift;

    fn naive(patterns: &[&str], text: &str) -> Vec<Found> {
        let t = text.as_bytes();
        let mut out = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            let p = p.as_bytes();
            for s in 0..t.len() {
                if t.len() - s >= p.len() && t[s..s + p.len()].eq_ignore_ascii_case(p) {
                    out.push(Found {
                        end: s + p.len(),
                        start: s,
                        pattern: i,
                    });
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// `n` characters drawn from `alphabet`.
    fn word(alphabet: &[u8], n: usize, next: &mut dyn FnMut() -> u64) -> String {
        (0..n)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }

    /// The search with its budget spent at about 40 points of `text`, from none to all of
    /// the work it needs, finds `want` each time: nothing lost, nothing twice.
    fn budgets_spent_anywhere(literals: &Literals, text: &str, want: &[Found]) {
        let (_, work) = within(literals, text.as_bytes(), usize::MAX);
        for budget in (0..=work).step_by(work / 40 + 1) {
            assert_eq!(
                within(literals, text.as_bytes(), budget).0,
                want,
                "budget {budget} in {text:?}"
            );
        }
    }

    /// Checks the search against the naive one; tells whether the short literals were
    /// searched by the packed searcher.
    fn check(patterns: &[&str], text: &str) -> bool {
        let lits: Vec<Vec<u8>> = patterns.iter().map(|p| p.as_bytes().to_vec()).collect();
        let literals = Literals::new(&lits).unwrap();
        assert_eq!(
            literals.find_all(text.as_bytes()),
            naive(patterns, text),
            "patterns {patterns:?} in {text:?}"
        );
        literals.packed()
    }

    /// The occurrences found with a comparison budget of `budget` bytes, sorted, and the
    /// bytes charged.
    fn within(literals: &Literals, text: &[u8], budget: usize) -> (Vec<Found>, usize) {
        let mut out = Vec::new();
        let (used, _) = literals.search(
            text,
            || Budget::of(budget),
            |m| {
                out.push(m);
                ControlFlow::Continue(())
            },
        );
        out.sort_unstable();
        (out, used)
    }

    #[test]
    fn a_few_short_literals_are_found_by_the_packed_searcher_as_by_the_dfa() {
        // Overlapping occurrences, one literal inside another, mixed case, a literal equal
        // to another but for case, non-letters, the text's edges.
        let text = "name=x NAME*=y filename=z nAmE= name name*= aaaa $5 $$ Name=";
        assert!(check(&["name=", "name*=", "ame", "aa", "NAME="], text));
        assert!(check(&["$", "$$", "5", "y"], text));
        // Past the spellings the packed searcher takes, or (one-byte literals) the patterns
        // Teddy takes: the DFA, with the same answers.
        let many: Vec<String> = (0..65).map(|i| format!("me{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).chain(["name="]).collect();
        assert!(!check(&many, text));
        // Long literals too, when their first bytes have few spellings: no sampler.
        assert!(check(&["name=", "\n\ntvqqaa", "filename=z"], text));
        assert!(check(&["name=", "$"], text));
        assert!(check(&["x"], ""));
        assert!(check(&["zz"], "z"));
    }

    #[test]
    fn same_matches_as_a_naive_search() {
        check(
            &["viagra", "cheap viagra now", "click here to unsubscribe"],
            "",
        );
        check(
            &["viagra", "cheap viagra now", "click here to unsubscribe"],
            "Buy CHEAP Viagra NOW or click here to unsubscribe. viagraviagra",
        );
        // Overlapping and nested long patterns, a pattern at the very start and the very end.
        check(
            &["abcdefghij", "cdefghijkl", "abcdefghijklmnop", "ghijklmnop"],
            "abcdefghijklmnop xx abcdefghij",
        );
        // Repeated blocks inside one pattern, and text that repeats them.
        check(
            &["aaaaaaaaaa", "aaaaaaaab"],
            "aaaaaaaaaaaaaaaaaaaaaab aaaaaaaa",
        );
        // Bytes that differ only in bit 0x20 (':' and 0x1A, ' ' and NUL) share filter keys
        // but are not equal.
        check(
            &["PRICE: 100 USD now", "ab cdefgh"],
            "price: 100 usd NOW, price\u{1a} 100 usd now, price:\u{0}100 usd now, AB CDEFGH ab\u{0}cdefgh",
        );
        // Non-ASCII bytes are compared exactly.
        check(
            &["größere preise", "ÄRGER ÜBER"],
            "GRÖßERE PREISE, größere Preise, ärger über",
        );
    }

    #[test]
    fn same_matches_as_a_naive_search_on_generated_text() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let mut packed = 0;
        for round in 0..300 {
            let word = |n: usize, next: &mut dyn FnMut() -> u64| word(b"abAB c", n, next);
            // A few literals in two rounds of three (the packed searcher); in the third, more
            // than it takes, long ones among them (the DFA and the sampler).
            let (count, longest) = if round % 3 == 0 {
                (150 + round % 40, 16)
            } else {
                (1 + round % 7, 6)
            };
            let patterns: Vec<String> = (0..count)
                .map(|_| {
                    let n = 1 + (next() % longest) as usize;
                    word(n, &mut next)
                })
                .collect();
            // Random bytes, and the literals themselves (case changed at random) among them.
            let mut text = String::new();
            while text.len() < 300 {
                if next().is_multiple_of(2) {
                    text += &word(1 + (next() % 5) as usize, &mut next);
                } else {
                    let p = &patterns[(next() % count as u64) as usize];
                    let flip = next();
                    text.extend(p.chars().enumerate().map(|(i, c)| {
                        if flip >> (i % 64) & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    }));
                }
            }
            let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
            packed += usize::from(check(&refs, &text));
            // A budget spent anywhere in the text: the automaton finishes the search with
            // every occurrence not yet reported, and none twice.
            let lits: Vec<Vec<u8>> = patterns.iter().map(|p| p.as_bytes().to_vec()).collect();
            let literals = Literals::new(&lits).unwrap();
            let want = naive(&refs, &text);
            budgets_spent_anywhere(&literals, &text, &want);
        }
        // Every round of the first kind, and most of the second, take the packed searcher
        // for their short literals; the rest the DFA.
        assert!(
            (200..=290).contains(&packed),
            "{packed} of 300 rounds packed"
        );
    }

    #[test]
    fn literals_sharing_a_long_prefix_cost_a_bounded_number_of_comparisons() {
        // A hostile rule file: literals that share 60 bytes, in mail that repeats their
        // first bytes. Compared at every start, they would cost positions x literals x
        // length: 64 x 62 bytes at each of 60,000 starts here. 64 literals take the packed
        // searcher, 100 the sampler.
        let suffixes = b"bcdefghijk";
        for count in [64, 100] {
            let patterns: Vec<String> = (0..count)
                .map(|i| {
                    let (c, d) = (suffixes[i / 10] as char, suffixes[i % 10] as char);
                    format!("{}{c}{d}", "a".repeat(60))
                })
                .collect();
            let lits: Vec<Vec<u8>> = patterns.iter().map(|p| p.as_bytes().to_vec()).collect();
            let literals = Literals::new(&lits).unwrap();
            assert_eq!(literals.packed(), count <= 64);
            let text = format!("{}BC{}ee", "A".repeat(30_000), "a".repeat(30_000));
            let mut found = Vec::new();
            let (used, _) = literals.search(
                text.as_bytes(),
                || Budget::new(text.len()),
                |m| {
                    found.push(m);
                    ControlFlow::Continue(())
                },
            );
            found.sort_unstable();
            let at = |start: usize, pattern: usize| Found {
                end: start + 62,
                start,
                pattern,
            };
            assert_eq!(found, [at(30_000 - 60, 1), at(60_002 - 60, 33)]);
            // The budget, and at most one position's comparisons past it.
            let one_position = 64 * patterns.iter().map(String::len).sum::<usize>();
            let bound = text.len() * WORK_PER_BYTE + WORK_BASE + one_position;
            assert!(used <= bound, "{count} literals: {used} bytes compared");
        }
    }

    #[test]
    fn a_search_stops_when_its_caller_breaks() {
        // Literals that occur at every position of a text of `a` (millions of occurrences
        // in a long text): each searcher stops at the occurrence where the caller breaks,
        // and reports none after it. A budget of 0 sends every search to the automaton.
        let text = "a".repeat(20_000);
        let runs: [(Vec<String>, usize); 4] = [
            // The packed searcher (few short literals), then the DFA (more than it takes).
            ((3..7).map(|n| "a".repeat(n)).collect(), usize::MAX),
            (
                (0..70)
                    .map(|i| "a".repeat(3 + i % 5))
                    .chain(["b".into()])
                    .collect(),
                usize::MAX,
            ),
            // The sampler, with and without its budget.
            ((8..90).map(|n| "a".repeat(n)).collect(), usize::MAX),
            ((8..90).map(|n| "a".repeat(n)).collect(), 0),
        ];
        for (i, (patterns, budget)) in runs.iter().enumerate() {
            let lits: Vec<Vec<u8>> = patterns.iter().map(|p| p.as_bytes().to_vec()).collect();
            let literals = Literals::new(&lits).unwrap();
            assert_eq!(literals.packed(), i == 0);
            assert_eq!(literals.long.is_some(), i >= 2);
            for stop_after in [1, 999, 30_000] {
                let mut reported = 0;
                let (_, flow) = literals.search(
                    text.as_bytes(),
                    || Budget::of(*budget),
                    |_| {
                        reported += 1;
                        if reported == stop_after {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    },
                );
                assert_eq!(flow, ControlFlow::Break(()), "run {i}");
                assert_eq!(reported, stop_after, "run {i}");
            }
            // Without a break, every occurrence.
            let mut reported = 0;
            let (_, flow) = literals.search(
                text.as_bytes(),
                || Budget::of(*budget),
                |_| {
                    reported += 1;
                    ControlFlow::Continue(())
                },
            );
            assert_eq!(flow, ControlFlow::Continue(()), "run {i}");
            assert!(reported > 30_000, "run {i}: {reported}");
        }
    }

    #[test]
    fn long_literals_sampled_at_the_widest_stride_survive_a_budget_spent_anywhere() {
        // Literals of 130 bytes and more: the stride is capped at 64, the block 8 bytes.
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20 {
            let word = |n: usize, next: &mut dyn FnMut() -> u64| word(b"ab c", n, next);
            let patterns: Vec<String> = (0..70)
                .map(|_| {
                    let n = 130 + (next() % 70) as usize;
                    word(n, &mut next)
                })
                .collect();
            let mut text = String::new();
            while text.len() < 3000 {
                if next().is_multiple_of(3) {
                    text += &patterns[(next() % 70) as usize].to_ascii_uppercase();
                } else {
                    text += &word(1 + (next() % 90) as usize, &mut next);
                }
            }
            let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
            let lits: Vec<Vec<u8>> = patterns.iter().map(|p| p.as_bytes().to_vec()).collect();
            let literals = Literals::new(&lits).unwrap();
            assert!(!literals.packed());
            assert_eq!(literals.long.as_ref().map(|l| l.stride), Some(MAX_STRIDE));
            let want = naive(&refs, &text);
            assert!(!want.is_empty());
            budgets_spent_anywhere(&literals, &text, &want);
        }
    }
}
