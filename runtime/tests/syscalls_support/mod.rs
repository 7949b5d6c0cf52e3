//! Helpers shared by the syscall scenario tests: a database in a temporary
//! directory, a handler per execution (as the worker makes one per function
//! call), and the argument shapes `convex/server` 1.48 sends
//! (`database_impl.js`, `query_impl.js`).

#![allow(dead_code, reason = "each test binary uses a different subset")]

use engine::db::{Database, DbOptions, FieldPath};
use engine::dir::DataDir;
use runtime::schema::Schema;
use runtime::syscalls::{CallContext, DbSyscalls};
use runtime::{SyscallError, SyscallHandler, UdfType};
use serde_json::{json, Value as Json};

/// The `version` field `convex/server` puts in its requests.
pub const VERSION: &str = "1.48.0";

/// The syscalls the JavaScript makes with `Convex.syscall` (synchronous);
/// everything else goes through `Convex.asyncSyscall`.
const SYNC_OPS: [&str; 6] = [
    "1.0/queryStream",
    "shim/queryStreamWithBatch",
    "1.0/queryCleanup",
    "1.0/db/normalizeId",
    "1.0/getSnapshotTs",
    "1.0/componentArgument",
];

/// An open database; `db` drops before the directory it lives in.
pub struct Env {
    pub db: Database,
    _dir: DataDir,
    _tmp: tempfile::TempDir,
}

pub fn open() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = DataDir::open(tmp.path()).expect("data dir");
    let db = Database::open(&dir, DbOptions::default()).expect("open database");
    Env {
        db,
        _dir: dir,
        _tmp: tmp,
    }
}

/// Calls `op` the way the JavaScript would (sync or async by name).
pub fn call(h: &mut DbSyscalls<'_, '_>, op: &str, args: Json) -> Result<Json, SyscallError> {
    h.syscall(op, args, !SYNC_OPS.contains(&op))
}

/// [`call`] that must succeed.
pub fn ok(h: &mut DbSyscalls<'_, '_>, op: &str, args: Json) -> Json {
    match call(h, op, args.clone()) {
        Ok(j) => j,
        Err(e) => panic!("{op} {args} failed: {}", e.message),
    }
}

/// [`call`] that must fail; its message.
pub fn err(h: &mut DbSyscalls<'_, '_>, op: &str, args: Json) -> String {
    match call(h, op, args.clone()) {
        Ok(j) => panic!("{op} {args} succeeded with {j}"),
        Err(e) => e.message,
    }
}

fn context() -> CallContext {
    CallContext {
        function_name: "messages:test".to_owned(),
        ..CallContext::default()
    }
}

/// Runs `f` as a mutation and commits its transaction.
pub fn mutation<R>(
    db: &Database,
    schema: Option<&Schema>,
    f: impl FnOnce(&mut DbSyscalls<'_, '_>) -> R,
) -> R {
    let mut tx = db.begin();
    let r = {
        let mut h = DbSyscalls::new(&mut tx, UdfType::Mutation, context());
        if let Some(s) = schema {
            h = h.with_schema(s);
        }
        f(&mut h)
    };
    db.commit(tx).expect("commit");
    r
}

/// Runs `f` as a query (nothing to commit).
pub fn query<R>(db: &Database, f: impl FnOnce(&mut DbSyscalls<'_, '_>) -> R) -> R {
    let mut tx = db.begin();
    let mut h = DbSyscalls::new(&mut tx, UdfType::Query, context());
    f(&mut h)
}

/// `db.insert(table, value)`: returns the new id.
pub fn insert(h: &mut DbSyscalls<'_, '_>, table: &str, value: Json) -> String {
    let r = ok(h, "1.0/insert", json!({"table": table, "value": value}));
    r["_id"].as_str().expect("_id").to_owned()
}

/// `db.get(id)`.
pub fn get_args(id: &str) -> Json {
    json!({"id": id, "isSystem": false, "version": VERSION})
}

/// `db.get(table, id)`.
pub fn get_in_args(table: &str, id: &str) -> Json {
    json!({"id": id, "isSystem": false, "version": VERSION, "table": table})
}

/// `db.query(table)` as a full table scan.
pub fn full_scan(table: &str) -> Json {
    json!({"source": {"type": "FullTableScan", "tableName": table, "order": null}, "operators": []})
}

/// `queryStream` + `queryStreamNext` until done, as `.collect()` does.
pub fn collect(h: &mut DbSyscalls<'_, '_>, query: Json) -> Vec<Json> {
    let started = ok(
        h,
        "1.0/queryStream",
        json!({"query": query, "version": VERSION}),
    );
    let query_id = started["queryId"].clone();
    let mut out = Vec::new();
    loop {
        let next = ok(h, "1.0/queryStreamNext", json!({"queryId": query_id}));
        if next["done"] == json!(true) {
            assert_eq!(next["value"], Json::Null);
            break;
        }
        out.push(next["value"].clone());
    }
    // `closeQuery` cleans up at the end; the stream is already gone.
    assert_eq!(
        ok(h, "1.0/queryCleanup", json!({"queryId": query_id})),
        json!(false)
    );
    out
}

/// Defines `table.name` over `fields` and waits until it is usable.
pub fn add_index(db: &Database, table: &str, name: &str, fields: &[&str]) {
    let fields: Vec<FieldPath> = fields
        .iter()
        .map(|f| FieldPath::parse(f).expect("field path"))
        .collect();
    let mut tx = db.begin();
    tx.add_index(table, name, &fields).expect("add index");
    db.commit(tx).expect("commit index");
    db.wait_for_index(table, name, std::time::Duration::from_secs(10))
        .expect("index ready");
}
