//! Where the daemon listens, in the spellings Postfix and Sendmail use.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Where the daemon listens, in the spellings Postfix and Sendmail use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Inet(SocketAddr::V4(a)) => write!(f, "inet:{}:{}", a.ip(), a.port()),
            Listen::Inet(SocketAddr::V6(a)) => write!(f, "inet6:[{}]:{}", a.ip(), a.port()),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for Listen {
    type Err = String;

    /// Accepts `inet:HOST:PORT` and `inet6:[HOST]:PORT` (Postfix), `inet:PORT@HOST` and
    /// `inet6:PORT@HOST` (Sendmail), `unix:/path` and `local:/path`. HOST is an IP address or
    /// `localhost`; names are not resolved, so the address cannot change behind an operator's back.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(hint) = scheme_hint(s) {
            return Err(format!("{s:?} has no scheme: did you mean {hint:?}?"));
        }
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            format!("{s:?} has no scheme: write inet:HOST:PORT, inet6:[HOST]:PORT or unix:/path")
        })?;
        match scheme {
            "unix" | "local" => {
                if rest.is_empty() {
                    return Err("unix socket path is empty".into());
                }
                Ok(Listen::Unix(PathBuf::from(rest)))
            }
            "inet" | "inet6" => {
                let (host, port) = if let Some((port, host)) = rest.split_once('@') {
                    (host, port)
                } else {
                    let (host, port) = rest
                        .rsplit_once(':')
                        .ok_or_else(|| format!("{s:?} has no port"))?;
                    (host.trim_start_matches('[').trim_end_matches(']'), port)
                };
                let port: u16 = port
                    .parse()
                    .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
                let ip: IpAddr = match host {
                    "localhost" if scheme == "inet6" => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                    "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    _ => host.parse().map_err(|_| {
                        format!("host {host:?} is not an IP address (names are not resolved)")
                    })?,
                };
                if scheme == "inet6" && ip.is_ipv4() {
                    return Err(format!("inet6 needs an IPv6 address, found {ip}"));
                }
                Ok(Listen::Inet(SocketAddr::new(ip, port)))
            }
            other => Err(format!("unknown scheme {other:?}: use inet, inet6 or unix")),
        }
    }
}

/// The spelling meant, when `s` is a socket address or a path without its scheme (the
/// commonest slip: `"127.0.0.1:11330"`, as in other programs' configs).
fn scheme_hint(s: &str) -> Option<String> {
    match s.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) => Some(format!("inet:{a}")),
        Ok(SocketAddr::V6(a)) => Some(format!("inet6:{a}")),
        Err(_) if s.starts_with('/') => Some(format!("unix:{s}")),
        Err(_) => s
            .strip_prefix("localhost:")
            .filter(|port| port.parse::<u16>().is_ok())
            .map(|port| format!("inet:127.0.0.1:{port}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_spellings() {
        let ok = [
            ("inet:127.0.0.1:11330", "inet:127.0.0.1:11330"),
            ("inet:11330@127.0.0.1", "inet:127.0.0.1:11330"),
            ("inet:localhost:25", "inet:127.0.0.1:25"),
            ("inet6:[::1]:11330", "inet6:[::1]:11330"),
            ("inet6:11330@::1", "inet6:[::1]:11330"),
            ("unix:/run/repmilter/sock", "unix:/run/repmilter/sock"),
            ("local:/run/repmilter/sock", "unix:/run/repmilter/sock"),
        ];
        for (input, shown) in ok {
            assert_eq!(
                input.parse::<Listen>().unwrap().to_string(),
                shown,
                "{input}"
            );
        }
        for bad in [
            "127.0.0.1:25",
            "inet:mx.example:25",
            "inet:127.0.0.1:99999",
            "inet6:[127.0.0.1]:1",
            "tcp:1",
            "unix:",
        ] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_scheme_is_named_with_the_spelling_meant() {
        for (input, meant) in [
            ("127.0.0.1:11330", "inet:127.0.0.1:11330"),
            ("[::1]:11330", "inet6:[::1]:11330"),
            ("localhost:11330", "inet:127.0.0.1:11330"),
            (
                "/run/repmilter/milter.sock",
                "unix:/run/repmilter/milter.sock",
            ),
        ] {
            let e = input.parse::<Listen>().unwrap_err();
            assert!(
                e.contains(&format!("did you mean {meant:?}")),
                "{input}: {e}"
            );
            // The hint itself is a valid spelling.
            assert!(meant.parse::<Listen>().is_ok(), "{meant}");
        }
    }
}
