//! Bad plugins are contained and reported: a syntax error, a raising
//! serve(), a raising handle_command, a raising constructor, a notify that
//! sleeps for a minute (the test must not: shutdown abandons it).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use kalmar_mgr_py::ModuleState;
use serde_json::Value;

#[test]
fn syntax_error_is_reported_not_fatal() {
    let h = harness(&["bad_syntax", "hello"]);
    // hello still runs.
    assert_eq!(h.cmd("hello").stderr, "Hello World");
    let info = h
        .mods
        .module_infos()
        .into_iter()
        .find(|m| m.name == "bad_syntax")
        .unwrap();
    assert!(!info.can_run);
    assert!(
        matches!(&info.state, ModuleState::Failed(e) if e.contains("SyntaxError")),
        "{:?}",
        info.state
    );
    let checks = h.mods.health_checks();
    let c = &checks["MGR_MODULE_ERROR"];
    assert!(
        c.summary.contains("bad_syntax") && c.summary.contains("SyntaxError"),
        "{}",
        c.summary
    );
    assert_eq!(
        h.mods.module_ls()["failed_modules"][0]["name"],
        "bad_syntax"
    );
}

#[test]
fn raising_serve_and_constructor_are_reported() {
    let h = harness(&["bad_serve", "bad_init", "hello"]);
    assert!(wait_for(Duration::from_secs(5), || h
        .mods
        .health_checks()
        .contains_key("MGR_MODULE_ERROR")
        && h.mods.health_checks()["MGR_MODULE_ERROR"].count == 2));
    let c = &h.mods.health_checks()["MGR_MODULE_ERROR"];
    let detail = c.detail.join("\n");
    assert!(
        detail.contains("bad_serve") && detail.contains("boom in serve"),
        "{detail}"
    );
    assert!(
        detail.contains("bad_init") && detail.contains("constructor refuses"),
        "{detail}"
    );
    assert_eq!(h.cmd("hello").stderr, "Hello World");
    // Disabling the failed modules clears the check.
    h.mods.disable("bad_serve").unwrap();
    h.mods.disable("bad_init").unwrap();
    assert!(!h.mods.health_checks().contains_key("MGR_MODULE_ERROR"));
}

#[test]
fn raising_handle_command_gives_einval_and_traceback() {
    let h = harness(&["bad_command"]);
    let r = h.cmd("bad command");
    assert_eq!(r.retval, -22);
    assert!(
        r.stderr.contains("Traceback") && r.stderr.contains("bad command handler exploded"),
        "{}",
        r.stderr
    );
    // The module keeps working afterwards.
    assert_eq!(h.cmd("bad command").retval, -22);
    assert!(h.mods.health_checks().is_empty());
}

#[test]
fn notify_sleeping_a_minute_delays_only_its_own_module() {
    let h = harness_with(&["slow_notify", "apitest", "hello"], |c| {
        c.notify_queue_depth = 4;
        c.notify_stall_warn = Duration::from_millis(200);
        c.shutdown_wait = Duration::from_millis(500);
    });
    let seen = || {
        let r = h.cmd("api notifications");
        serde_json::from_str::<Value>(&r.stdout).unwrap()["seen"]
            .as_array()
            .unwrap()
            .len()
    };
    // The caller never blocks, even once the slow module's queue is full,
    // and the other module gets each notification at once.
    for i in 0..10 {
        let t = Instant::now();
        h.mods.notify_all("osd_map", "");
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "notify_all blocked: {:?}",
            t.elapsed()
        );
        assert!(wait_for(Duration::from_secs(5), || seen() == i + 1));
    }
    // 1 running + 4 queued; the rest dropped with a warning.
    let dropped = h.mods.dropped_notifies("slow_notify");
    assert!((5..=6).contains(&dropped), "dropped {dropped}");
    assert_eq!(h.cmd("slow ping").stdout, "pong");
    assert_eq!(h.cmd("hello").stderr, "Hello World");
    // Reported as stalled.
    assert!(wait_for(Duration::from_secs(5), || h
        .mods
        .health_checks()
        .contains_key("MGR_MODULE_STALLED")));
    let c = &h.mods.health_checks()["MGR_MODULE_STALLED"];
    assert!(c.detail[0].contains("slow_notify"), "{:?}", c.detail);
    assert!(h.mods.notify_busy_for("slow_notify").unwrap() >= Duration::from_millis(200));
    // Stopping it is bounded; the stuck thread is abandoned and reported.
    let t = Instant::now();
    let rep = h.mods.disable("slow_notify").unwrap().unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(rep.abandoned, vec!["notify".to_string()]);
    assert!(!h.mods.health_checks().contains_key("MGR_MODULE_STALLED"));
    let t = Instant::now();
    let reports = h.mods.shutdown();
    assert!(
        reports.iter().all(|r| r.abandoned.is_empty()),
        "{reports:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn command_timeout_and_inflight_bound() {
    let h = harness_with(&["apitest"], |c| {
        c.command_timeout = Duration::from_millis(300);
        c.max_inflight_commands = 1;
    });
    // A command stuck longer than command_timeout (its mon never answers).
    let t = Instant::now();
    h.host.hang_prefixes.lock().push("hang".into());
    let w = vec![
        "api".into(),
        "call".into(),
        "mon_command".into(),
        r#"[{"prefix": "hang"}]"#.into(),
    ];
    let r = h.mods.handle_command(&w, None, None);
    assert_eq!(r.retval, -110, "{r:?}");
    assert!(r.stderr.contains("command_timeout"), "{}", r.stderr);
    assert!(t.elapsed() < Duration::from_secs(3));
    // The first command still runs (its mon_command waits 30 s): a second
    // one is refused with -EBUSY rather than piling up threads.
    let r = h.cmd("api notifications");
    assert_eq!(r.retval, -16, "{r:?}");
}

#[test]
fn missing_dependency_is_a_warning_with_the_reason() {
    let h = harness(&["missing_dep", "hello"]);
    let reason = "kalmar_no_such_package python module not found";
    let info = h
        .mods
        .module_infos()
        .into_iter()
        .find(|m| m.name == "missing_dep")
        .unwrap();
    assert!(!info.can_run);
    assert_eq!(info.error_string, reason);
    assert_eq!(info.state, ModuleState::MissingDependency(reason.into()));
    let checks = h.mods.health_checks();
    assert!(!checks.contains_key("MGR_MODULE_ERROR"), "{checks:?}");
    let c = &checks["MGR_MODULE_DEPENDENCY"];
    assert_eq!(
        c.summary,
        format!("Module 'missing_dep' has failed dependency: {reason}")
    );
    assert_eq!(
        h.mods.module_ls()["failed_modules"][0]["error_string"],
        reason
    );
    // Refused at enable, with the reason, unless forced.
    h.mods.disable("missing_dep").unwrap();
    let e = h.mods.enable("missing_dep", false).unwrap_err().to_string();
    assert!(e.contains(reason), "{e}");
    assert!(!h.mods.health_checks().contains_key("MGR_MODULE_DEPENDENCY"));
}
