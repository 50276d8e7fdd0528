//! Variant (a), the candidate design for an OSD shard: a current-thread
//! tokio runtime (epoll for the sockets) plus the shard's own io-uring 0.7
//! ring for disk writes. The ring signals completions on an eventfd that
//! the runtime watches through `AsyncFd`, so the one thread sleeps in
//! epoll_wait for both and no thread relays completions.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::TcpListener as StdListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use io_uring::{opcode, types, IoUring};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;

use crate::common::{
    open_direct, request_slot, thread_usage, AlignedBuf, BufPool, DiskTarget, Offsets, Outbox,
    ServeStats, MAX_IN_FLIGHT, REQUEST_BYTES,
};

pub fn serve(listener: StdListener, disk: Option<DiskTarget>) -> io::Result<ServeStats> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let (sock, _) = listener.accept().await?;
        sock.set_nodelay(true)?;
        let start = thread_usage();
        let (rd, wr) = sock.into_split();
        let outbox = Rc::new(Outbox::new());
        let writer = tokio::task::spawn_local(write_replies(wr, outbox.clone()));
        let requests = match disk {
            None => serve_memory(rd, &outbox).await?,
            Some(d) => serve_disk(rd, &outbox, &d).await?,
        };
        outbox.close();
        writer.await.map_err(io::Error::other)??;
        Ok(ServeStats {
            requests,
            thread: thread_usage().minus(&start),
        })
    })
}

async fn write_replies(mut wr: OwnedWriteHalf, outbox: Rc<Outbox>) -> io::Result<()> {
    let mut batch = Vec::with_capacity(MAX_IN_FLIGHT * crate::common::REPLY_BYTES);
    loop {
        outbox.wake.notified().await;
        if outbox.take(&mut batch) {
            return Ok(());
        }
        wr.write_all(&batch).await?;
        batch.clear();
    }
}

/// Reads one request into `buf`; false at the end of the stream.
async fn read_request(rd: &mut OwnedReadHalf, buf: &mut AlignedBuf) -> io::Result<bool> {
    match rd.read_exact(buf.full_mut()).await {
        Ok(_) => {
            buf.len = REQUEST_BYTES;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

async fn serve_memory(mut rd: OwnedReadHalf, outbox: &Outbox) -> io::Result<u64> {
    let mut buf = AlignedBuf::new();
    let mut n = 0;
    while read_request(&mut rd, &mut buf).await? {
        outbox.push_reply(request_slot(buf.as_slice()));
        n += 1;
    }
    Ok(n)
}

/// The shard's ring: buffers of in-flight writes are parked in `in_flight`
/// under the index carried as user_data, so the kernel owns them until
/// their completion is reaped.
struct Ring {
    ring: RefCell<IoUring>,
    in_flight: RefCell<Vec<Option<AlignedBuf>>>,
    free_slots: RefCell<Vec<usize>>,
    completions: AsyncFd<OwnedFd>,
    failed: Cell<Option<i32>>,
}

async fn serve_disk(mut rd: OwnedReadHalf, outbox: &Rc<Outbox>, d: &DiskTarget) -> io::Result<u64> {
    let file = open_direct(&d.path, false)?;
    let ring = IoUring::new(MAX_IN_FLIGHT as u32 * 2)?;
    // SAFETY: eventfd returns a new descriptor or -1 (checked).
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just created and own.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    ring.submitter().register_eventfd(efd.as_raw_fd())?;
    // SAFETY: the OwnedFd stays open, and the same descriptor, for as long
    // as the AsyncFd owns it.
    let completions = unsafe { AsyncFd::register_with_interest(efd, Interest::READABLE) }?;
    let ring = Rc::new(Ring {
        ring: RefCell::new(ring),
        in_flight: RefCell::new((0..MAX_IN_FLIGHT).map(|_| None).collect()),
        free_slots: RefCell::new((0..MAX_IN_FLIGHT).collect()),
        completions,
        failed: Cell::new(None),
    });
    let pool = Rc::new(BufPool::new());
    let reaper = tokio::task::spawn_local(reap(ring.clone(), pool.clone(), outbox.clone()));
    let mut offsets = Offsets::new(d.blocks);
    let mut n = 0;
    loop {
        let mut buf = pool.take().await;
        if !read_request(&mut rd, &mut buf).await? {
            pool.put(buf);
            break;
        }
        let Some(slot) = ring.free_slots.borrow_mut().pop() else {
            return Err(io::Error::other("more requests in flight than slots"));
        };
        let sqe = opcode::Write::new(
            types::Fd(file.as_raw_fd()),
            buf.as_ptr(),
            REQUEST_BYTES as u32,
        )
        .offset(offsets.next_offset())
        .rw_flags(libc::RWF_DSYNC)
        .build()
        .user_data(slot as u64);
        ring.in_flight.borrow_mut()[slot] = Some(buf);
        let mut r = ring.ring.borrow_mut();
        // SAFETY: the buffer stays parked in `in_flight[slot]` (heap memory
        // that does not move) until its completion is reaped; the file
        // outlives the ring's use of it (drained below).
        unsafe { r.submission().push(&sqe) }.map_err(io::Error::other)?;
        // One io_uring_enter per request, as the store does today.
        r.submit()?;
        n += 1;
    }
    pool.drained().await;
    reaper.abort();
    match ring.failed.get() {
        Some(errno) => Err(io::Error::from_raw_os_error(errno)),
        None => Ok(n),
    }
}

/// Sleeps on the eventfd (in the runtime's epoll), then reaps every
/// completion: the buffer goes back to the pool, the reply to the outbox.
async fn reap(ring: Rc<Ring>, pool: Rc<BufPool>, outbox: Rc<Outbox>) -> io::Result<()> {
    let mut count = [0u8; 8];
    loop {
        let mut ready = ring.completions.readable().await?;
        // Drain the eventfd before reaping: a completion posted after the
        // drain raises it again, so none is missed.
        // SAFETY: reading 8 bytes into an 8-byte buffer.
        while unsafe { libc::read(ring.completions.as_raw_fd(), count.as_mut_ptr().cast(), 8) } == 8
        {
        }
        ready.clear_ready();
        let mut r = ring.ring.borrow_mut();
        for cqe in r.completion() {
            let slot = cqe.user_data() as usize;
            let res = cqe.result();
            if res != REQUEST_BYTES as i32 {
                ring.failed
                    .set(Some(if res < 0 { -res } else { libc::EIO }));
            }
            let Some(buf) = ring.in_flight.borrow_mut()[slot].take() else {
                continue;
            };
            outbox.push_reply(request_slot(buf.as_slice()));
            ring.free_slots.borrow_mut().push(slot);
            pool.put(buf);
        }
    }
}
