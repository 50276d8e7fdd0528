//! Everything the mon knows in memory: the two map services and the
//! bookkeeping `status` needs. Owned by the server's single task.

use std::sync::Arc;
use std::time::Instant;

use kalmar_maps::{MgrMap, OsdMap};

use crate::health::{self, Health, HealthInputs};
use crate::health_stats;
use crate::mgrmon::MgrMon;
use crate::mgrstat::MgrStat;
use crate::options::MonOptions;
use crate::osdmon::OsdMon;
use crate::status::StatusInputs;

pub struct MonState {
    pub name: String,
    pub opts: Arc<MonOptions>,
    pub osd: OsdMon,
    pub mgr: MgrMon,
    /// Keys, caps and service secrets.
    pub auth: crate::authmon::AuthMon,
    /// Health checks the active mgr reports.
    pub mgrstat: MgrStat,
    /// PG statistics reported by the OSDs (`pg stat`, `pg dump`).
    pub pgmap: crate::pgmap::PgMap,
    pub started: Instant,
    /// Wall-clock microseconds when the up / in sets last changed.
    pub osd_up_since_us: u64,
    pub osd_in_since_us: u64,
    /// The mons and the quorum (refreshed by the server).
    pub quorum: crate::monmap::QuorumView,
}

impl MonState {
    pub fn new(
        name: &str,
        opts: Arc<MonOptions>,
        osdmap: OsdMap,
        mgrmap: MgrMap,
        now: Instant,
        now_us: u64,
    ) -> Self {
        MonState {
            name: name.to_string(),
            osd: OsdMon::new_at(osdmap, opts.clone(), now, now_us),
            mgr: MgrMon::new(mgrmap, opts.clone(), now),
            auth: crate::authmon::AuthMon::new(
                Default::default(),
                opts.auth_service_ticket_ttl_secs,
            ),
            mgrstat: MgrStat::default(),
            opts,
            pgmap: Default::default(),
            started: now,
            osd_up_since_us: now_us,
            osd_in_since_us: now_us,
            quorum: crate::monmap::QuorumView::single(name),
        }
    }

    /// Whether a command or event changed anything not yet committed.
    pub fn has_pending(&self) -> bool {
        self.osd.has_pending() || self.mgr.has_pending() || self.auth.has_pending()
    }

    pub fn discard_pending(&mut self) {
        self.osd.discard_pending();
        self.mgr.discard_pending();
        self.auth.discard_pending();
    }

    /// The mon's own checks, then those the active mgr reports (Ceph
    /// merges the MgrStatMonitor's checks the same way).
    pub fn health(&self, now: Instant) -> Health {
        let mut h = health::compute(
            self.osd.map(),
            self.mgr.map(),
            HealthInputs {
                mgr_grace_passed: now.saturating_duration_since(self.started)
                    >= self.opts.mon_mgr_mkfs_grace,
                osd_pool_default_size: self.opts.osd_pool_default_size,
                osd_failsafe_full_ratio: self.opts.osd_failsafe_full_ratio,
                auth_off: self.opts.auth_off(),
            },
        );
        // From the OSDs' reports: a PG_AVAILABILITY from reported states
        // replaces the one the map alone gives.
        let pgs = self.pgmap.lines(self.osd.map());
        let reported = health_stats::Reported {
            osd_usage: self.pgmap.osd_usage(),
            pgs: &pgs,
            quota_warn_pct: self.opts.mon_pool_quota_warn_threshold,
        };
        for c in health_stats::checks(self.osd.map(), &reported) {
            match h.checks.iter_mut().find(|x| x.code == c.code) {
                Some(x) => *x = c,
                None => h.checks.push(c),
            }
        }
        if let Some(c) = self.quorum.health_check() {
            h.checks.push(c);
        }
        let mgr_checks = self
            .mgrstat
            .checks(self.mgr.map(), now, self.opts.mon_mgr_beacon_grace);
        for c in mgr_checks {
            // The mon's own check wins over a mgr check of the same name.
            if !h.checks.iter().any(|x| x.code == c.code) {
                h.checks.push(c.clone());
            }
        }
        h
    }

    /// Records when the up/in sets change (for `up (since 7m)`).
    pub fn note_osdmap_change(&mut self, old: &OsdMap, new: &OsdMap, now_us: u64) {
        let ups = |m: &OsdMap| {
            m.existing_osds()
                .filter(|&i| m.is_up(i))
                .collect::<Vec<_>>()
        };
        let ins = |m: &OsdMap| {
            m.existing_osds()
                .filter(|&i| m.is_in(i))
                .collect::<Vec<_>>()
        };
        if ups(old) != ups(new) {
            self.osd_up_since_us = now_us;
        }
        if ins(old) != ins(new) {
            self.osd_in_since_us = now_us;
        }
    }

    /// Renders `status` with `f` (plain or JSON).
    pub fn with_status<T>(
        &self,
        now: Instant,
        now_us: u64,
        f: impl FnOnce(&StatusInputs<'_>) -> T,
    ) -> T {
        let health = self.health(now);
        // Summed here, when asked, not on every report.
        let pgs = self.pgmap.summary(self.osd.map());
        let inputs = StatusInputs {
            mon_name: &self.name,
            quorum: &self.quorum,
            mon_age: now.saturating_duration_since(self.started),
            osdmap: self.osd.map(),
            mgrmap: self.mgr.map(),
            health: &health,
            pgs: &pgs,
            now_us,
            osd_up_since_us: self.osd_up_since_us,
            osd_in_since_us: self.osd_in_since_us,
        };
        f(&inputs)
    }

    /// Forgets the PG statistics a new map made obsolete.
    pub fn prune_pgs(&mut self) {
        self.pgmap.prune(self.osd.map());
    }
}
