//! The functions HTTP API (`/api/query`, `/api/mutation`, `/api/action`,
//! `/api/function`, `/api/run/...`, `/api/query_ts`, `/api/query_at_ts`):
//! requests and responses exactly as `ConvexHttpClient` and `npx convex
//! run` speak them. Function errors are 200 responses with
//! `status: "error"`; only infrastructure errors use other codes.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::ts::Ts;
use engine::value::json::{from_json, to_clean_json, to_json};
use engine::value::Value;
use runtime::execute::{Call, CallOutcome, Caller};
use runtime::UdfType;
use serde_json::{json, Value as JsonValue};

use crate::admin::{keys_equal, Credentials};
use crate::error::ApiError;
use crate::AppState;

/// How values are written in a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Convex JSON (`$integer`, `$float`, `$bytes`).
    ConvexEncoded,
    /// Clean JSON: int64 as a decimal string, bytes as base64.
    Clean,
}

impl Format {
    /// The format a request asks for; without one, clean JSON (what the
    /// real server picks for current clients).
    pub fn parse(format: Option<&str>) -> Result<Format, ApiError> {
        match format {
            None | Some("json") => Ok(Format::Clean),
            Some("convex_encoded_json") | Some("convex_json") => Ok(Format::ConvexEncoded),
            Some(other) => Err(ApiError::bad_request(
                "BadRequest",
                format!("Unsupported format {other:?}: use \"convex_encoded_json\" or \"json\""),
            )),
        }
    }

    fn write(self, v: &Value) -> JsonValue {
        match self {
            Format::ConvexEncoded => to_json(v),
            Format::Clean => to_clean_json(v),
        }
    }
}

/// The args of a request: one object, sent as `[{...}]` or as a bare
/// object; missing args are `{}`.
pub fn parse_args(args: Option<&JsonValue>) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::bad_request("BadJsonBody", m);
    let obj = match args {
        None | Some(JsonValue::Null) => return Ok(Value::Object(Default::default())),
        Some(JsonValue::Array(items)) => match items.as_slice() {
            [] => return Ok(Value::Object(Default::default())),
            [one] => one,
            _ => {
                return Err(bad(format!(
                    "A function takes one argument object, but {} were sent",
                    items.len()
                )))
            }
        },
        Some(other) => other,
    };
    let v = from_json(obj).map_err(|e| bad(format!("Invalid function arguments: {e}")))?;
    match v {
        Value::Object(_) => Ok(v),
        other => Err(bad(format!(
            "The function arguments must be an object, not {}",
            other.type_name()
        ))),
    }
}

/// Who is calling: the admin (with the right key) or the public.
fn caller(state: &AppState, headers: &HeaderMap, query: Option<&str>) -> Result<Caller, ApiError> {
    match Credentials::from_request(headers, query) {
        Credentials::None => Ok(Caller::Public),
        Credentials::Admin { key, .. } => {
            if keys_equal(&key, &state.admin_key) {
                Ok(Caller::Admin)
            } else {
                Err(ApiError::forbidden(
                    "The provided admin key is invalid for this deployment",
                ))
            }
        }
        Credentials::User(_) => Err(ApiError::unauthorized(
            "This server has no authentication providers configured, so it cannot verify user tokens \
             (Authorization: Bearer). Call without a token, or with the admin key.",
        )),
    }
}

/// Requires the admin key.
pub fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), ApiError> {
    match caller(state, headers, query)? {
        Caller::Admin => Ok(()),
        Caller::Public => Err(ApiError::unauthorized(
            "This endpoint needs the admin key: send `Authorization: Convex <admin key>` \
             (print it with `convexd admin-key`)",
        )),
    }
}

/// Writes a call's outcome as the HTTP API's 200 body.
pub fn outcome_body(outcome: CallOutcome, format: Format) -> JsonValue {
    let mut body = match outcome.result {
        Ok(v) => json!({"status": "success", "value": format.write(&v)}),
        Err(e) => {
            let mut b = json!({"status": "error", "errorMessage": e.message});
            if let Some(data) = e.data {
                b["errorData"] = format.write(&data);
            }
            b
        }
    };
    if !outcome.log_lines.is_empty() {
        body["logLines"] = json!(outcome.log_lines);
    }
    body
}

async fn run_call(state: &Arc<AppState>, call: Call, format: Format) -> Result<Response, ApiError> {
    let executor = Arc::clone(&state.executor);
    let outcome = tokio::task::spawn_blocking(move || executor.call(call))
        .await
        .map_err(|e| ApiError::internal(format!("the function's thread failed: {e}")))?;
    Ok(Json(outcome_body(outcome, format)).into_response())
}

fn body_str<'a>(body: &'a JsonValue, field: &str) -> Result<&'a str, ApiError> {
    body.get(field).and_then(JsonValue::as_str).ok_or_else(|| {
        ApiError::bad_request(
            "BadJsonBody",
            format!("The request body needs a string field `{field}`"),
        )
    })
}

async fn typed(
    state: Arc<AppState>,
    headers: HeaderMap,
    query: Option<String>,
    body: JsonValue,
    kind: UdfType,
    at_ts: Option<Ts>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers, query.as_deref())?;
    let format = Format::parse(body.get("format").and_then(JsonValue::as_str))?;
    let call = Call {
        path: body_str(&body, "path")?.to_string(),
        kind: Some(kind),
        args: parse_args(body.get("args"))?,
        caller,
        at_ts,
        journal: None,
        subscribe: false,
        session_request: None,
    };
    run_call(&state, call, format).await
}

/// `POST /api/query`.
pub async fn query(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Response, ApiError> {
    typed(state, headers, query, body, UdfType::Query, None).await
}

/// `POST /api/mutation`.
pub async fn mutation(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Response, ApiError> {
    typed(state, headers, query, body, UdfType::Mutation, None).await
}

/// `POST /api/action`.
pub async fn action(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Response, ApiError> {
    typed(state, headers, query, body, UdfType::Action, None).await
}

/// `POST /api/query_ts`: the newest snapshot, for `consistentQuery`. The
/// timestamp is a decimal string (nanoseconds do not fit a JS number).
pub async fn query_ts(State(state): State<Arc<AppState>>) -> Json<JsonValue> {
    Json(json!({"ts": state.db.snapshot_ts().0.to_string()}))
}

/// `POST /api/query_at_ts`: a query at an earlier snapshot.
pub async fn query_at_ts(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Response, ApiError> {
    let ts = match body.get("ts") {
        Some(JsonValue::String(s)) => s.parse::<u64>().ok(),
        Some(JsonValue::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::bad_request(
            "BadJsonBody",
            "`ts` must be a timestamp returned by /api/query_ts",
        )
    })?;
    typed(state, headers, query, body, UdfType::Query, Some(Ts(ts))).await
}

/// `POST /api/function` (admin; `npx convex run`): any function,
/// internal ones included.
pub async fn function(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers, query.as_deref())?;
    if let Some(c) = body.get("componentPath").and_then(JsonValue::as_str) {
        if !c.is_empty() {
            return Err(ApiError::bad_request(
                "BadRequest",
                format!("Components are not supported by this server yet (componentPath {c:?})"),
            ));
        }
    }
    let format = Format::parse(body.get("format").and_then(JsonValue::as_str))?;
    let call = Call::new(
        body_str(&body, "path")?,
        None,
        parse_args(body.get("args"))?,
        Caller::Admin,
    );
    run_call(&state, call, format).await
}

/// `POST /api/run/{dir}/{module}/{fn}`: `{args, format?}`, clean JSON by
/// default.
pub async fn run_path(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<JsonValue>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers, query.as_deref())?;
    let format = Format::parse(body.get("format").and_then(JsonValue::as_str))?;
    let path = path.trim_matches('/');
    let udf_path = match path.rsplit_once('/') {
        Some((module, f)) if !module.is_empty() && !f.is_empty() => format!("{module}:{f}"),
        _ => {
            return Err(ApiError::bad_request(
                "BadRequest",
                format!("/api/run/{path}: expected /api/run/<module path>/<function name>"),
            ))
        }
    };
    let call = Call::new(udf_path, None, parse_args(body.get("args"))?, caller);
    run_call(&state, call, format).await
}
