//! Number and table formatting as Ceph's CLI prints them.

/// Bytes as Ceph's `byte_u_t`: `0 B`, `853 B`, `9.8 GiB`, `14 GiB`,
/// `1000 MiB` (one decimal below 10 units, none above).
pub fn bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{} {}", v.round() as u64, UNITS[u])
    }
}

/// Counts as Ceph's `si_u_t`: `12`, `4.79k`, `19.14k`, `123.4k`, `1.2M`.
pub fn si(n: u64) -> String {
    const UNITS: &[&str] = &["", "k", "M", "G", "T", "P", "E"];
    if n < 1000 {
        return n.to_string();
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if v < 100.0 {
        format!("{v:.2}{}", UNITS[u])
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// Columns separated by two spaces; columns in `left` are left-aligned,
/// the others right-aligned, as Ceph's `TextTable` does.
pub fn table(rows: &[Vec<String>], left: &[usize]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, w) in widths.iter().enumerate() {
            let cell = r.get(c).map_or("", String::as_str);
            if c > 0 {
                line.push_str("  ");
            }
            if left.contains(&c) {
                line.push_str(&format!("{cell:<w$}"));
            } else {
                line.push_str(&format!("{cell:>w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceph_like_numbers() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(853), "853 B");
        assert_eq!(bytes(38 * 1024), "38 KiB");
        assert_eq!(bytes(4 << 30), "4.0 GiB");
        assert_eq!(bytes(1000 << 20), "1000 MiB");
        assert_eq!(bytes((9.8 * (1u64 << 30) as f64) as u64), "9.8 GiB");
        assert_eq!(si(3), "3");
        assert_eq!(si(3810), "3.81k");
        assert_eq!(si(19_140), "19.14k");
        assert_eq!(si(123_400), "123.4k");
        assert_eq!(si(1_200_000), "1.20M");
    }

    #[test]
    fn table_alignment() {
        let rows = vec![
            vec!["PG_STAT".to_string(), "STATE".into(), "UP".into()],
            vec!["1.0".to_string(), "active+clean".into(), "[1,0,2]".into()],
        ];
        assert_eq!(
            table(&rows, &[0, 1]),
            "PG_STAT  STATE              UP\n1.0      active+clean  [1,0,2]\n"
        );
    }
}
