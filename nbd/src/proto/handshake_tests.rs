use proptest::prelude::*;

use super::*;

fn export() -> ExportInfo {
    ExportInfo {
        name: "kalmar".into(),
        description: "test export".into(),
        size_bytes: 1 << 30,
        read_only: false,
        can_multi_conn: true,
        block_sizes: BlockSizes {
            min_bytes: 1,
            preferred_bytes: 4096,
            max_payload_bytes: 32 << 20,
        },
    }
}

const FIXED: ClientFlags = ClientFlags {
    fixed_newstyle: true,
    no_zeroes: true,
};

fn go_data(name: &[u8], requests: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name);
    d.extend_from_slice(&(requests.len() as u16).to_be_bytes());
    for r in requests {
        d.extend_from_slice(&r.to_be_bytes());
    }
    d
}

/// Splits encoded option replies back into (option, type, data).
fn decode_replies(mut b: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert_eq!(u64::from_be_bytes(arr8(&b[0..8])), OPT_REPLY_MAGIC);
        let opt = u32::from_be_bytes(arr4(&b[8..12]));
        let ty = u32::from_be_bytes(arr4(&b[12..16]));
        let len = u32::from_be_bytes(arr4(&b[16..20])) as usize;
        out.push((opt, ty, b[20..20 + len].to_vec()));
        b = &b[20 + len..];
    }
    out
}

#[test]
fn greeting_announces_fixed_newstyle_and_no_zeroes() {
    let g = greeting();
    assert_eq!(&g[0..8], b"NBDMAGIC");
    assert_eq!(&g[8..16], b"IHAVEOPT");
    assert_eq!(u16::from_be_bytes([g[16], g[17]]), 3);
}

#[test]
fn client_flags_reject_unknown_bits() {
    assert_eq!(parse_client_flags([0, 0, 0, 3]), Ok(FIXED));
    assert_eq!(
        parse_client_flags([0, 0, 0, 4]),
        Err(HandshakeError::UnknownClientFlags(4))
    );
}

#[test]
fn option_header_checks_magic() {
    let mut h = [0u8; 16];
    h[0..8].copy_from_slice(b"IHAVEOPT");
    h[8..12].copy_from_slice(&7u32.to_be_bytes());
    h[12..16].copy_from_slice(&9u32.to_be_bytes());
    assert_eq!(
        parse_option_header(&h),
        Ok(OptionHeader { option: 7, len: 9 })
    );
    h[0] = b'X';
    assert!(matches!(
        parse_option_header(&h),
        Err(HandshakeError::BadOptionMagic(_))
    ));
}

#[test]
fn go_enters_transmission_with_info_and_ack() {
    let mut n = Negotiator::new(export(), FIXED);
    assert_eq!(
        n.handle(OPT_STRUCTURED_REPLY, &[]),
        OptOutcome::Continue(vec![OptReply::ack(OPT_STRUCTURED_REPLY)])
    );
    let OptOutcome::Transmit { bytes, session } =
        n.handle(OPT_GO, &go_data(b"", &[INFO_BLOCK_SIZE, INFO_NAME]))
    else {
        panic!("GO must enter transmission");
    };
    assert!(session.structured_replies);
    assert!(session.block_sizes_agreed);
    assert_eq!(session.size_bytes, 1 << 30);
    assert_ne!(session.flags & FLAG_SEND_DF, 0);
    assert_ne!(session.flags & FLAG_CAN_MULTI_CONN, 0);
    let replies = decode_replies(&bytes);
    let types: Vec<u32> = replies.iter().map(|r| r.1).collect();
    assert_eq!(types, vec![REP_INFO, REP_INFO, REP_INFO, REP_ACK]);
    let export_info = &replies[0].2;
    assert_eq!(&export_info[0..2], &INFO_EXPORT.to_be_bytes());
    assert_eq!(u64::from_be_bytes(arr8(&export_info[2..10])), 1 << 30);
    assert_eq!(
        u16::from_be_bytes([export_info[10], export_info[11]]),
        session.flags
    );
    assert_eq!(&replies[2].2[2..], b"kalmar");
}

#[test]
fn info_does_not_enter_transmission_and_unknown_export_is_an_error() {
    let mut n = Negotiator::new(export(), FIXED);
    let OptOutcome::Continue(r) = n.handle(OPT_INFO, &go_data(b"kalmar", &[])) else {
        panic!("INFO continues");
    };
    assert_eq!(r.last().map(|r| r.reply_type), Some(REP_ACK));
    let OptOutcome::Continue(r) = n.handle(OPT_GO, &go_data(b"other", &[])) else {
        panic!("unknown export in GO is an option error");
    };
    assert_eq!(r[0].reply_type, REP_ERR_UNKNOWN);
}

#[test]
fn go_without_block_size_request_does_not_agree_to_alignment() {
    let mut n = Negotiator::new(export(), FIXED);
    let OptOutcome::Transmit { session, .. } = n.handle(OPT_GO, &go_data(b"", &[])) else {
        panic!("GO");
    };
    assert!(!session.block_sizes_agreed);
    assert!(!session.structured_replies);
    assert_eq!(session.flags & FLAG_SEND_DF, 0);
}

#[test]
fn export_name_replies_size_flags_and_zeroes_unless_no_zeroes() {
    let n = Negotiator::new(
        export(),
        ClientFlags {
            fixed_newstyle: true,
            no_zeroes: false,
        },
    );
    let OptOutcome::Transmit { bytes, session } = n.clone().handle(OPT_EXPORT_NAME, b"kalmar")
    else {
        panic!("EXPORT_NAME");
    };
    assert_eq!(bytes.len(), 8 + 2 + 124);
    assert_eq!(u16::from_be_bytes([bytes[8], bytes[9]]), session.flags);
    let mut n2 = Negotiator::new(export(), FIXED);
    let OptOutcome::Transmit { bytes, .. } = n2.handle(OPT_EXPORT_NAME, b"") else {
        panic!("EXPORT_NAME");
    };
    assert_eq!(bytes.len(), 10);
    assert!(matches!(
        n2.handle(OPT_EXPORT_NAME, b"nope"),
        OptOutcome::Disconnect(HandshakeError::UnknownExport(_))
    ));
}

#[test]
fn list_abort_starttls_and_unknown_options() {
    let mut n = Negotiator::new(export(), FIXED);
    let OptOutcome::Continue(r) = n.handle(OPT_LIST, &[]) else {
        panic!("LIST")
    };
    assert_eq!(r[0].reply_type, REP_SERVER);
    assert_eq!(&r[0].data[4..], b"kalmar");
    assert_eq!(r[1].reply_type, REP_ACK);
    let OptOutcome::Continue(r) = n.handle(OPT_LIST, b"x") else {
        panic!("LIST")
    };
    assert_eq!(r[0].reply_type, REP_ERR_INVALID);
    let OptOutcome::Continue(r) = n.handle(OPT_STARTTLS, &[]) else {
        panic!("STARTTLS")
    };
    assert_eq!(r[0].reply_type, REP_ERR_UNSUP);
    for opt in [
        OPT_SET_META_CONTEXT,
        OPT_LIST_META_CONTEXT,
        OPT_EXTENDED_HEADERS,
        4,
        999,
    ] {
        let OptOutcome::Continue(r) = n.handle(opt, &[1, 2, 3]) else {
            panic!("unknown")
        };
        assert_eq!(r[0].reply_type, REP_ERR_UNSUP);
        assert!(rep_is_error(r[0].reply_type));
    }
    assert_eq!(
        n.handle(OPT_ABORT, &[]),
        OptOutcome::Abort(vec![OptReply::ack(OPT_ABORT)])
    );
}

#[test]
fn oversized_and_non_fixed_clients() {
    let n = Negotiator::new(export(), FIXED);
    let h = OptionHeader {
        option: OPT_GO,
        len: MAX_OPTION_BYTES + 1,
    };
    let OptOutcome::Continue(r) = n.oversized(h) else {
        panic!("too big")
    };
    assert_eq!(r[0].reply_type, REP_ERR_TOO_BIG);
    assert!(matches!(
        n.oversized(OptionHeader {
            option: OPT_EXPORT_NAME,
            len: 1 << 20
        }),
        OptOutcome::Disconnect(_)
    ));
    let mut old = Negotiator::new(
        export(),
        ClientFlags {
            fixed_newstyle: false,
            no_zeroes: false,
        },
    );
    assert!(matches!(
        old.handle(OPT_GO, &go_data(b"", &[])),
        OptOutcome::Disconnect(_)
    ));
    assert!(matches!(
        old.handle(OPT_EXPORT_NAME, b""),
        OptOutcome::Transmit { .. }
    ));
}

#[test]
fn malformed_info_requests_are_invalid() {
    let mut n = Negotiator::new(export(), FIXED);
    let mut bad = go_data(b"kalmar", &[INFO_NAME]);
    bad.pop();
    for data in [vec![], vec![0, 0], vec![0xff, 0xff, 0xff, 0xff, 0, 0], bad] {
        let OptOutcome::Continue(r) = n.handle(OPT_GO, &data) else {
            panic!("GO")
        };
        assert_eq!(r[0].reply_type, REP_ERR_INVALID, "data {data:?}");
    }
}

proptest! {
    /// No option data, however malformed, makes the negotiator panic, and
    /// every non-final outcome ends in an ACK or an error reply.
    #[test]
    fn any_option_gets_a_final_reply(option in 0u32..16, data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut n = Negotiator::new(export(), FIXED);
        match n.handle(option, &data) {
            OptOutcome::Continue(r) | OptOutcome::Abort(r) => {
                let last = r.last().expect("at least one reply");
                prop_assert!(last.reply_type == REP_ACK || rep_is_error(last.reply_type));
            }
            OptOutcome::Transmit { bytes, .. } => prop_assert!(!bytes.is_empty()),
            OptOutcome::Disconnect(_) => prop_assert_eq!(option, OPT_EXPORT_NAME),
        }
    }
}
