//! The wire frame: a fixed 36-byte header and a payload.
//!
//! ```text
//!  0  magic        u32  "KLMR"
//!  4  kind         u8   hello / hello-reply / message / ack / keepalive / close / reject /
//!                       auth-challenge / auth-proof
//!  5  flags        u8   bit 0: head-prefixed payload (see below); others 0
//!  6  msg_type     u16  the message type id (message frames only)
//!  8  seq          u64  sender's sequence number (message frames only)
//! 16  ack          u64  highest sequence the sender has received from us
//! 24  payload_len  u32
//! 28  payload_crc  u32  crc32c of the payload
//! 32  header_crc   u32  crc32c of bytes 0..32
//! ```
//! All integers little-endian. Decoding is pure and bounded: a frame whose
//! header is corrupt, whose kind is unknown or whose length exceeds the
//! configured maximum is an error before any payload is buffered. In the
//! `secure` connection mode the header travels sealed (see
//! [`crate::onwire`]): it is opened first, then checked the same way.
//!
//! [`FLAG_HEAD_PREFIXED`] says the payload starts with a `u32` length n and
//! n bytes of encoded header, and bulk data follows: a receiver taking a
//! large frame into aligned memory uses it to put the first data byte on a
//! block boundary. It only guides placement; the payload bytes are the
//! same either way, and a receiver that ignores the flag (as every one
//! before it did: the byte was reserved and never checked) reads the same
//! message. Unknown flag bits are ignored for the same reason.

use bytes::{Buf, Bytes, BytesMut};

use crate::message::Message;
use crate::onwire::{Protect, SEALED_HEADER_BYTES};

pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"KLMR");
pub const HEADER_BYTES: usize = 36;
/// Flag bit: the payload is `[u32 n][n bytes of header][data]`.
pub const FLAG_HEAD_PREFIXED: u8 = 1;
/// Where the flags byte is in an encoded header.
pub const FLAGS_OFFSET: usize = 5;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Hello = 1,
    HelloReply = 2,
    Message = 3,
    Ack = 4,
    Keepalive = 5,
    /// The sender ends its session for good; the receiver drops its state.
    Close = 6,
    /// The handshake was refused; the payload says why (UTF-8).
    Reject = 7,
    /// Acceptor -> connector during the handshake: an encoded
    /// `kalmar_auth::proto::AuthChallenge`.
    AuthChallenge = 8,
    /// Connector -> acceptor: an encoded `kalmar_auth::proto::AuthProof`.
    AuthProof = 9,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<FrameKind> {
        Some(match v {
            1 => FrameKind::Hello,
            2 => FrameKind::HelloReply,
            3 => FrameKind::Message,
            4 => FrameKind::Ack,
            5 => FrameKind::Keepalive,
            6 => FrameKind::Close,
            7 => FrameKind::Reject,
            8 => FrameKind::AuthChallenge,
            9 => FrameKind::AuthProof,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub flags: u8,
    pub msg_type: u16,
    pub seq: u64,
    pub ack: u64,
    pub payload_len: u32,
    pub payload_crc: u32,
}

impl FrameHeader {
    /// The header for `payload`, with its crc computed.
    pub fn for_payload(
        kind: FrameKind,
        msg_type: u16,
        seq: u64,
        ack: u64,
        payload: &[u8],
    ) -> FrameHeader {
        FrameHeader {
            kind,
            flags: 0,
            msg_type,
            seq,
            ack,
            payload_len: payload.len() as u32,
            payload_crc: crc32c::crc32c(payload),
        }
    }

    /// The header of a message frame carrying `msg`, its crc computed over
    /// the chunks in order (the receiver sees one payload).
    pub fn for_message(seq: u64, ack: u64, msg: &Message) -> FrameHeader {
        let mut h = FrameHeader::for_message_uncrc(seq, ack, msg);
        h.payload_crc = msg.crc32c();
        h
    }

    /// The header of a message frame with `payload_crc` left at 0: in the
    /// signed and secure modes, where the tag covers the payload.
    pub fn for_message_uncrc(seq: u64, ack: u64, msg: &Message) -> FrameHeader {
        FrameHeader {
            kind: FrameKind::Message,
            flags: if msg.is_head_prefixed() {
                FLAG_HEAD_PREFIXED
            } else {
                0
            },
            msg_type: msg.msg_type,
            seq,
            ack,
            payload_len: msg.len() as u32,
            payload_crc: 0,
        }
    }

    /// Whether the payload has the head-prefixed layout.
    pub fn head_prefixed(&self) -> bool {
        self.flags & FLAG_HEAD_PREFIXED != 0
    }

    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut h = [0u8; HEADER_BYTES];
        h[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        h[4] = self.kind as u8;
        h[FLAGS_OFFSET] = self.flags;
        h[6..8].copy_from_slice(&self.msg_type.to_le_bytes());
        h[8..16].copy_from_slice(&self.seq.to_le_bytes());
        h[16..24].copy_from_slice(&self.ack.to_le_bytes());
        h[24..28].copy_from_slice(&self.payload_len.to_le_bytes());
        h[28..32].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..32]);
        h[32..36].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parses and checks a header (magic, header crc, kind, length bound).
    pub fn decode(
        h: &[u8; HEADER_BYTES],
        max_payload_bytes: usize,
    ) -> Result<FrameHeader, FrameError> {
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let magic = u32_at(0);
        if magic != FRAME_MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let stored = u32_at(32);
        let computed = crc32c::crc32c(&h[0..32]);
        if stored != computed {
            return Err(FrameError::HeaderCrc { stored, computed });
        }
        let kind = FrameKind::from_u8(h[4]).ok_or(FrameError::UnknownKind(h[4]))?;
        let payload_len = u32_at(24);
        if payload_len as usize > max_payload_bytes {
            return Err(FrameError::TooLarge {
                len: payload_len as usize,
                max: max_payload_bytes,
            });
        }
        Ok(FrameHeader {
            kind,
            flags: h[FLAGS_OFFSET],
            msg_type: u16::from_le_bytes([h[6], h[7]]),
            seq: u64_at(8),
            ack: u64_at(16),
            payload_len,
            payload_crc: u32_at(28),
        })
    }
}

/// One whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    pub payload: Bytes,
}

/// Why a byte stream is not a valid sequence of frames. Any of these closes
/// the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {0:#010x} (not a Kalmar peer, or the stream lost sync)")]
    BadMagic(u32),
    #[error("frame header crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc { stored: u32, computed: u32 },
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame payload of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame payload crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    PayloadCrc { stored: u32, computed: u32 },
    /// Signed or secure mode: the tag does not match (the frame was
    /// altered, replayed, reordered, or one before it went missing).
    #[error("frame failed authentication (altered, replayed, reordered or missing frame)")]
    Tag,
    /// Secure mode: the sealed header does not open (the same causes, or
    /// a peer not speaking this secure mode); nothing of it was used.
    #[error("frame header failed authentication (altered, replayed, reordered or missing frame)")]
    HeaderTag,
    /// 2^64 frames in one direction: the counter would repeat.
    #[error("frame counter exhausted")]
    CounterExhausted,
    #[error("frame protection used in the wrong mode")]
    WrongMode,
}

/// Splits frames off the front of a read buffer.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_payload_bytes: usize,
    pending: Option<FrameHeader>,
}

impl FrameDecoder {
    pub fn new(max_payload_bytes: usize) -> Self {
        FrameDecoder {
            max_payload_bytes,
            pending: None,
        }
    }

    /// The header of the frame at the front of `buf`, parsed (and split
    /// off `buf`) if that was not done yet; `None` when fewer than
    /// `rx.header_len()` bytes are buffered. In secure mode `rx` opens the
    /// sealed header first: its lengths are read (and bounded) only once
    /// it passed its tag. The caller may take the payload over with
    /// [`FrameDecoder::take_header`] instead of
    /// [`FrameDecoder::decode_protected`].
    pub fn header(
        &mut self,
        buf: &mut BytesMut,
        rx: &Protect,
    ) -> Result<Option<FrameHeader>, FrameError> {
        if self.pending.is_none() {
            let h = if rx.seals_header() {
                let Some(sealed) = buf.first_chunk::<SEALED_HEADER_BYTES>() else {
                    return Ok(None);
                };
                FrameHeader::decode(&rx.open_header(sealed)?, self.max_payload_bytes)?
            } else {
                let Some(raw) = buf.first_chunk::<HEADER_BYTES>() else {
                    return Ok(None);
                };
                FrameHeader::decode(raw, self.max_payload_bytes)?
            };
            buf.advance(rx.header_len());
            self.pending = Some(h);
        }
        Ok(self.pending)
    }

    /// Forgets the parsed header: the caller reads its payload itself.
    pub fn take_header(&mut self) -> Option<FrameHeader> {
        self.pending.take()
    }

    /// Returns the next complete frame, `None` when more bytes are needed
    /// (the caller makes room: a decoder never allocates). The payload is
    /// split off `buf` without copying. After an error the stream is
    /// unusable.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.decode_protected(buf, &mut Protect::crc())
    }

    /// Like [`FrameDecoder::decode`] for a connection whose frames `rx`
    /// protects: in signed and secure mode each payload is followed by
    /// its tag, checked (and the payload decrypted in place) before the
    /// frame is handed out; the crc is not checked then (the tag covers
    /// the payload, and the sender leaves `payload_crc` at 0).
    pub fn decode_protected(
        &mut self,
        buf: &mut BytesMut,
        rx: &mut Protect,
    ) -> Result<Option<Frame>, FrameError> {
        let Some(header) = self.header(buf, rx)? else {
            return Ok(None);
        };
        let len = header.payload_len as usize;
        let trailer = rx.trailer_len();
        if buf.len() < len + trailer {
            return Ok(None);
        }
        self.pending = None;
        if trailer == 0 {
            let payload = buf.split_to(len).freeze();
            check_payload(&header, &payload)?;
            return Ok(Some(Frame { header, payload }));
        }
        let mut body = buf.split_to(len + trailer);
        rx.open(&header.encode(), &mut body)?;
        body.truncate(len);
        Ok(Some(Frame {
            header,
            payload: body.freeze(),
        }))
    }
}

/// Checks a payload against the crc its header carries.
pub fn check_payload(header: &FrameHeader, payload: &[u8]) -> Result<(), FrameError> {
    let computed = crc32c::crc32c(payload);
    if computed != header.payload_crc {
        return Err(FrameError::PayloadCrc {
            stored: header.payload_crc,
            computed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_bytes(kind: FrameKind, ty: u16, seq: u64, ack: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = FrameHeader::for_payload(kind, ty, seq, ack, payload)
            .encode()
            .to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn roundtrip_in_pieces() {
        let mut all = frame_bytes(FrameKind::Message, 7, 1, 0, b"hello");
        all.extend(frame_bytes(FrameKind::Ack, 0, 0, 9, b""));
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in all {
            buf.extend_from_slice(&[b]);
            while let Some(f) = dec.decode(&mut buf).expect("valid") {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].header.msg_type, 7);
        assert_eq!(&got[0].payload[..], b"hello");
        assert_eq!(got[1].header.kind, FrameKind::Ack);
        assert_eq!(got[1].header.ack, 9);
    }

    #[test]
    fn rejects_oversized_before_buffering() {
        let mut b =
            BytesMut::from(&frame_bytes(FrameKind::Message, 1, 1, 0, &[0u8; 100])[..HEADER_BYTES]);
        let err = FrameDecoder::new(99).decode(&mut b).expect_err("too large");
        assert_eq!(err, FrameError::TooLarge { len: 100, max: 99 });
    }

    #[test]
    fn detects_corruption() {
        let good = frame_bytes(FrameKind::Message, 1, 1, 0, b"payload");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            let mut b = BytesMut::from(&bad[..]);
            let r = FrameDecoder::new(1 << 20).decode(&mut b);
            assert!(r.is_err(), "flip at byte {i} went unnoticed: {r:?}");
        }
    }

    #[test]
    fn message_header_covers_all_chunks() {
        let one = Message::new(5, &b"0123456789"[..]);
        let three = Message::from_chunks(5, [&b"012"[..], b"3456", b"789"].map(Bytes::from_static));
        let h1 = FrameHeader::for_message(4, 3, &one);
        let h3 = FrameHeader::for_message(4, 3, &three);
        assert_eq!(h1, h3);
        assert_eq!(h1.payload_crc, crc32c::crc32c(b"0123456789"));
        assert_eq!(h1.payload_len, 10);
        assert!(!h1.head_prefixed());
        let head = Bytes::from_static(&[2, 0, 0, 0, 7, 7]);
        let seg = Message::head_prefixed(5, head, [Bytes::from_static(b"data")]);
        let h = FrameHeader::for_message(1, 0, &seg);
        assert!(h.head_prefixed());
        let back = FrameHeader::decode(&h.encode(), 1 << 20).expect("valid");
        assert_eq!(back, h, "flags survive the wire");
    }

    /// A secure pair of ends (same key) and a sealed message frame.
    fn sealed(ty: u16, seq: u64, payload: &[u8]) -> (Protect, Vec<u8>, [u8; HEADER_BYTES]) {
        use crate::onwire::WireMode;
        let k = [1u8; 32];
        let mut tx = Protect::new(WireMode::Secure, &k);
        let h = FrameHeader {
            kind: FrameKind::Message,
            flags: 0,
            msg_type: ty,
            seq,
            ack: 0,
            payload_len: payload.len() as u32,
            payload_crc: 0,
        }
        .encode();
        let mut wire = Vec::new();
        tx.seal_into(&h, &[Bytes::copy_from_slice(payload)], &mut wire)
            .expect("seal");
        (Protect::new(WireMode::Secure, &k), wire, h)
    }

    #[test]
    fn secure_lengths_are_bounded_once_the_header_opens() {
        let (mut rx, wire, _) = sealed(1, 1, &[7u8; 100]);
        // Only the sealed header has arrived: opened, then bounded.
        let mut b = BytesMut::from(&wire[..SEALED_HEADER_BYTES]);
        let err = FrameDecoder::new(99)
            .decode_protected(&mut b, &mut rx)
            .expect_err("too large");
        assert_eq!(err, FrameError::TooLarge { len: 100, max: 99 });
    }

    proptest! {
        #[test]
        fn secure_frames_roundtrip_in_pieces_and_any_flip_fails(
            ty: u16,
            seq: u64,
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            cut: usize,
            flip in proptest::option::of((any::<usize>(), 1u8..=255)),
        ) {
            let (mut rx, mut wire, h) = sealed(ty, seq, &payload);
            prop_assert_eq!(wire.len(), SEALED_HEADER_BYTES + payload.len() + 16);
            prop_assert!(!wire.windows(HEADER_BYTES).any(|w| w == h), "header in clear");
            let flipped = flip.map(|(at, x)| {
                let at = at % wire.len();
                wire[at] ^= x;
                at
            });
            let cut = cut % (wire.len() + 1);
            let mut dec = FrameDecoder::new(300);
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut r = dec.decode_protected(&mut buf, &mut rx);
            if matches!(r, Ok(None)) {
                buf.extend_from_slice(&wire[cut..]);
                r = dec.decode_protected(&mut buf, &mut rx);
            }
            match flipped {
                None => {
                    let f = r.expect("valid").expect("complete");
                    prop_assert_eq!(f.header.msg_type, ty);
                    prop_assert_eq!(f.header.seq, seq);
                    prop_assert_eq!(&f.payload[..], &payload[..]);
                    prop_assert!(buf.is_empty());
                }
                Some(at) if at < SEALED_HEADER_BYTES => {
                    prop_assert_eq!(r.err(), Some(FrameError::HeaderTag));
                }
                Some(_) => prop_assert_eq!(r.err(), Some(FrameError::Tag)),
            }
        }

        #[test]
        fn random_bytes_never_open_as_a_secure_frame(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (mut rx, _, _) = sealed(1, 1, b"");
            let mut b = BytesMut::from(&bytes[..]);
            let r = FrameDecoder::new(256).decode_protected(&mut b, &mut rx);
            if bytes.len() < SEALED_HEADER_BYTES {
                prop_assert_eq!(r, Ok(None));
            } else {
                prop_assert_eq!(r, Err(FrameError::HeaderTag));
            }
        }

        #[test]
        fn random_bytes_never_panic_and_stay_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut dec = FrameDecoder::new(256);
            let mut b = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = dec.decode(&mut b) {}
            // The decoder never allocates: the caller owns the buffer.
            prop_assert!(b.capacity() <= bytes.len());
        }

        #[test]
        fn valid_frames_roundtrip(ty: u16, seq: u64, ack: u64, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let raw = frame_bytes(FrameKind::Message, ty, seq, ack, &payload);
            let mut b = BytesMut::from(&raw[..]);
            let f = FrameDecoder::new(300).decode(&mut b).expect("valid").expect("complete");
            prop_assert_eq!(f.header.seq, seq);
            prop_assert_eq!(f.header.ack, ack);
            prop_assert_eq!(f.header.msg_type, ty);
            prop_assert_eq!(&f.payload[..], &payload[..]);
            prop_assert!(b.is_empty());
        }
    }
}
