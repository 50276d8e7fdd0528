//! Consistency check of a mounted store, over one consistent view of its
//! committed metadata (the engines' layers above the database) and its
//! allocator.
//!
//! Finds objects in missing collections, duplicate object ids, metadata
//! hanging off no object (dangling), mappings past an object's size or the
//! data area, blocks mapped twice (doubly allocated), mapped blocks the
//! allocation bitmap calls free, allocated blocks nothing maps (leaked),
//! wrong store statistics, and — with `deep` — every block whose data does
//! not match its checksum.

use std::collections::{HashMap, HashSet};

use kalmar_common::encoding::Decode;
use serde::Serialize;

use crate::alloc::SEGMENT_BLOCKS;
use crate::device::IoOp;
use crate::error::StoreError;
use crate::keys;
use crate::kv::KvRead;
use crate::layout::BLOCK_SIZE;
use crate::onode::{Onode, Shard, SHARD_BLOCKS};
use crate::store::Shared;

/// Problems listed in full; beyond this only counted.
const MAX_LISTED_PROBLEMS: usize = 100;

/// What fsck found.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FsckReport {
    pub deep: bool,
    pub collections: u64,
    pub objects: u64,
    pub mapped_blocks: u64,
    pub leaked_blocks: u64,
    pub doubly_allocated_blocks: u64,
    pub used_but_free_blocks: u64,
    pub dangling_keys: u64,
    pub checksum_errors: u64,
    /// Total number of problems (also those not listed).
    pub problems: u64,
    /// The first problems, described.
    pub errors: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems == 0
    }

    fn problem(&mut self, msg: String) {
        self.problems += 1;
        if self.errors.len() < MAX_LISTED_PROBLEMS {
            self.errors.push(msg);
        }
    }
}

fn bit(v: &[u64], b: u64) -> bool {
    v[(b / 64) as usize] >> (b % 64) & 1 == 1
}

fn set(v: &mut [u64], b: u64) {
    v[(b / 64) as usize] |= 1 << (b % 64);
}

struct LiveObject {
    name: String,
    size: u64,
}

/// Runs the check; see the module documentation.
pub(crate) fn run(sh: &Shared, deep: bool) -> Result<FsckReport, StoreError> {
    let (r, to_verify) = sh.with_global_view(|snap| check_metadata(sh, snap, deep))?;
    let mut r = r;
    if deep {
        verify_blocks(sh, &to_verify, &mut r)?;
    }
    Ok(r)
}

type ToVerify = Vec<(u64, u32, String)>;

fn check_metadata(
    sh: &Shared,
    snap: &dyn KvRead,
    deep: bool,
) -> Result<(FsckReport, ToVerify), StoreError> {
    let mut r = FsckReport {
        deep,
        ..FsckReport::default()
    };
    let total_blocks = sh.layout.data_blocks();
    let words = total_blocks.div_ceil(64) as usize;

    let mut colls = HashSet::new();
    snap.scan(&[keys::P_COLL], &[keys::P_COLL + 1], &mut |k, _| {
        match keys::parse_collection(k) {
            Some(c) => {
                colls.insert(c);
            }
            None => r.problem(format!("bad collection key {k:02x?}")),
        }
        true
    })?;
    r.collections = colls.len() as u64;

    let mut live: HashMap<u64, LiveObject> = HashMap::new();
    let mut stored = 0u64;
    let mut max_nid = 0u64;
    snap.scan(&[keys::P_ONODE], &[keys::P_ONODE + 1], &mut |k, v| {
        let Some((c, o)) = keys::parse_onode(k) else {
            r.problem(format!("bad object key {k:02x?}"));
            return true;
        };
        let name = format!("{c}/{o}");
        if !colls.contains(&c) {
            r.dangling_keys += 1;
            r.problem(format!("object {name} is in missing collection {c}"));
        }
        match Onode::from_bytes(v) {
            Ok(on) => {
                r.objects += 1;
                stored += on.size;
                max_nid = max_nid.max(on.nid);
                if let Some(other) = live.insert(
                    on.nid,
                    LiveObject {
                        name: name.clone(),
                        size: on.size,
                    },
                ) {
                    r.problem(format!(
                        "objects {} and {name} share id {}",
                        other.name, on.nid
                    ));
                }
            }
            Err(e) => r.problem(format!("object record of {name} does not decode: {e}")),
        }
        true
    })?;

    let mut usage = vec![0u64; words];
    let mut to_verify: Vec<(u64, u32, String)> = Vec::new();
    snap.scan(&[keys::P_EXTENT], &[keys::P_EXTENT + 1], &mut |k, v| {
        let parsed = keys::parse_nid_key(k)
            .and_then(|(_, nid, rest)| Some((nid, <[u8; 4]>::try_from(rest).ok()?)));
        let Some((nid, idx)) = parsed else {
            r.problem(format!("bad extent key {k:02x?}"));
            return true;
        };
        let idx = u32::from_be_bytes(idx) as u64;
        let Some(obj) = live.get(&nid) else {
            r.dangling_keys += 1;
            r.problem(format!(
                "extent shard {idx} of object id {nid}, which does not exist"
            ));
            return true;
        };
        let shard = match Shard::from_bytes(v) {
            Ok(s) => s,
            Err(e) => {
                r.problem(format!(
                    "extent shard {idx} of {} does not decode: {e}",
                    obj.name
                ));
                return true;
            }
        };
        for (i, m) in shard.mapped() {
            let logical = idx * SHARD_BLOCKS + i as u64;
            r.mapped_blocks += 1;
            if logical * BLOCK_SIZE >= obj.size {
                r.problem(format!(
                    "{} maps block {logical}, past its size {}",
                    obj.name, obj.size
                ));
            }
            if m.phys >= total_blocks {
                r.problem(format!(
                    "{} block {logical} maps past the data area ({})",
                    obj.name, m.phys
                ));
                continue;
            }
            if bit(&usage, m.phys) {
                r.doubly_allocated_blocks += 1;
                r.problem(format!(
                    "data block {} is mapped twice (again by {} block {logical})",
                    m.phys, obj.name
                ));
            }
            set(&mut usage, m.phys);
            if deep {
                to_verify.push((m.phys, m.csum, format!("{} block {logical}", obj.name)));
            }
        }
        true
    })?;

    for prefix in [keys::P_LOG_CHUNK, keys::P_LOG_TRIM] {
        snap.scan(&[prefix], &[prefix + 1], &mut |k, _| {
            match keys::parse_log_key(k) {
                Some(c) if colls.contains(&c) => {}
                Some(c) => {
                    r.dangling_keys += 1;
                    r.problem(format!(
                        "{} of collection {c}, which does not exist",
                        keys::describe(k)
                    ));
                }
                None => r.problem(format!("bad log key {k:02x?}")),
            }
            true
        })?;
    }
    for (prefix, what) in [
        (keys::P_OMAP, "omap entry"),
        (keys::P_OMAP_HEADER, "omap header"),
    ] {
        snap.scan(&[prefix], &[prefix + 1], &mut |k, _| {
            match keys::parse_nid_key(k) {
                Some((_, nid, _)) if live.contains_key(&nid) => {}
                Some((_, nid, _)) => {
                    r.dangling_keys += 1;
                    r.problem(format!("{what} of object id {nid}, which does not exist"));
                }
                None => r.problem(format!("bad {what} key {k:02x?}")),
            }
            true
        })?;
    }

    // The committed allocation state (the database has it only as of the
    // last checkpoint).
    let mut marked = vec![0u64; words];
    {
        let a = sh.alloc.lock();
        for seg in 0..a.segments() {
            for (i, chunk) in a.segment_bytes(seg).chunks_exact(8).enumerate() {
                let mut w8 = [0u8; 8];
                w8.copy_from_slice(chunk);
                let w = u64::from_le_bytes(w8);
                let first = seg * SEGMENT_BLOCKS + i as u64 * 64;
                for j in 0..64 {
                    if w >> j & 1 == 1 && first + j < total_blocks {
                        set(&mut marked, first + j);
                    }
                }
            }
        }
    }
    for w in 0..words {
        let (used, mark) = (usage[w], marked[w]);
        for (mask, leaked) in [(mark & !used, true), (used & !mark, false)] {
            for j in 0..64 {
                if mask >> j & 1 == 1 {
                    let b = w as u64 * 64 + j;
                    if leaked {
                        r.leaked_blocks += 1;
                        r.problem(format!(
                            "data block {b} is allocated but nothing maps it (leaked)"
                        ));
                    } else {
                        r.used_but_free_blocks += 1;
                        r.problem(format!("data block {b} is mapped but marked free"));
                    }
                }
            }
        }
    }

    let st = sh.statfs();
    if st.num_objects != r.objects || st.stored_bytes != stored {
        r.problem(format!(
            "store stats say {} objects / {} bytes, found {} / {stored}",
            st.num_objects, st.stored_bytes, r.objects
        ));
    }
    let next_nid = sh.next_nid.load(std::sync::atomic::Ordering::Relaxed);
    if next_nid <= max_nid {
        r.problem(format!(
            "next object id {next_nid} is not above the largest in use {max_nid}"
        ));
    }
    Ok((r, to_verify))
}

/// Reads every mapped block (pending ones from the overlay) and checks it.
fn verify_blocks(
    sh: &Shared,
    blocks: &[(u64, u32, String)],
    r: &mut FsckReport,
) -> Result<(), StoreError> {
    let per_batch = sh.settings.apply_batch_ios.max(1);
    for chunk in blocks.chunks(per_batch) {
        let mut ops = Vec::new();
        let mut which = Vec::new();
        for (i, (phys, csum, _)) in chunk.iter().enumerate() {
            match sh.engines.iter().find_map(|e| e.overlay.get(*phys)) {
                Some(p) if p.csum == *csum => {
                    let computed = crc32c::crc32c(p.data());
                    if computed != *csum {
                        let what = &chunk[i].2;
                        r.checksum_errors += 1;
                        r.problem(format!(
                            "checksum error in {what} (pending block {phys} in memory): stored {csum:#010x}, computed {computed:#010x}"
                        ));
                    }
                }
                _ => {
                    ops.push(IoOp::read(
                        sh.layout.block_offset(*phys),
                        BLOCK_SIZE as usize,
                    ));
                    which.push(i);
                }
            }
        }
        sh.dev.submit(&mut ops)?;
        for (op, i) in ops.into_iter().zip(which) {
            let (phys, csum, what) = &chunk[i];
            let data = op.into_read_buf().map(|b| crc32c::crc32c(&b));
            if data != Some(*csum) {
                r.checksum_errors += 1;
                r.problem(format!(
                    "checksum error in {what} (data block {phys}): stored {csum:#010x}, computed {:#010x}",
                    data.unwrap_or(0)
                ));
            }
        }
    }
    Ok(())
}
