//! Variant (c): tokio-uring 0.5 (io-uring 0.6 underneath): a current-thread
//! tokio runtime whose sockets and files go through an io_uring driven
//! from the runtime's epoll. Same shape as the compio variant: a reading
//! loop and one spawned task per disk write.

use std::io;
use std::net::TcpListener as StdListener;
use std::rc::Rc;

use tokio_uring::buf::{BoundedBuf, IoBuf, IoBufMut};
use tokio_uring::fs::File;
use tokio_uring::net::{TcpListener, TcpStream};

use crate::common::{
    open_direct, request_slot, thread_usage, AlignedBuf, BufPool, DiskTarget, Offsets, Outbox,
    ServeStats, MAX_IN_FLIGHT, REPLY_BYTES, REQUEST_BYTES,
};

// SAFETY: the pointer is to a heap allocation that does not move while the
// buffer is owned by an operation; `len <= capacity`.
unsafe impl IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }

    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: as above; `set_init` only grows `len` up to the capacity.
unsafe impl IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }

    unsafe fn set_init(&mut self, pos: usize) {
        self.len = self.len.max(pos.min(self.capacity()));
    }
}

pub fn serve(listener: StdListener, disk: Option<DiskTarget>) -> io::Result<ServeStats> {
    tokio_uring::start(async move {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener);
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let file = match &disk {
            None => None,
            Some(d) => Some(Rc::new(File::from_std(open_direct(&d.path, true)?))),
        };
        let start = thread_usage();
        let stream = Rc::new(stream);
        let outbox = Rc::new(Outbox::new());
        let writer = tokio_uring::spawn(write_replies(stream.clone(), outbox.clone()));
        let pool = Rc::new(BufPool::new());
        let mut offsets = Offsets::new(disk.as_ref().map_or(1, |d| d.blocks));
        let mut n = 0;
        loop {
            let buf = pool.take().await;
            let (whole, buf) = read_request(&stream, buf).await?;
            if !whole {
                pool.put(buf);
                break;
            }
            n += 1;
            let Some(file) = &file else {
                outbox.push_reply(request_slot(buf.as_slice()));
                pool.put(buf);
                continue;
            };
            let (file, pool, outbox) = (file.clone(), pool.clone(), outbox.clone());
            let offset = offsets.next_offset();
            tokio_uring::spawn(async move {
                let (res, buf) = file.write_at(buf, offset).submit().await;
                match res {
                    Ok(len) if len == buf.len => outbox.push_reply(request_slot(buf.as_slice())),
                    other => eprintln!("tokio-uring: write failed: {other:?}"),
                }
                pool.put(buf);
            });
        }
        pool.drained().await;
        outbox.close();
        writer.await.map_err(io::Error::other)??;
        Ok(ServeStats {
            requests: n,
            thread: thread_usage().minus(&start),
        })
    })
}

/// Reads one whole request (tokio-uring has no read_exact); false at the
/// end of the stream. The buffer comes back either way.
async fn read_request(stream: &TcpStream, mut buf: AlignedBuf) -> io::Result<(bool, AlignedBuf)> {
    while buf.len < REQUEST_BYTES {
        let filled = buf.len;
        let (res, slice) = stream.read(buf.slice(filled..)).await;
        buf = slice.into_inner();
        if res? == 0 {
            return Ok((false, buf));
        }
    }
    Ok((true, buf))
}

async fn write_replies(stream: Rc<TcpStream>, outbox: Rc<Outbox>) -> io::Result<()> {
    let mut batch = Vec::with_capacity(MAX_IN_FLIGHT * REPLY_BYTES);
    loop {
        outbox.wake.notified().await;
        if outbox.take(&mut batch) {
            return Ok(());
        }
        let (res, b) = stream.write_all(batch).await;
        res?;
        batch = b;
        batch.clear();
    }
}
