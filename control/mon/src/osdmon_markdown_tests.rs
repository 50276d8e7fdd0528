//! `OsdMon::mark_me_down`: which requests of a stopping OSD mark it down.

use super::*;

/// osd.`id`'s request to be marked down, naming the instance in the
/// committed map.
fn mark_me_down_msg(m: &OsdMon, id: OsdId) -> OsdMarkMeDown {
    let s = m.map().osd(id).expect("slot");
    OsdMarkMeDown {
        fsid: m.map().fsid,
        target_osd: id,
        target_addrs: s.addrs,
        epoch: m.map().epoch,
        request_ack: true,
    }
}

#[test]
fn mark_me_down_marks_the_instance_that_is_up() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(3, t0);
    let req = mark_me_down_msg(&m, 1);
    assert_eq!(m.mark_me_down(&req, secs(t0, 1)), MarkMeDown::Marked);
    // A repeat before the commit sees it down already.
    assert!(matches!(
        m.mark_me_down(&req, secs(t0, 1)),
        MarkMeDown::Ignored(_)
    ));
    assert!(commit(&mut m));
    let e = m.map().epoch;
    let s = m.map().osd(1).expect("osd.1");
    assert!(!s.is_up() && s.is_in(), "down, still in");
    assert_eq!(s.info.down_at, e);
    assert!(m.map().is_up(0) && m.map().is_up(2));
    // Down -> out runs from the mark-down, like any other down.
    m.tick(secs(t0, 1 + 599));
    assert!(!m.has_pending());
    m.tick(secs(t0, 1 + 601));
    assert!(commit(&mut m));
    assert!(m.map().is_out(1));
}

#[test]
fn mark_me_down_from_another_instance_or_epoch_is_ignored() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(3, t0);
    let good = mark_me_down_msg(&m, 2);
    let other_addrs = OsdMarkMeDown {
        target_addrs: OsdAddrs::all("127.0.0.1:7902/5".parse().expect("addr")),
        ..good.clone()
    };
    let before_up_from = OsdMarkMeDown {
        epoch: m.map().osd(2).expect("osd.2").info.up_from - 1,
        ..good.clone()
    };
    let other_cluster = OsdMarkMeDown {
        fsid: Uuid::new_v4(),
        ..good.clone()
    };
    let no_such_osd = OsdMarkMeDown {
        target_osd: 9,
        ..good.clone()
    };
    for (what, req) in [
        ("addresses", &other_addrs),
        ("up_from", &before_up_from),
        ("fsid", &other_cluster),
        ("exist", &no_such_osd),
    ] {
        match m.mark_me_down(req, t0) {
            MarkMeDown::Ignored(why) => assert!(why.contains(what), "{what}: {why}"),
            MarkMeDown::Marked => panic!("{what}: a mismatched request marked the OSD down"),
        }
        assert!(!m.has_pending(), "{what}");
    }
    assert_eq!(m.mark_me_down(&good, t0), MarkMeDown::Marked);
}

#[test]
fn mark_me_down_respects_nodown_global_and_per_osd() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(3, t0);
    m.cmd_flag("nodown", true).expect("set");
    commit(&mut m);
    let req = mark_me_down_msg(&m, 0);
    assert!(matches!(m.mark_me_down(&req, t0), MarkMeDown::Ignored(w) if w.contains("nodown")));
    assert!(!m.has_pending());
    m.cmd_flag("nodown", false).expect("unset");
    m.cmd_osd_flag(&[0], "nodown", true).expect("add-nodown");
    commit(&mut m);
    let req = mark_me_down_msg(&m, 0);
    assert!(matches!(m.mark_me_down(&req, t0), MarkMeDown::Ignored(w) if w.contains("nodown")));
    assert!(!m.has_pending());
    // Another OSD without the flag still goes down.
    let req = mark_me_down_msg(&m, 1);
    assert_eq!(m.mark_me_down(&req, t0), MarkMeDown::Marked);
}

#[test]
fn mark_me_down_of_a_down_osd_changes_nothing() {
    let t0 = Instant::now();
    let (mut m, _) = cluster(3, t0);
    let req = mark_me_down_msg(&m, 2);
    m.cmd_down(2, t0).expect("osd down");
    commit(&mut m);
    match m.mark_me_down(&req, secs(t0, 1)) {
        MarkMeDown::Ignored(why) => assert!(why.contains("already down"), "{why}"),
        MarkMeDown::Marked => panic!("marked a down OSD down again"),
    }
    assert!(!m.has_pending());
}
