//! CRUSH administration and OSD removal, with Ceph's command names,
//! replies and errors: device classes (`osd crush set-device-class`,
//! `rm-device-class`, `class ls`, `class ls-osd`), rules (`osd crush rule
//! create-replicated|ls|dump|rm`), buckets and items (`osd crush
//! add-bucket|move|rm|remove|reweight|set|add|create-or-move|tree`) and
//! removal (`osd destroy|purge|rm`).
//!
//! Every change is made on a copy of the map through `OsdMon::edit_map`,
//! so a failed command changes nothing and a successful one lands in the
//! next epoch, with the device-class shadow trees rebuilt (as Ceph's
//! `rebuild_roots_with_classes`) so class rules follow the change.

use kalmar_maps::crush::edit::{self, Location};
use kalmar_maps::crush::CrushMap;
use kalmar_maps::osd::OsdState;
use kalmar_maps::{dump, OsdMap, OsdSlot};
use serde_json::{json, Value};

use crate::commands::{arg_str, osd_ids, req_f64, req_str, CmdReply, Format};
use crate::errors::{CmdError, EEXIST, EPERM};
#[cfg(test)]
use crate::errors::{EINVAL, ENOENT};
use crate::state::MonState;

const EBUSY: i32 = -16;
const ENOTEMPTY: i32 = -39;

/// The prefixes this module answers.
pub const PREFIXES: &[&str] = &[
    "osd crush set-device-class",
    "osd crush rm-device-class",
    "osd crush class ls",
    "osd crush class ls-osd",
    "osd crush rule create-replicated",
    "osd crush rule ls",
    "osd crush rule list",
    "osd crush rule dump",
    "osd crush rule rm",
    "osd crush add-bucket",
    "osd crush move",
    "osd crush rm",
    "osd crush remove",
    "osd crush unlink",
    "osd crush reweight",
    "osd crush set",
    "osd crush add",
    "osd crush create-or-move",
    "osd crush tree",
    "osd destroy",
    "osd purge",
    "osd rm",
];

/// Runs `prefix` if it is one of this module's, else None.
pub(crate) fn dispatch(
    st: &mut MonState,
    prefix: &str,
    cmd: &Value,
    fmt: Format,
) -> Option<Result<CmdReply, CmdError>> {
    if !PREFIXES.contains(&prefix) {
        return None;
    }
    Some(run(st, prefix, cmd, fmt))
}

fn run(st: &mut MonState, prefix: &str, cmd: &Value, fmt: Format) -> Result<CmdReply, CmdError> {
    let crush = &st.osd.view().crush;
    Ok(match prefix {
        "osd crush class ls" => CmdReply::data(fmt.json_always(&json!(crush.classes()))),
        "osd crush class ls-osd" => {
            let class = req_str(cmd, "class")?;
            let ids = crush.class_devices(class);
            CmdReply::data(fmt.render(&json!(ids), || {
                ids.iter().map(|i| format!("{i}\n")).collect()
            }))
        }
        "osd crush rule ls" | "osd crush rule list" => {
            let names: Vec<&str> = crush.rules.values().map(|r| r.name.as_str()).collect();
            CmdReply::data(fmt.render(&json!(names), || {
                names.iter().map(|n| format!("{n}\n")).collect()
            }))
        }
        "osd crush rule dump" => {
            let v = match arg_str(cmd, "name") {
                Some(name) => {
                    let r = crush
                        .rule_by_name(name)
                        .ok_or_else(|| CmdError::noent(format!("unknown crush rule '{name}'")))?;
                    dump::rule_json(crush, r)
                }
                None => json!(crush
                    .rules
                    .values()
                    .map(|r| dump::rule_json(crush, r))
                    .collect::<Vec<_>>()),
            };
            CmdReply::data(fmt.json_always(&v))
        }
        "osd crush tree" => {
            let shadow = cmd.get("shadow").and_then(Value::as_bool) == Some(true)
                || arg_str(cmd, "shadow") == Some("--show-shadow");
            CmdReply::data(fmt.render(&dump::crush_tree_json(crush, shadow), || {
                dump::crush_tree_plain(crush, shadow)
            }))
        }
        "osd crush set-device-class" => {
            let class = req_str(cmd, "class")?.to_string();
            let ids = ids_or_all(st.osd.view(), cmd)?;
            status(st.osd.edit_map(|m, _| set_device_class(m, &class, &ids))?)
        }
        "osd crush rm-device-class" => {
            let ids = ids_or_all(st.osd.view(), cmd)?;
            status(st.osd.edit_map(|m, _| rm_device_class(m, &ids))?)
        }
        "osd crush rule create-replicated" => {
            let name = req_str(cmd, "name")?;
            let root = req_str(cmd, "root")?;
            let domain = req_str(cmd, "type")?;
            let class = arg_str(cmd, "class").filter(|c| !c.is_empty());
            status(
                st.osd
                    .edit_map(|m, _| create_replicated(&mut m.crush, name, root, domain, class))?,
            )
        }
        "osd crush rule rm" => {
            let name = req_str(cmd, "name")?;
            status(st.osd.edit_map(|m, _| rule_rm(m, name))?)
        }
        "osd crush add-bucket" => {
            let (name, ty) = (req_str(cmd, "name")?, req_str(cmd, "type")?);
            let loc = location(cmd)?;
            status(
                st.osd
                    .edit_map(|m, _| add_bucket(&mut m.crush, name, ty, &loc))?,
            )
        }
        "osd crush move" => {
            let name = req_str(cmd, "name")?;
            let loc = location(cmd)?;
            status(
                st.osd
                    .edit_map(|m, _| move_item(&mut m.crush, name, &loc))?,
            )
        }
        "osd crush rm" | "osd crush remove" | "osd crush unlink" => {
            let name = req_str(cmd, "name")?;
            let unlink = prefix == "osd crush unlink";
            status(
                st.osd
                    .edit_map(|m, _| crush_remove(&mut m.crush, name, unlink))?,
            )
        }
        "osd crush reweight" => {
            let name = req_str(cmd, "name")?;
            let w = req_f64(cmd, "weight")?;
            status(st.osd.edit_map(|m, _| reweight(&mut m.crush, name, w))?)
        }
        "osd crush set" | "osd crush add" => {
            let id = single_osd(cmd)?;
            let w = req_f64(cmd, "weight")?;
            let loc = location(cmd)?;
            let add = prefix == "osd crush add";
            status(st.osd.edit_map(|m, _| set_item(m, id, w, &loc, add))?)
        }
        "osd crush create-or-move" => {
            let id = single_osd(cmd)?;
            let w = req_f64(cmd, "weight")?;
            let loc = location(cmd)?;
            status(st.osd.edit_map(|m, _| create_or_move(m, id, w, &loc))?)
        }
        "osd destroy" | "osd purge" => {
            let id = single_osd(cmd)?;
            let sure = cmd.get("yes_i_really_mean_it").and_then(Value::as_bool) == Some(true);
            let purge = prefix == "osd purge";
            status(
                st.osd
                    .edit_map(|m, _| destroy_or_purge(m, id, sure, purge))?,
            )
        }
        "osd rm" => {
            let ids = osd_ids(cmd)?;
            status(st.osd.edit_map(|m, _| osd_rm(m, &ids))?)
        }
        other => return Err(CmdError::inval(format!("unknown command '{other}'"))),
    })
}

/// A reply carrying only a status line, or Ceph's "error with a message,
/// nothing changed" (EBUSY and the like are returned as errors).
fn status(outs: String) -> CmdReply {
    CmdReply::status(outs)
}

fn location(cmd: &Value) -> Result<Location, CmdError> {
    let words: Vec<String> = match cmd.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| CmdError::inval("location words must be strings"))?,
        Some(_) => return Err(CmdError::inval("args must be a list of TYPE=NAME words")),
    };
    edit::parse_location(&words).map_err(|e| CmdError::inval(e.to_string()))
}

/// `osd.N` or `N` from `id` (or the first of `ids`).
fn single_osd(cmd: &Value) -> Result<i32, CmdError> {
    let v = cmd
        .get("id")
        .or_else(|| cmd.get("name"))
        .cloned()
        .ok_or_else(|| CmdError::inval("missing OSD id (osd.N)"))?;
    let ids = osd_ids(&json!({ "ids": v }))?;
    ids.first()
        .copied()
        .ok_or_else(|| CmdError::inval("missing OSD id (osd.N)"))
}

/// The OSD ids given, or every OSD for `all`, `any` or `*` (Ceph's).
fn ids_or_all(m: &OsdMap, cmd: &Value) -> Result<Vec<i32>, CmdError> {
    let all = match cmd.get("ids") {
        Some(Value::Array(a)) => a
            .iter()
            .any(|v| matches!(v.as_str(), Some("all" | "any" | "*"))),
        Some(Value::String(s)) => matches!(s.as_str(), "all" | "any" | "*"),
        _ => false,
    };
    if all {
        return Ok(m.existing_osds().collect());
    }
    osd_ids(cmd)
}

fn crush_err(e: kalmar_maps::MapError) -> CmdError {
    CmdError::inval(e.to_string())
}

fn rebuild(crush: &mut CrushMap) -> Result<(), CmdError> {
    crush.rebuild_shadow_trees().map_err(crush_err)
}

/// Ceph's set of ids as `0,1,2`.
fn id_list(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Sets `class` on OSDs without one; an OSD bound to another class is
/// refused (EBUSY), as Ceph's `update_device_class`.
pub fn set_device_class(m: &mut OsdMap, class: &str, ids: &[i32]) -> Result<String, CmdError> {
    if !edit::is_valid_name(class) {
        return Err(CmdError::inval(format!(
            "'{class}' is not a valid device class name"
        )));
    }
    let mut outs = String::new();
    let mut updated = Vec::new();
    for &id in ids {
        if !m.exists(id) {
            outs.push_str(&format!("osd.{id} does not exist. "));
            continue;
        }
        let name = format!("osd.{id}");
        let crush = &mut m.crush;
        if !crush.devices.contains_key(&id) {
            crush.add_device(id, &name, None).map_err(crush_err)?;
        }
        let dev = crush
            .devices
            .get_mut(&id)
            .ok_or_else(|| CmdError::noent(format!("osd.{id} is not a device of the crush map")))?;
        match dev.class.as_deref() {
            Some(old) if old == class => {
                outs.push_str(&format!("{name} already set to class {class}. "));
            }
            Some(old) => {
                return Err(CmdError::new(
                    EBUSY,
                    format!(
                        "osd.{id} has already bound to class '{old}', can not reset class to '{class}'; use 'kalmar osd crush rm-device-class <id>' to remove old class first"
                    ),
                ))
            }
            None => {
                dev.class = Some(class.to_string());
                updated.push(id);
            }
        }
    }
    if !updated.is_empty() {
        rebuild(&mut m.crush)?;
        outs.push_str(&format!(
            "set osd(s) {} to class '{class}'",
            id_list(&updated)
        ));
    }
    Ok(outs)
}

pub fn rm_device_class(m: &mut OsdMap, ids: &[i32]) -> Result<String, CmdError> {
    let mut outs = String::new();
    let mut updated = Vec::new();
    for &id in ids {
        if !m.exists(id) {
            outs.push_str(&format!("osd.{id} does not exist. "));
            continue;
        }
        match m.crush.devices.get_mut(&id) {
            Some(d) if d.class.is_some() => {
                d.class = None;
                updated.push(id);
            }
            _ => outs.push_str(&format!("osd.{id} belongs to no class, ")),
        }
    }
    if !updated.is_empty() {
        rebuild(&mut m.crush)?;
        outs.push_str(&format!(
            "done removing class of osd(s): {}",
            id_list(&updated)
        ));
    }
    Ok(outs)
}

/// Ceph's `add_simple_rule` checks, then the rule.
pub fn create_replicated(
    crush: &mut CrushMap,
    name: &str,
    root: &str,
    domain: &str,
    class: Option<&str>,
) -> Result<String, CmdError> {
    if crush.rule_by_name(name).is_some() {
        return Ok(format!("rule {name} already exists"));
    }
    if !edit::is_valid_name(name) {
        return Err(CmdError::inval(format!(
            "'{name}' is not a valid rule name"
        )));
    }
    let mut take = crush
        .bucket_by_name(root)
        .filter(|b| !b.is_shadow())
        .map(|b| b.id)
        .ok_or_else(|| CmdError::noent(format!("root item {root} does not exist")))?;
    let type_id = crush
        .type_id(domain)
        .ok_or_else(|| CmdError::inval(format!("unknown type {domain}")))?;
    if let Some(c) = class {
        if !crush.classes().iter().any(|k| k == c) {
            return Err(CmdError::inval(format!("device class {c} does not exist")));
        }
        take = crush
            .bucket_by_name(&format!("{root}~{c}"))
            .map(|b| b.id)
            .ok_or_else(|| CmdError::inval(format!("root {root} has no devices with class {c}")))?;
    }
    crush
        .add_replicated_rule(name, take, type_id)
        .map_err(crush_err)?;
    Ok(String::new())
}

fn rule_rm(m: &mut OsdMap, name: &str) -> Result<String, CmdError> {
    let Some(rule) = m.crush.rule_by_name(name) else {
        return Ok(format!("rule {name} does not exist"));
    };
    let id = rule.id;
    if let Some(p) = m.pools.values().find(|p| p.crush_rule == id) {
        return Err(CmdError::new(
            EBUSY,
            format!("crush rule {name} ({id}) is in use by pool '{}'", p.name),
        ));
    }
    m.crush.rules.remove(&id);
    rebuild(&mut m.crush)?;
    Ok(String::new())
}

fn add_bucket(
    crush: &mut CrushMap,
    name: &str,
    ty: &str,
    loc: &Location,
) -> Result<String, CmdError> {
    if !edit::is_valid_name(name) {
        return Err(CmdError::inval(format!(
            "'{name}' is not a valid crush name"
        )));
    }
    let type_id = crush
        .type_id(ty)
        .ok_or_else(|| CmdError::inval(format!("type '{ty}' does not exist")))?;
    if type_id == 0 {
        return Err(CmdError::inval(format!(
            "type '{ty}' is the device type; a bucket needs a higher one"
        )));
    }
    let id = match crush.item_id(name) {
        Some(_) if loc.is_empty() => {
            return Ok(format!("item {name} already exists"));
        }
        Some(id) => id,
        None => {
            let id = crush.next_bucket_id();
            crush.add_bucket(id, name, type_id).map_err(crush_err)?;
            id
        }
    };
    if loc.is_empty() {
        rebuild(crush)?;
        return Ok(format!("added bucket {name} type {ty} to crush map"));
    }
    if crush.is_at_location(id, loc) {
        return Ok(format!(
            "bucket {name} already exists at location {}",
            edit::location_string(loc)
        ));
    }
    crush.move_item(id, loc).map_err(crush_err)?;
    rebuild(crush)?;
    Ok(format!(
        "added bucket {name} type {ty} to location {}",
        edit::location_string(loc)
    ))
}

fn move_item(crush: &mut CrushMap, name: &str, loc: &Location) -> Result<String, CmdError> {
    let id = crush
        .item_id(name)
        .filter(|&id| crush.bucket(id).is_none_or(|b| !b.is_shadow()))
        .ok_or_else(|| CmdError::noent(format!("item {name} does not exist")))?;
    if loc.is_empty() {
        return Err(CmdError::inval(
            "missing location (e.g. root=default rack=r1)",
        ));
    }
    let where_ = edit::location_string(loc);
    if crush.is_at_location(id, loc) {
        return Ok(format!(
            "no need to move item id {id} name '{name}' to location {where_} in crush map"
        ));
    }
    crush.move_item(id, loc).map_err(crush_err)?;
    rebuild(crush)?;
    Ok(format!(
        "moved item id {id} name '{name}' to location {where_} in crush map"
    ))
}

fn crush_remove(crush: &mut CrushMap, name: &str, unlink: bool) -> Result<String, CmdError> {
    let Some(id) = crush.item_id(name) else {
        return Ok(format!("device '{name}' does not appear in the crush map"));
    };
    if crush.bucket(id).is_some_and(|b| b.is_shadow()) {
        return Err(CmdError::inval(format!(
            "'{name}' is a device-class shadow bucket; it follows the tree it copies"
        )));
    }
    if id < 0 && crush.bucket(id).is_some_and(|b| !b.items.is_empty()) {
        return Err(CmdError::new(
            ENOTEMPTY,
            format!("(39) Directory not empty: bucket '{name}' still holds items"),
        ));
    }
    if let Some(r) = crush.rules.values().find(|r| {
        r.steps
            .iter()
            .any(|s| matches!(s, kalmar_maps::crush::RuleStep::Take(t) if *t == id))
    }) {
        return Err(CmdError::new(
            EBUSY,
            format!("crush rule '{}' takes '{name}'", r.name),
        ));
    }
    if unlink {
        if id < 0 {
            crush.detach(id);
        } else {
            crush.unlink_device(id);
        }
        rebuild(crush)?;
        return Ok(format!(
            "unlinked item id {id} name '{name}' from crush map"
        ));
    }
    crush.remove_item(id).map_err(crush_err)?;
    rebuild(crush)?;
    Ok(format!("removed item id {id} name '{name}' from crush map"))
}

fn reweight(crush: &mut CrushMap, name: &str, w: f64) -> Result<String, CmdError> {
    let id = crush.item_id(name).ok_or_else(|| {
        CmdError::noent(format!("device '{name}' does not appear in the crush map"))
    })?;
    if id < 0 {
        return Err(CmdError::inval(format!(
            "device '{name}' is not a leaf in the crush map"
        )));
    }
    let weight = edit::weight_from_f64(w).map_err(crush_err)?;
    crush.adjust_item_weight(id, weight).map_err(crush_err)?;
    rebuild(crush)?;
    Ok(format!(
        "reweighted item id {id} name '{name}' to {} in crush map",
        dump::fmt_g(w)
    ))
}

/// `osd crush set osd.N W LOC...` (move there and set the weight) and
/// `osd crush add` (place an unplaced OSD, or reweight it where it is).
fn set_item(
    m: &mut OsdMap,
    id: i32,
    w: f64,
    loc: &Location,
    add: bool,
) -> Result<String, CmdError> {
    let name = format!("osd.{id}");
    let where_ = edit::location_string(loc);
    let wstr = dump::fmt_g(w);
    if !m.exists(id) {
        return Err(CmdError::noent(format!(
            "osd.{id} does not exist.  create it before updating the crush map"
        )));
    }
    if loc.is_empty() {
        return Err(CmdError::inval("missing location (e.g. host=node1)"));
    }
    let weight = edit::weight_from_f64(w).map_err(crush_err)?;
    let crush = &mut m.crush;
    if !crush.devices.contains_key(&id) {
        if !add {
            return Err(CmdError::noent(format!(
                "unable to set item id {id} name '{name}' weight {wstr} at location {where_}: does not exist"
            )));
        }
        crush.add_device(id, &name, None).map_err(crush_err)?;
    }
    let placed = crush.device_is_placed(id);
    let action = if crush.is_at_location(id, loc) {
        crush.adjust_item_weight(id, weight).map_err(crush_err)?;
        "set"
    } else if placed && add {
        return Err(CmdError::new(
            EEXIST,
            format!("{name} is already placed elsewhere; use 'osd crush set' or 'osd crush move' to change its location"),
        ));
    } else {
        crush.unlink_device(id);
        crush.insert_at(id, weight, loc).map_err(crush_err)?;
        if add {
            "add"
        } else {
            "set"
        }
    };
    rebuild(crush)?;
    Ok(format!(
        "{action} item id {id} name '{name}' weight {wstr} at location {where_} to crush map"
    ))
}

/// `osd crush create-or-move osd.N W LOC...`: what an OSD asks at boot
/// with its `crush_location` (`osd_crush_update_on_start`). Missing
/// buckets on the path are made, buckets are moved under the ones named
/// above them, the OSD goes into the lowest one keeping the weight it has
/// (`W` only for an OSD not in CRUSH yet, or one that has never booted
/// under its id: its first boot, where Ceph would place it with `W`; a
/// destroyed id re-created on a new disk keeps its weight, as in Ceph);
/// one already there is left alone and the map does not change
/// ([`CrushMap::create_or_move_at`], [`CrushMap::create_or_move_first_boot`]).
pub fn create_or_move(m: &mut OsdMap, id: i32, w: f64, loc: &Location) -> Result<String, CmdError> {
    let name = format!("osd.{id}");
    if !m.exists(id) {
        return Err(CmdError::noent(format!(
            "osd.{id} does not exist.  create it before updating the crush map"
        )));
    }
    if loc.is_empty() {
        return Err(CmdError::inval(
            "missing location (e.g. root=default rack=r1 host=node1)",
        ));
    }
    let weight = edit::weight_from_f64(w).map_err(crush_err)?;
    // Never booted under this id (NEW, and no boot recorded: a destroyed
    // id re-created on a new disk keeps the info of its earlier boots).
    let first_boot = m
        .osd(id)
        .is_some_and(|s| s.state.has(OsdState::NEW) && s.info.up_from == 0);
    let changed = if first_boot {
        m.crush.create_or_move_first_boot(id, weight, loc)
    } else {
        m.crush.create_or_move_at(id, weight, loc)
    }
    .map_err(crush_err)?;
    let tail = format!(
        "item name '{name}' weight {} at location {} to crush map",
        dump::fmt_g(w),
        edit::location_string(loc)
    );
    if !changed {
        return Ok(format!("create-or-move updated {tail}"));
    }
    rebuild(&mut m.crush)?;
    Ok(format!("create-or-move updating {tail}"))
}

/// `osd destroy` keeps the id and the CRUSH position (a new disk takes
/// both over with `osd new`/`kalmar-osd create --id`); `osd purge` also
/// removes it from CRUSH and the map.
fn destroy_or_purge(m: &mut OsdMap, id: i32, sure: bool, purge: bool) -> Result<String, CmdError> {
    if !sure {
        return Err(CmdError::new(
            EPERM,
            "Are you SURE?  This will mean real, permanent data loss. Pass --yes-i-really-mean-it if you really do.",
        ));
    }
    if !m.exists(id) {
        return Ok(format!("osd.{id} does not exist"));
    }
    if m.is_up(id) {
        return Err(CmdError::new(EBUSY, format!("osd.{id} is not `down`.")));
    }
    if purge {
        if m.crush.devices.contains_key(&id) {
            m.crush.remove_item(id).map_err(crush_err)?;
            rebuild(&mut m.crush)?;
        }
        remove_osd(m, id);
        return Ok(format!("purged osd.{id}"));
    }
    let slot = m
        .osd_mut(id)
        .ok_or_else(|| CmdError::noent(format!("osd.{id} does not exist")))?;
    if slot.state.has(OsdState::DESTROYED) {
        return Ok(format!("destroyed osd.{id}"));
    }
    // Ceph clears the uuid too: the replacing disk registers a new one.
    slot.state.0 |= OsdState::DESTROYED;
    slot.uuid = uuid::Uuid::nil();
    Ok(format!("destroyed osd.{id}"))
}

/// Drops an OSD from the map (its slot and the temp mappings naming it).
fn remove_osd(m: &mut OsdMap, id: i32) {
    if let Some(s) = m.osd_mut(id) {
        *s = OsdSlot::default();
    }
    m.pg_temp.retain(|_, osds| !osds.contains(&id));
    m.primary_temp.retain(|_, o| *o != id);
}

fn osd_rm(m: &mut OsdMap, ids: &[i32]) -> Result<String, CmdError> {
    let mut outs = String::new();
    let mut removed = Vec::new();
    for &id in ids {
        if !m.exists(id) {
            outs.push_str(&format!("osd.{id} does not exist. "));
            continue;
        }
        if m.is_up(id) {
            return Err(CmdError::new(
                EBUSY,
                format!("osd.{id} is still up; must be down before removal. "),
            ));
        }
        remove_osd(m, id);
        removed.push(format!("removed osd.{id}"));
    }
    outs.push_str(&removed.join(", "));
    Ok(outs)
}

// Error numbers this module returns besides errors.rs's, for tests.
#[cfg(test)]
pub(crate) const TEST_ERRNOS: (i32, i32, i32, i32) = (EBUSY, ENOTEMPTY, EINVAL, ENOENT);

#[cfg(test)]
#[path = "crushmon_cmds_tests.rs"]
mod tests;
