//! Runs the fixture app (`tests/fixtures/app/convex`, bundled by the
//! repository's esbuild as the `convex` CLI bundles it) in real Deno
//! workers, through `Runtime::run` and `Runtime::analyze`, with a test
//! syscall handler over an in-memory store. Proves: analysis output, each
//! kind of function and its syscalls, Convex's error and log formats,
//! determinism, what queries and mutations are refused, the sandbox, time
//! limits, crash recovery, nested calls and concurrency.

mod worker_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::{AnalyzedFunction, EnvVars, RunRequest, RuntimeError, UdfType, Visibility};
use serde_json::{json, Value};
use worker_support::*;

const FETCH_REFUSED: &str = "Can't use fetch() in queries and mutations. Please consider using an action. See https://docs.convex.dev/functions/actions for more details.";

fn function<'a>(analysis: &'a runtime::Analysis, module: &str, name: &str) -> &'a AnalyzedFunction {
    analysis.modules[module]
        .functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{module}:{name} not in the analysis"))
}

#[test]
fn analysis_describes_functions_routes_crons_and_schema() {
    let rt = shared_runtime();
    let analysis = rt.analyze(&fixture_modules()).unwrap();

    // Every module but the _deps chunks, and schema.js on its own.
    let modules: Vec<&str> = analysis.modules.keys().map(String::as_str).collect();
    assert_eq!(
        modules,
        [
            "actions.js",
            "crons.js",
            "determinism.js",
            "errors.js",
            "http.js",
            "lib.js",
            "messages.js",
            "sandbox.js"
        ]
    );
    assert!(analysis.modules["lib.js"].functions.is_empty());

    let list = function(&analysis, "messages.js", "list");
    assert_eq!(
        serde_json::to_value(list).unwrap(),
        json!({"name": "list", "pos": null, "udfType": "Query", "visibility": {"kind": "public"},
               "args": "{\"type\":\"object\",\"value\":{}}", "returns": null})
    );
    let send = function(&analysis, "messages.js", "send");
    assert_eq!(send.udf_type, UdfType::Mutation);
    assert_eq!(
        serde_json::from_str::<Value>(send.args.as_deref().unwrap()).unwrap(),
        json!({"type": "object", "value": {
            "author": {"fieldType": {"type": "string"}, "optional": false},
            "body": {"fieldType": {"type": "string"}, "optional": false}}})
    );
    let get = function(&analysis, "messages.js", "get");
    assert_eq!(
        serde_json::from_str::<Value>(get.returns.as_deref().unwrap()).unwrap()["type"],
        "union"
    );
    assert_eq!(
        serde_json::from_str::<Value>(get.args.as_deref().unwrap()).unwrap(),
        json!({"type": "object", "value": {"id": {"fieldType": {"type": "id", "tableName": "messages"}, "optional": false}}})
    );
    let count = function(&analysis, "messages.js", "count");
    assert_eq!(count.visibility, Some(Visibility::Internal));
    // The function form declares no args: `v.any()`.
    assert_eq!(
        function(&analysis, "messages.js", "legacy").args.as_deref(),
        Some("{\"type\":\"any\"}")
    );
    // No visibility flag at all: public.
    assert_eq!(
        function(&analysis, "messages.js", "noVisibility").visibility,
        Some(Visibility::Public)
    );
    assert_eq!(
        function(&analysis, "messages.js", "default").udf_type,
        UdfType::Query
    );
    let names: Vec<&str> = analysis.modules["messages.js"]
        .functions
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert!(!names.contains(&"notAFunction") && !names.contains(&"helper"));
    let sleepy = function(&analysis, "actions.js", "sleepy");
    assert_eq!(
        (sleepy.udf_type, sleepy.visibility),
        (UdfType::Action, Some(Visibility::Internal))
    );

    // http.js: routes, no functions (HTTP actions are not listed).
    let http = &analysis.modules["http.js"];
    assert!(http.functions.is_empty());
    assert_eq!(
        serde_json::to_value(&http.http_routes).unwrap(),
        json!([
            {"path": "/echo", "method": "POST"},
            {"path": "/fail", "method": "GET"},
            {"path": "/hello", "method": "GET"},
            {"path": "/files/*", "method": "POST"}
        ])
    );
    assert_eq!(
        analysis.modules["crons.js"].cron_specs.as_ref().unwrap()["tidy up"]["name"],
        "messages:count"
    );

    let schema = analysis.schema.as_ref().unwrap();
    assert_eq!(schema["schemaValidation"], true);
    let messages = &schema["tables"][0];
    assert_eq!(messages["tableName"], "messages");
    assert_eq!(
        messages["indexes"],
        json!([{"indexDescriptor": "by_author", "fields": ["author"]}])
    );
    assert_eq!(
        messages["documentType"]["value"]["author"],
        json!({"fieldType": {"type": "string"}, "optional": false})
    );
    assert_eq!(schema["tables"][1]["tableName"], "counters");
}

#[test]
fn analysis_names_the_module_that_fails_to_import() {
    let rt = shared_runtime();
    let mut modules: Vec<(String, runtime::Module)> = fixture_modules()
        .iter()
        .map(|(p, m)| (p.to_owned(), m.clone()))
        .collect();
    let plain = |s: &str| runtime::Module {
        source: s.to_owned(),
        source_map: None,
    };
    modules.push((
        "broken.js".to_owned(),
        plain("throw new Error('at import');"),
    ));
    let set = Arc::new(runtime::ModuleSet::new(modules.clone(), IMPORT_PHASE).unwrap());
    let err = rt.analyze(&set).unwrap_err();
    assert!(err.is_developer_error());
    let text = err.to_string();
    assert!(
        text.starts_with("Failed to analyze broken.js: Uncaught Error: at import"),
        "{text}"
    );

    modules.pop();
    modules.push(("syntax.js".to_owned(), plain("export const = ;")));
    let set = Arc::new(runtime::ModuleSet::new(modules.clone(), IMPORT_PHASE).unwrap());
    let text = rt.analyze(&set).unwrap_err().to_string();
    assert!(text.starts_with("Failed to analyze syntax.js: "), "{text}");

    // The database at import time.
    modules.pop();
    modules.push((
        "dbAtImport.js".to_owned(),
        plain("Convex.syscall('1.0/queryStream', '{}');"),
    ));
    let set = Arc::new(runtime::ModuleSet::new(modules, IMPORT_PHASE).unwrap());
    let text = rt.analyze(&set).unwrap_err().to_string();
    assert!(
        text.starts_with(
            "Failed to analyze dbAtImport.js: Uncaught Error: Can't use database at import time"
        ),
        "{text}"
    );
}

#[test]
fn queries_and_mutations_read_and_write_through_syscalls() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let store = Store::default();
    let mut h = TestHandler::new(&rt, &modules, &store);

    let out = run(
        &rt,
        &mut h,
        "messages:send",
        UdfType::Mutation,
        json!({"author": "ann", "body": "hi"}),
    );
    let id = ok(&out).as_str().unwrap().to_owned();
    assert_eq!(out.log_lines, ["[LOG] 'sent' 'ann'"]);
    assert_eq!(
        h.calls,
        [Recorded {
            op: "1.0/insert".to_owned(),
            args: json!({"table": "messages", "value": {"author": "ann", "body": "hi"}}),
            is_async: true,
        }]
    );

    h.calls.clear();
    let out = run(&rt, &mut h, "messages.js:list", UdfType::Query, json!({}));
    let docs = ok(&out).as_array().unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["body"], "hi");
    let ops: Vec<(&str, bool)> = h
        .calls
        .iter()
        .map(|c| (c.op.as_str(), c.is_async))
        .collect();
    // One document: the stream and its whole first batch in one round trip.
    assert_eq!(ops, [("shim/queryStreamWithBatch", false)]);

    let out = run(
        &rt,
        &mut h,
        "messages:get",
        UdfType::Query,
        json!({"id": id}),
    );
    assert_eq!(ok(&out)["author"], "ann");
    // Internal functions run too: visibility is the caller's business.
    let out = run(&rt, &mut h, "messages:count", UdfType::Query, json!({}));
    assert_eq!(ok(&out), &json!(1));
    // The positional-array form of the arguments.
    let out = run(
        &rt,
        &mut h,
        "messages:hello",
        UdfType::Query,
        json!([{"name": "arr"}]),
    );
    assert_eq!(ok(&out), "Hello, arr!");
    // A path without an export runs the default export.
    let out = run(&rt, &mut h, "messages", UdfType::Query, json!({}));
    assert_eq!(ok(&out), "the default export");
}

/// `queryStreamNext` answers come from `shim/queryStreamNextBatch`, one
/// round trip per batch, the first batch of a query's stream with the
/// stream itself (`shim/queryStreamWithBatch`); `queryCleanup` reaches the
/// host only while the host still holds the stream.
#[test]
fn query_streams_are_read_in_batches() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let store = Store::default();
    let mut h = TestHandler::new(&rt, &modules, &store);
    for body in ["a", "b", "c", "d", "e"] {
        let out = run(
            &rt,
            &mut h,
            "messages:send",
            UdfType::Mutation,
            json!({"author": "ann", "body": body}),
        );
        ok(&out);
    }
    h.calls.clear();
    let out = run(&rt, &mut h, "messages:partial", UdfType::Query, json!({}));
    assert_eq!(
        ok(&out),
        &json!({"seen": ["a", "b", "c"], "all": ["a", "b", "c", "d", "e"], "first": "a"})
    );
    let ops: Vec<(&str, &Value)> = h.calls.iter().map(|c| (c.op.as_str(), &c.args)).collect();
    let batch = "shim/queryStreamNextBatch";
    let start = "shim/queryStreamWithBatch";
    assert_eq!(
        ops,
        [
            // "a" and "b" come with the stream.
            (start, &h.calls[0].args),
            (batch, &json!({"queryId": 0})),
            // Stopped after "c" with "d" still unread: the host holds it.
            ("1.0/queryCleanup", &json!({"queryId": 0})),
            (start, &h.calls[3].args),
            (batch, &json!({"queryId": 1})),
            // "e" and the end: the host closed it, so no cleanup.
            (batch, &json!({"queryId": 1})),
            // `first()`: a limit of 1, so "a" and the end come with the
            // stream.
            (start, &h.calls[6].args),
        ]
    );
    // What the stream was asked for is `queryStream`'s own arguments.
    assert_eq!(
        h.calls[0].args["query"]["source"]["tableName"],
        json!("messages")
    );
    assert!(
        h.calls[0].args["version"].is_string(),
        "{}",
        h.calls[0].args
    );
    assert!(h.streams.is_empty(), "every stream closed: {:?}", h.streams);

    // A mutation reads its stream at its first `next`, not with the stream:
    // it could have written in between.
    h.calls.clear();
    let out = run(
        &rt,
        &mut h,
        "messages:countThenSend",
        UdfType::Mutation,
        json!({"body": "f"}),
    );
    assert_eq!(ok(&out), &json!(5));
    let ops: Vec<&str> = h.calls.iter().map(|c| c.op.as_str()).collect();
    assert_eq!(ops, ["1.0/queryStream", batch, batch, batch, "1.0/insert"]);
    assert!(h.streams.is_empty(), "every stream closed: {:?}", h.streams);
}

/// When a query's first read fails, the stream still opens and the first
/// `next` rejects with the read's error and data, as one-by-one calls
/// would have it.
#[test]
fn a_failed_first_read_rejects_the_first_next() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    let out = run(
        &rt,
        &mut h,
        "messages:readBroken",
        UdfType::Query,
        json!({}),
    );
    assert_eq!(
        ok(&out),
        &json!({"message": "the table \"broken\" cannot be read", "data": {"table": "broken"}})
    );
    let ops: Vec<&str> = h.calls.iter().map(|c| c.op.as_str()).collect();
    // The error came with the stream. A `for await` whose `next` throws
    // does not clean up, so the host still holds the stream, as it would
    // after a failed `queryStreamNext`.
    assert_eq!(ops, ["shim/queryStreamWithBatch"]);
    assert_eq!(h.streams.len(), 1, "{:?}", h.streams);
}

#[test]
fn wrong_paths_and_types_get_convexs_messages() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    let mut message =
        |path: &str, udf_type| err(&run(&rt, &mut h, path, udf_type, json!({}))).to_owned();
    assert_eq!(
        message("messages:send", UdfType::Query),
        "Function messages.js:send is registered as a mutation but is being run as a query."
    );
    assert_eq!(
        message("messages:list", UdfType::Mutation),
        "Function messages.js:list is registered as a query but is being run as a mutation."
    );
    assert_eq!(
        message("messages:list", UdfType::Action),
        "Function messages.js:list is not registered as an action. Did you forget to wrap it with `action`?"
    );
    assert_eq!(
        message("messages:helper", UdfType::Query),
        "Function messages.js:helper is neither a query or mutation. Did you forget to wrap it with `query` or `mutation`?"
    );
    assert_eq!(
        message("messages:nope", UdfType::Query),
        "Couldn't find \"nope\" in module \"messages.js\"."
    );
    assert_eq!(
        message("nope:f", UdfType::Query),
        "Couldn't find JavaScript module 'nope.js'. Did you forget to run `npx convex dev` or `npx convex deploy`?"
    );
    assert!(message("_deps/x:f", UdfType::Query).starts_with("Couldn't find JavaScript module"));
}

#[test]
fn queries_and_mutations_are_deterministic() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    let sample = |h: &mut TestHandler, path: &str, udf_type, seed: u8, now_ms: u64| {
        let mut req = RunRequest::new(modules.clone(), path, udf_type, "{}");
        req.seed = [seed; 32];
        req.now_ms = now_ms;
        let out = rt.run(req, h).unwrap();
        ok(&out).clone()
    };
    let a = sample(
        &mut h,
        "determinism:sample",
        UdfType::Query,
        1,
        1_750_000_000_123,
    );
    let b = sample(
        &mut h,
        "determinism:sample",
        UdfType::Query,
        1,
        1_750_000_000_123,
    );
    assert_eq!(a, b, "same seed and time, same everything");
    assert_eq!(a["now"], json!(1_750_000_000_123u64));
    assert_eq!(a["date"], "2025-06-15T15:06:40.123Z");
    assert_eq!(a["dateCall"], "string");
    assert_eq!(
        a["perf"],
        json!([0, 0]),
        "performance.now() stands still in queries"
    );
    assert_ne!(a["random"][0], a["random"][1]);
    let uuid = a["uuid"].as_str().unwrap();
    assert_eq!((uuid.len(), &uuid[14..15]), (36, "4"));

    let c = sample(
        &mut h,
        "determinism:sample",
        UdfType::Query,
        2,
        1_750_000_000_999,
    );
    assert_ne!(a["random"], c["random"]);
    assert_ne!(a["bytes"], c["bytes"]);
    assert_ne!(a["uuid"], c["uuid"]);
    assert_eq!(c["now"], json!(1_750_000_000_999u64));

    let m1 = sample(
        &mut h,
        "determinism:sampleMutation",
        UdfType::Mutation,
        9,
        5,
    );
    let m2 = sample(
        &mut h,
        "determinism:sampleMutation",
        UdfType::Mutation,
        9,
        5,
    );
    assert_eq!(m1, m2);
    assert_eq!(m1["now"], json!(5));

    // The top level ran with the set's import-phase time.
    let i = sample(&mut h, "determinism:importPhase", UdfType::Query, 3, 77);
    assert_eq!(i["importedAt"], json!(IMPORT_PHASE.unix_time_ms));
}

#[test]
fn queries_and_mutations_refuse_fetch_timers_and_crypto_randomness() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    let mut go = |path: &str, udf_type| run(&rt, &mut h, path, udf_type, json!({}));

    let fetch = go("determinism:useFetch", UdfType::Query);
    let message = err(&fetch);
    assert!(
        message.starts_with(&format!(
            "Uncaught Error: {FETCH_REFUSED}\n    at handler (../convex/determinism.ts:"
        )),
        "{message}"
    );
    // fetch() rejects, so it can be caught.
    let caught = go("determinism:catchFetch", UdfType::Query);
    assert_eq!(ok(&caught), &json!(format!("caught: {FETCH_REFUSED}")));
    // Timers fail the function even when the call is wrapped in try.
    assert_eq!(
        err(&go("determinism:useSetTimeout", UdfType::Mutation)),
        "Can't use setTimeout in queries and mutations. Please consider using an action. See https://docs.convex.dev/functions/actions for more details."
    );
    assert_eq!(
        err(&go("determinism:useSetInterval", UdfType::Query)),
        "Can't use setInterval in queries and mutations. Please consider using an action. See https://docs.convex.dev/functions/actions for more details."
    );
    assert!(err(&go("determinism:bigRandom", UdfType::Query)).starts_with(
        "Uncaught TypeError: Byte length (65537) exceeds the number of bytes of entropy available via this API (65536)"
    ));
    assert!(
        err(&go("determinism:subtleKey", UdfType::Query)).starts_with(
            "Uncaught Error: Can't use cryptographic randomness in queries and mutations."
        )
    );
}

#[test]
fn errors_carry_convex_error_data_and_source_mapped_frames() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());

    let out = run(
        &rt,
        &mut h,
        "errors:convexError",
        UdfType::Mutation,
        json!({}),
    );
    let e = out.result.as_ref().unwrap_err();
    assert!(e.message.starts_with("Uncaught ConvexError: {\"code\":\"NOPE\",\"count\":\"3n\"}\n    at handler (../convex/errors.ts:"), "{}", e.message);
    assert_eq!(
        e.data,
        Some(json!({"code": "NOPE", "count": {"$integer": "AwAAAAAAAAA="}}))
    );

    let out = run(
        &rt,
        &mut h,
        "errors:stringConvexError",
        UdfType::Query,
        json!({}),
    );
    assert_eq!(
        out.result.as_ref().unwrap_err().data,
        Some(json!("plain message"))
    );

    let out = run(&rt, &mut h, "errors:plainError", UdfType::Query, json!({}));
    let e = out.result.as_ref().unwrap_err();
    assert_eq!(e.data, None);
    let mut lines = e.message.lines();
    assert_eq!(lines.next(), Some("Uncaught Error: boom"));
    let frame = lines.next().unwrap();
    assert!(
        frame.starts_with("    at fail (../convex/lib.ts:7:"),
        "{frame}"
    );
    assert!(!e.message.contains("file://"), "{}", e.message);
    assert!(
        !e.message.contains("worker-"),
        "no shim frames: {}",
        e.message
    );

    let out = run(&rt, &mut h, "errors:throwString", UdfType::Query, json!({}));
    assert_eq!(err(&out), "Uncaught a string");

    let out = run(&rt, &mut h, "errors:never", UdfType::Query, json!({}));
    assert_eq!(err(&out), "Returned promise will never resolve");

    // A failed write nobody awaited fails the mutation.
    let out = run(
        &rt,
        &mut h,
        "errors:forgottenAwait",
        UdfType::Mutation,
        json!({}),
    );
    assert!(err(&out).starts_with("Uncaught Error: Update on nonexistent document ID missing"));

    // A rejection the function leaves behind is not blamed on the next call.
    let out = run(&rt, &mut h, "errors:unhandled", UdfType::Query, json!({}));
    assert_eq!(ok(&out), "returned");
    let out = run(
        &rt,
        &mut h,
        "messages:hello",
        UdfType::Query,
        json!({"name": "next"}),
    );
    assert_eq!(ok(&out), "Hello, next!");
}

#[test]
fn console_output_becomes_capped_log_lines() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());

    let out = run(&rt, &mut h, "errors:logs", UdfType::Query, json!({"n": 2}));
    assert_eq!(
        out.log_lines,
        [
            "[LOG] 'line' 0",
            "[LOG] 'line' 1",
            "[WARN] {\n  a: 1,\n  nested: {\n    b: [ 1, 2, 'three' ]\n  }\n}",
            "[ERROR] [Error: shown]",
            "[DEBUG] null undefined 1.5 true 10n",
        ]
    );

    // 256 lines at most, the last one Convex's notice.
    let out = run(
        &rt,
        &mut h,
        "errors:logs",
        UdfType::Query,
        json!({"n": 300}),
    );
    assert_eq!(ok(&out), &json!(300));
    assert_eq!(out.log_lines.len(), 256);
    assert_eq!(out.log_lines[254], "[LOG] 'line' 254");
    assert_eq!(
        out.log_lines[255],
        "[ERROR] Log overflow (maximum 256). Remaining log lines omitted."
    );

    // A line is at most 32 KiB of message.
    let out = run(
        &rt,
        &mut h,
        "errors:logs",
        UdfType::Query,
        json!({"n": 0, "size": 40000}),
    );
    let long = &out.log_lines[0];
    assert!(long.starts_with("[INFO] 'xxxx"));
    assert!(
        long.ends_with("x (truncated due to length)"),
        "{}",
        &long[long.len() - 40..]
    );
    assert_eq!(
        long.len(),
        "[INFO] ".len() + 32768 + " (truncated due to length)".len()
    );

    // Lines do not leak into the next call.
    let out = run(
        &rt,
        &mut h,
        "messages:hello",
        UdfType::Query,
        json!({"name": "q"}),
    );
    assert!(out.log_lines.is_empty());
}

#[test]
fn a_hanging_function_is_killed_at_its_limit_and_the_pool_recovers() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    // Warm: the set is imported, so import time is not in the way.
    let _ = run(&rt, &mut h, "errors:throwString", UdfType::Query, json!({}));

    let started = Instant::now();
    let out = run(&rt, &mut h, "errors:spin", UdfType::Query, json!({}));
    let took = started.elapsed();
    assert_eq!(
        err(&out),
        "Function execution timed out (maximum duration: 1s)"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );

    let mut req = RunRequest::new(modules.clone(), "errors:spinAction", UdfType::Action, "{}");
    req.user_time_limit = Duration::from_millis(300);
    let out = rt.run(req, &mut h).unwrap();
    assert_eq!(
        err(&out),
        "Function execution timed out (maximum duration: 300ms)"
    );

    let out = run(
        &rt,
        &mut h,
        "messages:hello",
        UdfType::Query,
        json!({"name": "alive"}),
    );
    assert_eq!(ok(&out), "Hello, alive!");
}

#[test]
fn time_in_syscalls_does_not_count_against_the_limit() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    h.get_delay = Duration::from_millis(400);
    let mut req = RunRequest::new(
        modules.clone(),
        "messages:manyGets",
        UdfType::Query,
        r#"{"id":"x","n":3}"#,
    );
    req.user_time_limit = Duration::from_millis(500);
    let started = Instant::now();
    let out = rt.run(req, &mut h).unwrap();
    assert_eq!(ok(&out), &json!(0));
    assert!(started.elapsed() >= Duration::from_millis(1200));
    assert!(
        out.user_time < Duration::from_millis(500),
        "{:?}",
        out.user_time
    );
}

#[test]
fn a_worker_killed_mid_call_fails_that_call_only() {
    let (rt, _dir) = new_runtime(1);
    let modules = fixture_modules();
    let store = Store::default();
    let (tx, rx) = mpsc::channel();
    let thread_rt = rt.clone();
    let thread_modules = modules.clone();
    let thread_store = store.clone();
    let running = std::thread::spawn(move || {
        let mut h = TestHandler::new(&thread_rt, &thread_modules, &thread_store);
        h.on_get = Some(tx);
        let mut req = RunRequest::new(
            thread_modules.clone(),
            "errors:signalThenSpin",
            UdfType::Query,
            "{}",
        );
        req.user_time_limit = Duration::from_secs(30);
        thread_rt.run(req, &mut h)
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the function started");
    let pids = rt.busy_worker_pids();
    assert_eq!(pids.len(), 1);
    let status = std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let result = running.join().unwrap();
    match result {
        Err(RuntimeError::WorkerCrashed { pid, path, detail }) => {
            assert_eq!(pid, pids[0]);
            assert_eq!(path, "errors.js:signalThenSpin");
            assert!(detail.contains("signal: 9"), "{detail}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    let mut h = TestHandler::new(&rt, &modules, &store);
    let out = run(
        &rt,
        &mut h,
        "messages:hello",
        UdfType::Query,
        json!({"name": "again"}),
    );
    assert_eq!(ok(&out), "Hello, again!");
    assert_eq!(rt.live_workers().0, 1);
}

#[test]
fn workers_are_sandboxed() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    let mut req = RunRequest::new(modules.clone(), "errors:probe", UdfType::Query, "{}");
    req.env = Arc::new(EnvVars::new(
        [("GREETING".to_owned(), "hi".to_owned())].into(),
    ));
    let out = rt.run(req, &mut h).unwrap();
    assert_eq!(
        ok(&out),
        &json!({
            "deno": "undefined", "window": "undefined", "buffer": "undefined",
            "selfIsGlobal": true, "envValue": "hi", "envMissing": null,
            // Importing a file outside the modules directory is refused by
            // the worker's permissions.
            "dynamicImport": "TypeError: Requires read access to \"/etc/hostname\", run again with the --allow-read flag",
        })
    );
    // New variables reach the same worker; none means none.
    let mut req = RunRequest::new(modules.clone(), "errors:probe", UdfType::Query, "{}");
    req.env = Arc::new(EnvVars::new(
        [("GREETING".to_owned(), "hello again".to_owned())].into(),
    ));
    assert_eq!(ok(&rt.run(req, &mut h).unwrap())["envValue"], "hello again");
    let out = run(&rt, &mut h, "errors:probe", UdfType::Query, json!({}));
    assert_eq!(ok(&out)["envValue"], Value::Null);

    // Deno's API is out of reach of queries and of actions.
    let out = run(&rt, &mut h, "sandbox:readFile", UdfType::Query, json!({}));
    assert_eq!(ok(&out), "no Deno");
    let out = run(
        &rt,
        &mut h,
        "sandbox:readFileInAction",
        UdfType::Action,
        json!({}),
    );
    assert_eq!(ok(&out), "no Deno");
}

/// Serves one HTTP request on loopback with `body`, returning the port.
fn serve_once(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).unwrap();
    });
    port
}

#[test]
fn actions_have_the_network_real_time_and_randomness() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let store = Store::default();
    let mut h = TestHandler::new(&rt, &modules, &store);

    let port = serve_once("pong");
    let url = format!("http://127.0.0.1:{port}/ping");
    let out = run(
        &rt,
        &mut h,
        "actions:fetchUrl",
        UdfType::Action,
        json!({"url": url}),
    );
    assert_eq!(ok(&out), &json!({"status": 200, "body": "pong"}));

    let a = run(
        &rt,
        &mut h,
        "actions:randomness",
        UdfType::Action,
        json!({}),
    );
    let b = run(
        &rt,
        &mut h,
        "actions:randomness",
        UdfType::Action,
        json!({}),
    );
    assert_ne!(ok(&a)["random"], ok(&b)["random"]);
    assert_ne!(ok(&a)["uuid"], ok(&b)["uuid"]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let seen = ok(&b)["now"].as_f64().unwrap();
    assert!((now_ms - seen).abs() < 60_000.0, "{seen} vs {now_ms}");

    let out = run(
        &rt,
        &mut h,
        "actions:sleepy",
        UdfType::Action,
        json!({"ms": 20}),
    );
    assert_eq!(ok(&out), &json!(20));

    // ctx.runQuery from an action: a nested run through the handler.
    let out = run(
        &rt,
        &mut h,
        "actions:viaQuery",
        UdfType::Action,
        json!({"name": "bo"}),
    );
    assert_eq!(ok(&out)["fromQuery"], "Hello, bo!");
    assert_eq!(h.calls.last().unwrap().op, "1.0/actions/query");
    assert_eq!(h.calls.last().unwrap().args["name"], "messages:hello");
}

#[test]
fn nested_calls_never_wait_for_a_full_pool() {
    let (rt, _dir) = new_runtime(1);
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    // A query calling a query, with one query worker allowed: the nested
    // call gets a worker of its own instead of waiting for the outer one.
    let out = run(
        &rt,
        &mut h,
        "messages:nested",
        UdfType::Query,
        json!({"name": "in"}),
    );
    assert_eq!(ok(&out), "Hello, in!");
    assert_eq!(h.calls[0].op, "1.0/runUdf");
    // The extra worker is gone once the nested call ends.
    assert_eq!(rt.live_workers().0, 1);
}

#[test]
fn many_threads_share_a_small_pool() {
    let (rt, _dir) = new_runtime(3);
    let modules = fixture_modules();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let rt = rt.clone();
            let modules = modules.clone();
            std::thread::spawn(move || {
                let mut h = TestHandler::new(&rt, &modules, &Store::default());
                for i in 0..20 {
                    let name = format!("t{t}-{i}");
                    let out = run(
                        &rt,
                        &mut h,
                        "messages:hello",
                        UdfType::Query,
                        json!({"name": name}),
                    );
                    assert_eq!(ok(&out), &json!(format!("Hello, {name}!")));
                    assert!(rt.live_workers().0 <= 3);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(rt.live_workers().0 <= 3);
}

#[test]
fn running_out_of_memory_fails_the_call_with_convexs_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = runtime::RuntimeConfig::new(deno(), dir.path().join("modules"));
    config.heap_limit_mib = 64;
    let rt = runtime::Runtime::new(config).unwrap();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    let mut req = RunRequest::new(modules.clone(), "errors:oom", UdfType::Query, "{}");
    req.user_time_limit = Duration::from_secs(20);
    let out = rt.run(req, &mut h).unwrap();
    assert_eq!(
        err(&out),
        "JavaScript execution ran out of memory (maximum memory usage: 64 MB)"
    );
    let out = run(
        &rt,
        &mut h,
        "messages:hello",
        UdfType::Query,
        json!({"name": "ok"}),
    );
    assert_eq!(ok(&out), "Hello, ok!");
}

#[test]
fn http_actions_route_requests_through_the_router() {
    use runtime::{HttpRequest, HttpRunRequest};
    let rt = shared_runtime();
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    let mut call = |method: &str, path: &str, body: Option<&str>| {
        let request = HttpRequest {
            method: method.to_owned(),
            url: format!("https://example.convex.site{path}"),
            headers: vec![("x-test".to_owned(), "t1".to_owned())],
            body: body.map(|b| b.as_bytes().to_vec()),
        };
        rt.run_http_action(HttpRunRequest::new(modules.clone(), request), &mut h)
            .unwrap()
    };

    let out = call("GET", "/hello", None);
    let response = out.result.unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"hello"[..])
    );

    let out = call("POST", "/echo?x=1", Some("payload"));
    assert_eq!(out.log_lines, ["[LOG] 'echo' 't1'"]);
    let response = out.result.unwrap();
    assert_eq!(response.status, 201);
    assert!(response
        .headers
        .contains(&("x-reply".to_owned(), "yes".to_owned())));
    assert_eq!(
        serde_json::from_slice::<Value>(&response.body).unwrap(),
        json!({"greeting": "Hello, http!", "body": "payload",
               "url": "https://example.convex.site/echo?x=1"})
    );

    let response = call("POST", "/files/a/b", Some("x")).result.unwrap();
    assert_eq!((response.status, response.body.len()), (204, 0));

    let response = call("GET", "/nowhere", None).result.unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (404, &b"No matching routes found"[..])
    );

    let out = call("GET", "/fail", None);
    assert!(out
        .result
        .unwrap_err()
        .message
        .starts_with("Uncaught Error: http boom\n    at "));
}

#[test]
fn actions_store_and_read_files_through_the_storage_js_syscalls() {
    let rt = shared_runtime();
    let modules = fixture_modules();
    let store = Store::default();
    let mut h = TestHandler::new(&rt, &modules, &store);
    let out = run(
        &rt,
        &mut h,
        "actions:storeAndGet",
        UdfType::Action,
        json!({}),
    );
    assert_eq!(
        ok(&out),
        &json!({"id": "storage1", "text": "hi there", "type": "text/plain", "missing": null})
    );
    let stored = h
        .calls
        .iter()
        .find(|c| c.op == "storage/storeBlob")
        .unwrap();
    assert_eq!(stored.args["blob"], "aGkgdGhlcmU=");
    assert_eq!(stored.args["contentType"], "text/plain");
    assert_eq!(stored.args["version"], "1.48.0");
    assert!(stored.is_async);
}

#[test]
fn a_worker_that_writes_garbage_is_killed() {
    // A stand-in for Deno that starts like a worker, then answers a call
    // with bytes that are not a frame.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-deno");
    std::fs::write(
        &fake,
        "#!/bin/sh\n\
         if [ \"$1\" = \"--version\" ]; then echo 'deno 0.0.0'; exit 0; fi\n\
         printf '\\033\\000\\000\\000{\"t\":\"ready\",\"deno\":\"fake\"}'\n\
         /usr/bin/head -c 1 >/dev/null\n\
         printf 'this is not a frame'\n\
         sleep 30\n",
    )
    .unwrap();
    let status = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&fake)
        .status()
        .unwrap();
    assert!(status.success());
    let rt =
        runtime::Runtime::new(runtime::RuntimeConfig::new(fake, dir.path().join("m"))).unwrap();
    assert_eq!(rt.deno_version(), "0.0.0");
    let modules = fixture_modules();
    let mut h = TestHandler::new(&rt, &modules, &Store::default());
    let started = Instant::now();
    let mut req = RunRequest::new(
        modules.clone(),
        "messages:hello",
        UdfType::Query,
        r#"{"name":"x"}"#,
    );
    req.user_time_limit = Duration::from_secs(20);
    match rt.run(req, &mut h) {
        Err(RuntimeError::Protocol { path, detail, .. }) => {
            assert_eq!(path, "messages.js:hello");
            assert!(detail.contains("frame of"), "{detail}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(rt.live_workers().0, 0, "the worker was killed, not kept");
}
