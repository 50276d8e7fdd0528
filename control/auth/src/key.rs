//! A secret key in Ceph's printable form.
//!
//! Ceph encodes a `CryptoKey` as `u16 type` (1 = AES), the creation time as
//! a `utime_t` (`u32` seconds, `u32` nanoseconds), `u16` secret length and
//! the secret, all little-endian, and prints it as base64. Kalmar uses the
//! same bytes, so a key made by `ceph-authtool --gen-print-key` is accepted
//! as is and a Kalmar key reads as a Ceph one.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroize;

/// Ceph's `CEPH_CRYPTO_AES`: the only key type Ceph creates.
pub const KEY_TYPE_AES: u16 = 1;
/// Bytes of an AES-128 secret.
pub const SECRET_BYTES: usize = 16;
/// Bytes of the encoded key: type, created (sec, nsec), length, secret.
pub const ENCODED_KEY_BYTES: usize = 2 + 4 + 4 + 2 + SECRET_BYTES;
/// Longest printable key accepted (base64 of the encoding, with slack for
/// padding and whitespace): anything longer is refused before decoding.
pub const MAX_PRINTABLE_KEY_BYTES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key is not valid base64: {0}")]
    Base64(String),
    #[error("key is {0} bytes long, expected {ENCODED_KEY_BYTES}")]
    Length(usize),
    #[error("key type {0} is not supported (only 1, AES)")]
    Type(u16),
    #[error("key declares a {0}-byte secret, expected {SECRET_BYTES}")]
    SecretLength(u16),
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// An entity's secret. The secret bytes are wiped when dropped and never
/// printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptoKey {
    /// Seconds and nanoseconds since the epoch when the key was made.
    pub created_sec: u32,
    pub created_nsec: u32,
    secret: [u8; SECRET_BYTES],
}

impl Drop for CryptoKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for CryptoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoKey")
            .field("created_sec", &self.created_sec)
            .finish_non_exhaustive()
    }
}

/// The key both ends of a connection derive in the handshake, for the
/// messenger's frame protection (signed and secure modes). Wiped when
/// dropped, never printed, compared in constant time; the messenger keeps
/// it only until it has derived its per-direction keys.
#[derive(Clone)]
pub struct ConnectionKey([u8; SECRET_BYTES]);

impl ConnectionKey {
    pub fn new(bytes: [u8; SECRET_BYTES]) -> ConnectionKey {
        ConnectionKey(bytes)
    }

    pub fn expose(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }
}

impl Drop for ConnectionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for ConnectionKey {}

impl PartialEq for ConnectionKey {
    fn eq(&self, other: &ConnectionKey) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl Eq for ConnectionKey {}

impl fmt::Debug for ConnectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectionKey(..)")
    }
}

/// Fills `buf` from the operating system's random number generator.
pub fn os_random(buf: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(buf).map_err(|e| KeyError::Random(e.to_string()))
}

impl CryptoKey {
    pub fn from_secret(secret: [u8; SECRET_BYTES], created_sec: u32, created_nsec: u32) -> Self {
        CryptoKey {
            created_sec,
            created_nsec,
            secret,
        }
    }

    /// A new random key, stamped with the current time.
    pub fn generate() -> Result<CryptoKey, KeyError> {
        let mut secret = [0u8; SECRET_BYTES];
        os_random(&mut secret)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(CryptoKey {
            // Ceph's utime_t holds 32-bit seconds; saturate past 2106.
            created_sec: u32::try_from(now.as_secs()).unwrap_or(u32::MAX),
            created_nsec: now.subsec_nanos(),
            secret,
        })
    }

    pub fn secret(&self) -> &[u8; SECRET_BYTES] {
        &self.secret
    }

    /// Ceph's binary encoding of the key.
    pub fn encode(&self) -> [u8; ENCODED_KEY_BYTES] {
        let mut out = [0u8; ENCODED_KEY_BYTES];
        out[0..2].copy_from_slice(&KEY_TYPE_AES.to_le_bytes());
        out[2..6].copy_from_slice(&self.created_sec.to_le_bytes());
        out[6..10].copy_from_slice(&self.created_nsec.to_le_bytes());
        out[10..12].copy_from_slice(&(SECRET_BYTES as u16).to_le_bytes());
        out[12..].copy_from_slice(&self.secret);
        out
    }

    /// Reads Ceph's binary encoding.
    pub fn decode(bytes: &[u8]) -> Result<CryptoKey, KeyError> {
        if bytes.len() != ENCODED_KEY_BYTES {
            return Err(KeyError::Length(bytes.len()));
        }
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let ty = u16_at(0);
        if ty != KEY_TYPE_AES {
            return Err(KeyError::Type(ty));
        }
        let len = u16_at(10);
        if usize::from(len) != SECRET_BYTES {
            return Err(KeyError::SecretLength(len));
        }
        let mut secret = [0u8; SECRET_BYTES];
        secret.copy_from_slice(&bytes[12..]);
        Ok(CryptoKey {
            created_sec: u32_at(2),
            created_nsec: u32_at(6),
            secret,
        })
    }

    /// The base64 form written in keyrings and printed by `auth print-key`.
    pub fn to_printable(&self) -> String {
        STANDARD.encode(self.encode())
    }
}

impl fmt::Display for CryptoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_printable())
    }
}

impl FromStr for CryptoKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > MAX_PRINTABLE_KEY_BYTES {
            return Err(KeyError::Length(s.len()));
        }
        let raw = STANDARD
            .decode(s)
            .map_err(|e| KeyError::Base64(e.to_string()))?;
        CryptoKey::decode(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ceph_generated_key_is_accepted() {
        // The shape `ceph-authtool --gen-print-key` prints: "AQ" is the
        // type 1 in little-endian, the 16-byte secret sits at the end.
        let k: CryptoKey = "AQBGsNplAAAAABAAyXuVR0aaSeBu0vHq8QbNNg=="
            .parse()
            .expect("a Ceph key");
        assert_eq!(k.created_sec, 0x65da_b046);
        assert_eq!(k.created_nsec, 0);
        assert_eq!(k.to_printable(), "AQBGsNplAAAAABAAyXuVR0aaSeBu0vHq8QbNNg==");
    }

    #[test]
    fn generated_keys_differ_and_round_trip() {
        let a = CryptoKey::generate().expect("os rng");
        let b = CryptoKey::generate().expect("os rng");
        assert_ne!(a.secret(), b.secret());
        let printed = a.to_printable();
        assert!(printed.starts_with("AQ"), "{printed}");
        assert_eq!(printed.parse::<CryptoKey>().expect("parse"), a);
        assert!(!format!("{a:?}").contains(&printed));
    }

    #[test]
    fn keys_are_wiped_on_drop() {
        // Drop runs in place; the bytes it leaves are then read back
        // (ManuallyDrop keeps the memory, and [u8; N] has no invariant).
        let mut ck = std::mem::ManuallyDrop::new(ConnectionKey::new([0xa5; SECRET_BYTES]));
        assert_eq!(ck.expose(), &[0xa5; SECRET_BYTES]);
        assert_eq!(format!("{:?}", *ck), "ConnectionKey(..)");
        // SAFETY: dropped once, and only its plain bytes are read after.
        unsafe { std::mem::ManuallyDrop::drop(&mut ck) };
        assert_eq!(ck.0, [0; SECRET_BYTES]);
        let mut k = std::mem::ManuallyDrop::new(CryptoKey::from_secret([0x5a; SECRET_BYTES], 1, 2));
        // SAFETY: as above.
        unsafe { std::mem::ManuallyDrop::drop(&mut k) };
        assert_eq!(k.secret, [0; SECRET_BYTES]);
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(matches!(
            "not base64!".parse::<CryptoKey>(),
            Err(KeyError::Base64(_))
        ));
        assert!(matches!(
            "AQAA".parse::<CryptoKey>(),
            Err(KeyError::Length(_))
        ));
        let mut raw = CryptoKey::generate().expect("rng").encode();
        raw[0] = 2;
        assert_eq!(CryptoKey::decode(&raw), Err(KeyError::Type(2)));
        raw[0] = 1;
        raw[10] = 32;
        assert_eq!(CryptoKey::decode(&raw), Err(KeyError::SecretLength(32)));
    }

    proptest! {
        #[test]
        fn any_text_never_panics(s in ".{0,200}") {
            let _ = s.parse::<CryptoKey>();
        }

        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = CryptoKey::decode(&b);
        }

        #[test]
        fn encoding_round_trips(secret in any::<[u8; 16]>(), s in any::<u32>(), ns in any::<u32>()) {
            let k = CryptoKey::from_secret(secret, s, ns);
            prop_assert_eq!(CryptoKey::decode(&k.encode()).expect("decode"), k.clone());
            prop_assert_eq!(k.to_printable().parse::<CryptoKey>().expect("parse"), k);
        }
    }
}
