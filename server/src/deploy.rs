//! The deploy endpoints the official 1.48 CLI calls (`npx convex deploy`,
//! `dev --once`, `codegen`): config hashes, then start_push (analyse the
//! pushed bundles), wait_for_schema (check existing documents against the
//! new schema, add and backfill new indexes), finish_push (switch to the
//! new code, drop removed indexes, keep it all in the log).
//!
//! Nothing goes live before finish_push: `codegen` calls start_push alone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use engine::db::FieldPath;
use runtime::deployment::{Deployment, PushedModule};
use runtime::schema::Schema;
use serde_json::{json, Value as JsonValue};

use crate::error::ApiError;
use crate::functions::require_admin;
use crate::AppState;

/// Pushes analysed by start_push and not yet finished, oldest first. A
/// CLI that stops after start_push (codegen) leaves one behind, so only
/// the newest few are kept.
#[derive(Default, Debug)]
pub struct Pushes {
    pending: VecDeque<(String, Arc<PendingPush>)>,
}

const PENDING_PUSHES_KEPT: usize = 8;

impl Pushes {
    fn insert(&mut self, id: String, push: Arc<PendingPush>) {
        if self.pending.len() == PENDING_PUSHES_KEPT {
            self.pending.pop_front();
        }
        self.pending.push_back((id, push));
    }

    fn get(&self, id: &str) -> Option<Arc<PendingPush>> {
        self.pending
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, p)| Arc::clone(p))
    }

    fn remove(&mut self, id: &str) {
        self.pending.retain(|(i, _)| i != id);
    }
}

/// An index, as the CLI prints it: `{name: "table.index", type, fields}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSpec {
    pub table: String,
    pub name: String,
    pub fields: Vec<String>,
}

impl IndexSpec {
    fn to_json(&self) -> JsonValue {
        json!({"name": format!("{}.{}", self.table, self.name), "type": "database", "fields": self.fields})
    }
}

/// One analysed push.
#[derive(Debug)]
pub struct PendingPush {
    deployment: Arc<Deployment>,
    added: Vec<IndexSpec>,
    removed: Vec<IndexSpec>,
    /// The start_push response (echoed back by finish_push).
    response: JsonValue,
    /// Set once wait_for_schema has checked the data and built the indexes.
    schema_done: tokio::sync::Mutex<Option<Result<(), SchemaFailure>>>,
    module_diff: (Vec<String>, Vec<String>),
}

#[derive(Clone, Debug)]
struct SchemaFailure {
    error: String,
    table: Option<String>,
}

fn check_admin_body(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &JsonValue,
) -> Result<(), ApiError> {
    if let Some(key) = body.get("adminKey").and_then(JsonValue::as_str) {
        if crate::admin::keys_equal(key, &state.admin_key) {
            return Ok(());
        }
        return Err(ApiError::forbidden(
            "The provided admin key is invalid for this deployment",
        ));
    }
    require_admin(state, headers, query)
}

/// `POST /api/get_config_hashes`.
pub async fn get_config_hashes(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Json<JsonValue>, ApiError> {
    check_admin_body(&state, &headers, query.as_deref(), &body)?;
    let d = state.executor.deployment();
    let hashes: Vec<JsonValue> = d
        .modules()
        .iter()
        .map(|m| json!({"path": m.path, "hash": m.sha256, "environment": m.environment}))
        .collect();
    Ok(Json(json!({
        "config": {"functions": "convex/", "authInfo": []},
        "moduleHashes": hashes,
        "nodeDependencies": [],
        "udfServerVersion": d.udf_server_version(),
    })))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("BadPushRequest", message)
}

/// Reads the modules of a push: the changed ones in full, the unchanged
/// ones from the running deployment by hash.
fn pushed_modules(current: &Deployment, body: &JsonValue) -> Result<Vec<PushedModule>, ApiError> {
    if body
        .get("componentDefinitions")
        .and_then(JsonValue::as_array)
        .is_some_and(|c| !c.is_empty())
    {
        return Err(bad(
            "Components (convex.config.ts with app.use(...)) are not supported by this server yet",
        ));
    }
    let app = body
        .get("appDefinition")
        .ok_or_else(|| bad("The push request has no appDefinition"))?;
    let mut modules = Vec::new();
    let read = |m: &JsonValue| -> Result<PushedModule, ApiError> {
        let path = m
            .get("path")
            .and_then(JsonValue::as_str)
            .ok_or_else(|| bad("A pushed module has no path"))?;
        let environment = m
            .get("environment")
            .and_then(JsonValue::as_str)
            .unwrap_or("isolate");
        if environment != "isolate" {
            return Err(bad(format!(
                "{path} uses the {environment:?} environment (\"use node\"): Node.js actions are not supported by this server yet"
            )));
        }
        let source = m
            .get("source")
            .and_then(JsonValue::as_str)
            .ok_or_else(|| bad(format!("Module {path} has no source")))?;
        let source_map = m.get("sourceMap").and_then(JsonValue::as_str);
        Ok(PushedModule::new(path, source, source_map))
    };
    for m in app
        .get("changedModules")
        .and_then(JsonValue::as_array)
        .into_iter()
        .flatten()
    {
        modules.push(read(m)?);
    }
    for m in app
        .get("unchangedModuleHashes")
        .and_then(JsonValue::as_array)
        .into_iter()
        .flatten()
    {
        let path = m.get("path").and_then(JsonValue::as_str).unwrap_or("");
        let sha = m.get("sha256").and_then(JsonValue::as_str).unwrap_or("");
        let found = current
            .modules()
            .iter()
            .find(|old| old.path == path && old.sha256 == sha)
            .ok_or_else(|| {
                bad(format!(
                    "The push says {path} is unchanged (sha256 {sha}), but this deployment does not have that version: push again"
                ))
            })?;
        modules.push(found.clone());
    }
    if let Some(schema) = app.get("schema").filter(|s| !s.is_null()) {
        let schema = read(schema)?;
        if !modules.iter().any(|m| m.path == schema.path) {
            modules.push(schema);
        }
    }
    Ok(modules)
}

/// The indexes a schema defines, in the CLI's form. Search and vector
/// indexes (and staged ones) are refused: this server cannot build them.
fn schema_indexes(schema: Option<&Schema>) -> Result<Vec<IndexSpec>, ApiError> {
    let mut out = Vec::new();
    for t in schema.map(|s| s.tables.values()).into_iter().flatten() {
        let unsupported = [
            (
                "search",
                t.search_indexes.len() + t.staged_search_indexes.len(),
            ),
            (
                "vector",
                t.vector_indexes.len() + t.staged_vector_indexes.len(),
            ),
            ("staged", t.staged_db_indexes.len()),
        ];
        if let Some((kind, _)) = unsupported.iter().find(|(_, n)| *n > 0) {
            return Err(bad(format!(
                "Table {:?} defines {kind} indexes, which are not supported by this server yet",
                t.table_name
            )));
        }
        for ix in &t.indexes {
            out.push(IndexSpec {
                table: t.table_name.clone(),
                name: ix.name.clone(),
                fields: ix.fields.iter().map(|f| f.to_string()).collect(),
            });
        }
    }
    Ok(out)
}

fn index_diff(state: &AppState, wanted: &[IndexSpec]) -> (Vec<IndexSpec>, Vec<IndexSpec>) {
    let existing: Vec<IndexSpec> = state
        .db
        .user_indexes()
        .into_iter()
        .map(|ix| IndexSpec {
            table: ix.table,
            name: ix.name,
            fields: ix.fields.iter().map(|f| f.to_string()).collect(),
        })
        .collect();
    let added = wanted
        .iter()
        .filter(|w| !existing.contains(w))
        .cloned()
        .collect();
    let removed = existing
        .iter()
        .filter(|e| !wanted.contains(e))
        .cloned()
        .collect();
    (added, removed)
}

fn new_push_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn analyse(state: &Arc<AppState>, body: &JsonValue) -> Result<Arc<PendingPush>, ApiError> {
    let current = state.executor.deployment();
    let modules = pushed_modules(&current, body)?;
    let udf_server_version = body
        .get("appDefinition")
        .and_then(|a| a.get("udfServerVersion"))
        .and_then(JsonValue::as_str)
        .map(str::to_string);
    let executor = Arc::clone(&state.executor);
    let deployment =
        tokio::task::spawn_blocking(move || executor.analyze(modules, udf_server_version))
            .await
            .map_err(|e| ApiError::internal(format!("analysis thread failed: {e}")))?
            .map_err(|e| bad(format!("Failed to analyze the pushed modules: {e}")))?;
    let deployment = Arc::new(deployment);
    let wanted = schema_indexes(deployment.schema())?;
    let (added, removed) = index_diff(state, &wanted);
    let old_paths: Vec<&str> = current.function_modules();
    let new_paths: Vec<&str> = deployment.function_modules();
    let module_diff = (
        new_paths
            .iter()
            .filter(|p| !old_paths.contains(p))
            .map(|p| p.to_string())
            .collect(),
        old_paths
            .iter()
            .filter(|p| !new_paths.contains(p))
            .map(|p| p.to_string())
            .collect(),
    );
    let push_id = new_push_id();
    let analysis = json!({
        "": {
            "definition": {
                "path": "",
                "definitionType": {"type": "app"},
                "childComponents": [],
                "httpMounts": {},
                "exports": {"type": "branch", "branch": []},
            },
            "schema": deployment.schema_json().cloned().unwrap_or(JsonValue::Null),
            "functions": deployment.functions_json(),
            "udfConfig": {
                "serverVersion": deployment.udf_server_version().unwrap_or("1.48.0"),
                "importPhaseRngSeed": {"$bytes": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
                "importPhaseUnixTimestamp": {"$integer": "AAAAAAAAAAA="},
            },
        }
    });
    let index_diffs = json!({"": {
        "added_indexes": added.iter().map(IndexSpec::to_json).collect::<Vec<_>>(),
        "removed_indexes": removed.iter().map(IndexSpec::to_json).collect::<Vec<_>>(),
    }});
    let response = json!({
        "environmentVariables": {},
        "externalDepsId": null,
        "componentDefinitionPackages": {},
        "appAuth": [],
        "analysis": analysis,
        "app": {
            "definitionPath": "",
            "componentPath": "",
            "args": {},
            "childComponents": {},
            "httpRoutes": {"httpModuleRoutes": deployment.http_routes_json(), "mounts": []},
            "exports": {},
        },
        "schemaChange": {
            "allocatedComponentIds": {},
            "schemaIds": {"": push_id},
            "indexDiffs": index_diffs,
        },
    });
    let push = Arc::new(PendingPush {
        deployment,
        added,
        removed,
        response,
        schema_done: tokio::sync::Mutex::new(None),
        module_diff,
    });
    state
        .pushes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(push_id, Arc::clone(&push));
    Ok(push)
}

/// `POST /api/deploy2/start_push` (brotli body, decompressed by a layer).
pub async fn start_push(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Json<JsonValue>, ApiError> {
    check_admin_body(&state, &headers, query.as_deref(), &body)?;
    let push = analyse(&state, &body).await?;
    Ok(Json(push.response.clone()))
}

/// `POST /api/deploy2/evaluate_push`: the schema change a push would make.
pub async fn evaluate_push(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Json<JsonValue>, ApiError> {
    check_admin_body(&state, &headers, query.as_deref(), &body)?;
    let push = analyse(&state, &body).await?;
    Ok(Json(json!({"schemaChange": push.response["schemaChange"]})))
}

fn push_id_of(schema_change: Option<&JsonValue>) -> Result<String, ApiError> {
    schema_change
        .and_then(|s| s.get("schemaIds"))
        .and_then(|s| s.get(""))
        .and_then(JsonValue::as_str)
        .map(str::to_string)
        .ok_or_else(|| bad("The request does not name a push (schemaChange.schemaIds)"))
}

fn find_push(state: &AppState, id: &str) -> Result<Arc<PendingPush>, ApiError> {
    state
        .pushes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .ok_or_else(|| {
            ApiError::bad_request(
                "PushNotFound",
                format!("No push {id} is pending on this server (it finished, was superseded, or the server restarted): push again"),
            )
        })
}

/// Checks existing documents against the push's schema, then adds its new
/// indexes and waits (up to `timeout`) for their backfill. Runs once per
/// push; later calls see the stored outcome or keep waiting for backfills.
async fn prepare_schema(
    state: &Arc<AppState>,
    push: &Arc<PendingPush>,
    timeout: Duration,
) -> Result<Option<Result<(), SchemaFailure>>, ApiError> {
    let mut done = push.schema_done.lock().await;
    if let Some(outcome) = &*done {
        return Ok(Some(outcome.clone()));
    }
    let started = Instant::now();
    let executor = Arc::clone(&state.executor);
    let deployment = Arc::clone(&push.deployment);
    let added = push.added.clone();
    let outcome =
        tokio::task::spawn_blocking(move || -> Result<Result<(), SchemaFailure>, String> {
            if let Err(e) = executor.check_schema(&deployment) {
                return Ok(Err(SchemaFailure {
                    error: e.message,
                    table: e.table,
                }));
            }
            if !added.is_empty() {
                let db = executor.db();
                let mut tx = db.begin();
                for ix in &added {
                    let fields = ix
                        .fields
                        .iter()
                        .map(|f| {
                            FieldPath::parse(f)
                                .map_err(|e| format!("index {}.{}: {e}", ix.table, ix.name))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if tx
                        .index_def(&ix.table, &ix.name)
                        .map_err(|e| e.to_string())?
                        .is_some()
                    {
                        // Same name, other fields: replace it.
                        tx.remove_index(&ix.table, &ix.name)
                            .map_err(|e| e.to_string())?;
                    }
                    tx.add_index(&ix.table, &ix.name, &fields)
                        .map_err(|e| format!("index {}.{}: {e}", ix.table, ix.name))?;
                }
                db.commit(tx).map_err(|e| format!("adding indexes: {e}"))?;
            }
            Ok(Ok(()))
        })
        .await
        .map_err(|e| ApiError::internal(format!("schema thread failed: {e}")))?
        .map_err(bad)?;
    if outcome.is_err() {
        *done = Some(outcome.clone());
        return Ok(Some(outcome));
    }
    // Wait for the backfills, within the caller's time.
    let remaining = timeout.saturating_sub(started.elapsed());
    let ready = wait_indexes(state, &push.added, remaining).await?;
    if ready {
        *done = Some(Ok(()));
        Ok(Some(Ok(())))
    } else {
        Ok(None)
    }
}

async fn wait_indexes(
    state: &Arc<AppState>,
    indexes: &[IndexSpec],
    timeout: Duration,
) -> Result<bool, ApiError> {
    let deadline = Instant::now() + timeout;
    loop {
        let ready = state.db.user_indexes();
        let pending = indexes.iter().any(|w| {
            !ready
                .iter()
                .any(|r| r.table == w.table && r.name == w.name && r.ready)
        });
        if !pending {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /api/deploy2/wait_for_schema`.
pub async fn wait_for_schema(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Json<JsonValue>, ApiError> {
    check_admin_body(&state, &headers, query.as_deref(), &body)?;
    let id = push_id_of(body.get("schemaChange"))?;
    let push = find_push(&state, &id)?;
    let timeout = body
        .get("timeoutMs")
        .and_then(JsonValue::as_u64)
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
        .min(Duration::from_secs(60));
    Ok(Json(match prepare_schema(&state, &push, timeout).await? {
        Some(Ok(())) => json!({"type": "complete"}),
        Some(Err(f)) => {
            json!({"type": "failed", "error": f.error, "componentPath": "", "tableName": f.table})
        }
        None => {
            let ready = state.db.user_indexes();
            let complete = push
                .added
                .iter()
                .filter(|w| {
                    ready
                        .iter()
                        .any(|r| r.table == w.table && r.name == w.name && r.ready)
                })
                .count();
            json!({"type": "inProgress", "components": {"": {
                "schemaValidationComplete": true,
                "indexesComplete": complete,
                "indexesTotal": push.added.len(),
            }}})
        }
    }))
}

/// `POST /api/deploy2/finish_push`: the new code goes live.
pub async fn finish_push(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Json<JsonValue>, ApiError> {
    check_admin_body(&state, &headers, query.as_deref(), &body)?;
    let start = body.get("startPush");
    let id = push_id_of(start.and_then(|s| s.get("schemaChange")))?;
    let push = find_push(&state, &id)?;
    let dry_run = body
        .get("dryRun")
        .and_then(JsonValue::as_bool)
        .unwrap_or(false);
    let index_json = |v: &[IndexSpec]| v.iter().map(IndexSpec::to_json).collect::<Vec<_>>();
    let diff = json!({
        "authDiff": {"added": [], "removed": []},
        "definitionDiffs": {},
        "componentDiffs": {"": {
            "diffType": {"type": "modify"},
            "moduleDiff": {"added": push.module_diff.0, "removed": push.module_diff.1},
            "udfConfigDiff": null,
            "cronDiff": {"added": [], "updated": [], "deleted": []},
            "indexDiff": {"added_indexes": index_json(&push.added), "removed_indexes": index_json(&push.removed)},
            "schemaDiff": null,
        }},
    });
    if dry_run {
        return Ok(Json(diff));
    }
    // A CLI that skipped wait_for_schema still gets a checked schema and
    // built indexes before the code goes live.
    loop {
        match prepare_schema(&state, &push, Duration::from_secs(60)).await? {
            Some(Ok(())) => break,
            Some(Err(f)) => return Err(ApiError::bad_request("SchemaValidationFailed", f.error)),
            None => continue,
        }
    }
    let executor = Arc::clone(&state.executor);
    let deployment = Arc::clone(&push.deployment);
    let removed = push.removed.clone();
    let _guard = state.deploy_lock.lock().await;
    tokio::task::spawn_blocking(move || {
        executor.activate(deployment, |tx| {
            for ix in &removed {
                if tx.index_def(&ix.table, &ix.name)?.is_some() {
                    tx.remove_index(&ix.table, &ix.name)?;
                }
            }
            Ok(())
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("deploy thread failed: {e}")))?
    .map_err(|e| ApiError::internal(format!("Failed to store the new deployment: {e}")))?;
    state
        .pushes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    // Live queries ran the old code: rerun them all.
    if let Some(hub) = state.started_sync_hub() {
        hub.invalidate_all().await;
    }
    tracing::info!(push = %id, "deployed");
    Ok(Json(diff))
}

/// `POST /api/deploy2/report_push_completed` (telemetry; accepted).
pub async fn report_push_completed() -> Json<JsonValue> {
    Json(json!({}))
}

/// `POST /api/deploy2/evaluate_schema`: not offered, as on the real
/// server; the CLI treats the 404 as "skip".
pub async fn evaluate_schema() -> ApiError {
    ApiError::not_found("evaluate_schema is not offered by this server")
}
