//! Writes through `DbSyscalls`: `1.0/shallowMerge` (top-level
//! `{"$undefined": null}` deletes a field), `1.0/replace` (system fields
//! kept), `1.0/remove` (returns the old document), each committed and read
//! back; the `table` check on writes; nonexistent documents and tables;
//! refused values, table names and `_` fields; `db.vars.commitTs` refused;
//! and writes from a query refused.

mod syscalls_support;

use engine::id::{DocumentId, InternalId, TableNumber};
use serde_json::{json, Value as Json};
use syscalls_support::*;

#[test]
fn patch_merges_and_undefined_deletes() {
    let env = open();
    let id = mutation(&env.db, None, |h| {
        insert(h, "users", json!({"name": "ada", "age": 36, "nick": "a"}))
    });
    let before = query(&env.db, |h| ok(h, "1.0/get", get_args(&id)));
    let patched = mutation(&env.db, None, |h| {
        // `db.patch(id, {age: 37, nick: undefined})` as `patchValueToJson`
        // sends it (no `table` for the one-argument form).
        ok(
            h,
            "1.0/shallowMerge",
            json!({"id": id, "value": {"age": 37, "nick": {"$undefined": null}}}),
        )
    });
    assert_eq!(patched["age"], json!(37.0));
    assert!(patched.get("nick").is_none());
    let after = query(&env.db, |h| ok(h, "1.0/get", get_args(&id)));
    assert_eq!(after, patched);
    assert_eq!(after["_creationTime"], before["_creationTime"]);
    assert_eq!(after["name"], json!("ada"));
}

#[test]
fn replace_keeps_system_fields_and_remove_returns_the_document() {
    let env = open();
    let id = mutation(&env.db, None, |h| {
        insert(h, "users", json!({"name": "ada"}))
    });
    let before = query(&env.db, |h| ok(h, "1.0/get", get_args(&id)));
    let replaced = mutation(&env.db, None, |h| {
        ok(
            h,
            "1.0/replace",
            json!({"id": id, "value": {"name": "grace"}, "table": "users"}),
        )
    });
    assert_eq!(
        replaced,
        json!({"_id": id, "_creationTime": before["_creationTime"], "name": "grace"})
    );
    assert_eq!(
        query(&env.db, |h| ok(h, "1.0/get", get_args(&id))),
        replaced
    );
    let removed = mutation(&env.db, None, |h| {
        ok(h, "1.0/remove", json!({"id": id, "table": "users"}))
    });
    assert_eq!(removed, replaced);
    assert_eq!(
        query(&env.db, |h| ok(h, "1.0/get", get_args(&id))),
        Json::Null
    );
}

#[test]
fn writes_to_missing_documents_and_tables() {
    let env = open();
    let id = mutation(&env.db, None, |h| insert(h, "users", json!({})));
    mutation(&env.db, None, |h| ok(h, "1.0/remove", json!({"id": id})));
    mutation(&env.db, None, |h| {
        assert_eq!(
            err(h, "1.0/shallowMerge", json!({"id": id, "value": {}})),
            format!("Update on nonexistent document ID {id}")
        );
        assert_eq!(
            err(h, "1.0/replace", json!({"id": id, "value": {}})),
            format!("Replace on nonexistent document ID {id}")
        );
        assert_eq!(
            err(h, "1.0/remove", json!({"id": id})),
            format!("Delete on nonexistent document ID {id}")
        );
        let nowhere =
            DocumentId::new(TableNumber::new(10_777).unwrap(), InternalId([5; 16])).encode();
        assert_eq!(
            err(h, "1.0/remove", json!({"id": nowhere})),
            format!("Invalid argument `id` for `db.delete`: Table for ID \"{nowhere}\" not found")
        );
        let system = DocumentId::new(TableNumber::new(1).unwrap(), InternalId([5; 16])).encode();
        assert_eq!(
            err(h, "1.0/shallowMerge", json!({"id": system, "value": {}})),
            format!("Invalid argument `id` for `db.patch`: Table for ID \"{system}\" not found")
        );
        let e = err(h, "1.0/replace", json!({"id": "bad", "value": {}}));
        assert!(
            e.starts_with("Invalid argument `id` for `db.replace`: Unable to decode ID:"),
            "{e}"
        );
    });
}

#[test]
fn writes_check_the_table_argument() {
    let env = open();
    let id = mutation(&env.db, None, |h| {
        insert(h, "users", json!({}));
        insert(h, "messages", json!({}))
    });
    mutation(&env.db, None, |h| {
        let expected = |method: &str| {
            format!(
                "Invalid argument `id` for `{method}`: expected to be an Id<\"users\">, got \
                 Id<\"messages\"> instead."
            )
        };
        assert_eq!(
            err(
                h,
                "1.0/shallowMerge",
                json!({"id": id, "value": {}, "table": "users"})
            ),
            expected("db.patch")
        );
        assert_eq!(
            err(
                h,
                "1.0/replace",
                json!({"id": id, "value": {}, "table": "users"})
            ),
            expected("db.replace")
        );
        assert_eq!(
            err(h, "1.0/remove", json!({"id": id, "table": "users"})),
            expected("db.delete")
        );
    });
}

#[test]
fn bad_values_names_and_fields_are_refused() {
    let env = open();
    let id = mutation(&env.db, None, |h| insert(h, "users", json!({})));
    mutation(&env.db, None, |h| {
        assert_eq!(
            err(h, "1.0/insert", json!({"table": "users", "value": [1]})),
            "Invalid argument `value` for `db.insert`: Value must be an Object"
        );
        assert_eq!(
            err(h, "1.0/insert", json!({"table": "_storage", "value": {}})),
            "System tables can only be accessed with db.system."
        );
        assert_eq!(
            err(h, "1.0/insert", json!({"table": "a-b", "value": {}})),
            "Invalid argument `table` for `db.insert`: Table name \"a-b\" contains '-': table \
             names may only contain letters, digits and underscores"
        );
        assert_eq!(
            err(
                h,
                "1.0/insert",
                json!({"table": "users", "value": {"_secret": 1}})
            ),
            "Field '_secret' starts with an underscore, which is only allowed for system fields \
             like '_id'"
        );
        assert_eq!(
            err(
                h,
                "1.0/insert",
                json!({"table": "users", "value": {"$bad": 1}})
            ),
            "Invalid argument `value` for `db.insert`: Field name $bad starts with '$', which is \
             reserved."
        );
        assert_eq!(
            err(h, "1.0/insert", json!({"value": {}})),
            "Invalid arguments for `db.insert`: missing field `table`"
        );
        assert_eq!(
            err(h, "1.0/shallowMerge", json!({"id": id, "value": 3})),
            "Invalid argument `value` for `db.patch`: Value must be an Object"
        );
        assert_eq!(
            err(
                h,
                "1.0/shallowMerge",
                json!({"id": id, "value": {"a": {"$undefined": null, "b": 1}}})
            ),
            "Invalid argument `value` for `db.patch`: Field name $undefined starts with '$', \
             which is reserved. (present at path .a)"
        );
        assert_eq!(
            err(h, "1.0/replace", json!({"id": id, "value": "x"})),
            "Invalid argument `value` for `db.replace`: Value must be an Object"
        );
        assert_eq!(
            err(
                h,
                "1.0/insert",
                json!({"table": "users", "value": {"at": {"$commitTs": null}}})
            ),
            "`db.vars.commitTs` is not supported by this server yet (1.0/insert)"
        );
        assert_eq!(
            err(
                h,
                "1.0/shallowMerge",
                json!({"id": id, "value": {"at": {"$commitTs": null}}})
            ),
            "`db.vars.commitTs` is not supported by this server yet (1.0/shallowMerge)"
        );
    });
    // Nothing of the refused writes was staged.
    let all = query(&env.db, |h| collect(h, full_scan("users")));
    assert_eq!(all.len(), 1);
}

#[test]
fn a_mutation_queries_its_own_writes_in_an_existing_table() {
    let env = open();
    mutation(&env.db, None, |h| {
        insert(h, "users", json!({"name": "ada"}))
    });
    mutation(&env.db, None, |h| {
        let id = insert(h, "users", json!({"name": "grace"}));
        let names: Vec<Json> = collect(h, full_scan("users"))
            .into_iter()
            .map(|d| d["name"].clone())
            .collect();
        assert_eq!(names, [json!("ada"), json!("grace")]);
        ok(h, "1.0/remove", json!({"id": id}));
        assert_eq!(collect(h, full_scan("users")).len(), 1);
    });
}

#[test]
fn queries_cannot_write() {
    let env = open();
    let id = mutation(&env.db, None, |h| insert(h, "users", json!({})));
    query(&env.db, |h| {
        assert_eq!(
            err(h, "1.0/insert", json!({"table": "users", "value": {}})),
            "Cannot call `db.insert` from a query: only mutations can write to the database."
        );
        assert_eq!(
            err(h, "1.0/shallowMerge", json!({"id": id, "value": {}})),
            "Cannot call `db.patch` from a query: only mutations can write to the database."
        );
        assert_eq!(
            err(h, "1.0/replace", json!({"id": id, "value": {}})),
            "Cannot call `db.replace` from a query: only mutations can write to the database."
        );
        assert_eq!(
            err(h, "1.0/remove", json!({"id": id})),
            "Cannot call `db.delete` from a query: only mutations can write to the database."
        );
    });
}

#[test]
fn a_mutation_reads_its_own_writes() {
    let env = open();
    mutation(&env.db, None, |h| {
        let id = insert(h, "users", json!({"name": "ada"}));
        assert_eq!(ok(h, "1.0/get", get_args(&id))["name"], json!("ada"));
        ok(
            h,
            "1.0/shallowMerge",
            json!({"id": id, "value": {"name": "grace"}}),
        );
        assert_eq!(ok(h, "1.0/get", get_args(&id))["name"], json!("grace"));
        // The engine cannot scan a table before the transaction creating it
        // commits: refused, not answered as empty.
        let started = ok(
            h,
            "1.0/queryStream",
            json!({"query": full_scan("users"), "version": VERSION}),
        );
        assert_eq!(
            err(
                h,
                "1.0/queryStreamNext",
                json!({"queryId": started["queryId"]})
            ),
            "Querying table \"users\" in the same mutation that created it (its first insert) is \
             not supported by this server yet (1.0/queryStreamNext)"
        );
        // normalizeId sees the table this transaction created.
        let n = ok(
            h,
            "1.0/db/normalizeId",
            json!({"table": "users", "idString": id}),
        );
        assert_eq!(n["id"], json!(id));
    });
}
