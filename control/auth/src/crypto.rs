//! The two primitives the protocol needs, from RustCrypto's crates:
//! HMAC-SHA256 for proofs (a party shows it holds a key without sending
//! it) and AES-128-GCM for sealing (tickets, session keys). Nothing here
//! is home-made cryptography: only framing around the crates' calls.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::key::{os_random, KeyError, SECRET_BYTES};

pub const MAC_BYTES: usize = 32;
/// AES-GCM's nonce; each sealed blob carries a fresh random one.
pub const NONCE_BYTES: usize = 12;
/// AES-GCM's authentication tag.
pub const TAG_BYTES: usize = 16;
/// Largest sealed blob opened (tickets and grants are far smaller): a
/// bound checked before any decryption work.
pub const MAX_SEALED_BYTES: usize = 64 << 10;

pub type Mac32 = [u8; MAC_BYTES];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed data is {0} bytes, outside the accepted range")]
    Size(usize),
    #[error("sealed data failed authentication (wrong key, or altered)")]
    Open,
    #[error(transparent)]
    Random(#[from] KeyError),
}

/// HMAC-SHA256 of the parts, each prefixed with its length so that no two
/// different part lists hash alike.
pub fn mac(key: &[u8; SECRET_BYTES], parts: &[&[u8]]) -> Mac32 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac takes any key length");
    for p in parts {
        m.update(&(p.len() as u64).to_le_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time comparison of two MACs.
pub fn mac_eq(a: &Mac32, b: &Mac32) -> bool {
    a.ct_eq(b).into()
}

/// Encrypts and authenticates `plain` under `key`, binding `aad` (which
/// is not encrypted but must match on open): `nonce || ciphertext || tag`.
pub fn seal(key: &[u8; SECRET_BYTES], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes128Gcm::new(key.into());
    let mut nonce = [0u8; NONCE_BYTES];
    os_random(&mut nonce)?;
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .map_err(|_| CryptoError::Open)?;
    let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal`] made, refusing it if the key, the `aad` or any
/// byte differs.
pub fn open(key: &[u8; SECRET_BYTES], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_BYTES + TAG_BYTES || sealed.len() > MAX_SEALED_BYTES {
        return Err(CryptoError::Size(sealed.len()));
    }
    let (nonce, body) = sealed.split_at(NONCE_BYTES);
    Aes128Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
        .map_err(|_| CryptoError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mac_separates_parts() {
        let k = [7u8; 16];
        assert_ne!(mac(&k, &[b"ab", b"c"]), mac(&k, &[b"a", b"bc"]));
        assert_ne!(mac(&k, &[b"abc"]), mac(&[8u8; 16], &[b"abc"]));
        assert!(mac_eq(&mac(&k, &[b"x"]), &mac(&k, &[b"x"])));
    }

    #[test]
    fn seal_open() {
        let k = [1u8; 16];
        let s = seal(&k, b"aad", b"secret").expect("seal");
        assert_eq!(open(&k, b"aad", &s).expect("open"), b"secret");
        assert_eq!(open(&k, b"other", &s), Err(CryptoError::Open));
        assert_eq!(open(&[2u8; 16], b"aad", &s), Err(CryptoError::Open));
        let mut bad = s.clone();
        bad[NONCE_BYTES] ^= 1;
        assert_eq!(open(&k, b"aad", &bad), Err(CryptoError::Open));
        // Two seals of the same text differ (fresh nonces).
        assert_ne!(
            seal(&k, b"", b"x").expect("seal"),
            seal(&k, b"", b"x").expect("seal")
        );
    }

    proptest! {
        #[test]
        fn open_never_panics(b in proptest::collection::vec(any::<u8>(), 0..128)) {
            prop_assert!(open(&[0u8; 16], b"", &b).is_err());
        }
    }
}
