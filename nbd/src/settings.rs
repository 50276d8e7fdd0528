//! Every bound of the server, by name, with its default.

use crate::proto::BlockSizes;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Name the export is listed under (the empty name selects it too).
    pub export_name: String,
    pub export_description: String,
    /// Requests a connection may have in flight; beyond it the server
    /// stops reading that connection until replies go out.
    pub max_inflight_requests: usize,
    /// Bytes of read and write payload a connection may have in flight or
    /// queued for sending; beyond it the server stops reading.
    pub max_inflight_bytes: u64,
    /// Connections served at once; more are closed on arrival.
    pub max_connections: usize,
    /// Time a client has to finish the handshake.
    pub handshake_timeout_ms: u64,
    /// Smallest I/O unit (1 = byte-granular requests are fine).
    pub min_block_bytes: u32,
    pub preferred_block_bytes: u32,
    /// Largest read or write payload (the NBD interoperability ceiling is
    /// 32 MiB).
    pub max_payload_bytes: u32,
    /// Most buffers handed to one vectored socket write.
    pub max_write_iovecs: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            export_name: "kalmar".into(),
            export_description: String::new(),
            max_inflight_requests: 128,
            max_inflight_bytes: 64 << 20,
            max_connections: 16,
            handshake_timeout_ms: 10_000,
            min_block_bytes: 1,
            preferred_block_bytes: 4096,
            max_payload_bytes: 32 << 20,
            max_write_iovecs: 64,
        }
    }
}

impl ServerSettings {
    pub fn block_sizes(&self) -> BlockSizes {
        BlockSizes {
            min_bytes: self.min_block_bytes.max(1),
            preferred_bytes: self.preferred_block_bytes,
            max_payload_bytes: self.max_payload_bytes,
        }
    }

    /// Checks the settings against each other.
    pub fn check(&self) -> Result<(), String> {
        let min = self.min_block_bytes.max(1);
        if !min.is_power_of_two() || !self.preferred_block_bytes.is_power_of_two() {
            return Err("block sizes must be powers of two".into());
        }
        if self.preferred_block_bytes < min || self.max_payload_bytes < self.preferred_block_bytes {
            return Err("block sizes must satisfy min <= preferred <= max payload".into());
        }
        if self.max_inflight_requests == 0
            || self.max_connections == 0
            || self.max_write_iovecs == 0
        {
            return Err("in-flight requests, connections and iovecs must be at least 1".into());
        }
        if self.max_inflight_bytes < u64::from(self.max_payload_bytes) {
            return Err("max_inflight_bytes must hold at least one maximal payload".into());
        }
        Ok(())
    }
}
