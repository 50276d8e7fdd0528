//! Transmission-phase requests: the header on the wire and its checks
//! against the session (bounds, flags, alignment, payload size), as pure
//! functions. A request that fails its checks gets an NBD error; only a
//! header with a bad magic ends the connection (the stream cannot be
//! resynchronised after it).

use super::consts::*;
use super::handshake::{arr4, arr8, Session};

/// A request header as sent by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub flags: u16,
    pub command: u16,
    pub handle: u64,
    pub offset: u64,
    pub length: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request header has magic {0:#x}, not NBD_REQUEST_MAGIC: the stream is out of sync")]
pub struct BadRequestMagic(pub u32);

impl RequestHeader {
    pub fn parse(raw: &[u8; REQUEST_HEADER_BYTES]) -> Result<RequestHeader, BadRequestMagic> {
        let magic = u32::from_be_bytes(arr4(&raw[0..4]));
        if magic != REQUEST_MAGIC {
            return Err(BadRequestMagic(magic));
        }
        Ok(RequestHeader {
            flags: u16::from_be_bytes([raw[4], raw[5]]),
            command: u16::from_be_bytes([raw[6], raw[7]]),
            handle: u64::from_be_bytes(arr8(&raw[8..16])),
            offset: u64::from_be_bytes(arr8(&raw[16..24])),
            length: u32::from_be_bytes(arr4(&raw[24..28])),
        })
    }

    pub fn encode(&self) -> [u8; REQUEST_HEADER_BYTES] {
        let mut b = [0u8; REQUEST_HEADER_BYTES];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.command.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Bytes of payload that follow this header on the wire, whether or
    /// not the request is valid (only writes carry one).
    pub fn payload_bytes(&self) -> u32 {
        if self.command == CMD_WRITE {
            self.length
        } else {
            0
        }
    }
}

/// A checked request, ready for the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read {
        offset: u64,
        len: u32,
    },
    Write {
        offset: u64,
        len: u32,
        fua: bool,
    },
    Flush,
    Trim {
        offset: u64,
        len: u32,
        fua: bool,
    },
    WriteZeroes {
        offset: u64,
        len: u32,
        fua: bool,
        no_hole: bool,
    },
    Disconnect,
}

/// Why a request is refused: the NBD error and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub errno: Errno,
    pub message: String,
}

fn refuse(errno: Errno, message: String) -> Refusal {
    Refusal { errno, message }
}

/// Checks `h` against the session; see the module documentation.
pub fn validate(h: &RequestHeader, s: &Session) -> Result<Command, Refusal> {
    let name = command_name(h.command);
    let allowed = match h.command {
        CMD_READ if s.structured_replies => CMD_FLAG_FUA | CMD_FLAG_DF,
        CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
        CMD_READ | CMD_WRITE | CMD_DISC | CMD_FLUSH | CMD_TRIM => CMD_FLAG_FUA,
        other => {
            return Err(refuse(
                Errno::Inval,
                format!("unknown or unsupported command {other}"),
            ))
        }
    };
    if h.flags & !allowed != 0 {
        return Err(refuse(
            Errno::Inval,
            format!(
                "{name}: flags {:#x} not valid for this command",
                h.flags & !allowed
            ),
        ));
    }
    let fua = h.flags & CMD_FLAG_FUA != 0;
    match h.command {
        CMD_DISC => return Ok(Command::Disconnect),
        CMD_FLUSH => {
            if h.offset != 0 || h.length != 0 {
                return Err(refuse(
                    Errno::Inval,
                    "NBD_CMD_FLUSH: offset and length must be 0".into(),
                ));
            }
            return Ok(Command::Flush);
        }
        _ => {}
    }
    if h.length == 0 {
        return Err(refuse(Errno::Inval, format!("{name}: length 0")));
    }
    let is_write = matches!(h.command, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    if is_write && s.flags & FLAG_READ_ONLY != 0 {
        return Err(refuse(
            Errno::Perm,
            format!("{name}: the export is read-only"),
        ));
    }
    if matches!(h.command, CMD_READ | CMD_WRITE) && h.length > s.block_sizes.max_payload_bytes {
        return Err(refuse(
            Errno::Inval,
            format!(
                "{name}: length {} exceeds the maximum payload of {} bytes",
                h.length, s.block_sizes.max_payload_bytes
            ),
        ));
    }
    let end = h.offset.checked_add(u64::from(h.length));
    if end.is_none_or(|e| e > s.size_bytes) {
        let errno = if is_write { Errno::NoSpc } else { Errno::Inval };
        return Err(refuse(
            errno,
            format!(
                "{name}: offset {} length {} is beyond the export size {}",
                h.offset, h.length, s.size_bytes
            ),
        ));
    }
    let min = u64::from(s.block_sizes.min_bytes.max(1));
    if s.block_sizes_agreed
        && (!h.offset.is_multiple_of(min) || !u64::from(h.length).is_multiple_of(min))
    {
        return Err(refuse(
            Errno::Inval,
            format!(
                "{name}: offset {} length {} not aligned to the minimum block size {min}",
                h.offset, h.length
            ),
        ));
    }
    let (offset, len) = (h.offset, h.length);
    Ok(match h.command {
        CMD_READ => Command::Read { offset, len },
        CMD_WRITE => Command::Write { offset, len, fua },
        CMD_TRIM => Command::Trim { offset, len, fua },
        _ => Command::WriteZeroes {
            offset,
            len,
            fua,
            no_hole: h.flags & CMD_FLAG_NO_HOLE != 0,
        },
    })
}

/// The command's name in messages.
pub fn command_name(command: u16) -> &'static str {
    match command {
        CMD_READ => "NBD_CMD_READ",
        CMD_WRITE => "NBD_CMD_WRITE",
        CMD_DISC => "NBD_CMD_DISC",
        CMD_FLUSH => "NBD_CMD_FLUSH",
        CMD_TRIM => "NBD_CMD_TRIM",
        CMD_CACHE => "NBD_CMD_CACHE",
        CMD_WRITE_ZEROES => "NBD_CMD_WRITE_ZEROES",
        CMD_BLOCK_STATUS => "NBD_CMD_BLOCK_STATUS",
        _ => "unknown command",
    }
}
