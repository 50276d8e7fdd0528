//! Image names (`POOL/NAME`) and the header's contents, as pure code.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::ImageError;

/// Smallest and largest object size order (4 KiB to 64 MiB).
pub const MIN_ORDER: u8 = 12;
pub const MAX_ORDER: u8 = 26;
/// Longest image name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// `POOL/NAME` as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub pool: String,
    pub name: String,
}

impl ImageSpec {
    pub fn parse(s: &str) -> Result<ImageSpec, ImageError> {
        let (pool, name) = s
            .split_once('/')
            .ok_or_else(|| ImageError::Invalid(format!("{s:?}: expected POOL/NAME")))?;
        if pool.is_empty() {
            return Err(ImageError::Invalid(format!("{s:?}: the pool is empty")));
        }
        ImageSpec::check_name(name)?;
        Ok(ImageSpec {
            pool: pool.into(),
            name: name.into(),
        })
    }

    /// Image names: 1 to 255 bytes, printable, no `/`.
    pub fn check_name(name: &str) -> Result<(), ImageError> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(ImageError::Invalid(format!(
                "image name must be 1 to {MAX_NAME_BYTES} bytes, got {}",
                name.len()
            )));
        }
        if let Some(c) = name.chars().find(|c| c.is_control() || *c == '/') {
            return Err(ImageError::Invalid(format!(
                "image name {name:?} contains {c:?}"
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for ImageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pool, self.name)
    }
}

pub fn header_object(id: &str) -> String {
    format!("rbd_header.{id}")
}

/// What `rbd_header.<id>` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHeader {
    pub id: String,
    pub size_bytes: u64,
    pub order: u8,
}

impl ImageHeader {
    pub fn new(id: String, size_bytes: u64, order: u8) -> Result<ImageHeader, ImageError> {
        if !(MIN_ORDER..=MAX_ORDER).contains(&order) {
            return Err(ImageError::Invalid(format!(
                "object size order {order} outside {MIN_ORDER}..={MAX_ORDER}"
            )));
        }
        if size_bytes == 0 {
            return Err(ImageError::Invalid("image size must be more than 0".into()));
        }
        Ok(ImageHeader {
            id,
            size_bytes,
            order,
        })
    }

    pub fn object_bytes(&self) -> u64 {
        1u64 << self.order
    }

    pub fn object_prefix(&self) -> String {
        format!("rbd_data.{}", self.id)
    }

    pub fn header_object(&self) -> String {
        header_object(&self.id)
    }

    pub fn data_object(&self, object_no: u64) -> String {
        crate::stripe::object_name(&self.object_prefix(), object_no)
    }

    pub fn object_count(&self) -> u64 {
        crate::stripe::object_count(self.size_bytes, self.object_bytes())
    }

    /// The omap entries of the header object.
    pub fn encode(&self) -> Vec<(String, Bytes)> {
        vec![
            (
                "size".into(),
                Bytes::copy_from_slice(&self.size_bytes.to_le_bytes()),
            ),
            ("order".into(), Bytes::copy_from_slice(&[self.order])),
            (
                "object_prefix".into(),
                Bytes::from(self.object_prefix().into_bytes()),
            ),
        ]
    }

    pub fn decode(id: &str, omap: &BTreeMap<String, Bytes>) -> Result<ImageHeader, String> {
        let size = omap
            .get("size")
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map(u64::from_le_bytes)
            .ok_or("no valid size")?;
        let order = match omap.get("order").map(|v| &v[..]) {
            Some([o]) => *o,
            _ => return Err("no valid order".into()),
        };
        ImageHeader::new(id.to_string(), size, order).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            ImageSpec::parse("rbd/disk1").expect("valid"),
            ImageSpec {
                pool: "rbd".into(),
                name: "disk1".into()
            }
        );
        for bad in ["rbd", "/x", "rbd/", "rbd/a/b", "rbd/a\nb"] {
            assert!(ImageSpec::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ImageSpec::parse(&format!("p/{}", "x".repeat(256))).is_err());
    }

    #[test]
    fn header_round_trip_and_names() {
        let h = ImageHeader::new("abc123".into(), 10 << 30, 22).expect("valid");
        let m: BTreeMap<String, Bytes> = h.encode().into_iter().collect();
        assert_eq!(ImageHeader::decode("abc123", &m), Ok(h.clone()));
        assert_eq!(h.header_object(), "rbd_header.abc123");
        assert_eq!(h.data_object(3), "rbd_data.abc123.0000000000000003");
        assert_eq!(h.object_count(), 2560);
        assert!(ImageHeader::new("x".into(), 1, 11).is_err());
        assert!(ImageHeader::new("x".into(), 0, 22).is_err());
        let mut bad = m.clone();
        bad.insert("order".into(), Bytes::from_static(&[30]));
        assert!(ImageHeader::decode("abc123", &bad).is_err());
        bad.remove("size");
        assert!(ImageHeader::decode("abc123", &bad).is_err());
    }
}
