//! A simulated network: hosts with addresses, listeners and connections
//! in memory, on tokio's clock, with the faults a test schedules from a
//! seed — connections cut (reset), hosts partitioned from each other (a
//! partition holds bytes back, in both directions, until it heals, as
//! TCP would keep retransmitting; connects across it wait), and a
//! latency drawn per write within a range.
//!
//! Sessions run over it unchanged ([`crate::Transport::Sim`] in their
//! [`crate::MsgrConfig`]). Under a current-thread runtime with paused time
//! a run is a function of its seed: every random choice (latencies, the
//! link a random cut picks, session ids) comes from the network's seeded
//! generator, the listener and link tables iterate in a fixed order, and
//! keepalive timeouts and reconnect backoffs pass in virtual time.
//!
//! Each direction of a connection is a pipe of chunks, each readable from
//! the time its latency puts on it, bounded by [`PIPE_CAPACITY_BYTES`]
//! (the send buffer: a writer waits while it is full).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, Notify};
use tokio::time::{Instant, Sleep};

/// Bytes one direction of a connection holds before its writer waits.
pub const PIPE_CAPACITY_BYTES: usize = 256 << 10;

/// First port handed out for port-0 binds and outgoing connections.
const EPHEMERAL_PORT_BASE: u16 = 40_000;

/// A connection as it arrives at a listener: its halves and the peer.
type Arrival = (SimRead, SimWrite, SocketAddr);

/// Counters a test can check to see that its faults happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimNetStats {
    /// Connections established.
    pub connects: u64,
    /// Connects refused (nobody listening).
    pub refused: u64,
    /// Links reset by a cut.
    pub cuts: u64,
    /// Payload bytes written into the network.
    pub bytes: u64,
}

/// See the module documentation.
pub struct SimNet {
    state: Mutex<NetState>,
    /// Woken when a partition heals (connects waiting across it retry).
    healed: Notify,
}

struct NetState {
    rng: ChaCha8Rng,
    listeners: BTreeMap<SocketAddr, mpsc::UnboundedSender<Arrival>>,
    next_port: BTreeMap<IpAddr, u16>,
    hosts: BTreeSet<IpAddr>,
    /// Incarnation of each host: bumped when its process dies
    /// ([`SimNet::kill_host`]); handles of an older one are dead.
    generation: BTreeMap<IpAddr, u64>,
    /// Pairs of hosts that cannot reach each other, smaller address first.
    blocked: BTreeSet<(IpAddr, IpAddr)>,
    /// Every link made, in creation order (dead ones pruned on the way).
    links: Vec<Weak<Link>>,
    latency: (Duration, Duration),
    stats: SimNetStats,
}

fn pair(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl NetState {
    fn is_blocked(&self, a: IpAddr, b: IpAddr) -> bool {
        a != b && self.blocked.contains(&pair(a, b))
    }

    fn port(&mut self, ip: IpAddr) -> u16 {
        let p = self.next_port.entry(ip).or_insert(EPHEMERAL_PORT_BASE);
        let port = *p;
        *p = p.wrapping_add(1).max(EPHEMERAL_PORT_BASE);
        port
    }

    fn sample_latency(&mut self) -> Duration {
        let (lo, hi) = self.latency;
        if hi <= lo {
            return lo;
        }
        lo + Duration::from_nanos(self.rng.random_range(0..(hi - lo).as_nanos() as u64))
    }

    fn live_links(&mut self) -> Vec<Arc<Link>> {
        self.links.retain(|l| l.strong_count() > 0);
        self.links.iter().filter_map(Weak::upgrade).collect()
    }
}

impl SimNet {
    /// A network whose random choices all come from `seed`; no latency
    /// until [`SimNet::set_latency`].
    pub fn new(seed: u64) -> Arc<SimNet> {
        Arc::new(SimNet {
            state: Mutex::new(NetState {
                rng: ChaCha8Rng::seed_from_u64(seed),
                listeners: BTreeMap::new(),
                next_port: BTreeMap::new(),
                hosts: BTreeSet::new(),
                generation: BTreeMap::new(),
                blocked: BTreeSet::new(),
                links: Vec::new(),
                latency: (Duration::ZERO, Duration::ZERO),
                stats: SimNetStats::default(),
            }),
            healed: Notify::new(),
        })
    }

    /// A host with address `ip` (bind and connect from it).
    pub fn host(self: &Arc<Self>, ip: IpAddr) -> SimHost {
        let mut st = self.state.lock();
        st.hosts.insert(ip);
        let generation = *st.generation.entry(ip).or_insert(0);
        SimHost {
            net: self.clone(),
            ip,
            generation,
        }
    }

    /// The process on `ip` died: its connections reset, its listeners
    /// close, and every handle of it taken before fails from now on (what
    /// its leftover tasks do cannot reach the network). [`SimNet::host`]
    /// gives the next incarnation.
    pub fn kill_host(&self, ip: IpAddr) {
        {
            let mut st = self.state.lock();
            *st.generation.entry(ip).or_insert(0) += 1;
            st.listeners.retain(|a, _| a.ip() != ip);
        }
        self.cut_host(ip);
    }

    fn alive(&self, ip: IpAddr, generation: u64) -> bool {
        self.state.lock().generation.get(&ip).copied().unwrap_or(0) == generation
    }

    /// Every write takes between `min` and `max` to reach the reader
    /// (order within a connection is kept).
    pub fn set_latency(&self, min: Duration, max: Duration) {
        self.state.lock().latency = (min, max.max(min));
    }

    /// Hosts in `a` and hosts in `b` can no longer reach each other.
    pub fn partition(&self, a: &[IpAddr], b: &[IpAddr]) {
        let mut st = self.state.lock();
        for &x in a {
            for &y in b {
                if x != y {
                    st.blocked.insert(pair(x, y));
                }
            }
        }
    }

    /// `ip` can reach no other host.
    pub fn isolate(&self, ip: IpAddr) {
        let others: Vec<IpAddr> = self.state.lock().hosts.iter().copied().collect();
        self.partition(&[ip], &others);
    }

    /// Every partition ends; held bytes flow and waiting connects go on.
    pub fn heal(&self) {
        let links = {
            let mut st = self.state.lock();
            st.blocked.clear();
            st.live_links()
        };
        for l in links {
            l.wake_all();
        }
        self.healed.notify_waiters();
    }

    /// Resets every connection of host `ip`; returns how many.
    pub fn cut_host(&self, ip: IpAddr) -> usize {
        // Pipes are locked after the network, never inside it (a write
        // holds its pipe, then the network).
        let links: Vec<Arc<Link>> = self.state.lock().live_links();
        let cut: Vec<_> = links
            .into_iter()
            .filter(|l| l.ends.iter().any(|e| e.ip() == ip) && !l.is_reset())
            .collect();
        for l in &cut {
            l.reset();
        }
        self.state.lock().stats.cuts += cut.len() as u64;
        cut.len()
    }

    /// Resets one live connection chosen by the seed; `false` if none.
    pub fn cut_random(&self) -> bool {
        let links = self.state.lock().live_links();
        let live: Vec<_> = links.into_iter().filter(|l| !l.is_reset()).collect();
        if live.is_empty() {
            return false;
        }
        let i = {
            let mut st = self.state.lock();
            st.stats.cuts += 1;
            st.rng.random_range(0..live.len())
        };
        live[i].reset();
        true
    }

    /// A number from the network's generator (for choices a test makes).
    pub fn random_u64(&self) -> u64 {
        self.state.lock().rng.random()
    }

    pub fn stats(&self) -> SimNetStats {
        self.state.lock().stats
    }

    fn is_blocked(&self, a: IpAddr, b: IpAddr) -> bool {
        self.state.lock().is_blocked(a, b)
    }
}

/// One host of a [`SimNet`]: what [`crate::Transport::Sim`] carries.
#[derive(Clone)]
pub struct SimHost {
    net: Arc<SimNet>,
    ip: IpAddr,
    generation: u64,
}

impl std::fmt::Debug for SimHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimHost({})", self.ip)
    }
}

impl SimHost {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub fn net(&self) -> &Arc<SimNet> {
        &self.net
    }

    /// This host as a messenger transport.
    pub fn transport(&self) -> crate::Transport {
        crate::Transport::Sim(self.clone())
    }

    pub(crate) fn random_u64(&self) -> u64 {
        self.net.random_u64()
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.net.alive(self.ip, self.generation) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("host {} was killed", self.ip),
            ))
        }
    }

    /// Listens on `addr` (port 0: the next free port of this host).
    pub(crate) fn bind(&self, addr: SocketAddr) -> io::Result<SimListener> {
        self.check_alive()?;
        if addr.ip() != self.ip && !addr.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{} is not an address of host {}", addr.ip(), self.ip),
            ));
        }
        let mut st = self.net.state.lock();
        let port = if addr.port() == 0 {
            st.port(self.ip)
        } else {
            addr.port()
        };
        let addr = SocketAddr::new(self.ip, port);
        if st.listeners.get(&addr).is_some_and(|tx| !tx.is_closed()) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is in use"),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        st.listeners.insert(addr, tx);
        Ok(SimListener {
            net: self.net.clone(),
            addr,
            rx,
        })
    }

    /// Connects to `to`: refused at once if nobody listens there, held
    /// while a partition separates the hosts (the caller's connect
    /// timeout bounds it), established after one latency otherwise.
    pub(crate) async fn connect(&self, to: SocketAddr) -> io::Result<(SimRead, SimWrite)> {
        loop {
            self.check_alive()?;
            let healed = self.net.healed.notified();
            tokio::pin!(healed);
            healed.as_mut().enable();
            let delay = {
                let mut st = self.net.state.lock();
                if st.is_blocked(self.ip, to.ip()) {
                    None
                } else {
                    Some(st.sample_latency())
                }
            };
            let Some(delay) = delay else {
                healed.await;
                continue;
            };
            tokio::time::sleep(delay).await;
            self.check_alive()?;
            let mut st = self.net.state.lock();
            if st.is_blocked(self.ip, to.ip()) {
                continue;
            }
            let Some(tx) = st.listeners.get(&to).cloned() else {
                st.stats.refused += 1;
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("nobody listens on {to}"),
                ));
            };
            let local = SocketAddr::new(self.ip, st.port(self.ip));
            let link = Arc::new(Link::new([local, to]));
            st.links.push(Arc::downgrade(&link));
            let (client, server) = (ends(&self.net, &link, 0), ends(&self.net, &link, 1));
            if tx.send((server.0, server.1, local)).is_err() {
                st.stats.refused += 1;
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("{to} stopped listening"),
                ));
            }
            st.stats.connects += 1;
            return Ok(client);
        }
    }
}

/// A listening address on a [`SimNet`]; dropping it stops accepting.
pub(crate) struct SimListener {
    net: Arc<SimNet>,
    addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Arrival>,
}

impl SimListener {
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) async fn accept(&mut self) -> io::Result<Arrival> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the listener was closed"))
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        self.rx.close();
        let mut st = self.net.state.lock();
        if st
            .listeners
            .get(&self.addr)
            .is_some_and(|tx| tx.is_closed())
        {
            st.listeners.remove(&self.addr);
        }
    }
}

/// One connection: `pipes[i]` carries bytes from `ends[i]` to the other.
struct Link {
    ends: [SocketAddr; 2],
    pipes: [Mutex<Pipe>; 2],
}

#[derive(Default)]
struct Pipe {
    chunks: VecDeque<(Instant, Bytes)>,
    buffered: usize,
    /// When the newest chunk becomes readable (chunks stay in order).
    last_ready: Option<Instant>,
    /// The writer shut down or dropped its half: end of stream after the
    /// buffered bytes.
    eof: bool,
    /// The reader dropped its half: writes fail.
    reader_gone: bool,
    /// The link was cut: both sides fail.
    reset: bool,
    rd_waker: Option<Waker>,
    wr_waker: Option<Waker>,
}

fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(w) = slot.take() {
        w.wake();
    }
}

impl Link {
    fn new(ends: [SocketAddr; 2]) -> Link {
        Link {
            ends,
            pipes: [Mutex::new(Pipe::default()), Mutex::new(Pipe::default())],
        }
    }

    fn is_reset(&self) -> bool {
        self.pipes[0].lock().reset
    }

    fn reset(&self) {
        for p in &self.pipes {
            let mut p = p.lock();
            p.reset = true;
            wake(&mut p.rd_waker);
            wake(&mut p.wr_waker);
        }
    }

    fn wake_all(&self) {
        for p in &self.pipes {
            let mut p = p.lock();
            wake(&mut p.rd_waker);
            wake(&mut p.wr_waker);
        }
    }

    fn blocked(&self, net: &SimNet) -> bool {
        net.is_blocked(self.ends[0].ip(), self.ends[1].ip())
    }
}

fn ends(net: &Arc<SimNet>, link: &Arc<Link>, side: usize) -> (SimRead, SimWrite) {
    (
        SimRead {
            net: net.clone(),
            link: link.clone(),
            side,
            timer: None,
        },
        SimWrite {
            net: net.clone(),
            link: link.clone(),
            side,
        },
    )
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection reset (cut)")
}

/// The reading half of a simulated connection.
pub struct SimRead {
    net: Arc<SimNet>,
    link: Arc<Link>,
    side: usize,
    /// Waits for the head chunk's latency to pass.
    timer: Option<Pin<Box<Sleep>>>,
}

impl SimRead {
    fn pipe(&self) -> &Mutex<Pipe> {
        &self.link.pipes[1 - self.side]
    }
}

impl AsyncRead for SimRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let blocked = this.link.blocked(&this.net);
        let mut p = this.link.pipes[1 - this.side].lock();
        if p.reset {
            return Poll::Ready(Err(reset_error()));
        }
        if blocked {
            park(&mut p.rd_waker, cx);
            return Poll::Pending;
        }
        let mut now = Instant::now();
        let mut read = 0;
        while buf.remaining() > 0 {
            let Some((ready, chunk)) = p.chunks.front_mut() else {
                break;
            };
            if *ready > now {
                if read > 0 {
                    break;
                }
                let at = *ready;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                timer.as_mut().reset(at);
                if timer.as_mut().poll(cx).is_pending() {
                    park(&mut p.rd_waker, cx);
                    return Poll::Pending;
                }
                // The clock has reached it.
                now = at;
            }
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.advance(n);
            if chunk.is_empty() {
                p.chunks.pop_front();
            }
            p.buffered -= n;
            read += n;
        }
        if read > 0 {
            wake(&mut p.wr_waker);
            return Poll::Ready(Ok(()));
        }
        if p.eof {
            return Poll::Ready(Ok(()));
        }
        park(&mut p.rd_waker, cx);
        Poll::Pending
    }
}

impl Drop for SimRead {
    fn drop(&mut self) {
        let mut p = self.pipe().lock();
        p.reader_gone = true;
        p.chunks.clear();
        p.buffered = 0;
        wake(&mut p.wr_waker);
    }
}

/// The writing half of a simulated connection.
pub struct SimWrite {
    net: Arc<SimNet>,
    link: Arc<Link>,
    side: usize,
}

impl SimWrite {
    fn write(&mut self, cx: &Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let mut p = self.link.pipes[self.side].lock();
        if p.reset {
            return Poll::Ready(Err(reset_error()));
        }
        if p.reader_gone {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the peer closed the connection",
            )));
        }
        if p.eof {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let room = PIPE_CAPACITY_BYTES.saturating_sub(p.buffered);
        if room == 0 {
            park(&mut p.wr_waker, cx);
            return Poll::Pending;
        }
        let mut chunk = BytesMut::with_capacity(total.min(room));
        for b in bufs {
            let take = b.len().min(room - chunk.len());
            chunk.extend_from_slice(&b[..take]);
            if chunk.len() == room {
                break;
            }
        }
        let n = chunk.len();
        let delay = {
            let mut st = self.net.state.lock();
            st.stats.bytes += n as u64;
            st.sample_latency()
        };
        let ready = (Instant::now() + delay).max(p.last_ready.unwrap_or_else(Instant::now));
        p.last_ready = Some(ready);
        p.chunks.push_back((ready, chunk.freeze()));
        p.buffered += n;
        wake(&mut p.rd_waker);
        Poll::Ready(Ok(n))
    }

    fn close(&self) {
        let mut p = self.link.pipes[self.side].lock();
        p.eof = true;
        wake(&mut p.rd_waker);
    }
}

impl AsyncWrite for SimWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimWrite {
    fn drop(&mut self) {
        self.close();
    }
}
