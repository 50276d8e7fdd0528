//! Entity names (`osd.3`, `client.4123`, `mgr.x`, `mon.a`): who is on the
//! other end of a connection.

use std::fmt;
use std::str::FromStr;

use kalmar_common::encoding::{Decode, DecodeError, Decoder, Encode};

/// The kind of daemon or client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityType {
    Mon,
    Osd,
    Mgr,
    Client,
}

kalmar_common::impl_enum_u8!(EntityType, "entity type", { Mon = 1, Osd = 2, Mgr = 3, Client = 4 });

impl EntityType {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Mon => "mon",
            EntityType::Osd => "osd",
            EntityType::Mgr => "mgr",
            EntityType::Client => "client",
        }
    }
}

/// Longest id accepted (names travel in every handshake).
pub const MAX_ENTITY_ID_LEN: usize = 64;

/// `type.id`, e.g. `osd.3`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityName {
    pub kind: EntityType,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid entity name '{name}': {reason} (expected TYPE.ID with TYPE one of mon, osd, mgr, client)")]
pub struct EntityNameError {
    pub name: String,
    pub reason: &'static str,
}

impl EntityName {
    pub fn new(kind: EntityType, id: impl Into<String>) -> Self {
        EntityName {
            kind,
            id: id.into(),
        }
    }

    pub fn osd(id: u32) -> Self {
        EntityName::new(EntityType::Osd, id.to_string())
    }

    /// The numeric id of an `osd.N` name.
    pub fn osd_id(&self) -> Option<u32> {
        match self.kind {
            EntityType::Osd => self.id.parse().ok(),
            _ => None,
        }
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.id)
    }
}

impl FromStr for EntityName {
    type Err = EntityNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| EntityNameError {
            name: s.to_string(),
            reason,
        };
        let (ty, id) = s.split_once('.').ok_or_else(|| err("no '.'"))?;
        let kind = match ty {
            "mon" => EntityType::Mon,
            "osd" => EntityType::Osd,
            "mgr" => EntityType::Mgr,
            "client" => EntityType::Client,
            _ => return Err(err("unknown type")),
        };
        if id.is_empty() || id.len() > MAX_ENTITY_ID_LEN {
            return Err(err("id empty or too long"));
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(
                "id has characters other than letters, digits, '-', '_', '.'",
            ));
        }
        if kind == EntityType::Osd && id.parse::<u32>().is_err() {
            return Err(err("an osd id is a number"));
        }
        Ok(EntityName::new(kind, id))
    }
}

impl Encode for EntityName {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.kind.encode(buf);
        self.id.encode(buf);
    }
}

impl Decode for EntityName {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let kind = EntityType::decode(d)?;
        let id = String::decode(d)?;
        let name = EntityName { kind, id };
        // Re-validate through the parser so a peer cannot smuggle odd ids.
        name.to_string()
            .parse()
            .map_err(|e: EntityNameError| DecodeError::Invalid {
                what: "entity name",
                detail: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        for s in ["osd.3", "client.4123", "mgr.x", "mon.a"] {
            let n: EntityName = s.parse().expect("valid");
            assert_eq!(n.to_string(), s);
            assert_eq!(EntityName::from_bytes(&n.to_bytes()).expect("roundtrip"), n);
        }
        assert_eq!(
            "osd.7".parse::<EntityName>().expect("valid").osd_id(),
            Some(7)
        );
        for bad in ["osd", "osd.", "osd.x", "disk.1", ".3", "mon.a b"] {
            assert!(bad.parse::<EntityName>().is_err(), "{bad}");
        }
    }
}
