//! Decisions on parsed caps: may an entity run this mon or mgr command, do
//! this op on this pool. Pure and allocation-free, so an OSD can ask per
//! op.

use super::{Caps, Grant, ObjectMatch, Perms, Profile};

/// A mon command as the cap check sees it.
#[derive(Debug, Clone, Copy)]
pub struct MonCommand<'a> {
    pub prefix: &'a str,
    /// The command's string arguments (matched by `allow command ... with`).
    pub args: &'a [(&'a str, &'a str)],
    /// What the command needs: `r` for reads, `rw` for changes, `rwx`
    /// (plus `*` via [`Perms::ALL`]) for auth changes, as Ceph declares.
    pub need: Perms,
}

/// A mgr command: a prefix, the plugin module serving it (if any), its
/// string arguments, and what it needs (a plugin command's declared
/// `perm`, `r` or `rw` for the native ones).
#[derive(Debug, Clone, Copy)]
pub struct MgrCommand<'a> {
    pub prefix: &'a str,
    pub module: Option<&'a str>,
    pub args: &'a [(&'a str, &'a str)],
    pub need: Perms,
}

/// The mgr module `profile rbd` and `profile rbd-read-only` open (Ceph's).
pub const RBD_SUPPORT_MODULE: &str = "rbd_support";
/// The only command `profile crash` allows on the mgr.
pub const CRASH_POST_COMMAND: &str = "crash post";

/// One object op on an OSD.
#[derive(Debug, Clone, Copy)]
pub struct OsdOp<'a> {
    pub pool: &'a str,
    pub namespace: &'a str,
    pub object: &'a str,
    pub need: Perms,
}

/// Mon commands an OSD or mgr daemon runs on its own behalf.
const DAEMON_MON_COMMANDS: &[&str] = &["osd crush create-or-move", "osd metadata", "mon getmap"];
/// What `profile bootstrap-osd` may run (creating an OSD and its key).
const BOOTSTRAP_OSD_COMMANDS: &[&str] = &["osd new", "osd create", "mon getmap"];
/// What `profile bootstrap-mgr` may run besides registering a mgr key.
const BOOTSTRAP_MGR_COMMANDS: &[&str] = &["mon getmap"];
/// Auth commands a bootstrap profile may run for its own kind of entity.
const BOOTSTRAP_AUTH_COMMANDS: &[&str] = &["auth get-or-create", "auth get", "auth add"];
/// Commands `profile rbd` adds on the mon (blocklisting dead clients).
const RBD_MON_COMMANDS: &[&str] = &["osd blocklist", "osd blocklist add", "osd blocklist ls"];

fn arg<'a>(cmd: &MonCommand<'a>, key: &str) -> Option<&'a str> {
    cmd.args.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

impl Caps {
    /// Whether the grants allow mon command `cmd`.
    pub fn allows_mon_command(&self, cmd: &MonCommand<'_>) -> bool {
        self.grants.iter().any(|g| match g {
            Grant::Allow { perms, .. } => perms.covers(cmd.need),
            Grant::Command { prefix, args } => {
                prefix == cmd.prefix
                    && args
                        .iter()
                        .all(|(k, v)| arg(cmd, k).is_some_and(|a| a == v))
            }
            Grant::Service { name, perms } => {
                // `allow service osd rw`: commands of that subsystem.
                cmd.prefix.split(' ').next() == Some(name.as_str()) && perms.covers(cmd.need)
            }
            Grant::Profile { profile, .. } => mon_profile_allows(*profile, cmd),
        })
    }

    /// Whether the grants let the entity act as a daemon of `role` towards
    /// the mon (boot an OSD, send mgr beacons): `profile ROLE` or `allow *`.
    pub fn allows_daemon(&self, role: Profile) -> bool {
        self.grants.iter().any(|g| match g {
            Grant::Allow { perms, .. } => perms.is_all(),
            Grant::Profile { profile, .. } => *profile == role || *profile == Profile::Mon,
            _ => false,
        })
    }

    /// Whether the grants allow op `op` (osd caps): the permissions of
    /// the grants matching the op's pool and object are unioned (`allow r
    /// pool=a, allow w pool=a` allows a read-and-write op on `a`) and must
    /// cover what the op needs. Allocation-free: an OSD asks this per op.
    pub fn allows_osd_op(&self, op: &OsdOp<'_>) -> bool {
        let mut allowed = Perms::NONE;
        for g in &self.grants {
            let perms = match g {
                Grant::Allow { perms, matches } if object_matches(matches, op) => *perms,
                Grant::Profile { profile, pool }
                    if pool.as_deref().is_none_or(|p| p == op.pool) =>
                {
                    osd_profile_perms(*profile)
                }
                _ => Perms::NONE,
            };
            allowed = allowed.union(perms);
            if allowed.covers(op.need) {
                return true;
            }
        }
        false
    }

    /// Ceph's `allow_all()` for osd caps: `allow *` (or `profile osd`)
    /// with no pool, namespace or object restriction. OSD commands (`pg
    /// query`, `pg scrub`) need it.
    pub fn osd_allows_all(&self) -> bool {
        self.grants.iter().any(|g| match g {
            Grant::Allow { perms, matches } => perms.is_all() && *matches == ObjectMatch::default(),
            Grant::Profile { profile, pool } => {
                pool.is_none() && osd_profile_perms(*profile).is_all()
            }
            Grant::Command { .. } | Grant::Service { .. } => false,
        })
    }

    /// Whether the grants allow mgr command `cmd` (Ceph's `MgrCap`: the
    /// permissions of the matching grants are unioned; `allow command`
    /// allows its command whatever it needs).
    pub fn allows_mgr_command(&self, cmd: &MgrCommand<'_>) -> bool {
        let mut allowed = Perms::NONE;
        for g in &self.grants {
            let perms = match g {
                Grant::Allow { perms, .. } => *perms,
                Grant::Command { prefix, args } => {
                    let pinned = args
                        .iter()
                        .all(|(k, v)| mgr_arg(cmd, k) == Some(v.as_str()));
                    if prefix == cmd.prefix && pinned {
                        Perms::ALL
                    } else {
                        Perms::NONE
                    }
                }
                Grant::Service { name, perms } if cmd.module == Some(name.as_str()) => *perms,
                Grant::Service { .. } => Perms::NONE,
                Grant::Profile { profile, pool } => {
                    mgr_profile_perms(*profile, pool.as_deref(), cmd)
                }
            };
            allowed = allowed.union(perms);
            if allowed.covers(cmd.need) {
                return true;
            }
        }
        false
    }
}

/// What an osd-caps profile allows on the pools it covers.
fn osd_profile_perms(profile: Profile) -> Perms {
    match profile {
        // Peers replicate and recover every pool.
        Profile::Osd | Profile::Mon => Perms::ALL,
        Profile::Rbd => Perms::RWX,
        Profile::RbdReadOnly => Perms::R.union(Perms::CLASS_READ),
        Profile::ReadOnly => Perms::R,
        Profile::ReadWrite => Perms::RW,
        Profile::Mgr | Profile::BootstrapOsd | Profile::BootstrapMgr | Profile::Crash => {
            Perms::NONE
        }
    }
}

fn mgr_arg<'a>(cmd: &MgrCommand<'a>, key: &str) -> Option<&'a str> {
    cmd.args.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// What a mgr-caps profile allows for `cmd` (Ceph's `MgrCap` profiles:
/// `read-only`, `read-write`, `crash`, the rbd ones on the `rbd_support`
/// module, optionally for one pool; `osd`, `mds` grant nothing).
fn mgr_profile_perms(profile: Profile, pool: Option<&str>, cmd: &MgrCommand<'_>) -> Perms {
    match profile {
        Profile::ReadOnly => Perms::R,
        Profile::ReadWrite => Perms::RW,
        Profile::Crash if cmd.prefix == CRASH_POST_COMMAND => Perms::ALL,
        Profile::Rbd | Profile::RbdReadOnly if cmd.module == Some(RBD_SUPPORT_MODULE) => {
            // A pool restriction needs the command to name that pool.
            let in_pool = pool.is_none_or(|p| {
                mgr_arg(cmd, "pool") == Some(p)
                    || mgr_arg(cmd, "pool_spec").is_some_and(|s| {
                        s == p || s.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
                    })
            });
            match (in_pool, profile) {
                (false, _) => Perms::NONE,
                (true, Profile::Rbd) => Perms::RW,
                (true, _) => Perms::R,
            }
        }
        _ => Perms::NONE,
    }
}

fn object_matches(m: &ObjectMatch, op: &OsdOp<'_>) -> bool {
    m.pool.as_deref().is_none_or(|p| p == op.pool)
        && m.namespace.as_deref().is_none_or(|n| n == op.namespace)
        && m.object_prefix
            .as_deref()
            .is_none_or(|p| op.object.starts_with(p))
}

fn mon_profile_allows(profile: Profile, cmd: &MonCommand<'_>) -> bool {
    let read = Perms::R.covers(cmd.need);
    match profile {
        Profile::Mon => true,
        Profile::ReadOnly => read,
        Profile::ReadWrite | Profile::Crash => false,
        Profile::Osd | Profile::Mgr => read || DAEMON_MON_COMMANDS.contains(&cmd.prefix),
        Profile::Rbd | Profile::RbdReadOnly => {
            read || (profile == Profile::Rbd && RBD_MON_COMMANDS.contains(&cmd.prefix))
        }
        Profile::BootstrapOsd => {
            BOOTSTRAP_OSD_COMMANDS.contains(&cmd.prefix)
                || bootstrap_auth(cmd, "osd.", "allow profile osd")
        }
        Profile::BootstrapMgr => {
            BOOTSTRAP_MGR_COMMANDS.contains(&cmd.prefix)
                || bootstrap_auth(cmd, "mgr.", "allow profile mgr")
        }
    }
}

/// A bootstrap key may fetch or create keys of its own daemon kind only,
/// and only with that daemon's mon profile.
fn bootstrap_auth(cmd: &MonCommand<'_>, entity_prefix: &str, mon_caps: &str) -> bool {
    BOOTSTRAP_AUTH_COMMANDS.contains(&cmd.prefix)
        && arg(cmd, "entity").is_some_and(|e| e.starts_with(entity_prefix))
        && arg(cmd, "caps_mon").is_none_or(|c| c == mon_caps || c == "profile osd")
}

#[cfg(test)]
mod tests {
    use super::super::{parse_caps, Service};
    use super::*;

    fn caps(s: Service, text: &str) -> Caps {
        parse_caps(s, text).expect(text)
    }

    fn mon(prefix: &str, need: Perms) -> MonCommand<'_> {
        MonCommand {
            prefix,
            args: &[],
            need,
        }
    }

    #[test]
    fn mon_command_caps() {
        let r = caps(Service::Mon, "allow r");
        assert!(r.allows_mon_command(&mon("status", Perms::R)));
        assert!(!r.allows_mon_command(&mon("osd pool create", Perms::RW)));
        let star = caps(Service::Mon, "allow *");
        assert!(star.allows_mon_command(&mon("auth get-or-create", Perms::ALL)));
        let rwx = caps(Service::Mon, "allow rwx");
        assert!(rwx.allows_mon_command(&mon("osd pool create", Perms::RW)));
        assert!(!rwx.allows_mon_command(&mon("auth rm", Perms::ALL)));
        let one = caps(Service::Mon, "allow command \"osd tree\"");
        assert!(one.allows_mon_command(&mon("osd tree", Perms::R)));
        assert!(!one.allows_mon_command(&mon("osd dump", Perms::R)));
        let svc = caps(Service::Mon, "allow service osd rw");
        assert!(svc.allows_mon_command(&mon("osd out", Perms::RW)));
        assert!(!svc.allows_mon_command(&mon("mgr fail", Perms::RW)));
    }

    #[test]
    fn command_with_pinned_args() {
        let c = caps(
            Service::Mon,
            "allow command \"auth get\" with entity=client.a",
        );
        let ok = MonCommand {
            prefix: "auth get",
            args: &[("entity", "client.a")],
            need: Perms::ALL,
        };
        assert!(c.allows_mon_command(&ok));
        let other = MonCommand {
            args: &[("entity", "client.admin")],
            ..ok
        };
        assert!(!c.allows_mon_command(&other));
    }

    #[test]
    fn profiles_on_the_mon() {
        let osd = caps(Service::Mon, "allow profile osd");
        assert!(osd.allows_daemon(Profile::Osd));
        assert!(!osd.allows_daemon(Profile::Mgr));
        assert!(osd.allows_mon_command(&mon("osd dump", Perms::R)));
        assert!(!osd.allows_mon_command(&mon("osd pool rm", Perms::RW)));
        assert!(!caps(Service::Mon, "allow r").allows_daemon(Profile::Osd));
        assert!(caps(Service::Mon, "allow *").allows_daemon(Profile::Osd));
        let boot = caps(Service::Mon, "profile bootstrap-osd");
        assert!(boot.allows_mon_command(&mon("osd new", Perms::RW)));
        let mk = |args| MonCommand {
            prefix: "auth get-or-create",
            args,
            need: Perms::ALL,
        };
        assert!(boot.allows_mon_command(&mk(&[("entity", "osd.4")])));
        assert!(!boot.allows_mon_command(&mk(&[("entity", "client.admin")])));
        assert!(!boot.allows_mon_command(&mon("status", Perms::R)));
    }

    #[test]
    fn osd_pool_caps() {
        let op = |pool, need| OsdOp {
            pool,
            namespace: "",
            object: "obj",
            need,
        };
        let c = caps(Service::Osd, "allow r pool=a");
        assert!(c.allows_osd_op(&op("a", Perms::R)));
        assert!(!c.allows_osd_op(&op("a", Perms::W)));
        assert!(!c.allows_osd_op(&op("b", Perms::R)));
        let rbd = caps(Service::Osd, "profile rbd pool=vms");
        assert!(rbd.allows_osd_op(&op("vms", Perms::RW)));
        assert!(!rbd.allows_osd_op(&op("other", Perms::R)));
        let ro = caps(Service::Osd, "profile rbd-read-only");
        assert!(ro.allows_osd_op(&op("any", Perms::R)));
        assert!(!ro.allows_osd_op(&op("any", Perms::W)));
        let pre = caps(
            Service::Osd,
            "allow rw pool=a object_prefix rbd_data namespace=n",
        );
        let mut o = OsdOp {
            pool: "a",
            namespace: "n",
            object: "rbd_data.1",
            need: Perms::W,
        };
        assert!(pre.allows_osd_op(&o));
        o.object = "rbd_header.1";
        assert!(!pre.allows_osd_op(&o));
        assert!(caps(Service::Osd, "allow *").allows_osd_op(&op("x", Perms::ALL)));
        assert!(!Caps::default().allows_osd_op(&op("x", Perms::R)));
    }

    #[test]
    fn mgr_caps() {
        let cmd = |prefix, module, need| MgrCommand {
            prefix,
            module,
            args: &[],
            need,
        };
        let m = caps(Service::Mgr, "allow module prometheus r");
        assert!(m.allows_mgr_command(&cmd(
            "prometheus file_sd_config",
            Some("prometheus"),
            Perms::R
        )));
        assert!(!m.allows_mgr_command(&cmd("hello", Some("hello"), Perms::R)));
        assert!(caps(Service::Mgr, "allow *").allows_mgr_command(&cmd("x", None, Perms::ALL)));
        assert!(!caps(Service::Mgr, "allow r").allows_mgr_command(&cmd("x", None, Perms::RW)));
    }

    #[test]
    fn osd_caps_per_op_kind_and_pool() {
        let op = |pool, need| OsdOp {
            pool,
            namespace: "",
            object: "obj",
            need,
        };
        let (r, w, x) = (Perms::R, Perms::W, Perms::X);
        let rw_a = caps(Service::Osd, "allow rw pool=a");
        assert!(rw_a.allows_osd_op(&op("a", r)));
        assert!(rw_a.allows_osd_op(&op("a", w)));
        assert!(rw_a.allows_osd_op(&op("a", Perms::RW)));
        assert!(!rw_a.allows_osd_op(&op("a", x)));
        assert!(!rw_a.allows_osd_op(&op("b", r)));
        assert!(!rw_a.allows_osd_op(&op("b", w)));
        // Grants matching the same pool add up; other pools' do not.
        let split = caps(
            Service::Osd,
            "allow r pool=a, allow w pool=a, allow w pool=b",
        );
        assert!(split.allows_osd_op(&op("a", Perms::RW)));
        assert!(!split.allows_osd_op(&op("b", Perms::RW)));
        assert!(split.allows_osd_op(&op("b", w)));
        let all_r = caps(Service::Osd, "allow r");
        assert!(all_r.allows_osd_op(&op("any", r)));
        assert!(!all_r.allows_osd_op(&op("any", w)));
        let rbd = caps(Service::Osd, "profile rbd pool=a");
        assert!(rbd.allows_osd_op(&op("a", Perms::RW)));
        assert!(!rbd.allows_osd_op(&op("b", r)));
        assert!(caps(Service::Osd, "profile rbd").allows_osd_op(&op("b", w)));
        let ro = caps(Service::Osd, "profile rbd-read-only pool=a");
        assert!(ro.allows_osd_op(&op("a", r)));
        assert!(!ro.allows_osd_op(&op("a", w)));
        assert!(!ro.allows_osd_op(&op("b", r)));
        assert!(caps(Service::Osd, "profile read-write").allows_osd_op(&op("z", Perms::RW)));
        assert!(!caps(Service::Osd, "profile read-only").allows_osd_op(&op("z", w)));
        // No osd caps: nothing.
        assert!(!Caps::default().allows_osd_op(&op("a", r)));
        // Namespaced grants do not cover the default namespace.
        assert!(!caps(Service::Osd, "allow rw namespace=n").allows_osd_op(&op("a", r)));
    }

    #[test]
    fn osd_allow_all() {
        assert!(caps(Service::Osd, "allow *").osd_allows_all());
        assert!(caps(Service::Osd, "profile osd").osd_allows_all());
        assert!(caps(Service::Osd, "allow r, allow *").osd_allows_all());
        assert!(!caps(Service::Osd, "allow * pool=a").osd_allows_all());
        assert!(!caps(Service::Osd, "allow rwx").osd_allows_all());
        assert!(!caps(Service::Osd, "profile rbd").osd_allows_all());
        assert!(!Caps::default().osd_allows_all());
    }

    #[test]
    fn mgr_caps_like_cephs() {
        let cmd = |prefix, module, need| MgrCommand {
            prefix,
            module,
            args: &[],
            need,
        };
        let r = caps(Service::Mgr, "allow r");
        assert!(r.allows_mgr_command(&cmd("pg dump", None, Perms::R)));
        assert!(r.allows_mgr_command(&cmd("hello", Some("hello"), Perms::R)));
        assert!(!r.allows_mgr_command(&cmd("config set", None, Perms::RW)));
        assert!(!r.allows_mgr_command(&cmd("hello", Some("hello"), Perms::RW)));
        let rw = caps(Service::Mgr, "allow rw");
        assert!(rw.allows_mgr_command(&cmd("config set", None, Perms::RW)));
        assert!(!rw.allows_mgr_command(&cmd("x", Some("m"), Perms::RW.union(Perms::X))));
        let star = caps(Service::Mgr, "allow *");
        assert!(star.allows_mgr_command(&cmd("x", Some("m"), Perms::RW.union(Perms::X))));
        // A module grant opens that module's commands only.
        let m = caps(Service::Mgr, "allow module hello rw");
        assert!(m.allows_mgr_command(&cmd("hello", Some("hello"), Perms::RW)));
        assert!(!m.allows_mgr_command(&cmd("pg dump", None, Perms::R)));
        // allow command: that command whatever it needs.
        let c = caps(Service::Mgr, "allow command \"config set\"");
        assert!(c.allows_mgr_command(&cmd("config set", None, Perms::RW)));
        assert!(!c.allows_mgr_command(&cmd("config get", None, Perms::R)));
        // Profiles.
        assert!(
            caps(Service::Mgr, "profile read-only").allows_mgr_command(&cmd("df", None, Perms::R))
        );
        assert!(
            !caps(Service::Mgr, "profile read-only").allows_mgr_command(&cmd(
                "config rm",
                None,
                Perms::RW
            ))
        );
        assert!(
            caps(Service::Mgr, "profile read-write").allows_mgr_command(&cmd(
                "config rm",
                None,
                Perms::RW
            ))
        );
        let crash = caps(Service::Mgr, "profile crash");
        assert!(crash.allows_mgr_command(&cmd("crash post", Some("crash"), Perms::RW)));
        assert!(!crash.allows_mgr_command(&cmd("crash ls", Some("crash"), Perms::R)));
        for daemon in ["profile osd", "allow profile mgr", "profile mon"] {
            assert!(
                !caps(Service::Mgr, daemon).allows_mgr_command(&cmd("df", None, Perms::R)),
                "{daemon}"
            );
        }
        let rbd = caps(Service::Mgr, "profile rbd pool=vms");
        let in_vms = MgrCommand {
            prefix: "rbd task add remove",
            module: Some(RBD_SUPPORT_MODULE),
            args: &[("pool_spec", "vms/ns")],
            need: Perms::RW,
        };
        assert!(rbd.allows_mgr_command(&in_vms));
        let other = MgrCommand {
            args: &[("pool_spec", "vmsx")],
            ..in_vms
        };
        assert!(!rbd.allows_mgr_command(&other));
        assert!(!rbd.allows_mgr_command(&cmd("df", None, Perms::R)));
        let ro = caps(Service::Mgr, "profile rbd-read-only");
        assert!(ro.allows_mgr_command(&cmd("rbd perf", Some(RBD_SUPPORT_MODULE), Perms::R)));
        assert!(!ro.allows_mgr_command(&cmd("rbd task", Some(RBD_SUPPORT_MODULE), Perms::RW)));
        assert!(!Caps::default().allows_mgr_command(&cmd("df", None, Perms::R)));
    }
}
