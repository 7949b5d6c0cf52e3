//! Running a function call end to end: find it in the deployment, check
//! visibility, type and arguments, run it in a worker against a
//! transaction, check its return value, and for mutations commit
//! (re-running on an optimistic-concurrency conflict a bounded number of
//! times). Actions run outside any transaction; their `runQuery`,
//! `runMutation` and `runAction` are calls of their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::db::{
    prefix_key, prefix_successor, Database, DbError, Doc, FieldPath, KeyInterval, Order,
    Transaction,
};
use engine::subs::SubscriptionId;
use engine::ts::Ts;
use engine::value::json::{from_json, to_json};
use engine::value::Value;
use rand::RngCore;
use serde_json::{json, Value as JsonValue};

use crate::deployment::{Deployment, PushedModule};
use crate::schema::{check_existing_in_batches, user_tables, SchemaError};
use crate::syscalls::{CallContext, DbSyscalls};
use crate::worker::{
    canonicalize_udf_path, EnvVars, HttpRequest, HttpResponse, HttpRunRequest, RunRequest, Runtime,
    RuntimeConfig,
};
use crate::{SyscallError, SyscallHandler, UdfType};

/// User-code time of a query or mutation (database time excluded).
pub const QUERY_MUTATION_TIME_LIMIT: Duration = Duration::from_secs(1);
/// User-code time of an action.
pub const ACTION_TIME_LIMIT: Duration = Duration::from_secs(600);
/// Times a mutation runs when optimistic concurrency keeps refusing it.
pub const MUTATION_ATTEMPTS: u32 = 64;
/// Depth of nested calls (an action running an action ...).
const MAX_CALL_DEPTH: u32 = 8;

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A client without the admin key: public functions only.
    Public,
    /// The admin (dashboard, `npx convex run`) or a function of the
    /// deployment itself: internal functions too.
    Admin,
}

/// One function call.
#[derive(Clone, Debug)]
pub struct Call {
    /// As the client sent it: `mod`, `mod:fn`, `dir/mod.js:fn`.
    pub path: String,
    /// The kind the endpoint expects (`/api/query` ...), or `None` for
    /// any (`/api/function`, `/api/run`).
    pub kind: Option<UdfType>,
    /// The arguments object.
    pub args: Value,
    pub caller: Caller,
    /// Run a query at this earlier snapshot.
    pub at_ts: Option<Ts>,
    /// A live query's journal from its previous run (see
    /// [`CallOutcome::journal`]); `None` on a first run.
    pub journal: Option<String>,
    /// Register a query's read set with the engine's subscriptions
    /// ([`CallOutcome::subscription`]).
    pub subscribe: bool,
    /// A mutation sent over a sync session: applied at most once per
    /// (session, request), however often the client re-sends it.
    pub session_request: Option<SessionRequest>,
}

impl Call {
    /// A plain call: latest snapshot, no journal, no subscription.
    pub fn new(
        path: impl Into<String>,
        kind: Option<UdfType>,
        args: Value,
        caller: Caller,
    ) -> Call {
        Call {
            path: path.into(),
            kind,
            args,
            caller,
            at_ts: None,
            journal: None,
            subscribe: false,
            session_request: None,
        }
    }
}

/// Which sync session sent a mutation, and its number there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRequest {
    pub session_id: String,
    pub request_id: u32,
}

/// The system table remembering each session's applied mutations, and its
/// index by (session, request).
pub const SESSION_REQUESTS_TABLE: &str = "_session_requests";
pub const SESSION_REQUESTS_INDEX: &str = "by_session_request";

/// A function's failure as clients see it.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionError {
    pub message: String,
    /// A `ConvexError`'s data.
    pub data: Option<Value>,
}

/// What a call produced.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    pub result: Result<Value, FunctionError>,
    pub log_lines: Vec<String>,
    /// The snapshot a query read, or the commit of a mutation (for a
    /// mutation replayed from its session record: a snapshot it is in).
    pub ts: Option<Ts>,
    /// A query's journal: where its paginated read ended, so that a rerun
    /// covers the same range (opaque to clients); `None` without a page.
    pub journal: Option<String>,
    /// The query's subscription, when [`Call::subscribe`] asked for one.
    pub subscription: Option<SubscriptionId>,
}

/// A journal as clients hold it: `{"endCursor": ...}`.
fn encode_journal(end_cursor: Option<&str>) -> Option<String> {
    end_cursor.map(|c| json!({ "endCursor": c }).to_string())
}

fn decode_journal(journal: Option<&str>) -> Result<Option<String>, String> {
    let Some(j) = journal else { return Ok(None) };
    let parsed: JsonValue =
        serde_json::from_str(j).map_err(|e| format!("Invalid query journal {j:?}: {e}"))?;
    match parsed.get("endCursor") {
        Some(JsonValue::String(c)) => Ok(Some(c.clone())),
        Some(JsonValue::Null) | None if parsed.is_object() => Ok(None),
        _ => Err(format!(
            "Invalid query journal {j:?}: expected {{\"endCursor\": string}}"
        )),
    }
}

/// How the executor is set up.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    pub deno: std::path::PathBuf,
    /// Where worker processes find the deployed modules.
    pub modules_dir: std::path::PathBuf,
    /// Worker processes for queries and mutations.
    pub workers: usize,
    /// The deployment's public URL (`_system/cli/convexUrl:cloudUrl`).
    pub cloud_url: String,
}

/// Runs calls against the current deployment.
pub struct Executor {
    db: Arc<Database>,
    runtime: Arc<Runtime>,
    current: RwLock<Arc<Deployment>>,
    cloud_url: String,
    mutations: MutationCounters,
}

/// What happened to mutation attempts since the executor started.
#[derive(Debug, Default)]
struct MutationCounters {
    committed: AtomicU64,
    conflicts: AtomicU64,
    conflict_failures: AtomicU64,
}

/// Mutation figures since the executor started, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MutationCounts {
    /// Mutations that committed (a deduplicated replay is not counted).
    pub committed: u64,
    /// Attempts that met an optimistic-concurrency conflict at commit and
    /// were run again (or, after [`MUTATION_ATTEMPTS`], given up).
    pub conflicts: u64,
    /// Mutations that failed because every attempt conflicted.
    pub conflict_failures: u64,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

/// Why a schema cannot be adopted.
#[derive(Clone, Debug)]
pub struct SchemaCheckError {
    pub message: String,
    pub table: Option<String>,
}

fn request_id() -> String {
    let mut b = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn server_error(request_id: &str, message: &str) -> String {
    format!("[Request ID: {request_id}] Server Error\n{message}")
}

impl Executor {
    /// Starts the worker pool and loads the stored deployment.
    pub fn open(db: Arc<Database>, config: ExecutorConfig) -> Result<Executor, String> {
        let mut rc = RuntimeConfig::new(config.deno, config.modules_dir);
        rc.max_workers = config.workers.max(1);
        let runtime = Runtime::new(rc).map_err(|e| e.to_string())?;
        let runtime = Arc::new(runtime);
        ensure_session_requests_index(&db)?;
        let (modules, version) = crate::deployment::load(&db)?;
        let deployment = if modules.is_empty() {
            Deployment::empty()
        } else {
            Deployment::analyze(&runtime, modules, version)
                .map_err(|e| format!("the stored deployment does not load: {e}"))?
        };
        Ok(Executor {
            db,
            runtime,
            current: RwLock::new(Arc::new(deployment)),
            cloud_url: config.cloud_url,
            mutations: MutationCounters::default(),
        })
    }

    /// Mutation commits and conflicts since this executor started.
    pub fn mutation_counts(&self) -> MutationCounts {
        let m = &self.mutations;
        MutationCounts {
            committed: m.committed.load(Ordering::Relaxed),
            conflicts: m.conflicts.load(Ordering::Relaxed),
            conflict_failures: m.conflict_failures.load(Ordering::Relaxed),
        }
    }

    pub fn db(&self) -> &Arc<Database> {
        &self.db
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The running deployment.
    pub fn deployment(&self) -> Arc<Deployment> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Analyses pushed modules into a deployment (not yet live).
    pub fn analyze(
        &self,
        modules: Vec<PushedModule>,
        udf_server_version: Option<String>,
    ) -> Result<Deployment, String> {
        Deployment::analyze(&self.runtime, modules, udf_server_version)
    }

    /// Checks every existing document against the deployment's schema.
    pub fn check_schema(&self, deployment: &Deployment) -> Result<(), SchemaCheckError> {
        let Some(schema) = deployment.schema() else {
            return Ok(());
        };
        check_existing_in_batches(&self.db, schema, crate::schema::CHECK_SCAN_BATCH).map_err(|e| {
            let table = e.table().map(str::to_string);
            SchemaCheckError {
                message: match &e {
                    SchemaError::ExistingDocument { .. } => {
                        format!("Schema validation failed.\n{e}")
                    }
                    _ => e.to_string(),
                },
                table,
            }
        })
    }

    /// Stores `deployment` in the log (with `also`'s catalog changes in the
    /// same transaction) and makes it the running one.
    pub fn activate(
        &self,
        deployment: Arc<Deployment>,
        also: impl Fn(&mut Transaction<'_>) -> Result<(), DbError>,
    ) -> Result<(), String> {
        let mut last = None;
        for _ in 0..MUTATION_ATTEMPTS {
            let mut tx = self.db.begin();
            crate::deployment::store(
                &mut tx,
                deployment.modules(),
                deployment.udf_server_version(),
            )
            .map_err(|e| e.to_string())?;
            also(&mut tx).map_err(|e| e.to_string())?;
            match self.db.commit(tx) {
                Ok(_) => {
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = deployment;
                    return Ok(());
                }
                Err(e @ DbError::Conflict { .. }) => last = Some(e),
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!(
            "storing the deployment kept conflicting: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    /// Runs an HTTP action: routes `request` through `convex/http.js`'s
    /// router (blocking). Failures are answered as the real server does: 404
    /// without a route, 500 with `{code}` when the action throws.
    pub fn http_action(&self, request: HttpRequest) -> HttpResponse {
        let deployment = self.deployment();
        let json_response = |status: u16, body: JsonValue| HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        };
        if deployment
            .function_modules()
            .iter()
            .all(|m| *m != "http.js")
        {
            return json_response(
                404,
                json!({"code": "NotFound", "message": "This deployment defines no HTTP actions (convex/http.js)"}),
            );
        }
        let request_id = request_id();
        let context = CallContext {
            function_name: "http.js".to_string(),
            request_id: request_id.clone(),
            ..CallContext::default()
        };
        let mut handler = ActionSyscalls {
            executor: self,
            depth: 0,
            context,
        };
        let mut req = HttpRunRequest::new(deployment.module_set(), request);
        req.request_id = request_id.clone();
        match self.runtime.run_http_action(req, &mut handler) {
            Ok(out) => match out.result {
                Ok(response) => response,
                Err(e) => json_response(
                    500,
                    json!({"code": format!("[Request ID: {request_id}] Server Error: {}", e.message)}),
                ),
            },
            Err(e) => json_response(
                500,
                json!({"code": format!("[Request ID: {request_id}] Server Error: {e}")}),
            ),
        }
    }

    /// The transaction a query reads: the newest snapshot, or `at_ts`.
    fn query_snapshot(&self, at_ts: Option<Ts>) -> Result<Transaction<'_>, DbError> {
        match at_ts {
            Some(ts) => self.db.begin_at(ts),
            None => Ok(self.db.begin()),
        }
    }

    /// A `_system/` query (see [`crate::system`]): admin only.
    fn system_query(
        &self,
        call: &Call,
        module: &str,
        name: &str,
        display: &str,
        fail: impl Fn(String) -> CallOutcome,
    ) -> CallOutcome {
        if call.caller != Caller::Admin {
            return fail(format!(
                "Could not find public function for '{display}'. System functions need the admin key."
            ));
        }
        if matches!(call.kind, Some(UdfType::Mutation | UdfType::Action)) {
            return fail(format!("{display} is a query"));
        }
        let mut tx = match self.query_snapshot(call.at_ts) {
            Ok(tx) => tx,
            Err(e) => return fail(e.to_string()),
        };
        let cx = crate::system::SystemContext {
            db: &self.db,
            cloud_url: &self.cloud_url,
        };
        let Some(result) = crate::system::run(module, name, &call.args, &mut tx, &cx) else {
            return fail(format!(
                "Could not find function for '{display}': this system function is not supported by this server yet."
            ));
        };
        let result = match result {
            Ok(v) => Ok(v),
            Err(m) => return fail(m),
        };
        CallOutcome {
            result,
            log_lines: Vec::new(),
            ts: Some(tx.begin_ts()),
            journal: None,
            subscription: call.subscribe.then(|| self.db.subscribe(&tx)),
        }
    }

    /// Runs one call to the end (blocking: call it from a blocking thread).
    pub fn call(&self, call: Call) -> CallOutcome {
        self.call_at_depth(call, 0)
    }

    fn call_at_depth(&self, call: Call, depth: u32) -> CallOutcome {
        let request_id = request_id();
        let fail = |message: String| CallOutcome {
            result: Err(FunctionError {
                message: server_error(&request_id, &message),
                data: None,
            }),
            log_lines: Vec::new(),
            ts: None,
            journal: None,
            subscription: None,
        };
        if depth > MAX_CALL_DEPTH {
            return fail(format!(
                "Function calls are nested more than {MAX_CALL_DEPTH} deep"
            ));
        }
        let deployment = self.deployment();
        let (module, name) = canonicalize_udf_path(call.path.trim_start_matches("./"));
        let display = format!("{}:{}", module.trim_end_matches(".js"), name);
        if module.starts_with("_system/") {
            return self.system_query(&call, &module, &name, &display, fail);
        }
        if module.starts_with("_deps/") {
            return fail(format!(
                "Could not find public function for '{display}'. Components are not supported by this server yet."
            ));
        }
        let Some(f) = deployment.function(&module, &name) else {
            let what = if call.caller == Caller::Public {
                "public "
            } else {
                ""
            };
            return fail(format!(
                "Could not find {what}function for '{display}'. Did you forget to run `npx convex dev` or `npx convex deploy`?"
            ));
        };
        if !f.public && call.caller == Caller::Public {
            return fail(format!(
                "Could not find public function for '{display}'. Did you forget to run `npx convex dev` or `npx convex deploy`?"
            ));
        }
        if let Some(kind) = call.kind {
            if kind != f.udf_type {
                return fail(format!(
                    "Trying to execute {module}:{name} as {}, but it is defined as {}.",
                    kind.as_str(),
                    f.udf_type.as_str()
                ));
            }
        }
        let args = vec![call.args.clone()];
        {
            let tx = self.db.begin();
            let lookup = user_tables(&tx);
            if let Err(e) = f.args.check(&args, &lookup) {
                return fail(e);
            }
        }
        let args_json =
            serde_json::to_string(&JsonValue::Array(args.iter().map(to_json).collect()))
                .expect("JSON serializes");
        let context = CallContext {
            function_name: display.clone(),
            request_id: request_id.clone(),
            ..CallContext::default()
        };
        let run = |udf_type: UdfType, handler: &mut dyn SyscallHandler| {
            let mut seed = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut seed);
            self.runtime.run(
                RunRequest {
                    modules: deployment.module_set(),
                    path: format!("{module}:{name}"),
                    udf_type,
                    args_json: args_json.clone(),
                    seed,
                    now_ms: now_ms(),
                    request_id: request_id.clone(),
                    user_time_limit: if udf_type == UdfType::Action {
                        ACTION_TIME_LIMIT
                    } else {
                        QUERY_MUTATION_TIME_LIMIT
                    },
                    env: Arc::new(EnvVars::new(Default::default())),
                    nested: depth > 0,
                },
                handler,
            )
        };
        let check_returns = |v: &Value, tx: &Transaction<'_>| -> Result<(), String> {
            f.returns.check(v, &user_tables(tx))
        };
        let outcome = |result: Result<Value, FunctionError>, log_lines, ts| CallOutcome {
            result,
            log_lines,
            ts,
            journal: None,
            subscription: None,
        };
        let js_error = |e: crate::worker::JsError| FunctionError {
            message: server_error(&request_id, &e.message),
            data: e.data.and_then(|d| from_json(&d).ok()),
        };
        let decode = |v: JsonValue| -> Result<Value, FunctionError> {
            from_json(&v).map_err(|e| FunctionError {
                message: server_error(
                    &request_id,
                    &format!("The function returned an invalid value: {e}"),
                ),
                data: None,
            })
        };
        let replay = |record: &Doc, ts: Ts| -> CallOutcome {
            let result = match record.get("result") {
                Some(Value::String(text)) => serde_json::from_str::<JsonValue>(text)
                    .map_err(|e| e.to_string())
                    .and_then(|j| from_json(&j).map_err(|e| e.to_string())),
                _ => Err("the record has no result".to_string()),
            };
            match result {
                Ok(v) => outcome(Ok(v), Vec::new(), Some(ts)),
                Err(e) => fail(format!(
                    "The record of this mutation's earlier run is damaged: {e}"
                )),
            }
        };
        match f.udf_type {
            UdfType::Query => {
                let mut tx = match self.query_snapshot(call.at_ts) {
                    Ok(tx) => tx,
                    Err(e) => return fail(e.to_string()),
                };
                let ts = tx.begin_ts();
                let end_cursor = match decode_journal(call.journal.as_deref()) {
                    Ok(c) => c,
                    Err(m) => return fail(m),
                };
                let mut handler = DbSyscalls::new(&mut tx, UdfType::Query, context.clone())
                    .with_journal_end_cursor(end_cursor);
                if let Some(schema) = deployment.schema() {
                    handler = handler.with_schema(schema);
                }
                let ran = match run(UdfType::Query, &mut handler) {
                    Ok(r) => r,
                    Err(e) => return fail(e.to_string()),
                };
                let journal = encode_journal(handler.journal_end_cursor());
                drop(handler);
                let result = ran.result.map_err(js_error).and_then(decode).and_then(|v| {
                    check_returns(&v, &tx)
                        .map(|()| v)
                        .map_err(|m| FunctionError { message: server_error(&request_id, &m), data: None })
                });
                // A failed query is live too: the data it read may change.
                let subscription = call.subscribe.then(|| self.db.subscribe(&tx));
                CallOutcome {
                    result,
                    log_lines: ran.log_lines,
                    ts: Some(ts),
                    journal,
                    subscription,
                }
            }
            UdfType::Mutation => {
                let mut backoff = Duration::from_millis(1);
                let mut last_conflict = None;
                for _ in 0..MUTATION_ATTEMPTS {
                    let mut tx = self.db.begin();
                    if let Some(sr) = &call.session_request {
                        match find_session_request(&mut tx, sr) {
                            Ok(Some(record)) => return replay(&record, tx.begin_ts()),
                            Ok(None) => {}
                            Err(e) => return fail(e.to_string()),
                        }
                    }
                    let mut handler = DbSyscalls::new(&mut tx, UdfType::Mutation, context.clone());
                    if let Some(schema) = deployment.schema() {
                        handler = handler.with_schema(schema);
                    }
                    let ran = match run(UdfType::Mutation, &mut handler) {
                        Ok(r) => r,
                        Err(e) => return fail(e.to_string()),
                    };
                    drop(handler);
                    let value = match ran.result.map_err(js_error).and_then(decode) {
                        // A failed mutation commits nothing.
                        Err(e) => return outcome(Err(e), ran.log_lines, None),
                        Ok(v) => v,
                    };
                    if let Err(m) = check_returns(&value, &tx) {
                        return outcome(
                            Err(FunctionError { message: server_error(&request_id, &m), data: None }),
                            ran.log_lines,
                            None,
                        );
                    }
                    if let Some(sr) = &call.session_request {
                        if let Err(e) = record_session_request(&mut tx, sr, &value) {
                            return fail(format!(
                                "Cannot record mutation {} of session {} for deduplication: {e}",
                                sr.request_id, sr.session_id
                            ));
                        }
                    }
                    match self.db.commit(tx) {
                        Ok(ts) => {
                            self.mutations.committed.fetch_add(1, Ordering::Relaxed);
                            return outcome(Ok(value), ran.log_lines, Some(ts));
                        }
                        Err(DbError::Conflict { table, id, .. }) => {
                            self.mutations.conflicts.fetch_add(1, Ordering::Relaxed);
                            last_conflict = Some((table, id));
                            // Jittered exponential backoff.
                            let jitter = rand::thread_rng().next_u64() % (backoff.as_micros() as u64 + 1);
                            std::thread::sleep(backoff / 2 + Duration::from_micros(jitter / 2));
                            backoff = (backoff * 2).min(Duration::from_millis(50));
                        }
                        Err(e) => return fail(e.to_string()),
                    }
                }
                self.mutations.conflict_failures.fetch_add(1, Ordering::Relaxed);
                let (table, id) = last_conflict.unwrap_or_default();
                fail(format!(
                    "Documents read from or written to the \"{table}\" table changed while this mutation was being run and on every subsequent retry. Another call to this mutation changed the document with ID \"{id}\". See https://docs.convex.dev/error#1"
                ))
            }
            UdfType::Action => {
                let mut handler = ActionSyscalls {
                    executor: self,
                    depth,
                    context: context.clone(),
                };
                let ran = match run(UdfType::Action, &mut handler) {
                    Ok(r) => r,
                    Err(e) => return fail(e.to_string()),
                };
                let result = ran.result.map_err(js_error).and_then(decode).and_then(|v| {
                    let tx = self.db.begin();
                    check_returns(&v, &tx)
                        .map(|()| v)
                        .map_err(|m| FunctionError { message: server_error(&request_id, &m), data: None })
                });
                outcome(result, ran.log_lines, None)
            }
            UdfType::HttpAction => fail(format!(
                "{display} is an HTTP action: it is called through the HTTP router, not as a function"
            )),
        }
    }
}

/// The syscalls of an action: calls of other functions, each its own
/// transaction.
struct ActionSyscalls<'e> {
    executor: &'e Executor,
    depth: u32,
    context: CallContext,
}

impl SyscallHandler for ActionSyscalls<'_> {
    fn syscall(
        &mut self,
        op: &str,
        args: JsonValue,
        is_async: bool,
    ) -> Result<JsonValue, SyscallError> {
        let kind = match op {
            "1.0/actions/query" => UdfType::Query,
            "1.0/actions/mutation" => UdfType::Mutation,
            "1.0/actions/action" => UdfType::Action,
            "1.0/getUserIdentity" => return Ok(JsonValue::Null),
            "1.0/getFunctionMetadata" => {
                return Ok(json!({"name": self.context.function_name, "componentPath": ""}))
            }
            "1.0/getDeploymentMetadata" => {
                let d = &self.context.deployment;
                return Ok(json!({"name": d.name, "region": d.region, "class": d.class}));
            }
            "1.0/getRequestMetadata" => {
                return Ok(
                    json!({"ip": null, "userAgent": null, "requestId": self.context.request_id, "scheduledFunctionId": null, "authToken": null}),
                )
            }
            "1.0/actions/schedule" | "1.0/actions/cancel_job" => {
                return Err(SyscallError::new(format!(
                    "The scheduler is not supported by this server yet ({op})"
                )))
            }
            "1.0/actions/vectorSearch" => {
                return Err(SyscallError::new(format!(
                    "Vector search is not supported by this server yet ({op})"
                )))
            }
            op if op.starts_with("1.0/storage") => {
                return Err(SyscallError::new(format!(
                    "File storage is not supported by this server yet ({op})"
                )))
            }
            _ if is_async => {
                return Err(SyscallError::new(format!("Unknown async operation {op}")))
            }
            _ => return Err(SyscallError::new(format!("Unknown operation {op}"))),
        };
        let name = match (
            args.get("name"),
            args.get("functionHandle"),
            args.get("reference"),
        ) {
            (Some(JsonValue::String(n)), _, _) => n.clone(),
            (_, Some(_), _) => {
                return Err(SyscallError::new(
                    "Function handles are not supported by this server yet",
                ))
            }
            (_, _, Some(_)) => {
                return Err(SyscallError::new(
                    "Components are not supported by this server yet",
                ))
            }
            _ => {
                return Err(SyscallError::new(format!(
                    "Invalid arguments for `{op}`: missing the function name"
                )))
            }
        };
        let call_args = match args.get("args") {
            Some(a) => from_json(a)
                .map_err(|e| SyscallError::new(format!("Invalid arguments for `{op}`: {e}")))?,
            None => Value::Object(Default::default()),
        };
        let started = Instant::now();
        let out = self.executor.call_at_depth(
            Call::new(name, Some(kind), call_args, Caller::Admin),
            self.depth + 1,
        );
        tracing::debug!(op, took = ?started.elapsed(), "nested call");
        match out.result {
            Ok(v) => Ok(to_json(&v)),
            Err(e) => Err(SyscallError {
                // The callee's message, without our request-id envelope.
                message: e
                    .message
                    .split_once("Server Error\n")
                    .map_or(e.message.clone(), |(_, m)| m.to_string()),
                data: e.data.as_ref().map(to_json),
            }),
        }
    }
}

/// How long a session's mutation record is kept: a client re-sending a
/// mutation later than this (after a day offline) would apply it again.
pub const SESSION_REQUEST_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Deletes session records created before `horizon_ms` (Unix ms), at most
/// `batch` per transaction, oldest first; returns how many went. Keeps
/// `_session_requests` bounded by the retention instead of growing with
/// every mutation ever sent over a socket.
pub fn expire_session_requests(
    db: &Database,
    horizon_ms: f64,
    batch: usize,
) -> Result<usize, DbError> {
    let end = prefix_key(&[Some(&Value::Float64(horizon_ms))]);
    let interval = KeyInterval {
        start: std::ops::Bound::Unbounded,
        end: std::ops::Bound::Excluded(end),
    };
    let mut removed = 0;
    loop {
        let mut tx = db.begin();
        let docs = tx.scan(
            SESSION_REQUESTS_TABLE,
            engine::db::BY_CREATION_TIME,
            &interval,
            Order::Asc,
            Some(batch.max(1)),
        )?;
        if docs.is_empty() {
            return Ok(removed);
        }
        let n = docs.len();
        for doc in docs {
            if let Some(id) = engine::db::doc_id(&doc) {
                tx.delete_system(id)?;
            }
        }
        db.commit(tx)?;
        removed += n;
        if n < batch.max(1) {
            return Ok(removed);
        }
    }
}

/// Defines the index of [`SESSION_REQUESTS_TABLE`] if the database has none
/// yet, and waits until it can be read.
fn ensure_session_requests_index(db: &Database) -> Result<(), String> {
    let mut tx = db.begin();
    let exists = tx
        .index_def(SESSION_REQUESTS_TABLE, SESSION_REQUESTS_INDEX)
        .map_err(|e| e.to_string())?
        .is_some();
    if !exists {
        let fields = ["sessionId", "requestId"].map(|f| FieldPath::parse(f).expect("valid path"));
        tx.add_system_index(SESSION_REQUESTS_TABLE, SESSION_REQUESTS_INDEX, &fields)
            .map_err(|e| e.to_string())?;
        db.commit(tx).map_err(|e| e.to_string())?;
    }
    db.wait_for_index(
        SESSION_REQUESTS_TABLE,
        SESSION_REQUESTS_INDEX,
        Duration::from_secs(600),
    )
    .map_err(|e| e.to_string())
}

/// The record of `sr` in `tx`'s snapshot. The read is in `tx`'s read set
/// either way, so two runs of the same request cannot both commit.
fn find_session_request(
    tx: &mut Transaction<'_>,
    sr: &SessionRequest,
) -> Result<Option<Doc>, DbError> {
    let start = prefix_key(&[
        Some(&Value::String(sr.session_id.clone())),
        Some(&Value::Int64(i64::from(sr.request_id))),
    ]);
    let end = prefix_successor(&start).expect("a key prefix has a successor");
    let interval = KeyInterval {
        start: std::ops::Bound::Included(start),
        end: std::ops::Bound::Excluded(end),
    };
    let mut docs = tx.scan(
        SESSION_REQUESTS_TABLE,
        SESSION_REQUESTS_INDEX,
        &interval,
        Order::Asc,
        Some(1),
    )?;
    Ok(docs.pop())
}

fn record_session_request(
    tx: &mut Transaction<'_>,
    sr: &SessionRequest,
    result: &Value,
) -> Result<(), DbError> {
    let mut fields = engine::value::Object::new();
    fields.insert("sessionId".into(), Value::String(sr.session_id.clone()));
    fields.insert("requestId".into(), Value::Int64(i64::from(sr.request_id)));
    fields.insert("result".into(), Value::String(to_json(result).to_string()));
    tx.insert_system(SESSION_REQUESTS_TABLE, fields).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::db::DbOptions;
    use engine::dir::DataDir;

    #[test]
    fn session_records_are_found_by_session_and_request_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let db = Database::open(&data, DbOptions::default()).unwrap();
        ensure_session_requests_index(&db).unwrap();
        let sr = |s: &str, r: u32| SessionRequest {
            session_id: s.into(),
            request_id: r,
        };
        let mut tx = db.begin();
        for r in 0..5 {
            record_session_request(&mut tx, &sr("a", r), &Value::Float64(f64::from(r))).unwrap();
        }
        record_session_request(&mut tx, &sr("b", 0), &Value::Null).unwrap();
        db.commit(tx).unwrap();
        let mut tx = db.begin();
        let found = find_session_request(&mut tx, &sr("a", 3)).unwrap().unwrap();
        assert_eq!(found.get("result"), Some(&Value::String("3.0".into())));
        assert!(find_session_request(&mut tx, &sr("a", 9))
            .unwrap()
            .is_none());
        assert!(find_session_request(&mut tx, &sr("c", 0))
            .unwrap()
            .is_none());
        drop(tx);
        // Nothing is older than a horizon in the past.
        assert_eq!(expire_session_requests(&db, 0.0, 2).unwrap(), 0);
        let later = now_ms() as f64 + 1000.0;
        assert_eq!(expire_session_requests(&db, later, 2).unwrap(), 6);
        let mut tx = db.begin();
        assert!(find_session_request(&mut tx, &sr("a", 3))
            .unwrap()
            .is_none());
    }
}
