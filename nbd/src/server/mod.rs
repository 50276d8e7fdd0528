//! The NBD server: listens on a unix socket or a loopback TCP port, runs
//! the handshake and then the transmission loop for each connection.

mod negotiate;
mod stream;
mod transmit;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kalmar_common::perf::PerfCounters;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub use stream::NbdStream;

use crate::backend::BlockBackend;
use crate::proto::handshake::{ExportInfo, HandshakeError};
use crate::proto::request::BadRequestMagic;
use crate::settings::ServerSettings;

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    #[error("handshake refused: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("protocol violation: {0}")]
    Protocol(#[from] BadRequestMagic),
    #[error("the client did not finish the handshake within {0} ms")]
    HandshakeTimeout(u64),
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A bound listening socket.
pub enum Listener {
    Tcp(TcpListener),
    /// The socket file is removed when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`. TCP addresses must be loopback; a stale unix socket
    /// file (nobody listening) is replaced, a live one is an error.
    pub async fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => {
                if !a.ip().is_loopback() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{a} is not a loopback address: kalmar-nbd serves 127.0.0.1 only"),
                    ));
                }
                Ok(Listener::Tcp(TcpListener::bind(a).await?))
            }
            ListenAddr::Unix(p) => {
                if let Ok(meta) = std::fs::symlink_metadata(p) {
                    if !meta.file_type().is_socket() {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!(
                                "{} exists and is not a socket; not replacing it",
                                p.display()
                            ),
                        ));
                    }
                    if tokio::net::UnixStream::connect(p).await.is_ok() {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!("{} is in use by a running server", p.display()),
                        ));
                    }
                    std::fs::remove_file(p)?;
                }
                Ok(Listener::Unix(UnixListener::bind(p)?, p.clone()))
            }
        }
    }

    /// The address clients connect to, as an NBD URI.
    pub fn uri(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("nbd://{a}"),
                Err(_) => "nbd://?".into(),
            },
            Listener::Unix(_, p) => format!("nbd+unix:///?socket={}", p.display()),
        }
    }

    pub fn local_tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// One export served over NBD.
pub struct Server<B: BlockBackend> {
    backend: Arc<B>,
    settings: Arc<ServerSettings>,
    perf: Arc<PerfCounters>,
}

impl<B: BlockBackend> Server<B> {
    pub fn new(backend: Arc<B>, settings: ServerSettings) -> Result<Server<B>, String> {
        settings.check()?;
        Ok(Server {
            backend,
            settings: Arc::new(settings),
            perf: crate::perf::build(),
        })
    }

    /// The `nbd` perf counters of this server.
    pub fn perf_counters(&self) -> Arc<PerfCounters> {
        self.perf.clone()
    }

    pub fn export_info(&self) -> ExportInfo {
        ExportInfo {
            name: self.settings.export_name.clone(),
            description: self.settings.export_description.clone(),
            size_bytes: self.backend.size_bytes(),
            read_only: false,
            can_multi_conn: self.backend.can_multi_conn(),
            block_sizes: self.settings.block_sizes(),
        }
    }

    /// Accepts connections until `shutdown` resolves, then lets every
    /// connection finish its requests in flight (at most
    /// `shutdown_grace`) and returns.
    pub async fn run(
        &self,
        listener: Listener,
        shutdown: impl Future<Output = ()>,
        shutdown_grace: Duration,
    ) -> io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(self.settings.max_connections));
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(r) = conns.join_next(), if !conns.is_empty() => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "connection task failed");
                    }
                }
                accepted = accept(&listener) => {
                    let (conn, peer) = match accepted {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = self.settings.max_connections, "too many connections; closing the new one");
                        continue;
                    };
                    let (backend, settings, export, stop, perf) =
                        (self.backend.clone(), self.settings.clone(), self.export_info(), stop_rx.clone(), self.perf.clone());
                    conns.spawn(async move {
                        perf.inc(crate::perf::L_CONNECTIONS, 1);
                        let r = match conn {
                            Conn::Tcp(s) => serve(s, &*backend, &export, &settings, &perf, stop).await,
                            Conn::Unix(s) => serve(s, &*backend, &export, &settings, &perf, stop).await,
                        };
                        perf.dec(crate::perf::L_CONNECTIONS, 1);
                        match r {
                            Ok(()) => tracing::debug!(%peer, "connection closed"),
                            Err(e) => tracing::warn!(%peer, error = %e, "connection ended"),
                        }
                        drop(permit);
                    });
                }
            }
        }
        let _ = stop_tx.send(true);
        drop(listener);
        let drained = tokio::time::timeout(shutdown_grace, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_ms = shutdown_grace.as_millis() as u64,
                "connections still busy at shutdown; closing them"
            );
            conns.abort_all();
        }
        Ok(())
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> io::Result<(Conn, String)> {
    match l {
        Listener::Tcp(l) => {
            let (s, a) = l.accept().await?;
            s.set_nodelay(true)?;
            Ok((Conn::Tcp(s), a.to_string()))
        }
        Listener::Unix(l, p) => {
            let (s, _) = l.accept().await?;
            Ok((Conn::Unix(s), p.display().to_string()))
        }
    }
}

/// One connection: handshake (bounded in time), then transmission.
pub async fn serve<S: NbdStream, B: BlockBackend>(
    mut s: S,
    backend: &B,
    export: &ExportInfo,
    settings: &ServerSettings,
    perf: &PerfCounters,
    stop: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let t = Duration::from_millis(settings.handshake_timeout_ms);
    let session = match tokio::time::timeout(t, negotiate::negotiate(&mut s, export)).await {
        Err(_) => return Err(ConnError::HandshakeTimeout(settings.handshake_timeout_ms)),
        Ok(r) => r?,
    };
    let Some(session) = session else {
        return Ok(());
    };
    tracing::debug!(
        structured = session.structured_replies,
        flags = session.flags,
        "transmission phase"
    );
    transmit::transmit(&s, backend, &session, settings, perf, stop).await
}

/// Parses `--socket`/`--bind` style addresses.
pub fn listen_addr(socket: Option<&Path>, bind: Option<&str>) -> Result<ListenAddr, String> {
    match (socket, bind) {
        (Some(p), None) => Ok(ListenAddr::Unix(p.to_path_buf())),
        (None, Some(b)) => b
            .parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|e| format!("--bind {b:?}: {e} (expected 127.0.0.1:PORT)")),
        _ => Err("give exactly one of --socket PATH or --bind 127.0.0.1:PORT".into()),
    }
}
