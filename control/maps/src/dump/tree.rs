//! `osd tree`: the CRUSH hierarchy with OSD status, as a table and JSON.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::crush::CrushMap;
use crate::osdmap::OsdMap;

/// One row of the tree, in display order.
struct Node {
    id: i32,
    depth: usize,
    /// 16.16 weight (bucket total, or the device's weight in its parent).
    weight: u32,
    /// Children in Ceph's JSON order.
    children: Vec<i32>,
}

/// Ceph's child order: buckets by name first, then devices by class and id.
fn sort_key(crush: &CrushMap, id: i32) -> String {
    if id >= 0 {
        let class = crush
            .devices
            .get(&id)
            .and_then(|d| d.class.clone())
            .unwrap_or_default();
        format!("{class}_osd.{id:08}")
    } else {
        format!("_{}", crush.item_name(id).unwrap_or(""))
    }
}

/// Depth-first walk from every root, most negative root id first.
fn walk(crush: &CrushMap) -> Vec<Node> {
    walk_roots(crush, crush.roots())
}

/// Roots including the device-class shadow roots (`default~ssd`).
fn roots_with_shadows(crush: &CrushMap) -> Vec<i32> {
    let held: BTreeSet<i32> = crush
        .buckets()
        .flat_map(|b| b.items.iter().copied())
        .filter(|&i| i < 0)
        .collect();
    crush
        .buckets()
        .map(|b| b.id)
        .filter(|id| !held.contains(id))
        .collect()
}

fn walk_roots(crush: &CrushMap, mut roots: Vec<i32>) -> Vec<Node> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    roots.sort_unstable();
    let mut stack: Vec<(i32, usize, u32)> = roots
        .iter()
        .rev()
        .map(|&r| (r, 0, crush.bucket(r).map_or(0, |b| b.weight())))
        .collect();
    while let Some((id, depth, weight)) = stack.pop() {
        // A malformed map could list an item twice; show it once.
        if !seen.insert(id) {
            continue;
        }
        let mut children = Vec::new();
        if let Some(b) = crush.bucket(id) {
            let mut kids: Vec<(String, i32, u32)> = b
                .items
                .iter()
                .zip(&b.weights)
                .map(|(&i, &w)| (sort_key(crush, i), i, w))
                .collect();
            kids.sort();
            children = kids.iter().rev().map(|k| k.1).collect();
            for (_, i, w) in kids.into_iter().rev() {
                stack.push((i, depth + 1, w));
            }
        }
        out.push(Node {
            id,
            depth,
            weight,
            children,
        });
    }
    out
}

fn weight_str(w: u32) -> String {
    format!("{:.5}", f64::from(w) / 65536.0)
}

/// `osd tree` table: `ID CLASS WEIGHT TYPE NAME STATUS REWEIGHT PRI-AFF`.
pub fn osd_tree_plain(m: &OsdMap) -> String {
    let crush = &m.crush;
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut in_tree = BTreeSet::new();
    for n in walk(crush) {
        let name = crush.item_name(n.id).unwrap_or("?");
        // Buckets show "type name"; devices just their name.
        let label = match crush.bucket(n.id) {
            Some(b) => format!("{} {name}", crush.type_name(b.type_id).unwrap_or("?")),
            None => name.to_string(),
        };
        let mut row = [
            n.id.to_string(),
            String::new(),
            weight_str(n.weight),
            format!("{}{label}", "    ".repeat(n.depth)),
            String::new(),
            String::new(),
            String::new(),
        ];
        if n.id >= 0 {
            in_tree.insert(n.id);
            row[1] = crush
                .devices
                .get(&n.id)
                .and_then(|d| d.class.clone())
                .unwrap_or_default();
            match m.osd(n.id).filter(|s| s.exists()) {
                None => {
                    row[4] = "DNE".into();
                    row[5] = "0".into();
                }
                Some(s) => {
                    row[4] = status(s).into();
                    row[5] = weight_str(s.weight);
                    row[6] = weight_str(s.primary_affinity);
                }
            }
        }
        rows.push(row);
    }
    // OSDs that exist but are in no bucket ("stray").
    for id in m.existing_osds().filter(|i| !in_tree.contains(i)) {
        let Some(s) = m.osd(id) else { continue };
        rows.push([
            id.to_string(),
            String::new(),
            weight_str(0),
            format!("osd.{id}"),
            status(s).into(),
            weight_str(s.weight),
            weight_str(s.primary_affinity),
        ]);
    }
    render_table(
        &[
            "ID",
            "CLASS",
            "WEIGHT",
            "TYPE NAME",
            "STATUS",
            "REWEIGHT",
            "PRI-AFF",
        ],
        &[true, true, true, false, true, true, true],
        &rows,
    )
}

/// Ceph's TextTable: headings left-aligned, cells right-aligned unless
/// told otherwise, columns two spaces apart, every cell padded.
fn render_table<const N: usize>(
    heads: &[&str; N],
    right: &[bool; N],
    rows: &[[String; N]],
) -> String {
    let mut widths: Vec<usize> = heads.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<(String, bool)>, out: &mut String| {
        let parts: Vec<String> = cells
            .into_iter()
            .zip(&widths)
            .map(|((c, r), &w)| {
                if r {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.push_str(&parts.join("  "));
        out.push('\n');
    };
    line(
        heads.iter().map(|h| (h.to_string(), false)).collect(),
        &mut out,
    );
    for r in rows {
        line(
            r.iter().cloned().zip(right.iter().copied()).collect(),
            &mut out,
        );
    }
    out
}

/// `osd tree --format json`: `{nodes, stray}`.
pub fn osd_tree_json(m: &OsdMap) -> Value {
    let crush = &m.crush;
    let mut nodes = Vec::new();
    let mut in_tree = BTreeSet::new();
    for n in walk(crush) {
        let name = crush.item_name(n.id).unwrap_or("?");
        if n.id < 0 {
            let type_id = crush.bucket(n.id).map_or(0, |b| b.type_id);
            nodes.push(json!({
                "id": n.id,
                "name": name,
                "type": crush.type_name(type_id).unwrap_or("?"),
                "type_id": type_id,
                "children": n.children,
            }));
        } else {
            in_tree.insert(n.id);
            nodes.push(device_json(
                m,
                n.id,
                name,
                f64::from(n.weight) / 65536.0,
                n.depth,
            ));
        }
    }
    let stray: Vec<Value> = m
        .existing_osds()
        .filter(|i| !in_tree.contains(i))
        .map(|id| device_json(m, id, &format!("osd.{id}"), 0.0, 0))
        .collect();
    json!({ "nodes": nodes, "stray": stray })
}

/// STATUS column: `destroyed` wins over up/down, as in Ceph.
fn status(s: &crate::OsdSlot) -> &'static str {
    if s.state.has(crate::osd::OsdState::DESTROYED) {
        "destroyed"
    } else if s.is_up() {
        "up"
    } else {
        "down"
    }
}

/// Class column of a bucket: a shadow's class, else empty.
fn bucket_class(name: &str) -> &str {
    name.split_once('~').map_or("", |(_, c)| c)
}

fn device_class(crush: &CrushMap, id: i32) -> String {
    crush
        .devices
        .get(&id)
        .and_then(|d| d.class.clone())
        .unwrap_or_default()
}

/// `osd crush tree [--show-shadow]`: `ID CLASS WEIGHT TYPE NAME`.
pub fn crush_tree_plain(crush: &CrushMap, show_shadow: bool) -> String {
    let roots = if show_shadow {
        roots_with_shadows(crush)
    } else {
        crush.roots()
    };
    let rows: Vec<[String; 4]> = walk_roots(crush, roots)
        .into_iter()
        .map(|n| {
            let name = crush.item_name(n.id).unwrap_or("?");
            let (class, label) = match crush.bucket(n.id) {
                Some(b) => (
                    bucket_class(name).to_string(),
                    format!("{} {name}", crush.type_name(b.type_id).unwrap_or("?")),
                ),
                None => (device_class(crush, n.id), name.to_string()),
            };
            [
                n.id.to_string(),
                class,
                weight_str(n.weight),
                format!("{}{label}", "    ".repeat(n.depth)),
            ]
        })
        .collect();
    render_table(
        &["ID", "CLASS", "WEIGHT", "TYPE NAME"],
        &[true, true, true, false],
        &rows,
    )
}

/// `osd crush tree --format json`: `{nodes, stray}` without OSD status.
pub fn crush_tree_json(crush: &CrushMap, show_shadow: bool) -> Value {
    let roots = if show_shadow {
        roots_with_shadows(crush)
    } else {
        crush.roots()
    };
    let nodes: Vec<Value> = walk_roots(crush, roots)
        .into_iter()
        .map(|n| {
            let name = crush.item_name(n.id).unwrap_or("?");
            match crush.bucket(n.id) {
                Some(b) => json!({
                    "id": n.id,
                    "name": name,
                    "type": crush.type_name(b.type_id).unwrap_or("?"),
                    "type_id": b.type_id,
                    "children": n.children,
                }),
                None => json!({
                    "id": n.id,
                    "device_class": device_class(crush, n.id),
                    "name": name,
                    "type": "osd",
                    "type_id": 0,
                    "crush_weight": f64::from(n.weight) / 65536.0,
                    "depth": n.depth,
                    "pool_weights": {},
                }),
            }
        })
        .collect();
    json!({ "nodes": nodes, "stray": [] })
}

fn device_json(m: &OsdMap, id: i32, name: &str, crush_weight: f64, depth: usize) -> Value {
    let slot = m.osd(id).filter(|s| s.exists());
    let mut v = json!({
        "id": id,
        "device_class": m.crush.devices.get(&id).and_then(|d| d.class.clone()).unwrap_or_default(),
        "name": name,
        "type": "osd",
        "type_id": 0,
        "crush_weight": crush_weight,
        "depth": depth,
        "pool_weights": {},
        "exists": u8::from(slot.is_some()),
        "status": slot.map_or("DNE", status),
        "reweight": slot.map_or(0.0, |s| s.weight_f64()),
        "primary_affinity": slot.map_or(1.0, |s| f64::from(s.primary_affinity) / 65536.0),
    });
    if slot.is_none() {
        if let Some(o) = v.as_object_mut() {
            o.remove("primary_affinity");
        }
    }
    v
}
