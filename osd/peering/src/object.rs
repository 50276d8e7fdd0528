//! Object names and the object order used by backfill.
//!
//! **Object order.** Kalmar lists a PG's collection in bytewise order of
//! the object name (Rust's `str` ordering, which is bytewise on UTF-8).
//! Backfill scans both sides in this order and `last_backfill` is a
//! position in it; the OSD's collection listing must use the same order.
//! (Ceph orders by hash then name; one PG holds one hash range, so a plain
//! name order loses nothing here.)

use std::fmt;

use kalmar_common::encoding::{Decode, DecodeError, Decoder, Encode};

/// An object's name inside its PG.
pub type ObjectName = String;

/// A position in object order: before every object, just after a given
/// object, or after every object. `last_backfill` uses it: a backfill
/// target holds correct copies of exactly the objects `<= last_backfill`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ObjectBound {
    /// Nothing backfilled yet.
    #[default]
    Min,
    /// Every object up to and including this name.
    Object(ObjectName),
    /// Complete: every object.
    Max,
}

impl ObjectBound {
    /// Whether an object lies inside the bound (is covered by it).
    pub fn covers(&self, oid: &str) -> bool {
        match self {
            ObjectBound::Min => false,
            ObjectBound::Object(b) => oid <= b.as_str(),
            ObjectBound::Max => true,
        }
    }

    pub fn is_max(&self) -> bool {
        matches!(self, ObjectBound::Max)
    }
}

impl fmt::Display for ObjectBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectBound::Min => f.write_str("MIN"),
            ObjectBound::Object(o) => write!(f, "{o}"),
            ObjectBound::Max => f.write_str("MAX"),
        }
    }
}

impl serde::Serialize for ObjectBound {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Encode for ObjectBound {
    fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            ObjectBound::Min => buf.push(0),
            ObjectBound::Object(o) => {
                buf.push(1);
                o.encode(buf)
            }
            ObjectBound::Max => buf.push(2),
        }
    }
}

impl Decode for ObjectBound {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match d.u8()? {
            0 => Ok(ObjectBound::Min),
            1 => Ok(ObjectBound::Object(String::decode(d)?)),
            2 => Ok(ObjectBound::Max),
            t => Err(DecodeError::Invalid {
                what: "object bound",
                detail: format!("tag {t}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_cover() {
        let a = ObjectBound::Object("a".into());
        let b = ObjectBound::Object("b".into());
        assert!(ObjectBound::Min < a && a < b && b < ObjectBound::Max);
        assert!(!ObjectBound::Min.covers(""));
        assert!(a.covers("a") && !a.covers("aa") && b.covers("aa"));
        assert!(ObjectBound::Max.covers("zzz"));
        for v in [ObjectBound::Min, a, ObjectBound::Max] {
            assert_eq!(ObjectBound::from_bytes(&v.to_bytes()).expect("decodes"), v);
        }
        assert!(ObjectBound::from_bytes(&[9]).is_err());
    }
}
