//! Settings of the PG logic, named as Ceph names them.

/// Bounds and switches the peering state machine obeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeringSettings {
    /// `osd_max_pg_log_entries`: log length kept before trimming.
    pub osd_max_pg_log_entries: usize,
    /// `osd_pg_log_dups_tracked`: trimmed requests remembered for resend
    /// detection.
    pub osd_pg_log_dups_tracked: usize,
    /// `osd_recovery_max_active`: recovery operations in flight per PG.
    pub osd_recovery_max_active: usize,
    /// `osd_backfill_scan_max`: objects listed per backfill scan.
    pub osd_backfill_scan_max: usize,
    /// `osd_find_best_info_ignore_history_les`: dangerous; lets a PG whose
    /// newest activation is lost go active anyway.
    pub osd_find_best_info_ignore_history_les: bool,
    /// Entries kept in the state history shown by `pg query`.
    pub state_history_max: usize,
    /// `osd_backfill_retry_interval` (ms here): wait in `backfill_toofull`
    /// before asking the targets again.
    pub osd_backfill_retry_interval_ms: u64,
    /// `osd_recovery_retry_interval` (ms here): wait in
    /// `recovery_toofull` before asking the members again.
    pub osd_recovery_retry_interval_ms: u64,
}

impl Default for PeeringSettings {
    fn default() -> Self {
        PeeringSettings {
            osd_max_pg_log_entries: 3000,
            osd_pg_log_dups_tracked: 3000,
            osd_recovery_max_active: 3,
            osd_backfill_scan_max: 512,
            osd_find_best_info_ignore_history_les: false,
            state_history_max: 64,
            osd_backfill_retry_interval_ms: 30_000,
            osd_recovery_retry_interval_ms: 30_000,
        }
    }
}
