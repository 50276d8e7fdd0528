//! Variant (b): compio, a thread-per-core runtime that drives sockets and
//! files through one io_uring (completion-based, owned buffers). Written
//! the way compio is meant to be used: the connection reads with its
//! `read_exact`, each disk write is a spawned task awaiting `write_at`.

use std::io;
use std::mem::MaybeUninit;
use std::net::TcpListener as StdListener;
use std::rc::Rc;

use compio::buf::{BufResult, IoBuf, IoBufMut, SetLen};
use compio::fs::OpenOptions;
use compio::io::{AsyncReadExt, AsyncWriteAt, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};

use crate::common::{
    request_slot, thread_usage, AlignedBuf, BufPool, DiskTarget, Offsets, Outbox, ServeStats,
    MAX_IN_FLIGHT, REPLY_BYTES,
};

impl IoBuf for AlignedBuf {
    fn as_init(&self) -> &[u8] {
        self.as_slice()
    }
}

impl SetLen for AlignedBuf {
    unsafe fn set_len(&mut self, len: usize) {
        self.len = len.min(self.capacity());
    }
}

impl IoBufMut for AlignedBuf {
    fn as_uninit(&mut self) -> &mut [MaybeUninit<u8>] {
        let cap = self.capacity();
        // SAFETY: the allocation is `cap` bytes; MaybeUninit<u8> has u8's
        // layout, and the bytes are initialised (zeroed at allocation).
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr().cast(), cap) }
    }
}

pub fn serve(listener: StdListener, disk: Option<DiskTarget>) -> io::Result<ServeStats> {
    let rt = compio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let file = match &disk {
            None => None,
            Some(d) => Some(Rc::new(
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
                    .open(&d.path)
                    .await?,
            )),
        };
        let start = thread_usage();
        let stream = Rc::new(stream);
        let outbox = Rc::new(Outbox::new());
        let writer = compio::runtime::spawn(write_replies(stream.clone(), outbox.clone()));
        let pool = Rc::new(BufPool::new());
        let mut offsets = Offsets::new(disk.as_ref().map_or(1, |d| d.blocks));
        let mut reader: &TcpStream = &stream;
        let mut n = 0;
        loop {
            let buf = pool.take().await;
            let BufResult(res, buf) = reader.read_exact(buf).await;
            match res {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    pool.put(buf);
                    break;
                }
                Err(e) => return Err(e),
            }
            n += 1;
            let Some(file) = &file else {
                outbox.push_reply(request_slot(buf.as_slice()));
                pool.put(buf);
                continue;
            };
            let (file, pool, outbox) = (file.clone(), pool.clone(), outbox.clone());
            let offset = offsets.next_offset();
            compio::runtime::spawn(async move {
                let BufResult(res, buf) = (&*file).write_at(buf, offset).await;
                match res {
                    Ok(len) if len == buf.len => outbox.push_reply(request_slot(buf.as_slice())),
                    // No reply: the client then fails on a short stream.
                    other => eprintln!("compio: write failed: {other:?}"),
                }
                pool.put(buf);
            })
            .detach();
        }
        pool.drained().await;
        outbox.close();
        writer
            .await
            .map_err(|_| io::Error::other("reply writer task failed"))??;
        Ok(ServeStats {
            requests: n,
            thread: thread_usage().minus(&start),
        })
    })
}

async fn write_replies(stream: Rc<TcpStream>, outbox: Rc<Outbox>) -> io::Result<()> {
    let mut batch = Vec::with_capacity(MAX_IN_FLIGHT * REPLY_BYTES);
    let mut writer: &TcpStream = &stream;
    loop {
        outbox.wake.notified().await;
        if outbox.take(&mut batch) {
            return Ok(());
        }
        let BufResult(res, b) = writer.write_all(batch).await;
        res?;
        batch = b;
        batch.clear();
    }
}
