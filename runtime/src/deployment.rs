//! The deployed code: the modules the CLI pushed, what analysing them
//! found (functions, their types, visibility and validators; the schema;
//! HTTP routes), and their storage in the log.
//!
//! Modules are kept in the system table `_modules`, zstd-compressed and cut
//! into chunks below the document size limit; `_deployment` holds one
//! document naming the version. A push replaces both in one transaction,
//! so a restart finds either the old deployment or the new one, whole.

use std::collections::HashMap;
use std::sync::Arc;

use engine::db::{Database, DbError, Transaction};
use engine::value::{Object, Value};
use serde_json::Value as JsonValue;
use sha2::{Digest, Sha256};

use crate::analyze::{Analysis, Visibility};
use crate::modules::{ImportPhase, Module, ModuleSet};
use crate::schema::Schema;
use crate::validator::{ArgsValidator, ReturnsValidator};
use crate::worker::Runtime;
use crate::UdfType;

/// System table holding the pushed modules' source.
pub const MODULES_TABLE: &str = "_modules";
/// System table holding the one document describing the deployment.
pub const DEPLOYMENT_TABLE: &str = "_deployment";
/// Compressed source per `_modules` document (below the 1 MiB limit).
const CHUNK_BYTES: usize = 512 << 10;

/// One module as pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedModule {
    /// Path under `convex/`, e.g. `messages.js` or `_deps/abc.js`.
    pub path: String,
    pub source: Arc<str>,
    pub source_map: Option<Arc<str>>,
    /// Hex SHA-256 of source then source map: what `get_config_hashes`
    /// reports and the CLI compares.
    pub sha256: String,
    /// `isolate` (the only one this server runs).
    pub environment: String,
}

impl PushedModule {
    pub fn new(path: &str, source: &str, source_map: Option<&str>) -> PushedModule {
        let mut h = Sha256::new();
        h.update(source.as_bytes());
        h.update(source_map.unwrap_or("").as_bytes());
        let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        PushedModule {
            path: path.to_string(),
            source: source.into(),
            source_map: source_map.map(Into::into),
            sha256,
            environment: "isolate".to_string(),
        }
    }
}

/// Writes `modules` as the deployment, replacing what was there.
pub fn store(
    tx: &mut Transaction<'_>,
    modules: &[PushedModule],
    udf_server_version: Option<&str>,
) -> Result<(), DbError> {
    for table in [MODULES_TABLE, DEPLOYMENT_TABLE] {
        for doc in system_docs(tx, table)? {
            let id = engine::db::doc_id(&doc).expect("stored documents have ids");
            tx.delete_system(id)?;
        }
    }
    for m in modules {
        let mut blob = zstd::encode_all(m.source.as_bytes(), 3)
            .map_err(|e| DbError::InvalidDocument(format!("compressing {}: {e}", m.path)))?;
        let map =
            match &m.source_map {
                Some(map) => Some(zstd::encode_all(map.as_bytes(), 3).map_err(|e| {
                    DbError::InvalidDocument(format!("compressing {}: {e}", m.path))
                })?),
                None => None,
            };
        let source_len = blob.len();
        if let Some(map) = &map {
            blob.extend_from_slice(map);
        }
        let chunks: Vec<&[u8]> = if blob.is_empty() {
            vec![&blob[..]]
        } else {
            blob.chunks(CHUNK_BYTES).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let mut doc = Object::new();
            doc.insert("path".into(), Value::String(m.path.clone()));
            doc.insert("sha256".into(), Value::String(m.sha256.clone()));
            doc.insert("environment".into(), Value::String(m.environment.clone()));
            doc.insert("part".into(), Value::Int64(i as i64));
            doc.insert("parts".into(), Value::Int64(chunks.len() as i64));
            doc.insert("sourceBytes".into(), Value::Int64(source_len as i64));
            doc.insert("hasSourceMap".into(), Value::Boolean(map.is_some()));
            doc.insert("blob".into(), Value::Bytes(chunk.to_vec()));
            tx.insert_system(MODULES_TABLE, doc)?;
        }
    }
    let mut doc = Object::new();
    doc.insert("modules".into(), Value::Int64(modules.len() as i64));
    doc.insert(
        "udfServerVersion".into(),
        udf_server_version.map_or(Value::Null, |v| Value::String(v.to_string())),
    );
    tx.insert_system(DEPLOYMENT_TABLE, doc)?;
    Ok(())
}

/// Every document of a system table, in `_creationTime` order.
fn system_docs(tx: &mut Transaction<'_>, table: &str) -> Result<Vec<Object>, DbError> {
    let query = engine::query::parse::parse_query(&serde_json::json!({
        "source": {"type": "FullTableScan", "tableName": table, "order": null},
        "operators": [],
    }))
    .map_err(|e| DbError::InvalidDocument(format!("scanning {table}: {e}")))?;
    let docs = engine::exec::run_query(tx, &query)
        .map_err(|e| DbError::InvalidDocument(format!("scanning {table}: {e}")))?;
    Ok(docs.into_iter().map(|d| (*d).clone()).collect())
}

/// The stored deployment's modules and version; empty when nothing was
/// ever deployed.
pub fn load(db: &Database) -> Result<(Vec<PushedModule>, Option<String>), String> {
    let mut tx = db.begin();
    let bad = |m: String| format!("the stored deployment is damaged: {m}");
    let deployment = system_docs(&mut tx, DEPLOYMENT_TABLE).map_err(|e| e.to_string())?;
    let Some(dep) = deployment.first() else {
        return Ok((Vec::new(), None));
    };
    let version = match dep.get("udfServerVersion") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let docs = system_docs(&mut tx, MODULES_TABLE).map_err(|e| e.to_string())?;
    let mut by_path: std::collections::BTreeMap<String, Vec<Object>> = Default::default();
    for d in docs {
        let Some(Value::String(p)) = d.get("path") else {
            return Err(bad("a _modules document has no path".into()));
        };
        by_path.entry(p.clone()).or_default().push(d);
    }
    let mut out = Vec::new();
    for (path, mut parts) in by_path {
        let int = |d: &Object, f: &str| match d.get(f) {
            Some(Value::Int64(n)) => Ok(*n),
            _ => Err(bad(format!("module {path}: missing {f}"))),
        };
        parts.sort_by_key(|d| int(d, "part").unwrap_or(i64::MAX));
        let expected = int(&parts[0], "parts")?;
        if expected != parts.len() as i64 {
            return Err(bad(format!(
                "module {path} has {} of {expected} parts",
                parts.len()
            )));
        }
        let mut blob = Vec::new();
        for p in &parts {
            match p.get("blob") {
                Some(Value::Bytes(b)) => blob.extend_from_slice(b),
                _ => return Err(bad(format!("module {path}: a part has no bytes"))),
            }
        }
        let source_len = int(&parts[0], "sourceBytes")? as usize;
        if source_len > blob.len() {
            return Err(bad(format!("module {path}: truncated")));
        }
        let text = |bytes: &[u8]| -> Result<String, String> {
            let raw = zstd::decode_all(bytes).map_err(|e| bad(format!("module {path}: {e}")))?;
            String::from_utf8(raw).map_err(|e| bad(format!("module {path}: {e}")))
        };
        let source = text(&blob[..source_len])?;
        let map = match parts[0].get("hasSourceMap") {
            Some(Value::Boolean(true)) => Some(text(&blob[source_len..])?),
            _ => None,
        };
        let m = PushedModule::new(&path, &source, map.as_deref());
        match parts[0].get("sha256") {
            Some(Value::String(s)) if *s == m.sha256 => {}
            _ => {
                return Err(bad(format!(
                    "module {path}: its hash does not match its source"
                )))
            }
        }
        out.push(m);
    }
    drop(tx);
    Ok((out, version))
}

/// A function of the deployment, as calls need it.
#[derive(Clone, Debug)]
pub struct FunctionInfo {
    pub udf_type: UdfType,
    pub public: bool,
    pub args: ArgsValidator,
    pub returns: ReturnsValidator,
}

/// The deployed code: modules, their analysis, the schema.
#[derive(Debug)]
pub struct Deployment {
    modules: Vec<PushedModule>,
    set: Arc<ModuleSet>,
    analysis: Analysis,
    schema: Option<Schema>,
    functions: HashMap<(String, String), FunctionInfo>,
    udf_server_version: Option<String>,
}

impl Deployment {
    /// Nothing deployed.
    pub fn empty() -> Deployment {
        Deployment {
            modules: Vec::new(),
            set: Arc::new(
                ModuleSet::new(Vec::new(), ImportPhase::default()).expect("an empty set is valid"),
            ),
            analysis: Analysis {
                modules: Default::default(),
                schema: None,
            },
            schema: None,
            functions: HashMap::new(),
            udf_server_version: None,
        }
    }

    /// Imports `modules` in a worker and reads what they export.
    pub fn analyze(
        runtime: &Runtime,
        modules: Vec<PushedModule>,
        udf_server_version: Option<String>,
    ) -> Result<Deployment, String> {
        let set = ModuleSet::new(
            modules.iter().map(|m| {
                (
                    m.path.clone(),
                    Module {
                        source: m.source.to_string(),
                        source_map: m.source_map.as_deref().map(str::to_string),
                    },
                )
            }),
            ImportPhase::default(),
        )
        .map_err(|e| e.to_string())?;
        let set = Arc::new(set);
        let analysis = runtime.analyze(&set).map_err(|e| e.to_string())?;
        let schema = match &analysis.schema {
            Some(s) => Some(Schema::from_json(s).map_err(|e| format!("schema.js: {e}"))?),
            None => None,
        };
        let mut functions = HashMap::new();
        for (path, module) in &analysis.modules {
            for f in &module.functions {
                let args = match &f.args {
                    Some(text) => {
                        let json: JsonValue = serde_json::from_str(text)
                            .map_err(|e| format!("{path}:{}: args validator: {e}", f.name))?;
                        ArgsValidator::from_json(&json).map_err(|e| {
                            format!("{path}:{}: args validator: {}", f.name, e.message)
                        })?
                    }
                    None => ArgsValidator::Unvalidated,
                };
                let returns = match &f.returns {
                    Some(text) => {
                        let json: JsonValue = serde_json::from_str(text)
                            .map_err(|e| format!("{path}:{}: returns validator: {e}", f.name))?;
                        ReturnsValidator::from_json(&json).map_err(|e| {
                            format!("{path}:{}: returns validator: {}", f.name, e.message)
                        })?
                    }
                    None => ReturnsValidator::Unvalidated,
                };
                functions.insert(
                    (path.clone(), f.name.clone()),
                    FunctionInfo {
                        udf_type: f.udf_type,
                        public: f.visibility != Some(Visibility::Internal),
                        args,
                        returns,
                    },
                );
            }
        }
        Ok(Deployment {
            modules,
            set,
            analysis,
            schema,
            functions,
            udf_server_version,
        })
    }

    pub fn modules(&self) -> &[PushedModule] {
        &self.modules
    }

    pub fn module_set(&self) -> Arc<ModuleSet> {
        Arc::clone(&self.set)
    }

    pub fn udf_server_version(&self) -> Option<&str> {
        self.udf_server_version.as_deref()
    }

    pub fn schema(&self) -> Option<&Schema> {
        self.schema.as_ref()
    }

    pub fn schema_json(&self) -> Option<&JsonValue> {
        self.analysis.schema.as_ref()
    }

    /// The function `name` of module `module` (`dir/mod.js`).
    pub fn function(&self, module: &str, name: &str) -> Option<&FunctionInfo> {
        self.functions.get(&(module.to_string(), name.to_string()))
    }

    /// Modules that define functions (what the CLI lists as added and
    /// removed).
    pub fn function_modules(&self) -> Vec<&str> {
        self.analysis
            .modules
            .iter()
            .filter(|(_, m)| !m.functions.is_empty() || m.http_routes.is_some())
            .map(|(p, _)| p.as_str())
            .collect()
    }

    /// `analysis[""].functions` of the start_push answer.
    pub fn functions_json(&self) -> JsonValue {
        serde_json::to_value(&self.analysis.modules).expect("the analysis serializes")
    }

    /// The HTTP routes of `http.js`, or null.
    pub fn http_routes_json(&self) -> JsonValue {
        self.analysis
            .modules
            .get("http.js")
            .and_then(|m| m.http_routes.as_ref())
            .map_or(JsonValue::Null, |r| {
                serde_json::to_value(r).expect("routes serialize")
            })
    }
}
