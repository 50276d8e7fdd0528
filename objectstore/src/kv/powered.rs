//! The in-memory database on the power of a fault-injecting device, for
//! power-loss tests and the simulator: its flushes are operations the
//! device's crash point can hit, nothing is written once the power is
//! gone, and [`PoweredKv::crash`] drops what was not flushed. So the
//! database is in the same fault domain as the store's device.

use std::sync::Arc;

use parking_lot::Mutex;

use super::{KvOp, KvRead, KvStore, MemKv};
use crate::device::FaultyDevice;
use crate::error::{DeviceError, StoreError};

/// See the module documentation.
pub struct PoweredKv {
    db: MemKv,
    dev: Mutex<Arc<FaultyDevice>>,
}

impl PoweredKv {
    pub fn new(dev: Arc<FaultyDevice>) -> PoweredKv {
        PoweredKv {
            db: MemKv::new(),
            dev: Mutex::new(dev),
        }
    }

    /// Moves the database onto `dev`'s power (a device rebuilt from the
    /// media image after a power loss).
    pub fn attach(&self, dev: Arc<FaultyDevice>) {
        *self.dev.lock() = dev;
    }

    /// The power went: what was not flushed is gone.
    pub fn crash(&self) {
        self.db.crash();
    }

    fn power(&self) -> Arc<FaultyDevice> {
        self.dev.lock().clone()
    }

    fn lost(e: DeviceError) -> StoreError {
        StoreError::Kv(format!("metadata database: {e}"))
    }
}

impl KvRead for PoweredKv {
    fn get(&self, key: &[u8]) -> crate::Result<Option<Vec<u8>>> {
        self.db.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()> {
        self.db.scan(start, end, f)
    }
}

impl KvStore for PoweredKv {
    fn write(&self, ops: &[KvOp]) -> crate::Result<()> {
        if self.power().crashed() {
            return Err(Self::lost(DeviceError::PowerLost));
        }
        self.db.write(ops)
    }

    fn flush(&self) -> crate::Result<()> {
        self.power().external_op().map_err(Self::lost)?;
        self.db.flush()
    }

    fn describe(&self) -> String {
        "in-memory database on the test device's power".into()
    }
}
