//! Ceph-shaped renderings of the maps: `osd dump` (JSON and plain),
//! `osd tree` (table and JSON), `osd crush dump` (JSON).

mod crush_dump;
mod osd_dump;
mod tree;

pub use crush_dump::crush_dump_json;
pub use crush_dump::rule_json;
pub use osd_dump::{osd_dump_json, osd_dump_plain, pool_json};
pub use tree::{crush_tree_json, crush_tree_plain, osd_tree_json, osd_tree_plain};

/// A float as C++'s default `ostream <<` prints it (6 significant digits,
/// `%g`): `1`, `0.5`, `0.95`, `1e-07`.
pub fn fmt_g(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            v.to_string()
        };
    }
    let exp = v.abs().log10().floor() as i32;
    if !(-5..6).contains(&exp) {
        let s = format!("{:.5e}", v);
        let (mant, e) = s.split_once('e').unwrap_or((&s, "0"));
        let mant = trim_zeros(mant);
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{mant}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let decimals = (5 - exp).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Ceph's `{"addrvec": [...]}` for one address (empty when unset).
pub(crate) fn addrvec_json(a: &crate::EntityAddr) -> serde_json::Value {
    if a.is_blank() {
        serde_json::json!({ "addrvec": [] })
    } else {
        serde_json::json!({ "addrvec": [{ "type": "v2", "addr": a.addr.to_string(), "nonce": a.nonce }] })
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_g;

    #[test]
    fn g_format() {
        assert_eq!(fmt_g(1.0), "1");
        assert_eq!(fmt_g(0.0), "0");
        assert_eq!(fmt_g(0.95), "0.95");
        assert_eq!(fmt_g(0.5), "0.5");
        assert_eq!(fmt_g(0.333333333), "0.333333");
        assert_eq!(fmt_g(123456.0), "123456");
        assert_eq!(fmt_g(1234567.0), "1.23457e+06");
        assert_eq!(fmt_g(0.0000001), "1e-07");
    }
}
