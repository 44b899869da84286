//! Listeners (inet, inet6, unix), the session threads that accept on them, a permit per
//! connection, and shutdown fan-out with a deadline to drain. Knows nothing of what a session
//! does with its stream.

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

/// A bound listening socket. A unix socket's file is removed when the listener is dropped.
pub struct Listener {
    socket: Socket,
    _file: Option<SocketFile>,
}

/// The listening socket itself, registered with a runtime.
enum Socket {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

/// The same socket outside any runtime: each session thread registers a copy (a duplicated
/// descriptor) with its own runtime.
enum Shared {
    Tcp(std::net::TcpListener),
    Unix {
        listener: std::os::unix::net::UnixListener,
        path: PathBuf,
    },
}

/// A unix socket's path, removed when the last listener of it goes.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
            Listen::Inet(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(err)?;
                // Linux gives an accepted socket the listener's TCP_NODELAY: set once here, it
                // spares a system call per connection (one of about fourteen a message).
                #[cfg(target_os = "linux")]
                socket2::SockRef::from(&listener)
                    .set_tcp_nodelay(true)
                    .map_err(err)?;
                Ok(Listener {
                    socket: Socket::Tcp(listener),
                    _file: None,
                })
            }
            Listen::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path).map_err(err)?;
                let file = SocketFile(path.clone());
                if access.owner.is_some() || access.group.is_some() {
                    std::os::unix::fs::chown(path, access.owner, access.group).map_err(err)?;
                }
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))
                    .map_err(err)?;
                Ok(Listener {
                    socket: Socket::Unix {
                        listener,
                        path: path.clone(),
                    },
                    _file: Some(file),
                })
            }
        }
    }

    /// The bound address in config spelling (with the real port when 0 was asked for).
    pub fn local(&self) -> String {
        match &self.socket {
            Socket::Tcp(l) => match l.local_addr() {
                Ok(a) => Listen::Inet(a).to_string(),
                Err(_) => "inet:?".into(),
            },
            Socket::Unix { path, .. } => Listen::Unix(path.clone()).to_string(),
        }
    }
}

/// The other end of a connection, for the log lines that name it. Formatted only then: most
/// connections never are, and formatting a socket address for each one cost about 2,000
/// instructions, a hundredth of a message with no rules.
#[derive(Debug, Clone)]
pub enum Peer {
    Inet(std::net::SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Inet(a) => a.fmt(f),
            Peer::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Socket {
    async fn accept(&self) -> std::io::Result<(Box<dyn Stream>, Peer)> {
        match self {
            Socket::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                #[cfg(not(target_os = "linux"))]
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), Peer::Inet(peer)))
            }
            Socket::Unix { listener, path } => {
                let (s, _) = listener.accept().await?;
                Ok((Box::new(s), Peer::Unix(path.clone())))
            }
        }
    }

    /// Takes the socket off its runtime.
    fn into_shared(self) -> std::io::Result<Shared> {
        Ok(match self {
            Socket::Tcp(l) => Shared::Tcp(l.into_std()?),
            Socket::Unix { listener, path } => Shared::Unix {
                listener: listener.into_std()?,
                path,
            },
        })
    }
}

impl Shared {
    /// A copy (the descriptor duplicated: both stay open).
    fn try_clone(&self) -> std::io::Result<Shared> {
        Ok(match self {
            Shared::Tcp(l) => Shared::Tcp(l.try_clone()?),
            Shared::Unix { listener, path } => Shared::Unix {
                listener: listener.try_clone()?,
                path: path.clone(),
            },
        })
    }

    /// Registers the socket with the runtime this is called on.
    fn into_socket(self) -> std::io::Result<Socket> {
        Ok(match self {
            Shared::Tcp(l) => Socket::Tcp(TcpListener::from_std(l)?),
            Shared::Unix { listener, path } => Socket::Unix {
                listener: UnixListener::from_std(listener)?,
                path,
            },
        })
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

/// The threads that serve sessions, each running its own single-threaded runtime on a copy
/// of the listening socket: a session lives on the thread that accepted it, with no wake-ups
/// of other threads for its reads and writes, and the kernel hands each new connection to
/// whichever thread calls accept first, the idler one.
pub struct Threads {
    pub count: usize,
    /// Stack of each thread (sessions may scan a message in place).
    pub stack_size: usize,
    /// Builds a thread's runtime, on that thread: a runtime must not be dropped on another
    /// runtime's thread, as it would be if one built there failed to start.
    pub runtime: fn() -> std::io::Result<tokio::runtime::Runtime>,
}

/// The session threads at work. [`Serving::finished`] returns once each has stopped
/// accepting and drained its sessions; the threads then wait, their runtimes alive for what
/// was registered on them (a pooled connection to the hub, say), until this is dropped.
pub struct Serving {
    done: tokio::sync::mpsc::Receiver<()>,
    _release: watch::Sender<()>,
}

impl Serving {
    pub async fn finished(&mut self) {
        while self.done.recv().await.is_some() {}
    }
}

/// Accepts connections on every thread of `threads` until `stop` turns true, running
/// `handle` for each under one of `max_connections` permits (shared by all threads); then
/// tells sessions to finish (through the receiver each one gets) and waits up to `drain` for
/// them before cutting the rest off. Fails when a thread, its runtime or its copy of the
/// socket cannot be had; the threads started before it then stop at once.
///
/// A connection that finds every permit taken is closed at once, with a rate-limited warning:
/// left in the listen backlog, it would make the MTA wait out its connect timeout before
/// applying its default action, for every message, while the slots stay taken.
pub fn serve<F, Fut>(
    listener: Listener,
    threads: Threads,
    max_connections: usize,
    stop: watch::Receiver<bool>,
    drain: Duration,
    handle: F,
) -> std::io::Result<Serving>
where
    F: Fn(Box<dyn Stream>, Peer, watch::Receiver<bool>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Listener {
        socket,
        _file: file,
    } = listener;
    let shared = socket.into_shared()?;
    // The socket file goes when the last thread stops accepting.
    let file = Arc::new(file);
    let permits = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(WarnLimiter::default());
    let (done_tx, done) = tokio::sync::mpsc::channel(1);
    let (release, released) = watch::channel(());
    // Threads started before a failure see `abort` and end without accepting.
    let (abort, aborted) = watch::channel(false);
    let fail = |e| {
        let _ = abort.send(true);
        e
    };
    for i in 0..threads.count.max(1) {
        let copy = shared.try_clone().map_err(fail)?;
        let (file, permits, refusals) = (file.clone(), permits.clone(), refusals.clone());
        let (mut stop, handle, done_tx, mut released, mut aborted) = (
            stop.clone(),
            handle.clone(),
            done_tx.clone(),
            released.clone(),
            aborted.clone(),
        );
        let build = threads.runtime;
        let (ready_tx, ready) = std::sync::mpsc::channel::<std::io::Result<()>>();
        std::thread::Builder::new()
            .name(format!("milter-{i}"))
            .stack_size(threads.stack_size)
            .spawn(move || {
                let rt = match build() {
                    Ok(rt) => rt,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                let socket = {
                    let _in = rt.enter();
                    match copy.into_socket() {
                        Ok(s) => s,
                        Err(e) => return drop(ready_tx.send(Err(e))),
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let accepting = Accepting {
                    socket,
                    file,
                    permits,
                    refusals,
                    max_connections,
                };
                rt.block_on(async move {
                    // Accepting stops when told to (or when nobody can tell it any more: the
                    // sender dropped), or when a thread started after this one failed to.
                    let abort = async move {
                        if aborted.wait_for(|a| *a).await.is_err() {
                            // Started in full: no abort will come.
                            std::future::pending::<()>().await;
                        }
                    };
                    let stopped = async move {
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => {}
                            _ = abort => {}
                        }
                    };
                    accepting.run(stopped, drain, handle).await;
                    drop(done_tx);
                    // Never sent: returns when the sender is dropped.
                    let _ = released.changed().await;
                });
            })
            .map_err(fail)?;
        // The thread's runtime and socket, or why not (a moment: nothing is accepted yet).
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(e)),
            Err(_) => {
                return Err(fail(std::io::Error::other(
                    "a session thread ended at start",
                )));
            }
        }
    }
    Ok(Serving {
        done,
        _release: release,
    })
}

/// One thread's share of the work.
struct Accepting {
    socket: Socket,
    file: Arc<Option<SocketFile>>,
    permits: Arc<Semaphore>,
    refusals: Arc<WarnLimiter>,
    max_connections: usize,
}

impl Accepting {
    async fn run<F, Fut>(self, stop: impl Future<Output = ()>, drain: Duration, handle: F)
    where
        F: Fn(Box<dyn Stream>, Peer, watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Accepting {
            socket,
            file,
            permits,
            refusals,
            max_connections,
        } = self;
        let (tell_sessions, sessions_hear) = watch::channel(false);
        let mut sessions = JoinSet::new();
        let mut stop = std::pin::pin!(stop);
        loop {
            // Stopping wins over a connection waiting at the same moment.
            let accepted = tokio::select! {
                biased;
                _ = &mut stop => break,
                a = socket.accept() => a,
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
                    // Boxed: a session's state machine is kilobytes, and the task would
                    // otherwise copy it in whole when spawned and again when it ends.
                    let fut = Box::pin(handle(stream, peer, sessions_hear.clone()));
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
        // Nothing more is accepted here; the last thread to stop removes a unix socket.
        drop(socket);
        drop(file);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies go out at once: an accepted connection has Nagle's algorithm off, as the
    /// listener was set up to hand down, without a call per connection.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let access = SocketAccess {
            mode: 0o660,
            owner: None,
            group: None,
        };
        let listener = Listener::bind(&Listen::Inet("127.0.0.1:0".parse().unwrap()), access)
            .await
            .unwrap();
        let Socket::Tcp(tcp) = &listener.socket else {
            panic!("an inet listener is TCP");
        };
        let addr = tcp.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(
            !client.nodelay().unwrap(),
            "a new socket starts with Nagle on"
        );
        let (accepted, _) = tcp.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
