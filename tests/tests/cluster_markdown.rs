//! A clean stop of one OSD of three (SIGTERM) marks it down at the mon at
//! once (the OSD asks, Ceph's MOSDMarkMeDown), long before the heartbeat
//! grace would. Checked:
//!
//! - the mon shows it down within [`MARKED_DOWN_BOUND`] of the signal,
//!   while the heartbeat grace is [`GRACE_S`] and beacons are not missed
//!   for minutes: only the OSD's own request can do it that fast;
//! - the process exits on its own, after the mon's answer (its ack or
//!   the map showing it down), and unmounts;
//! - writes to objects it led resume well within the grace;
//! - restarted, it comes back up with a newer `up_from` and the PGs are
//!   active+clean with the data.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kalmar_cli::procs::pid_alive;
use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::{json, Value};

const POOL: &str = "markdown";
const PG_NUM: u32 = 8;
/// Heartbeat grace: without the request, peers report the stopped OSD
/// only after this.
const GRACE_S: u64 = 20;
/// The mon must show the OSD down this soon after SIGTERM.
const MARKED_DOWN_BOUND: Duration = Duration::from_secs(2);
/// Writes to the objects the stopped OSD led must be acknowledged this
/// soon after SIGTERM: new map, peering and activation on a loaded 2-core
/// machine, clearly below the grace.
const RESUME_BOUND: Duration = Duration::from_secs(10);
const VICTIM: u32 = 1;

fn osd_entry(dump: &Value, id: u32) -> Option<Value> {
    dump["osds"]
        .as_array()?
        .iter()
        .find(|o| o["osd"].as_u64() == Some(u64::from(id)))
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_marks_the_osd_down_at_once() -> anyhow::Result<()> {
    let opts = ClusterOpts::default()
        .set("osd_heartbeat_grace", &GRACE_S.to_string())
        .set("mon_osd_report_timeout", "300")
        .set("osd_beacon_report_interval", "5");
    let c = Cluster::start(opts).await?;
    let (rados, io) = c.ready_pool(POOL, PG_NUM, 3, 2).await?;

    // Objects whose PG the victim leads: their writes wait for the map
    // that shows it down.
    let map = rados.osdmap();
    let pool = map.pool_by_name(POOL)?.id;
    let mut led = Vec::new();
    for i in 0.. {
        let name = format!("obj-{i}");
        let pg = map.object_to_pg(pool, &name)?;
        if map.pg_to_up_acting_osds(pg)?.acting_primary == VICTIM as i32 {
            led.push(name);
        }
        if led.len() == 4 || i > 10_000 {
            break;
        }
    }
    anyhow::ensure!(!led.is_empty(), "osd.{VICTIM} leads no PG of the pool");
    for name in &led {
        io.write_full(name, Bytes::from(format!("before {name}")))
            .await?;
    }

    let dump = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let old_up_from = osd_entry(&dump, VICTIM)
        .and_then(|o| o["up_from"].as_u64())
        .ok_or_else(|| anyhow::anyhow!("osd.{VICTIM} not in osd dump"))?;
    let name = format!("osd.{VICTIM}");
    let pid = c
        .pid(&name)
        .ok_or_else(|| anyhow::anyhow!("{name} is not running"))?;

    let t0 = Instant::now();
    c.signal(&name, libc::SIGTERM)?;
    wait_for(
        "the mon to show the OSD down",
        MARKED_DOWN_BOUND,
        || async {
            let up = c.osds_up().await.ok()?;
            up.iter()
                .any(|&(id, is_up)| id == VICTIM && !is_up)
                .then_some(())
        },
    )
    .await?;
    let down_after = t0.elapsed();
    eprintln!("{name} down at the mon after {down_after:?}");

    // The writes resume, on the remaining two.
    for name in &led {
        let left = RESUME_BOUND.saturating_sub(t0.elapsed());
        tokio::time::timeout(
            left,
            io.write_full(name, Bytes::from(format!("after {name}"))),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("write of {name} not acknowledged within {RESUME_BOUND:?}")
        })??;
    }
    eprintln!("writes resumed after {:?}", t0.elapsed());

    // The process ends on its own, having heard the ack and unmounted.
    wait_for(
        "the OSD process to exit",
        Duration::from_secs(15),
        || async { (!pid_alive(pid, "kalmar-osd")).then_some(()) },
    )
    .await?;
    let log = std::fs::read_to_string(c.dir().join(format!("{name}.log")))?;
    // The new map usually reaches the OSD just before the ack (the mon
    // publishes a commit, then sends the replies that waited for it).
    anyhow::ensure!(
        log.contains("the mon acked: marked down") || log.contains("the map shows this osd down"),
        "{name}'s log shows no answer from the mon"
    );
    anyhow::ensure!(log.contains("store unmounted"), "{name} did not unmount");

    // Back up as a new instance.
    c.restart_missing().await?;
    let dump = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let o = osd_entry(&dump, VICTIM).ok_or_else(|| anyhow::anyhow!("osd.{VICTIM} gone"))?;
    anyhow::ensure!(o["up"].as_i64() == Some(1), "{name} is not up: {o}");
    let new_up_from = o["up_from"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        new_up_from > old_up_from,
        "up_from {new_up_from} is not newer than {old_up_from}"
    );
    c.wait_pgs(1, PG_NUM, &["active", "clean"], Duration::from_secs(60))
        .await?;
    for name in &led {
        let got = io.read(name, 0, 4096).await?;
        anyhow::ensure!(
            got[..] == *format!("after {name}").as_bytes(),
            "{name} reads back {got:?}"
        );
    }
    Ok(())
}
