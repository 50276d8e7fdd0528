//! Transmission-phase replies: simple replies, and structured reply chunks
//! when the client negotiated them. Only headers are built here; read data
//! follows a header as its own buffer, so it is never copied.

use bytes::BufMut;

use super::consts::*;

/// Header of a successful read reply; `data_len` bytes of data follow.
/// Structured: one `OFFSET_DATA` chunk marked done. Simple: the plain
/// reply header.
pub fn read_ok_header(
    structured: bool,
    handle: u64,
    offset: u64,
    data_len: u32,
    out: &mut impl BufMut,
) {
    if structured {
        chunk_header(
            REPLY_FLAG_DONE,
            REPLY_TYPE_OFFSET_DATA,
            handle,
            8 + data_len,
            out,
        );
        out.put_slice(&offset.to_be_bytes());
    } else {
        simple(0, handle, out);
    }
}

/// A successful reply without data (simple replies are allowed for it
/// even when structured replies were negotiated).
pub fn ok(handle: u64, out: &mut impl BufMut) {
    simple(0, handle, out);
}

/// An error reply. With structured replies the message goes along (up to
/// the spec's string limit), so the client can show it.
pub fn error(structured: bool, handle: u64, errno: Errno, message: &str, out: &mut impl BufMut) {
    if !structured {
        simple(errno.code(), handle, out);
        return;
    }
    let msg = truncate_utf8(message, MAX_STRING_BYTES);
    chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        handle,
        6 + msg.len() as u32,
        out,
    );
    out.put_slice(&errno.code().to_be_bytes());
    out.put_slice(&(msg.len() as u16).to_be_bytes());
    out.put_slice(msg.as_bytes());
}

fn simple(error: u32, handle: u64, out: &mut impl BufMut) {
    out.put_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out.put_slice(&error.to_be_bytes());
    out.put_slice(&handle.to_be_bytes());
}

fn chunk_header(flags: u16, kind: u16, handle: u64, len: u32, out: &mut impl BufMut) {
    out.put_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out.put_slice(&flags.to_be_bytes());
    out.put_slice(&kind.to_be_bytes());
    out.put_slice(&handle.to_be_bytes());
    out.put_slice(&len.to_be_bytes());
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A reply as a client decodes it (tests and the benchmark client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodedReply {
    Simple {
        error: u32,
        handle: u64,
    },
    Chunk {
        flags: u16,
        kind: u16,
        handle: u64,
        payload_len: u32,
    },
}

/// Decodes a reply header from the front of `b`: the header and its size,
/// or `None` when `b` is too short or starts with an unknown magic.
pub fn decode_header(b: &[u8]) -> Option<(DecodedReply, usize)> {
    let magic = u32::from_be_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]);
    match magic {
        SIMPLE_REPLY_MAGIC if b.len() >= SIMPLE_REPLY_BYTES => Some((
            DecodedReply::Simple {
                error: u32::from_be_bytes(b[4..8].try_into().ok()?),
                handle: u64::from_be_bytes(b[8..16].try_into().ok()?),
            },
            SIMPLE_REPLY_BYTES,
        )),
        STRUCTURED_REPLY_MAGIC if b.len() >= CHUNK_HEADER_BYTES => Some((
            DecodedReply::Chunk {
                flags: u16::from_be_bytes(b[4..6].try_into().ok()?),
                kind: u16::from_be_bytes(b[6..8].try_into().ok()?),
                handle: u64::from_be_bytes(b[8..16].try_into().ok()?),
                payload_len: u32::from_be_bytes(b[16..20].try_into().ok()?),
            },
            CHUNK_HEADER_BYTES,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_and_structured_headers_round_trip() {
        let mut out = Vec::new();
        read_ok_header(false, 7, 4096, 512, &mut out);
        assert_eq!(
            decode_header(&out),
            Some((
                DecodedReply::Simple {
                    error: 0,
                    handle: 7
                },
                16
            ))
        );
        out.clear();
        read_ok_header(true, 9, 4096, 512, &mut out);
        let (h, n) = decode_header(&out).expect("chunk");
        assert_eq!(
            h,
            DecodedReply::Chunk {
                flags: REPLY_FLAG_DONE,
                kind: REPLY_TYPE_OFFSET_DATA,
                handle: 9,
                payload_len: 520
            }
        );
        assert_eq!(&out[n..], &4096u64.to_be_bytes());
    }

    #[test]
    fn structured_error_carries_message_and_errno() {
        let mut out = Vec::new();
        error(true, 3, Errno::NoSpc, "beyond the end", &mut out);
        let (h, n) = decode_header(&out).expect("chunk");
        assert_eq!(
            h,
            DecodedReply::Chunk {
                flags: REPLY_FLAG_DONE,
                kind: REPLY_TYPE_ERROR,
                handle: 3,
                payload_len: 6 + 14
            }
        );
        assert_eq!(&out[n..n + 4], &28u32.to_be_bytes());
        assert_eq!(&out[n + 4..n + 6], &14u16.to_be_bytes());
        assert_eq!(&out[n + 6..], b"beyond the end");
        out.clear();
        error(false, 3, Errno::Inval, "ignored", &mut out);
        assert_eq!(
            decode_header(&out),
            Some((
                DecodedReply::Simple {
                    error: 22,
                    handle: 3
                },
                16
            ))
        );
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let long = "é".repeat(3000);
        let mut out = Vec::new();
        error(true, 1, Errno::Io, &long, &mut out);
        let len = u16::from_be_bytes([out[24], out[25]]) as usize;
        assert!(len <= MAX_STRING_BYTES);
        assert!(std::str::from_utf8(&out[26..26 + len]).is_ok());
    }
}
