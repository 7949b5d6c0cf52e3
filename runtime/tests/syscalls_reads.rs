//! Reads through `DbSyscalls`: `1.0/get` (documents as Convex JSON, the
//! `table` check, unknown and system tables, `db.system` guards, bad ids),
//! query streams (`queryStream` / `queryStreamNext` / `queryCleanup`: order,
//! limits, filters, index ranges, missing indexes, `_` tables, search
//! refused), `db/normalizeId`, the meta syscalls, and how unknown,
//! mismatched and unsupported operations fail. Every test drives the handler
//! with the JSON `convex/server` 1.48 sends, over a real database in a
//! temporary directory.

mod syscalls_support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use engine::id::{DocumentId, InternalId, TableNumber};
use serde_json::{json, Value as Json};
use syscalls_support::*;

fn foreign_id(table: u32) -> String {
    DocumentId::new(TableNumber::new(table).unwrap(), InternalId([3; 16])).encode()
}

#[test]
fn insert_then_get_round_trips_convex_json() {
    let env = open();
    let id = mutation(&env.db, None, |h| {
        insert(
            h,
            "messages",
            json!({"body": "hi", "n": {"$integer": "KgAAAAAAAAA="}, "b": {"$bytes": "AQID"}}),
        )
    });
    assert_eq!(id.len(), 32, "user table ids are 32 characters");
    let doc = query(&env.db, |h| ok(h, "1.0/get", get_args(&id)));
    assert_eq!(doc["_id"], json!(id));
    assert_eq!(doc["body"], json!("hi"));
    assert_eq!(doc["n"], json!({"$integer": "KgAAAAAAAAA="}));
    assert_eq!(doc["b"], json!({"$bytes": "AQID"}));
    let created = doc["_creationTime"].as_f64().expect("a float");
    assert!(doc["_creationTime"].is_f64(), "_creationTime stays a float");
    assert!(created > 1.6e12, "milliseconds since the epoch: {created}");
    // `db.get("messages", id)` checks the table.
    let same = query(&env.db, |h| ok(h, "1.0/get", get_in_args("messages", &id)));
    assert_eq!(same, doc);
}

#[test]
fn get_checks_the_table_argument() {
    let env = open();
    let id = mutation(&env.db, None, |h| {
        insert(h, "users", json!({"name": "ada"}));
        insert(h, "messages", json!({"body": "x"}))
    });
    let e = query(&env.db, |h| err(h, "1.0/get", get_in_args("users", &id)));
    assert_eq!(
        e,
        "Invalid argument `id` for `db.get`: expected to be an Id<\"users\">, got \
         Id<\"messages\"> instead."
    );
}

#[test]
fn get_of_unknown_or_system_tables_is_null() {
    let env = open();
    mutation(&env.db, None, |h| insert(h, "messages", json!({})));
    query(&env.db, |h| {
        // A table number no table has.
        assert_eq!(ok(h, "1.0/get", get_args(&foreign_id(10_500))), Json::Null);
        // The engine's `_tables` (1) and `_index` (2): invisible.
        assert_eq!(ok(h, "1.0/get", get_args(&foreign_id(1))), Json::Null);
        assert_eq!(ok(h, "1.0/get", get_args(&foreign_id(2))), Json::Null);
        // `db.system.get` of a `_storage` id (table 540): no such table here.
        let system = json!({"id": foreign_id(540), "isSystem": true, "version": VERSION, "table": "_storage"});
        assert_eq!(ok(h, "1.0/get", system), Json::Null);
    });
}

#[test]
fn get_guards_db_system_and_ids() {
    let env = open();
    let id = mutation(&env.db, None, |h| insert(h, "messages", json!({})));
    query(&env.db, |h| {
        let system = json!({"id": id, "isSystem": true, "version": VERSION});
        assert_eq!(
            err(h, "1.0/get", system),
            "User tables cannot be accessed with db.system."
        );
        let bad = err(h, "1.0/get", get_args("nope!"));
        assert!(
            bad.starts_with(
                "Invalid argument `id` for `db.get`: Unable to decode ID: Invalid ID length 5"
            ),
            "{bad}"
        );
        let bad = err(
            h,
            "1.0/get",
            json!({"id": "x", "isSystem": true, "version": VERSION}),
        );
        assert!(
            bad.starts_with("Invalid argument `id` for `db.system.get`: Unable to decode ID"),
            "{bad}"
        );
        assert_eq!(
            err(h, "1.0/get", json!({"isSystem": false})),
            "Invalid arguments for `db.get`: missing field `id`"
        );
    });
}

#[test]
fn query_streams_in_creation_order_with_operators() {
    let env = open();
    let ids: Vec<String> = mutation(&env.db, None, |h| {
        (0..5)
            .map(|n| insert(h, "items", json!({"n": n, "even": n % 2 == 0})))
            .collect()
    });
    query(&env.db, |h| {
        let all = collect(h, full_scan("items"));
        let got: Vec<&str> = all.iter().map(|d| d["_id"].as_str().unwrap()).collect();
        assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());

        let mut desc = full_scan("items");
        desc["source"]["order"] = json!("desc");
        let back = collect(h, desc);
        assert_eq!(back.first().unwrap()["_id"], json!(ids[4]));

        // `.take(2)` appends a limit.
        let mut take = full_scan("items");
        take["operators"] = json!([{"limit": 2}]);
        assert_eq!(collect(h, take).len(), 2);

        // `.filter(q => q.eq(q.field("even"), true))`
        let mut filtered = full_scan("items");
        filtered["operators"] =
            json!([{"filter": {"$eq": [{"$field": "even"}, {"$literal": true}]}}]);
        let evens: Vec<f64> = collect(h, filtered)
            .iter()
            .map(|d| d["n"].as_f64().unwrap())
            .collect();
        assert_eq!(evens, [0.0, 2.0, 4.0]);
    });
}

#[test]
fn query_ids_start_at_zero_and_are_cleaned_up() {
    let env = open();
    mutation(&env.db, None, |h| insert(h, "items", json!({})));
    query(&env.db, |h| {
        let a = ok(
            h,
            "1.0/queryStream",
            json!({"query": full_scan("items"), "version": VERSION}),
        );
        let b = ok(
            h,
            "1.0/queryStream",
            json!({"query": full_scan("items"), "version": VERSION}),
        );
        assert_eq!(a, json!({"queryId": 0}));
        assert_eq!(b, json!({"queryId": 1}));
        // `for await ... break` cleans up an open stream.
        assert_eq!(
            ok(h, "1.0/queryCleanup", json!({"queryId": 1})),
            json!(true)
        );
        assert_eq!(
            err(h, "1.0/queryStreamNext", json!({"queryId": 1})),
            "in-progress query not found"
        );
        // A finished stream is freed.
        let first = ok(h, "1.0/queryStreamNext", json!({"queryId": 0}));
        assert_eq!(first["done"], json!(false));
        let end = ok(h, "1.0/queryStreamNext", json!({"queryId": 0}));
        assert_eq!(end, json!({"value": null, "done": true}));
        assert_eq!(
            err(h, "1.0/queryStreamNext", json!({"queryId": 0})),
            "in-progress query not found"
        );
        assert_eq!(
            err(h, "1.0/queryStreamNext", json!({"queryId": "zero"})),
            "Invalid arguments for `queryStreamNext`: invalid type: string \"zero\", expected u32"
        );
    });
}

/// `shim/queryStreamWithBatch` (the worker shim's, in queries) answers
/// what `queryStream` and then `shim/queryStreamNextBatch` would; a failed
/// first read is in its answer, for the first `queryStreamNext`, while
/// `queryStream`'s own errors are its error.
#[test]
fn a_stream_opens_with_its_first_batch() {
    let env = open();
    mutation(&env.db, None, |h| {
        for n in 0..5 {
            insert(h, "items", json!({"n": n}));
        }
    });
    query(&env.db, |h| {
        let mut take = full_scan("items");
        take["operators"] = json!([{"limit": 3}]);
        let args = json!({"query": take, "version": VERSION});
        let opened = ok(h, "1.0/queryStream", args.clone());
        let batch = ok(
            h,
            "shim/queryStreamNextBatch",
            json!({"queryId": opened["queryId"]}),
        );
        let both = ok(h, "shim/queryStreamWithBatch", args);
        assert_eq!(
            both,
            json!({"queryId": 1, "values": batch["values"], "done": batch["done"]})
        );
        let ns: Vec<f64> = both["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["n"].as_f64().unwrap())
            .collect();
        assert_eq!(ns, [0.0, 1.0, 2.0]);
        assert_eq!(both["done"], json!(true));
        // Done, so closed, as a `queryStreamNext` answering done closes it.
        assert_eq!(
            ok(h, "1.0/queryCleanup", json!({"queryId": 1})),
            json!(false)
        );

        // A filter that fails on the first document.
        let mut bad = full_scan("items");
        bad["operators"] = json!([{"filter": {"$eq": [{"$add": [{"$field": "n"}, {"$literal": "x"}]}, {"$literal": 1}]}}]);
        let args = json!({"query": bad, "version": VERSION});
        let failed = ok(h, "shim/queryStreamWithBatch", args.clone());
        let opened = ok(h, "1.0/queryStream", args);
        let one_by_one = err(
            h,
            "1.0/queryStreamNext",
            json!({"queryId": opened["queryId"]}),
        );
        assert!(one_by_one.starts_with("Cannot add"), "{one_by_one}");
        assert_eq!(
            failed,
            json!({"queryId": 2, "error": {"message": one_by_one}})
        );
        // The stream stays open on the host, as after a failed
        // `queryStreamNext`.
        assert_eq!(
            ok(h, "1.0/queryCleanup", json!({"queryId": 2})),
            json!(true)
        );

        let missing = json!({
            "source": {"type": "IndexRange", "indexName": "items.by_nothing", "range": [], "order": null},
            "operators": [],
        });
        assert_eq!(
            err(
                h,
                "shim/queryStreamWithBatch",
                json!({"query": missing, "version": VERSION})
            ),
            "Index items.by_nothing not found."
        );
    });
}

#[test]
fn index_range_queries_and_missing_indexes() {
    let env = open();
    mutation(&env.db, None, |h| {
        for (channel, n) in [("a", 1), ("b", 2), ("a", 3), ("c", 4)] {
            insert(h, "messages", json!({"channel": channel, "n": n}));
        }
    });
    add_index(&env.db, "messages", "by_channel", &["channel"]);
    query(&env.db, |h| {
        let q = json!({
            "source": {"type": "IndexRange", "indexName": "messages.by_channel",
                       "range": [{"type": "Eq", "fieldPath": "channel", "value": "a"}], "order": null},
            "operators": [],
        });
        let ns: Vec<f64> = collect(h, q)
            .iter()
            .map(|d| d["n"].as_f64().unwrap())
            .collect();
        assert_eq!(ns, [1.0, 3.0]);
        let missing = json!({
            "source": {"type": "IndexRange", "indexName": "messages.by_nothing", "range": [], "order": null},
            "operators": [],
        });
        assert_eq!(
            err(
                h,
                "1.0/queryStream",
                json!({"query": missing, "version": VERSION})
            ),
            "Index messages.by_nothing not found."
        );
        // A table that does not exist yet is empty, not an error.
        assert!(collect(h, full_scan("nothing_here")).is_empty());
    });
}

#[test]
fn system_tables_query_empty_and_search_is_refused() {
    let env = open();
    mutation(&env.db, None, |h| {
        insert(h, "messages", json!({"body": "x"}))
    });
    query(&env.db, |h| {
        // The engine's own catalog stays hidden.
        assert!(collect(h, full_scan("_tables")).is_empty());
        assert!(collect(h, full_scan("_storage")).is_empty());
        let search = json!({
            "source": {"type": "Search", "indexName": "messages.search_body",
                       "filters": [{"type": "Search", "fieldPath": "body", "value": "x"}]},
            "operators": [],
        });
        assert_eq!(
            err(
                h,
                "1.0/queryStream",
                json!({"query": search, "version": VERSION})
            ),
            "Text search (`.withSearchIndex(...)`) is not supported by this server yet \
             (1.0/queryStream)"
        );
        let broken = json!({"source": {"type": "FullTableScan"}, "operators": []});
        let e = err(
            h,
            "1.0/queryStream",
            json!({"query": broken, "version": VERSION}),
        );
        assert!(
            e.starts_with("Invalid argument `query` for `queryStream`: "),
            "{e}"
        );
    });
}

#[test]
fn normalize_id() {
    let env = open();
    let (message, user) = mutation(&env.db, None, |h| {
        (
            insert(h, "messages", json!({})),
            insert(h, "users", json!({})),
        )
    });
    query(&env.db, |h| {
        let n = |h: &mut _, table: &str, id: &str| {
            ok(
                h,
                "1.0/db/normalizeId",
                json!({"table": table, "idString": id}),
            )["id"]
                .clone()
        };
        assert_eq!(n(h, "messages", &message), json!(message));
        assert_eq!(n(h, "messages", &user), Json::Null, "another table's id");
        assert_eq!(n(h, "messages", "garbage"), Json::Null);
        assert_eq!(n(h, "nothing", &message), Json::Null, "no such table");
        assert_eq!(n(h, "_storage", &foreign_id(540)), Json::Null);
        assert_eq!(
            err(
                h,
                "1.0/db/normalizeId",
                json!({"table": "a-b", "idString": message})
            ),
            "Invalid argument `table` for `db.normalizeId`: Table name \"a-b\" contains '-': \
             table names may only contain letters, digits and underscores"
        );
    });
}

#[test]
fn meta_syscalls() {
    let env = open();
    let mut tx = env.db.begin();
    let begin = tx.begin_ts().get();
    let context = runtime::syscalls::CallContext {
        function_name: "messages:list".to_owned(),
        request_id: "req-1".to_owned(),
        ..Default::default()
    };
    let mut h = runtime::syscalls::DbSyscalls::new(&mut tx, runtime::UdfType::Mutation, context);
    let ts = ok(&mut h, "1.0/getSnapshotTs", json!({}));
    let bytes = STANDARD
        .decode(ts["$integer"].as_str().expect("$integer"))
        .unwrap();
    assert_eq!(u64::from_le_bytes(bytes.try_into().unwrap()), begin);
    assert_eq!(
        ok(&mut h, "1.0/getUserIdentity", json!({"requestId": ""})),
        Json::Null
    );
    assert_eq!(
        ok(&mut h, "1.0/getFunctionMetadata", json!({})),
        json!({"name": "messages:list", "componentPath": ""})
    );
    assert_eq!(
        ok(&mut h, "1.0/getDeploymentMetadata", json!({})),
        json!({"name": "self-hosted", "region": null, "class": "s16"})
    );
    assert_eq!(
        ok(&mut h, "1.0/getRequestMetadata", json!({})),
        json!({"ip": null, "userAgent": null, "requestId": "req-1",
               "scheduledFunctionId": null, "authToken": null})
    );
    assert_eq!(
        ok(&mut h, "1.0/componentArgument", json!({"name": "x"})),
        json!({})
    );
    drop(h);
    query(&env.db, |h| {
        assert_eq!(
            err(h, "1.0/getRequestMetadata", json!({})),
            "Cannot get request metadata in a query"
        );
    });
}

#[test]
fn unknown_mismatched_and_unsupported_operations() {
    let env = open();
    query(&env.db, |h| {
        use runtime::SyscallHandler;
        let sync = h.syscall("1.0/get", get_args("x"), false).unwrap_err();
        assert_eq!(sync.message, "Unknown operation 1.0/get");
        let not_async = h
            .syscall("1.0/queryStream", json!({"query": full_scan("t")}), true)
            .unwrap_err();
        assert_eq!(not_async.message, "Unknown async operation 1.0/queryStream");
        assert_eq!(
            h.syscall("1.0/nope", json!({}), true).unwrap_err().message,
            "Unknown async operation 1.0/nope"
        );
        assert_eq!(
            h.syscall("1.0/actions/query", json!({}), true)
                .unwrap_err()
                .message,
            "Unknown async operation 1.0/actions/query"
        );
        for (op, feature) in [
            ("1.0/storageGetUrl", "File storage (`ctx.storage`)"),
            (
                "1.0/storageGenerateUploadUrl",
                "File storage (`ctx.storage`)",
            ),
            ("1.0/schedule", "Scheduling (`ctx.scheduler`)"),
            ("1.0/cancel_job", "Scheduling (`ctx.scheduler`)"),
            (
                "1.0/actions/vectorSearch",
                "Vector search (`ctx.vectorSearch`)",
            ),
            ("1.0/signJwt", "`ctx.auth.signJwt()`"),
            ("1.0/auditLog", "Audit logging"),
            ("1.0/createServiceToken", "Using Convex platform services"),
            (
                "1.0/createFunctionHandle",
                "Creating function handles (`createFunctionHandle`)",
            ),
            (
                "1.0/getTransactionMetrics",
                "`ctx.meta.getTransactionMetrics()`",
            ),
            ("1.0/count", "Counting a table's documents (`.count()`)"),
        ] {
            assert_eq!(
                h.syscall(op, json!({}), true).unwrap_err().message,
                format!("{feature} is not supported by this server yet ({op})")
            );
        }
        let run = h
            .syscall("1.0/runUdf", json!({}), true)
            .unwrap_err()
            .message;
        assert!(
            run.contains("is not supported by this server yet (1.0/runUdf)"),
            "{run}"
        );
    });
}
