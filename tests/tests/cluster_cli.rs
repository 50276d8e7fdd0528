//! The `kalmar` CLI against a vstart cluster: `rados` object commands with
//! Ceph's output shapes, `pg stat` / `pg dump`, `daemon osd.N ...`, and
//! `vstart` run again on the directory (restarting a killed OSD, adding
//! one), then `vstop`.

use std::path::Path;
use std::time::Duration;

use kalmar_tests::{wait_for, Cluster, ClusterOpts};
use serde_json::Value;

fn json(c: &Cluster, args: &[&str]) -> anyhow::Result<Value> {
    let mut a = vec!["-f", "json"];
    a.extend_from_slice(args);
    Ok(serde_json::from_str(&c.kalmar_ok(&a)?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_rados_pg_daemon_and_vstart() -> anyhow::Result<()> {
    let c = Cluster::start(ClusterOpts::default()).await?;
    c.kalmar_ok(&[
        "osd",
        "pool",
        "create",
        "cli",
        "8",
        "--size",
        "3",
        "--min-size",
        "2",
    ])?;
    c.wait_pgs(1, 8, &["active", "clean"], Duration::from_secs(60))
        .await?;

    // rados put/get/stat/ls/rm with a file and stdout.
    let dir = c.dir().to_path_buf();
    let src = dir.join("in.bin");
    let body: Vec<u8> = (0..(9 << 20) + 17).map(|i| (i % 253) as u8).collect();
    std::fs::write(&src, &body)?;
    let srcs = src.display().to_string();
    c.kalmar_ok(&["rados", "-p", "cli", "put", "big", &srcs])?;
    let dst = dir.join("out.bin");
    c.kalmar_ok(&[
        "rados",
        "-p",
        "cli",
        "get",
        "big",
        &dst.display().to_string(),
    ])?;
    assert!(
        std::fs::read(&dst)? == body,
        "get returns what put stored (9 MiB, several ops)"
    );
    let stat = c.kalmar_ok(&["rados", "-p", "cli", "stat", "big"])?;
    assert!(stat.starts_with("cli/big mtime "), "{stat}");
    assert!(
        stat.trim_end().ends_with(&format!(", size {}", body.len())),
        "{stat}"
    );
    let small = dir.join("small.txt");
    std::fs::write(&small, b"hello")?;
    c.kalmar_ok(&[
        "rados",
        "-p",
        "cli",
        "put",
        "small",
        &small.display().to_string(),
    ])?;
    assert_eq!(
        c.kalmar_ok(&["rados", "-p", "cli", "get", "small", "-"])?,
        "hello"
    );
    let mut ls: Vec<String> = c
        .kalmar_ok(&["rados", "-p", "cli", "ls"])?
        .lines()
        .map(String::from)
        .collect();
    ls.sort();
    assert_eq!(ls, vec!["big", "small"]);
    let lsj = json(&c, &["rados", "-p", "cli", "ls"])?;
    assert_eq!(lsj.as_array().map(Vec::len), Some(2));

    // xattrs and omap.
    c.kalmar_ok(&["rados", "-p", "cli", "setxattr", "small", "color", "blue"])?;
    assert_eq!(
        c.kalmar_ok(&["rados", "-p", "cli", "getxattr", "small", "color"])?
            .trim_end(),
        "blue"
    );
    c.kalmar_ok(&["rados", "-p", "cli", "setomapval", "small", "k1", "value"])?;
    c.kalmar_ok(&["rados", "-p", "cli", "setomapval", "small", "k2", "v2"])?;
    let vals = c.kalmar_ok(&["rados", "-p", "cli", "listomapvals", "small"])?;
    assert!(
        vals.starts_with("k1\nvalue (5 bytes) :\n00000000  76 61 6c 75 65"),
        "{vals}"
    );
    assert!(vals.contains("|value|\n00000005\n"), "{vals}");
    assert!(vals.contains("\nk2\nvalue (2 bytes) :\n"), "{vals}");

    // Errors: missing object, missing pool; a non-zero exit and a message.
    let out = c.kalmar(&["rados", "-p", "cli", "stat", "nope"])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
        "{out:?}"
    );
    let out = c.kalmar(&["rados", "-p", "nopool", "ls"])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nopool"),
        "{out:?}"
    );
    c.kalmar_ok(&["rados", "-p", "cli", "rm", "small"])?;
    assert_eq!(c.kalmar_ok(&["rados", "-p", "cli", "ls"])?.trim(), "big");

    // rados bench in Ceph's shape.
    let bench = c.kalmar_ok(&[
        "rados", "-p", "cli", "bench", "2", "write", "-b", "4K", "-t", "4",
    ])?;
    for line in [
        "Total writes made:",
        "Bandwidth (MB/sec):",
        "Average IOPS:",
        "Average Latency(s):",
        "Min latency(s):",
    ] {
        assert!(bench.contains(line), "{line} missing in:\n{bench}");
    }
    assert!(bench.contains("Cleaning up (deleting benchmark objects)"));
    assert_eq!(
        c.kalmar_ok(&["rados", "-p", "cli", "ls"])?.trim(),
        "big",
        "bench objects cleaned up"
    );

    // pg stat / pg dump from the mon; daemon commands on the admin socket.
    wait_for(
        "pg stat to count the object",
        Duration::from_secs(20),
        || async {
            let s = json(&c, &["pg", "stat"]).ok()?;
            (s["num_objects"].as_u64()? == 1).then_some(())
        },
    )
    .await?;
    let stat = c.kalmar_ok(&["pg", "stat"])?;
    assert!(stat.starts_with("8 pgs: 8 active+clean; "), "{stat}");
    let brief = c.kalmar_ok(&["pg", "dump", "pgs_brief"])?;
    assert!(brief.starts_with("PG_STAT  STATE"), "{brief}");
    assert_eq!(brief.lines().count(), 9);
    let perf = json(&c, &["daemon", "osd.1", "perf", "dump"])?;
    assert!(perf["osd"]["op_w"].is_u64() && perf["objectstore"].is_object());
    let st = json(&c, &["daemon", "osd.1", "status"])?;
    assert_eq!(st["whoami"], serde_json::json!(1));

    // vstart again: restarts a killed OSD and adds osd.3.
    c.kill9("osd.2")?;
    c.kalmar_ok(&["vstart", "--osds", "4", "--dir", &dir.display().to_string()])?;
    assert!(c.pid("osd.2").is_some() && c.pid("osd.3").is_some());
    assert!(Path::new(&dir).join("osd.3").join("device").exists());
    let up = c.osds_up().await?;
    assert_eq!(up, vec![(0, true), (1, true), (2, true), (3, true)]);
    assert_eq!(std::fs::read(&dst)?, body);

    let out = c.kalmar_ok(&["vstop", "--dir", &dir.display().to_string()])?;
    assert!(
        out.contains("stopped osd.3") && out.contains("stopped mon.a"),
        "{out}"
    );
    for name in ["osd.0", "osd.3", "mon.a"] {
        assert!(c.pid(name).is_none(), "{name} still runs after vstop");
    }
    Ok(())
}
