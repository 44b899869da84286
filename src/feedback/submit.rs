//! `repmilter feedback report`: messages and ARF reports that administrators and users
//! report, turned into events here (so that only keys leave the gateway unless
//! `share_samples` is on) and sent to the hub at once, with a clear error when it will not
//! take them. The daemon's spool is not used: a person reporting wants to know it arrived.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use super::report::{MAX_REPORTED, event_of, looks_like_mail, strip_mbox_line};
use super::{Event, EventKind, Ingested, arf};
use crate::config::HubClient;

/// What is being reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportAs {
    Spam,
    Ham,
    /// Each file is an ARF report, which says spam or ham itself.
    Arf,
}

/// Events per request, and the bytes (samples) past which a request is sent early.
pub const BATCH_EVENTS: usize = 500;
pub const BATCH_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: crate::files::ReadError,
    },
    #[error("{}: not a mail message (its first line is not a header field)", path.display())]
    NotMail { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Arf {
        path: PathBuf,
        #[source]
        source: arf::ArfError,
    },
    #[error("{}: no key to report (no sender, link, attachment or text found)", path.display())]
    NoKeys { path: PathBuf },
}

/// A reported message: the message, reported as what, and its sender when a report says.
pub type Reported = (Vec<u8>, EventKind, Option<std::net::IpAddr>);

/// A reported message's features for the learned model (the engine's, as when it judges).
pub type LearnFeatures<'a> = &'a dyn Fn(&[u8], Option<std::net::IpAddr>) -> Vec<u64>;

/// The event for one reported file, with its learned-model features.
pub fn event_for(
    path: &Path,
    how: ReportAs,
    share_samples: bool,
    learn: LearnFeatures<'_>,
) -> Result<Event, FileError> {
    let (message, kind, client) = read_reported(path, how)?;
    let mut event = event_of(&message, kind, client);
    event.features = learn(&message, client);
    event.features.truncate(super::MAX_FEATURES);
    if event.keys.is_empty() {
        return Err(FileError::NoKeys {
            path: path.to_path_buf(),
        });
    }
    if share_samples {
        event.sample = Some(base64::engine::general_purpose::STANDARD.encode(&message));
    }
    Ok(event)
}

/// Reads one reported file: a message (its mbox From line dropped), or an ARF report's
/// original message.
pub fn read_reported(path: &Path, how: ReportAs) -> Result<Reported, FileError> {
    // Headers on top of the largest message kept.
    let raw =
        crate::files::read_prefix(path, MAX_REPORTED as u64 + 1024 * 1024).map_err(|source| {
            FileError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
    Ok(match how {
        ReportAs::Spam | ReportAs::Ham => {
            if !looks_like_mail(&raw) {
                return Err(FileError::NotMail {
                    path: path.to_path_buf(),
                });
            }
            let kind = if how == ReportAs::Spam {
                EventKind::Spam
            } else {
                EventKind::Ham
            };
            (strip_mbox_line(&raw).to_vec(), kind, None)
        }
        ReportAs::Arf => {
            let a = arf::parse(&raw).map_err(|source| FileError::Arf {
                path: path.to_path_buf(),
                source,
            })?;
            (a.original, a.kind, a.source_ip)
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("cannot reach the hub at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("the hub at {url} answered {status}: {reason}")]
    Refused {
        url: String,
        status: u16,
        reason: String,
    },
}

/// Sends events to the hub's `/v1/events`.
pub struct Submitter {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Submitter {
    pub fn new(config: &HubClient) -> Submitter {
        Submitter {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                // Below the hub's 30 s idle limit, so a pooled connection is not reused as the hub
                // closes it.
                .pool_idle_timeout(Duration::from_secs(20))
                .build()
                .expect("an HTTP client builds with rustls"),
            url: format!("{}/v1/events", config.url),
            token: config.token.clone(),
        }
    }

    pub async fn send(&self, events: &[Event]) -> Result<Ingested, SubmitError> {
        let unreachable = |why: String| SubmitError::Unreachable {
            url: self.url.clone(),
            why,
        };
        let resp = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "events": events }))
            .send()
            .await
            .map_err(|e| unreachable(crate::ErrorChain(&e.without_url()).to_string()))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| unreachable(format!("unexpected answer ({e})")));
        }
        // The hub's errors are JSON with a reason; anything else is shown as it came.
        let reason = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(SubmitError::Refused {
            url: self.url.clone(),
            status: status.as_u16(),
            reason,
        })
    }
}

/// What a run of `feedback report` did.
#[derive(Debug, Default)]
pub struct Summary {
    pub sent: usize,
    pub hub: Ingested,
    pub spam: usize,
    pub ham: usize,
    /// Files that could not be reported, each with its reason.
    pub skipped: Vec<FileError>,
}

/// Reports `files` as `how`, in batches; `progress` is called once per file. A file that
/// cannot be reported is skipped (named in the summary); the hub failing stops the run, and
/// what was sent before stays sent (the hub counts each event once if the run is repeated).
pub async fn report_files(
    config: &HubClient,
    how: ReportAs,
    files: &[PathBuf],
    learn: LearnFeatures<'_>,
    mut progress: impl FnMut(),
) -> Result<Summary, (SubmitError, Summary)> {
    let submitter = Submitter::new(config);
    let mut summary = Summary::default();
    let mut batch: Vec<Event> = Vec::new();
    let mut bytes = 0;
    for (i, path) in files.iter().enumerate() {
        match event_for(path, how, config.share_samples, learn) {
            Ok(e) => {
                bytes += e.sample.as_ref().map_or(0, String::len)
                    + 64 * e.keys.len()
                    + 21 * e.features.len();
                match e.kind {
                    EventKind::Ham => summary.ham += 1,
                    _ => summary.spam += 1,
                }
                batch.push(e);
            }
            Err(e) => summary.skipped.push(e),
        }
        progress();
        let last = i + 1 == files.len();
        if !batch.is_empty() && (last || batch.len() >= BATCH_EVENTS || bytes >= BATCH_BYTES) {
            match submitter.send(&batch).await {
                Ok(got) => {
                    summary.sent += batch.len();
                    summary.hub.accepted += got.accepted;
                    summary.hub.duplicates += got.duplicates;
                }
                Err(e) => return Err((e, summary)),
            }
            batch.clear();
            bytes = 0;
        }
    }
    Ok(summary)
}
