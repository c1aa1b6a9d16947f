//! Metadata documents (JSON) that carry a checksum of themselves, so that a
//! damaged or hand-edited identity record or manifest is detected on read.
//!
//! The checksum is SHA-256 over the canonical form of the document without
//! its `checksum` member: serde_json's `Value` with keys sorted, compact.
//! Canonicalising through `Value` (not the Rust struct) keeps the checksum
//! verifiable by later versions that know more fields.

use crate::codec::Checksum;
use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const CHECKSUM_FIELD: &str = "checksum";

pub fn encode<T: Serialize>(doc: &T) -> Result<Vec<u8>> {
    let mut value = serde_json::to_value(doc)
        .map_err(|e| Error::corrupt("encoding metadata").with_source(e))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| Error::corrupt("metadata documents are JSON objects"))?;
    object.remove(CHECKSUM_FIELD);
    let canonical = serde_json::to_vec(&value).expect("a Value always serializes");
    let sum = Checksum::of(&canonical);
    value
        .as_object_mut()
        .expect("checked above")
        .insert(CHECKSUM_FIELD.to_string(), Value::String(sum.to_hex()));
    let mut pretty = serde_json::to_vec_pretty(&value).expect("a Value always serializes");
    pretty.push(b'\n');
    Ok(pretty)
}

/// Parses and verifies a document; `what` names it in errors.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("{what} is not valid JSON")).with_source(e))?;
    verified(value, what)
}

/// Like `decode`, for a document with a `format` member: one of a newer
/// repository format than this build understands is refused by its format,
/// before its checksum or shape, which this build may not know how to read.
pub fn decode_readable<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("{what} is not valid JSON")).with_source(e))?;
    if let Some(format) = value.get("format").and_then(Value::as_u64) {
        super::readable_format(u32::try_from(format).unwrap_or(u32::MAX), what)?;
    }
    verified(value, what)
}

fn verified<T: DeserializeOwned>(mut value: Value, what: &str) -> Result<T> {
    let object = value
        .as_object_mut()
        .ok_or_else(|| Error::corrupt(format!("{what} is not a JSON object")))?;
    let stored = match object.remove(CHECKSUM_FIELD) {
        Some(Value::String(s)) => s,
        _ => return Err(Error::corrupt(format!("{what} has no checksum"))),
    };
    let canonical = serde_json::to_vec(&value).expect("a Value always serializes");
    let computed = Checksum::of(&canonical).to_hex();
    if stored != computed {
        return Err(Error::corrupt(format!(
            "{what} fails its checksum (stored {stored}, computed {computed})"
        ))
        .with_hint("the document was damaged or edited by hand; restore it from a copy"));
    }
    serde_json::from_value(value)
        .map_err(|e| Error::corrupt(format!("{what} has an unexpected shape")).with_source(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Doc {
        format: u32,
        name: String,
    }

    #[test]
    fn round_trips_and_detects_tampering() {
        let doc = Doc {
            format: 1,
            name: "main".into(),
        };
        let bytes = encode(&doc).unwrap();
        assert_eq!(decode::<Doc>(&bytes, "doc").unwrap(), doc);
        let tampered = String::from_utf8(bytes).unwrap().replace("main", "evil");
        let err = decode::<Doc>(tampered.as_bytes(), "doc").unwrap_err();
        assert!(err.to_string().contains("fails its checksum"), "{err}");
        assert!(decode::<Doc>(b"{\"format\":1,\"name\":\"x\"}", "doc").is_err());
        assert!(decode::<Doc>(b"not json", "doc").is_err());
    }

    #[test]
    fn unknown_fields_from_later_versions_still_verify() {
        let mut value = serde_json::json!({"format": 1, "name": "main", "added_later": [1, 2]});
        let canonical = serde_json::to_vec(&value).unwrap();
        value["checksum"] = Value::String(Checksum::of(&canonical).to_hex());
        let bytes = serde_json::to_vec_pretty(&value).unwrap();
        assert_eq!(decode::<Doc>(&bytes, "doc").unwrap().name, "main");
    }
}
