use proptest::prelude::*;

use super::consts::*;
use super::handshake::{BlockSizes, Session};
use super::request::*;

fn session(structured: bool, agreed: bool, min: u32) -> Session {
    Session {
        size_bytes: 1 << 20,
        flags: FLAG_HAS_FLAGS
            | FLAG_SEND_FLUSH
            | FLAG_SEND_FUA
            | FLAG_SEND_TRIM
            | FLAG_SEND_WRITE_ZEROES,
        structured_replies: structured,
        block_sizes: BlockSizes {
            min_bytes: min,
            preferred_bytes: 4096,
            max_payload_bytes: 64 * 1024,
        },
        block_sizes_agreed: agreed,
    }
}

fn req(command: u16, flags: u16, offset: u64, length: u32) -> RequestHeader {
    RequestHeader {
        flags,
        command,
        handle: 42,
        offset,
        length,
    }
}

fn errno(r: Result<Command, Refusal>) -> Option<Errno> {
    r.err().map(|e| e.errno)
}

#[test]
fn header_round_trip_and_bad_magic() {
    let h = req(CMD_WRITE, CMD_FLAG_FUA, 4096, 512);
    assert_eq!(RequestHeader::parse(&h.encode()), Ok(h));
    assert_eq!(h.payload_bytes(), 512);
    assert_eq!(req(CMD_READ, 0, 0, 512).payload_bytes(), 0);
    let mut raw = h.encode();
    raw[0] = 0;
    assert!(RequestHeader::parse(&raw).is_err());
}

#[test]
fn valid_requests() {
    let s = session(true, false, 1);
    assert_eq!(
        validate(&req(CMD_READ, 0, 1, 3), &s),
        Ok(Command::Read { offset: 1, len: 3 })
    );
    assert_eq!(
        validate(&req(CMD_WRITE, CMD_FLAG_FUA, 0, 4096), &s),
        Ok(Command::Write {
            offset: 0,
            len: 4096,
            fua: true
        })
    );
    assert_eq!(validate(&req(CMD_FLUSH, 0, 0, 0), &s), Ok(Command::Flush));
    assert_eq!(
        validate(
            &req(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, (1 << 20) - 8, 8),
            &s
        ),
        Ok(Command::WriteZeroes {
            offset: (1 << 20) - 8,
            len: 8,
            fua: false,
            no_hole: true
        })
    );
    // Trim and zero are not bound by the payload limit.
    assert!(validate(&req(CMD_TRIM, 0, 0, 1 << 20), &s).is_ok());
    assert_eq!(
        validate(&req(CMD_DISC, 0, 0, 0), &s),
        Ok(Command::Disconnect)
    );
    assert!(validate(&req(CMD_READ, CMD_FLAG_DF, 0, 512), &s).is_ok());
}

#[test]
fn refused_requests_get_the_spec_errors() {
    let s = session(false, false, 1);
    assert_eq!(errno(validate(&req(99, 0, 0, 512), &s)), Some(Errno::Inval));
    assert_eq!(
        errno(validate(&req(CMD_BLOCK_STATUS, 0, 0, 512), &s)),
        Some(Errno::Inval)
    );
    assert_eq!(
        errno(validate(&req(CMD_CACHE, 0, 0, 512), &s)),
        Some(Errno::Inval)
    );
    // DF needs structured replies; NO_HOLE is only for WRITE_ZEROES.
    assert_eq!(
        errno(validate(&req(CMD_READ, CMD_FLAG_DF, 0, 512), &s)),
        Some(Errno::Inval)
    );
    assert_eq!(
        errno(validate(&req(CMD_WRITE, CMD_FLAG_NO_HOLE, 0, 512), &s)),
        Some(Errno::Inval)
    );
    assert_eq!(
        errno(validate(
            &req(CMD_WRITE_ZEROES, CMD_FLAG_FAST_ZERO, 0, 512),
            &s
        )),
        Some(Errno::Inval)
    );
    assert_eq!(
        errno(validate(&req(CMD_READ, 0x8000, 0, 512), &s)),
        Some(Errno::Inval)
    );
    // Out of range: writes ENOSPC, reads EINVAL; overflow is caught.
    assert_eq!(
        errno(validate(&req(CMD_WRITE, 0, (1 << 20) - 1, 2), &s)),
        Some(Errno::NoSpc)
    );
    assert_eq!(
        errno(validate(&req(CMD_TRIM, 0, u64::MAX, 2), &s)),
        Some(Errno::NoSpc)
    );
    assert_eq!(
        errno(validate(&req(CMD_READ, 0, 1 << 20, 1), &s)),
        Some(Errno::Inval)
    );
    assert_eq!(
        errno(validate(&req(CMD_READ, 0, u64::MAX - 1, 4), &s)),
        Some(Errno::Inval)
    );
    // Too large a payload, zero length, flush with a range.
    assert_eq!(
        errno(validate(&req(CMD_WRITE, 0, 0, 64 * 1024 + 1), &s)),
        Some(Errno::Inval)
    );
    assert_eq!(
        errno(validate(&req(CMD_READ, 0, 0, 0), &s)),
        Some(Errno::Inval)
    );
    assert_eq!(
        errno(validate(&req(CMD_FLUSH, 0, 0, 512), &s)),
        Some(Errno::Inval)
    );
}

#[test]
fn alignment_is_enforced_only_once_agreed() {
    let loose = session(true, false, 512);
    assert!(validate(&req(CMD_WRITE, 0, 1, 3), &loose).is_ok());
    let strict = session(true, true, 512);
    assert_eq!(
        errno(validate(&req(CMD_WRITE, 0, 1, 512), &strict)),
        Some(Errno::Inval)
    );
    assert_eq!(
        errno(validate(&req(CMD_READ, 0, 512, 100), &strict)),
        Some(Errno::Inval)
    );
    assert!(validate(&req(CMD_READ, 0, 512, 1024), &strict).is_ok());
}

#[test]
fn read_only_exports_refuse_writes_with_eperm() {
    let mut s = session(false, false, 1);
    s.flags |= FLAG_READ_ONLY;
    assert_eq!(
        errno(validate(&req(CMD_WRITE, 0, 0, 512), &s)),
        Some(Errno::Perm)
    );
    assert_eq!(
        errno(validate(&req(CMD_TRIM, 0, 0, 512), &s)),
        Some(Errno::Perm)
    );
    assert!(validate(&req(CMD_READ, 0, 0, 512), &s).is_ok());
}

proptest! {
    /// Whatever the header, validation does not panic, and an accepted
    /// data command lies inside the export and within the payload limit.
    #[test]
    fn accepted_commands_are_in_bounds(
        command in 0u16..10, flags in any::<u16>(), offset in any::<u64>(), length in any::<u32>(),
        structured in any::<bool>(), agreed in any::<bool>(), min in prop::sample::select(vec![1u32, 512, 4096]),
    ) {
        let s = session(structured, agreed, min);
        if let Ok(c) = validate(&req(command, flags, offset, length), &s) {
            let range = match c {
                Command::Read { offset, len } | Command::Write { offset, len, .. } => {
                    prop_assert!(len <= s.block_sizes.max_payload_bytes);
                    Some((offset, len))
                }
                Command::Trim { offset, len, .. } | Command::WriteZeroes { offset, len, .. } => Some((offset, len)),
                Command::Flush | Command::Disconnect => None,
            };
            if let Some((o, l)) = range {
                prop_assert!(l > 0 && o + u64::from(l) <= s.size_bytes);
                if agreed {
                    prop_assert!(o % u64::from(min) == 0 && u64::from(l) % u64::from(min) == 0);
                }
            }
        }
    }
}
