//! Building a PG's history and past intervals from the map sequence, for a
//! copy created on an OSD that did not take part in the PG so far
//! (`OSD::build_initial_pg_history`).

use kalmar_maps::PgId;

use crate::info::PgHistory;
use crate::intervals::{check_new_interval, ClusterView, IntervalChange, PastIntervals, PgMapping};

/// Walks `(map, mapping)` pairs from the PG's creation epoch to now, in
/// epoch order, and returns the history (creation, same_*_since) and the
/// past intervals. Nothing is known of activations, so every interval
/// that met min_size with an up_thru counts as maybe read-write; peers'
/// notifies later narrow that down.
pub fn build_initial_history<'a>(
    _pgid: PgId,
    mut maps: impl Iterator<Item = (&'a ClusterView, &'a PgMapping)>,
) -> (PgHistory, PastIntervals) {
    let mut past = PastIntervals::new();
    let Some((mut last_map, mut last)) = maps.next() else {
        return (PgHistory::default(), past);
    };
    let created = last.epoch;
    let mut h = PgHistory {
        epoch_created: created,
        same_interval_since: created,
        same_up_since: created,
        same_primary_since: created,
        ..Default::default()
    };
    for (map, m) in maps {
        if let Some(iv) = check_new_interval(IntervalChange {
            old: last,
            new: m,
            last_map,
            same_interval_since: h.same_interval_since,
            last_epoch_clean: 0,
        }) {
            past.add(iv);
            h.same_interval_since = m.epoch;
        }
        if m.up != last.up {
            h.same_up_since = m.epoch;
        }
        if m.acting_primary != last.acting_primary {
            h.same_primary_since = m.epoch;
        }
        last_map = map;
        last = m;
    }
    (h, past)
}
