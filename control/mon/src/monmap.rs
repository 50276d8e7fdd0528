//! The mons of a cluster: who they are (created by `mkfs --initial-members`,
//! kept by the consensus log's membership), who is in quorum now, and the
//! Ceph-shaped views of that (`quorum_status`, `mon stat`, `mon dump`, the
//! `mon:` line of `status`, health `MON_DOWN`).
//!
//! Pure data in, text and JSON out: the server fills a [`QuorumView`] from
//! the consensus library's metrics and its own peer liveness.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::health::{Check, Severity};

/// Store key: this mon's id and name (written by mkfs).
pub const KEY_SELF: &str = "monmap/self";
/// Store key: the initial members, `{id: MonNode}` as JSON.
pub const KEY_INITIAL: &str = "monmap/initial";

/// One mon as the consensus membership names it. Ids are the members'
/// positions in `--initial-members` (their Ceph rank).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonNode {
    pub name: String,
    /// `IP:PORT`, or empty for a single mon whose address is given at run.
    pub addr: String,
}

/// What mkfs writes about the mons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonIdentity {
    pub id: u64,
    pub name: String,
}

/// Parses `a=IP:PORT,b=IP:PORT,...` (names unique, addresses valid).
pub fn parse_initial_members(s: &str) -> Result<BTreeMap<u64, MonNode>, String> {
    let mut out = BTreeMap::new();
    for (i, part) in s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let (name, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not NAME=IP:PORT"))?;
        let name = name.trim().trim_start_matches("mon.");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "mon name '{name}' must be letters, digits, '-' or '_'"
            ));
        }
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("'{addr}' (mon.{name}) is not IP:PORT"))?;
        if out.values().any(|n: &MonNode| n.name == name) {
            return Err(format!("mon name '{name}' is given twice"));
        }
        if out.values().any(|n: &MonNode| n.addr == addr.to_string()) {
            return Err(format!("address {addr} is given twice"));
        }
        out.insert(
            i as u64,
            MonNode {
                name: name.to_string(),
                addr: addr.to_string(),
            },
        );
    }
    if out.is_empty() {
        return Err("no mons in --initial-members".into());
    }
    Ok(out)
}

/// The mons and the quorum as one mon sees them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuorumView {
    pub fsid: String,
    pub members: BTreeMap<u64, MonNode>,
    /// Ids in quorum (the leader and the followers it heard from lately);
    /// empty when this mon knows no leader.
    pub quorum: Vec<u64>,
    pub leader: Option<u64>,
    /// The consensus term (Ceph's election epoch).
    pub election_epoch: u64,
    /// How long the current leader has led.
    pub quorum_age: Duration,
    /// Epoch of the membership (the log index that set it).
    pub monmap_epoch: u64,
}

impl QuorumView {
    /// A single mon's view before it knows more (tests, fallbacks).
    pub fn single(name: &str) -> QuorumView {
        QuorumView {
            members: BTreeMap::from([(
                0,
                MonNode {
                    name: name.to_string(),
                    addr: String::new(),
                },
            )]),
            quorum: vec![0],
            leader: Some(0),
            election_epoch: 1,
            monmap_epoch: 1,
            ..QuorumView::default()
        }
    }

    fn name(&self, id: u64) -> String {
        self.members
            .get(&id)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    pub fn quorum_names(&self) -> Vec<String> {
        self.quorum.iter().map(|&i| self.name(i)).collect()
    }

    pub fn leader_name(&self) -> Option<String> {
        self.leader.map(|l| self.name(l))
    }

    /// Members not in quorum, by name.
    pub fn out_of_quorum(&self) -> Vec<(u64, &MonNode)> {
        self.members
            .iter()
            .filter(|(id, _)| !self.quorum.contains(id))
            .map(|(id, m)| (*id, m))
            .collect()
    }

    fn mons_json(&self) -> Vec<Value> {
        self.members
            .iter()
            .map(|(id, m)| {
                json!({
                    "rank": id,
                    "name": m.name,
                    "public_addrs": {"addrvec": [{"type": "v2", "addr": m.addr, "nonce": 0}]},
                    "addr": format!("{}/0", m.addr),
                    "public_addr": format!("{}/0", m.addr),
                    "priority": 0,
                    "weight": 0,
                })
            })
            .collect()
    }

    pub fn monmap_json(&self) -> Value {
        json!({
            "epoch": self.monmap_epoch,
            "fsid": self.fsid,
            "min_mon_release_name": "kalmar",
            "election_strategy": 1,
            "mons": self.mons_json(),
        })
    }

    /// `quorum_status --format json`.
    pub fn quorum_status_json(&self) -> Value {
        json!({
            "election_epoch": self.election_epoch,
            "quorum": self.quorum,
            "quorum_names": self.quorum_names(),
            "quorum_leader_name": self.leader_name().unwrap_or_default(),
            "quorum_age": self.quorum_age.as_secs(),
            "monmap": self.monmap_json(),
        })
    }

    /// `mon stat --format json`.
    pub fn mon_stat_json(&self) -> Value {
        let quorum: Vec<Value> = self
            .quorum
            .iter()
            .map(|&i| json!({"rank": i, "name": self.name(i)}))
            .collect();
        json!({
            "epoch": self.monmap_epoch,
            "min_mon_release_name": "kalmar",
            "num_mons": self.members.len(),
            "leader": self.leader_name().unwrap_or_default(),
            "quorum": quorum,
        })
    }

    /// `mon stat`, as Ceph prints it.
    pub fn mon_stat_plain(&self) -> String {
        let at: Vec<String> = self
            .members
            .values()
            .map(|m| format!("{}=[v2:{}/0]", m.name, m.addr))
            .collect();
        let ids: Vec<String> = self.quorum.iter().map(|i| i.to_string()).collect();
        format!(
            "e{}: {} mons at {{{}}}, election epoch {}, leader {} {}, quorum {} {}\n",
            self.monmap_epoch,
            self.members.len(),
            at.join(","),
            self.election_epoch,
            self.leader
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into()),
            self.leader_name().unwrap_or_else(|| "-".into()),
            ids.join(","),
            self.quorum_names().join(","),
        )
    }

    /// `mon dump`.
    pub fn mon_dump_plain(&self) -> String {
        let mut out = format!(
            "epoch {}\nfsid {}\nmin_mon_release kalmar\nelection_strategy: 1\n",
            self.monmap_epoch, self.fsid
        );
        for (id, m) in &self.members {
            out.push_str(&format!("{id}: [v2:{}/0] mon.{}\n", m.addr, m.name));
        }
        out
    }

    /// The `mon:` line of `status`.
    pub fn status_line(&self) -> String {
        let mut line = format!(
            "{} daemons, quorum {} (age {})",
            self.members.len(),
            self.quorum_names().join(","),
            crate::status::short_age(self.quorum_age)
        );
        let out: Vec<String> = self
            .out_of_quorum()
            .iter()
            .map(|(_, m)| m.name.clone())
            .collect();
        if !out.is_empty() {
            line.push_str(&format!(", out of quorum: {}", out.join(", ")));
        }
        line
    }

    /// `MON_DOWN` when a member is out of quorum.
    pub fn health_check(&self) -> Option<Check> {
        let down = self.out_of_quorum();
        if down.is_empty() {
            return None;
        }
        Some(Check {
            code: "MON_DOWN".into(),
            severity: Severity::Warn,
            summary: format!(
                "{}/{} mons down, quorum {}",
                down.len(),
                self.members.len(),
                self.quorum_names().join(",")
            ),
            count: down.len(),
            detail: down
                .iter()
                .map(|(id, m)| {
                    format!(
                        "mon.{} (rank {id}) addr [v2:{}/0] is down (out of quorum)",
                        m.name, m.addr
                    )
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_members_parse_and_refuse() {
        let m = parse_initial_members("a=127.0.0.1:6789, b=127.0.0.1:6790,mon.c=127.0.0.1:6791")
            .expect("valid");
        assert_eq!(m.len(), 3);
        assert_eq!(m[&2].name, "c");
        assert_eq!(m[&1].addr, "127.0.0.1:6790");
        for bad in [
            "",
            "a",
            "a=nowhere",
            "a=127.0.0.1:1,a=127.0.0.1:2",
            "a=127.0.0.1:1,b=127.0.0.1:1",
            "a b=127.0.0.1:1",
        ] {
            assert!(parse_initial_members(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn views_name_the_quorum_and_the_missing() {
        let mut v = QuorumView {
            fsid: "f".into(),
            members: parse_initial_members("a=127.0.0.1:1,b=127.0.0.1:2,c=127.0.0.1:3")
                .expect("valid"),
            quorum: vec![0, 1, 2],
            leader: Some(1),
            election_epoch: 4,
            quorum_age: Duration::from_secs(65),
            monmap_epoch: 1,
        };
        assert!(v.health_check().is_none());
        let j = v.quorum_status_json();
        assert_eq!(j["quorum_names"], json!(["a", "b", "c"]));
        assert_eq!(j["quorum_leader_name"], "b");
        assert_eq!(j["election_epoch"], 4);
        assert_eq!(j["monmap"]["mons"][2]["name"], "c");
        assert_eq!(v.status_line(), "3 daemons, quorum a,b,c (age 65s)");
        v.quorum = vec![0, 1];
        let c = v.health_check().expect("MON_DOWN");
        assert_eq!(c.summary, "1/3 mons down, quorum a,b");
        assert!(c.detail[0].starts_with("mon.c (rank 2)"), "{:?}", c.detail);
        assert!(v.status_line().ends_with("out of quorum: c"));
        assert!(v.mon_stat_plain().contains("leader 1 b, quorum 0,1 a,b"));
        assert!(v.mon_dump_plain().contains("2: [v2:127.0.0.1:3/0] mon.c"));
    }
}
