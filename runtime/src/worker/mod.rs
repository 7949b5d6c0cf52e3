//! Running Convex functions in pools of Deno worker processes.
//!
//! [`Runtime::run`] takes a worker of the right kind from its pool (queries
//! and mutations: no permissions but reading the modules directory;
//! actions: also the network), sends it the call, answers the syscalls it
//! makes through the caller's [`SyscallHandler`], and returns the function's
//! result and log lines. The frames are described in `protocol.rs` and in
//! the shim, `runtime/js/worker.js`.
//!
//! Time: a call may spend at most its `user_time_limit` in the worker,
//! counting from the moment it is sent, excluding the time the handler
//! takes to answer syscalls and the time the worker takes to import a
//! module set it has not imported before (bounded separately by
//! [`RuntimeConfig::import_time_limit`]). Past the limit the worker is
//! killed and the call fails with Convex's "Function execution timed out"
//! message.
//!
//! Nesting: a handler may call [`Runtime::run`] again on the same thread
//! (`ctx.runQuery` from an action, `1.0/runUdf` from a mutation). Such a
//! nested call never waits for a free worker: it grows the pool past
//! `max_workers` for as long as it runs, because the worker that would free
//! a slot may be the one waiting for it. Nesting is detected per thread; a
//! handler that hands the nested call to another thread and blocks on it
//! should set [`RunRequest::nested`].
//!
//! Invariant kept here: a worker that timed out, crashed, broke the
//! protocol, or was left mid-call by a panicking handler is killed, never
//! reused.

pub(crate) mod pool;
pub(crate) mod process;
pub(crate) mod protocol;
pub(crate) mod watchdog;

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use self::pool::{Checkout, Pool};
use self::process::{Event, SpawnSpec, WorkerKind, WorkerProcess};
use self::protocol::{ErrorPayload, FromWorker, ToWorker};
use self::watchdog::Watchdog;
use crate::deno::{find_deno, DenoError};
use crate::modules::{ModuleSet, ModuleSetId};
use crate::{SyscallHandler, UdfType};

/// The shim every worker runs.
const SHIM_SOURCE: &str = include_str!("../../js/worker.js");

/// How the runtime starts and limits its workers.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The Deno binary (see [`crate::deno::find_deno`]).
    pub deno: PathBuf,
    /// A private directory the runtime owns: module sets are written under
    /// `sets/`, the shim under `shim/`, Deno's cache under `deno/`.
    pub modules_dir: PathBuf,
    /// Query/mutation workers kept at most (nested calls excepted); the
    /// action pool has the same limit.
    pub max_workers: usize,
    /// V8 old-space limit of each worker, in MiB. A worker that runs out
    /// fails its call with Convex's out-of-memory message.
    pub heap_limit_mib: usize,
    /// How long a worker may take to import a module set it has not seen.
    pub import_time_limit: Duration,
    /// How long [`Runtime::analyze`] may take in all.
    pub analyze_time_limit: Duration,
    /// How long a new worker may take to start.
    pub startup_timeout: Duration,
    /// A worker is retired after importing more distinct module sets than
    /// this (old sets' modules stay in its memory until then).
    pub max_module_sets_per_worker: usize,
    /// A worker is retired after this many calls.
    pub max_calls_per_worker: u64,
}

impl RuntimeConfig {
    /// Defaults for everything but the binary and the directory.
    pub fn new(deno: PathBuf, modules_dir: PathBuf) -> RuntimeConfig {
        RuntimeConfig {
            deno,
            modules_dir,
            max_workers: 4,
            heap_limit_mib: 512,
            import_time_limit: Duration::from_secs(30),
            analyze_time_limit: Duration::from_secs(60),
            startup_timeout: Duration::from_secs(30),
            max_module_sets_per_worker: 4,
            max_calls_per_worker: 100_000,
        }
    }
}

/// The default user-time limit of a function of `udf_type`: 1 s for
/// queries and mutations, 10 minutes for actions.
pub fn default_time_limit(udf_type: UdfType) -> Duration {
    match udf_type {
        UdfType::Query | UdfType::Mutation => Duration::from_secs(1),
        UdfType::Action | UdfType::HttpAction => Duration::from_secs(600),
    }
}

/// The deployment's environment variables (`process.env`), with a version
/// so a worker is sent them only when they change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVars {
    vars: BTreeMap<String, String>,
    id: u64,
}

impl EnvVars {
    /// Wraps `vars`.
    pub fn new(vars: BTreeMap<String, String>) -> EnvVars {
        let mut h = Sha256::new();
        for (k, v) in &vars {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        let digest = h.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        EnvVars {
            vars,
            id: u64::from_le_bytes(id),
        }
    }

    /// The variables.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }
}

impl Default for EnvVars {
    fn default() -> EnvVars {
        EnvVars::new(BTreeMap::new())
    }
}

/// One function call to run.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The deployment's modules.
    pub modules: Arc<ModuleSet>,
    /// `"messages:list"`, `"messages.js:list"`, `"dir/mod"` (the default
    /// export), ... canonicalized as Convex does.
    pub path: String,
    /// What the function must be registered as.
    pub udf_type: UdfType,
    /// Convex JSON of the arguments: the object, or the positional array
    /// `[object]` Convex stores.
    pub args_json: String,
    /// Seeds `Math.random` / `crypto.getRandomValues` in queries and
    /// mutations.
    pub seed: [u8; 32],
    /// What `Date.now()` answers in queries and mutations (whole ms since
    /// the epoch).
    pub now_ms: u64,
    /// Passed to `invokeAction` (and echoed into its syscalls).
    pub request_id: String,
    /// User time allowed (see the module docs).
    pub user_time_limit: Duration,
    /// `process.env`.
    pub env: Arc<EnvVars>,
    /// Treat as nested in another call even on a different thread.
    pub nested: bool,
}

impl RunRequest {
    /// A request with a random seed, the current time, an empty request
    /// id, the default time limit and no environment variables.
    pub fn new(
        modules: Arc<ModuleSet>,
        path: impl Into<String>,
        udf_type: UdfType,
        args_json: impl Into<String>,
    ) -> RunRequest {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        RunRequest {
            modules,
            path: path.into(),
            udf_type,
            args_json: args_json.into(),
            seed: rand::random(),
            now_ms,
            request_id: String::new(),
            user_time_limit: default_time_limit(udf_type),
            env: Arc::new(EnvVars::default()),
            nested: false,
        }
    }
}

/// A function's failure as Convex reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct JsError {
    /// `"Uncaught Error: boom\n    at handler (../convex/m.ts:3:9)"`, or a
    /// runtime message (not found, wrong type, timed out).
    pub message: String,
    /// Convex JSON of a `ConvexError`'s data (`Some(Null)` for null data).
    pub data: Option<serde_json::Value>,
}

impl JsError {
    /// An error with a message and no data.
    pub fn from_message(message: impl Into<String>) -> JsError {
        JsError {
            message: message.into(),
            data: None,
        }
    }
}

impl std::fmt::Display for JsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsError {}

/// What a call produced.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    /// The return value (Convex JSON), or the function's error.
    pub result: Result<serde_json::Value, JsError>,
    /// `console.*` output, `[LEVEL] message`, at most 256 lines.
    pub log_lines: Vec<String>,
    /// Time spent in the worker, excluding syscalls and module import.
    pub user_time: Duration,
}

/// A failure of the runtime itself (never the function's fault, except
/// [`RuntimeError::Analysis`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No usable Deno binary.
    #[error(transparent)]
    Deno(#[from] DenoError),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A worker could not be started.
    #[error("could not start a Deno {kind} worker: {detail}")]
    WorkerStart {
        /// The worker kind.
        kind: &'static str,
        /// Why.
        detail: String,
    },
    /// The worker died during the call (killed, crashed).
    #[error("the Deno worker (pid {pid}) running {path} died: {detail}")]
    WorkerCrashed {
        /// Its process id.
        pid: u32,
        /// The function it was running.
        path: String,
        /// Exit status and stderr.
        detail: String,
    },
    /// The worker sent something it should not have; it was killed.
    #[error("the Deno worker (pid {pid}) running {path} broke the protocol: {detail}")]
    Protocol {
        /// Its process id.
        pid: u32,
        /// The function it was running.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// The pushed code failed to import or to describe itself: the
    /// developer's error, naming the module.
    #[error("{message}")]
    Analysis {
        /// `Failed to analyze messages.js: Uncaught Error: ...`.
        message: String,
    },
    /// A kind of call this runtime does not run.
    #[error("{0}")]
    Unsupported(String),
}

impl RuntimeError {
    /// True for errors caused by the developer's code rather than by the
    /// runtime (to be reported as a bad request, not an internal error).
    pub fn is_developer_error(&self) -> bool {
        matches!(self, RuntimeError::Analysis { .. })
    }
}

/// A pool-backed runner of Convex functions. Cheap to clone; `Send +
/// Sync`; usable from many threads at once.
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: RuntimeConfig,
    pub(crate) deno_version: String,
    pub(crate) spawn: SpawnSpec,
    pub(crate) sets_dir: PathBuf,
    written: Mutex<HashSet<ModuleSetId>>,
    pub(crate) udf_pool: Pool,
    pub(crate) action_pool: Pool,
    pub(crate) watchdog: Arc<Watchdog>,
    next_worker_id: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.udf_pool.shutdown_idle();
        self.action_pool.shutdown_idle();
        self.watchdog.shutdown();
    }
}

thread_local! {
    /// How many `run`/`analyze` calls are active on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

struct DepthGuard;

impl DepthGuard {
    /// Enters a call; returns whether it is nested in another.
    fn enter() -> (DepthGuard, bool) {
        let outer = DEPTH.with(|d| {
            let v = d.get();
            d.set(v + 1);
            v
        });
        (DepthGuard, outer > 0)
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// A checked-out worker; killed on drop unless given back.
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    worker: Option<WorkerProcess>,
}

impl Lease<'_> {
    pub(crate) fn worker(&mut self) -> &mut WorkerProcess {
        self.worker.as_mut().expect("lease holds a worker")
    }

    /// Returns the worker to the pool (`healthy`) or kills it.
    pub(crate) fn finish(mut self, healthy: bool) {
        if let Some(w) = self.worker.take() {
            self.pool.checkin(w, healthy);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            self.pool.checkin(w, false);
        }
    }
}

/// Splits a function path into its canonical module path and export name:
/// `messages` -> (`messages.js`, `default`), `dir/mod:f` -> (`dir/mod.js`,
/// `f`), `messages.js:list` -> (`messages.js`, `list`).
pub fn canonicalize_udf_path(path: &str) -> (String, String) {
    let (module, function) = match path.rsplit_once(':') {
        Some((m, f)) => (m, f),
        None => (path, "default"),
    };
    let module = if module.ends_with(".js") {
        module.to_owned()
    } else {
        format!("{module}.js")
    };
    (module, function.to_owned())
}

fn module_not_found(module: &str) -> JsError {
    JsError::from_message(format!(
        "Couldn't find JavaScript module '{module}'. Did you forget to run `npx convex dev` or `npx convex deploy`?"
    ))
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

impl Runtime {
    /// Checks the Deno binary, prepares `modules_dir` and writes the shim.
    /// Workers start lazily, on first use.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let deno = find_deno(Some(&config.deno))?;
        fs::create_dir_all(&config.modules_dir)
            .map_err(io_err(format!("creating {}", config.modules_dir.display())))?;
        let root = config.modules_dir.canonicalize().map_err(io_err(format!(
            "resolving {}",
            config.modules_dir.display()
        )))?;
        let sets_dir = root.join("sets");
        let shim_dir = root.join("shim");
        let deno_dir = root.join("deno");
        for dir in [&sets_dir, &shim_dir, &deno_dir] {
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let shim_hash = protocol::hex(&Sha256::digest(SHIM_SOURCE.as_bytes())[..8]);
        let shim = shim_dir.join(format!("worker-{shim_hash}.js"));
        if !shim.is_file() {
            static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
            let tmp = shim_dir.join(format!(
                ".worker-{shim_hash}-{}-{}.tmp",
                std::process::id(),
                NEXT_TMP.fetch_add(1, Ordering::Relaxed)
            ));
            fs::write(&tmp, SHIM_SOURCE).map_err(io_err(format!("writing {}", tmp.display())))?;
            fs::rename(&tmp, &shim).map_err(io_err(format!("writing {}", shim.display())))?;
        }
        let spawn = SpawnSpec {
            deno: deno.path.clone(),
            shim,
            readable_dir: sets_dir.clone(),
            deno_dir,
            heap_limit_mib: config.heap_limit_mib,
            startup_timeout: config.startup_timeout,
        };
        let udf_pool = Pool::new(
            config.max_workers,
            config.max_module_sets_per_worker,
            config.max_calls_per_worker,
        );
        let action_pool = Pool::new(
            config.max_workers,
            config.max_module_sets_per_worker,
            config.max_calls_per_worker,
        );
        let watchdog = Watchdog::start().map_err(io_err("starting the watchdog thread"))?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                config,
                deno_version: deno.version,
                spawn,
                sets_dir,
                written: Mutex::new(HashSet::new()),
                udf_pool,
                action_pool,
                watchdog,
                next_worker_id: AtomicU64::new(1),
            }),
        })
    }

    /// The Deno version the workers run (`2.9.6`).
    pub fn deno_version(&self) -> &str {
        &self.inner.deno_version
    }

    /// Process ids of the workers running a call right now.
    pub fn busy_worker_pids(&self) -> Vec<u32> {
        let mut pids = self.inner.udf_pool.busy_pids();
        pids.extend(self.inner.action_pool.busy_pids());
        pids
    }

    /// Live workers (idle or busy) in the query/mutation and action pools.
    pub fn live_workers(&self) -> (usize, usize) {
        (
            self.inner.udf_pool.counts().1,
            self.inner.action_pool.counts().1,
        )
    }

    /// Where `modules` is (or is now) written.
    pub(crate) fn ensure_written(&self, modules: &ModuleSet) -> Result<PathBuf, RuntimeError> {
        let id = modules.id();
        let dir = self.inner.sets_dir.join(id.as_str());
        let mut written = self.inner.written.lock().unwrap_or_else(|p| p.into_inner());
        if !written.contains(id) {
            modules
                .write_to(&self.inner.sets_dir)
                .map_err(io_err(format!("writing module set {id}")))?;
            written.insert(id.clone());
        }
        Ok(dir)
    }

    pub(crate) fn lease(
        &self,
        kind: WorkerKind,
        set: Option<&ModuleSetId>,
        nested: bool,
    ) -> Result<Lease<'_>, RuntimeError> {
        let pool = match kind {
            WorkerKind::Udf => &self.inner.udf_pool,
            WorkerKind::Action => &self.inner.action_pool,
        };
        match pool.checkout(set, nested) {
            Checkout::Idle(worker) => Ok(Lease {
                pool,
                worker: Some(worker),
            }),
            Checkout::Spawn => {
                let id = self.inner.next_worker_id.fetch_add(1, Ordering::Relaxed);
                match WorkerProcess::spawn(&self.inner.spawn, kind, id, &self.inner.watchdog) {
                    Ok(worker) => {
                        pool.register(&worker);
                        Ok(Lease {
                            pool,
                            worker: Some(worker),
                        })
                    }
                    Err(e) => {
                        pool.release_slot();
                        Err(RuntimeError::WorkerStart {
                            kind: kind.as_str(),
                            detail: e.to_string(),
                        })
                    }
                }
            }
        }
    }

    /// Runs one function call, answering its syscalls with `handler`.
    ///
    /// `Ok` whenever the function ran or was refused for a reason Convex
    /// reports to the caller (not found, wrong type, threw, timed out, ran
    /// out of memory); `Err` when the runtime failed (no worker, the worker
    /// died or broke the protocol). HTTP actions go through
    /// [`Runtime::run_http_action`].
    pub fn run(
        &self,
        req: RunRequest,
        handler: &mut dyn SyscallHandler,
    ) -> Result<RunOutcome, RuntimeError> {
        if req.udf_type == UdfType::HttpAction {
            return Err(RuntimeError::Unsupported(
                "HTTP actions run through Runtime::run_http_action".to_owned(),
            ));
        }
        let (module, name) = canonicalize_udf_path(&req.path);
        let args = {
            let trimmed = req.args_json.trim_start();
            if trimmed.starts_with('[') {
                trimmed.to_owned()
            } else {
                format!("[{}]", req.args_json)
            }
        };
        let raw = self.invoke(
            Invocation {
                modules: &req.modules,
                module,
                name,
                udf_type: req.udf_type,
                args,
                seed: req.seed,
                now_ms: req.now_ms,
                request_id: &req.request_id,
                user_time_limit: req.user_time_limit,
                env: &req.env,
                nested: req.nested,
            },
            handler,
        )?;
        let result = match raw.result {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(v) => Ok(v),
                Err(e) => {
                    return Err(RuntimeError::Protocol {
                        pid: raw.pid,
                        path: req.path,
                        detail: format!("the result is not JSON: {e}"),
                    })
                }
            },
            Err(e) => Err(e),
        };
        Ok(RunOutcome {
            result,
            log_lines: raw.log_lines,
            user_time: raw.user_time,
        })
    }

    /// Runs the HTTP action `http.js`'s router routes `req.request` to,
    /// answering its syscalls with `handler`. No route gives a 404 response
    /// with "No matching routes found". The request and response bodies are
    /// buffered whole.
    pub fn run_http_action(
        &self,
        req: HttpRunRequest,
        handler: &mut dyn SyscallHandler,
    ) -> Result<HttpOutcome, RuntimeError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let args = serde_json::json!({
            "method": req.request.method,
            "url": req.request.url,
            "headers": req.request.headers,
            "body": req.request.body.as_ref().map(|b| b64.encode(b)),
        })
        .to_string();
        let raw = self.invoke(
            Invocation {
                modules: &req.modules,
                module: "http.js".to_owned(),
                name: "default".to_owned(),
                udf_type: UdfType::HttpAction,
                args,
                seed: [0; 32],
                now_ms: 0,
                request_id: &req.request_id,
                user_time_limit: req.user_time_limit,
                env: &req.env,
                nested: req.nested,
            },
            handler,
        )?;
        let result = match raw.result {
            Ok(text) => {
                let broken = |detail: String| RuntimeError::Protocol {
                    pid: raw.pid,
                    path: "http.js".to_owned(),
                    detail,
                };
                let wire: HttpResponseWire = serde_json::from_str(&text)
                    .map_err(|e| broken(format!("the response is not valid: {e}")))?;
                let body = b64
                    .decode(wire.body)
                    .map_err(|e| broken(format!("the response body is not base64: {e}")))?;
                Ok(HttpResponse {
                    status: wire.status,
                    headers: wire.headers,
                    body,
                })
            }
            Err(e) => Err(e),
        };
        Ok(HttpOutcome {
            result,
            log_lines: raw.log_lines,
            user_time: raw.user_time,
        })
    }

    fn invoke(
        &self,
        inv: Invocation<'_>,
        handler: &mut dyn SyscallHandler,
    ) -> Result<RawOutcome, RuntimeError> {
        let refused = |e: JsError| RawOutcome {
            result: Err(e),
            log_lines: Vec::new(),
            user_time: Duration::ZERO,
            pid: 0,
        };
        let module = inv.module;
        let name = inv.name;
        if module.starts_with("_deps/") || inv.modules.get(&module).is_none() {
            return Ok(refused(module_not_found(&module)));
        }
        let kind = match inv.udf_type {
            UdfType::Query | UdfType::Mutation => WorkerKind::Udf,
            UdfType::Action | UdfType::HttpAction => WorkerKind::Action,
        };
        let dir = self.ensure_written(inv.modules)?;
        let dir_url = protocol::dir_url(&dir);
        let (_depth, nested) = DepthGuard::enter();
        let set_id = inv.modules.id().clone();
        let mut lease = self.lease(kind, Some(&set_id), nested || inv.nested)?;

        let phase = inv.modules.import_phase();
        let worker = lease.worker();
        let pid = worker.pid();
        let env = (worker.env_id != Some(inv.env.id)).then_some(&inv.env.vars);
        let canonical_path = format!("{module}:{name}");
        let needs_import = !worker.loaded.contains(&(set_id.clone(), module.clone()));
        let message = ToWorker::Run {
            dir_url: &dir_url,
            module: &module,
            name: &name,
            udf_type: inv.udf_type.as_str(),
            args: &inv.args,
            seed: protocol::hex(&inv.seed),
            now_ms: inv.now_ms,
            request_id: inv.request_id,
            import_seed: protocol::hex(&phase.rng_seed),
            import_now_ms: phase.unix_time_ms,
            importing: needs_import,
            env,
        };
        if let Err(e) = worker.send(&message) {
            let detail = format!("sending the call: {e}; {}", worker.exit_detail());
            return Err(RuntimeError::WorkerCrashed {
                pid,
                path: canonical_path,
                detail,
            });
        }
        worker.env_id = Some(inv.env.id);
        worker.calls += 1;

        let mut call = CallState {
            path: canonical_path,
            user_limit: inv.user_time_limit,
            import_limit: self.inner.config.import_time_limit,
            importing: needs_import,
            user_time: Duration::ZERO,
            import_time: Duration::ZERO,
            log_lines: Vec::new(),
            killed: false,
        };
        let outcome = drive(
            &self.inner.watchdog,
            &mut lease,
            &mut call,
            handler,
            |worker, _| {
                worker.loaded.insert((set_id.clone(), module.clone()));
                if !worker.sets.contains(&set_id) {
                    worker.sets.push(set_id.clone());
                }
            },
        );
        let call_killed = call.killed;
        let mut raw = |result| RawOutcome {
            result,
            log_lines: std::mem::take(&mut call.log_lines),
            user_time: call.user_time,
            pid,
        };
        match outcome {
            Ok(Finished::Done(result)) => {
                lease.finish(!call_killed);
                Ok(raw(result.map_err(|e| JsError {
                    message: e.message,
                    data: e.data,
                })))
            }
            Ok(Finished::Analysis { .. }) => {
                lease.finish(false);
                Err(RuntimeError::Protocol {
                    pid,
                    path: call.path,
                    detail: "an analysis answered a run".to_owned(),
                })
            }
            Ok(Finished::TimedOut(limit)) => {
                lease.finish(false);
                Ok(raw(Err(JsError::from_message(format!(
                    "Function execution timed out (maximum duration: {limit:?})"
                )))))
            }
            Ok(Finished::OutOfMemory) => {
                lease.finish(false);
                Ok(raw(Err(JsError::from_message(format!(
                    "JavaScript execution ran out of memory (maximum memory usage: {} MB)",
                    self.inner.config.heap_limit_mib
                )))))
            }
            Err(e) => {
                lease.finish(false);
                Err(e)
            }
        }
    }
}

/// One call as the worker gets it.
struct Invocation<'a> {
    modules: &'a Arc<ModuleSet>,
    module: String,
    name: String,
    udf_type: UdfType,
    /// JSON text: the positional args array, or an HTTP action's request.
    args: String,
    seed: [u8; 32],
    now_ms: u64,
    request_id: &'a str,
    user_time_limit: Duration,
    env: &'a EnvVars,
    nested: bool,
}

/// What a call produced, its result still JSON text.
struct RawOutcome {
    result: Result<String, JsError>,
    log_lines: Vec<String>,
    user_time: Duration,
    pid: u32,
}

/// An HTTP request for an HTTP action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The full URL (`https://host/path?query`); its path picks the route.
    pub url: String,
    /// Header name/value pairs, in order.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

/// The response of an HTTP action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header name/value pairs (names lowercase, as `Headers` keeps them).
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct HttpResponseWire {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// One HTTP action call to run.
#[derive(Clone, Debug)]
pub struct HttpRunRequest {
    /// The deployment's modules (with `http.js`).
    pub modules: Arc<ModuleSet>,
    /// The request.
    pub request: HttpRequest,
    /// Echoed into the action's syscalls.
    pub request_id: String,
    /// User time allowed.
    pub user_time_limit: Duration,
    /// `process.env`.
    pub env: Arc<EnvVars>,
    /// Treat as nested in another call even on a different thread.
    pub nested: bool,
}

impl HttpRunRequest {
    /// A request with the action time limit and no environment variables.
    pub fn new(modules: Arc<ModuleSet>, request: HttpRequest) -> HttpRunRequest {
        HttpRunRequest {
            modules,
            request,
            request_id: String::new(),
            user_time_limit: default_time_limit(UdfType::HttpAction),
            env: Arc::new(EnvVars::default()),
            nested: false,
        }
    }
}

/// What an HTTP action produced.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpOutcome {
    /// The response, or the action's error (the server answers 500).
    pub result: Result<HttpResponse, JsError>,
    /// `console.*` output.
    pub log_lines: Vec<String>,
    /// Time spent in the worker, excluding syscalls and module import.
    pub user_time: Duration,
}

/// The bookkeeping of one call in flight.
pub(crate) struct CallState {
    pub path: String,
    pub user_limit: Duration,
    pub import_limit: Duration,
    /// Still importing the module (its time counts against `import_limit`).
    pub importing: bool,
    pub user_time: Duration,
    pub import_time: Duration,
    pub log_lines: Vec<String>,
    /// The worker is dead or was killed: never reuse it.
    pub killed: bool,
}

/// How a call ended, short of a runtime failure.
pub(crate) enum Finished {
    Done(Result<String, ErrorPayload>),
    Analysis {
        modules: BTreeMap<String, crate::analyze::AnalyzedModule>,
        schema: Option<serde_json::Value>,
    },
    TimedOut(Duration),
    OutOfMemory,
}

/// The most log lines a call keeps (the shim enforces the same bound and
/// writes Convex's overflow line).
const MAX_LOG_LINES: usize = 256;

/// Answers the worker's frames until the call ends. `on_imported` runs
/// when the worker reports that it finished importing the module. The
/// worker's time is limited through `watchdog`: armed while the worker
/// runs, disarmed while `handler` answers a syscall.
pub(crate) fn drive(
    watchdog: &Watchdog,
    lease: &mut Lease<'_>,
    call: &mut CallState,
    handler: &mut dyn SyscallHandler,
    mut on_imported: impl FnMut(&mut WorkerProcess, &mut CallState),
) -> Result<Finished, RuntimeError> {
    let worker = lease.worker();
    let id = worker.id;
    let switch = Arc::clone(worker.switch());
    let current_limit = |call: &CallState| {
        if call.importing {
            (call.import_limit, call.import_time)
        } else {
            (call.user_limit, call.user_time)
        }
    };
    let arm = |call: &CallState, since: Instant| {
        let (limit, spent) = current_limit(call);
        watchdog.arm(id, since + limit.saturating_sub(spent), &switch);
    };
    // The worker has been running since `since`.
    let mut since = Instant::now();
    arm(call, since);
    let finished = loop {
        let event = worker.recv();
        let now = Instant::now();
        if call.importing {
            call.import_time += now - since;
        } else {
            call.user_time += now - since;
        }
        since = now;
        if switch.fired() {
            let (limit, _) = current_limit(call);
            tracing::info!(
                worker = id,
                pid = worker.pid(),
                path = call.path,
                "function timed out after {limit:?}; its worker was killed"
            );
            call.killed = true;
            break Ok(Finished::TimedOut(limit));
        }
        let message = match event {
            Event::Message(m) => m,
            Event::Closed => {
                call.killed = true;
                let detail = worker.exit_detail();
                if worker
                    .stderr_tail()
                    .iter()
                    .any(|l| l.contains("out of memory") || l.contains("heap limit"))
                {
                    break Ok(Finished::OutOfMemory);
                }
                break Err(RuntimeError::WorkerCrashed {
                    pid: worker.pid(),
                    path: call.path.clone(),
                    detail,
                });
            }
            Event::Garbage(detail) => {
                call.killed = true;
                worker.kill();
                break Err(RuntimeError::Protocol {
                    pid: worker.pid(),
                    path: call.path.clone(),
                    detail,
                });
            }
        };
        match message {
            FromWorker::Log { line } => {
                if call.log_lines.len() < MAX_LOG_LINES {
                    call.log_lines.push(line);
                }
            }
            FromWorker::Imported => {
                call.importing = false;
                on_imported(worker, call);
                arm(call, since);
            }
            FromWorker::Syscall { op, args, is_async } => {
                watchdog.disarm(id);
                let reply = match serde_json::from_str::<serde_json::Value>(&args) {
                    Ok(args) => match handler.syscall(&op, args, is_async) {
                        Ok(value) => ToWorker::Result {
                            ok: Some(
                                serde_json::to_string(&value).unwrap_or_else(|_| "null".into()),
                            ),
                            error: None,
                        },
                        Err(e) => ToWorker::Result {
                            ok: None,
                            error: Some(ErrorPayload {
                                message: e.message,
                                data: e.data,
                            }),
                        },
                    },
                    Err(e) => ToWorker::Result {
                        ok: None,
                        error: Some(ErrorPayload {
                            message: format!("Invalid JSON in the arguments of {op}: {e}"),
                            data: None,
                        }),
                    },
                };
                if let Err(e) = worker.send(&reply) {
                    call.killed = true;
                    let detail = format!("answering {op}: {e}; {}", worker.exit_detail());
                    break Err(RuntimeError::WorkerCrashed {
                        pid: worker.pid(),
                        path: call.path.clone(),
                        detail,
                    });
                }
                since = Instant::now();
                arm(call, since);
            }
            FromWorker::Done { ok, error } => {
                break Ok(Finished::Done(match (ok, error) {
                    (_, Some(e)) => Err(e),
                    (Some(ok), None) => Ok(ok),
                    (None, None) => Ok("null".to_owned()),
                }))
            }
            FromWorker::Analysis { modules, schema } => {
                break Ok(Finished::Analysis { modules, schema })
            }
            FromWorker::Ready { .. } => {
                call.killed = true;
                worker.kill();
                break Err(RuntimeError::Protocol {
                    pid: worker.pid(),
                    path: call.path.clone(),
                    detail: "a second ready frame".to_owned(),
                });
            }
        }
    };
    watchdog.disarm(id);
    // The watchdog may have fired between the last frame and the disarm: the
    // answer stands (it came in time), the worker does not.
    if switch.fired() {
        call.killed = true;
    }
    finished
}

impl Runtime {
    /// The configuration the runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_canonicalize_as_convex_does() {
        let c = |p: &str| canonicalize_udf_path(p);
        assert_eq!(c("messages"), ("messages.js".into(), "default".into()));
        assert_eq!(c("messages.js"), ("messages.js".into(), "default".into()));
        assert_eq!(c("messages:list"), ("messages.js".into(), "list".into()));
        assert_eq!(c("dir/mod.js:fn"), ("dir/mod.js".into(), "fn".into()));
        assert_eq!(c("dir/mod:fn"), ("dir/mod.js".into(), "fn".into()));
    }

    #[test]
    fn env_ids_follow_content() {
        let a = EnvVars::new([("A".to_owned(), "1".to_owned())].into());
        let b = EnvVars::new([("A".to_owned(), "2".to_owned())].into());
        assert_ne!(a.id, b.id);
        assert_eq!(a.id, EnvVars::new(a.vars.clone()).id);
    }

    #[test]
    fn runtime_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Runtime>();
    }
}
