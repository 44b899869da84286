//! A gateway with a hub fetches the network's model into its model file, in the background:
//! a conditional GET every `hub.model_interval`, the file replaced whole (the learner reads it
//! again by itself). A hub that cannot be reached leaves the file as it was: the gateway goes
//! on scoring with the last model it had, across restarts too.

use std::path::PathBuf;
use std::time::Duration;

use super::model::Model;
use crate::config::HubClient;

/// Outcome of one fetch.
#[derive(Debug, PartialEq)]
pub enum Fetched {
    /// A new model, written to the file.
    New { version: String },
    /// The hub's model is the one the gateway has.
    Unchanged,
    /// The hub has no model yet.
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach the hub at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("the hub at {url} answered {status}")]
    Refused { url: String, status: u16 },
    #[error(
        "the model the hub at {url} sends is larger than {} bytes",
        super::MAX_MODEL_FILE
    )]
    TooLarge { url: String },
    #[error("the hub's model")]
    Bad(#[from] super::model::ModelError),
    #[error(transparent)]
    Write(#[from] super::LearnError),
}

/// Fetches the hub's model unless it is `known` (the version last fetched), and writes it
/// to `path`.
pub async fn fetch_once(
    client: &reqwest::Client,
    hub: &HubClient,
    path: &std::path::Path,
    known: Option<&str>,
) -> Result<Fetched, FetchError> {
    let url = format!("{}/v1/model", hub.url.trim_end_matches('/'));
    let mut req = client.get(&url).bearer_auth(&hub.token);
    if let Some(v) = known {
        req = req.header(reqwest::header::IF_NONE_MATCH, format!("\"{v}\""));
    }
    let unreachable = |e: reqwest::Error| FetchError::Unreachable {
        url: url.clone(),
        why: crate::ErrorChain(&e).to_string(),
    };
    let resp = req.send().await.map_err(unreachable)?;
    match resp.status().as_u16() {
        304 => return Ok(Fetched::Unchanged),
        404 => return Ok(Fetched::None),
        200 => {}
        status => return Err(FetchError::Refused { url, status }),
    }
    let version = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    // Read up to the largest model file accepted, whatever the hub says or sends.
    if resp
        .content_length()
        .is_some_and(|n| n > super::MAX_MODEL_FILE)
    {
        return Err(FetchError::TooLarge { url });
    }
    let mut resp = resp;
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        if (bytes.len() + chunk.len()) as u64 > super::MAX_MODEL_FILE {
            return Err(FetchError::TooLarge { url });
        }
        bytes.extend_from_slice(&chunk);
    }
    // Checked before it replaces a good file.
    let model = Model::from_bytes(&bytes)?;
    super::write(path, &model)?;
    Ok(Fetched::New { version })
}

/// Fetches the model every `hub.model_interval` for as long as the daemon runs, with the
/// config `current` gives at each round (None: no hub now).
pub async fn fetch_forever(current: impl Fn() -> Option<(HubClient, PathBuf)>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_idle_timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client builds with rustls");
    let mut known: Option<String> = None;
    // The last error said: each new one is said once, not every round.
    let mut failing: Option<String> = None;
    loop {
        let Some((hub, path)) = current() else {
            tokio::time::sleep(Duration::from_secs(60)).await;
            continue;
        };
        if known.is_none() {
            // The file the last run fetched is that version: asked again only if it changed.
            known = version_of(&path);
        }
        match fetch_once(&client, &hub, &path, known.as_deref()).await {
            Ok(Fetched::New { version }) => {
                tracing::info!(version = %version, "the hub's learned model fetched into {}", path.display());
                known = Some(version);
                failing = None;
            }
            Ok(_) => failing = None,
            Err(e) => {
                let said = crate::ErrorChain(&e).to_string();
                if failing.as_deref() != Some(said.as_str()) {
                    tracing::warn!("learned model not fetched (the last one stays in use): {said}");
                }
                failing = Some(said);
            }
        }
        tokio::time::sleep(hub.model_interval).await;
    }
}

/// The version (the hub's `ETag`) of the model in a file: the same bytes give the same one.
pub fn version_of(path: &std::path::Path) -> Option<String> {
    let bytes = crate::files::read_prefix(path, super::MAX_MODEL_FILE).ok()?;
    Some(super::model::version(&bytes))
}
