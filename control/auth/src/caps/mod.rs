//! Capabilities in Ceph's grammar, parsed into a typed form.
//!
//! ```text
//! mon 'allow r'                 mon 'profile osd'     mon 'allow command "osd tree"'
//! osd 'allow rw pool=images'    osd 'allow r'         osd 'profile rbd pool=vms'
//! osd 'allow rwx pool=a namespace=n object_prefix rbd_data'
//! mgr 'allow *'                 mgr 'allow module prometheus r'
//! ```
//!
//! A cap string is a list of grants separated by `,` or `;`. [`parse`]
//! reads them (bounded, never panicking); [`check`] answers "may this
//! entity run this command / do this op on this pool".

pub mod check;
pub mod parse;

use std::collections::BTreeMap;
use std::fmt;

pub use check::{MgrCommand, MonCommand, OsdOp};
pub use parse::{parse_caps, CapsError};

/// The services a cap string is given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Mon,
    Osd,
    Mgr,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Mon, Service::Osd, Service::Mgr];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Mon => "mon",
            Service::Osd => "osd",
            Service::Mgr => "mgr",
        }
    }

    pub fn from_name(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Read / write / execute, as Ceph spells them (`r`, `w`, `x`, `*`,
/// `class-read`, `class-write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms(u8);

impl Perms {
    pub const NONE: Perms = Perms(0);
    pub const R: Perms = Perms(1);
    pub const W: Perms = Perms(2);
    pub const X: Perms = Perms(4);
    pub const CLASS_READ: Perms = Perms(8);
    pub const CLASS_WRITE: Perms = Perms(16);
    /// `*`: everything, including what no letter names (auth commands).
    pub const ALL: Perms = Perms(0xff);
    pub const RW: Perms = Perms(1 | 2);
    pub const RWX: Perms = Perms(1 | 2 | 4 | 8 | 16);

    pub const fn union(self, o: Perms) -> Perms {
        Perms(self.0 | o.0)
    }

    /// Whether every permission of `need` is in `self`.
    pub const fn covers(self, need: Perms) -> bool {
        self.0 & need.0 == need.0
    }

    pub const fn is_all(self) -> bool {
        self.0 == Perms::ALL.0
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("*");
        }
        let mut parts = Vec::new();
        let letters: String = [(Perms::R, 'r'), (Perms::W, 'w'), (Perms::X, 'x')]
            .iter()
            .filter(|(p, _)| self.covers(*p))
            .map(|(_, c)| *c)
            .collect();
        if !letters.is_empty() {
            parts.push(letters);
        }
        // `x` implies the class permissions (Ceph's rule), so only print
        // them when they stand alone.
        if !self.covers(Perms::X) {
            if self.covers(Perms::CLASS_READ) {
                parts.push("class-read".into());
            }
            if self.covers(Perms::CLASS_WRITE) {
                parts.push("class-write".into());
            }
        }
        f.write_str(&parts.join(" "))
    }
}

/// Named bundles of permissions (Ceph's `profile NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Osd,
    Mgr,
    Mon,
    Rbd,
    RbdReadOnly,
    BootstrapOsd,
    BootstrapMgr,
    /// `read-only` (osd, mgr): `allow r` everywhere.
    ReadOnly,
    /// `read-write` (osd, mgr): `allow rw` everywhere.
    ReadWrite,
    /// `crash` (mgr): posting crash reports only.
    Crash,
}

impl Profile {
    const NAMES: [(Profile, &'static str); 10] = [
        (Profile::Osd, "osd"),
        (Profile::Mgr, "mgr"),
        (Profile::Mon, "mon"),
        (Profile::Rbd, "rbd"),
        (Profile::RbdReadOnly, "rbd-read-only"),
        (Profile::BootstrapOsd, "bootstrap-osd"),
        (Profile::BootstrapMgr, "bootstrap-mgr"),
        (Profile::ReadOnly, "read-only"),
        (Profile::ReadWrite, "read-write"),
        (Profile::Crash, "crash"),
    ];

    pub fn as_str(self) -> &'static str {
        Profile::NAMES
            .iter()
            .find(|(p, _)| *p == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    pub fn from_name(s: &str) -> Option<Profile> {
        Profile::NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(p, _)| *p)
    }
}

/// Which objects an osd grant covers (all when every field is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMatch {
    pub pool: Option<String>,
    pub namespace: Option<String>,
    pub object_prefix: Option<String>,
}

/// One grant of a cap string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `allow PERMS [pool=P] [namespace=N] [object_prefix O]` (the match
    /// only in osd caps).
    Allow { perms: Perms, matches: ObjectMatch },
    /// `allow command "PREFIX" [with K=V ...]`: one command, arguments
    /// optionally pinned.
    Command {
        prefix: String,
        args: Vec<(String, String)>,
    },
    /// `allow service NAME PERMS` (mon) or `allow module NAME PERMS` (mgr).
    Service { name: String, perms: Perms },
    /// `profile NAME [pool=P]` (`pool` in osd and mgr caps).
    Profile {
        profile: Profile,
        pool: Option<String>,
    },
}

/// The parsed caps of one service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caps {
    pub grants: Vec<Grant>,
}

/// An entity's caps for every service, parsed once (at authentication)
/// and consulted per command or op.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityCaps {
    pub mon: Caps,
    pub osd: Caps,
    pub mgr: Caps,
}

impl EntityCaps {
    /// Parses `service -> cap text` as stored with a key. Services Kalmar
    /// does not run (`mds`) are kept in the text but grant nothing here.
    pub fn parse(texts: &BTreeMap<String, String>) -> Result<EntityCaps, CapsError> {
        let mut caps = EntityCaps::default();
        for (service, text) in texts {
            match Service::from_name(service) {
                Some(s) => *caps.get_mut(s) = parse_caps(s, text)?,
                None if service == "mds" => {}
                None => return Err(CapsError::UnknownService(service.clone())),
            }
        }
        Ok(caps)
    }

    pub fn get(&self, s: Service) -> &Caps {
        match s {
            Service::Mon => &self.mon,
            Service::Osd => &self.osd,
            Service::Mgr => &self.mgr,
        }
    }

    fn get_mut(&mut self, s: Service) -> &mut Caps {
        match s {
            Service::Mon => &mut self.mon,
            Service::Osd => &mut self.osd,
            Service::Mgr => &mut self.mgr,
        }
    }
}
