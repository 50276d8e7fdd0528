//! Striping a linear byte range over fixed-size objects (RBD's default
//! layout: object `n` holds bytes `[n * object_bytes, (n + 1) * object_bytes)`).
//! Pure arithmetic, shared by the store export and the image layer.

/// The part of a request that falls into one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub object_no: u64,
    /// Offset inside the object.
    pub object_offset: u64,
    pub len: u64,
    /// Offset of this piece inside the request's buffer.
    pub buf_offset: u64,
}

impl Extent {
    /// True when the extent covers its whole object.
    pub fn is_whole_object(&self, object_bytes: u64) -> bool {
        self.object_offset == 0 && self.len == object_bytes
    }
}

/// The extents of `[offset, offset + len)`, in order.
pub fn extents(offset: u64, len: u64, object_bytes: u64) -> impl Iterator<Item = Extent> {
    let object_bytes = object_bytes.max(1);
    let end = offset.saturating_add(len);
    let mut pos = offset;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let object_no = pos / object_bytes;
        let object_offset = pos % object_bytes;
        let n = (object_bytes - object_offset).min(end - pos);
        let e = Extent {
            object_no,
            object_offset,
            len: n,
            buf_offset: pos - offset,
        };
        pos += n;
        Some(e)
    })
}

/// Number of objects an export of `size_bytes` spans.
pub fn object_count(size_bytes: u64, object_bytes: u64) -> u64 {
    size_bytes.div_ceil(object_bytes.max(1))
}

/// RBD-style data object name: `<prefix>.<object number as 16 hex digits>`.
pub fn object_name(prefix: &str, object_no: u64) -> String {
    format!("{prefix}.{object_no:016x}")
}

/// Longest object name [`ObjectName`] keeps on the stack (RBD's are 38
/// bytes: `rbd_data.` + a 12-character id + `.` + 16 hex digits).
pub const INLINE_NAME_BYTES: usize = 96;
const HEX_DIGITS: usize = 16;

/// A data object's name built without a heap allocation when it fits
/// [`INLINE_NAME_BYTES`] (the I/O path names one object per extent).
pub enum ObjectName {
    Inline {
        buf: [u8; INLINE_NAME_BYTES],
        len: usize,
    },
    Heap(String),
}

impl ObjectName {
    /// `<prefix_dot><object number as 16 hex digits>`, where `prefix_dot`
    /// is the object prefix with its trailing `.`.
    pub fn new(prefix_dot: &str, object_no: u64) -> ObjectName {
        let len = prefix_dot.len() + HEX_DIGITS;
        if len > INLINE_NAME_BYTES {
            return ObjectName::Heap(format!("{prefix_dot}{object_no:016x}"));
        }
        let mut buf = [0u8; INLINE_NAME_BYTES];
        buf[..prefix_dot.len()].copy_from_slice(prefix_dot.as_bytes());
        for (i, b) in buf[prefix_dot.len()..len].iter_mut().enumerate() {
            let nibble = (object_no >> (4 * (HEX_DIGITS - 1 - i))) & 0xf;
            *b = b"0123456789abcdef"[nibble as usize];
        }
        ObjectName::Inline { buf, len }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // A `str` prefix followed by ASCII digits is UTF-8.
            ObjectName::Inline { buf, len } => std::str::from_utf8(&buf[..*len]).unwrap_or(""),
            ObjectName::Heap(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn splits_at_object_boundaries() {
        let v: Vec<Extent> = extents(4090, 10, 4096).collect();
        assert_eq!(
            v,
            vec![
                Extent {
                    object_no: 0,
                    object_offset: 4090,
                    len: 6,
                    buf_offset: 0
                },
                Extent {
                    object_no: 1,
                    object_offset: 0,
                    len: 4,
                    buf_offset: 6
                },
            ]
        );
        assert!(extents(0, 0, 4096).next().is_none());
        let whole: Vec<Extent> = extents(8192, 8192, 4096).collect();
        assert!(whole.iter().all(|e| e.is_whole_object(4096)));
        assert_eq!(object_name("nbd_data", 255), "nbd_data.00000000000000ff");
        for n in [0, 1, 255, 0xdead_beef, u64::MAX] {
            assert_eq!(
                ObjectName::new("rbd_data.0123456789ab.", n).as_str(),
                object_name("rbd_data.0123456789ab", n)
            );
        }
        let long = "p".repeat(INLINE_NAME_BYTES);
        let heap = ObjectName::new(&format!("{long}."), 3);
        assert!(matches!(heap, ObjectName::Heap(_)));
        assert_eq!(heap.as_str(), object_name(&long, 3));
        assert_eq!(object_count(4097, 4096), 2);
    }

    proptest! {
        /// The extents tile the range exactly, each inside one object.
        #[test]
        fn extents_tile_the_range(offset in 0u64..1 << 40, len in 0u64..1 << 26, obj_shift in 9u32..24) {
            let ob = 1u64 << obj_shift;
            let mut covered = 0u64;
            for e in extents(offset, len, ob) {
                prop_assert_eq!(e.buf_offset, covered);
                prop_assert_eq!(e.object_no * ob + e.object_offset, offset + covered);
                prop_assert!(e.len > 0 && e.object_offset + e.len <= ob);
                covered += e.len;
            }
            prop_assert_eq!(covered, len);
        }
    }
}
