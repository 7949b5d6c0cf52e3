//! Shared by the worker tests: the fixture app bundled the way the `convex`
//! CLI bundles it, a runtime over real Deno workers, and a syscall handler
//! with an in-memory table store.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use runtime::{
    ImportPhase, Module, ModuleSet, RunOutcome, RunRequest, Runtime, RuntimeConfig, SyscallError,
    SyscallHandler, UdfType,
};
use serde_json::{json, Value};

/// The repository root (where `node_modules` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Deno binary, found the way the server finds it (walking up to the
/// repository's `node_modules`).
pub fn deno() -> PathBuf {
    runtime::deno::search_upwards(&[PathBuf::from(env!("CARGO_MANIFEST_DIR"))])
        .expect("run `npm ci` in the repository root first")
}

/// The import phase every fixture set uses.
pub const IMPORT_PHASE: ImportPhase = ImportPhase {
    rng_seed: [7; 32],
    unix_time_ms: 1_700_000_000_000,
};

/// Bundles `runtime/tests/fixtures/app/convex` with the repository's
/// esbuild, as the CLI does, once per test binary.
pub fn fixture_modules() -> Arc<ModuleSet> {
    static SET: OnceLock<Arc<ModuleSet>> = OnceLock::new();
    SET.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let output = Command::new("node")
            .arg(manifest.join("tests/fixtures/bundle.mjs"))
            .arg(manifest.join("tests/fixtures/app/convex"))
            .output()
            .expect("node is needed to bundle the fixture");
        assert!(
            output.status.success(),
            "bundling failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let modules: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        let modules = modules.into_iter().map(|m| {
            (
                m["path"].as_str().unwrap().to_owned(),
                Module {
                    source: m["source"].as_str().unwrap().to_owned(),
                    source_map: m["sourceMap"].as_str().map(str::to_owned),
                },
            )
        });
        Arc::new(ModuleSet::new(modules, IMPORT_PHASE).unwrap())
    })
    .clone()
}

/// A runtime over a fresh temporary directory (kept alive by the returned
/// guard).
pub fn new_runtime(max_workers: usize) -> (Runtime, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(deno(), dir.path().join("modules"));
    config.max_workers = max_workers;
    (Runtime::new(config).unwrap(), dir)
}

/// One runtime shared by the tests of a binary.
pub fn shared_runtime() -> Runtime {
    static RT: OnceLock<(Runtime, tempfile::TempDir)> = OnceLock::new();
    RT.get_or_init(|| new_runtime(3)).0.clone()
}

/// A recorded syscall.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub op: String,
    pub args: Value,
    pub is_async: bool,
}

/// Tables in memory, shared between handlers (so a mutation's insert is
/// seen by a later query).
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub docs: Arc<Mutex<BTreeMap<String, Value>>>,
}

/// Answers the syscalls of the fixture's functions from a [`Store`], and
/// runs nested calls (`1.0/runUdf`, `1.0/actions/query`) through the
/// runtime.
pub struct TestHandler {
    pub runtime: Runtime,
    pub modules: Arc<ModuleSet>,
    pub store: Store,
    pub calls: Vec<Recorded>,
    pub streams: BTreeMap<u64, Vec<Value>>,
    pub next_query_id: u64,
    /// Streams over the table "broken", whose every read fails.
    pub broken: BTreeSet<u64>,
    /// Most documents in one `shim/queryStreamNextBatch` answer.
    pub stream_batch: usize,
    /// Sleep this long in every `1.0/get` (time a syscall takes must not
    /// count against the function).
    pub get_delay: Duration,
    /// Told when a `1.0/get` arrives.
    pub on_get: Option<mpsc::Sender<()>>,
}

impl TestHandler {
    pub fn new(runtime: &Runtime, modules: &Arc<ModuleSet>, store: &Store) -> TestHandler {
        TestHandler {
            runtime: runtime.clone(),
            modules: modules.clone(),
            store: store.clone(),
            calls: Vec::new(),
            streams: BTreeMap::new(),
            next_query_id: 0,
            broken: BTreeSet::new(),
            stream_batch: 2,
            get_delay: Duration::ZERO,
            on_get: None,
        }
    }

    fn nested(
        &mut self,
        path: &str,
        udf_type: UdfType,
        args: &Value,
    ) -> Result<Value, SyscallError> {
        let mut req = RunRequest::new(self.modules.clone(), path, udf_type, args.to_string());
        req.seed = [1; 32];
        let mut inner = TestHandler::new(&self.runtime, &self.modules, &self.store);
        let outcome = self
            .runtime
            .run(req, &mut inner)
            .map_err(|e| SyscallError::new(e.to_string()))?;
        outcome.result.map_err(|e| SyscallError {
            message: e.message,
            data: e.data,
        })
    }
}

impl TestHandler {
    /// `queryStream`: every document of the table, up to the query's
    /// limit (filters and order are not modelled); the stream's id.
    fn open_stream(&mut self, args: &Value) -> u64 {
        let table = args["query"]["source"]["tableName"].as_str().unwrap_or("");
        let docs = self.store.docs.lock().unwrap();
        let limit = args["query"]["operators"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|op| op["limit"].as_u64())
            .min()
            .unwrap_or(u64::MAX);
        let rows: Vec<Value> = docs
            .values()
            .filter(|d| d["_table"] == table)
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(strip_table)
            .collect();
        let id = self.next_query_id;
        self.next_query_id += 1;
        self.streams.insert(id, rows);
        if table == "broken" {
            self.broken.insert(id);
        }
        id
    }

    /// The next `stream_batch` documents of stream `id`; every read of a
    /// stream over the table "broken" fails.
    fn next_batch(&mut self, id: u64) -> Result<Value, SyscallError> {
        let rows = self
            .streams
            .get_mut(&id)
            .ok_or_else(|| SyscallError::new("in-progress query not found"))?;
        if self.broken.contains(&id) {
            return Err(SyscallError {
                message: "the table \"broken\" cannot be read".to_owned(),
                data: Some(json!({"table": "broken"})),
            });
        }
        let n = rows.len().min(self.stream_batch);
        let values: Vec<Value> = rows.drain(..n).collect();
        let done = rows.is_empty();
        if done {
            self.streams.remove(&id);
        }
        Ok(json!({ "values": values, "done": done }))
    }
}

impl SyscallHandler for TestHandler {
    fn syscall(&mut self, op: &str, args: Value, is_async: bool) -> Result<Value, SyscallError> {
        self.calls.push(Recorded {
            op: op.to_owned(),
            args: args.clone(),
            is_async,
        });
        match op {
            "1.0/insert" => {
                let mut docs = self.store.docs.lock().unwrap();
                let id = format!("{}{}", args["table"].as_str().unwrap(), docs.len() + 1);
                let mut doc = args["value"].clone();
                doc["_id"] = json!(id);
                doc["_creationTime"] = json!(1000.0 + docs.len() as f64);
                doc["_table"] = args["table"].clone();
                docs.insert(id.clone(), doc);
                Ok(json!({ "_id": id }))
            }
            "1.0/get" => {
                if let Some(tx) = &self.on_get {
                    let _ = tx.send(());
                }
                if !self.get_delay.is_zero() {
                    std::thread::sleep(self.get_delay);
                }
                let docs = self.store.docs.lock().unwrap();
                Ok(docs
                    .get(args["id"].as_str().unwrap_or(""))
                    .map(strip_table)
                    .unwrap_or(Value::Null))
            }
            "1.0/queryStream" => {
                let id = self.open_stream(&args);
                Ok(json!({ "queryId": id }))
            }
            "shim/queryStreamWithBatch" => {
                let id = self.open_stream(&args);
                Ok(match self.next_batch(id) {
                    Ok(mut batch) => {
                        batch["queryId"] = json!(id);
                        batch
                    }
                    Err(e) => json!({
                        "queryId": id,
                        "error": {"message": e.message, "data": e.data},
                    }),
                })
            }
            "1.0/queryStreamNext" => {
                let id = args["queryId"].as_u64().unwrap();
                let rows = self
                    .streams
                    .get_mut(&id)
                    .ok_or_else(|| SyscallError::new("in-progress query not found"))?;
                if rows.is_empty() {
                    Ok(json!({ "value": null, "done": true }))
                } else {
                    Ok(json!({ "value": rows.remove(0), "done": false }))
                }
            }
            "shim/queryStreamNextBatch" => self.next_batch(args["queryId"].as_u64().unwrap()),
            "1.0/shallowMerge" | "1.0/replace" | "1.0/remove" => {
                let id = args["id"].as_str().unwrap_or("");
                if !self.store.docs.lock().unwrap().contains_key(id) {
                    return Err(SyscallError::new(format!(
                        "Update on nonexistent document ID {id}"
                    )));
                }
                Err(SyscallError::new(format!(
                    "{op} is not supported by the test store"
                )))
            }
            "storage/storeBlob" => {
                let mut docs = self.store.docs.lock().unwrap();
                let id = format!("storage{}", docs.len() + 1);
                docs.insert(id.clone(), json!({"_table": "_storage", "blob": args["blob"], "contentType": args["contentType"]}));
                Ok(json!(id))
            }
            "storage/getBlob" => {
                let docs = self.store.docs.lock().unwrap();
                Ok(match docs.get(args["storageId"].as_str().unwrap_or("")) {
                    Some(doc) => json!({"blob": doc["blob"], "contentType": doc["contentType"]}),
                    None => Value::Null,
                })
            }
            "1.0/queryCleanup" => Ok(json!(self
                .streams
                .remove(&args["queryId"].as_u64().unwrap())
                .is_some())),
            "1.0/runUdf" => {
                let udf_type = match args["udfType"].as_str() {
                    Some("mutation") => UdfType::Mutation,
                    _ => UdfType::Query,
                };
                let path = args["name"].as_str().unwrap().to_owned();
                self.nested(&path, udf_type, &args["args"])
            }
            "1.0/actions/query" | "1.0/actions/mutation" | "1.0/actions/action" => {
                let udf_type = match op {
                    "1.0/actions/query" => UdfType::Query,
                    "1.0/actions/mutation" => UdfType::Mutation,
                    _ => UdfType::Action,
                };
                let path = args["name"].as_str().unwrap().to_owned();
                self.nested(&path, udf_type, &args["args"])
            }
            _ => Err(SyscallError::new(format!("Unknown operation {op}"))),
        }
    }
}

fn strip_table(doc: &Value) -> Value {
    let mut doc = doc.clone();
    doc.as_object_mut().unwrap().remove("_table");
    doc
}

/// Runs `path` with `args` (a JSON object) and seed/time fixed.
pub fn run(
    runtime: &Runtime,
    handler: &mut TestHandler,
    path: &str,
    udf_type: UdfType,
    args: Value,
) -> RunOutcome {
    let mut req = RunRequest::new(handler.modules.clone(), path, udf_type, args.to_string());
    req.seed = [42; 32];
    req.now_ms = 1_750_000_000_123;
    runtime
        .run(req, handler)
        .expect("the runtime runs the call")
}

/// The value of a successful outcome.
pub fn ok(outcome: &RunOutcome) -> &Value {
    match &outcome.result {
        Ok(v) => v,
        Err(e) => panic!(
            "the call failed: {} (logs: {:?})",
            e.message, outcome.log_lines
        ),
    }
}

/// The error message of a failed outcome.
pub fn err(outcome: &RunOutcome) -> &str {
    match &outcome.result {
        Ok(v) => panic!("the call succeeded with {v}"),
        Err(e) => &e.message,
    }
}
