//! The words every stage shares: a [`Symbol`] is a named finding with a score, a [`Verdict`]
//! the symbols of one message, a [`ScanInput`] what the stages look at, and [`Compute`] and
//! [`Lookup`] the two kinds of stage. Knows no stage.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use ipnetwork::IpNetwork;

use crate::message::mime::{Header, MimeView};
use crate::message::received::{self, RelayHeaders};
use crate::message::{Envelope, Message};

/// A named finding with a score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Symbol {
    pub name: String,
    pub score: f64,
    /// Why it fired, for the report header and `check`.
    pub detail: String,
}

impl Symbol {
    pub fn new(name: impl Into<String>, score: f64, detail: impl Into<String>) -> Self {
        Symbol {
            name: name.into(),
            score,
            detail: detail.into(),
        }
    }

    /// The zero-score symbol saying a stage did not finish in time: `<STAGE>_TIMEOUT`.
    pub fn timed_out(stage: &str) -> Symbol {
        Symbol::new(
            format!("{}_TIMEOUT", stage.to_ascii_uppercase()),
            0.0,
            "stage did not finish within milter.message_timeout",
        )
    }
}

/// The total score and the symbols that make it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub score: f64,
    pub symbols: Vec<Symbol>,
}

impl Verdict {
    pub fn add(&mut self, s: Symbol) {
        self.score += s.score;
        self.symbols.push(s);
    }

    pub fn has(&self, name: &str) -> bool {
        self.symbols.iter().any(|s| s.name == name)
    }
}

/// What a stage looks at.
#[derive(Debug, Clone, Default)]
pub struct ScanInput {
    pub envelope: Envelope,
    pub message: Message,
    /// Built on first use and shared by every stage of this message.
    view: OnceLock<MimeView>,
    /// The message's headers decoded, on first use (most messages need only the Subject,
    /// which the view decodes).
    headers: OnceLock<Vec<Header>>,
    /// The message's reputation keys as text (see `reputation::keys::key_strings`): computed
    /// once, by the hub lookup or the feedback event, whichever comes first.
    pub keys: OnceLock<Vec<String>>,
    /// The networks that are ours (`[trust] networks`): SpamAssassin's `trusted_networks`
    /// for its relay pseudo-headers. None: inferred as SpamAssassin does without them.
    pub trusted: Option<Arc<[IpNetwork]>>,
    relays: OnceLock<RelayHeaders>,
    /// SpamAssassin's Date-to-Received difference, read by several eval rules.
    date_diff: OnceLock<i64>,
}

impl ScanInput {
    pub fn new(envelope: Envelope, message: Message) -> ScanInput {
        ScanInput {
            envelope,
            message,
            view: OnceLock::new(),
            headers: OnceLock::new(),
            keys: OnceLock::new(),
            trusted: None,
            relays: OnceLock::new(),
            date_diff: OnceLock::new(),
        }
    }

    /// The seconds between the message's Date and its Received headers' times (see
    /// `signatures::evals::date_diff`), worked out once for the rules that read it.
    pub fn date_diff(&self) -> i64 {
        *self
            .date_diff
            .get_or_init(|| crate::signatures::evals::date_diff(self))
    }

    /// SpamAssassin's `X-Spam-Relays-*` pseudo-headers for this message (see
    /// `message::received::of_message`).
    pub fn relays(&self) -> &RelayHeaders {
        self.relays.get_or_init(|| {
            let r = received::of_message(&self.message, &self.envelope, self.trusted.as_deref());
            RelayHeaders::new(&r, received::envelope_from(&self.message, &r))
        })
    }

    /// The message's headers, each value decoded and unfolded.
    pub fn headers(&self) -> &[Header] {
        self.headers
            .get_or_init(|| crate::message::mime::decode_headers(&self.message))
    }

    /// The decoded MIME view of the message.
    pub fn view(&self) -> &MimeView {
        self.view.get_or_init(|| MimeView::build(&self.message))
    }
}

/// A stage that computes on the message (MIME structure, rules): the pipeline runs these one
/// after the other on a blocking thread, a few messages at a time, so that they never stall
/// the runtime and never outnumber the cores by much. Stages are built once per config and
/// shared by sessions; each returns symbols with its default scores (the pipeline applies
/// `[scores]`).
pub trait Compute: Send + Sync {
    /// Lower-case name, used in `<STAGE>_TIMEOUT` symbols and logs.
    fn name(&self) -> &'static str;

    /// Scores a message. A stage that can run long checks `deadline` itself and then returns
    /// [`Symbol::timed_out`], so that it stops using the CPU when its answer no longer counts.
    fn scan(&self, input: &ScanInput, deadline: std::time::Instant) -> Vec<Symbol>;

    /// True when one scan may take far longer than its text's size suggests (backtracking
    /// rules, each with a time budget per text): the pipeline then never runs it on a runtime
    /// thread, where it would hold the sessions that thread serves.
    fn may_run_long(&self) -> bool {
        false
    }

    /// Scores a message given the symbols of the compute stages before this one (the
    /// learner reads which rules fired). Most stages ignore them.
    fn scan_after(
        &self,
        input: &ScanInput,
        deadline: std::time::Instant,
        _earlier: &[Symbol],
    ) -> Vec<Symbol> {
        self.scan(input, deadline)
    }
}

pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Vec<Symbol>> + Send + 'a>>;

/// A stage that waits on the network (DNS lists, the hub): awaited on the runtime, holding no
/// thread while it waits, and cut off at the deadline. It starts once the MIME view is built
/// (its URLs and domains are in it), beside the compute stages.
pub trait Lookup: Send + Sync {
    fn name(&self) -> &'static str;
    fn scan<'a>(&'a self, input: &'a ScanInput) -> LookupFuture<'a>;
}
