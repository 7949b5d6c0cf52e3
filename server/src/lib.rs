//! `convexd`: the deployment API of a Convex-compatible backend over our
//! engine. Serves the functions HTTP API and the deploy endpoints the
//! official CLI calls; runs user functions through the `runtime` crate.
//!
//! Invariant kept here: the server holds no storage logic. Every read and
//! write goes through a runtime call over the engine's transactions, and
//! the deployed code is stored in the log by the runtime.

pub mod admin;
pub mod deploy;
mod error;
pub mod functions;
pub mod metrics;
pub mod sync;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::routing::{get, post};
use axum::{Json, Router};
use engine::db::{Database, DbOptions};
use engine::dir::DataDir;
use runtime::execute::Executor;
use serde_json::json;
use tower_http::cors::CorsLayer;
use tower_http::decompression::RequestDecompressionLayer;

pub use error::ApiError;

/// The version `/version` reports and the CLI's pushes are analysed as.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Largest request body: a push of a big app is tens of MiB of source and
/// source maps once decompressed.
const MAX_BODY_BYTES: usize = 256 << 20;

/// How `convexd` is started.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Address of the deployment API (port 3210 by default).
    pub listen: Vec<SocketAddr>,
    /// Address of HTTP actions (port 3211 by default).
    pub site_listen: Vec<SocketAddr>,
    /// Public URL of the deployment API (for `get_canonical_urls`).
    pub cloud_url: String,
    /// Public URL of HTTP actions.
    pub site_url: String,
    /// The Deno binary; found in `node_modules` when `None`.
    pub deno: Option<PathBuf>,
    /// Accept this admin key instead of the one kept in the data directory.
    pub admin_key: Option<String>,
    /// Deno worker processes (queries and mutations).
    pub workers: usize,
    pub instance_name: String,
    /// Online log compaction (`None`: off).
    pub compaction: Option<engine::db::compact::OnlineCompaction>,
}

/// What every handler shares.
pub struct AppState {
    pub db: Arc<Database>,
    pub executor: Arc<Executor>,
    pub admin_key: String,
    pub instance_name: String,
    pub cloud_url: String,
    pub site_url: String,
    pushes: Mutex<deploy::Pushes>,
    /// One finish_push at a time.
    deploy_lock: tokio::sync::Mutex<()>,
    /// Worker processes: bounds the live queries a sync cycle runs at once.
    workers: usize,
    /// The sync sessions' hub, started with the first socket.
    sync: std::sync::OnceLock<Result<sync::hub::Hub, String>>,
}

impl AppState {
    /// The sync hub, started on first use (it needs the tokio runtime).
    pub fn sync_hub(&self) -> Result<sync::hub::Hub, String> {
        self.sync
            .get_or_init(|| {
                sync::hub::Hub::start(
                    Arc::clone(&self.db),
                    Arc::clone(&self.executor),
                    self.admin_key.clone(),
                    self.workers * 2,
                )
            })
            .clone()
    }

    /// The hub if a socket has started it.
    pub fn started_sync_hub(&self) -> Option<sync::hub::Hub> {
        self.sync.get().and_then(|h| h.as_ref().ok()).cloned()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("instance_name", &self.instance_name)
            .field("cloud_url", &self.cloud_url)
            .finish_non_exhaustive()
    }
}

/// Opens the data directory, the database and the runtime.
pub fn open(config: &Config) -> Result<(DataDir, Arc<AppState>), String> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let dir = DataDir::open(&config.data_dir).map_err(|e| e.to_string())?;
    let admin_key = match &config.admin_key {
        Some(k) => k.clone(),
        None => admin::load_or_create(dir.path()).map_err(|e| {
            format!(
                "cannot read or create the admin key in {}: {e}",
                dir.path().display()
            )
        })?,
    };
    let db = Arc::new(
        Database::open(&dir, DbOptions::default())
            .map_err(|e| format!("cannot open the database in {}: {e}", dir.path().display()))?,
    );
    match &config.compaction {
        Some(c) => {
            db.start_compaction(c.clone())
                .map_err(|e| format!("cannot start log compaction: {e}"))?;
            tracing::info!(
                keep_history_secs = c.keep_history.as_secs(),
                read_mib_per_sec = c.read_bytes_per_sec >> 20,
                "online log compaction on"
            );
        }
        None => tracing::info!("online log compaction off"),
    }
    let deno = runtime::deno::find_deno(config.deno.as_deref()).map_err(|e| e.to_string())?;
    tracing::info!(path = %deno.path.display(), version = %deno.version, "using Deno");
    let executor = Executor::open(
        Arc::clone(&db),
        runtime::execute::ExecutorConfig {
            deno: deno.path,
            modules_dir: dir.path().join("modules"),
            workers: config.workers,
            cloud_url: config.cloud_url.clone(),
        },
    )
    .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let state = Arc::new(AppState {
        db,
        executor: Arc::new(executor),
        admin_key,
        instance_name: config.instance_name.clone(),
        cloud_url: config.cloud_url.clone(),
        site_url: config.site_url.clone(),
        pushes: Mutex::new(deploy::Pushes::default()),
        deploy_lock: tokio::sync::Mutex::new(()),
        workers: config.workers.max(1),
        sync: std::sync::OnceLock::new(),
    });
    Ok((dir, state))
}

/// The deployment API's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let version = || async { VERSION };
    Router::new()
        .route("/version", get(version))
        .route("/instance_name", get(instance_name))
        .route("/api/v1/get_canonical_urls", get(canonical_urls))
        .route(
            "/api/check_admin_key",
            get(check_admin_key).post(check_admin_key),
        )
        .route("/metrics", get(metrics::metrics))
        .route("/api/query", post(functions::query))
        .route("/api/mutation", post(functions::mutation))
        .route("/api/action", post(functions::action))
        .route("/api/function", post(functions::function))
        .route("/api/run/{*path}", post(functions::run_path))
        .route("/api/query_ts", post(functions::query_ts))
        .route("/api/query_at_ts", post(functions::query_at_ts))
        .route("/api/sync", get(sync::sync_handler))
        .route("/api/{version}/sync", get(sync::sync_handler))
        .route("/api/get_config_hashes", post(deploy::get_config_hashes))
        .route("/api/deploy2/start_push", post(deploy::start_push))
        .route("/api/deploy2/evaluate_push", post(deploy::evaluate_push))
        .route(
            "/api/deploy2/evaluate_schema",
            post(deploy::evaluate_schema),
        )
        .route(
            "/api/deploy2/wait_for_schema",
            post(deploy::wait_for_schema),
        )
        .route("/api/deploy2/finish_push", post(deploy::finish_push))
        .route(
            "/api/deploy2/report_push_completed",
            post(deploy::report_push_completed),
        )
        .fallback(not_found)
        .layer(RequestDecompressionLayer::new())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CorsLayer::very_permissive())
        .with_state(state)
}

/// The HTTP actions' routes: every request goes to `convex/http.js`.
pub fn site_router(state: Arc<AppState>) -> Router {
    Router::new()
        .fallback(http_action)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_HTTP_ACTION_BODY))
        .with_state(state)
}

/// Largest HTTP action request body (Convex's limit is 20 MB).
const MAX_HTTP_ACTION_BODY: usize = 20 << 20;

async fn http_action(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_HTTP_ACTION_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request("BadRequest", format!("reading the body: {e}"))
                .into_response()
        }
    };
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let req = runtime::HttpRequest {
        method: parts.method.as_str().to_string(),
        url: format!(
            "http://{host}{}",
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        ),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: (!body.is_empty()).then(|| body.to_vec()),
    };
    let executor = Arc::clone(&state.executor);
    let response = match tokio::task::spawn_blocking(move || executor.http_action(req)).await {
        Ok(r) => r,
        Err(e) => {
            return ApiError::internal(format!("the HTTP action's thread failed: {e}"))
                .into_response()
        }
    };
    let mut builder = axum::http::Response::builder().status(response.status);
    for (k, v) in &response.headers {
        builder = builder.header(k, v);
    }
    builder
        .body(axum::body::Body::from(response.body))
        .unwrap_or_else(|e| {
            ApiError::internal(format!("a bad HTTP action response: {e}")).into_response()
        })
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("No route for {}", uri.path()))
}

async fn instance_name(axum::extract::State(state): axum::extract::State<Arc<AppState>>) -> String {
    state.instance_name.clone()
}

async fn canonical_urls(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> Json<serde_json::Value> {
    Json(json!({"convexCloudUrl": state.cloud_url, "convexSiteUrl": state.site_url}))
}

async fn check_admin_key(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    functions::require_admin(&state, &headers, query.as_deref())?;
    Ok(Json(json!({})))
}

/// Serves until ctrl-c / SIGTERM.
/// Every ten minutes, deletes the sync sessions' mutation records older
/// than [`runtime::execute::SESSION_REQUEST_RETENTION`].
async fn expire_session_requests(db: Arc<Database>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        every.tick().await;
        let db = Arc::clone(&db);
        let done = tokio::task::spawn_blocking(move || {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
            let horizon =
                now_ms - runtime::execute::SESSION_REQUEST_RETENTION.as_secs_f64() * 1000.0;
            runtime::execute::expire_session_requests(&db, horizon, 1000)
        })
        .await;
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, "expired sync session records"),
            Ok(Err(e)) => tracing::warn!(error = %e, "expiring sync session records failed"),
            Err(e) => tracing::warn!(error = %e, "expiring sync session records panicked"),
        }
    }
}

pub async fn serve(config: Config) -> Result<(), String> {
    let (_dir, state) = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open(&config))
            .await
            .map_err(|e| e.to_string())??
    };
    let app = router(Arc::clone(&state));
    let site = site_router(Arc::clone(&state));
    tokio::spawn(expire_session_requests(Arc::clone(&state.db)));
    let mut servers = Vec::new();
    for (addrs, app, what) in [
        (&config.listen, app, "deployment API"),
        (&config.site_listen, site, "HTTP actions"),
    ] {
        for (i, addr) in addrs.iter().enumerate() {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                // The second loopback family (::1) is a convenience for
                // clients that resolve `localhost` to it; a machine without
                // IPv6 still serves on 127.0.0.1.
                Err(e) if i > 0 => {
                    tracing::warn!("not listening on {addr}: {e}");
                    continue;
                }
                Err(e) => return Err(format!("cannot listen on {addr} ({what}): {e}")),
            };
            tracing::info!("convexd {what} on http://{addr}");
            let app = app.clone();
            servers.push(tokio::spawn(async move {
                use axum::serve::ListenerExt as _;
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown())
                    .await
            }));
        }
    }
    println!(
        "convexd {VERSION} serving {} on {} (data directory {})",
        state.instance_name,
        config.cloud_url,
        config.data_dir.display()
    );
    for s in servers {
        s.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
