//! On-wire protection of the frames after the handshake: Ceph's
//! connection modes, chosen per connection.
//!
//! - `crc`: frames as they always were (crc32c of header and payload);
//!   protects against accidents, not against anyone on the path.
//! - `signed`: every frame carries a 16-byte tag, keyed BLAKE3 truncated
//!   to 16 bytes, over the frame counter of its direction, the 36-byte
//!   header and the payload. The payload travels in clear. (BLAKE3 and not
//!   HMAC-SHA256, the tag of the first version: on the test VM it runs at
//!   1.6x HMAC's speed on a 4 KiB frame and 5x on a 1 MiB one, where its
//!   SIMD lanes hash many 1 KiB chunks at once; see benches/RESULTS.md.)
//! - `secure`: AES-128-GCM seals each frame twice under the direction's
//!   key: first the 36-byte header on its own (52 bytes on the wire: the
//!   encrypted header and its tag), then the payload, with the plaintext
//!   header as additional data, followed by its own 16-byte tag. Nothing
//!   of the header (kind, type, sequence numbers, lengths) is readable on
//!   the path, and a reader learns a frame's length only from a header
//!   that passed its tag: it reads the 52 bytes, opens them, checks the
//!   header (and its length bound) as in crc mode, then reads the payload
//!   and its tag. (Ceph's msgr2 secure mode seals its preamble the same
//!   way.) The nonce of both seals is the frame counter of the direction
//!   with a byte telling the header's from the payload's: a counter never
//!   repeats under one key, so no nonce does.
//!
//! In both protected modes the payload's tag comes after the payload (the
//! header's `payload_len` does not count it, and `payload_crc` is 0: the
//! tag covers the payload), and each direction has its own key and its
//! own counter starting at 0 for the first frame after the hello reply. A
//! frame that was altered, replayed, reordered, or dropped (its successor
//! then arrives under the wrong counter) fails its tag (in secure mode,
//! already its header's), and the connection is closed.
//!
//! Key material is wiped when dropped: the connection key
//! ([`kalmar_auth::ConnectionKey`], dropped once the direction keys are
//! derived), the direction keys (the signed mode's BLAKE3 key is one),
//! HKDF's state, the BLAKE3 state of each tag, and the AES-GCM state
//! each direction keeps (see [`Wiped`]).
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
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ops::Deref;
use std::str::FromStr;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce, Tag};
use bytes::Bytes;
use kalmar_auth::key::SECRET_BYTES;
use kalmar_auth::ConnectionKey;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::entity::EntityType;
use crate::frame::{FrameError, FLAGS_OFFSET, FLAG_HEAD_PREFIXED, HEADER_BYTES};

/// Bytes of the tag after a protected frame's payload.
pub const TAG_BYTES: usize = 16;

/// Bytes a header takes on the wire in secure mode: the encrypted
/// 36-byte header and its own GCM tag.
pub const SEALED_HEADER_BYTES: usize = HEADER_BYTES + TAG_BYTES;

/// The id the secure mode had before it sealed headers (its frames had
/// the header in clear): a peer of that version offering it is refused
/// by name, never misparsed (the id of [`WireMode::Secure`] changed with
/// the wire format).
pub const LEGACY_SECURE_ID: u8 = 3;

/// The id the signed mode had while its tags were HMAC-SHA256: refused
/// by name the same way (the id of [`WireMode::Signed`] changed with the
/// tag).
pub const LEGACY_SIGNED_ID: u8 = 2;

/// What a mode id of an earlier version was, for the error that refuses
/// it; `None` for any other id.
pub fn legacy_mode(id: u8) -> Option<&'static str> {
    match id {
        LEGACY_SIGNED_ID => Some("the signed mode of an older version (id 2, HMAC-SHA256 tags)"),
        LEGACY_SECURE_ID => {
            Some("the secure mode of an older version (id 3, frame headers in clear)")
        }
        _ => None,
    }
}

/// A connection mode. The ids travel in the hello (Ceph's
/// `CEPH_CON_MODE_CRC` is 1 and `_SECURE` 2; Kalmar numbers its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireMode {
    Crc = 1,
    /// Keyed BLAKE3 tags (was 2, with HMAC-SHA256 tags: see
    /// [`LEGACY_SIGNED_ID`]).
    Signed = 5,
    /// Headers sealed on their own (was 3, with headers in clear: see
    /// [`LEGACY_SECURE_ID`]).
    Secure = 4,
}

impl WireMode {
    pub fn id(self) -> u8 {
        self as u8
    }

    pub fn from_id(id: u8) -> Option<WireMode> {
        match id {
            1 => Some(WireMode::Crc),
            4 => Some(WireMode::Secure),
            5 => Some(WireMode::Signed),
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

/// The default of all three options: signed first, so every frame after
/// authentication is signed unless an admin lists `crc` first (Ceph's
/// default is `crc secure`: unsigned). `crc` stays allowed, last: without
/// authentication (`auth_*_required = none`, which `health` reports as
/// `AUTH_INSECURE`) there is no key and it is the only mode possible.
pub const DEFAULT_MODES: [WireMode; 3] = [WireMode::Signed, WireMode::Secure, WireMode::Crc];

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
        let older: String = offer
            .iter()
            .filter_map(|&id| legacy_mode(id))
            .map(|what| format!("; the peer also offers {what}, which this version no longer speaks: upgrade it"))
            .collect();
        format!(
            "no connection mode in common: the peer offers [{}], this side allows [{}] ({option}){why_no_key}{older}",
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
) -> Zeroizing<[u8; 32]> {
    let mut salt = Vec::with_capacity(24 + offer.len());
    salt.extend_from_slice(b"kalmar-msgr-transcript");
    salt.push(offer.len() as u8);
    salt.extend_from_slice(offer);
    salt.push(chosen.id());
    // Its state (the PRK) is as good as the key: wiped too.
    let hk = Wiped::new(hkdf::Hkdf::<Sha256>::new(Some(&salt), conn_key));
    let dir = match dir {
        Direction::ToAcceptor => "connector->acceptor",
        Direction::ToConnector => "acceptor->connector",
    };
    let info = format!("kalmar-msgr v1 {chosen} {dir}");
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
    let _ = hk.expand(info.as_bytes(), &mut out[..]);
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
        conn_key: Option<&ConnectionKey>,
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
        let k = k.expose();
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

/// A keyed primitive on the heap, every byte of which is zeroed when it
/// is dropped. `aes` and `ghash` wipe what they can themselves (their
/// `zeroize` features are on), but `hmac` 0.12 and `sha2` 0.10 (under
/// HKDF) have no such support, and neither has GHASH's key in `polyval`
/// 0.6's autodetected backend, so the whole state is wiped here. (Copies
/// the crates make on the stack while they work are not reached;
/// `zeroize` cannot promise those either.)
pub struct Wiped<T>(Box<ManuallyDrop<T>>);

impl<T> Wiped<T> {
    pub fn new(value: T) -> Wiped<T> {
        Wiped(Box::new(ManuallyDrop::new(value)))
    }
}

impl<T> Deref for Wiped<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Drop for Wiped<T> {
    fn drop(&mut self) {
        // SAFETY: the value is dropped here, once, and never used again:
        // the box then frees memory that holds zeros only.
        unsafe { wipe(&mut self.0) }
    }
}

/// Drops the value in `slot` in place, then zeroes all its bytes with
/// volatile writes (which the compiler may not drop as dead stores).
///
/// # Safety
/// The value in `slot` must not be used (or dropped) again.
unsafe fn wipe<T>(slot: &mut ManuallyDrop<T>) {
    // SAFETY: the caller gives up the value.
    unsafe { ManuallyDrop::drop(slot) };
    // SAFETY: `ManuallyDrop<T>` is `repr(transparent)` over `T`, which has
    // the layout of `MaybeUninit<T>`; a `MaybeUninit` may hold any bytes.
    let raw = unsafe { &mut *(slot as *mut ManuallyDrop<T>).cast::<MaybeUninit<T>>() };
    raw.zeroize();
}

enum Kind {
    Crc,
    /// The BLAKE3 key of the direction.
    Signed(Zeroizing<[u8; 32]>),
    Secure(Wiped<Aes128Gcm>),
}

/// Which of a frame's two seals in secure mode a nonce is for (its byte
/// 8): the header and the payload of one frame share its counter.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Part {
    Header = 0,
    Payload = 1,
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
            WireMode::Signed => Kind::Signed(Zeroizing::new(*key)),
            WireMode::Secure => Kind::Secure(Wiped::new(
                Aes128Gcm::new_from_slice(&key[..16]).expect("a 16-byte AES-128 key"),
            )),
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

    /// Whether headers are sealed on their own (secure mode).
    pub fn seals_header(&self) -> bool {
        matches!(self.kind, Kind::Secure(_))
    }

    /// Bytes a frame header takes on the wire.
    pub fn header_len(&self) -> usize {
        if self.seals_header() {
            SEALED_HEADER_BYTES
        } else {
            HEADER_BYTES
        }
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

    /// The GCM nonce of `part` of the frame numbered `counter`: the
    /// counter never repeats under one key (see `next_counter`) and the
    /// part byte tells a frame's two seals apart, so neither does a nonce.
    fn nonce(counter: u64, part: Part) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&counter.to_le_bytes());
        n[8] = part as u8;
        n
    }

    /// Keyed BLAKE3, truncated to [`TAG_BYTES`], of the frame's bulk data,
    /// then its head, the head's length (`u32`), the 36-byte header and the
    /// counter (`u64`), all little-endian. Read from the end, the fixed
    /// fields say where the head starts (the header holds the payload's
    /// length), so no two frames hash the same bytes.
    ///
    /// The data comes first so that it starts on one of BLAKE3's 1 KiB
    /// chunk boundaries, where its SIMD lanes hash several chunks at once
    /// (after a 44-byte prefix a 4 KiB payload hashed at half the speed).
    /// The head is the encoded message header of a head-prefixed frame
    /// ([`FLAG_HEAD_PREFIXED`]: the payload is `[u32 n][n bytes][data]`),
    /// empty otherwise, when the whole payload counts as data.
    fn signed_tag<'a>(
        key: &[u8; 32],
        counter: u64,
        header: &[u8; HEADER_BYTES],
        head: &[u8],
        data: impl IntoIterator<Item = &'a [u8]>,
    ) -> [u8; TAG_BYTES] {
        // On the stack: no allocation; wiped below, as it holds the key.
        let mut h = blake3::Hasher::new_keyed(key);
        for d in data {
            h.update(d);
        }
        h.update(head);
        h.update(&(head.len() as u32).to_le_bytes());
        h.update(header);
        h.update(&counter.to_le_bytes());
        let full = h.finalize();
        h.zeroize();
        let mut t = [0u8; TAG_BYTES];
        t.copy_from_slice(&full.as_bytes()[..TAG_BYTES]);
        t
    }

    /// Bytes of the head at the start of a received `payload` whose frame
    /// has `header`: `4 + n` for a head-prefixed frame whose prefix fits
    /// the payload, else 0 (see [`Protect::signed_tag`]).
    fn received_head_len(header: &[u8; HEADER_BYTES], payload: &[u8]) -> usize {
        if header[FLAGS_OFFSET] & FLAG_HEAD_PREFIXED == 0 {
            return 0;
        }
        match payload.first_chunk::<4>() {
            Some(n) => {
                let len = 4 + u32::from_le_bytes(*n) as usize;
                if len <= payload.len() {
                    len
                } else {
                    0
                }
            }
            None => 0,
        }
    }

    /// Signed mode: the tag of the next frame (`header` and its payload
    /// `chunks`; in a head-prefixed frame the first chunk is the head).
    pub fn sign(
        &mut self,
        header: &[u8; HEADER_BYTES],
        chunks: &[Bytes],
    ) -> Result<[u8; TAG_BYTES], FrameError> {
        let counter = self.next_counter()?;
        let Kind::Signed(key) = &self.kind else {
            return Err(FrameError::WrongMode);
        };
        let (head, data): (&[u8], &[Bytes]) = match chunks.split_first() {
            Some((head, data)) if header[FLAGS_OFFSET] & FLAG_HEAD_PREFIXED != 0 => {
                debug_assert_eq!(Self::received_head_len(header, head), head.len());
                (head, data)
            }
            _ => (&[], chunks),
        };
        Ok(Self::signed_tag(
            key,
            counter,
            header,
            head,
            data.iter().map(|c| &c[..]),
        ))
    }

    /// Secure mode: appends the whole next frame to `out`: its `header`
    /// sealed on its own ([`SEALED_HEADER_BYTES`]), then its payload
    /// (`chunks`) encrypted, and the payload's tag.
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
        out.extend_from_slice(header);
        let tag = aes
            .encrypt_in_place_detached(
                Nonce::from_slice(&Self::nonce(counter, Part::Header)),
                &[],
                &mut out[start..],
            )
            .map_err(|_| FrameError::Tag)?;
        out.extend_from_slice(&tag);
        let start = out.len();
        for c in chunks {
            out.extend_from_slice(c);
        }
        // The plaintext header as additional data binds the payload to it.
        let tag = aes
            .encrypt_in_place_detached(
                Nonce::from_slice(&Self::nonce(counter, Part::Payload)),
                header,
                &mut out[start..],
            )
            .map_err(|_| FrameError::Tag)?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Secure mode: opens the sealed header of the next frame (the first
    /// [`SEALED_HEADER_BYTES`] of it on the wire) and returns the plain
    /// header, to be checked and bounded by [`crate::frame::FrameHeader::decode`]
    /// and passed to [`Protect::open`] with the payload. The counter
    /// advances in `open`, which must follow.
    pub fn open_header(
        &self,
        sealed: &[u8; SEALED_HEADER_BYTES],
    ) -> Result<[u8; HEADER_BYTES], FrameError> {
        let Kind::Secure(aes) = &self.kind else {
            return Err(FrameError::WrongMode);
        };
        let mut header = [0u8; HEADER_BYTES];
        header.copy_from_slice(&sealed[..HEADER_BYTES]);
        aes.decrypt_in_place_detached(
            Nonce::from_slice(&Self::nonce(self.counter, Part::Header)),
            &[],
            &mut header,
            Tag::from_slice(&sealed[HEADER_BYTES..]),
        )
        .map_err(|_| FrameError::HeaderTag)?;
        Ok(header)
    }

    /// Receiving: checks (and in secure mode decrypts in place) the next
    /// frame; `body` is the payload followed by the tag, `header` the
    /// plain header (in secure mode, from [`Protect::open_header`]). The
    /// payload is `body[..body.len() - TAG_BYTES]` afterwards.
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
            Kind::Signed(key) => {
                let (head, data) = payload.split_at(Self::received_head_len(header, payload));
                let want = Self::signed_tag(key, counter, header, head, [data]);
                if bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], &tag[..])) {
                    Ok(())
                } else {
                    Err(FrameError::Tag)
                }
            }
            Kind::Secure(aes) => aes
                .decrypt_in_place_detached(
                    Nonce::from_slice(&Self::nonce(counter, Part::Payload)),
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
            parse_modes("signed secure crc").expect("valid"),
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
        assert_eq!(pick(&[9, 5], &[Signed], "x", true), Ok(Signed));
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

    /// One frame as `tx` (signed or secure) puts it on the wire, cut into
    /// the header as it travels (36 bytes in clear, or 52 sealed) and the
    /// body (payload and tag).
    fn send(tx: &mut Protect, h: &[u8; HEADER_BYTES], chunks: &[Bytes]) -> (Vec<u8>, Vec<u8>) {
        let mut out = Vec::new();
        if tx.mode() == WireMode::Signed {
            out.extend_from_slice(h);
            for c in chunks {
                out.extend_from_slice(c);
            }
            out.extend_from_slice(&tx.sign(h, chunks).expect("sign"));
        } else {
            tx.seal_into(h, chunks, &mut out).expect("seal");
        }
        let body = out.split_off(tx.header_len());
        (out, body)
    }

    /// Receives a frame as the reader does: the header (opened first in
    /// secure mode), then the body; the plain header comes back.
    fn receive(
        rx: &mut Protect,
        head: &[u8],
        body: &mut [u8],
    ) -> Result<[u8; HEADER_BYTES], FrameError> {
        let h: [u8; HEADER_BYTES] = if rx.seals_header() {
            let sealed = head.try_into().map_err(|_| FrameError::HeaderTag)?;
            rx.open_header(sealed)?
        } else {
            head.try_into().map_err(|_| FrameError::Tag)?
        };
        rx.open(&h, body)?;
        Ok(h)
    }

    /// One frame through both ends of `mode`, with `tamper` applied to
    /// (header as on the wire, body) on the way.
    fn through(
        mode: WireMode,
        tamper: impl Fn(&mut Vec<u8>, &mut Vec<u8>),
    ) -> Result<(), FrameError> {
        let k = [9u8; 32];
        let (mut tx, mut rx) = (Protect::new(mode, &k), Protect::new(mode, &k));
        let chunks = [Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")];
        let h = header(8);
        let (mut head, mut body) = send(&mut tx, &h, &chunks);
        if mode == WireMode::Secure {
            assert_ne!(&body[..8], b"abcdefgh", "encrypted");
            assert_eq!(head.len(), SEALED_HEADER_BYTES);
            let wire = [&head[..], &body[..]].concat();
            assert!(
                !wire.windows(HEADER_BYTES).any(|w| w == h),
                "the plaintext header is not on the wire"
            );
            assert!(!wire.windows(4).any(|w| w == b"KLMR"), "not even its magic");
        }
        tamper(&mut head, &mut body);
        let got = receive(&mut rx, &head, &mut body)?;
        assert_eq!(got, h);
        assert_eq!(&body[..8], b"abcdefgh");
        Ok(())
    }

    #[test]
    fn any_flipped_bit_fails_the_tag() {
        for mode in [WireMode::Signed, WireMode::Secure] {
            assert_eq!(through(mode, |_, _| {}), Ok(()), "{mode} roundtrip");
            // In secure mode every header byte on the wire is under the
            // header's own tag: a flip fails before any length is read.
            let (head_len, want) = match mode {
                WireMode::Secure => (SEALED_HEADER_BYTES, FrameError::HeaderTag),
                _ => (HEADER_BYTES, FrameError::Tag),
            };
            for i in 0..head_len {
                let r = through(mode, |h, _| h[i] ^= 1);
                assert_eq!(r, Err(want.clone()), "{mode}: header byte {i}");
            }
            for i in 0..8 + TAG_BYTES {
                let r = through(mode, |_, b| b[i] ^= 0x80);
                assert_eq!(r, Err(FrameError::Tag), "{mode}: body byte {i}");
            }
            let r = through(mode, |_, b| b.truncate(4));
            assert_eq!(r, Err(FrameError::Tag), "{mode}: short body");
        }
    }

    #[test]
    fn a_header_and_a_payload_of_different_frames_do_not_match() {
        let k = [6u8; 32];
        let (mut tx, mut rx) = (
            Protect::new(WireMode::Secure, &k),
            Protect::new(WireMode::Secure, &k),
        );
        let h = header(4);
        let (head0, _) = send(&mut tx, &h, &[Bytes::from_static(b"0000")]);
        let (_, mut body1) = send(&mut tx, &h, &[Bytes::from_static(b"1111")]);
        // Frame 0's header opens; frame 1's payload (same plain header)
        // is under the next counter and fails.
        assert_eq!(receive(&mut rx, &head0, &mut body1), Err(FrameError::Tag));
    }

    #[test]
    fn replayed_reordered_and_dropped_frames_fail() {
        for mode in [WireMode::Signed, WireMode::Secure] {
            let k = [3u8; 32];
            let mut tx = Protect::new(mode, &k);
            let h = header(4);
            let frames: Vec<(Vec<u8>, Vec<u8>)> = (0..3u8)
                .map(|i| send(&mut tx, &h, &[Bytes::from(vec![i; 4])]))
                .collect();
            let open = |rx: &mut Protect, i: usize| {
                let (head, body) = &frames[i];
                receive(rx, head, &mut body.clone()).is_ok()
            };
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

    #[test]
    fn the_older_modes_are_refused_by_name() {
        use WireMode::*;
        for (id, mode, name) in [
            (LEGACY_SECURE_ID, Secure, "id 3"),
            (LEGACY_SIGNED_ID, Signed, "id 2"),
        ] {
            assert_eq!(WireMode::from_id(id), None);
            let err = pick(&[id], &[mode], "ms_cluster_mode", true).expect_err("old mode");
            assert!(err.contains("older version") && err.contains(name), "{err}");
            // An old peer that also allows crc gets crc where this side does.
            assert_eq!(pick(&[id, 1], &[Crc, mode], "x", true), Ok(Crc));
        }
        assert_eq!(legacy_mode(WireMode::Signed.id()), None);
    }

    #[test]
    fn a_signed_tag_is_keyed_blake3_of_data_head_header_and_counter() {
        use crate::message::Message;
        let key = [0x42u8; 32];
        let mut head = 5u32.to_le_bytes().to_vec();
        head.extend_from_slice(b"front");
        let data = Bytes::from(vec![9u8; 5000]);
        for prefixed in [true, false] {
            let msg = if prefixed {
                Message::head_prefixed(3, Bytes::from(head.clone()), [data.clone()])
            } else {
                Message::from_chunks(3, [Bytes::from(head.clone()), data.clone()])
            };
            assert_eq!(msg.is_head_prefixed(), prefixed);
            let header = FrameHeader::for_message_uncrc(1, 0, &msg).encode();
            let mut tx = Protect::new(WireMode::Signed, &key);
            let _ = tx.sign(&header, msg.chunks()).expect("frame 0");
            let tag = tx.sign(&header, msg.chunks()).expect("frame 1");
            // The bytes hashed, built by hand from the definition.
            let head_len = if prefixed { head.len() } else { 0 };
            let payload = msg.to_vec();
            let mut all = payload[head_len..].to_vec();
            all.extend_from_slice(&payload[..head_len]);
            all.extend_from_slice(&(head_len as u32).to_le_bytes());
            all.extend_from_slice(&header);
            all.extend_from_slice(&1u64.to_le_bytes());
            let want = blake3::keyed_hash(&key, &all);
            assert_eq!(tag[..], want.as_bytes()[..TAG_BYTES], "prefixed {prefixed}");
            // And the receiver, which sees the payload in one piece, agrees.
            let mut rx = Protect::new(WireMode::Signed, &key);
            rx.counter = 1;
            let mut body = payload.clone();
            body.extend_from_slice(&tag);
            rx.open(&header, &mut body).expect("tag checks");
        }
    }

    /// The bytes of a `ManuallyDrop<T>` (only read once they are all
    /// initialised, i.e. after a wipe).
    fn bytes_of<T>(v: &ManuallyDrop<T>) -> &[u8] {
        // SAFETY: the memory is `size_of::<T>()` bytes of `v`, all written
        // (zeroed) by `wipe` before this is called.
        unsafe {
            std::slice::from_raw_parts(
                (v as *const ManuallyDrop<T>).cast::<u8>(),
                std::mem::size_of::<T>(),
            )
        }
    }

    #[test]
    fn wiping_zeroes_every_byte_of_the_keyed_states() {
        use hmac::{Hmac, Mac};
        let hmac = <Hmac<Sha256> as Mac>::new_from_slice(&[0xa5; 32]).expect("any length");
        let mut hmac = ManuallyDrop::new(hmac);
        let aes = Aes128Gcm::new_from_slice(&[0x5a; 16]).expect("16 bytes");
        let mut aes = ManuallyDrop::new(aes);
        // SAFETY: neither value is used after its wipe (only its bytes).
        unsafe {
            wipe(&mut hmac);
            wipe(&mut aes);
        }
        assert!(bytes_of(&hmac).iter().all(|&b| b == 0), "hmac state");
        assert!(bytes_of(&aes).iter().all(|&b| b == 0), "aes-gcm state");
        // What `Wiped`'s drop does, and the direction keys wipe themselves.
        drop(Wiped::new(
            Aes128Gcm::new_from_slice(&[1; 16]).expect("16 bytes"),
        ));
        let k = direction_key(&key(), &[4], WireMode::Secure, Direction::ToAcceptor);
        let _: &Zeroizing<[u8; 32]> = &k;
    }
}
