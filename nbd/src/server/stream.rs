//! The socket operations the server needs, for TCP and unix sockets alike:
//! readiness waits plus non-blocking reads and vectored writes, so the
//! connection loop never holds a buffer borrow across an await.

use std::future::Future;
use std::io::{self, IoSlice};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

pub trait NbdStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn try_read_into(&self, buf: &mut BytesMut) -> io::Result<usize>;
    fn try_read_slice(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn try_write_iov(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

macro_rules! impl_stream {
    ($t:ty) => {
        impl NbdStream for $t {
            fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$t>::readable(self)
            }
            fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$t>::writable(self)
            }
            fn try_read_into(&self, buf: &mut BytesMut) -> io::Result<usize> {
                self.try_read_buf(buf)
            }
            fn try_read_slice(&self, buf: &mut [u8]) -> io::Result<usize> {
                self.try_read(buf)
            }
            fn try_write_iov(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.try_write_vectored(bufs)
            }
        }
    };
}

impl_stream!(TcpStream);
impl_stream!(UnixStream);
