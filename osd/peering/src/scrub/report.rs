//! Inconsistent objects in the shape of Ceph's `rados
//! list-inconsistent-obj` (`dump_inconsistent` in `rados.cc`).

use serde_json::{json, Map, Value};

use super::compare::{Inconsistency, ShardReport};
use super::errors::ShardErrors;

fn hex(d: u32) -> String {
    format!("0x{d:08x}")
}

fn shard_json(s: &ShardReport) -> Value {
    let mut m = Map::new();
    m.insert("osd".into(), json!(s.osd));
    m.insert("primary".into(), json!(s.primary));
    m.insert("errors".into(), json!(s.errors));
    if let Some(o) = &s.object {
        if !s.errors.has(ShardErrors::STAT_ERROR) {
            m.insert("size".into(), json!(o.size));
        }
        if let Some(d) = o.omap_digest {
            m.insert("omap_digest".into(), json!(hex(d)));
        }
        if let Some(d) = o.data_digest {
            m.insert("data_digest".into(), json!(hex(d)));
        }
    }
    Value::Object(m)
}

/// One inconsistent object.
pub fn inconsistency_json(inc: &Inconsistency) -> Value {
    let mut m = Map::new();
    m.insert(
        "object".into(),
        json!({
            "name": inc.oid,
            "nspace": "",
            "locator": "",
            "snap": "head",
            "version": inc.selected_info.map_or(0, |i| i.user_version),
        }),
    );
    m.insert("errors".into(), json!(inc.errors));
    m.insert("union_shard_errors".into(), json!(inc.union_shard_errors));
    if let Some(i) = &inc.selected_info {
        m.insert(
            "selected_object_info".into(),
            json!({
                "oid": { "oid": inc.oid, "snapid": "head", "namespace": "" },
                "version": i.version.to_string(),
                "user_version": i.user_version,
                "size": i.size,
                // Ceph prints -1 (all ones) when the info has no digest.
                "data_digest": hex(i.data_digest.unwrap_or(u32::MAX)),
            }),
        );
    }
    m.insert(
        "shards".into(),
        Value::Array(inc.shards.iter().map(shard_json).collect()),
    );
    Value::Object(m)
}

/// `{"epoch": E, "inconsistents": [...]}`: `epoch` is the interval the
/// scrub ran in (Ceph's).
pub fn inconsistents_json<'a>(
    epoch: u32,
    incs: impl IntoIterator<Item = &'a Inconsistency>,
) -> Value {
    json!({
        "epoch": epoch,
        "inconsistents": incs.into_iter().map(inconsistency_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::eversion::Eversion;
    use crate::scrub::{compare_chunk, ScrubInfo, ScrubMap, ScrubObject};

    #[test]
    fn ceph_shape() {
        let good = ScrubObject {
            size: 3,
            info: Some(ScrubInfo {
                size: 3,
                version: Eversion::new(4, 2),
                user_version: 2,
                data_digest: None,
                encoded_digest: 1,
            }),
            omap_digest: Some(0xffff_ffff),
            data_digest: Some(0x1234),
            ..Default::default()
        };
        let mut bad = good.clone();
        bad.data_digest = Some(0x99);
        let maps: BTreeMap<_, _> = [(0, good.clone()), (1, bad), (2, good)]
            .into_iter()
            .map(|(o, obj)| {
                let mut m = ScrubMap::default();
                m.objects.insert("x".to_string(), obj);
                (o, m)
            })
            .collect();
        let out = compare_chunk(0, &maps, &BTreeMap::new());
        let j = inconsistents_json(7, &out.inconsistents);
        assert_eq!(j["epoch"], json!(7));
        let i = &j["inconsistents"][0];
        assert_eq!(i["object"]["name"], json!("x"));
        assert_eq!(i["object"]["version"], json!(2));
        assert_eq!(i["errors"], json!(["data_digest_mismatch"]));
        assert_eq!(i["union_shard_errors"], json!([]));
        assert_eq!(i["selected_object_info"]["version"], json!("4'2"));
        assert_eq!(i["shards"][1]["osd"], json!(1));
        assert_eq!(i["shards"][1]["primary"], json!(false));
        assert_eq!(i["shards"][1]["data_digest"], json!("0x00000099"));
        assert_eq!(i["shards"][0]["data_digest"], json!("0x00001234"));
        assert_eq!(i["shards"][0]["primary"], json!(true));
        assert_eq!(i["shards"][0]["size"], json!(3));
    }
}
