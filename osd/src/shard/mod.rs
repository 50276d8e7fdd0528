//! Shards: the OSD's event loops, one thread each.
//!
//! An OSD runs `osd_op_num_shards` shards. Each is one thread with a
//! current-thread tokio runtime that owns the PGs placed on it (by PG id),
//! the commit engine of the store's journal zone for those PGs (its io_uring
//! ring and its commit queue), and the connections opened from there. A
//! PG's client writes, replicated writes and store commits run on its
//! shard's thread from start to finish: the store's completion reaches the
//! PG as a direct call on the same thread ([`store::ShardStore`]), without a
//! relay task or a thread hop. Shard 0 also runs the control plane (mon and
//! mgr sessions, maps, heartbeats, listeners).
//!
//! Why this runtime: `benches/RESULTS.md`, "Runtime for the OSD shards":
//! a current-thread tokio runtime per shard, with the store's own io_uring
//! ring waking it through an eventfd, used the least CPU per request of
//! the candidates (compio, tokio-uring) and keeps the messenger and the
//! control plane on tokio.

pub mod store;

use std::thread::JoinHandle;

use kalmar_maps::PgId;
use tokio::runtime::Handle;
use tokio::sync::watch;

/// Which shard a PG lives on.
pub fn shard_of(pgid: PgId, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    // Spread by seed first so a pool's PGs fill every shard.
    let h = (pgid.seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ pgid.pool;
    (h % shards as u64) as usize
}

/// The threads of shards 1.. (shard 0 is the thread that runs the daemon).
pub struct ShardThreads {
    pub handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl ShardThreads {
    /// Starts shards `1..n`; `shard0` is the runtime of the calling thread.
    pub fn start(n: usize, shard0: Handle) -> std::io::Result<ShardThreads> {
        let (stop, _) = watch::channel(false);
        let mut handles = vec![shard0];
        let mut threads = Vec::new();
        for i in 1..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("kalmar-osd-shard{i}"))
                .build()?;
            handles.push(rt.handle().clone());
            let mut stop = stop.subscribe();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("kalmar-osd-shard{i}"))
                    .spawn(move || {
                        rt.block_on(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                    })?,
            );
        }
        Ok(ShardThreads {
            handles,
            threads,
            stop,
        })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Stops shards 1.. and waits for their threads (what still runs on
    /// them is dropped).
    pub fn stop(self) {
        self.stop.send_replace(true);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
