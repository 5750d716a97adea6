//! Multi-document YAML streams (rendered manifests) as JSON values.

use serde_json::Value;

/// The non-empty documents of a YAML stream.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}
