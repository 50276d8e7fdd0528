//! A device in memory with a volatile write cache that can lose power.
//!
//! Writes land in the cache; a flush (or a FUA write) moves them to the
//! media. The cache keeps every version of a sector written since the last
//! flush, because a real cache may have written an older version to the
//! media before it lost a newer one. When the armed crash point is reached
//! (counted in writes and flushes) the operation in progress is cut short
//! and every later operation fails with [`DeviceError::PowerLost`].
//! [`FaultyDevice::power_loss_image`] then builds what the media could hold
//! after the power came back: each unflushed write reached the media
//! whole, not at all, or torn (some of its sectors only); each sector then
//! holds any one of the versions that reached it — all chosen by a seed,
//! so a failing run can be replayed exactly. Sectors (512 bytes) are the
//! unit of atomicity, as on real devices.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::queue::{IoQueue, SyncQueue};
use super::{check_io, BlockDevice, IoOp};
use crate::error::DeviceError;
use crate::layout::BLOCK_SIZE;

/// The unit of atomic writes and of direct-I/O alignment.
const SECTOR_BYTES: usize = 512;

/// How the cache behaves when the power goes.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Seed for batch reordering and for the power-loss image.
    pub seed: u64,
    /// Probability that an unflushed write reaches the media at all.
    pub keep_probability: f64,
    /// Probability that a write which reaches the media is torn (only
    /// some of its sectors arrive).
    pub tear_probability: f64,
    /// Each finished operation stays hidden from the queue's reaps for up
    /// to this many of them (drawn from the seed), and the queue asks to
    /// be polled again a millisecond later: on tokio's paused clock the
    /// device then takes simulated time to answer, and what waits for its
    /// commits runs meanwhile. 0: answers at once.
    pub completion_delay_polls: u32,
}

impl FaultConfig {
    pub fn new(seed: u64) -> FaultConfig {
        FaultConfig {
            seed,
            keep_probability: 0.5,
            tear_probability: 0.2,
            completion_delay_polls: 0,
        }
    }
}

/// One unflushed version of a sector, and the write it came from.
struct Version {
    write: u64,
    data: Box<[u8]>,
}

struct State {
    media: Vec<u8>,
    /// Unflushed versions of each sector, oldest first.
    cache: BTreeMap<u64, Vec<Version>>,
    /// Numbers the writes, to group their sectors.
    writes: u64,
    rng: ChaCha8Rng,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    cfg: FaultConfig,
}

/// The fault-injecting device; see the module documentation.
pub struct FaultyDevice {
    path: PathBuf,
    size_bytes: u64,
    state: Mutex<State>,
}

impl FaultyDevice {
    /// A zeroed device of `size_bytes` (rounded down to whole blocks).
    pub fn new(size_bytes: u64, cfg: FaultConfig) -> FaultyDevice {
        let size = size_bytes / BLOCK_SIZE * BLOCK_SIZE;
        FaultyDevice::from_image(vec![0u8; size as usize], cfg)
    }

    /// A device whose media holds `image`, with an empty cache.
    pub fn from_image(image: Vec<u8>, cfg: FaultConfig) -> FaultyDevice {
        FaultyDevice {
            path: PathBuf::from(format!("faulty-device(seed {})", cfg.seed)),
            size_bytes: image.len() as u64,
            state: Mutex::new(State {
                media: image,
                cache: BTreeMap::new(),
                writes: 0,
                rng: ChaCha8Rng::seed_from_u64(cfg.seed),
                ops: 0,
                crash_at: None,
                crashed: false,
                cfg,
            }),
        }
    }

    /// Loses power when the write/flush counter reaches `op` (1-based,
    /// counted from device creation); `None` disarms.
    pub fn arm_crash(&self, op: Option<u64>) {
        self.state.lock().crash_at = op;
    }

    /// Loses power now.
    pub fn crash_now(&self) {
        self.state.lock().crashed = true;
    }

    /// Counts an operation of something that shares this device's power
    /// (the metadata database of a test), so the crash point can fall on
    /// it: `Err(PowerLost)` when the power goes now (or went before).
    pub fn external_op(&self) -> Result<(), DeviceError> {
        if self.state.lock().tick() {
            Err(DeviceError::PowerLost)
        } else {
            Ok(())
        }
    }

    /// Writes and flushes executed so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    pub fn crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// Sectors written but not yet flushed.
    pub fn unflushed_sectors(&self) -> usize {
        self.state.lock().cache.len()
    }

    /// The media only, as if every unflushed write was lost.
    pub fn media_image(&self) -> Vec<u8> {
        self.state.lock().media.clone()
    }

    /// The media with every write the device took, flushed or not (the
    /// newest version of each sector): what a process crash leaves, the
    /// power staying on.
    pub fn written_image(&self) -> Vec<u8> {
        let st = self.state.lock();
        let mut image = st.media.clone();
        for (&sector, versions) in &st.cache {
            if let Some(v) = versions.last() {
                let at = sector as usize * SECTOR_BYTES;
                image[at..at + SECTOR_BYTES].copy_from_slice(&v.data);
            }
        }
        image
    }

    /// What the media may hold after a power loss now, chosen by `seed`.
    pub fn power_loss_image(&self, seed: u64) -> Vec<u8> {
        let st = self.state.lock();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        // The fate of each write: lost, whole, or torn.
        let mut fate: BTreeMap<u64, u8> = BTreeMap::new();
        let mut image = st.media.clone();
        for (&sector, versions) in &st.cache {
            let arrived: Vec<&Version> = versions
                .iter()
                .filter(|v| {
                    let f = *fate.entry(v.write).or_insert_with(|| {
                        if !rng.random_bool(st.cfg.keep_probability) {
                            0
                        } else if rng.random_bool(st.cfg.tear_probability) {
                            2
                        } else {
                            1
                        }
                    });
                    f == 1 || (f == 2 && rng.random_bool(0.5))
                })
                .collect();
            if arrived.is_empty() {
                continue;
            }
            let v = arrived[rng.random_range(0..arrived.len())];
            let at = sector as usize * SECTOR_BYTES;
            image[at..at + SECTOR_BYTES].copy_from_slice(&v.data);
        }
        image
    }

    /// XORs `mask` into the byte at `offset` on the media and in every
    /// cached version (a bit flip the device did not notice).
    pub fn corrupt_byte(&self, offset: u64, mask: u8) {
        let mut st = self.state.lock();
        if let Some(b) = st.media.get_mut(offset as usize) {
            *b ^= mask;
        }
        let sector = offset / SECTOR_BYTES as u64;
        let within = (offset % SECTOR_BYTES as u64) as usize;
        if let Some(vs) = st.cache.get_mut(&sector) {
            for v in vs {
                v.data[within] ^= mask;
            }
        }
    }
}

impl State {
    /// Counts one state-changing operation; true when the power is lost.
    fn tick(&mut self) -> bool {
        if self.crashed {
            return true;
        }
        self.ops += 1;
        if self.crash_at.is_some_and(|c| self.ops >= c) {
            self.crashed = true;
        }
        self.crashed
    }

    fn read_into(&self, offset: u64, buf: &mut [u8]) {
        for (i, chunk) in buf.chunks_mut(SECTOR_BYTES).enumerate() {
            let sector = offset / SECTOR_BYTES as u64 + i as u64;
            match self.cache.get(&sector).and_then(|v| v.last()) {
                Some(v) => chunk.copy_from_slice(&v.data[..chunk.len()]),
                None => {
                    let at = sector as usize * SECTOR_BYTES;
                    chunk.copy_from_slice(&self.media[at..at + chunk.len()]);
                }
            }
        }
    }

    /// Applies sectors `[0, upto)` of a write.
    fn write_sectors(&mut self, offset: u64, data: &[u8], fua: bool, upto: usize) {
        self.writes += 1;
        let write = self.writes;
        for (i, chunk) in data.chunks(SECTOR_BYTES).enumerate().take(upto) {
            let sector = offset / SECTOR_BYTES as u64 + i as u64;
            if fua {
                self.cache.remove(&sector);
                let at = sector as usize * SECTOR_BYTES;
                self.media[at..at + chunk.len()].copy_from_slice(chunk);
            } else {
                self.cache.entry(sector).or_default().push(Version {
                    write,
                    data: chunk.into(),
                });
            }
        }
    }

    fn flush(&mut self) {
        let cache = std::mem::take(&mut self.cache);
        for (sector, versions) in cache {
            if let Some(v) = versions.last() {
                let at = sector as usize * SECTOR_BYTES;
                self.media[at..at + v.data.len()].copy_from_slice(&v.data);
            }
        }
    }
}

impl BlockDevice for FaultyDevice {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn submit(&self, ops: &mut [IoOp]) -> Result<(), DeviceError> {
        for op in ops.iter() {
            check_io(op, self.size_bytes, SECTOR_BYTES as u64)?;
        }
        let mut st = self.state.lock();
        if st.crashed {
            return Err(DeviceError::PowerLost);
        }
        // Operations of a batch run in any order on a real device.
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.shuffle(&mut st.rng);
        for i in order {
            match &mut ops[i] {
                IoOp::Read { offset, buf } => st.read_into(*offset, buf),
                IoOp::Write { offset, buf, fua } => {
                    let data = buf.as_slice();
                    let sectors = data.len() / SECTOR_BYTES;
                    if st.tick() {
                        // Cut short: a random prefix of the sectors made it
                        // into the cache (never to the media: no FUA).
                        let upto = st.rng.random_range(0..=sectors);
                        st.write_sectors(*offset, data, false, upto);
                        return Err(DeviceError::PowerLost);
                    }
                    st.write_sectors(*offset, data, *fua, sectors);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), DeviceError> {
        let mut st = self.state.lock();
        if st.tick() {
            return Err(DeviceError::PowerLost);
        }
        st.flush();
        Ok(())
    }

    fn queue(self: Arc<Self>) -> Result<Box<dyn IoQueue>, DeviceError> {
        let delays = {
            let mut st = self.state.lock();
            let max = st.cfg.completion_delay_polls;
            // Drawn only when used: seeds without delays keep their draws.
            (max > 0).then(|| (max, st.rng.random::<u64>()))
        };
        let q = SyncQueue::new(self);
        Ok(Box::new(match delays {
            Some((max, seed)) => q.with_delays(max, seed),
            None => q,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{read_at, write_at};

    #[test]
    fn cache_flush_and_power_loss() {
        let dev = FaultyDevice::new(64 * 4096, FaultConfig::new(1));
        write_at(&dev, 0, &[1u8; 4096], false).expect("write");
        assert_eq!(
            read_at(&dev, 0, 4096).expect("read")[0],
            1,
            "reads see the cache"
        );
        assert!(
            dev.media_image()[..4096].iter().all(|&b| b == 0),
            "not on media yet"
        );
        dev.flush().expect("flush");
        assert!(dev.media_image()[..4096].iter().all(|&b| b == 1));
        write_at(&dev, 4096, &[2u8; 4096], true).expect("fua");
        assert!(
            dev.media_image()[4096..8192].iter().all(|&b| b == 2),
            "fua is durable"
        );

        // Unflushed writes: each block is either lost, kept, or torn.
        for i in 2..40u64 {
            write_at(&dev, i * 4096, &[i as u8; 4096], false).expect("write");
        }
        assert_eq!(dev.unflushed_sectors(), 38 * 8);
        let img = dev.power_loss_image(7);
        let mut kept = 0;
        let mut lost = 0;
        for i in 2..40usize {
            let blk = &img[i * 4096..(i + 1) * 4096];
            if blk.iter().all(|&b| b == i as u8) {
                kept += 1;
            } else if blk.iter().all(|&b| b == 0) {
                lost += 1;
            } else {
                assert!(
                    blk.iter().all(|&b| b == 0 || b == i as u8),
                    "torn, never foreign"
                );
            }
        }
        assert!(
            kept > 0 && lost > 0,
            "a seed mixes outcomes: kept {kept}, lost {lost}"
        );
        assert_eq!(img, dev.power_loss_image(7), "same seed, same image");
    }

    #[test]
    fn crash_point_stops_everything() {
        let dev = FaultyDevice::new(16 * 4096, FaultConfig::new(2));
        dev.arm_crash(Some(3));
        write_at(&dev, 0, &[1u8; 4096], false).expect("op 1");
        dev.flush().expect("op 2");
        assert_eq!(
            write_at(&dev, 4096, &[1u8; 4096], true),
            Err(DeviceError::PowerLost)
        );
        assert_eq!(dev.flush(), Err(DeviceError::PowerLost));
        assert!(dev.crashed());
        assert!(
            dev.media_image()[4096..8192].iter().all(|&b| b == 0),
            "crashing FUA never durable"
        );
    }
}
