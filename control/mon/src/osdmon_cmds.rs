//! The admin commands of the OSDMap service: `osd down|out|in`, `osd
//! set|unset FLAG`, the per-OSD flags (`osd add-noin`, ...) and the
//! fullness ratios (`osd set-full-ratio`, ...).

use std::time::Instant;

use kalmar_maps::osd::{OsdState, WEIGHT_IN, WEIGHT_OUT};
use kalmar_maps::{OsdId, OsdMapFlags};

use super::OsdMon;
use crate::errors::CmdError;

impl OsdMon {
    /// `osd down`: returns the status line.
    pub fn cmd_down(&mut self, id: OsdId, now: Instant) -> Result<String, CmdError> {
        self.view().existing_osd(id)?;
        if !self.view().is_up(id) {
            return Ok(format!("osd.{id} is already down. "));
        }
        self.mark_down(id, now);
        Ok(format!("marked down osd.{id}. "))
    }

    /// `osd out`: an admin's out is not undone by a boot.
    pub fn cmd_out(&mut self, id: OsdId) -> Result<String, CmdError> {
        self.view().existing_osd(id)?;
        if self.view().is_out(id) {
            return Ok(format!("osd.{id} is already out. "));
        }
        let s = self.slot_mut(id)?;
        s.weight = WEIGHT_OUT;
        s.state.0 &= !OsdState::AUTOOUT;
        Ok(format!("marked out osd.{id}. "))
    }

    pub fn cmd_in(&mut self, id: OsdId, now: Instant) -> Result<String, CmdError> {
        self.view().existing_osd(id)?;
        if self.view().is_in(id) {
            return Ok(format!("osd.{id} is already in. "));
        }
        let stamp = self.wall_us(now);
        let s = self.slot_mut(id)?;
        s.weight = WEIGHT_IN;
        s.state.0 &= !(OsdState::AUTOOUT | OsdState::NEW);
        if !s.is_up() {
            // A down OSD marked in starts a new down -> out window, in the
            // map too, so a mon restart keeps it.
            s.down_stamp_us = stamp;
            self.down_since.insert(id, now);
        }
        Ok(format!("marked in osd.{id}. "))
    }

    /// `osd set|unset FLAG`.
    pub fn cmd_flag(&mut self, name: &str, set: bool) -> Result<String, CmdError> {
        const SETTABLE: &[&str] = &[
            "pause",
            "noup",
            "nodown",
            "noout",
            "noin",
            "nobackfill",
            "norebalance",
            "norecover",
            "noscrub",
            "nodeep-scrub",
            "notieragent",
            "nosnaptrim",
        ];
        if !SETTABLE.contains(&name) {
            return Err(CmdError::inval(format!(
                "unknown osd flag '{name}'; expected one of {}",
                SETTABLE.join(", ")
            )));
        }
        let bits = match name {
            "pause" => OsdMapFlags::PAUSERD | OsdMapFlags::PAUSEWR,
            n => OsdMapFlags::from_name(n)
                .ok_or_else(|| CmdError::inval(format!("unknown flag {n}")))?,
        };
        let flags = self.view().flags;
        let new = if set { flags | bits } else { flags & !bits };
        if new != flags {
            self.pending_mut().flags = new;
        }
        Ok(format!("{name} is {}", if set { "set" } else { "unset" }))
    }

    /// `osd add-noin|add-noout|add-noup|add-nodown IDS` and `osd rm-...`:
    /// the per-OSD flags (Ceph's NOIN/NOOUT/NOUP/NODOWN state bits).
    pub fn cmd_osd_flag(
        &mut self,
        ids: &[OsdId],
        flag: &str,
        set: bool,
    ) -> Result<String, CmdError> {
        let bit = match flag {
            "noup" => OsdState::NOUP,
            "nodown" => OsdState::NODOWN,
            "noin" => OsdState::NOIN,
            "noout" => OsdState::NOOUT,
            other => {
                return Err(CmdError::inval(format!(
                    "unknown per-osd flag '{other}'; expected noup, nodown, noin or noout"
                )))
            }
        };
        if ids.is_empty() {
            return Err(CmdError::inval("no OSD ids given"));
        }
        for &id in ids {
            self.view().existing_osd(id)?;
        }
        for &id in ids {
            let has = self.view().osd(id).is_some_and(|s| s.state.has(bit));
            if has != set {
                let s = self.slot_mut(id)?;
                s.state.0 ^= bit;
            }
        }
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        Ok(if set {
            format!("set osd(s) {} to {flag}", list.join(","))
        } else {
            format!("unset osd(s) {} from {flag}", list.join(","))
        })
    }

    /// `osd set-full-ratio|set-backfillfull-ratio|set-nearfull-ratio
    /// RATIO` (`prefix` names which); Ceph's reply echoes the command.
    pub fn cmd_ratio(&mut self, prefix: &str, ratio: f64) -> Result<String, CmdError> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(CmdError::inval(format!(
                "ratio {ratio} is not in the range 0.0..1.0"
            )));
        }
        let (now, field): (f64, fn(&mut kalmar_maps::OsdMap) -> &mut f64) = match prefix {
            "osd set-full-ratio" => (self.view().full_ratio, |m| &mut m.full_ratio),
            "osd set-backfillfull-ratio" => (self.view().backfillfull_ratio, |m| {
                &mut m.backfillfull_ratio
            }),
            "osd set-nearfull-ratio" => (self.view().nearfull_ratio, |m| &mut m.nearfull_ratio),
            other => return Err(CmdError::inval(format!("unknown ratio command '{other}'"))),
        };
        if now != ratio {
            *field(self.pending_mut()) = ratio;
        }
        Ok(format!("{prefix} {ratio}"))
    }
}
