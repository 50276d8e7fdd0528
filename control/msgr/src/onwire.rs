//! On-wire protection of the frames after the handshake: Ceph's
//! connection modes, chosen per connection.
//!
//! - `crc`: frames as they always were (crc32c of header and payload);
//!   protects against accidents, not against anyone on the path.
//! - `signed`: every frame carries a 16-byte tag, HMAC-SHA256 truncated
//!   to 16 bytes, over the frame counter of its direction, the 36-byte
//!   header and the payload. The payload travels in clear.
//! - `secure`: the payload is encrypted with AES-128-GCM, the header is
//!   the additional authenticated data, the frame counter of the
//!   direction is the nonce; the 16-byte GCM tag follows the payload.
//!   The header (kind, type, sequence numbers, length) stays readable.
//!
//! In both protected modes the tag comes after the payload (the header's
//! `payload_len` does not count it, and `payload_crc` is 0: the tag
//! covers the payload), and each direction has its own key and its own
//! counter starting at 0 for the first frame after the hello reply. A
//! frame that was altered, replayed, reordered, or dropped (its successor
//! then arrives under the wrong counter) fails its tag, and the
//! connection is closed.
//!
//! The keys come from the connection key both sides derive in the
//! cephx-style authentication (see `kalmar_auth`): HKDF-SHA256 with the
//! negotiation transcript (the connector's offer and the acceptor's
//! choice) as salt and the mode and direction as info. Without
//! authentication there is no key, and only `crc` can be chosen.
//!
//! Negotiation follows Ceph's `AuthRegistry::pick_mode`: the connector
//! offers its modes in its order of preference (`ms_client_mode` for a
//! client, `ms_cluster_mode` for a daemon), and the acceptor picks the
//! first of them it allows itself (`ms_service_mode` towards clients,
//! `ms_cluster_mode` towards daemons). The acceptor proves the transcript
//! with a MAC under the connection key in its hello reply, so a man in
//! the middle who rewrote the offer (to push the choice down to `crc`)
//! makes the connector refuse the session.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce, Tag};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kalmar_auth::key::SECRET_BYTES;
use sha2::Sha256;

use crate::entity::EntityType;
use crate::frame::{FrameError, HEADER_BYTES};

/// Bytes of the tag after a protected frame's payload.
pub const TAG_BYTES: usize = 16;

/// A connection mode. The ids travel in the hello (Ceph's
/// `CEPH_CON_MODE_CRC` is 1 and `_SECURE` 2; Kalmar numbers its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireMode {
    Crc = 1,
    Signed = 2,
    Secure = 3,
}

impl WireMode {
    pub fn id(self) -> u8 {
        self as u8
    }

    pub fn from_id(id: u8) -> Option<WireMode> {
        match id {
            1 => Some(WireMode::Crc),
            2 => Some(WireMode::Signed),
            3 => Some(WireMode::Secure),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WireMode::Crc => "crc",
            WireMode::Signed => "signed",
            WireMode::Secure => "secure",
        }
    }
}

impl fmt::Display for WireMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WireMode {
    type Err = String;
    fn from_str(s: &str) -> Result<WireMode, String> {
        match s {
            "crc" => Ok(WireMode::Crc),
            "signed" => Ok(WireMode::Signed),
            "secure" => Ok(WireMode::Secure),
            other => Err(format!(
                "unknown connection mode '{other}' (expected crc, signed or secure)"
            )),
        }
    }
}

/// A preference list as the options spell it: modes separated by spaces
/// or commas, most preferred first, none twice, at least one.
pub fn parse_modes(s: &str) -> Result<Vec<WireMode>, String> {
    let mut out: Vec<WireMode> = Vec::new();
    for tok in s.split([' ', ',', '\t']).filter(|t| !t.is_empty()) {
        let m: WireMode = tok.parse()?;
        if out.contains(&m) {
            return Err(format!("connection mode '{m}' listed twice in '{s}'"));
        }
        out.push(m);
    }
    if out.is_empty() {
        return Err("empty list of connection modes".into());
    }
    Ok(out)
}

fn list(modes: &[WireMode]) -> String {
    modes
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The default of all three options: crc first, so nothing costs more
/// unless an admin asks for it (Ceph's default is `crc secure`).
pub const DEFAULT_MODES: [WireMode; 3] = [WireMode::Crc, WireMode::Signed, WireMode::Secure];

/// Ceph's three `ms_*_mode` options for one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireModes {
    /// `ms_cluster_mode`: between daemons (mon, OSD, mgr), both ways.
    pub cluster: Vec<WireMode>,
    /// `ms_service_mode`: what a daemon's acceptor allows clients.
    pub service: Vec<WireMode>,
    /// `ms_client_mode`: what a client offers.
    pub client: Vec<WireMode>,
}

impl Default for WireModes {
    fn default() -> Self {
        WireModes {
            cluster: DEFAULT_MODES.to_vec(),
            service: DEFAULT_MODES.to_vec(),
            client: DEFAULT_MODES.to_vec(),
        }
    }
}

impl WireModes {
    /// All three options set to one list (tests, tools).
    pub fn all(modes: &[WireMode]) -> WireModes {
        WireModes {
            cluster: modes.to_vec(),
            service: modes.to_vec(),
            client: modes.to_vec(),
        }
    }

    /// The options from the conf (defaults for those not set).
    pub fn from_conf(
        conf: &kalmar_common::config::Conf,
        entity: &str,
    ) -> Result<WireModes, String> {
        let get = |key: &str| -> Result<Vec<WireMode>, String> {
            match conf.get::<String>(entity, key).map_err(|e| e.to_string())? {
                None => Ok(DEFAULT_MODES.to_vec()),
                Some(v) => parse_modes(&v).map_err(|e| format!("{key}: {e}")),
            }
        };
        Ok(WireModes {
            cluster: get("ms_cluster_mode")?,
            service: get("ms_service_mode")?,
            client: get("ms_client_mode")?,
        })
    }

    /// What a connector of type `me` offers, and the option it comes from.
    pub fn for_connector(&self, me: EntityType) -> (&[WireMode], &'static str) {
        match me {
            EntityType::Client => (&self.client, "ms_client_mode"),
            _ => (&self.cluster, "ms_cluster_mode"),
        }
    }

    /// What an acceptor allows a peer of type `peer`, and the option.
    pub fn for_acceptor(&self, peer: EntityType) -> (&[WireMode], &'static str) {
        match peer {
            EntityType::Client => (&self.service, "ms_service_mode"),
            _ => (&self.cluster, "ms_cluster_mode"),
        }
    }
}

/// The offer as it travels in the hello.
pub fn offer_ids(modes: &[WireMode]) -> Vec<u8> {
    modes.iter().map(|m| m.id()).collect()
}

/// The acceptor's choice: the first mode of the connector's `offer` (an
/// empty offer is an older peer, which speaks crc only; unknown ids are
/// skipped) that `allowed` holds, and that needs no key when `have_key`
/// is false. The error explains the mismatch.
pub fn pick(
    offer: &[u8],
    allowed: &[WireMode],
    option: &str,
    have_key: bool,
) -> Result<WireMode, String> {
    let offered: Vec<WireMode> = if offer.is_empty() {
        vec![WireMode::Crc]
    } else {
        offer.iter().filter_map(|&i| WireMode::from_id(i)).collect()
    };
    let usable = |m: &WireMode| allowed.contains(m) && (have_key || *m == WireMode::Crc);
    offered.iter().copied().find(usable).ok_or_else(|| {
        let why_no_key = if have_key {
            ""
        } else {
            " (without authentication, only crc is possible: signed and secure need the cephx connection key)"
        };
        format!(
            "no connection mode in common: the peer offers [{}], this side allows [{}] ({option}){why_no_key}",
            list(&offered),
            list(allowed)
        )
    })
}

/// The acceptor's proof of the negotiation: HMAC-SHA256 under the
/// connection key of the offer as it arrived and the choice.
pub fn transcript_mac(key: &[u8; SECRET_BYTES], offer: &[u8], chosen: WireMode) -> [u8; 32] {
    kalmar_auth::crypto::mac(key, &[b"kalmar-msgr-mode", offer, &[chosen.id()]])
}

/// Whether the proof in a hello reply matches what this connector sent
/// and was told (constant time).
pub fn transcript_ok(
    key: &[u8; SECRET_BYTES],
    offer: &[u8],
    chosen: WireMode,
    mac: &[u8; 32],
) -> bool {
    kalmar_auth::crypto::mac_eq(&transcript_mac(key, offer, chosen), mac)
}

/// Which way a key protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Connector to acceptor.
    ToAcceptor,
    /// Acceptor to connector.
    ToConnector,
}

/// The key of one direction: HKDF-SHA256 of the connection key, salted
/// with the transcript, the mode and the direction as info.
pub fn direction_key(
    conn_key: &[u8; SECRET_BYTES],
    offer: &[u8],
    chosen: WireMode,
    dir: Direction,
) -> [u8; 32] {
    let mut salt = Vec::with_capacity(24 + offer.len());
    salt.extend_from_slice(b"kalmar-msgr-transcript");
    salt.push(offer.len() as u8);
    salt.extend_from_slice(offer);
    salt.push(chosen.id());
    let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt), conn_key);
    let dir = match dir {
        Direction::ToAcceptor => "connector->acceptor",
        Direction::ToConnector => "acceptor->connector",
    };
    let info = format!("kalmar-msgr v1 {chosen} {dir}");
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
    let _ = hk.expand(info.as_bytes(), &mut out);
    out
}

/// The two ends of a connection's protection, for one side of it.
pub(crate) struct Protection {
    pub(crate) tx: Protect,
    pub(crate) rx: Protect,
}

impl Protection {
    pub(crate) fn crc() -> Protection {
        Protection {
            tx: Protect::crc(),
            rx: Protect::crc(),
        }
    }

    /// The protection of a connection in mode `chosen`; `conn_key` must be
    /// there for signed and secure.
    pub(crate) fn new(
        chosen: WireMode,
        conn_key: Option<&[u8; SECRET_BYTES]>,
        offer: &[u8],
        connector: bool,
    ) -> Result<Protection, String> {
        if chosen == WireMode::Crc {
            return Ok(Protection::crc());
        }
        let Some(k) = conn_key else {
            return Err(format!(
                "mode {chosen} chosen without a connection key (no authentication ran)"
            ));
        };
        let up = Protect::new(
            chosen,
            &direction_key(k, offer, chosen, Direction::ToAcceptor),
        );
        let down = Protect::new(
            chosen,
            &direction_key(k, offer, chosen, Direction::ToConnector),
        );
        Ok(if connector {
            Protection { tx: up, rx: down }
        } else {
            Protection { tx: down, rx: up }
        })
    }
}

enum Kind {
    Crc,
    Signed(Box<Hmac<Sha256>>),
    Secure(Box<Aes128Gcm>),
}

/// One direction's protection state: its keyed primitive and its frame
/// counter.
pub struct Protect {
    kind: Kind,
    counter: u64,
}

impl fmt::Debug for Protect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protect")
            .field("mode", &self.mode())
            .field("counter", &self.counter)
            .finish()
    }
}

impl Protect {
    pub fn crc() -> Protect {
        Protect {
            kind: Kind::Crc,
            counter: 0,
        }
    }

    /// `key`: the direction's key (see [`direction_key`]). AES-128-GCM
    /// takes its first 16 bytes.
    pub fn new(mode: WireMode, key: &[u8; 32]) -> Protect {
        let kind = match mode {
            WireMode::Crc => Kind::Crc,
            WireMode::Signed => Kind::Signed(Box::new(
                <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac takes any key length"),
            )),
            WireMode::Secure => {
                let mut k = [0u8; 16];
                k.copy_from_slice(&key[..16]);
                Kind::Secure(Box::new(Aes128Gcm::new(&k.into())))
            }
        };
        Protect { kind, counter: 0 }
    }

    pub fn mode(&self) -> WireMode {
        match self.kind {
            Kind::Crc => WireMode::Crc,
            Kind::Signed(_) => WireMode::Signed,
            Kind::Secure(_) => WireMode::Secure,
        }
    }

    pub fn is_crc(&self) -> bool {
        matches!(self.kind, Kind::Crc)
    }

    /// Bytes after each payload.
    pub fn trailer_len(&self) -> usize {
        if self.is_crc() {
            0
        } else {
            TAG_BYTES
        }
    }

    /// The counter of the next frame, advanced. A counter that would wrap
    /// (2^64 frames) is refused rather than reused.
    fn next_counter(&mut self) -> Result<u64, FrameError> {
        let c = self.counter;
        self.counter = c.checked_add(1).ok_or(FrameError::CounterExhausted)?;
        Ok(c)
    }

    fn nonce(counter: u64) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&counter.to_le_bytes());
        n
    }

    fn hmac_tag<'a>(
        mac: &Hmac<Sha256>,
        counter: u64,
        header: &[u8; HEADER_BYTES],
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> [u8; TAG_BYTES] {
        // A clone of the keyed state: no key schedule, no allocation.
        let mut m = mac.clone();
        m.update(&counter.to_le_bytes());
        m.update(header);
        for c in chunks {
            m.update(c);
        }
        let full = m.finalize().into_bytes();
        let mut t = [0u8; TAG_BYTES];
        t.copy_from_slice(&full[..TAG_BYTES]);
        t
    }

    /// Signed mode: the tag of the next frame (`header` and its payload
    /// `chunks`).
    pub fn sign(
        &mut self,
        header: &[u8; HEADER_BYTES],
        chunks: &[Bytes],
    ) -> Result<[u8; TAG_BYTES], FrameError> {
        let counter = self.next_counter()?;
        let Kind::Signed(mac) = &self.kind else {
            return Err(FrameError::WrongMode);
        };
        Ok(Self::hmac_tag(
            mac,
            counter,
            header,
            chunks.iter().map(|c| &c[..]),
        ))
    }

    /// Secure mode: appends the next frame's payload (`chunks`), encrypted,
    /// and its tag to `out`.
    pub fn seal_into(
        &mut self,
        header: &[u8; HEADER_BYTES],
        chunks: &[Bytes],
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let counter = self.next_counter()?;
        let Kind::Secure(aes) = &self.kind else {
            return Err(FrameError::WrongMode);
        };
        let start = out.len();
        for c in chunks {
            out.extend_from_slice(c);
        }
        let tag = aes
            .encrypt_in_place_detached(
                Nonce::from_slice(&Self::nonce(counter)),
                header,
                &mut out[start..],
            )
            .map_err(|_| FrameError::Tag)?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Receiving: checks (and in secure mode decrypts in place) the next
    /// frame; `body` is the payload followed by the tag. The payload is
    /// `body[..body.len() - TAG_BYTES]` afterwards.
    pub fn open(&mut self, header: &[u8; HEADER_BYTES], body: &mut [u8]) -> Result<(), FrameError> {
        if self.is_crc() {
            return Ok(());
        }
        let counter = self.next_counter()?;
        let Some(split) = body.len().checked_sub(TAG_BYTES) else {
            return Err(FrameError::Tag);
        };
        let (payload, tag) = body.split_at_mut(split);
        match &self.kind {
            Kind::Crc => Ok(()),
            Kind::Signed(mac) => {
                let want = Self::hmac_tag(mac, counter, header, [&payload[..]]);
                if bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], &tag[..])) {
                    Ok(())
                } else {
                    Err(FrameError::Tag)
                }
            }
            Kind::Secure(aes) => aes
                .decrypt_in_place_detached(
                    Nonce::from_slice(&Self::nonce(counter)),
                    header,
                    payload,
                    Tag::from_slice(tag),
                )
                .map_err(|_| FrameError::Tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameHeader, FrameKind};

    fn key() -> [u8; SECRET_BYTES] {
        [7; SECRET_BYTES]
    }

    #[test]
    fn parse_lists() {
        assert_eq!(
            parse_modes("crc signed secure").expect("valid"),
            DEFAULT_MODES.to_vec()
        );
        assert_eq!(
            parse_modes(" secure,crc ").expect("valid"),
            vec![WireMode::Secure, WireMode::Crc]
        );
        assert!(parse_modes("").is_err());
        assert!(parse_modes("crc crc").is_err());
        assert!(parse_modes("crc fast").is_err());
    }

    #[test]
    fn pick_follows_the_connectors_order() {
        use WireMode::*;
        let offer = offer_ids(&[Secure, Crc]);
        assert_eq!(pick(&offer, &[Crc, Secure], "x", true), Ok(Secure));
        assert_eq!(pick(&offer, &[Crc], "x", true), Ok(Crc));
        // Without a key, only crc.
        assert_eq!(pick(&offer, &[Crc, Secure], "x", false), Ok(Crc));
        let err = pick(&offer_ids(&[Secure]), &[Crc, Secure], "x", false).expect_err("no key");
        assert!(err.contains("without authentication"), "{err}");
        // An older peer offers nothing: crc.
        assert_eq!(pick(&[], &[Crc, Secure], "x", true), Ok(Crc));
        let err = pick(&[], &[Secure], "ms_cluster_mode", true).expect_err("old peer");
        assert!(
            err.contains("[crc]") && err.contains("[secure]") && err.contains("ms_cluster_mode"),
            "{err}"
        );
        // Unknown ids (a newer peer's modes) are skipped.
        assert_eq!(pick(&[9, 2], &[Signed], "x", true), Ok(Signed));
    }

    #[test]
    fn keys_differ_by_direction_mode_and_transcript() {
        use Direction::*;
        use WireMode::*;
        let offer = offer_ids(&DEFAULT_MODES);
        let a = direction_key(&key(), &offer, Secure, ToAcceptor);
        assert_ne!(a, direction_key(&key(), &offer, Secure, ToConnector));
        assert_ne!(a, direction_key(&key(), &offer, Signed, ToAcceptor));
        assert_ne!(a, direction_key(&key(), &[3], Secure, ToAcceptor));
        assert_eq!(a, direction_key(&key(), &offer, Secure, ToAcceptor));
        let mac = transcript_mac(&key(), &offer, Secure);
        assert!(transcript_ok(&key(), &offer, Secure, &mac));
        assert!(!transcript_ok(&key(), &[1], Secure, &mac));
        assert!(!transcript_ok(&key(), &offer, Crc, &mac));
    }

    fn header(len: usize) -> [u8; HEADER_BYTES] {
        FrameHeader {
            kind: FrameKind::Message,
            flags: 0,
            msg_type: 4,
            seq: 1,
            ack: 0,
            payload_len: len as u32,
            payload_crc: 0,
        }
        .encode()
    }

    /// One frame through both ends of `mode`, with `tamper` applied to
    /// (header, body) on the way.
    fn through(mode: WireMode, tamper: impl Fn(&mut [u8; HEADER_BYTES], &mut Vec<u8>)) -> bool {
        let k = [9u8; 32];
        let (mut tx, mut rx) = (Protect::new(mode, &k), Protect::new(mode, &k));
        let chunks = [Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")];
        let mut h = header(8);
        let mut body = Vec::new();
        match mode {
            WireMode::Signed => {
                body.extend_from_slice(b"abcdefgh");
                body.extend_from_slice(&tx.sign(&h, &chunks).expect("sign"));
            }
            _ => tx.seal_into(&h, &chunks, &mut body).expect("seal"),
        }
        if mode == WireMode::Secure {
            assert_ne!(&body[..8], b"abcdefgh", "encrypted");
        }
        tamper(&mut h, &mut body);
        let ok = rx.open(&h, &mut body).is_ok();
        if ok {
            assert_eq!(&body[..8], b"abcdefgh");
        }
        ok
    }

    #[test]
    fn any_flipped_bit_fails_the_tag() {
        for mode in [WireMode::Signed, WireMode::Secure] {
            assert!(through(mode, |_, _| {}), "{mode} roundtrip");
            for i in 0..HEADER_BYTES {
                assert!(!through(mode, |h, _| h[i] ^= 1), "{mode}: header byte {i}");
            }
            for i in 0..8 + TAG_BYTES {
                assert!(!through(mode, |_, b| b[i] ^= 0x80), "{mode}: body byte {i}");
            }
            assert!(!through(mode, |_, b| b.truncate(4)), "{mode}: short body");
        }
    }

    #[test]
    fn replayed_reordered_and_dropped_frames_fail() {
        for mode in [WireMode::Signed, WireMode::Secure] {
            let k = [3u8; 32];
            let mut tx = Protect::new(mode, &k);
            let h = header(4);
            let frames: Vec<Vec<u8>> = (0..3u8)
                .map(|i| {
                    let chunks = [Bytes::from(vec![i; 4])];
                    let mut b = Vec::new();
                    if mode == WireMode::Signed {
                        b.extend_from_slice(&chunks[0]);
                        b.extend_from_slice(&tx.sign(&h, &chunks).expect("sign"));
                    } else {
                        tx.seal_into(&h, &chunks, &mut b).expect("seal");
                    }
                    b
                })
                .collect();
            let open = |rx: &mut Protect, i: usize| rx.open(&h, &mut frames[i].clone()).is_ok();
            // In order: fine.
            let mut rx = Protect::new(mode, &k);
            assert!(open(&mut rx, 0) && open(&mut rx, 1) && open(&mut rx, 2));
            // Replayed.
            let mut rx = Protect::new(mode, &k);
            assert!(open(&mut rx, 0));
            assert!(!open(&mut rx, 0), "{mode}: replay");
            // Reordered.
            let mut rx = Protect::new(mode, &k);
            assert!(!open(&mut rx, 1), "{mode}: reorder");
            // Dropped (frame 1 never arrives).
            let mut rx = Protect::new(mode, &k);
            assert!(open(&mut rx, 0));
            assert!(!open(&mut rx, 2), "{mode}: drop");
            // Another key.
            let mut rx = Protect::new(mode, &[4u8; 32]);
            assert!(!open(&mut rx, 0), "{mode}: wrong key");
        }
    }
}
