//! Listeners (inet, inet6, unix), a permit per connection, and shutdown fan-out with a
//! deadline to drain. Knows nothing of what a session does with its stream.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::Listen;
use crate::warn::WarnLimiter;

/// A connected stream of either kind.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Called before waiting for more bytes when nothing was written since the last read. On
    /// TCP it asks the kernel to acknowledge at once instead of
    /// delaying the ACK up to 40 ms: MTAs write several small packets before waiting for a
    /// reply (a MACRO then its command; commands negotiated as no-reply), and Postfix leaves
    /// Nagle's algorithm on for milter sockets, so each delayed ACK would stall the next packet.
    /// Linux clears the flag by itself, hence once per such wait.
    fn ack_now(&self) {}
}

impl Stream for tokio::net::TcpStream {
    fn ack_now(&self) {
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(self).set_tcp_quickack(true);
    }
}

impl Stream for tokio::net::UnixStream {}

impl<T: Stream + ?Sized> Stream for Box<T> {
    fn ack_now(&self) {
        (**self).ack_now()
    }
}

pub enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {listen}")]
    Bind {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
}

/// Who may connect to a unix socket: its mode, and the owner and group it is given.
#[derive(Debug, Clone, Copy)]
pub struct SocketAccess {
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl Listener {
    /// Binds the configured address. A stale unix socket left by a crash is replaced; any
    /// other file at that path is left alone.
    pub async fn bind(listen: &Listen, access: SocketAccess) -> Result<Listener, BindError> {
        let err = |source| BindError::Bind {
            listen: listen.to_string(),
            source,
        };
        match listen {
            Listen::Inet(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).await.map_err(err)?)),
            Listen::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path).map_err(err)?;
                if access.owner.is_some() || access.group.is_some() {
                    std::os::unix::fs::chown(path, access.owner, access.group).map_err(err)?;
                }
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))
                    .map_err(err)?;
                Ok(Listener::Unix {
                    listener,
                    path: path.clone(),
                })
            }
        }
    }

    /// The bound address in config spelling (with the real port when 0 was asked for).
    pub fn local(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => Listen::Inet(a).to_string(),
                Err(_) => "inet:?".into(),
            },
            Listener::Unix { path, .. } => Listen::Unix(path.clone()).to_string(),
        }
    }

    async fn accept(&self) -> std::io::Result<(Box<dyn Stream>, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), peer.to_string()))
            }
            Listener::Unix { listener, path } => {
                let (s, _) = listener.accept().await?;
                Ok((Box::new(s), format!("unix:{}", path.display())))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn remove_stale_socket(path: &Path) -> Result<(), BindError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            let _ = std::fs::remove_file(path);
            Ok(())
        }
        Ok(_) => Err(BindError::NotASocket {
            path: path.to_path_buf(),
        }),
        Err(_) => Ok(()),
    }
}

/// Pause after a failed accept (out of file descriptors, say) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections until `stop` turns true, running `handle` for each under a permit;
/// then tells sessions to finish (through the receiver each one gets) and waits up to
/// `drain` for them before cutting the rest off.
///
/// A connection that finds every permit taken is closed at once, with a rate-limited warning:
/// left in the listen backlog, it would make the MTA wait out its connect timeout before
/// applying its default action, for every message, while the slots stay taken.
pub async fn serve<F, Fut>(
    listener: Listener,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
    handle: F,
) where
    F: Fn(Box<dyn Stream>, String, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections));
    let (tell_sessions, sessions_hear) = watch::channel(false);
    let mut sessions = JoinSet::new();
    let refusals = WarnLimiter::default();
    loop {
        if *stop.borrow() {
            break;
        }
        // A dropped stop sender means nobody can tell us to stop any more: stop now rather
        // than spin on a channel that is always ready.
        let accepted = tokio::select! {
            a = listener.accept() => a,
            r = stop.changed() => if r.is_err() { break } else { continue },
        };
        // Reap finished sessions so the set does not grow with the connections served.
        while sessions.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    crate::metrics::get().error("connection_limit");
                    if let Some(suppressed) = refusals.allow() {
                        tracing::warn!(%peer, suppressed, max_connections, "connection limit reached; closing the new connection");
                    }
                    drop(stream);
                    continue;
                };
                let fut = handle(stream, peer, sessions_hear.clone());
                sessions.spawn(async move {
                    fut.await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    let _ = tell_sessions.send(true);
    while sessions.try_join_next().is_some() {}
    let in_flight = sessions.len();
    if in_flight > 0 {
        tracing::info!(sessions = in_flight, deadline = ?drain, "draining sessions");
    }
    let drained = tokio::time::timeout(drain, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            sessions = sessions.len(),
            "shutdown deadline passed; closing remaining sessions"
        );
        sessions.shutdown().await;
    }
}
