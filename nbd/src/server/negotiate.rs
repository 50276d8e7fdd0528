//! The handshake's I/O: drives [`crate::proto::handshake`] over a socket.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::NbdStream;
use super::ConnError;
use crate::proto::consts::OPTION_HEADER_BYTES;
use crate::proto::handshake::{
    self, ExportInfo, Negotiator, OptOutcome, Session, MAX_OPTION_BYTES,
};

/// Runs the handshake. `Ok(None)`: the client aborted (NBD_OPT_ABORT) or
/// closed the connection before choosing an export.
pub(crate) async fn negotiate<S: NbdStream>(
    s: &mut S,
    export: &ExportInfo,
) -> Result<Option<Session>, ConnError> {
    s.write_all(&handshake::greeting()).await?;
    let mut flags = [0u8; 4];
    if read_or_eof(s, &mut flags).await? {
        return Ok(None);
    }
    let client = handshake::parse_client_flags(flags)?;
    let mut n = Negotiator::new(export.clone(), client);
    let mut data = Vec::new();
    let mut out = Vec::new();
    loop {
        let mut raw = [0u8; OPTION_HEADER_BYTES];
        if read_or_eof(s, &mut raw).await? {
            return Ok(None);
        }
        let h = handshake::parse_option_header(&raw)?;
        let outcome = if h.len > MAX_OPTION_BYTES {
            skip(s, u64::from(h.len)).await?;
            n.oversized(h)
        } else {
            data.resize(h.len as usize, 0);
            s.read_exact(&mut data).await?;
            n.handle(h.option, &data)
        };
        out.clear();
        match outcome {
            OptOutcome::Continue(replies) => {
                replies.iter().for_each(|r| r.encode(&mut out));
                s.write_all(&out).await?;
            }
            OptOutcome::Abort(replies) => {
                replies.iter().for_each(|r| r.encode(&mut out));
                // The client may already have gone: the ACK is a courtesy.
                let _ = s.write_all(&out).await;
                return Ok(None);
            }
            OptOutcome::Transmit { bytes, session } => {
                s.write_all(&bytes).await?;
                return Ok(Some(session));
            }
            OptOutcome::Disconnect(e) => return Err(e.into()),
        }
    }
}

/// Fills `buf`; true if the peer closed before sending anything.
async fn read_or_eof<S: NbdStream>(s: &mut S, buf: &mut [u8]) -> Result<bool, ConnError> {
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(true);
            }
            return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        got += n;
    }
    Ok(false)
}

async fn skip<S: NbdStream>(s: &mut S, mut len: u64) -> Result<(), ConnError> {
    let mut scratch = vec![0u8; 64 * 1024];
    while len > 0 {
        let want = len.min(scratch.len() as u64) as usize;
        let n = s.read(&mut scratch[..want]).await?;
        if n == 0 {
            return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        len -= n as u64;
    }
    Ok(())
}
