//! The archive format, the same for both backends: a tar holding one JSON-lines file per table
//! (`tables/NAME.jsonl`, one JSON array per row, in the manifest's column order), the media
//! store's files (`media/…`), and `manifest.json` last (it carries the others' checksums).
//!
//! A value is written as the most specific type its source knows, and converted to the target
//! column's type on restore ([`coerce`]): SQLite keeps UUIDs as 16-byte blobs, booleans as
//! integers and timestamps as text, PostgreSQL has real types for them.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

/// Written in `manifest.json`; a reader refuses any other.
pub const FORMAT: &str = "nebula-backup";
/// Bumped when the layout or the value encoding changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The highest applied server migration (`_sqlx_migrations`, versions below 1000).
    pub schema_version: i64,
    /// `sqlite` or `postgres`: where the snapshot was taken (informational).
    pub source_backend: String,
    pub created_at: DateTime<Utc>,
    /// In the source's foreign-key order (parents first).
    pub tables: Vec<TableEntry>,
    pub media: Vec<FileEntry>,
    /// Why no media is in the archive, when none is (e.g. an S3 store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableEntry {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: u64,
    pub file: FileEntry,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Path inside the archive.
    pub path: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the entry's bytes.
    pub sha256: String,
}

/// The type of a column as the store uses it, on either backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Int,
    Float,
    Bool,
    Text,
    Bytes,
    Uuid,
    Timestamp,
    Json,
}

/// One typed value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Uuid(Uuid),
    Timestamp(DateTime<Utc>),
    Json(Json),
}

impl Value {
    /// The JSON form: `null`, booleans, integers, floats and strings as themselves; the rest
    /// as a one-key object naming the type (`{"uuid": …}`, `{"ts": …}`, `{"bytes": base64}`,
    /// `{"json": …}`).
    pub fn to_json(&self) -> anyhow::Result<Json> {
        Ok(match self {
            Value::Null => Json::Null,
            Value::Int(i) => json!(i),
            Value::Float(f) if f.is_finite() => json!(f),
            Value::Float(f) => bail!("a non-finite float ({f}) cannot be backed up"),
            Value::Bool(b) => json!(b),
            Value::Text(s) => json!(s),
            Value::Bytes(b) => json!({ "bytes": BASE64.encode(b) }),
            Value::Uuid(u) => json!({ "uuid": u.hyphenated().to_string() }),
            Value::Timestamp(t) => json!({ "ts": t.to_rfc3339_opts(SecondsFormat::AutoSi, true) }),
            Value::Json(j) => json!({ "json": j }),
        })
    }

    pub fn from_json(raw: Json) -> anyhow::Result<Value> {
        Ok(match raw {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().context("number out of range")?),
            },
            Json::String(s) => Value::Text(s),
            Json::Object(map) => tagged(map)?,
            Json::Array(_) => bail!("an array is not a value"),
        })
    }
}

fn tagged(mut map: Map<String, Json>) -> anyhow::Result<Value> {
    if map.len() != 1 {
        bail!("a tagged value has exactly one key");
    }
    if let Some(inner) = map.remove("json") {
        return Ok(Value::Json(inner));
    }
    let (tag, inner) = map.into_iter().next().context("empty object")?;
    let text = inner
        .as_str()
        .with_context(|| format!("`{tag}` takes a string"))?;
    Ok(match tag.as_str() {
        "bytes" => Value::Bytes(BASE64.decode(text).context("bad base64")?),
        "uuid" => Value::Uuid(Uuid::parse_str(text).context("bad uuid")?),
        "ts" => Value::Timestamp(parse_timestamp(text).context("bad timestamp")?),
        other => bail!("unknown value type `{other}`"),
    })
}

/// A timestamp as either driver writes it: RFC 3339 (sqlx on SQLite, and this format), or
/// SQLite's own `YYYY-MM-DD HH:MM:SS[.fff]` (UTC).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// `value` as a column of type `to` on a backend stores it, so that binding the result writes
/// what the server itself would have written, and comparing it with a value read back from
/// that column is meaningful. SQLite's columns are only `Int`, `Float`, `Text` and `Bytes`:
/// a UUID becomes its 16 bytes, a boolean 0 or 1, a timestamp sqlx's RFC 3339 text.
pub fn coerce(value: Value, to: ColumnType) -> anyhow::Result<Value> {
    use ColumnType as T;
    use Value as V;
    let out = match (to, value) {
        (_, V::Null) => V::Null,
        (T::Int, V::Int(i)) => V::Int(i),
        (T::Int, V::Bool(b)) => V::Int(i64::from(b)),
        (T::Float, V::Float(f)) => V::Float(f),
        #[allow(clippy::cast_precision_loss)]
        (T::Float, V::Int(i)) => V::Float(i as f64),
        (T::Bool, V::Bool(b)) => V::Bool(b),
        (T::Bool, V::Int(i @ (0 | 1))) => V::Bool(i == 1),
        (T::Text, V::Text(s)) => V::Text(s),
        (T::Text, V::Timestamp(t)) => V::Text(t.to_rfc3339_opts(SecondsFormat::AutoSi, false)),
        (T::Text, V::Json(j)) => V::Text(j.to_string()),
        (T::Text, V::Uuid(u)) => V::Text(u.hyphenated().to_string()),
        (T::Bytes, V::Bytes(b)) => V::Bytes(b),
        (T::Bytes, V::Uuid(u)) => V::Bytes(u.as_bytes().to_vec()),
        (T::Uuid, V::Uuid(u)) => V::Uuid(u),
        (T::Uuid, V::Bytes(b)) if b.len() == 16 => {
            V::Uuid(Uuid::from_slice(&b).context("bad uuid bytes")?)
        }
        (T::Uuid, V::Text(s)) => V::Uuid(Uuid::parse_str(&s).context("bad uuid text")?),
        (T::Timestamp, V::Timestamp(t)) => V::Timestamp(t),
        (T::Timestamp, V::Text(s)) => {
            V::Timestamp(parse_timestamp(&s).with_context(|| format!("`{s}` is not a timestamp"))?)
        }
        (T::Json, V::Json(j)) => V::Json(j),
        (T::Json, V::Text(s)) => V::Json(serde_json::from_str(&s).context("bad JSON text")?),
        (to, value) => bail!("a {value:?} cannot be stored in a {to:?} column"),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_their_json_form() {
        let values = [
            Value::Null,
            Value::Int(-7),
            Value::Float(1.0),
            Value::Bool(true),
            Value::Text("{\"uuid\":1}".into()),
            Value::Bytes(vec![0, 255, 3]),
            Value::Uuid(Uuid::new_v4()),
            Value::Timestamp(crate::store::now()),
            Value::Json(json!({"a": [1, 2]})),
        ];
        for value in values {
            let back = Value::from_json(value.to_json().unwrap()).unwrap();
            assert_eq!(back, value);
        }
    }

    #[test]
    fn sqlite_forms_become_postgres_types_and_back() {
        let id = Uuid::new_v4();
        let bytes = coerce(Value::Uuid(id), ColumnType::Bytes).unwrap();
        assert_eq!(coerce(bytes, ColumnType::Uuid).unwrap(), Value::Uuid(id));
        assert_eq!(
            coerce(Value::Int(1), ColumnType::Bool).unwrap(),
            Value::Bool(true)
        );
        assert!(coerce(Value::Int(2), ColumnType::Bool).is_err());
        let t = crate::store::now();
        let text = coerce(Value::Timestamp(t), ColumnType::Text).unwrap();
        assert_eq!(
            coerce(text, ColumnType::Timestamp).unwrap(),
            Value::Timestamp(t)
        );
    }
}
