//! `osd dump`: Ceph's JSON shape and its plain text lines.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::{addrvec_json, fmt_g};
use crate::osdmap::{OsdMap, OsdMapFlags};
use crate::pool::PgPool;
use crate::time::format_stamp;

/// One pool as Ceph's `osd dump` / `osd pool ls detail` JSON shows it.
pub fn pool_json(p: &PgPool) -> Value {
    json!({
        "pool": p.id,
        "pool_name": p.name,
        "flags": p.flags,
        "flags_names": p.flag_names().join(","),
        "type": p.pool_type.ceph_code(),
        "size": p.size,
        "min_size": p.min_size,
        "crush_rule": p.crush_rule,
        "object_hash": p.object_hash,
        "pg_autoscale_mode": "off",
        "pg_num": p.pg_num,
        "pg_placement_num": p.pgp_num,
        "pg_placement_num_target": p.pgp_num,
        "pg_num_target": p.pg_num,
        "pg_num_pending": p.pg_num,
        "last_change": p.last_change.to_string(),
        "erasure_code_profile": "",
        "stripe_width": 0,
        "application_metadata": p.application_metadata,
        "quota_max_bytes": p.quota_max_bytes,
        "quota_max_objects": p.quota_max_objects,
    })
}

/// `osd dump --format json`.
pub fn osd_dump_json(m: &OsdMap) -> Value {
    let pools: Vec<Value> = m.pools.values().map(pool_json).collect();
    let osds: Vec<Value> = m
        .existing_osds()
        .filter_map(|id| m.osd(id).map(|s| (id, s)))
        .map(|(id, s)| {
            json!({
                "osd": id,
                "uuid": s.uuid.to_string(),
                "up": u8::from(s.is_up()),
                "in": u8::from(s.is_in()),
                "weight": s.weight_f64(),
                "primary_affinity": f64::from(s.primary_affinity) / 65536.0,
                "last_clean_begin": s.info.last_clean_begin,
                "last_clean_end": s.info.last_clean_end,
                "up_from": s.info.up_from,
                "up_thru": s.info.up_thru,
                "down_at": s.info.down_at,
                "lost_at": s.info.lost_at,
                "public_addrs": addrvec_json(&s.addrs.public),
                "cluster_addrs": addrvec_json(&s.addrs.cluster),
                "heartbeat_back_addrs": addrvec_json(&s.addrs.heartbeat_back),
                "heartbeat_front_addrs": addrvec_json(&s.addrs.heartbeat_front),
                "public_addr": s.addrs.public.to_string(),
                "cluster_addr": s.addrs.cluster.to_string(),
                "heartbeat_back_addr": s.addrs.heartbeat_back.to_string(),
                "heartbeat_front_addr": s.addrs.heartbeat_front.to_string(),
                "state": s.state.names(),
            })
        })
        .collect();
    let pg_temp: Vec<Value> = m
        .pg_temp
        .iter()
        .map(|(pg, osds)| json!({ "pgid": pg.to_string(), "osds": osds }))
        .collect();
    let primary_temp: Vec<Value> = m
        .primary_temp
        .iter()
        .map(|(pg, osd)| json!({ "pgid": pg.to_string(), "osd": osd }))
        .collect();
    json!({
        "epoch": m.epoch,
        "fsid": m.fsid.to_string(),
        "created": format_stamp(m.created_us),
        "modified": format_stamp(m.modified_us),
        "last_up_change": format_stamp(0),
        "last_in_change": format_stamp(0),
        "flags": OsdMapFlags::names(m.flags).join(","),
        "flags_num": m.flags,
        "flags_set": OsdMapFlags::names(m.flags),
        "crush_version": m.crush_version,
        "full_ratio": m.full_ratio,
        "backfillfull_ratio": m.backfillfull_ratio,
        "nearfull_ratio": m.nearfull_ratio,
        "cluster_snapshot": "",
        "pool_max": m.pool_max,
        "max_osd": m.max_osd(),
        "require_min_compat_client": "luminous",
        "min_compat_client": "jewel",
        "require_osd_release": "pacific",
        "pools": pools,
        "osds": osds,
        "osd_xinfo": [],
        "pg_upmap": [],
        "pg_upmap_items": [],
        "pg_temp": pg_temp,
        "primary_temp": primary_temp,
        "blocklist": {},
        "erasure_code_profiles": {},
    })
}

/// `osd dump` plain text, line for line in Ceph's layout.
pub fn osd_dump_plain(m: &OsdMap) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "epoch {}", m.epoch);
    let _ = writeln!(s, "fsid {}", m.fsid);
    let _ = writeln!(s, "created {}", format_stamp(m.created_us));
    let _ = writeln!(s, "modified {}", format_stamp(m.modified_us));
    let _ = writeln!(s, "flags {}", OsdMapFlags::names(m.flags).join(","));
    let _ = writeln!(s, "crush_version {}", m.crush_version);
    let _ = writeln!(s, "full_ratio {}", fmt_g(m.full_ratio));
    let _ = writeln!(s, "backfillfull_ratio {}", fmt_g(m.backfillfull_ratio));
    let _ = writeln!(s, "nearfull_ratio {}", fmt_g(m.nearfull_ratio));
    let _ = writeln!(s, "require_min_compat_client luminous");
    let _ = writeln!(s, "min_compat_client jewel");
    let _ = writeln!(s, "require_osd_release pacific");
    let _ = writeln!(s, "stretch_mode_enabled false");
    for p in m.pools.values() {
        let _ = write!(
            s,
            "pool {} '{}' {} size {} min_size {} crush_rule {} object_hash rjenkins pg_num {} pgp_num {} autoscale_mode off last_change {}",
            p.id,
            p.name,
            p.pool_type.name(),
            p.size,
            p.min_size,
            p.crush_rule,
            p.pg_num,
            p.pgp_num,
            p.last_change
        );
        let flags = p.flag_names();
        if !flags.is_empty() {
            let _ = write!(s, " flags {}", flags.join(","));
        }
        // Ceph prints a pool's quotas after its flags.
        if p.quota_max_bytes > 0 {
            let _ = write!(s, " max_bytes {}", p.quota_max_bytes);
        }
        if p.quota_max_objects > 0 {
            let _ = write!(s, " max_objects {}", p.quota_max_objects);
        }
        let _ = write!(s, " stripe_width 0");
        if !p.application_metadata.is_empty() {
            let apps: Vec<&str> = p.application_metadata.keys().map(String::as_str).collect();
            let _ = write!(s, " application {}", apps.join(","));
        }
        s.push('\n');
    }
    let _ = writeln!(s, "max_osd {}", m.max_osd());
    for id in m.existing_osds() {
        let Some(o) = m.osd(id) else { continue };
        let _ = write!(
            s,
            "osd.{id}{}{} weight {}",
            if o.is_up() { " up  " } else { " down" },
            if o.is_in() { " in " } else { " out" },
            fmt_g(o.weight_f64())
        );
        if o.primary_affinity != crate::osd::PRIMARY_AFFINITY_DEFAULT {
            let _ = write!(
                s,
                " primary_affinity {}",
                fmt_g(f64::from(o.primary_affinity) / 65536.0)
            );
        }
        let _ = write!(
            s,
            " up_from {} up_thru {} down_at {} last_clean_interval [{},{})",
            o.info.up_from,
            o.info.up_thru,
            o.info.down_at,
            o.info.last_clean_begin,
            o.info.last_clean_end
        );
        if o.info.lost_at != 0 {
            let _ = write!(s, " lost_at {}", o.info.lost_at);
        }
        let _ = write!(
            s,
            " {} {} {}",
            o.addrs.public.addrvec_string(),
            o.addrs.cluster.addrvec_string(),
            o.state.names().join(",")
        );
        if !o.uuid.is_nil() {
            let _ = write!(s, " {}", o.uuid);
        }
        s.push('\n');
    }
    for (pg, osds) in &m.pg_temp {
        let _ = writeln!(s, "pg_temp {pg} {}", crate::placement::format_osd_vec(osds));
    }
    for (pg, osd) in &m.primary_temp {
        let _ = writeln!(s, "primary_temp {pg} {osd}");
    }
    s
}
