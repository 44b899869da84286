//! Running a compiled rule set over a message: every target text scanned once for literals,
//! the candidate regexes run, metas evaluated, all under the scan's deadline.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Instant;

use super::backtrack::Cut;
use super::linear;
use super::meta::{bounds, eval, truth};
use super::multi::{FastMap, FastSet};
use super::ruleset::{Evidence, Hit, Index, Kind, Matcher, Owner, RuleSet};
use crate::message::targets;
use crate::scan::ScanInput;

/// Characters of context shown around a match by `check --explain`.
const CONTEXT: usize = 40;

/// Shortest text whose line-local rules are searched only on their literals' lines: on a
/// shorter one, finding the lines costs about what it saves.
const LINES_FROM: usize = 4096;

/// Literal occurrences reported between two looks at the clock. Ordinary mail has a few
/// hundred a text; a rule file of literals that all occur at every position has billions
/// in a long message, and the pass must stop at the deadline like the regexes.
const OCCURRENCES_PER_CLOCK: u32 = 4096;

impl RuleSet {
    /// Scans a message without a deadline, with each hit's evidence (the command-line
    /// tools).
    pub fn scan(&self, input: &ScanInput) -> Scan {
        self.scan_with(input, None, true)
            .expect("a scan without a deadline runs to its end")
    }

    /// Scans a message; past `deadline` the scan stops between two rules (or two zones of a
    /// backtracking rule) and gives up: a verdict made of some rules would be wrong. Hits
    /// come without evidence (the daemon's scan: nothing reads it there, and each hit's
    /// would be a copy of its match and context).
    pub fn scan_until(
        &self,
        input: &ScanInput,
        deadline: Option<Instant>,
    ) -> Result<Scan, Expired> {
        self.scan_with(input, deadline, false)
    }

    fn scan_with(
        &self,
        input: &ScanInput,
        deadline: Option<Instant>,
        explain: bool,
    ) -> Result<Scan, Expired> {
        let mut st = ScanState {
            counts: vec![0; self.rules.len()],
            evidence: vec![None; self.rules.len()],
            explain,
            cut: Vec::new(),
            deadline,
            expired: false,
            until_clock: OCCURRENCES_PER_CLOCK,
            marked: vec![0; self.rules.len()],
            epoch: 0,
            slot: None,
            deferred: Vec::new(),
        };
        let view = input.view();
        // Kept for the lazy sub-rules, which run after the metas' other rules.
        let body = self.body.wanted().then(|| targets::body(view));
        let rawbody = self.rawbody.wanted().then(|| targets::rawbody(view));
        let full = self
            .full
            .wanted()
            .then(|| targets::full(&input.message, view));
        let texts = [
            (&self.body, body.as_deref()),
            (&self.rawbody, rawbody.as_deref()),
            (&self.full, full.as_deref()),
        ];
        for (slot, (ix, text)) in texts.iter().enumerate() {
            if let Some(text) = text {
                st.slot = Some(slot);
                self.scan_index(ix, text, &mut st);
            }
        }
        st.slot = None;
        for u in &view.urls {
            self.scan_index(&self.uri, &u.url, &mut st);
        }
        let relays = self.reads_relays.then(|| input.relays());
        for (sel, ix) in &self.headers {
            match targets::header_text(&input.message, &|| input.headers(), relays, sel) {
                Some(text) => self.scan_index(ix, &text, &mut st),
                None => self.scan_unset(ix, &mut st),
            }
        }
        if !self.mime_headers.is_empty() {
            for part in view.parts() {
                for (sel, ix) in &self.mime_headers {
                    match targets::part_header_text(part, sel) {
                        Some(text) => self.scan_index(ix, &text, &mut st),
                        None => self.scan_unset(ix, &mut st),
                    }
                }
            }
            for &r in &self.mime_negated {
                st.counts[r] = u32::from(st.counts[r] == 0);
            }
        }
        if st.expired {
            return Err(Expired);
        }
        for &r in &self.exists {
            if let Kind::Exists(name) = &self.rules[r].kind
                && crate::message::targets::header_exists(&input.message, name)
            {
                st.counts[r] = 1;
            }
        }
        for &r in &self.evals {
            if let Kind::Eval(e) = &self.rules[r].kind
                && e.holds(input, self.freemail.as_ref())
            {
                st.counts[r] = 1;
            }
        }
        if explain || (self.lazy.is_empty() && st.deferred.is_empty()) {
            for (m, e) in &self.metas {
                if eval(e, &st.counts) != 0.0 {
                    st.counts[*m] = 1;
                }
            }
        } else {
            self.lazy_metas(&texts, &mut st);
            if st.expired {
                return Err(Expired);
            }
        }
        let hits = st
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(rule, &count)| Hit {
                rule,
                count,
                evidence: st.evidence[rule].take(),
            })
            .collect();
        Ok(Scan { hits, cut: st.cut })
    }
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Rules that fired, sub-rules included.
    pub hits: Vec<Hit>,
    /// Backtracking rules cut short on some text (each counts as not matching there), once
    /// per rule and reason.
    pub cut: Vec<(usize, Cut)>,
}

/// The scan's deadline passed before every rule had run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the rule scan did not finish before its deadline")]
pub struct Expired;

impl RuleSet {
    /// The metas, with the lazy sub-rules run only where some meta's truth depends on them
    /// (see [`Index::lazy`]): the literal-less ones of the body, rawbody and full texts, and
    /// the others there that their literals made candidates, deferred with their lines.
    ///
    /// Each meta a lazy rule reaches is first bounded (a rule not yet run counting anywhere
    /// from none to its most hits, a meta left open anywhere from 0 to 1); one the bounds
    /// decide gets its truth. The deferred candidates that an open meta reads run (they
    /// search only their lines), the open metas are bounded again, and only then the
    /// literal-less rules that a meta still open reads run, over their whole texts. The
    /// metas still open are evaluated as usual, in order: a decided meta is the same
    /// whatever the counts within its bounds, and an open one reads only counts now known,
    /// so every meta comes out as if every rule had run.
    fn lazy_metas(&self, texts: &[(&Index, Option<&str>); 3], st: &mut ScanState) {
        for &r in &self.lazy {
            st.counts[r] = UNRUN;
        }
        for d in &st.deferred {
            st.counts[d.rule] = UNRUN;
        }
        let mut open = Vec::new();
        for i in 0..self.metas.len() {
            let (m, e) = &self.metas[i];
            if !self.lazy_reads[i].0 {
                if eval(e, &st.counts) != 0.0 {
                    st.counts[*m] = 1;
                }
            } else if self.bound_meta(i, &mut st.counts).is_none() {
                open.push(i);
            }
        }
        let needed = |open: &[usize], counts: &[u32]| -> Vec<usize> {
            let mut needed: Vec<usize> = Vec::new();
            for &i in open {
                for &r in &self.lazy_reads[i].1 {
                    if counts[r] == UNRUN && !needed.contains(&r) {
                        needed.push(r);
                    }
                }
            }
            needed
        };
        let first = needed(&open, &st.counts);
        let deferred = std::mem::take(&mut st.deferred);
        let mut ran = false;
        for d in deferred.iter().filter(|d| first.contains(&d.rule)) {
            let (ix, Some(text)) = texts[d.slot] else {
                continue;
            };
            st.counts[d.rule] = 0;
            self.run_regex(d.rule, text, ix.per_line, d.lines.as_deref(), st);
            ran = true;
        }
        if ran {
            open.retain(|&i| self.bound_meta(i, &mut st.counts).is_none());
        }
        let second = needed(&open, &st.counts);
        for (ix, text) in texts {
            let Some(text) = text else { continue };
            for &r in ix.lazy.iter().filter(|r| second.contains(r)) {
                st.counts[r] = 0;
                self.run_regex(r, text, ix.per_line, None, st);
            }
        }
        for r in self
            .lazy
            .iter()
            .copied()
            .chain(deferred.iter().map(|d| d.rule))
        {
            if st.counts[r] == UNRUN {
                st.counts[r] = 0;
            }
        }
        for &i in &open {
            st.counts[self.metas[i].0] = 0;
        }
        for &i in &open {
            let (m, e) = &self.metas[i];
            if eval(e, &st.counts) != 0.0 {
                st.counts[*m] = 1;
            }
        }
    }

    /// Bounds meta `i` of `metas` where some rules have not run (count [`UNRUN`]) and some
    /// metas are open (count [`OPEN`]); sets its count to its truth, or to [`OPEN`] if the
    /// bounds leave it open (None).
    fn bound_meta(&self, i: usize, counts: &mut [u32]) -> Option<bool> {
        let (m, e) = &self.metas[i];
        let of = |r: usize| match counts[r] {
            UNRUN => (0.0, self.lazy_most[r]),
            OPEN => (0.0, 1.0),
            c => (f64::from(c), f64::from(c)),
        };
        let t = truth(bounds(e, &of));
        counts[*m] = match t {
            Some(true) => 1,
            Some(false) => 0,
            None => OPEN,
        };
        t
    }

    fn scan_index(&self, ix: &Index, text: &str, st: &mut ScanState) {
        if st.expired {
            return;
        }
        st.epoch += 1;
        let epoch = st.epoch;
        let mut candidates: Vec<usize> = Vec::new();
        // Distinct phrases found, and how many per rule.
        let mut phrases_seen: FastSet<(usize, usize)> = FastSet::default();
        let mut phrase_counts: BTreeMap<usize, u32> = BTreeMap::new();
        // Where a match must lie within one line (SpamAssassin's body paragraphs, or a rule
        // whose pattern cannot cross a line end), a rule can match only on the lines where
        // one of its literals is: only those are searched (a 196 KB body has every literal
        // somewhere, but each on few of its lines).
        let by_lines = ix.per_line || (ix.one_line && text.len() >= LINES_FROM);
        // Lines are found from the literals' positions, not listed up front: a text of
        // empty lines would list as many offsets as it has bytes, several times its size.
        let mut lines_at = LineCursor::new(text.as_bytes());
        let one_line = |r: usize| {
            ix.per_line
                || (by_lines && matches!(self.rules[r].kind, Kind::Regex { one_line: true, .. }))
        };
        // (rule, line start, literals found there), and each rule's tally of them.
        let mut rule_lines: Vec<(usize, usize, u32)> = Vec::new();
        let mut tallies: FastMap<usize, LineTally> = FastMap::default();
        // Occurrences of their literals, for rules that need several (`Index::times`).
        let mut occurrences: FastMap<usize, u32> = FastMap::default();
        if let Some(lits) = &ix.literals_matcher {
            let flow = lits.for_each(text.as_bytes(), |m| {
                st.until_clock -= 1;
                if st.until_clock == 0 {
                    st.until_clock = OCCURRENCES_PER_CLOCK;
                    if st.deadline.is_some_and(|d| Instant::now() >= d) {
                        return ControlFlow::Break(());
                    }
                }
                let line = if by_lines {
                    lines_at.start_of(m.start)
                } else {
                    0
                };
                for owner in &ix.owners[m.pattern] {
                    match *owner {
                        Owner::Rule(r) => {
                            if st.marked[r] != epoch {
                                st.marked[r] = epoch;
                                candidates.push(r);
                            }
                            if one_line(r) {
                                tallies.entry(r).or_default().add(r, line, &mut rule_lines);
                            } else if ix.times.contains_key(&r) {
                                *occurrences.entry(r).or_default() += 1;
                            }
                        }
                        Owner::Phrase(r, p) => {
                            if !phrases_seen.contains(&(r, p))
                                && self.phrase_ok(r, p, text, m.start, m.end)
                            {
                                phrases_seen.insert((r, p));
                                *phrase_counts.entry(r).or_default() += 1;
                                if st.explain && st.evidence[r].is_none() {
                                    st.evidence[r] = Some(evidence(text, m.start, m.end));
                                }
                            }
                        }
                    }
                }
                ControlFlow::Continue(())
            });
            if flow.is_break() {
                st.expired = true;
                return;
            }
        }
        candidates.sort_unstable();
        if !ix.times.is_empty() {
            candidates.retain(|&r| {
                one_line(r)
                    || ix
                        .times
                        .get(&r)
                        .is_none_or(|&n| occurrences.get(&r).is_some_and(|&c| c >= n))
            });
        }
        // A rule past MAX_RULE_LINES lines is searched over the whole text instead.
        let whole = |r: usize| tallies.get(&r).is_some_and(|t| t.whole);
        rule_lines.retain(|&(r, _, _)| !whole(r));
        enough_per_line(&mut rule_lines, &ix.times);
        // A line from its start: up to and with its line end.
        let range = |start: usize| {
            let end = memchr::memchr(b'\n', &text.as_bytes()[start..])
                .map_or(text.len(), |i| start + i + 1);
            (start, end)
        };
        let mut lines = Vec::new();
        let mut next = 0;
        // A lazy sub-rule's search waits for the metas (see `lazy_metas`).
        let defer = |r: usize, st: &ScanState| {
            (!st.explain && !self.lazy_most[r].is_nan())
                .then_some(st.slot)
                .flatten()
        };
        for r in candidates {
            if !one_line(r) || whole(r) {
                if let Some(slot) = defer(r, st) {
                    st.deferred.push(Deferred {
                        rule: r,
                        slot,
                        lines: None,
                    });
                    continue;
                }
                self.run_regex(r, text, ix.per_line, None, st);
                continue;
            }
            lines.clear();
            while next < rule_lines.len() && rule_lines[next].0 < r {
                next += 1;
            }
            while next < rule_lines.len() && rule_lines[next].0 == r {
                lines.push(range(rule_lines[next].1));
                next += 1;
            }
            if lines.is_empty() {
                // Its literals occurred, but on no line often enough.
                continue;
            }
            if let Some(slot) = defer(r, st) {
                st.deferred.push(Deferred {
                    rule: r,
                    slot,
                    lines: Some(lines.clone()),
                });
                continue;
            }
            self.run_regex(r, text, ix.per_line, Some(&lines), st);
        }
        for &r in &ix.always {
            self.run_regex(r, text, ix.per_line, None, st);
        }
        if st.explain {
            for &r in &ix.lazy {
                self.run_regex(r, text, ix.per_line, None, st);
            }
        }
        for (r, found) in phrase_counts {
            let rule = &self.rules[r];
            let Kind::Phrases { perhit, .. } = rule.kind else {
                continue;
            };
            let n = if perhit || rule.multiple { found } else { 1 };
            st.counts[r] = (st.counts[r] + n).min(rule.maxhits.max(1));
        }
    }

    /// For a header absent from the message: rules with `[if-unset: X]` test X, the others
    /// test the empty string (so `!~` rules fire), as SpamAssassin does.
    fn scan_unset(&self, ix: &Index, st: &mut ScanState) {
        for &r in &ix.unset {
            if let Kind::Regex { if_unset, .. } = &self.rules[r].kind {
                self.run_regex(r, if_unset.as_deref().unwrap_or_default(), false, None, st);
            }
        }
    }

    fn phrase_ok(&self, r: usize, p: usize, text: &str, start: usize, end: usize) -> bool {
        let Kind::Phrases {
            phrases,
            word,
            case,
            ..
        } = &self.rules[r].kind
        else {
            return false;
        };
        if *case && &text[start..end] != phrases[p].as_str() {
            return false;
        }
        if *word {
            let before = text[..start].chars().next_back();
            let after = text[end..].chars().next();
            let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            if is_word(before) || is_word(after) {
                return false;
            }
        }
        true
    }

    /// Runs rule `r` on `text`; with `lines`, only on those lines of it (byte ranges, each
    /// ending after its line end), as if each were a text of its own.
    fn run_regex(
        &self,
        r: usize,
        text: &str,
        per_line: bool,
        lines: Option<&[(usize, usize)]>,
        st: &mut ScanState,
    ) {
        if st.expired || st.deadline.is_some_and(|d| Instant::now() >= d) {
            st.expired = true;
            return;
        }
        let rule = &self.rules[r];
        let Kind::Regex {
            matcher, negate, ..
        } = &rule.kind
        else {
            return;
        };
        let want = if rule.multiple { rule.maxhits } else { 1 };
        let room = want.saturating_sub(st.counts[r]);
        if room == 0 {
            return;
        }
        let deadline = st.deadline;
        // Where one hit is all the rule can still count and nobody reads its evidence,
        // whether it matches is enough: a forward pass that stops at the first match state,
        // without working out where matches start. The span is a stand-in.
        let just_one = room == 1 && !st.explain;
        let search = |text: &str| match matcher {
            Matcher::Fast(re) if just_one && text.len() <= linear::ZONE => {
                if re.is_match(text.as_bytes()) {
                    (vec![(0, 0)], None)
                } else {
                    (Vec::new(), None)
                }
            }
            Matcher::Fast(re) => linear::find(re, text, room as usize, deadline),
            Matcher::Fancy(bt) => {
                let f = bt.find(text, room as usize, deadline);
                (f.spans, f.cut)
            }
        };
        // The whole text of a target matched line by line needs real spans, to see whether
        // a match crosses a line end.
        let spans = |text: &str| match matcher {
            Matcher::Fast(re) if per_line => linear::find(re, text, room as usize, deadline),
            _ => search(text),
        };
        // A match across a line end would be two paragraphs to SpamAssassin, which matches
        // each alone: then the rule is searched line by line (rare: most rules find nothing,
        // or something within a line).
        let crosses = |&(s, e): &(usize, usize)| {
            let matched = &text.as_bytes()[s..e];
            let inner = matched.strip_suffix(b"\n").unwrap_or(matched);
            inner.contains(&b'\n')
        };
        let (found, cut) = match lines {
            Some(lines) => in_lines(&search, text, lines.iter().copied(), room, deadline),
            None => {
                let (found, cut) = spans(text);
                if per_line && found.iter().any(crosses) {
                    let mut at = 0;
                    let all = text.split_inclusive('\n').map(|line| {
                        at += line.len();
                        (at - line.len(), at)
                    });
                    in_lines(&search, text, all, room, deadline)
                } else {
                    (found, cut)
                }
            }
        };
        match cut {
            Some(Cut::Deadline) => {
                st.expired = true;
                return;
            }
            Some(c) if !st.cut.contains(&(r, c)) => st.cut.push((r, c)),
            _ => {}
        }
        if *negate {
            // Absent only if every part of the text was searched.
            if found.is_empty() && cut.is_none() {
                st.counts[r] = st.counts[r].max(1);
            }
            return;
        }
        if let Some(&(s, e)) = found.first()
            && st.explain
            && st.evidence[r].is_none()
        {
            st.evidence[r] = Some(evidence(text, s, e));
        }
        st.counts[r] += found.len() as u32;
    }
}

/// Keeps, of sorted (rule, line) pairs (one per literal occurrence), the lines where each
/// rule with a count in `times` has at least that many.
fn enough_per_line(rule_lines: &mut Vec<(usize, usize, u32)>, times: &FastMap<usize, u32>) {
    // The same line may come twice, from the two passes of `multi::Literals` (short literals,
    // then long ones): one entry each, their counts added.
    rule_lines.sort_unstable_by_key(|&(r, line, _)| (r, line));
    rule_lines.dedup_by(|later, kept| {
        let same = (later.0, later.1) == (kept.0, kept.1);
        if same {
            kept.2 += later.2;
        }
        same
    });
    rule_lines.retain(|&(r, _, n)| times.get(&r).is_none_or(|&want| n >= want));
}

/// Lines with one rule's literals at most searched one by one: past this many, its search
/// over the whole text costs less than a search per line (and on a line-local rule finds the
/// same; a body rule's match across paragraphs is then searched for line by line, see
/// `run_regex`), and memory stays bounded by rules, not by literal hits.
const MAX_RULE_LINES: u32 = 256;

/// One rule's lines so far in a scan of one text.
#[derive(Default)]
struct LineTally {
    /// Its last entry in the list of lines, if any.
    last: Option<usize>,
    lines: u32,
    /// Past `MAX_RULE_LINES`: the whole text is searched.
    whole: bool,
}

impl LineTally {
    fn add(&mut self, rule: usize, line: usize, rule_lines: &mut Vec<(usize, usize, u32)>) {
        if self.whole {
            return;
        }
        // Hits come in text order: a repeated literal on one line adds to its count.
        if let Some(i) = self.last
            && rule_lines[i].1 == line
        {
            rule_lines[i].2 += 1;
            return;
        }
        if self.lines >= MAX_RULE_LINES {
            self.whole = true;
            return;
        }
        rule_lines.push((rule, line, 1));
        self.last = Some(rule_lines.len() - 1);
        self.lines += 1;
    }
}

/// Match spans and why a search stopped short, if it did.
type Searched = (Vec<(usize, usize)>, Option<Cut>);

/// Up to `room` matches of `search` in the given lines of `text` (byte ranges, in order),
/// searched one by one under one time budget, as one search of the whole text would be.
fn in_lines(
    search: &dyn Fn(&str) -> Searched,
    text: &str,
    lines: impl Iterator<Item = (usize, usize)>,
    room: u32,
    deadline: Option<Instant>,
) -> Searched {
    let started = Instant::now();
    let (mut found, mut cut) = (Vec::new(), None);
    for (a, b) in lines {
        if found.len() >= room as usize {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            cut = Some(Cut::Deadline);
            break;
        }
        if started.elapsed() >= super::backtrack::TIME_LIMIT {
            cut = Some(Cut::Time);
            break;
        }
        let (spans, c) = search(&text[a..b]);
        found.extend(spans.into_iter().map(|(s, e)| (a + s, a + e)));
        cut = cut.or(c);
        if matches!(c, Some(Cut::Time | Cut::Deadline)) {
            break;
        }
    }
    found.truncate(room as usize);
    (found, cut)
}

/// Finds the line (its start offset) around positions given mostly in increasing order, as
/// literal matches come: each byte is looked at about once, however long the lines.
struct LineCursor<'a> {
    text: &'a [u8],
    /// The last line found: `start..end`, `end` past its line end.
    start: usize,
    end: usize,
}

impl<'a> LineCursor<'a> {
    fn new(text: &'a [u8]) -> Self {
        LineCursor {
            text,
            start: 0,
            end: 0,
        }
    }

    fn start_of(&mut self, at: usize) -> usize {
        if (self.start..self.end).contains(&at) {
            return self.start;
        }
        // Going forward, the line cannot start before the end of the last one.
        let floor = if at >= self.end { self.end } else { 0 };
        self.start = memchr::memrchr(b'\n', &self.text[floor..at]).map_or(floor, |i| floor + i + 1);
        self.end = memchr::memchr(b'\n', &self.text[at..]).map_or(self.text.len(), |i| at + i + 1);
        self.start
    }
}

struct ScanState {
    counts: Vec<u32>,
    evidence: Vec<Option<Evidence>>,
    /// Whether hits keep their evidence (`check --explain`).
    explain: bool,
    cut: Vec<(usize, Cut)>,
    deadline: Option<Instant>,
    /// The deadline passed: every rule from here on is skipped and the scan gives up.
    expired: bool,
    /// Literal occurrences left to report before the clock is looked at again.
    until_clock: u32,
    /// Rules made candidates by a literal in the text being scanned: `marked[r] == epoch`,
    /// with one epoch per text, so nothing needs clearing between texts.
    marked: Vec<u32>,
    epoch: u32,
    /// Which of the body, rawbody and full texts is being scanned (their lazy sub-rules
    /// wait for the metas), or None for the others.
    slot: Option<usize>,
    /// Lazy sub-rules made candidates by their literals, not yet run.
    deferred: Vec<Deferred>,
}

/// A lazy sub-rule whose literals were found, and where: its text (`slot`) and, where it is
/// searched line by line, its lines.
struct Deferred {
    rule: usize,
    slot: usize,
    lines: Option<Vec<(usize, usize)>>,
}

/// The count of a lazy rule not yet run, while the metas are bounded: no count reaches it
/// (`maxhits` is a u32 but `run_regex` counts matches of a text, far fewer).
const UNRUN: u32 = u32::MAX - 1;

/// The count of a meta its bounds left open, while the metas are bounded (a meta counts 1).
const OPEN: u32 = u32::MAX;

fn evidence(text: &str, start: usize, end: usize) -> Evidence {
    // A byte-semantics match may start or end inside a character.
    let (start, end) = (
        text.floor_char_boundary(start),
        text.ceil_char_boundary(end),
    );
    let mut a = start.saturating_sub(CONTEXT);
    while !text.is_char_boundary(a) {
        a -= 1;
    }
    let mut b = (end + CONTEXT).min(text.len());
    while !text.is_char_boundary(b) {
        b += 1;
    }
    let flat = |s: &str| s.replace(['\r', '\n', '\t'], " ");
    Evidence {
        matched: flat(&text[start..end]),
        context: flat(&text[a..b]).trim().to_string(),
    }
}
