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

use bytes::{BufMut, Bytes, BytesMut};
use kalmar_common::encoding::{DecodeError, Decoder};
use kalmar_msgr::Message;

/// Collects the data segments while a header is encoded.
#[derive(Default)]
pub struct SegmentWriter {
    segments: Vec<Bytes>,
    total_bytes: usize,
}

impl SegmentWriter {
    pub fn new() -> Self {
        SegmentWriter::default()
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

    /// Builds the message: one copy of header and segments into the frame
    /// payload (the messenger sends a payload as one buffer).
    pub fn finish(self, msg_type: u16, header: &[u8]) -> Message {
        let mut buf = BytesMut::with_capacity(4 + header.len() + self.total_bytes);
        buf.put_u32_le(header.len() as u32);
        buf.put_slice(header);
        for s in &self.segments {
            buf.put_slice(s);
        }
        Message::new(msg_type, buf.freeze())
    }
}

/// Hands out the data segments of a received message, in order.
pub struct SegmentReader {
    data: Bytes,
    pos: usize,
}

impl SegmentReader {
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
    Ok((header, SegmentReader { data, pos: 0 }))
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
    let mut header = Vec::with_capacity(128);
    let mut segs = SegmentWriter::new();
    value.encode_seg(&mut header, &mut segs);
    segs.finish(msg_type, &header)
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
    from_payload(&msg.payload).map_err(|source| crate::ProtoError::Decode { what: name, source })
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
    fn roundtrip_and_bounds() {
        let v = Two {
            a: 7,
            x: Bytes::from_static(b"hello"),
            y: Bytes::new(),
        };
        let m = to_message(200, &v);
        let back: Two = from_payload(&m.payload).expect("decodes");
        assert_eq!((back.a, &back.x[..], back.y.len()), (7, &b"hello"[..], 0));
        // Extra data bytes are refused, as are short ones.
        let mut longer = m.payload.to_vec();
        longer.push(1);
        assert!(from_payload::<Two>(&Bytes::from(longer)).is_err());
        let shorter = m.payload.slice(..m.payload.len() - 1);
        assert!(from_payload::<Two>(&shorter).is_err());
        assert!(from_payload::<Two>(&Bytes::from_static(&[255, 255, 255, 255])).is_err());
    }
}
