//! Names and small value types of the public API.

use std::fmt;
use std::sync::Arc;

use crate::error::StoreError;

/// Longest collection id, in bytes.
pub const MAX_COLLECTION_ID_BYTES: usize = 255;
/// Longest object name, in bytes (the OSD needs 4 KiB names).
pub const MAX_OBJECT_NAME_BYTES: usize = 4096;
/// Longest xattr name, in bytes.
pub const MAX_XATTR_NAME_BYTES: usize = 255;
/// Largest total of one object's xattr names and values, in bytes. Xattrs
/// live inside the object record, which is rewritten on every size change.
pub const MAX_XATTRS_TOTAL_BYTES: usize = 64 * 1024;
/// Longest omap key, in bytes.
pub const MAX_OMAP_KEY_BYTES: usize = 4096;
/// Largest omap value or omap header, in bytes.
pub const MAX_OMAP_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// Largest object size, in bytes (1 TiB).
pub const MAX_OBJECT_SIZE_BYTES: u64 = 1 << 40;

/// A collection id: printable ASCII without `/`, 1 to
/// [`MAX_COLLECTION_ID_BYTES`] bytes, e.g. `meta` or `1.1f_head`.
///
/// Shared, not owned: every transaction op, undo entry and layer map names
/// its collection, and a clone is a reference count, not an allocation.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CollectionId(Arc<str>);

impl CollectionId {
    /// Checks the id; see the type's documentation for the rules.
    pub fn new(id: impl AsRef<str>) -> Result<CollectionId, StoreError> {
        let id = id.as_ref();
        if id.is_empty() || id.len() > MAX_COLLECTION_ID_BYTES {
            return Err(StoreError::InvalidArgument(format!(
                "collection id must be 1 to {MAX_COLLECTION_ID_BYTES} bytes, got {}",
                id.len()
            )));
        }
        if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic() || *c == '/') {
            return Err(StoreError::InvalidArgument(format!(
                "collection id {id:?} contains {c:?}: use printable ASCII without '/'"
            )));
        }
        Ok(CollectionId(Arc::from(id)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CollectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CollectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CollectionId({:?})", self.0)
    }
}

impl std::str::FromStr for CollectionId {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CollectionId::new(s)
    }
}

/// An object name: 1 to [`MAX_OBJECT_NAME_BYTES`] arbitrary bytes (usually
/// UTF-8). Objects of a collection are listed in bytewise order of names.
/// Shared like [`CollectionId`]: a clone is a reference count.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(Arc<[u8]>);

impl ObjectId {
    pub fn new(name: impl AsRef<[u8]>) -> Result<ObjectId, StoreError> {
        let name = name.as_ref();
        if name.is_empty() || name.len() > MAX_OBJECT_NAME_BYTES {
            return Err(StoreError::InvalidArgument(format!(
                "object name must be 1 to {MAX_OBJECT_NAME_BYTES} bytes, got {}",
                name.len()
            )));
        }
        Ok(ObjectId(Arc::from(name)))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The name as text, with invalid UTF-8 replaced (for messages).
    pub fn to_display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl std::str::FromStr for ObjectId {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObjectId::new(s)
    }
}

/// `stat` of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStat {
    /// Logical size in bytes.
    pub size_bytes: u64,
    /// Bytes of device space the object's data occupies.
    pub allocated_bytes: u64,
}

/// Where one mapped block of an object's data lives on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BlockLocation {
    /// Block index in the object (offset / block size).
    pub logical_block: u64,
    /// Byte offset of the block's home on the device.
    pub device_offset: u64,
    /// crc32c of the block's 4 KiB, as recorded.
    pub csum: u32,
}

/// `statfs` of the whole store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StatFs {
    /// Size of the data area.
    pub total_bytes: u64,
    /// Space that new data can use now.
    pub available_bytes: u64,
    /// Space held by object data.
    pub allocated_bytes: u64,
    /// Space freed by committed transactions, reusable after the next
    /// checkpoint.
    pub pending_free_bytes: u64,
    /// Sum of the objects' logical sizes.
    pub stored_bytes: u64,
    pub num_objects: u64,
    /// Size of the journal area.
    pub journal_bytes: u64,
}

impl StatFs {
    /// Space in use once pending frees are back (the next checkpoint
    /// returns them, and an allocation that needs them waits for it): what
    /// fullness is judged by, or a stream of overwrites would look like a
    /// full device between two checkpoints.
    pub fn settled_used_bytes(&self) -> u64 {
        self.total_bytes
            .saturating_sub(self.available_bytes)
            .saturating_sub(self.pending_free_bytes)
    }

    /// Space available once pending frees are back.
    pub fn settled_available_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.settled_used_bytes())
    }
}

pub(crate) fn check_xattr_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_XATTR_NAME_BYTES {
        return Err(StoreError::InvalidArgument(format!(
            "xattr name must be 1 to {MAX_XATTR_NAME_BYTES} bytes, got {}",
            name.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_omap_key(key: &[u8]) -> Result<(), StoreError> {
    if key.len() > MAX_OMAP_KEY_BYTES {
        return Err(StoreError::InvalidArgument(format!(
            "omap key of {} bytes exceeds the limit of {MAX_OMAP_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_omap_value(value: &[u8]) -> Result<(), StoreError> {
    if value.len() > MAX_OMAP_VALUE_BYTES {
        return Err(StoreError::InvalidArgument(format!(
            "omap value of {} bytes exceeds the limit of {MAX_OMAP_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_id_rules() {
        assert!(CollectionId::new("meta").is_ok());
        assert!(CollectionId::new("1.1f_head").is_ok());
        assert!(CollectionId::new("").is_err());
        assert!(CollectionId::new("a/b").is_err());
        assert!(CollectionId::new("a b").is_err());
        assert!(CollectionId::new("x".repeat(255)).is_ok());
        assert!(CollectionId::new("x".repeat(256)).is_err());
    }

    #[test]
    fn object_id_rules() {
        assert!(ObjectId::new(vec![0u8, 255, 7]).is_ok());
        assert!(ObjectId::new(Vec::new()).is_err());
        assert!(ObjectId::new(vec![b'a'; MAX_OBJECT_NAME_BYTES]).is_ok());
        assert!(ObjectId::new(vec![b'a'; MAX_OBJECT_NAME_BYTES + 1]).is_err());
    }
}
