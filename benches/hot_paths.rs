//! Criterion micro-benchmarks of the hot paths: checksums, journal record
//! encoding, CRUSH placement, messenger framing and NBD request handling.
//!
//! cargo bench -p kalmar-benches --bench hot_paths [-- FILTER]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kalmar_common::encoding::Encode;
use kalmar_maps::crush::{CrushMap, Workspace};
use kalmar_msgr::frame::{FrameDecoder, FrameHeader, FrameKind, HEADER_BYTES};
use kalmar_nbd::proto::{self, consts, reply, BlockSizes, RequestHeader, Session};
use kalmar_objectstore::journal::{build_record, DeferredRun, RecordId, RecordMeta};
use kalmar_objectstore::kv::KvOp;

const SIZES: [usize; 3] = [4096, 64 * 1024, 1 << 20];

fn checksums(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for n in SIZES {
        let data = vec![0x5au8; n];
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("crc32c/{n}"), |b| {
            b.iter(|| crc32c::crc32c(black_box(&data)))
        });
        g.bench_function(format!("xxh3/{n}"), |b| {
            b.iter(|| xxhash_rust::xxh3::xxh3_64(black_box(&data)))
        });
    }
    g.finish();
}

/// A record as one group commit of `txns` 4 KiB deferred writes builds it:
/// per transaction an onode update and an extent-shard update.
fn journal_record(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal_record");
    for txns in [1usize, 16, 64] {
        let block = vec![0xa5u8; 4096];
        let blocks: Vec<&[u8]> = (0..txns).map(|_| &block[..]).collect();
        let meta = RecordMeta {
            kv_ops: (0..txns)
                .flat_map(|i| {
                    [
                        KvOp::Put(
                            format!("O.nbd.nbd_data.{i:016x}").into_bytes(),
                            vec![7u8; 96],
                        ),
                        KvOp::Put(format!("X.{i:016x}.00000000").into_bytes(), vec![9u8; 48]),
                    ]
                })
                .collect(),
            deferred: (0..txns)
                .map(|i| DeferredRun {
                    phys: 1000 + i as u64 * 3,
                    blocks: 1,
                })
                .collect(),
            ..RecordMeta::default()
        };
        let id = RecordId {
            seq: 42,
            generation: 1,
            nonce: 0xfeed,
            durable_seq: 41,
        };
        g.throughput(Throughput::Elements(txns as u64));
        g.bench_function(format!("build/{txns}x4k"), |b| {
            b.iter(|| {
                let encoded = black_box(&meta).to_bytes();
                build_record(
                    black_box(id),
                    txns as u32,
                    &encoded,
                    black_box(&blocks),
                    512,
                )
            })
        });
    }
    g.finish();
}

fn crush(c: &mut Criterion) {
    let mut g = c.benchmark_group("crush");
    for (hosts, per_host) in [(10usize, 10usize), (100, 10)] {
        let map = CrushMap::from_text(&kalmar_benches::flat_crush_text(hosts, per_host))
            .expect("bench map parses");
        let weights = vec![0x10000u32; map.max_devices() as usize];
        let mut ws = Workspace::default();
        let mut out = Vec::new();
        let mut x = 0u32;
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("do_rule_3rep/{}_osds", hosts * per_host), |b| {
            b.iter(|| {
                x = x.wrapping_add(1);
                map.do_rule_into(0, black_box(x), 3, &weights, &mut ws, &mut out);
                out.len()
            })
        });
    }
    g.finish();
}

fn framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("msgr_frame");
    for n in [128usize, 4096, 64 * 1024] {
        let payload = vec![3u8; n];
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("encode/{n}"), |b| {
            b.iter(|| {
                FrameHeader::for_payload(FrameKind::Message, 60, 7, 6, black_box(&payload)).encode()
            })
        });
        let mut wire = BytesMut::with_capacity(HEADER_BYTES + n);
        wire.extend_from_slice(
            &FrameHeader::for_payload(FrameKind::Message, 60, 7, 6, &payload).encode(),
        );
        wire.extend_from_slice(&payload);
        let mut dec = FrameDecoder::new(16 << 20);
        g.bench_function(format!("decode/{n}"), |b| {
            b.iter_batched_ref(
                || wire.clone(),
                |buf| {
                    dec.decode(buf)
                        .expect("valid frame")
                        .map(|f| f.payload.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn nbd_requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("nbd");
    let session = Session {
        size_bytes: 1 << 40,
        flags: consts::FLAG_HAS_FLAGS | consts::FLAG_SEND_FLUSH | consts::FLAG_SEND_FUA,
        structured_replies: true,
        block_sizes: BlockSizes {
            min_bytes: 1,
            preferred_bytes: 4096,
            max_payload_bytes: 32 << 20,
        },
        block_sizes_agreed: true,
    };
    let raw = RequestHeader {
        flags: consts::CMD_FLAG_FUA,
        command: consts::CMD_WRITE,
        handle: 99,
        offset: 1 << 30,
        length: 4096,
    }
    .encode();
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_and_validate_write", |b| {
        b.iter(|| {
            let h = RequestHeader::parse(black_box(&raw)).expect("valid header");
            proto::validate(&h, &session)
        })
    });
    let mut out = BytesMut::with_capacity(1 << 20);
    g.bench_function("encode_read_reply_header", |b| {
        b.iter(|| {
            if out.len() > (1 << 20) - 64 {
                out.clear();
            }
            reply::read_ok_header(true, black_box(7), 4096, 4096, &mut out);
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    checksums,
    journal_record,
    crush,
    framing,
    nbd_requests
);
criterion_main!(benches);
