//! Versioned little-endian binary encoding, in the manner of Ceph's
//! `ENCODE_START(version, compat)`.
//!
//! Every struct is framed as `version: u8, compat: u8, len: u32, body`. A
//! reader that knows versions up to `V` refuses a frame whose `compat > V`
//! (the writer says the reader cannot understand it) and otherwise decodes
//! the fields it knows and skips the rest of `body`, so fields appended in a
//! newer version are ignored by older readers.
//!
//! Decoding never panics and never allocates more than the input could hold:
//! every length is checked against the bytes that remain.
//!
//! Most structs use [`impl_versioned!`] instead of writing the impls by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated input: needed {needed} more bytes while decoding {context}")]
    Truncated {
        needed: usize,
        context: &'static str,
    },
    #[error("{what} has compat version {compat}, this build reads up to version {supported}")]
    Incompatible {
        what: &'static str,
        compat: u8,
        supported: u8,
    },
    #[error("{what}: frame declares version {version} below its compat version {compat}")]
    BadFrame {
        what: &'static str,
        version: u8,
        compat: u8,
    },
    #[error("invalid value while decoding {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

/// A value that can be written in Kalmar's binary encoding.
pub trait Encode {
    fn encode(&self, buf: &mut Vec<u8>);

    /// Encodes into a fresh buffer of exactly the encoded length.
    ///
    /// The encoding is built in a per-thread scratch buffer and copied out
    /// once: one allocation of the right size instead of a buffer grown by
    /// doubling (3-5 reallocations for a typical 100-300 byte record), and
    /// a `Vec` whose length equals its capacity turns into `Bytes` without
    /// another allocation.
    fn to_bytes(&self) -> Vec<u8> {
        encode_exact(|buf| self.encode(buf))
    }
}

/// What `f` writes, in a buffer of exactly that length (built as
/// [`Encode::to_bytes`] builds its own).
pub fn encode_exact(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    with_scratch(|buf| {
        f(buf);
        buf.as_slice().to_vec()
    })
}

/// The scratch buffer keeps at most this much capacity between uses, so
/// one large encoding (a whole map) does not pin its size per thread.
const SCRATCH_KEEP_BYTES: usize = 64 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the thread's empty scratch buffer, or on a new one if the
/// scratch is in use (an encoder that calls `to_bytes` for a field).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            if buf.capacity() > SCRATCH_KEEP_BYTES {
                *buf = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// A value that can be read back from Kalmar's binary encoding.
pub trait Decode: Sized {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError>;

    /// Decodes a whole buffer, refusing trailing bytes.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        let v = Self::decode(&mut d)?;
        d.finish()?;
        Ok(v)
    }
}

/// A cursor over an input buffer.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    pub fn take(&mut self, n: usize, context: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                needed: n - self.remaining(),
                context,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, context: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, context)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>("u8")?[0])
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array("u16")?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array("u32")?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array("u64")?))
    }

    /// A collection length, checked so that `len * min_elem_size` bytes
    /// could still follow: a corrupt length cannot make us allocate.
    pub fn len_prefix(
        &mut self,
        min_elem_size: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        let need = n.saturating_mul(min_elem_size.max(1));
        if need > self.remaining() {
            return Err(DecodeError::Truncated {
                needed: need - self.remaining(),
                context: what,
            });
        }
        Ok(n)
    }

    /// Length-prefixed raw bytes (borrowed).
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len_prefix(1, "bytes")?;
        self.take(n, "bytes")
    }

    /// Reads a versioned frame written by [`encode_versioned`]; `f` decodes
    /// the body given the writer's version. Bytes of the body `f` did not
    /// read (fields from a newer writer) are skipped.
    pub fn versioned<T>(
        &mut self,
        what: &'static str,
        supported: u8,
        f: impl FnOnce(&mut Decoder<'a>, u8) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let version = self.u8()?;
        let compat = self.u8()?;
        if compat > version {
            return Err(DecodeError::BadFrame {
                what,
                version,
                compat,
            });
        }
        if compat > supported {
            return Err(DecodeError::Incompatible {
                what,
                compat,
                supported,
            });
        }
        let len = self.u32()? as usize;
        let body = self.take(len, what)?;
        let mut sub = Decoder::new(body);
        let v = f(&mut sub, version)?;
        Ok(v)
    }
}

/// Writes a versioned frame: `version, compat, len, body`.
pub fn encode_versioned(buf: &mut Vec<u8>, version: u8, compat: u8, f: impl FnOnce(&mut Vec<u8>)) {
    debug_assert!(compat <= version);
    buf.push(version);
    buf.push(compat);
    let len_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    f(buf);
    let len = (buf.len() - len_at - 4) as u32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Writes length-prefixed raw bytes.
pub fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// Encodes `value` followed by the crc32c of the encoding: the form used for
/// whole maps and anything else stored or sent as one blob.
pub fn seal<T: Encode + ?Sized>(value: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    value.encode(&mut buf);
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

/// Checks the trailing crc32c written by [`seal`] and decodes the value.
pub fn unseal<T: Decode>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < 4 {
        return Err(DecodeError::Truncated {
            needed: 4 - bytes.len(),
            context: "sealed blob crc",
        });
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(DecodeError::Crc { stored, computed });
    }
    T::from_bytes(body)
}

macro_rules! impl_int {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, buf: &mut Vec<u8>) {
                buf.extend_from_slice(&self.to_le_bytes());
            }
        }
        impl Decode for $t {
            fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(d.array(stringify!($t))?))
            }
        }
    )*};
}
impl_int!(u8, u16, u32, u64, i8, i16, i32, i64, u128);

impl Encode for f64 {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.to_bits().encode(buf)
    }
}
impl Decode for f64 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(f64::from_bits(u64::decode(d)?))
    }
}

impl Encode for bool {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(*self as u8)
    }
}
impl Decode for bool {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match d.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::Invalid {
                what: "bool",
                detail: format!("byte {v}"),
            }),
        }
    }
}

impl Encode for str {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, self.as_bytes())
    }
}
impl Encode for String {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.as_str().encode(buf)
    }
}
impl Decode for String {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let b = d.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|e| DecodeError::Invalid {
            what: "string",
            detail: e.to_string(),
        })
    }
}

/// Raw byte payloads (data, omap values, xattrs): length + bytes, encoded in
/// one copy rather than element by element.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Blob(pub Vec<u8>);

impl Encode for Blob {
    fn encode(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, &self.0)
    }
}
impl Decode for Blob {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Blob(d.bytes()?.to_vec()))
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.as_slice().encode(buf)
    }
}
impl<T: Encode> Encode for [T] {
    fn encode(&self, buf: &mut Vec<u8>) {
        (self.len() as u32).encode(buf);
        for v in self {
            v.encode(buf);
        }
    }
}
impl<T: Decode> Decode for Vec<T> {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let n = d.len_prefix(1, "vec")?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::decode(d)?);
        }
        Ok(v)
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            None => buf.push(0),
            Some(v) => {
                buf.push(1);
                v.encode(buf)
            }
        }
    }
}
impl<T: Decode> Decode for Option<T> {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match d.u8()? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(d)?)),
            v => Err(DecodeError::Invalid {
                what: "option tag",
                detail: format!("byte {v}"),
            }),
        }
    }
}

impl<K: Encode, V: Encode> Encode for BTreeMap<K, V> {
    fn encode(&self, buf: &mut Vec<u8>) {
        (self.len() as u32).encode(buf);
        for (k, v) in self {
            k.encode(buf);
            v.encode(buf);
        }
    }
}
impl<K: Decode + Ord, V: Decode> Decode for BTreeMap<K, V> {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let n = d.len_prefix(2, "map")?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = K::decode(d)?;
            let v = V::decode(d)?;
            m.insert(k, v);
        }
        Ok(m)
    }
}

impl<T: Encode> Encode for BTreeSet<T> {
    fn encode(&self, buf: &mut Vec<u8>) {
        (self.len() as u32).encode(buf);
        for v in self {
            v.encode(buf);
        }
    }
}
impl<T: Decode + Ord> Decode for BTreeSet<T> {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let n = d.len_prefix(1, "set")?;
        let mut s = BTreeSet::new();
        for _ in 0..n {
            s.insert(T::decode(d)?);
        }
        Ok(s)
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.0.encode(buf);
        self.1.encode(buf);
    }
}
impl<A: Decode, B: Decode> Decode for (A, B) {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok((A::decode(d)?, B::decode(d)?))
    }
}

impl<const N: usize> Encode for [u8; N] {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self)
    }
}
impl<const N: usize> Decode for [u8; N] {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.array("byte array")
    }
}

impl Encode for uuid::Uuid {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.as_bytes())
    }
}
impl Decode for uuid::Uuid {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(uuid::Uuid::from_bytes(d.array("uuid")?))
    }
}

impl Encode for SocketAddr {
    fn encode(&self, buf: &mut Vec<u8>) {
        match self.ip() {
            IpAddr::V4(ip) => {
                buf.push(4);
                buf.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                buf.push(6);
                buf.extend_from_slice(&ip.octets());
            }
        }
        self.port().encode(buf);
    }
}
impl Decode for SocketAddr {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let ip = match d.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(d.array::<4>("ipv4")?)),
            6 => IpAddr::V6(Ipv6Addr::from(d.array::<16>("ipv6")?)),
            t => {
                return Err(DecodeError::Invalid {
                    what: "socket address family",
                    detail: format!("tag {t}"),
                })
            }
        };
        Ok(SocketAddr::new(ip, d.u16()?))
    }
}

/// Implements [`Encode`] and [`Decode`] for a struct with named fields as a
/// versioned frame.
///
/// ```ignore
/// impl_versioned!(PoolInfo, "pool", version = 2, compat = 1,
///     { id, name, size },          // present since version 1
///     since 2 { min_size },        // older frames leave it at Default
/// );
/// ```
/// Fields added later go in a `since N { ... }` group and must implement
/// `Default`; they take that default when an older writer omitted them.
#[macro_export]
macro_rules! impl_versioned {
    ($ty:ident, $what:literal, version = $v:literal, compat = $c:literal,
     { $($field:ident),* $(,)? }
     $(, since $sv:literal { $($nf:ident),* $(,)? })* $(,)?) => {
        impl $crate::encoding::Encode for $ty {
            fn encode(&self, buf: &mut Vec<u8>) {
                $crate::encoding::encode_versioned(buf, $v, $c, |buf| {
                    $( $crate::encoding::Encode::encode(&self.$field, buf); )*
                    $( $( $crate::encoding::Encode::encode(&self.$nf, buf); )* )*
                });
            }
        }
        impl $crate::encoding::Decode for $ty {
            fn decode(d: &mut $crate::encoding::Decoder<'_>) -> Result<Self, $crate::encoding::DecodeError> {
                d.versioned($what, $v, |d, _struct_v| {
                    $( let $field = $crate::encoding::Decode::decode(d)?; )*
                    $( $(
                        let $nf = if _struct_v >= $sv {
                            $crate::encoding::Decode::decode(d)?
                        } else {
                            Default::default()
                        };
                    )* )*
                    Ok($ty { $($field,)* $( $($nf,)* )* })
                })
            }
        }
    };
}

/// Implements [`Encode`] and [`Decode`] for a fieldless enum with explicit
/// `u8` discriminants, refusing unknown values.
#[macro_export]
macro_rules! impl_enum_u8 {
    ($ty:ident, $what:literal, { $($variant:ident = $val:literal),* $(,)? }) => {
        impl $crate::encoding::Encode for $ty {
            fn encode(&self, buf: &mut Vec<u8>) {
                let v: u8 = match self { $($ty::$variant => $val,)* };
                buf.push(v);
            }
        }
        impl $crate::encoding::Decode for $ty {
            fn decode(d: &mut $crate::encoding::Decoder<'_>) -> Result<Self, $crate::encoding::DecodeError> {
                match d.u8()? {
                    $($val => Ok($ty::$variant),)*
                    other => Err($crate::encoding::DecodeError::Invalid {
                        what: $what,
                        detail: format!("unknown value {other}"),
                    }),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Default, Clone)]
    struct V1 {
        a: u32,
        name: String,
    }
    impl_versioned!(V1, "v1", version = 1, compat = 1, { a, name });

    #[derive(Debug, PartialEq, Default, Clone)]
    struct V2 {
        a: u32,
        name: String,
        extra: Vec<u64>,
    }
    impl_versioned!(V2, "v2", version = 2, compat = 1, { a, name }, since 2 { extra });

    #[derive(Debug, PartialEq, Default)]
    struct V3Incompatible {
        a: u32,
    }
    impl_versioned!(V3Incompatible, "v3", version = 3, compat = 3, { a });

    /// Encodes a field through `to_bytes` while the outer `to_bytes`
    /// holds the scratch buffer.
    struct Nested(V2);
    impl Encode for Nested {
        fn encode(&self, buf: &mut Vec<u8>) {
            put_bytes(buf, &self.0.to_bytes());
        }
    }

    #[test]
    fn to_bytes_is_exact_and_reentrant() {
        let v = V2 {
            a: 1,
            name: "n".repeat(300),
            extra: (0..50).collect(),
        };
        let b = v.to_bytes();
        assert_eq!(b.len(), b.capacity(), "no spare capacity");
        assert_eq!(V2::from_bytes(&b).expect("decodes"), v);
        let outer = Nested(v.clone()).to_bytes();
        assert_eq!(outer.len(), 4 + b.len());
        assert_eq!(&outer[4..], &b[..]);
        // A large encoding does not stay pinned in the scratch buffer.
        let big = V2 {
            extra: vec![7; 3 * SCRATCH_KEEP_BYTES / 8],
            ..v
        };
        assert_eq!(V2::from_bytes(&big.to_bytes()).expect("decodes"), big);
        SCRATCH.with(|s| assert!(s.borrow().capacity() <= SCRATCH_KEEP_BYTES));
    }

    #[test]
    fn old_reader_skips_new_fields() {
        let v2 = V2 {
            a: 7,
            name: "x".into(),
            extra: vec![1, 2, 3],
        };
        let v1 = V1::from_bytes(&v2.to_bytes()).expect("decodes");
        assert_eq!(
            v1,
            V1 {
                a: 7,
                name: "x".into()
            }
        );
    }

    #[test]
    fn new_reader_defaults_missing_fields() {
        let v1 = V1 {
            a: 9,
            name: "y".into(),
        };
        let v2 = V2::from_bytes(&v1.to_bytes()).expect("decodes");
        assert_eq!(v2.extra, Vec::<u64>::new());
        assert_eq!(v2.a, 9);
    }

    #[test]
    fn old_reader_refuses_incompatible() {
        let b = V3Incompatible { a: 1 }.to_bytes();
        assert!(matches!(
            V1::from_bytes(&b),
            Err(DecodeError::Incompatible {
                compat: 3,
                supported: 1,
                ..
            })
        ));
    }

    #[test]
    fn seal_detects_corruption() {
        let v = V2 {
            a: 1,
            name: "abc".into(),
            extra: vec![5],
        };
        let mut b = seal(&v);
        assert_eq!(unseal::<V2>(&b).expect("clean"), v);
        b[3] ^= 0x40;
        assert!(matches!(unseal::<V2>(&b), Err(DecodeError::Crc { .. })));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        let mut b = Vec::new();
        u32::MAX.encode(&mut b);
        assert!(Vec::<u64>::from_bytes(&b).is_err());
        assert!(String::from_bytes(&b).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(a: u32, name in ".{0,40}", extra in proptest::collection::vec(any::<u64>(), 0..20)) {
            let v = V2 { a, name, extra };
            prop_assert_eq!(V2::from_bytes(&v.to_bytes()).expect("roundtrip"), v);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = V2::from_bytes(&bytes);
            let _ = unseal::<V2>(&bytes);
            let _ = BTreeMap::<String, Vec<u32>>::from_bytes(&bytes);
        }
    }
}
