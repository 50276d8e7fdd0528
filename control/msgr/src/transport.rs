//! The byte streams sessions run over: TCP, or a simulated network
//! ([`crate::sim`]) where a seeded test drives cuts, partitions and
//! latency on tokio's clock.
//!
//! The messenger's framing, handshake and session code is written against
//! `AsyncRead`/`AsyncWrite`; this module is the only place that knows
//! which network is underneath. The halves are enums rather than boxed
//! trait objects so the TCP path costs one branch per poll and nothing
//! else.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use crate::sim::{SimHost, SimListener, SimRead, SimWrite};

/// The network an endpoint uses (a [`crate::MsgrConfig`] setting).
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// The kernel's TCP.
    #[default]
    Tcp,
    /// A host on a simulated network (tests and the simulator).
    Sim(SimHost),
}

impl Transport {
    /// A new session id: random on TCP, from the network's seed on a
    /// simulated one (so a run replays exactly).
    pub(crate) fn session_id(&self) -> u64 {
        match self {
            Transport::Tcp => rand::random::<u64>() | 1,
            Transport::Sim(h) => h.random_u64() | 1,
        }
    }
}

/// The reading half of a connection.
pub(crate) enum ReadHalf {
    Tcp(OwnedReadHalf),
    Sim(SimRead),
}

/// The writing half of a connection.
pub(crate) enum WriteHalf {
    Tcp(OwnedWriteHalf),
    Sim(SimWrite),
}

/// Opens a connection to `addr`.
pub(crate) async fn connect(
    transport: &Transport,
    addr: SocketAddr,
) -> io::Result<(ReadHalf, WriteHalf)> {
    match transport {
        Transport::Tcp => {
            let s = TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            let (rd, wr) = s.into_split();
            Ok((ReadHalf::Tcp(rd), WriteHalf::Tcp(wr)))
        }
        Transport::Sim(h) => {
            let (rd, wr) = h.connect(addr).await?;
            Ok((ReadHalf::Sim(rd), WriteHalf::Sim(wr)))
        }
    }
}

/// A bound listening address.
pub(crate) enum Acceptor {
    Tcp(TcpListener),
    Sim(SimListener),
}

impl Acceptor {
    pub(crate) async fn bind(transport: &Transport, addr: SocketAddr) -> io::Result<Acceptor> {
        match transport {
            Transport::Tcp => Ok(Acceptor::Tcp(TcpListener::bind(addr).await?)),
            Transport::Sim(h) => Ok(Acceptor::Sim(h.bind(addr)?)),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Acceptor::Tcp(l) => l.local_addr(),
            Acceptor::Sim(l) => Ok(l.local_addr()),
        }
    }

    /// The next connection and its peer's address.
    pub(crate) async fn accept(&mut self) -> io::Result<(ReadHalf, WriteHalf, SocketAddr)> {
        match self {
            Acceptor::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                let _ = s.set_nodelay(true);
                let (rd, wr) = s.into_split();
                Ok((ReadHalf::Tcp(rd), WriteHalf::Tcp(wr), addr))
            }
            Acceptor::Sim(l) => {
                let (rd, wr, addr) = l.accept().await?;
                Ok((ReadHalf::Sim(rd), WriteHalf::Sim(wr), addr))
            }
        }
    }
}

/// Moves a connection to runtime `rt`: a TCP socket leaves this runtime's
/// reactor and joins `rt`'s, so its readiness is polled on that thread;
/// a simulated one has no reactor and moves as it is.
pub(crate) fn move_to(
    rd: ReadHalf,
    wr: WriteHalf,
    rt: &Handle,
) -> Result<(ReadHalf, WriteHalf), String> {
    match (rd, wr) {
        (ReadHalf::Tcp(rd), WriteHalf::Tcp(wr)) => {
            let std = rd
                .reunite(wr)
                .map_err(|e| e.to_string())?
                .into_std()
                .map_err(|e| e.to_string())?;
            // from_std registers with the reactor of the runtime it is
            // called in.
            let _in_rt = rt.enter();
            let (rd, wr) = TcpStream::from_std(std)
                .map_err(|e| e.to_string())?
                .into_split();
            Ok((ReadHalf::Tcp(rd), WriteHalf::Tcp(wr)))
        }
        (rd @ ReadHalf::Sim(_), wr @ WriteHalf::Sim(_)) => Ok((rd, wr)),
        _ => Err("the halves of a connection are of different networks".into()),
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Sim(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Sim(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteHalf::Sim(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Sim(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Sim(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
