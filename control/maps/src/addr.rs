//! Network addresses of daemons, displayed the way Ceph prints them.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use kalmar_common::impl_versioned;
use serde::{Deserialize, Serialize};

/// A daemon's address: an IP and port plus a nonce that tells two
/// incarnations of a daemon on the same port apart (Ceph's `entity_addr_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityAddr {
    pub addr: SocketAddr,
    pub nonce: u32,
}

impl Default for EntityAddr {
    fn default() -> Self {
        EntityAddr {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            nonce: 0,
        }
    }
}

impl_versioned!(EntityAddr, "entity_addr", version = 1, compat = 1, { addr, nonce });

impl EntityAddr {
    pub fn new(addr: SocketAddr, nonce: u32) -> Self {
        EntityAddr { addr, nonce }
    }

    /// Whether this is the unset address (`0.0.0.0:0/0`).
    pub fn is_blank(&self) -> bool {
        *self == EntityAddr::default()
    }

    /// Ceph's address-vector form, `[v2:127.0.0.1:6802/29799]`, or `-`
    /// when unset (as `ceph osd dump` prints a down OSD's addresses).
    pub fn addrvec_string(&self) -> String {
        if self.is_blank() {
            "-".to_string()
        } else {
            format!("[v2:{self}]")
        }
    }
}

/// `127.0.0.1:6802/29799`, Ceph's legacy `entity_addr_t` form.
impl fmt::Display for EntityAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.nonce)
    }
}

impl FromStr for EntityAddr {
    type Err = String;

    /// Accepts `IP:PORT`, `IP:PORT/NONCE` and an optional `v2:` prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("v2:").unwrap_or(s);
        let (addr, nonce) = match s.rsplit_once('/') {
            Some((a, n)) => (
                a,
                n.parse::<u32>()
                    .map_err(|e| format!("bad nonce in '{s}': {e}"))?,
            ),
            None => (s, 0),
        };
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("bad address '{s}': {e} (expected IP:PORT[/NONCE])"))?;
        Ok(EntityAddr { addr, nonce })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalmar_common::{Decode, Encode};

    #[test]
    fn display_parse_roundtrip() {
        let a: EntityAddr = "v2:127.0.0.1:6802/29799".parse().expect("parses");
        assert_eq!(a.to_string(), "127.0.0.1:6802/29799");
        assert_eq!(a.addrvec_string(), "[v2:127.0.0.1:6802/29799]");
        assert_eq!(EntityAddr::from_bytes(&a.to_bytes()).expect("decodes"), a);
        assert!("127.0.0.1".parse::<EntityAddr>().is_err());
        assert_eq!(EntityAddr::default().addrvec_string(), "-");
    }
}
