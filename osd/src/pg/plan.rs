//! Planning a client write: from the object's current info and the ops of
//! one request, the store operations to apply (on the primary and, the
//! same list, on every replica), the object's new info, the log op and the
//! PG stat changes — or the error that rejects the whole request. Pure: no
//! I/O, tested on its own.

use bytes::Bytes;
use kalmar_objectstore::types::{MAX_OMAP_KEY_BYTES, MAX_OMAP_VALUE_BYTES};
use kalmar_peering::{Eversion, LogOp};
use kalmar_proto::client::{errno, OpOutput, OsdOp};
use kalmar_proto::osd::StoreOp;

use crate::names::{user_attr, ObjectInfo, DIGEST_SEED, OI_ATTR};

/// Bounds a write must respect (named OSD options).
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    pub max_write_size: u64,
    pub max_object_size: u64,
    pub max_attr_name_len: usize,
    pub max_attr_size: u64,
}

/// A rejected request: negative errno and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub result: i32,
    pub msg: String,
}

impl OpError {
    pub fn new(errno_pos: i32, msg: impl Into<String>) -> Self {
        OpError {
            result: -errno_pos,
            msg: msg.into(),
        }
    }
}

/// What a write does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePlan {
    /// Store operations on the object, without the object-info update
    /// (added by [`WritePlan::finish`] once the version is known).
    pub store_ops: Vec<StoreOp>,
    /// The object's info afterwards; `None` when it ends up removed.
    pub new_info: Option<ObjectInfo>,
    pub existed: bool,
    pub log_op: LogOp,
    pub outputs: Vec<OpOutput>,
    pub delta_objects: i64,
    pub delta_bytes: i64,
}

impl WritePlan {
    /// Whether the write adds to its pool's usage, so a pool at its quota
    /// (`full_quota`) refuses it: more objects or bytes (Ceph's rule), or
    /// new xattrs / omap entries (space the byte count does not show).
    /// Removes, truncates and overwrites within the object's size pass,
    /// so an admin can free space.
    pub fn grows_pool(&self) -> bool {
        self.delta_objects > 0
            || self.delta_bytes > 0
            || self.store_ops.iter().any(|op| match op {
                StoreOp::SetAttrs { attrs } => attrs.iter().any(|(k, _)| k != OI_ATTR),
                StoreOp::OmapSet { entries } => !entries.is_empty(),
                _ => false,
            })
    }

    /// Stamps the new version into the object info and appends its xattr
    /// update. Returns the info stored.
    pub fn finish(&mut self, version: Eversion, user_version: u64) -> Option<ObjectInfo> {
        if let Some(oi) = self.new_info.as_mut() {
            oi.version = version;
            oi.user_version = user_version;
            let bytes = kalmar_common::Encode::to_bytes(&*oi);
            self.store_ops.push(StoreOp::SetAttrs {
                attrs: vec![(OI_ATTR.to_string(), Bytes::from(bytes))],
            });
        }
        self.new_info
    }
}

fn check_extent(offset: u64, len: u64, l: &WriteLimits) -> Result<u64, OpError> {
    if len > l.max_write_size {
        return Err(OpError::new(
            errno::EFBIG,
            format!(
                "write of {len} bytes exceeds osd_max_write_size ({})",
                l.max_write_size
            ),
        ));
    }
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= l.max_object_size)
        .ok_or_else(|| {
            OpError::new(
                errno::EFBIG,
                format!(
                    "write to {offset}~{len} passes osd_max_object_size ({})",
                    l.max_object_size
                ),
            )
        })?;
    Ok(end)
}

fn check_attr(name: &str, value_len: u64, l: &WriteLimits) -> Result<(), OpError> {
    if name.is_empty() {
        return Err(OpError::new(errno::EINVAL, "xattr name is empty"));
    }
    if name.len() > l.max_attr_name_len {
        return Err(OpError::new(
            errno::ENAMETOOLONG,
            format!(
                "xattr name of {} bytes exceeds osd_max_attr_name_len ({})",
                name.len(),
                l.max_attr_name_len
            ),
        ));
    }
    if value_len > l.max_attr_size {
        return Err(OpError::new(
            errno::EFBIG,
            format!(
                "xattr value of {value_len} bytes exceeds osd_max_attr_size ({})",
                l.max_attr_size
            ),
        ));
    }
    Ok(())
}

fn check_omap_key(k: &str) -> Result<(), OpError> {
    if k.len() > MAX_OMAP_KEY_BYTES {
        return Err(OpError::new(
            errno::ENAMETOOLONG,
            format!("omap key of {} bytes exceeds {MAX_OMAP_KEY_BYTES}", k.len()),
        ));
    }
    Ok(())
}

fn need_exists(cur: &Option<ObjectInfo>, what: &str) -> Result<(), OpError> {
    match cur {
        Some(_) => Ok(()),
        None => Err(OpError::new(
            errno::ENOENT,
            format!("{what}: the object does not exist"),
        )),
    }
}

/// Plans the ops of one write request against the object's current info
/// (`None` if it does not exist).
pub fn plan_write(
    current: Option<ObjectInfo>,
    ops: &[OsdOp],
    limits: &WriteLimits,
    now_us: u64,
) -> Result<WritePlan, OpError> {
    let existed = current.is_some();
    let mut cur = current;
    let mut store_ops = Vec::with_capacity(ops.len() + 1);
    let mut changed = false;
    for op in ops {
        // A new object's data is empty: its digest is known.
        let fresh = |cur: &mut Option<ObjectInfo>| -> ObjectInfo {
            *cur.get_or_insert(ObjectInfo {
                data_digest: Some(DIGEST_SEED),
                ..Default::default()
            })
        };
        match op {
            OsdOp::Create { exclusive } => {
                if cur.is_some() && *exclusive {
                    return Err(OpError::new(errno::EEXIST, "create: the object exists"));
                }
                if cur.is_none() {
                    fresh(&mut cur);
                    store_ops.push(StoreOp::Touch);
                }
            }
            OsdOp::Write { offset, data } => {
                let end = check_extent(*offset, data.len() as u64, limits)?;
                let mut oi = fresh(&mut cur);
                oi.data_digest = if *offset == 0 && end >= oi.size_bytes {
                    Some(crc32c::crc32c_append(DIGEST_SEED, data))
                } else if *offset == oi.size_bytes {
                    oi.data_digest.map(|d| crc32c::crc32c_append(d, data))
                } else {
                    None
                };
                oi.size_bytes = oi.size_bytes.max(end);
                cur = Some(oi);
                store_ops.push(StoreOp::Write {
                    offset: *offset,
                    data: data.clone(),
                });
            }
            OsdOp::WriteFull { data } => {
                let end = check_extent(0, data.len() as u64, limits)?;
                let mut oi = fresh(&mut cur);
                if oi.size_bytes > 0 {
                    store_ops.push(StoreOp::Truncate { size: 0 });
                }
                oi.size_bytes = end;
                oi.data_digest = Some(crc32c::crc32c_append(DIGEST_SEED, data));
                cur = Some(oi);
                store_ops.push(StoreOp::Write {
                    offset: 0,
                    data: data.clone(),
                });
            }
            OsdOp::Append { data } => {
                let mut oi = fresh(&mut cur);
                let offset = oi.size_bytes;
                let end = check_extent(offset, data.len() as u64, limits)?;
                oi.size_bytes = end;
                oi.data_digest = oi.data_digest.map(|d| crc32c::crc32c_append(d, data));
                cur = Some(oi);
                store_ops.push(StoreOp::Write {
                    offset,
                    data: data.clone(),
                });
            }
            OsdOp::Truncate { size } => {
                if *size > limits.max_object_size {
                    return Err(OpError::new(
                        errno::EFBIG,
                        format!(
                            "truncate to {size} passes osd_max_object_size ({})",
                            limits.max_object_size
                        ),
                    ));
                }
                let mut oi = fresh(&mut cur);
                if *size == 0 {
                    oi.data_digest = Some(DIGEST_SEED);
                } else if *size != oi.size_bytes {
                    oi.data_digest = None;
                }
                oi.size_bytes = *size;
                cur = Some(oi);
                store_ops.push(StoreOp::Truncate { size: *size });
            }
            OsdOp::Zero { offset, len } => {
                // Zeroing never extends an object, nor creates one.
                if let Some(oi) = cur.as_mut() {
                    let end = offset.saturating_add(*len).min(oi.size_bytes);
                    if end > *offset {
                        oi.data_digest = None;
                        store_ops.push(StoreOp::Zero {
                            offset: *offset,
                            len: end - offset,
                        });
                    }
                }
            }
            OsdOp::Remove => {
                need_exists(&cur, "delete")?;
                cur = None;
                store_ops.push(StoreOp::Remove);
            }
            OsdOp::SetXattr { name, value } => {
                check_attr(name, value.len() as u64, limits)?;
                fresh(&mut cur);
                store_ops.push(StoreOp::SetAttrs {
                    attrs: vec![(user_attr(name), value.clone())],
                });
            }
            OsdOp::RmXattr { name } => {
                need_exists(&cur, "rmxattr")?;
                check_attr(name, 0, limits)?;
                store_ops.push(StoreOp::RmAttr {
                    name: user_attr(name),
                });
            }
            OsdOp::OmapSetVals { entries } => {
                for (k, v) in entries {
                    check_omap_key(k)?;
                    if v.len() > MAX_OMAP_VALUE_BYTES {
                        return Err(OpError::new(
                            errno::EFBIG,
                            format!(
                                "omap value of {} bytes exceeds {MAX_OMAP_VALUE_BYTES}",
                                v.len()
                            ),
                        ));
                    }
                }
                fresh(&mut cur);
                store_ops.push(StoreOp::OmapSet {
                    entries: entries
                        .iter()
                        .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v.clone()))
                        .collect(),
                });
            }
            OsdOp::OmapRmKeys { keys } => {
                need_exists(&cur, "omap-rm-keys")?;
                for k in keys {
                    check_omap_key(k)?;
                }
                store_ops.push(StoreOp::OmapRm {
                    keys: keys
                        .iter()
                        .map(|k| Bytes::copy_from_slice(k.as_bytes()))
                        .collect(),
                });
            }
            OsdOp::OmapClear => {
                need_exists(&cur, "omap-clear")?;
                store_ops.push(StoreOp::OmapClear);
            }
            read => {
                return Err(OpError::new(
                    errno::EINVAL,
                    format!(
                        "{} in a write request: reads and writes may not be mixed",
                        read.describe()
                    ),
                ))
            }
        }
        changed = true;
    }
    if !changed {
        return Err(OpError::new(
            errno::EINVAL,
            "a request needs at least one op",
        ));
    }
    if let Some(oi) = cur.as_mut() {
        oi.mtime_us = now_us;
    }
    let old_size = current.map_or(0, |o| o.size_bytes) as i64;
    let new_size = cur.map_or(0, |o| o.size_bytes) as i64;
    Ok(WritePlan {
        store_ops,
        new_info: cur,
        existed,
        log_op: if cur.is_none() {
            LogOp::Delete
        } else {
            LogOp::Modify
        },
        outputs: ops.iter().map(|_| OpOutput::default()).collect(),
        delta_objects: i64::from(cur.is_some()) - i64::from(existed),
        delta_bytes: new_size - old_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: WriteLimits = WriteLimits {
        max_write_size: 1 << 20,
        max_object_size: 4 << 20,
        max_attr_name_len: 100,
        max_attr_size: 1024,
    };

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn oi(size: u64) -> ObjectInfo {
        ObjectInfo {
            size_bytes: size,
            ..Default::default()
        }
    }

    #[test]
    fn what_grows_the_pool() {
        let grows = |cur: Option<ObjectInfo>, ops: &[OsdOp]| {
            plan_write(cur, ops, &L, 1).expect("valid").grows_pool()
        };
        // New objects, more bytes, new xattrs / omap entries: refused at quota.
        assert!(grows(None, &[OsdOp::Create { exclusive: false }]));
        assert!(grows(None, &[OsdOp::WriteFull { data: b("") }]));
        assert!(grows(Some(oi(3)), &[OsdOp::Append { data: b("x") }]));
        assert!(grows(Some(oi(3)), &[OsdOp::WriteFull { data: b("four") }]));
        assert!(grows(
            Some(oi(3)),
            &[OsdOp::Write {
                offset: 2,
                data: b("yy")
            }]
        ));
        assert!(grows(
            Some(oi(3)),
            &[OsdOp::SetXattr {
                name: "a".into(),
                value: b("v")
            }]
        ));
        assert!(grows(
            Some(oi(3)),
            &[OsdOp::OmapSetVals {
                entries: vec![("k".into(), b("v"))]
            }]
        ));
        // Removing, shrinking, overwriting in place: allowed, so an admin
        // can free space.
        assert!(!grows(Some(oi(3)), &[OsdOp::Remove]));
        assert!(!grows(Some(oi(3)), &[OsdOp::Truncate { size: 1 }]));
        assert!(!grows(Some(oi(3)), &[OsdOp::WriteFull { data: b("ab") }]));
        assert!(!grows(
            Some(oi(3)),
            &[OsdOp::Write {
                offset: 0,
                data: b("zz")
            }]
        ));
        assert!(!grows(Some(oi(3)), &[OsdOp::RmXattr { name: "a".into() }]));
        assert!(!grows(Some(oi(3)), &[OsdOp::OmapClear]));
    }

    #[test]
    fn create_write_append_truncate() {
        let p = plan_write(None, &[OsdOp::Append { data: b("abc") }], &L, 7).expect("ok");
        assert_eq!(p.new_info.map(|o| (o.size_bytes, o.mtime_us)), Some((3, 7)));
        assert_eq!(
            (p.delta_objects, p.delta_bytes, p.log_op),
            (1, 3, LogOp::Modify)
        );
        assert_eq!(
            p.store_ops,
            vec![StoreOp::Write {
                offset: 0,
                data: b("abc")
            }]
        );
        let p = plan_write(Some(oi(3)), &[OsdOp::Append { data: b("de") }], &L, 8).expect("ok");
        assert_eq!(
            p.store_ops,
            vec![StoreOp::Write {
                offset: 3,
                data: b("de")
            }]
        );
        assert_eq!((p.delta_objects, p.delta_bytes), (0, 2));
        let p = plan_write(Some(oi(10)), &[OsdOp::WriteFull { data: b("x") }], &L, 8).expect("ok");
        assert_eq!(p.store_ops[0], StoreOp::Truncate { size: 0 });
        assert_eq!(p.delta_bytes, -9);
        let p = plan_write(
            Some(oi(10)),
            &[OsdOp::Write {
                offset: 4,
                data: b("yy"),
            }],
            &L,
            8,
        )
        .expect("ok");
        assert_eq!(p.new_info.map(|o| o.size_bytes), Some(10));
        let p = plan_write(
            Some(oi(10)),
            &[OsdOp::Zero {
                offset: 8,
                len: 100,
            }],
            &L,
            8,
        )
        .expect("ok");
        assert_eq!(p.store_ops, vec![StoreOp::Zero { offset: 8, len: 2 }]);
        let p = plan_write(None, &[OsdOp::Zero { offset: 0, len: 5 }], &L, 8).expect("ok");
        assert!(p.store_ops.is_empty() && p.new_info.is_none());
    }

    #[test]
    fn remove_and_errors() {
        let p = plan_write(Some(oi(5)), &[OsdOp::Remove], &L, 1).expect("ok");
        assert_eq!(
            (p.delta_objects, p.delta_bytes, p.log_op),
            (-1, -5, LogOp::Delete)
        );
        let mut p2 = p.clone();
        assert_eq!(p2.finish(Eversion::new(1, 1), 1), None);
        assert_eq!(
            p2.store_ops,
            vec![StoreOp::Remove],
            "no info attr on a removed object"
        );
        let e = plan_write(None, &[OsdOp::Remove], &L, 1).expect_err("missing");
        assert_eq!(e.result, -errno::ENOENT);
        let e = plan_write(Some(oi(1)), &[OsdOp::Create { exclusive: true }], &L, 1)
            .expect_err("exists");
        assert_eq!(e.result, -errno::EEXIST);
        let big = Bytes::from(vec![0u8; (L.max_write_size + 1) as usize]);
        let e = plan_write(None, &[OsdOp::WriteFull { data: big }], &L, 1).expect_err("too big");
        assert_eq!(e.result, -errno::EFBIG);
        let e = plan_write(
            None,
            &[OsdOp::Write {
                offset: u64::MAX,
                data: b("a"),
            }],
            &L,
            1,
        )
        .expect_err("overflow");
        assert_eq!(e.result, -errno::EFBIG);
        let e = plan_write(
            None,
            &[OsdOp::SetXattr {
                name: "x".repeat(101),
                value: b("v"),
            }],
            &L,
            1,
        )
        .expect_err("long name");
        assert_eq!(e.result, -errno::ENAMETOOLONG);
        let e = plan_write(None, &[OsdOp::Stat], &L, 1).expect_err("read in write");
        assert_eq!(e.result, -errno::EINVAL);
        assert!(plan_write(None, &[], &L, 1).is_err());
        let e = plan_write(None, &[OsdOp::OmapClear], &L, 1).expect_err("missing");
        assert_eq!(e.result, -errno::ENOENT);
    }

    #[test]
    fn finish_stamps_info_attr() {
        let mut p = plan_write(
            None,
            &[OsdOp::SetXattr {
                name: "k".into(),
                value: b("v"),
            }],
            &L,
            3,
        )
        .expect("ok");
        let info = p.finish(Eversion::new(4, 9), 9).expect("exists");
        assert_eq!(info.version, Eversion::new(4, 9));
        let StoreOp::SetAttrs { attrs } = p.store_ops.last().expect("attr op") else {
            panic!("last op sets the object info");
        };
        assert_eq!(attrs[0].0, OI_ATTR);
        let back = <ObjectInfo as kalmar_common::Decode>::from_bytes(&attrs[0].1).expect("decodes");
        assert_eq!(back, info);
    }

    proptest! {
        /// Sizes and stats follow a simple model over random op sequences.
        #[test]
        fn size_model(seq in proptest::collection::vec((0u8..6, 0u64..5000, 0usize..3000), 1..20)) {
            let mut cur: Option<ObjectInfo> = None;
            let mut model: Option<u64> = None;
            // The object's bytes, to check a recorded digest against.
            let mut bytes: Vec<u8> = Vec::new();
            for (i, (kind, off, len)) in seq.into_iter().enumerate() {
                let fill = Bytes::from(vec![i as u8 + 1; len]);
                let op = match kind {
                    0 => OsdOp::Write { offset: off, data: fill },
                    1 => OsdOp::Append { data: fill },
                    2 => OsdOp::Truncate { size: off },
                    3 => OsdOp::WriteFull { data: fill },
                    4 => OsdOp::Zero { offset: off, len: len as u64 },
                    _ => OsdOp::Remove,
                };
                match &op {
                    OsdOp::Write { offset, data } => {
                        let end = *offset as usize + data.len();
                        if bytes.len() < end { bytes.resize(end, 0); }
                        bytes[*offset as usize..end].copy_from_slice(data);
                    }
                    OsdOp::Append { data } => bytes.extend_from_slice(data),
                    OsdOp::Truncate { size } => bytes.resize(*size as usize, 0),
                    OsdOp::WriteFull { data } => bytes = data.to_vec(),
                    OsdOp::Zero { offset, len } => {
                        let end = (offset + len).min(bytes.len() as u64) as usize;
                        if end > *offset as usize { bytes[*offset as usize..end].fill(0); }
                    }
                    _ => bytes.clear(),
                }
                if kind == 4 {
                    // Zero never creates nor resizes.
                    let p = plan_write(cur, &[op], &L, 0).expect("valid");
                    prop_assert_eq!(p.new_info.map(|o| o.size_bytes), model);
                    cur = p.new_info;
                    if let Some(d) = cur.and_then(|o| o.data_digest) {
                        prop_assert_eq!(d, crc32c::crc32c_append(DIGEST_SEED, &bytes));
                    }
                    continue;
                }
                let expect = match (&op, model) {
                    (OsdOp::Write { offset, data }, m) => Some(m.unwrap_or(0).max(offset + data.len() as u64)),
                    (OsdOp::Append { data }, m) => Some(m.unwrap_or(0) + data.len() as u64),
                    (OsdOp::Truncate { size }, _) => Some(*size),
                    (OsdOp::WriteFull { data }, _) => Some(data.len() as u64),
                    (_, None) => { prop_assert!(plan_write(cur, &[op], &L, 0).is_err()); continue; }
                    (_, Some(_)) => None,
                };
                let p = plan_write(cur, &[op], &L, 0).expect("valid");
                prop_assert_eq!(p.delta_bytes, expect.unwrap_or(0) as i64 - model.unwrap_or(0) as i64);
                prop_assert_eq!(p.delta_objects, i64::from(expect.is_some()) - i64::from(model.is_some()));
                cur = p.new_info;
                model = expect;
                prop_assert_eq!(cur.map(|o| o.size_bytes), model);
                if let Some(d) = cur.and_then(|o| o.data_digest) {
                    prop_assert_eq!(d, crc32c::crc32c_append(DIGEST_SEED, &bytes), "digest after op {}", i);
                }
            }
        }
    }
}
