//! The hub's listed addresses as an rbldnsd zone (`ip4set` or `ip6trie` data), so that
//! postscreen or any MTA can query the hub's reputation as a DNS list.
//!
//! Listed: `ip:` keys answer 127.0.0.2 and `net:` keys (their /24 or /64) 127.0.0.3, when
//! their score is at least `min_score` and they are not on the allowlist. The TXT record says
//! why. The RFC 5782 test entry (127.0.0.2, or ::ffff:127.0.0.2) is always listed, so that a
//! client's probe finds the list working.

use std::net::IpAddr;

use super::model::Reputation;
use super::service::Hub;
use super::store::StoreError;

/// Which addresses a zone holds: rbldnsd's `ip4set` takes IPv4 only, `ip6trie` IPv6 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn dataset(self) -> &'static str {
        match self {
            Family::V4 => "ip4set",
            Family::V6 => "ip6trie",
        }
    }

    fn holds(self, key: &str) -> bool {
        // An address or a network: what comes before any '/' is an address.
        let addr = key.split('/').next().unwrap_or(key);
        match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => self == Family::V4,
            Ok(IpAddr::V6(_)) => self == Family::V6,
            Err(_) => false,
        }
    }
}

/// Default lowest score listed. With the default model, two gateways' spam reports and no ham
/// score 4.3 (a key the milter would give HUB_SPAM_IP 4.3); one gateway alone scores 0.
pub const DEFAULT_MIN_SCORE: f64 = 3.0;

/// The zone data.
pub fn render(hub: &Hub, family: Family, min_score: f64, now: u64) -> Result<String, StoreError> {
    let mut out = format!(
        "# repmilter hub zone ({}), written at {now} (Unix time): addresses whose hub score is at \
         least {min_score}\n\
         # rbldnsd -b ADDR hub.example:{}:THIS-FILE\n\
         :127.0.0.2:Listed by the repmilter hub\n",
        family.dataset(),
        family.dataset()
    );
    out.push_str(match family {
        Family::V4 => "127.0.0.2 :127.0.0.2:RFC 5782 test entry\n",
        Family::V6 => "::ffff:127.0.0.2 :127.0.0.2:RFC 5782 test entry\n",
    });
    // The listed entries only are held (a zone's worth), sorted by address for readers.
    let mut lines: Vec<String> = Vec::new();
    for (prefix, code) in [("ip:", "127.0.0.2"), ("net:", "127.0.0.3")] {
        hub.each_listed(prefix, min_score, now, &mut |r: Reputation| {
            let value = &r.key[prefix.len()..];
            if family.holds(value) {
                lines.push(format!(
                    "{value} :{code}:score {:.1}: spam evidence {:.2}, ham {:.2}, {} reporters\n",
                    r.score, r.spam, r.ham, r.reporters
                ));
            }
        })?;
    }
    lines.sort_unstable();
    out.reserve(lines.iter().map(String::len).sum());
    for line in lines {
        out.push_str(&line);
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the running hub at {url} answered {status}: {reason}")]
    Refused {
        url: String,
        status: u16,
        reason: String,
    },
    #[error(
        "cannot open the store ({0}); if the hub is running and holds it, give a [[gateway]] the admin role so that export-zone can ask the hub instead"
    )]
    Store(StoreError),
}

/// The zone of the hub `config` describes: asked of the running hub (with the config's first
/// admin token) when it answers, else read from its store directly.
pub async fn export(
    config: &crate::config::hub::HubConfig,
    family: Family,
    min_score: f64,
) -> Result<String, ExportError> {
    use crate::config::hub::Role;
    let admin = config
        .gateways
        .iter()
        .find(|g| g.roles.contains(&Role::Admin));
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    if let Some(admin) = admin
        && addr.port() != 0
    {
        let url = format!("http://{addr}/v1/zone");
        let family_number = if family == Family::V4 { "4" } else { "6" };
        let sent = reqwest::Client::new()
            .get(&url)
            .query(&[
                ("family", family_number),
                ("min_score", &min_score.to_string()),
            ])
            .bearer_auth(&admin.token)
            .timeout(std::time::Duration::from_secs(60))
            .send()
            .await;
        // Not answering: not running; the store is read directly below.
        if let Ok(resp) = sent {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if status.is_success() {
                return Ok(text);
            }
            let reason = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            return Err(ExportError::Refused {
                url,
                status: status.as_u16(),
                reason,
            });
        }
    }
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let hub = Hub::open(config).map_err(ExportError::Store)?;
        render(&hub, family, min_score, super::service::now()).map_err(ExportError::Store)
    })
    .await
    .map_err(|e| ExportError::Store(StoreError(e.to_string())))?
}
