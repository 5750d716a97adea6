//! Validation of Kubernetes manifests against the real CRD schemas in
//! `../shared/crds/` (Envoy Gateway, Gateway API, External Secrets), the way
//! the API server does with strict field validation: structural schema
//! checks (types, required fields, enums, patterns, bounds) and unknown fields
//! rejected unless the schema preserves them.
//!
//! CEL rules (`x-kubernetes-validations`) are not evaluated here; the tests
//! check the ones that apply to our resources explicitly.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::build;

/// Where the CRDs are: `EDGE_HMAC_CRDS`, else `../shared/crds` beside the
/// workspace (where CI puts them).
pub fn crd_dir() -> PathBuf {
    std::env::var_os("EDGE_HMAC_CRDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| build::workspace().join("../shared/crds"))
}

/// One served version of one CRD.
#[derive(Debug, Clone)]
pub struct CrdVersion {
    /// `group/version`.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// The `openAPIV3Schema`.
    pub schema: Value,
}

/// All CRDs found.
#[derive(Debug, Clone, Default)]
pub struct Crds {
    versions: HashMap<(String, String), CrdVersion>,
    /// Files read.
    pub files: Vec<PathBuf>,
}

/// Outcome of validating one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Validated against a CRD schema.
    Crd,
    /// A built-in kind (checked for metadata only).
    BuiltIn,
    /// No CRD for this kind in the directory.
    NoCrd,
}

impl Crds {
    /// Loads every CRD in [`crd_dir`]; the error says what is missing and how
    /// to provide it.
    pub fn load() -> Result<Crds, String> {
        let dir = crd_dir();
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            format!(
                "CRD schemas not found at {} ({e}). CI runs with ../shared beside the clone; locally set EDGE_HMAC_CRDS=/path/to/shared/crds",
                dir.display()
            )
        })?;
        let mut crds = Crds::default();
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().is_none_or(|e| e != "yaml" && e != "yml") {
                continue;
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            for doc in serde_norway::Deserializer::from_str(&text) {
                let value: Value = serde::Deserialize::deserialize(doc)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                crds.add(&value);
            }
            crds.files.push(path);
        }
        if crds.versions.is_empty() {
            return Err(format!("no CRDs in {}", dir.display()));
        }
        Ok(crds)
    }

    fn add(&mut self, crd: &Value) {
        if crd["kind"] != "CustomResourceDefinition" {
            return;
        }
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        let kind = spec["names"]["kind"].as_str().unwrap_or_default();
        let namespaced = spec["scope"] == "Namespaced";
        for v in spec["versions"].as_array().into_iter().flatten() {
            if v["served"] != true {
                continue;
            }
            let api_version = format!("{group}/{}", v["name"].as_str().unwrap_or_default());
            self.versions.insert(
                (api_version.clone(), kind.to_owned()),
                CrdVersion {
                    api_version,
                    kind: kind.to_owned(),
                    namespaced,
                    schema: v["schema"]["openAPIV3Schema"].clone(),
                },
            );
        }
    }

    /// True when a served CRD version exists for `api_version` / `kind`.
    pub fn has(&self, api_version: &str, kind: &str) -> bool {
        self.versions
            .contains_key(&(api_version.to_owned(), kind.to_owned()))
    }

    /// Validates one manifest; `Err` lists every violation with its path.
    pub fn validate(&self, doc: &Value) -> Result<Checked, Vec<String>> {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let mut errors = Vec::new();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        if !is_dns_subdomain(name) {
            errors.push(format!("metadata.name {name:?} is not a DNS subdomain"));
        }
        if !api_version.contains('/') {
            // Core group: only the built-in kinds we render.
            if api_version == "v1" && kind == "Namespace" {
                if doc["metadata"].get("namespace").is_some() {
                    errors.push("a Namespace has no metadata.namespace".into());
                }
                return if errors.is_empty() {
                    Ok(Checked::BuiltIn)
                } else {
                    Err(errors)
                };
            }
            return Err(vec![format!(
                "unexpected built-in kind {api_version} {kind}"
            )]);
        }
        let Some(crd) = self
            .versions
            .get(&(api_version.to_owned(), kind.to_owned()))
        else {
            let group = api_version.split('/').next().unwrap_or_default();
            let known: Vec<&String> = self
                .versions
                .keys()
                .filter(|(a, k)| a.starts_with(group) && k == kind)
                .map(|(a, _)| a)
                .collect();
            if !known.is_empty() {
                return Err(vec![format!(
                    "{api_version} is not a served version of {kind} (served: {known:?})"
                )]);
            }
            return Ok(Checked::NoCrd);
        };
        let ns = doc["metadata"].get("namespace");
        match (crd.namespaced, ns) {
            (true, None) => {
                errors.push(format!("{kind} is namespaced: metadata.namespace missing"))
            }
            (false, Some(_)) => {
                errors.push(format!("{kind} is cluster-scoped: metadata.namespace set"))
            }
            _ => {}
        }
        // Validate everything but metadata (ObjectMeta is the API server's own).
        let mut body = doc.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.remove("metadata");
        }
        let mut schema = crd.schema.clone();
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.remove("metadata");
        }
        check(&schema, &body, "", &mut errors);
        if errors.is_empty() {
            Ok(Checked::Crd)
        } else {
            Err(errors)
        }
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `value` against `schema` (OpenAPI v3 as used by CRDs).
fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let at = if path.is_empty() { "<root>" } else { path };
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    if let Some(t) = schema["type"].as_str() {
        let actual = type_name(value);
        let ok = actual == t || (t == "number" && actual == "integer");
        if !ok {
            errors.push(format!("{at}: expected {t}, found {actual}"));
            return;
        }
    } else if int_or_string && !matches!(type_name(value), "integer" | "string") {
        errors.push(format!("{at}: expected integer or string"));
        return;
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        errors.push(format!(
            "{at}: {value} is not one of {}",
            Value::Array(options.clone())
        ));
    }
    for sub in schema["allOf"].as_array().into_iter().flatten() {
        check(sub, value, path, errors);
    }
    if let Some(any) = schema["anyOf"].as_array() {
        let passes = any.iter().any(|sub| {
            let mut e = Vec::new();
            check(sub, value, path, &mut e);
            e.is_empty()
        });
        if !passes {
            errors.push(format!("{at}: matches none of anyOf"));
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let n = one
            .iter()
            .filter(|sub| {
                let mut e = Vec::new();
                check(sub, value, path, &mut e);
                e.is_empty()
            })
            .count();
        if n != 1 {
            errors.push(format!("{at}: matches {n} of oneOf, expected 1"));
        }
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            for req in schema["required"].as_array().into_iter().flatten() {
                let req = req.as_str().unwrap_or_default();
                if !map.contains_key(req) {
                    errors.push(format!("{at}: required field {req:?} missing"));
                }
            }
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            for (k, v) in map {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    check(s, v, &child, errors);
                } else if let Some(extra) =
                    schema.get("additionalProperties").filter(|a| a.is_object())
                {
                    check(extra, v, &child, errors);
                } else if !preserve && schema["additionalProperties"] != true {
                    errors.push(format!("{child}: unknown field"));
                }
            }
            if let Some(max) = schema["maxProperties"].as_u64()
                && map.len() as u64 > max
            {
                errors.push(format!("{at}: more than {max} properties"));
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                errors.push(format!("{at}: fewer than {min} items"));
            }
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                errors.push(format!("{at}: more than {max} items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema["minLength"].as_u64()
                && len < min
            {
                errors.push(format!("{at}: shorter than {min}"));
            }
            if let Some(max) = schema["maxLength"].as_u64()
                && len > max
            {
                errors.push(format!("{at}: longer than {max}"));
            }
            if let Some(p) = schema["pattern"].as_str() {
                match regex::Regex::new(p) {
                    Ok(re) if re.is_match(s) => {}
                    Ok(_) => errors.push(format!("{at}: {s:?} does not match {p}")),
                    Err(e) => errors.push(format!("{at}: schema pattern {p} unusable: {e}")),
                }
            }
        }
        Value::Number(n) => {
            if let (Some(min), Some(x)) = (schema["minimum"].as_f64(), n.as_f64())
                && x < min
            {
                errors.push(format!("{at}: below minimum {min}"));
            }
            if let (Some(max), Some(x)) = (schema["maximum"].as_f64(), n.as_f64())
                && x > max
            {
                errors.push(format!("{at}: above maximum {max}"));
            }
        }
        _ => {}
    }
}

/// Splits a YAML stream into documents (as JSON values), skipping empty ones.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}
