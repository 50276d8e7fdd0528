//! Which releases may run side by side: the rule a mon applies to a
//! booting OSD (its `kalmar_version` boot metadata), written down in
//! docs/deploy.md ("Upgrading").
//!
//! A release series is `0.MINOR` before 1.0 and `MAJOR` after. Daemons of
//! one series always work together. During a rolling upgrade a cluster
//! may also mix this series with the ones listed in [`UPGRADES_FROM`], the
//! mons upgraded first: a mon accepts OSDs of its own series and of the
//! series it upgrades from, and refuses an OSD newer than itself (the
//! mons were not upgraded first) or older than that (a skipped release),
//! naming both versions.

use std::cmp::Ordering;
use std::fmt;

/// This build's release (the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Earlier series whose daemons this release runs next to during a
/// rolling upgrade (and whose stores and mon stores it reads). Empty in
/// the first release; each release names the one before it.
pub const UPGRADES_FROM: &[&str] = &[];

/// The boot metadata key an OSD states its release under.
pub const METADATA_KEY: &str = "kalmar_version";

/// A `MAJOR.MINOR.PATCH` release (a `-suffix` is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Release {
    pub fn parse(s: &str) -> Option<Release> {
        let core = s.trim().split(['-', '+']).next()?;
        let mut it = core.split('.');
        let r = Release {
            major: it.next()?.parse().ok()?,
            minor: it.next()?.parse().ok()?,
            patch: it.next().map_or(Some(0), |p| p.parse().ok())?,
        };
        it.next().is_none().then_some(r)
    }

    /// This build's release.
    pub fn current() -> Release {
        // VERSION comes from Cargo.toml, which cargo checks is semver.
        Release::parse(VERSION).unwrap_or(Release {
            major: 0,
            minor: 0,
            patch: 0,
        })
    }

    /// The series: `(0, MINOR)` before 1.0, `(MAJOR, 0)` after.
    pub fn series(&self) -> (u64, u64) {
        if self.major == 0 {
            (0, self.minor)
        } else {
            (self.major, 0)
        }
    }

    fn series_name(&self) -> String {
        match self.series() {
            (0, m) => format!("0.{m}"),
            (m, _) => m.to_string(),
        }
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Whether a daemon (`who`, e.g. `osd.3`) stating release `theirs` may
/// join a cluster whose mon runs `ours`, which upgrades from the series
/// `upgrades_from`. The error names both versions and what to do.
pub fn check_peer(
    who: &str,
    theirs: &str,
    ours: Release,
    upgrades_from: &[&str],
) -> Result<(), String> {
    let Some(t) = Release::parse(theirs) else {
        return Err(format!(
            "{who} states release {theirs:?}, which this mon (Kalmar {ours}) cannot read"
        ));
    };
    let accepted: Vec<String> = std::iter::once(ours.series_name())
        .chain(upgrades_from.iter().map(|s| s.to_string()))
        .collect();
    if accepted.contains(&t.series_name()) {
        return Ok(());
    }
    match t.series().cmp(&ours.series()) {
        Ordering::Greater => Err(format!(
            "{who} runs Kalmar {t}, newer than this mon's {ours}: upgrade the mons first \
             (supported: OSDs of series {})",
            accepted.join(", ")
        )),
        _ => Err(format!(
            "{who} runs Kalmar {t}, which this mon (Kalmar {ours}) does not accept: it takes \
             OSDs of series {} only; upgrade the OSD one release at a time",
            accepted.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Release {
        Release::parse(s).expect("valid")
    }

    #[test]
    fn parses_and_orders() {
        assert_eq!(r("0.1.0"), r("0.1.0-dev"));
        assert_eq!(r("1.2"), r("1.2.0"));
        assert!(Release::parse("1").is_none());
        assert!(Release::parse("1.x.0").is_none());
        assert!(Release::parse("1.2.3.4").is_none());
        assert_eq!(r("0.3.9").series(), (0, 3));
        assert_eq!(r("2.5.1").series(), (2, 0));
        assert!(Release::parse(VERSION).is_some(), "{VERSION}");
    }

    #[test]
    fn same_series_and_listed_ones_are_accepted() {
        assert!(check_peer("osd.1", "0.1.7", r("0.1.0"), &[]).is_ok());
        assert!(check_peer("osd.1", "0.1.0", r("0.2.3"), &["0.1"]).is_ok());
        assert!(check_peer("osd.1", "1.4.0", r("2.0.0"), &["1"]).is_ok());
    }

    #[test]
    fn newer_and_skipped_releases_are_refused_naming_both() {
        let e = check_peer("osd.3", "0.2.0", r("0.1.0"), &[]).expect_err("newer");
        assert!(
            e.contains("osd.3 runs Kalmar 0.2.0, newer than this mon's 0.1.0"),
            "{e}"
        );
        assert!(e.contains("upgrade the mons first"), "{e}");
        let e = check_peer("osd.3", "0.1.0", r("0.3.0"), &["0.2"]).expect_err("skipped");
        assert!(
            e.contains("Kalmar 0.1.0") && e.contains("Kalmar 0.3.0"),
            "{e}"
        );
        assert!(e.contains("series 0.3, 0.2"), "{e}");
        let e = check_peer("osd.3", "garbage", r("0.1.0"), &[]).expect_err("unreadable");
        assert!(e.contains("\"garbage\"") && e.contains("0.1.0"), "{e}");
    }
}
