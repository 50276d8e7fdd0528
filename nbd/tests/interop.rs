//! `kalmar-nbd --store` driven by real clients: qemu-io patterns, qemu-img
//! convert, nbdinfo/nbdcopy, fio's verify job through its nbd engine, and
//! kill -9 during fio writes followed by a verify pass of everything fio
//! saw acknowledged. Needs fio, qemu-utils and libnbd-bin
//! (scripts/setup.sh installs them).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn qemu_io_patterns_over_tcp_and_unix_survive_a_restart() {
    require("qemu-io");
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    let sock = dir.path().join("nbd.sock");
    let seed = 0x5eed_0001_u64 ^ std::process::id() as u64;
    eprintln!("seed {seed:#x}");
    let srv = NbdProcess::start(&dev, "256M", true, Listen::Tcp);
    assert!(srv.uri.starts_with("nbd://127.0.0.1:"), "{}", srv.uri);
    let pats = qemu_io_patterns(&srv.uri, seed);
    srv.stop();
    // Same store, now on a unix socket: the data is still there.
    let srv = NbdProcess::start(&dev, "256M", false, Listen::Unix(&sock));
    assert!(srv.uri.starts_with("nbd+unix:///?socket="), "{}", srv.uri);
    check_patterns(&srv.uri, &pats);
    // Overwrite half of them through unix, then check all again.
    let moved: Vec<(u64, u64, u8)> = pats.iter().map(|&(o, l, p)| (o, l, p ^ 0xff)).collect();
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw", &srv.uri]);
    for (off, len, p) in moved.iter().step_by(2) {
        cmd.arg("-c").arg(format!("write -P {p:#x} {off} {len}"));
    }
    run(&mut cmd);
    let expect: Vec<(u64, u64, u8)> = pats
        .iter()
        .enumerate()
        .map(|(i, &p)| if i % 2 == 0 { moved[i] } else { p })
        .collect();
    check_patterns(&srv.uri, &expect);
    srv.stop();
}

#[test]
fn qemu_img_convert_256m_in_and_out_is_byte_identical() {
    require("qemu-img");
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    let (src, data) = random_file(dir.path(), 256 * MIB, 0xc0ff_ee00);
    let srv = NbdProcess::start(&dev, "256M", true, Listen::Unix(&dir.path().join("s.sock")));
    qemu_img_in(&src, &srv.uri, 256 * MIB);
    srv.stop();
    // Out through a new server (TCP this time): what the store kept.
    let srv = NbdProcess::start(&dev, "256M", false, Listen::Tcp);
    qemu_img_out_equals(&srv.uri, dir.path(), &data);
    srv.stop();
}

#[test]
fn nbdinfo_and_nbdcopy_see_the_export() {
    require("nbdinfo");
    require("nbdcopy");
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = NbdProcess::start(&dir.path().join("dev"), "64M", true, Listen::Tcp);
    let info = run(Command::new("nbdinfo").args(["--json", &srv.uri]));
    let v: serde_json::Value = serde_json::from_str(&info).expect("nbdinfo json");
    let e = &v["exports"][0];
    assert_eq!(e["export-size"].as_u64(), Some(64 * MIB));
    for flag in [
        "can_flush",
        "can_fua",
        "can_trim",
        "can_zero",
        "can_multi_conn",
    ] {
        assert_eq!(e[flag].as_bool(), Some(true), "{flag}: {info}");
    }
    assert_eq!(v["protocol"].as_str(), Some("newstyle-fixed"));
    let list = run(Command::new("nbdinfo").args(["--list", "--json", &srv.uri]));
    assert!(list.contains("kalmar-store"), "{list}");
    // nbdcopy in (4 connections, multi-conn) and out again.
    let src = dir.path().join("in.img");
    let out = dir.path().join("out.img");
    let data: Vec<u8> = (0..64 * MIB as usize)
        .map(|i| (i / 4096 % 251) as u8)
        .collect();
    std::fs::write(&src, &data).expect("src");
    run(Command::new("nbdcopy")
        .args(["--connections=4"])
        .arg(&src)
        .arg(&srv.uri));
    run(Command::new("nbdcopy").arg(&srv.uri).arg(&out));
    assert!(
        std::fs::read(&out).expect("out") == data,
        "nbdcopy round trip differs"
    );
    srv.stop();
}

#[test]
fn fio_verify_job_passes_through_the_nbd_engine() {
    require("fio");
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = NbdProcess::start(
        &dir.path().join("dev"),
        "128M",
        true,
        Listen::Unix(&dir.path().join("s.sock")),
    );
    let out = run(Command::new("fio")
        .arg(fio_configs().join("verify.fio"))
        .args(["--output-format=json", "--output"])
        .arg(dir.path().join("verify.json"))
        .env("NBD_URI", &srv.uri)
        .env("FIO_SIZE", "64M")
        .current_dir(dir.path()));
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("verify.json")).expect("json"))
            .expect("fio json");
    let jobs = j["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 3, "{out}");
    for job in jobs {
        assert_eq!(job["error"].as_i64(), Some(0), "{}: {out}", job["jobname"]);
        // The verify phase read back everything written.
        assert!(
            job["read"]["io_bytes"].as_u64().unwrap_or(0) > 0,
            "{} verified nothing",
            job["jobname"]
        );
    }
    srv.stop();
}

/// Offsets of the writes fio completed successfully, from its
/// completion-latency log (`time, latency, ddir, bs, offset, ...`).
fn acknowledged_offsets(log: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(log).expect("fio latency log");
    let mut v: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            (f.get(2) == Some(&"1"))
                .then(|| f.get(4).and_then(|o| o.parse().ok()))
                .flatten()
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn fio_verify_range(uri: &str, dir: &Path, offset: u64, size: u64) {
    run(Command::new("fio")
        .args([
            "--name=crash",
            "--ioengine=nbd",
            "--rw=write",
            "--bs=4k",
            "--iodepth=16",
        ])
        .args(["--verify=crc32c", "--verify_only=1", "--verify_fatal=1"])
        .arg(format!("--uri={uri}"))
        .arg(format!("--offset={offset}"))
        .arg(format!("--size={size}"))
        .current_dir(dir));
}

#[test]
fn kill_9_during_fio_writes_loses_no_acknowledged_write() {
    require("fio");
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    let sock = dir.path().join("s.sock");
    for round in 0..2u64 {
        // A fresh store each round: stale blocks of an earlier round would
        // pass fio's self-checking verify.
        let srv = NbdProcess::start(&dev, "512M", true, Listen::Unix(&sock));
        // Sequential 4 KiB writes with a flush every 8, fio's verify header
        // in every block, completions logged with their offsets.
        let mut fio = Command::new("fio")
            .args([
                "--name=crash",
                "--ioengine=nbd",
                "--rw=write",
                "--bs=4k",
                "--iodepth=16",
                "--size=512M",
            ])
            .args([
                "--verify=crc32c",
                "--do_verify=0",
                "--fsync=8",
                "--write_lat_log=crash",
                "--log_offset=1",
            ])
            .arg(format!("--uri={}", srv.uri))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fio");
        std::thread::sleep(Duration::from_millis(1500 + 700 * round));
        srv.kill9();
        let st = fio.wait().expect("fio");
        assert!(
            !st.success(),
            "fio finished before the kill; make the run longer"
        );
        let acked = acknowledged_offsets(&dir.path().join("crash_lat.1.log"));
        assert!(
            acked.len() > 100,
            "only {} writes acknowledged before the kill",
            acked.len()
        );
        // The longest prefix of acknowledged blocks, and those beyond it
        // (acknowledged out of order).
        let mut prefix = 0u64;
        for &o in &acked {
            if o != prefix {
                break;
            }
            prefix += 4096;
        }
        let srv = NbdProcess::start(&dev, "512M", false, Listen::Unix(&sock));
        fio_verify_range(&srv.uri, dir.path(), 0, prefix);
        let beyond: Vec<u64> = acked.iter().copied().filter(|&o| o >= prefix).collect();
        eprintln!(
            "round {round}: {} acknowledged, prefix {prefix}, {} beyond",
            acked.len(),
            beyond.len()
        );
        for o in beyond {
            fio_verify_range(&srv.uri, dir.path(), o, 4096);
        }
        srv.stop();
        let _ = std::fs::remove_file(dir.path().join("crash_lat.1.log"));
    }
}
