//! Pool commands as changes to a map: create, set, rm, and the listings.
//! Messages follow Ceph's (`pool 'rbd' created`, `set pool 1 size to 3`).

use kalmar_maps::dump;
use kalmar_maps::pool::PgPool;
use kalmar_maps::{Epoch, OsdMap};
use serde_json::{json, Value};

use crate::errors::{CmdError, EOPNOTSUPP, EPERM, ERANGE};
use crate::options::MonOptions;

/// Longest pool name accepted.
pub const MAX_POOL_NAME_LEN: usize = 128;
/// Largest replica count.
pub const MAX_POOL_SIZE: u32 = 10;

fn check_name(name: &str) -> Result<(), CmdError> {
    if name.is_empty() || name.len() > MAX_POOL_NAME_LEN {
        return Err(CmdError::inval(format!(
            "pool name must be 1 to {MAX_POOL_NAME_LEN} bytes long"
        )));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CmdError::inval(format!(
            "pool name '{name}' contains whitespace or control characters"
        )));
    }
    Ok(())
}

fn check_size(size: u32, min_size: u32) -> Result<(), CmdError> {
    if size == 0 || size > MAX_POOL_SIZE {
        return Err(CmdError::new(
            ERANGE,
            format!("pool size must be between 1 and {MAX_POOL_SIZE}"),
        ));
    }
    if min_size == 0 || min_size > size {
        return Err(CmdError::new(
            ERANGE,
            format!("pool min_size must be between 1 and size ({size})"),
        ));
    }
    Ok(())
}

/// What `osd pool create` asks for.
#[derive(Debug, Clone, Default)]
pub struct PoolCreate {
    pub name: String,
    pub pg_num: Option<u32>,
    pub size: Option<u32>,
    pub min_size: Option<u32>,
    pub crush_rule: Option<String>,
}

pub fn create(
    m: &mut OsdMap,
    epoch: Epoch,
    opts: &MonOptions,
    req: &PoolCreate,
) -> Result<String, CmdError> {
    check_name(&req.name)?;
    if m.pool_by_name(&req.name).is_ok() {
        // Ceph answers success for an existing pool, so scripts may repeat.
        return Ok(format!("pool '{}' already exists", req.name));
    }
    let pg_num = req.pg_num.unwrap_or(opts.osd_pool_default_pg_num);
    if pg_num == 0 || pg_num > opts.mon_max_pool_pg_num {
        return Err(CmdError::new(
            ERANGE,
            format!(
                "pg_num {pg_num} must be between 1 and mon_max_pool_pg_num ({})",
                opts.mon_max_pool_pg_num
            ),
        ));
    }
    let size = req.size.unwrap_or(opts.osd_pool_default_size);
    let min_size = req.min_size.unwrap_or_else(|| opts.default_min_size(size));
    check_size(size, min_size)?;
    let rule = match &req.crush_rule {
        None => 0,
        Some(name) => m
            .crush
            .rule_by_name(name)
            .map(|r| r.id)
            .ok_or_else(|| CmdError::noent(format!("crush rule '{name}' does not exist")))?,
    };
    let id = m.pool_max + 1;
    let mut pool = PgPool::replicated(id, &req.name, size, min_size, pg_num, rule);
    pool.last_change = epoch;
    m.pools.insert(id, pool);
    m.pool_max = id;
    Ok(format!("pool '{}' created", req.name))
}

/// `osd pool set NAME VAR VAL`.
pub fn set(
    m: &mut OsdMap,
    epoch: Epoch,
    name: &str,
    var: &str,
    val: &str,
) -> Result<String, CmdError> {
    let id = m.pool_by_name(name)?.id;
    // crush_rule takes a rule name, as Ceph's; a number is the rule id.
    let by_name = match var {
        "crush_rule" => m.crush.rule_by_name(val).map(|r| r.id.to_string()),
        _ => None,
    };
    let val_num = by_name.as_deref().unwrap_or(val);
    let n: u32 = val_num.parse().map_err(|_| {
        CmdError::inval(format!(
            "value '{val}' for {var} is not a non-negative integer"
        ))
    })?;
    let crush_rules: Vec<u32> = m.crush.rules.keys().copied().collect();
    let pool = m
        .pools
        .get_mut(&id)
        .ok_or_else(|| CmdError::noent(format!("pool '{name}' does not exist")))?;
    match var {
        "size" => {
            // Like Ceph: min_size follows when it would exceed the new size.
            let min_size = pool.min_size.min(n).max(1);
            check_size(n, min_size)?;
            pool.size = n;
            pool.min_size = min_size;
        }
        "min_size" => {
            check_size(pool.size, n)?;
            pool.min_size = n;
        }
        "pg_num" | "pgp_num" => {
            if n == 0 {
                return Err(CmdError::new(ERANGE, format!("{var} must be at least 1")));
            }
            if var == "pg_num" && n < pool.pg_num {
                return Err(CmdError::new(
                    EOPNOTSUPP,
                    format!("decreasing pg_num ({} -> {n}) is not supported", pool.pg_num),
                ));
            }
            if var == "pgp_num" && n > pool.pg_num {
                return Err(CmdError::inval(format!("pgp_num {n} cannot exceed pg_num {}", pool.pg_num)));
            }
            if var == "pg_num" {
                pool.pg_num = n;
            }
            pool.pgp_num = n;
        }
        "crush_rule" => {
            if !crush_rules.contains(&n) {
                return Err(CmdError::noent(format!("crush rule {n} does not exist")));
            }
            pool.crush_rule = n;
        }
        other => {
            return Err(CmdError::inval(format!(
                "unknown pool variable '{other}'; expected size, min_size, pg_num, pgp_num or crush_rule"
            )))
        }
    }
    pool.last_change = epoch;
    Ok(format!("set pool {id} {var} to {val}"))
}

/// `osd pool rm NAME NAME --yes-i-really-really-mean-it`.
pub fn rm(
    m: &mut OsdMap,
    name: &str,
    name2: Option<&str>,
    sure: bool,
    allowed: bool,
) -> Result<String, CmdError> {
    // Ceph answers 0 here; Kalmar's CLI promises a clear error and a
    // non-zero exit for unknown pools (a typo must not look like success).
    let Ok(pool) = m.pool_by_name(name) else {
        return Err(CmdError::noent(format!("pool '{name}' does not exist")));
    };
    if name2 != Some(name) || !sure {
        return Err(CmdError::new(
            EPERM,
            format!(
                "WARNING: this will *PERMANENTLY DESTROY* all data stored in pool {name}. If you are *ABSOLUTELY \
                 CERTAIN* that is what you want, pass the pool name *twice*, followed by \
                 --yes-i-really-really-mean-it."
            ),
        ));
    }
    if !allowed {
        return Err(CmdError::new(
            EPERM,
            "pool deletion is disabled; set mon_allow_pool_delete = true in the conf to allow it",
        ));
    }
    let id = pool.id;
    m.pools.remove(&id);
    m.pg_temp.retain(|pg, _| pg.pool != id);
    m.primary_temp.retain(|pg, _| pg.pool != id);
    Ok(format!("pool '{name}' removed"))
}

/// `osd pool set-quota NAME max_objects|max_bytes VALUE` (0 removes).
pub fn set_quota(m: &mut OsdMap, name: &str, field: &str, val: &str) -> Result<String, CmdError> {
    let n: u64 = val.parse().map_err(|_| {
        CmdError::inval(format!(
            "value '{val}' for {field} is not a non-negative integer"
        ))
    })?;
    let id = m.pool_by_name(name)?.id;
    let pool = m
        .pools
        .get_mut(&id)
        .ok_or_else(|| CmdError::noent(format!("pool '{name}' does not exist")))?;
    match field {
        "max_objects" => pool.quota_max_objects = n,
        "max_bytes" => pool.quota_max_bytes = n,
        other => {
            return Err(CmdError::inval(format!(
                "unknown quota field '{other}'; expected max_objects or max_bytes"
            )))
        }
    }
    Ok(format!("set-quota {field} = {n} for pool {name}"))
}

/// `osd pool get-quota NAME`: plain text and JSON.
pub fn get_quota(m: &OsdMap, name: &str) -> Result<(String, Value), CmdError> {
    let p = m.pool_by_name(name)?;
    let show = |n: u64, unit: &str| {
        if n == 0 {
            "N/A".to_string()
        } else {
            format!("{n}{unit}")
        }
    };
    let text = format!(
        "quotas for pool '{name}':\n  max objects: {}\n  max bytes  : {}\n",
        show(p.quota_max_objects, " objects"),
        show(p.quota_max_bytes, " B")
    );
    let v = json!({"pool_name": p.name, "pool_id": p.id,
                   "quota_max_objects": p.quota_max_objects, "quota_max_bytes": p.quota_max_bytes});
    Ok((text, v))
}

/// `osd pool ls [detail]`: plain text and JSON. The detail lines are the
/// pool lines of `osd dump`.
pub fn ls(m: &OsdMap, detail: bool) -> (String, Value) {
    if !detail {
        let names: Vec<String> = m.pools.values().map(|p| p.name.clone()).collect();
        let text: String = names.iter().map(|n| format!("{n}\n")).collect();
        return (text, json!(names));
    }
    let text: String = dump::osd_dump_plain(m)
        .lines()
        .filter(|l| l.starts_with("pool "))
        .map(|l| format!("{l}\n"))
        .collect();
    (
        text,
        Value::Array(m.pools.values().map(dump::pool_json).collect()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn map() -> OsdMap {
        OsdMap::new(Uuid::new_v4(), 1)
    }

    #[test]
    fn create_set_rm() {
        let opts = MonOptions::default();
        let mut m = map();
        let req = PoolCreate {
            name: "rbd".into(),
            pg_num: Some(16),
            size: Some(2),
            ..Default::default()
        };
        assert_eq!(
            create(&mut m, 2, &opts, &req).expect("ok"),
            "pool 'rbd' created"
        );
        let p = m.pool_by_name("rbd").expect("exists");
        assert_eq!(
            (p.id, p.size, p.min_size, p.pg_num, p.pgp_num, p.last_change),
            (1, 2, 1, 16, 16, 2)
        );
        assert_eq!(
            create(&mut m, 3, &opts, &req).expect("ok"),
            "pool 'rbd' already exists"
        );
        assert_eq!(
            set(&mut m, 3, "rbd", "size", "3").expect("ok"),
            "set pool 1 size to 3"
        );
        assert_eq!(
            set(&mut m, 3, "rbd", "min_size", "2").expect("ok"),
            "set pool 1 min_size to 2"
        );
        assert_eq!(
            set(&mut m, 3, "rbd", "size", "1").expect("ok"),
            "set pool 1 size to 1"
        );
        assert_eq!(m.pool_by_name("rbd").expect("exists").min_size, 1);
        assert_eq!(
            set(&mut m, 4, "rbd", "pg_num", "32").expect("ok"),
            "set pool 1 pg_num to 32"
        );
        assert_eq!(m.pool_by_name("rbd").expect("exists").pgp_num, 32);
        assert_eq!(
            set(&mut m, 4, "rbd", "pg_num", "8")
                .expect_err("shrink")
                .retval,
            EOPNOTSUPP
        );
        assert_eq!(
            set(&mut m, 4, "rbd", "min_size", "5")
                .expect_err("range")
                .retval,
            ERANGE
        );
        assert_eq!(
            set(&mut m, 4, "rbd", "size", "x").expect_err("nan").retval,
            crate::errors::EINVAL
        );
        assert_eq!(
            set(&mut m, 4, "rbd", "color", "1").expect_err("var").retval,
            crate::errors::EINVAL
        );
        assert_eq!(
            set(&mut m, 4, "nope", "size", "1")
                .expect_err("pool")
                .retval,
            crate::errors::ENOENT
        );
        assert_eq!(
            rm(&mut m, "rbd", Some("rbd"), false, true)
                .expect_err("unsure")
                .retval,
            EPERM
        );
        assert_eq!(
            rm(&mut m, "rbd", Some("rbx"), true, true)
                .expect_err("names")
                .retval,
            EPERM
        );
        assert_eq!(
            rm(&mut m, "rbd", Some("rbd"), true, false)
                .expect_err("disabled")
                .retval,
            EPERM
        );
        assert_eq!(
            rm(&mut m, "rbd", Some("rbd"), true, true).expect("ok"),
            "pool 'rbd' removed"
        );
        assert!(m.pools.is_empty());
        // Ids are not reused.
        let req2 = PoolCreate {
            name: "b".into(),
            ..Default::default()
        };
        create(&mut m, 5, &opts, &req2).expect("ok");
        assert_eq!(m.pool_by_name("b").expect("exists").id, 2);
        assert_eq!(m.pool_by_name("b").expect("exists").size, 3);
    }

    #[test]
    fn bad_create_requests() {
        let opts = MonOptions::default();
        let mut m = map();
        for (name, pg_num, size, min_size) in [
            ("", Some(8), None, None),
            ("a b", Some(8), None, None),
            ("p", Some(0), None, None),
            ("p", Some(1 << 30), None, None),
            ("p", Some(8), Some(0), None),
            ("p", Some(8), Some(11), None),
            ("p", Some(8), Some(2), Some(3)),
        ] {
            let req = PoolCreate {
                name: name.into(),
                pg_num,
                size,
                min_size,
                crush_rule: None,
            };
            assert!(create(&mut m, 2, &opts, &req).is_err(), "{req:?}");
        }
        assert!(m.pools.is_empty());
        let (text, json) = ls(&m, false);
        assert_eq!(text, "");
        assert_eq!(json, json!([]));
    }
}
