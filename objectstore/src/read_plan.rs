//! A read resolved against committed metadata: which blocks come from the
//! device (in runs of consecutive blocks, each with its checksums), which
//! from the data overlay (committed, not yet written home), and which are
//! holes. Planning and assembling are apart from the I/O, so the blocking
//! read of tools and the engine's queued read share them.
//!
//! A read served by one source (one device run, or one overlay block) is
//! answered with that buffer itself, sliced: no copy and no allocation
//! beyond the device buffer (which comes from the aligned-buffer cache).

use bytes::{Bytes, BytesMut};

use crate::device::{AlignedBuf, IoOp};
use crate::error::StoreError;
use crate::layout::{Layout, BLOCK_SIZE};
use crate::overlay::PendingBlock;

const BS: u64 = BLOCK_SIZE;

/// Consecutive physical blocks for consecutive logical blocks.
struct Run {
    first_logical: u64,
    phys: u64,
    blocks: u32,
    /// Index of the run's first checksum in [`ReadPlan::csums`].
    csum_at: usize,
}

/// See the module documentation. Reused between reads (cleared, its
/// vectors keep their room).
#[derive(Default)]
pub(crate) struct ReadPlan {
    /// The byte range read, clipped to the object's size; empty when
    /// nothing is to be read.
    pub off: u64,
    pub end: u64,
    /// Some block of the range is unmapped (reads as zeros).
    pub holes: bool,
    /// Blocks served from the overlay, by logical block.
    pub overlay: Vec<(u64, PendingBlock)>,
    runs: Vec<Run>,
    csums: Vec<u32>,
}

/// A block whose content does not match its checksum.
#[derive(Debug)]
pub(crate) struct BadBlock {
    pub logical: u64,
    pub offset: u64,
    pub stored: u32,
    pub computed: u32,
}

/// How a read attempt ended.
pub(crate) enum ReadEnd {
    Done(Result<Bytes, StoreError>),
    /// A checksum mismatch within the retry budget: plan again.
    Retry,
}

/// An overlay block as the owner of a reply's bytes.
struct OverlayBytes(PendingBlock);

impl AsRef<[u8]> for OverlayBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.data()
    }
}

impl ReadPlan {
    pub fn clear(&mut self) {
        self.off = 0;
        self.end = 0;
        self.holes = false;
        self.overlay.clear();
        self.runs.clear();
        self.csums.clear();
    }

    /// Adds logical block `b` (after every block added before it), stored
    /// at `phys` with checksum `csum`; runs hold at most `max_blocks`.
    pub fn add_block(&mut self, b: u64, phys: u64, csum: u32, max_blocks: u32) {
        match self.runs.last_mut() {
            Some(r)
                if r.phys + u64::from(r.blocks) == phys
                    && r.first_logical + u64::from(r.blocks) == b
                    && r.blocks < max_blocks =>
            {
                r.blocks += 1;
            }
            _ => self.runs.push(Run {
                first_logical: b,
                phys,
                blocks: 1,
                csum_at: self.csums.len(),
            }),
        }
        self.csums.push(csum);
    }

    /// Device reads the plan needs, one per run.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The device reads, in run order.
    pub fn io_ops<'a>(&'a self, layout: &'a Layout) -> impl Iterator<Item = IoOp> + 'a {
        self.runs
            .iter()
            .map(|r| IoOp::read(layout.block_offset(r.phys), r.blocks as usize * BS as usize))
    }

    /// Checks the runs' buffers (`bufs[i]` is run `i`'s) against their
    /// checksums and assembles the bytes read. Takes the buffer of a
    /// single-run read to answer with it.
    pub fn assemble(
        &self,
        bufs: &mut [Option<AlignedBuf>],
        layout: &Layout,
    ) -> Result<Bytes, BadBlock> {
        if self.end <= self.off {
            return Ok(Bytes::new());
        }
        for (r, buf) in self.runs.iter().zip(bufs.iter()) {
            let csums = &self.csums[r.csum_at..r.csum_at + r.blocks as usize];
            for (j, &stored) in csums.iter().enumerate() {
                let computed = buf
                    .as_ref()
                    .and_then(|b| b.get(j * BS as usize..(j + 1) * BS as usize))
                    .map_or(!stored, crc32c::crc32c);
                if computed != stored {
                    return Err(BadBlock {
                        logical: r.first_logical + j as u64,
                        offset: layout.block_offset(r.phys + j as u64),
                        stored,
                        computed,
                    });
                }
            }
        }
        // One source: answer with its buffer.
        let first = self.off / BS * BS;
        let range = (self.off - first) as usize..(self.end - first) as usize;
        if !self.holes && self.overlay.is_empty() && self.runs.len() == 1 {
            if let Some(buf) = bufs.first_mut().and_then(Option::take) {
                return Ok(Bytes::from_owner(buf).slice(range));
            }
        }
        if !self.holes && self.runs.is_empty() && self.overlay.len() == 1 {
            return Ok(Bytes::from_owner(OverlayBytes(self.overlay[0].1.clone())).slice(range));
        }
        let mut out = BytesMut::zeroed((self.end - self.off) as usize);
        for (b, p) in &self.overlay {
            self.copy_block(&mut out, *b, p.data());
        }
        for (r, buf) in self.runs.iter().zip(bufs.iter()) {
            let Some(buf) = buf else { continue };
            for j in 0..r.blocks as usize {
                let block = &buf[j * BS as usize..(j + 1) * BS as usize];
                self.copy_block(&mut out, r.first_logical + j as u64, block);
            }
        }
        Ok(out.freeze())
    }

    /// Copies the part of logical block `b` that the read covers.
    fn copy_block(&self, out: &mut BytesMut, b: u64, block: &[u8]) {
        let (from, to) = ((b * BS).max(self.off), ((b + 1) * BS).min(self.end));
        let src = &block[(from - b * BS) as usize..(to - b * BS) as usize];
        out[(from - self.off) as usize..(to - self.off) as usize].copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fill: u8) -> AlignedBuf {
        AlignedBuf::from_slice(&[fill; BS as usize])
    }

    fn layout() -> Layout {
        Layout::compute(64 << 20, 1 << 20, 512).expect("layout")
    }

    #[test]
    fn consecutive_blocks_make_one_run_up_to_the_bound() {
        let mut p = ReadPlan::default();
        for b in 0..5 {
            p.add_block(b, 100 + b, 0, 3);
        }
        p.add_block(5, 200, 0, 3);
        assert_eq!(p.runs(), 3, "3 + 2 (bound), then a gap in phys");
        let lens: Vec<usize> = p.io_ops(&layout()).map(|op| op.len()).collect();
        assert_eq!(lens, vec![3 * BS as usize, 2 * BS as usize, BS as usize]);
    }

    #[test]
    fn a_single_run_is_answered_with_its_buffer_and_checked() {
        let l = layout();
        let data = block(7);
        let mut p = ReadPlan {
            off: 100,
            end: 300,
            ..Default::default()
        };
        p.add_block(0, 9, crc32c::crc32c(&data), 8);
        let mut bufs = vec![Some(data)];
        let b = p.assemble(&mut bufs, &l).expect("checks");
        assert_eq!(&b[..], &[7u8; 200][..]);
        assert!(bufs[0].is_none(), "the buffer itself answers");

        let mut bad = vec![Some(block(8))];
        let e = p.assemble(&mut bad, &l).expect_err("mismatch");
        assert_eq!((e.logical, e.offset), (0, l.block_offset(9)));
    }

    #[test]
    fn holes_overlay_and_runs_assemble_in_place() {
        let l = layout();
        let (a, c) = (block(1), block(3));
        let mut p = ReadPlan {
            off: BS / 2,
            end: 3 * BS + 10,
            holes: true,
            ..Default::default()
        };
        p.add_block(0, 50, crc32c::crc32c(&a), 8);
        // Block 1 is a hole; block 2 from the overlay; block 3 from the
        // device again.
        p.overlay.push((
            2,
            PendingBlock {
                seq: 1,
                csum: 0,
                buf: std::sync::Arc::new(block(2)),
                offset: 0,
            },
        ));
        p.add_block(3, 60, crc32c::crc32c(&c), 8);
        let mut bufs = vec![Some(a), Some(c)];
        let b = p.assemble(&mut bufs, &l).expect("checks");
        let half = BS as usize / 2;
        assert_eq!(b.len(), 3 * BS as usize - half + 10);
        assert!(b[..half].iter().all(|&x| x == 1));
        assert!(b[half..half + BS as usize].iter().all(|&x| x == 0));
        assert!(b[half + BS as usize..half + 2 * BS as usize]
            .iter()
            .all(|&x| x == 2));
        assert!(b[half + 2 * BS as usize..].iter().all(|&x| x == 3));
    }
}
