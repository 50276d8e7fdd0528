//! CRUSH administration on a running cluster, through the `kalmar` CLI:
//! a rack layout built with `osd crush add-bucket|move|set`, device
//! classes, a class rule and a pool on it (every PG's acting set stays in
//! the class), then a failed disk replaced: `osd destroy` keeps the id and
//! the CRUSH position, `kalmar-osd create --id` gives them to a new disk,
//! whose OSD moves its host into another rack at boot (its conf's
//! `crush_location`).

use std::collections::BTreeSet;
use std::time::Duration;

use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::{json, Value};

/// Bound on PGs settling after a map change.
const SETTLE: Duration = Duration::from_secs(120);

async fn acting_sets(c: &Cluster, pool: u64) -> anyhow::Result<Vec<(String, Vec<u64>)>> {
    let pgs = c.pg_stats().await?;
    Ok(pgs
        .iter()
        .filter(|p| {
            p["pgid"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("{pool}.")))
        })
        .map(|p| {
            let acting = p["acting"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            (p["pgid"].as_str().unwrap_or("?").to_string(), acting)
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rack_layout_class_rule_and_disk_replacement() -> anyhow::Result<()> {
    let c = Cluster::start(ClusterOpts {
        osds: 4,
        ..ClusterOpts::default()
    })
    .await?;
    // Two racks of two hosts, one OSD each: osd.N on host hN.
    for r in 0..2 {
        c.kalmar_ok(&[
            "osd",
            "crush",
            "add-bucket",
            &format!("r{r}"),
            "rack",
            "root=default",
        ])?;
    }
    for n in 0..4 {
        let host = format!("h{n}");
        let rack = format!("rack=r{}", n / 2);
        c.kalmar_ok(&["osd", "crush", "add-bucket", &host, "host"])?;
        c.kalmar_ok(&["osd", "crush", "move", &host, &rack, "root=default"])?;
        c.kalmar_ok(&[
            "osd",
            "crush",
            "set",
            &format!("osd.{n}"),
            "1.0",
            &format!("host={host}"),
        ])?;
    }
    // Hosts the OSDs registered under are empty now: remove them.
    let tree = c.mon_command(json!({"prefix": "osd crush tree"})).await?;
    for node in tree["nodes"].as_array().into_iter().flatten() {
        let name = node["name"].as_str().unwrap_or("");
        let empty = node["children"].as_array().is_some_and(|a| a.is_empty());
        if node["type"] == "host" && empty {
            c.kalmar_ok(&["osd", "crush", "rm", name])?;
        }
    }
    let plain = c.kalmar_ok(&["osd", "tree"])?;
    assert!(plain.contains("rack r1"), "{plain}");
    assert!(plain.contains("host h3"), "{plain}");

    c.kalmar_ok(&["osd", "crush", "set-device-class", "ssd", "0", "2"])?;
    c.kalmar_ok(&["osd", "crush", "set-device-class", "hdd", "1", "3"])?;
    let classes = c.kalmar_ok(&["osd", "crush", "class", "ls", "-f", "json"])?;
    assert_eq!(
        serde_json::from_str::<Value>(&classes)?,
        json!(["ssd", "hdd"])
    );
    c.kalmar_ok(&[
        "osd",
        "crush",
        "rule",
        "create-replicated",
        "fast",
        "default",
        "rack",
        "ssd",
    ])?;
    c.kalmar_ok(&[
        "osd",
        "crush",
        "rule",
        "create-replicated",
        "slow",
        "default",
        "rack",
        "hdd",
    ])?;
    let shadow = c.kalmar_ok(&["osd", "crush", "tree", "--show-shadow"])?;
    assert!(shadow.contains("root default~ssd"), "{shadow}");

    const PGS: u32 = 8;
    c.mon_command(json!({"prefix": "osd pool create", "pool": "fast", "pg_num": PGS, "size": 2, "min_size": 1, "rule": "fast"}))
        .await?;
    c.mon_command(json!({"prefix": "osd pool create", "pool": "slow", "pg_num": PGS, "size": 2, "min_size": 1, "rule": "slow"}))
        .await?;
    c.wait_pgs(1, PGS, &["active", "clean"], SETTLE).await?;
    c.wait_pgs(2, PGS, &["active", "clean"], SETTLE).await?;
    for (pool, class) in [(1, [0u64, 2]), (2, [1, 3])] {
        let sets = acting_sets(&c, pool).await?;
        assert_eq!(sets.len(), PGS as usize);
        for (pg, acting) in sets {
            let got: BTreeSet<u64> = acting.iter().copied().collect();
            assert_eq!(got, class.into_iter().collect(), "pg {pg}: {acting:?}");
        }
    }

    // osd.3's disk fails: stop it, destroy it, give its id to a new disk.
    let before = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let old_uuid = before["osds"][3]["uuid"].clone();
    c.stop("osd.3")?;
    wait_for("osd.3 down", SETTLE, || async {
        let up = c.osds_up().await.ok()?;
        up.iter().any(|&(id, up)| id == 3 && !up).then_some(())
    })
    .await?;
    let refused = c.kalmar(&["osd", "destroy", "osd.3"])?;
    assert_eq!(refused.status.code(), Some(1), "EPERM without the flag");
    c.kalmar_ok(&["osd", "destroy", "osd.3", "--yes-i-really-mean-it"])?;
    let plain = c.kalmar_ok(&["osd", "tree"])?;
    assert!(
        plain
            .lines()
            .any(|l| l.contains("osd.3") && l.contains("destroyed")),
        "{plain}"
    );
    // The new disk's OSD names its full CRUSH location in the conf, in
    // another rack: at boot it moves its host there, the rack made on
    // the way (osd_crush_update_on_start).
    {
        let text = std::fs::read_to_string(&c.conf)?;
        let section = "[\"osd.3\"]\n";
        let line = "crush_location = \"root=default rack=r2 host=h3\"\n";
        let text = match text.find(section) {
            Some(at) => {
                let at = at + section.len();
                format!("{}{line}{}", &text[..at], &text[at..])
            }
            None => format!("{text}\n{section}{line}"),
        };
        std::fs::write(&c.conf, text)?;
    }
    let device = c.device(3);
    std::fs::remove_file(&device)?;
    std::fs::File::create(&device)?.set_len(2 << 30)?;
    let mon = c.mon.to_string();
    let conf = c.conf.display().to_string();
    let data_root = c.dir().join("osd-data").display().to_string();
    let dev = device.display().to_string();
    let out = c.run_bin(
        "kalmar-osd",
        &[
            "create",
            "--device",
            &dev,
            "--id",
            "3",
            "--mon",
            &mon,
            "--conf",
            &conf,
            "--data-root",
            &data_root,
            "--no-start",
            "--device-class",
            "ssd",
        ],
        Duration::from_secs(120),
    )?;
    assert!(
        out.status.success(),
        "create: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    c.restart_missing().await?;
    c.wait_pgs(2, PGS, &["active", "clean"], SETTLE).await?;
    let after = c.mon_command(json!({"prefix": "osd dump"})).await?;
    let osd3 = &after["osds"][3];
    assert_eq!(osd3["osd"], 3);
    assert_eq!(osd3["up"], 1);
    assert_ne!(osd3["uuid"], old_uuid, "the new disk has its own uuid");
    let crush = c.mon_command(json!({"prefix": "osd crush dump"})).await?;
    let dev3 = crush["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == 3))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(dev3["class"], "hdd", "the class set before is kept: {dev3}");
    let h3 = bucket_named(&crush, "h3");
    assert_eq!(h3["items"][0]["id"], 3, "same CRUSH position: {h3}");
    let bucket = |name: &str| bucket_named(&crush, name);
    let (r1, r2) = (bucket("r1"), bucket("r2"));
    assert_eq!(r2["type_name"], "rack", "rack made at boot: {r2}");
    let holds_h3 = |b: &Value| {
        b["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|i| i["id"] == h3["id"]))
    };
    assert!(holds_h3(&r2), "h3 moved into r2: {r2}");
    assert!(!holds_h3(&r1), "and out of r1: {r1}");
    assert!(
        bucket("default")["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|i| i["id"] == r2["id"])),
        "r2 under the root"
    );
    for (pg, acting) in acting_sets(&c, 2).await? {
        let got: BTreeSet<u64> = acting.iter().copied().collect();
        assert_eq!(got, [1, 3].into_iter().collect(), "pg {pg}: {acting:?}");
    }
    c.stop_all();
    Ok(())
}

/// `crush_location_hook` and `osd_crush_initial_weight` at boot: each OSD
/// runs the hook (Ceph's arguments; it prints a location naming the OSD's
/// id) and lands where it says, with the initial weight; a restart keeps
/// an admin's reweight. A hook that fails falls back to the conf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_hook_and_initial_weight_at_first_boot() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir()?;
    let hook = tmp.path().join("where-am-i");
    // osd.0: rack hr0, host hh0; osd.1's hook fails (exit 1): it boots at
    // the conf's crush_location.
    std::fs::write(
        &hook,
        "#!/bin/sh\n[ \"$1 $2 $3 $5 $6\" = \"--cluster kalmar --id --type osd\" ] || exit 2\n\
         [ \"$4\" = 1 ] && { echo 'no inventory for osd.1' >&2; exit 1; }\n\
         echo \"root=default rack=hr$4 host=hh$4\"\n",
    )?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    let c = Cluster::start(
        ClusterOpts {
            osds: 2,
            ..ClusterOpts::default()
        }
        .set("crush_location_hook", &hook.display().to_string())
        .set("crush_location", "host=fallback")
        .set("osd_crush_initial_weight", "0.25"),
    )
    .await?;
    let crush = c.mon_command(json!({"prefix": "osd crush dump"})).await?;
    let bucket = |name: &str| bucket_named(&crush, name);
    let (hr0, hh0, fallback) = (bucket("hr0"), bucket("hh0"), bucket("fallback"));
    assert_eq!(hr0["type_name"], "rack", "{crush}");
    assert_eq!(hh0["items"][0]["id"], 0, "osd.0 where its hook said: {hh0}");
    assert!(
        hr0["items"]
            .to_string()
            .contains(&format!("\"id\":{}", hh0["id"])),
        "hh0 in hr0: {hr0}"
    );
    assert_eq!(
        fallback["items"][0]["id"], 1,
        "osd.1 at the conf's: {fallback}"
    );
    let log = std::fs::read_to_string(c.dir().join("osd.1.log"))?;
    assert!(
        log.contains("crush_location_hook") && log.contains("exited with"),
        "osd.1 warns why"
    );
    // The initial weight, not the mkfs placeholder (1) nor the size.
    let tree = c.mon_command(json!({"prefix": "osd tree"})).await?;
    let weight = |id: u64| {
        tree["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["id"] == id))
            .and_then(|n| n["crush_weight"].as_f64())
    };
    assert_eq!(weight(0), Some(0.25), "{tree}");
    assert_eq!(weight(1), Some(0.25), "{tree}");
    // An admin's reweight survives a restart (not a first boot).
    c.kalmar_ok(&["osd", "crush", "reweight", "osd.0", "0.5"])?;
    let before = c.mon_command(json!({"prefix": "osd dump"})).await?["epoch"].clone();
    c.stop("osd.0")?;
    wait_for("osd.0 down", SETTLE, || async {
        let up = c.osds_up().await.ok()?;
        up.iter().any(|&(id, up)| id == 0 && !up).then_some(())
    })
    .await?;
    c.restart_missing().await?;
    let tree = c.mon_command(json!({"prefix": "osd tree"})).await?;
    let w0 = tree["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == 0))
        .and_then(|n| n["crush_weight"].as_f64());
    assert_eq!(w0, Some(0.5), "{tree} (epoch before the restart: {before})");
    Ok(())
}

/// The bucket called `name` in an `osd crush dump` (null if none).
fn bucket_named(crush: &Value, name: &str) -> Value {
    crush["buckets"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}
