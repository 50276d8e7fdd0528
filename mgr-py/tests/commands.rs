//! `tell mgr <words>` dispatch: legacy COMMANDS (the seed's hello module,
//! unchanged apart from its import path), @CLICommand decorators, command
//! descriptions, module ls / enable / disable.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kalmar_mgr_py::{ModuleError, ModuleState};
use serde_json::{json, Value};

#[test]
fn seed_hello_module_answers_hello_world() {
    let h = harness(&["hello"]);
    let r = h.cmd("hello");
    assert_eq!(
        (r.retval, r.stdout.as_str(), r.stderr.as_str()),
        (0, "", "Hello World")
    );
    // The file is the seed's, apart from the import path in __init__.py.
    let src = std::fs::read_to_string(kalmar_mgr_py::shipped_modules_dir().join("hello/module.py"))
        .unwrap();
    assert!(src.contains("def handle_command(self, cmd):"));
    assert!(src.contains("raise NotImplementedError(cmd['prefix'])"));
    // Unknown words: -EINVAL, nothing run.
    let r = h.cmd("goodbye");
    assert_eq!(r.retval, -22);
    assert!(
        r.stderr.contains("No handler found for 'goodbye'"),
        "{}",
        r.stderr
    );
    // Extra words: a usage error naming the command.
    let r = h.cmd("hello there");
    assert_eq!(r.retval, -22);
    assert!(r.stderr.contains("unexpected argument"), "{}", r.stderr);
}

#[test]
fn ceph_18_command_registries() {
    let h = harness(&["registrycli"]);
    // The class is Registry (exported by __init__), the commands come
    // from the module's own registry, with Ceph's descriptions.
    let descs = h.mods.command_descriptions().to_string();
    assert!(
        descs.contains(r#""sig":["registry","echo",{"name":"word""#),
        "{descs}"
    );
    let r = h.cmd("registry echo hi 3");
    assert_eq!(
        (r.retval, r.stdout.as_str()),
        (0, "hi hi hi"),
        "{}",
        r.stderr
    );
    let r = h.cmd("registry counters");
    assert_eq!(r.retval, 0, "{}", r.stderr);
    let n: Vec<u64> = r
        .stdout
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(n.len(), 2, "{}", r.stdout);
    assert!(n[0] >= 3 && n[1] >= 1, "{}", r.stdout);
}

#[test]
fn cli_command_decorators() {
    let h = harness(&["clitest"]);
    let r = h.cmd("cli echo bob");
    assert_eq!(r.retval, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v,
        json!({"name": "bob", "count": 1, "loud": false, "tags": null, "inbuf": null})
    );
    let r = h.mods.handle_command(
        &words("cli echo bob 3 --loud a b"),
        None,
        Some("input".into()),
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v,
        json!({"name": "bob", "count": 3, "loud": true, "tags": ["a", "b"], "inbuf": "input"})
    );
    let r = h.cmd("cli echo bob --count=5");
    assert_eq!(
        serde_json::from_str::<Value>(&r.stdout).unwrap()["count"],
        5
    );
    let r = h.cmd("cli echo");
    assert_eq!(r.retval, -22);
    assert!(
        r.stderr.contains("missing required argument name"),
        "{}",
        r.stderr
    );

    let r = h.cmd("cli mode slow 0.5");
    assert_eq!(
        serde_json::from_str::<Value>(&r.stdout).unwrap(),
        json!({"mode": "slow", "ratio": 0.5})
    );
    let r = h.cmd("cli mode medium");
    assert_eq!(r.retval, -22);
    assert!(r.stderr.contains("not one of fast|slow"), "{}", r.stderr);

    // A raising handler: -EINVAL and the traceback.
    let r = h.cmd("cli fail");
    assert_eq!(r.retval, -22);
    assert!(
        r.stderr.contains("Traceback") && r.stderr.contains("cli fail was asked to fail"),
        "{}",
        r.stderr
    );

    // Descriptions: docstring -> help, perm from the decorator, typed args.
    let d = h.mods.command_descriptions();
    let by_prefix = |p: &str| -> Value {
        d.as_object()
            .unwrap()
            .values()
            .find(|c| {
                let words: Vec<&str> = c["sig"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|w| w.as_str())
                    .collect();
                words.join(" ") == p
            })
            .cloned()
            .unwrap()
    };
    let echo = by_prefix("cli echo");
    assert_eq!(echo["help"], "Echo a name");
    assert_eq!(echo["perm"], "r");
    assert_eq!(echo["module"], "clitest");
    assert_eq!(
        echo["sig"][2],
        json!({"name": "name", "type": "CephString", "req": "true"})
    );
    assert_eq!(
        echo["sig"][3],
        json!({"name": "count", "type": "CephInt", "req": "false"})
    );
    assert_eq!(echo["sig"][4]["type"], "CephBool");
    assert_eq!(echo["sig"][5]["n"], "N");
    assert_eq!(by_prefix("cli mode")["perm"], "w");
    assert_eq!(by_prefix("cli mode")["sig"][2]["strings"], "fast|slow");
    assert_eq!(by_prefix("cli fail")["perm"], "rw");
}

#[test]
fn commands_route_to_the_matching_module_with_format() {
    let h = harness(&["hello", "status", "apitest"]);
    let r = h.mods.handle_command(&words("status"), Some("json"), None);
    assert_eq!(r.retval, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["osdmap"]["num_up_osds"], 3);
    let r = h.cmd("status --format json");
    assert!(
        serde_json::from_str::<Value>(&r.stdout).is_ok(),
        "{}",
        r.stdout
    );
    assert_eq!(h.cmd("hello").stderr, "Hello World");
}

#[test]
fn async_wait_does_not_block_the_runtime() {
    let h = harness(&["hello"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        let t = h
            .mods
            .dispatch_command(&words("hello"), None, None)
            .unwrap();
        assert_eq!(t.module(), "hello");
        t.wait_async().await
    });
    assert_eq!(r.stderr, "Hello World");
}

#[test]
fn module_ls_enable_disable() {
    let h = harness(&["hello"]);
    let ls = h.mods.module_ls();
    assert_eq!(ls["enabled_modules"], json!(["hello"]));
    let disabled: Vec<&str> = ls["disabled_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in ["prometheus", "status", "apitest", "bad_syntax"] {
        assert!(disabled.contains(&m), "{m} missing from {disabled:?}");
    }
    let prom = ls["disabled_modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "prometheus")
        .unwrap();
    assert_eq!(prom["can_run"], true);
    assert_eq!(
        prom["module_options"]["server_port"]["default_value"],
        "9283"
    );
    assert_eq!(prom["module_options"]["server_port"]["type"], "int");
    assert!(prom["module_options"]["log_level"].is_object());
    let bad = ls["disabled_modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "bad_syntax")
        .unwrap();
    assert_eq!(bad["can_run"], false);
    assert!(
        bad["error_string"]
            .as_str()
            .unwrap()
            .contains("SyntaxError"),
        "{bad}"
    );

    // Enable at runtime: its commands appear; disable: they go.
    assert_eq!(h.cmd("cli echo x").retval, -22);
    h.mods.enable("clitest", false).unwrap();
    assert_eq!(h.cmd("cli echo x").retval, 0);
    assert!(h.mods.enabled().contains("clitest"));
    let rep = h.mods.disable("clitest").unwrap().unwrap();
    assert!(rep.abandoned.is_empty());
    assert_eq!(h.cmd("cli echo x").retval, -22);
    assert!(matches!(
        h.mods.enable("nope", false),
        Err(ModuleError::Unknown(_))
    ));
    assert!(matches!(
        h.mods.enable("bad_syntax", false),
        Err(ModuleError::CannotRun { .. })
    ));
    let info = h
        .mods
        .module_infos()
        .into_iter()
        .find(|m| m.name == "hello")
        .unwrap();
    assert_eq!(info.state, ModuleState::Running);
}

#[test]
fn always_on_modules_run_and_cannot_be_disabled() {
    let h = harness_with(&[], |c| c.always_on = vec!["status".into()]);
    assert_eq!(h.mods.module_ls()["always_on_modules"], json!(["status"]));
    assert_eq!(h.cmd("osd status").retval, 0);
    assert!(
        h.cmd("osd status").stdout.contains("osd.0") || h.cmd("osd status").stdout.contains("vm")
    );
    assert!(matches!(
        h.mods.disable("status"),
        Err(ModuleError::AlwaysOn(_))
    ));
}
