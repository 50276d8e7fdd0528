//! Messages that carry bulk data (object writes, reads, replication) as
//! raw segments after an encoded header, so the receiver slices the data
//! out of the frame without copying it:
//!
//! ```text
//! [u32 header_len][versioned header][segment 0][segment 1]...
//! ```
//!
//! The header records each segment's length where the segment belongs;
//! decoding takes segments in the order the encoder put them.
//!
//! Nothing is copied to send one: the length and the header are encoded
//! into one buffer (the first chunk of the message), and each segment is
//! a chunk of its own, the caller's `Bytes` as they are
//! ([`kalmar_msgr::Message::head_prefixed`]; the messenger writes the
//! chunks back to back, and a receiver of a large one puts segment 0 on a
//! block boundary). A received message is one buffer, and segments are
//! slices of it.

use bytes::Bytes;
use kalmar_common::encoding::{DecodeError, Decoder};
use kalmar_msgr::message::INLINE_CHUNKS;
use kalmar_msgr::Message;
use smallvec::SmallVec;

/// Room for the header length in front of the header buffer.
const HEADER_LEN_BYTES: usize = 4;

/// Header bytes reserved up front: what the common messages need.
const HEADER_CAPACITY: usize = 128;

/// Collects the data segments while a header is encoded.
#[derive(Default)]
pub struct SegmentWriter {
    /// The header chunk (its first chunk is the header) takes one slot.
    segments: SmallVec<[Bytes; INLINE_CHUNKS - 1]>,
    total_bytes: usize,
}

impl SegmentWriter {
    pub fn new() -> Self {
        SegmentWriter::default()
    }

    /// A buffer to encode the header into, with room for its length in
    /// front (see [`SegmentWriter::finish`]).
    pub fn header_buf() -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_CAPACITY);
        b.extend_from_slice(&[0; HEADER_LEN_BYTES]);
        b
    }

    /// Records `data` as the next segment and writes its length into the
    /// header being built.
    pub fn put(&mut self, header: &mut Vec<u8>, data: &Bytes) {
        header.extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.total_bytes += data.len();
        if !data.is_empty() {
            self.segments.push(data.clone());
        }
    }

    /// Bytes of data collected so far.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Builds the message from `header`, a buffer from
    /// [`SegmentWriter::header_buf`] holding the encoded header after its
    /// reserved length: the length is filled in, the buffer becomes the
    /// first chunk and the segments follow as they are (no copy).
    pub fn finish(self, msg_type: u16, mut header: Vec<u8>) -> Message {
        if header.len() < HEADER_LEN_BYTES {
            // Not from `header_buf`: nothing encoded; an empty header.
            header = SegmentWriter::header_buf();
        }
        let len = (header.len() - HEADER_LEN_BYTES) as u32;
        header[..HEADER_LEN_BYTES].copy_from_slice(&len.to_le_bytes());
        Message::head_prefixed(msg_type, Bytes::from(header), self.segments)
    }
}

/// Hands out the data segments of a received message, in order.
pub struct SegmentReader {
    /// The header the decoder reads, kept to hand out parts of it
    /// without a copy ([`SegmentReader::header_part`]).
    header: Bytes,
    data: Bytes,
    pos: usize,
}

impl SegmentReader {
    /// `part` (bytes the decoder read from the header) as a `Bytes` that
    /// shares the received buffer: a small value inside the header (an
    /// xattr, an omap entry) costs no allocation or copy. Bytes from
    /// elsewhere are copied.
    pub fn header_part(&self, part: &[u8]) -> Bytes {
        let range = self.header.as_ptr_range();
        let inside = range.start <= part.as_ptr() && part.as_ptr_range().end <= range.end;
        if inside && !part.is_empty() {
            self.header.slice_ref(part)
        } else {
            Bytes::copy_from_slice(part)
        }
    }

    /// The next segment, whose length is read from the header decoder.
    pub fn take(&mut self, d: &mut Decoder<'_>) -> Result<Bytes, DecodeError> {
        let len = d.u32()? as usize;
        let end = self.pos.checked_add(len).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(DecodeError::Truncated {
                needed: (self.pos + len).saturating_sub(self.data.len()),
                context: "data segment",
            });
        };
        let out = self.data.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    /// Fails unless every data byte was claimed by a segment.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.data.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// Splits a payload into its header bytes and a reader of its segments.
pub fn split(payload: &Bytes) -> Result<(Bytes, SegmentReader), DecodeError> {
    if payload.len() < 4 {
        return Err(DecodeError::Truncated {
            needed: 4 - payload.len(),
            context: "segmented message header length",
        });
    }
    let hlen = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    if hlen > payload.len() - 4 {
        return Err(DecodeError::Truncated {
            needed: hlen - (payload.len() - 4),
            context: "segmented message header",
        });
    }
    let header = payload.slice(4..4 + hlen);
    let data = payload.slice(4 + hlen..);
    Ok((
        header.clone(),
        SegmentReader {
            header,
            data,
            pos: 0,
        },
    ))
}

/// A value encoded with data segments.
pub trait SegmentedEncode {
    fn encode_seg(&self, buf: &mut Vec<u8>, segs: &mut SegmentWriter);
}

/// A value decoded with data segments.
pub trait SegmentedDecode: Sized {
    fn decode_seg(d: &mut Decoder<'_>, segs: &mut SegmentReader) -> Result<Self, DecodeError>;
}

impl<T: SegmentedEncode> SegmentedEncode for Vec<T> {
    fn encode_seg(&self, buf: &mut Vec<u8>, segs: &mut SegmentWriter) {
        buf.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for v in self {
            v.encode_seg(buf, segs);
        }
    }
}

impl<T: SegmentedDecode> SegmentedDecode for Vec<T> {
    fn decode_seg(d: &mut Decoder<'_>, segs: &mut SegmentReader) -> Result<Self, DecodeError> {
        let n = d.len_prefix(1, "segmented vec")?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::decode_seg(d, segs)?);
        }
        Ok(v)
    }
}

/// Encodes a whole segmented message: header via `SegmentedEncode`.
pub fn to_message<T: SegmentedEncode>(msg_type: u16, value: &T) -> Message {
    let mut header = SegmentWriter::header_buf();
    let mut segs = SegmentWriter::new();
    value.encode_seg(&mut header, &mut segs);
    segs.finish(msg_type, header)
}

/// Decodes a segmented message of type `want` (`name` for errors).
pub fn decode_message<T: SegmentedDecode>(
    msg: &Message,
    want: u16,
    name: &'static str,
) -> Result<T, crate::ProtoError> {
    if msg.msg_type != want {
        return Err(crate::ProtoError::WrongType {
            expected: name,
            got: msg.msg_type,
        });
    }
    // One buffer for a received message; a local one is joined here.
    from_payload(&msg.contiguous())
        .map_err(|source| crate::ProtoError::Decode { what: name, source })
}

/// Decodes a whole segmented payload, refusing unclaimed bytes.
pub fn from_payload<T: SegmentedDecode>(payload: &Bytes) -> Result<T, DecodeError> {
    let (header, mut segs) = split(payload)?;
    let mut d = Decoder::new(&header);
    let v = T::decode_seg(&mut d, &mut segs)?;
    d.finish()?;
    segs.finish()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parts_share_the_received_buffer() {
        let mut w = SegmentWriter::default();
        let mut header = SegmentWriter::header_buf();
        kalmar_common::encoding::put_bytes(&mut header, b"an xattr value");
        w.put(&mut header, &Bytes::from_static(b"data"));
        let msg = w.finish(1, header);
        let payload = msg.contiguous().into_owned();
        let (h, segs) = split(&payload).expect("split");
        let mut d = Decoder::new(&h);
        let part = d.bytes().expect("bytes");
        let shared = segs.header_part(part);
        assert_eq!(&shared[..], b"an xattr value");
        let whole = payload.as_ptr_range();
        assert!(
            whole.contains(&shared.as_ptr()),
            "no copy: inside the payload"
        );
        // Bytes that are not the header's are copied.
        let other = b"elsewhere".to_vec();
        let copied = segs.header_part(&other);
        assert_eq!(&copied[..], b"elsewhere");
        assert!(!whole.contains(&copied.as_ptr()));
    }

    struct Two {
        a: u64,
        x: Bytes,
        y: Bytes,
    }
    impl SegmentedEncode for Two {
        fn encode_seg(&self, buf: &mut Vec<u8>, segs: &mut SegmentWriter) {
            buf.extend_from_slice(&self.a.to_le_bytes());
            segs.put(buf, &self.x);
            segs.put(buf, &self.y);
        }
    }
    impl SegmentedDecode for Two {
        fn decode_seg(d: &mut Decoder<'_>, segs: &mut SegmentReader) -> Result<Self, DecodeError> {
            Ok(Two {
                a: d.u64()?,
                x: segs.take(d)?,
                y: segs.take(d)?,
            })
        }
    }

    #[test]
    fn data_segments_are_chunks_not_copies() {
        let x = Bytes::from(vec![1u8; 4096]);
        let y = Bytes::from(vec![2u8; 100]);
        let m = to_message(
            200,
            &Two {
                a: 9,
                x: x.clone(),
                y: y.clone(),
            },
        );
        assert!(m.is_head_prefixed());
        let chunks = m.chunks();
        assert_eq!(chunks.len(), 3, "header, x, y");
        assert_eq!(chunks[1].as_ptr(), x.as_ptr(), "x is sent as it is");
        assert_eq!(chunks[2].as_ptr(), y.as_ptr(), "y is sent as it is");
        // The wire layout is unchanged: [u32 header_len][header][x][y].
        let header_len = 8 + 4 + 4;
        let mut expected = (header_len as u32).to_le_bytes().to_vec();
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(&4096u32.to_le_bytes());
        expected.extend_from_slice(&100u32.to_le_bytes());
        expected.extend_from_slice(&x);
        expected.extend_from_slice(&y);
        assert_eq!(m.to_vec(), expected);
        // Cloned for several peers: the chunks are shared.
        let copy = m.clone();
        assert_eq!(copy.chunks()[1].as_ptr(), x.as_ptr());
        let back: Two = decode_message(&copy, 200, "two").expect("decodes");
        assert_eq!((back.a, back.x, back.y), (9, x, y));
    }

    #[test]
    fn roundtrip_and_bounds() {
        let v = Two {
            a: 7,
            x: Bytes::from_static(b"hello"),
            y: Bytes::new(),
        };
        let m = to_message(200, &v);
        let back: Two = from_payload(&m.contiguous()).expect("decodes");
        assert_eq!((back.a, &back.x[..], back.y.len()), (7, &b"hello"[..], 0));
        // Extra data bytes are refused, as are short ones.
        let mut longer = m.to_vec();
        longer.push(1);
        assert!(from_payload::<Two>(&Bytes::from(longer)).is_err());
        let payload = m.contiguous().into_owned();
        let shorter = payload.slice(..payload.len() - 1);
        assert!(from_payload::<Two>(&shorter).is_err());
        assert!(from_payload::<Two>(&Bytes::from_static(&[255, 255, 255, 255])).is_err());
    }
}
