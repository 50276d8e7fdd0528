//! One application message: a type id and a payload made of chunks.
//!
//! A message built locally can carry its payload as several [`Bytes`]
//! chunks (typically an encoded header and the caller's data segments):
//! the writer puts them on the wire back to back with one vectored write,
//! so the data is never copied into a frame buffer, and a message cloned to
//! N peers shares its chunks (reference counts only). The bytes on the wire
//! are the concatenation of the chunks, whatever the chunking.
//!
//! A received message is always one chunk, sliced out of the receive
//! buffer without a copy, so decoders get a contiguous payload from
//! [`Message::contiguous`] for free. Only a locally built message of
//! several chunks (tests decoding what they encoded, a daemon handing a
//! message to itself) pays a copy there.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

/// Chunks a message holds without a heap allocation of its own: an encoded
/// header and two data segments (a write and its metadata) fit.
pub const INLINE_CHUNKS: usize = 3;

/// One application message: a type id (see kalmar-proto's registry) and a
/// payload of zero or more non-empty chunks.
#[derive(Clone, Default)]
pub struct Message {
    pub msg_type: u16,
    head_prefixed: bool,
    // No cached length: a message is moved several times on its way to
    // the wire, and summing at most a few lengths is cheaper than 8 more
    // bytes on every move.
    chunks: SmallVec<[Bytes; INLINE_CHUNKS]>,
}

impl Message {
    /// A message whose payload is one buffer.
    pub fn new(msg_type: u16, payload: impl Into<Bytes>) -> Self {
        Message::from_chunks(msg_type, [payload.into()])
    }

    /// A message whose payload is `chunks` back to back (empty chunks are
    /// left out). Nothing is copied.
    pub fn from_chunks(msg_type: u16, chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let mut m = Message {
            msg_type,
            ..Message::default()
        };
        for c in chunks {
            m.push(c);
        }
        m
    }

    /// A message in the head-prefixed layout: `head` is a little-endian
    /// `u32` n followed by n bytes (an encoded header), and `data` is bulk
    /// data that follows it. The frame says so, and a receiver that takes
    /// a large frame into aligned memory places the first data byte on a
    /// block boundary, so a store can write the data without copying it.
    /// A `head` that does not have this layout is sent as plain chunks.
    pub fn head_prefixed(
        msg_type: u16,
        head: Bytes,
        data: impl IntoIterator<Item = Bytes>,
    ) -> Self {
        let layout_ok = head
            .first_chunk::<4>()
            .is_some_and(|n| u32::from_le_bytes(*n) as usize == head.len() - 4);
        let mut m = Message::from_chunks(msg_type, std::iter::once(head).chain(data));
        m.head_prefixed = layout_ok;
        m
    }

    /// A message received off the wire: one buffer.
    pub(crate) fn received(msg_type: u16, payload: Bytes, head_prefixed: bool) -> Self {
        let mut m = Message::new(msg_type, payload);
        m.head_prefixed = head_prefixed;
        m
    }

    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.chunks.push(chunk);
        }
    }

    /// Payload bytes, all chunks together.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        // Empty chunks are never kept.
        self.chunks.is_empty()
    }

    /// The payload's chunks, in order (none when empty).
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Whether the payload has the head-prefixed layout (see
    /// [`Message::head_prefixed`]).
    pub fn is_head_prefixed(&self) -> bool {
        self.head_prefixed
    }

    /// The payload as one buffer: borrowed when it is a single chunk (every
    /// received message), else copied into a new buffer (a message built
    /// locally from several chunks; meant for tests and local hand-offs).
    pub fn contiguous(&self) -> Cow<'_, Bytes> {
        match self.chunks.as_slice() {
            [] => Cow::Owned(Bytes::new()),
            [one] => Cow::Borrowed(one),
            many => {
                let mut b = BytesMut::with_capacity(self.len());
                for c in many {
                    b.extend_from_slice(c);
                }
                Cow::Owned(b.freeze())
            }
        }
    }

    /// A copy of the payload.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for c in &self.chunks {
            v.extend_from_slice(c);
        }
        v
    }

    /// crc32c of the payload (all chunks in order).
    pub fn crc32c(&self) -> u32 {
        self.chunks
            .iter()
            .fold(0, |crc, c| crc32c::crc32c_append(crc, c))
    }
}

/// Equal type and payload bytes, however either is chunked (the
/// head-prefixed mark is a placement hint, not content).
impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        if self.msg_type != other.msg_type || self.len() != other.len() {
            return false;
        }
        let mut a = self.chunks.iter().map(|c| &c[..]);
        let mut b = other.chunks.iter().map(|c| &c[..]);
        let (mut x, mut y): (&[u8], &[u8]) = (&[], &[]);
        loop {
            if x.is_empty() {
                x = a.next().unwrap_or_default();
            }
            if y.is_empty() {
                y = b.next().unwrap_or_default();
            }
            if x.is_empty() || y.is_empty() {
                // Lengths are equal, so both ran out together.
                return x.is_empty() && y.is_empty();
            }
            let n = x.len().min(y.len());
            if x[..n] != y[..n] {
                return false;
            }
            x = &x[n..];
            y = &y[n..];
        }
    }
}

impl Eq for Message {}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("msg_type", &self.msg_type)
            .field("len", &self.len())
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static [u8]]) -> Message {
        Message::from_chunks(9, parts.iter().map(|p| Bytes::from_static(p)))
    }

    #[test]
    fn chunking_is_invisible_to_content() {
        let one = Message::new(9, &b"hello world"[..]);
        let three = chunked(&[b"he", b"", b"llo w", b"orld"]);
        assert_eq!(three.chunks().len(), 3, "the empty chunk is left out");
        assert_eq!(three.len(), 11);
        assert_eq!(one, three);
        assert_eq!(one.crc32c(), three.crc32c());
        assert_eq!(one.crc32c(), crc32c::crc32c(b"hello world"));
        assert_eq!(&three.contiguous()[..], b"hello world");
        assert_eq!(three.to_vec(), b"hello world");
        assert_ne!(one, chunked(&[b"hello", b" worle"]));
        assert_ne!(one, chunked(&[b"hello"]));
        let mut other_type = one.clone();
        other_type.msg_type = 8;
        assert_ne!(one, other_type);
        assert!(Message::new(1, Bytes::new()).chunks().is_empty());
        assert_eq!(Message::new(1, Bytes::new()), Message::from_chunks(1, []));
    }

    #[test]
    fn a_single_chunk_is_borrowed_not_copied() {
        let data = Bytes::from(vec![5u8; 100]);
        let m = Message::new(1, data.clone());
        match m.contiguous() {
            Cow::Borrowed(b) => assert_eq!(b.as_ptr(), data.as_ptr()),
            Cow::Owned(_) => panic!("one chunk must not be copied"),
        }
        // Clones share the chunks.
        let c = m.clone();
        assert_eq!(c.chunks()[0].as_ptr(), data.as_ptr());
    }

    #[test]
    fn head_prefixed_layout_is_checked() {
        let mut head = 3u32.to_le_bytes().to_vec();
        head.extend_from_slice(b"abc");
        let data = Bytes::from_static(b"data");
        assert!(Message::head_prefixed(1, Bytes::from(head), [data.clone()]).is_head_prefixed());
        let bad = Bytes::from_static(&[9, 0, 0, 0, 1]);
        assert!(!Message::head_prefixed(1, bad, [data.clone()]).is_head_prefixed());
        assert!(!Message::head_prefixed(1, Bytes::new(), [data]).is_head_prefixed());
    }
}
