//! The fixed newstyle handshake as pure logic: the greeting, the client
//! flags, option parsing and the decision for each option. The server's
//! I/O code feeds bytes in and writes what comes out; nothing here touches
//! a socket, so every malformed input can be tested on its own.

use super::consts::*;

/// Longest option payload the server reads; a longer one is skipped and
/// answered with `NBD_REP_ERR_TOO_BIG` (export names are at most 4 KiB, so
/// no valid option comes close).
pub const MAX_OPTION_BYTES: u32 = 16 * 1024;

/// Block size constraints advertised with `NBD_INFO_BLOCK_SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    pub min_bytes: u32,
    pub preferred_bytes: u32,
    /// Largest read or write payload the server accepts.
    pub max_payload_bytes: u32,
}

/// What the server exports (one export per server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo {
    /// Canonical name, listed by `NBD_OPT_LIST`; the empty (default) name
    /// selects this export too.
    pub name: String,
    pub description: String,
    pub size_bytes: u64,
    pub read_only: bool,
    pub can_multi_conn: bool,
    pub block_sizes: BlockSizes,
}

impl ExportInfo {
    /// True if a client asking for `name` gets this export.
    pub fn matches(&self, name: &[u8]) -> bool {
        name.is_empty() || name == self.name.as_bytes()
    }

    /// Transmission flags, given whether structured replies were agreed.
    pub fn transmission_flags(&self, structured: bool) -> u16 {
        let mut f = FLAG_HAS_FLAGS
            | FLAG_SEND_FLUSH
            | FLAG_SEND_FUA
            | FLAG_SEND_TRIM
            | FLAG_SEND_WRITE_ZEROES;
        if self.read_only {
            f |= FLAG_READ_ONLY;
        }
        if self.can_multi_conn {
            f |= FLAG_CAN_MULTI_CONN;
        }
        if structured {
            // Reads are always answered in one chunk, so DF costs nothing.
            f |= FLAG_SEND_DF;
        }
        f
    }
}

/// The greeting the server sends first: magic, newstyle magic, flags.
pub fn greeting() -> [u8; 18] {
    let mut b = [0u8; 18];
    b[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..18].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    b
}

/// A handshake the server must end by closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("client flags {0:#x} contain bits this server does not know")]
    UnknownClientFlags(u32),
    #[error("option header has magic {0:#x}, not IHAVEOPT")]
    BadOptionMagic(u64),
    #[error("option {0} is not allowed without fixed newstyle negotiation")]
    NotFixedNewstyle(u32),
    #[error("NBD_OPT_EXPORT_NAME asked for unknown export {0:?}")]
    UnknownExport(String),
    #[error("NBD_OPT_EXPORT_NAME carries {0} bytes, more than an export name may have")]
    ExportNameTooLong(u32),
}

/// What the client announced after the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlags {
    pub fixed_newstyle: bool,
    pub no_zeroes: bool,
}

/// Parses the client's 32-bit flags; unknown bits end the session.
pub fn parse_client_flags(raw: [u8; 4]) -> Result<ClientFlags, HandshakeError> {
    let v = u32::from_be_bytes(raw);
    if v & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(HandshakeError::UnknownClientFlags(v));
    }
    Ok(ClientFlags {
        fixed_newstyle: v & FLAG_C_FIXED_NEWSTYLE != 0,
        no_zeroes: v & FLAG_C_NO_ZEROES != 0,
    })
}

/// An option request header: the option and the length of its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub len: u32,
}

pub fn parse_option_header(
    raw: &[u8; OPTION_HEADER_BYTES],
) -> Result<OptionHeader, HandshakeError> {
    let magic = u64::from_be_bytes(arr8(&raw[0..8]));
    if magic != IHAVEOPT {
        return Err(HandshakeError::BadOptionMagic(magic));
    }
    Ok(OptionHeader {
        option: u32::from_be_bytes(arr4(&raw[8..12])),
        len: u32::from_be_bytes(arr4(&raw[12..16])),
    })
}

/// One option reply (fixed newstyle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptReply {
    pub option: u32,
    pub reply_type: u32,
    pub data: Vec<u8>,
}

impl OptReply {
    fn ack(option: u32) -> OptReply {
        OptReply {
            option,
            reply_type: REP_ACK,
            data: Vec::new(),
        }
    }

    fn error(option: u32, reply_type: u32, message: &str) -> OptReply {
        OptReply {
            option,
            reply_type,
            data: message.as_bytes().to_vec(),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
        out.extend_from_slice(&self.option.to_be_bytes());
        out.extend_from_slice(&self.reply_type.to_be_bytes());
        out.extend_from_slice(&(self.data.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.data);
    }
}

/// The parameters of the transmission phase, fixed by the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub size_bytes: u64,
    pub flags: u16,
    pub structured_replies: bool,
    pub block_sizes: BlockSizes,
    /// The client asked for `NBD_INFO_BLOCK_SIZE` in `NBD_OPT_GO`, so it
    /// promised to respect the minimum block size.
    pub block_sizes_agreed: bool,
}

/// The decision for one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptOutcome {
    /// Send the replies and wait for the next option.
    Continue(Vec<OptReply>),
    /// Send the replies (an ACK) and close: `NBD_OPT_ABORT`.
    Abort(Vec<OptReply>),
    /// Send `bytes` and enter transmission with `session`.
    Transmit { bytes: Vec<u8>, session: Session },
    /// Close without a reply.
    Disconnect(HandshakeError),
}

/// The negotiation state of one connection.
#[derive(Debug, Clone)]
pub struct Negotiator {
    export: ExportInfo,
    client: ClientFlags,
    structured: bool,
}

impl Negotiator {
    pub fn new(export: ExportInfo, client: ClientFlags) -> Negotiator {
        Negotiator {
            export,
            client,
            structured: false,
        }
    }

    /// The decision for an option whose data (`len` bytes) is longer than
    /// [`MAX_OPTION_BYTES`]: the caller skips the data, then sends this.
    pub fn oversized(&self, h: OptionHeader) -> OptOutcome {
        if h.option == OPT_EXPORT_NAME || !self.client.fixed_newstyle {
            return OptOutcome::Disconnect(HandshakeError::ExportNameTooLong(h.len));
        }
        OptOutcome::Continue(vec![OptReply::error(
            h.option,
            REP_ERR_TOO_BIG,
            &format!("option data of {} bytes exceeds {MAX_OPTION_BYTES}", h.len),
        )])
    }

    /// Decides what to do with option `option` carrying `data`.
    pub fn handle(&mut self, option: u32, data: &[u8]) -> OptOutcome {
        if option == OPT_EXPORT_NAME {
            return self.export_name(data);
        }
        if !self.client.fixed_newstyle {
            return OptOutcome::Disconnect(HandshakeError::NotFixedNewstyle(option));
        }
        let reply = match option {
            OPT_ABORT => return OptOutcome::Abort(vec![OptReply::ack(option)]),
            OPT_LIST => self.list(data),
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    vec![OptReply::error(
                        option,
                        REP_ERR_INVALID,
                        "NBD_OPT_STRUCTURED_REPLY takes no data",
                    )]
                } else {
                    self.structured = true;
                    vec![OptReply::ack(option)]
                }
            }
            OPT_INFO | OPT_GO => return self.info_or_go(option, data),
            OPT_STARTTLS => vec![OptReply::error(
                option,
                REP_ERR_UNSUP,
                "TLS is not supported (loopback only)",
            )],
            _ => vec![OptReply::error(
                option,
                REP_ERR_UNSUP,
                &format!("option {option} is not supported"),
            )],
        };
        OptOutcome::Continue(reply)
    }

    fn session(&self, block_sizes_agreed: bool) -> Session {
        Session {
            size_bytes: self.export.size_bytes,
            flags: self.export.transmission_flags(self.structured),
            structured_replies: self.structured,
            block_sizes: self.export.block_sizes,
            block_sizes_agreed,
        }
    }

    fn export_name(&self, data: &[u8]) -> OptOutcome {
        if !self.export.matches(data) {
            return OptOutcome::Disconnect(HandshakeError::UnknownExport(
                String::from_utf8_lossy(data).into_owned(),
            ));
        }
        let s = self.session(false);
        let mut bytes = Vec::with_capacity(134);
        bytes.extend_from_slice(&s.size_bytes.to_be_bytes());
        bytes.extend_from_slice(&s.flags.to_be_bytes());
        if !self.client.no_zeroes {
            bytes.extend_from_slice(&[0u8; 124]);
        }
        OptOutcome::Transmit { bytes, session: s }
    }

    fn list(&self, data: &[u8]) -> Vec<OptReply> {
        if !data.is_empty() {
            return vec![OptReply::error(
                OPT_LIST,
                REP_ERR_INVALID,
                "NBD_OPT_LIST takes no data",
            )];
        }
        let name = self.export.name.as_bytes();
        let mut d = Vec::with_capacity(4 + name.len());
        d.extend_from_slice(&(name.len() as u32).to_be_bytes());
        d.extend_from_slice(name);
        vec![
            OptReply {
                option: OPT_LIST,
                reply_type: REP_SERVER,
                data: d,
            },
            OptReply::ack(OPT_LIST),
        ]
    }

    fn info_or_go(&mut self, option: u32, data: &[u8]) -> OptOutcome {
        let Some((name, requests)) = parse_info_request(data) else {
            return OptOutcome::Continue(vec![OptReply::error(
                option,
                REP_ERR_INVALID,
                "malformed NBD_OPT_INFO/GO data (name length, name, request count, requests)",
            )]);
        };
        if !self.export.matches(name) {
            return OptOutcome::Continue(vec![OptReply::error(
                option,
                REP_ERR_UNKNOWN,
                &format!("no export named {:?}", String::from_utf8_lossy(name)),
            )]);
        }
        let asked_block_size = requests.contains(&INFO_BLOCK_SIZE);
        let s = self.session(option == OPT_GO && asked_block_size);
        let mut replies = Vec::with_capacity(4);
        let mut export = Vec::with_capacity(12);
        export.extend_from_slice(&INFO_EXPORT.to_be_bytes());
        export.extend_from_slice(&s.size_bytes.to_be_bytes());
        export.extend_from_slice(&s.flags.to_be_bytes());
        replies.push(info(option, export));
        // Sent even unasked: a client may use it as a hint.
        let b = self.export.block_sizes;
        let mut bs = Vec::with_capacity(14);
        bs.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        for v in [b.min_bytes, b.preferred_bytes, b.max_payload_bytes] {
            bs.extend_from_slice(&v.to_be_bytes());
        }
        replies.push(info(option, bs));
        if requests.contains(&INFO_NAME) {
            let mut n = INFO_NAME.to_be_bytes().to_vec();
            n.extend_from_slice(self.export.name.as_bytes());
            replies.push(info(option, n));
        }
        if requests.contains(&INFO_DESCRIPTION) && !self.export.description.is_empty() {
            let mut d = INFO_DESCRIPTION.to_be_bytes().to_vec();
            d.extend_from_slice(self.export.description.as_bytes());
            replies.push(info(option, d));
        }
        replies.push(OptReply::ack(option));
        if option == OPT_INFO {
            return OptOutcome::Continue(replies);
        }
        let mut bytes = Vec::new();
        for r in &replies {
            r.encode(&mut bytes);
        }
        OptOutcome::Transmit { bytes, session: s }
    }
}

fn info(option: u32, data: Vec<u8>) -> OptReply {
    OptReply {
        option,
        reply_type: REP_INFO,
        data,
    }
}

/// Splits NBD_OPT_INFO/GO data into the export name and the information
/// requests; `None` when the lengths do not add up.
fn parse_info_request(data: &[u8]) -> Option<(&[u8], Vec<u16>)> {
    let name_len = u32::from_be_bytes(arr4(data.get(0..4)?)) as usize;
    if name_len > MAX_STRING_BYTES {
        return None;
    }
    let name = data.get(4..4 + name_len)?;
    let rest = &data[4 + name_len..];
    let n = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let reqs = &rest[2..];
    if reqs.len() != 2 * n {
        return None;
    }
    Some((
        name,
        reqs.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    ))
}

pub(crate) fn arr4(s: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&s[..4]);
    a
}

pub(crate) fn arr8(s: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&s[..8]);
    a
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
