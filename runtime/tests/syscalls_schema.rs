//! The schema enforced through `DbSyscalls` and checked against existing
//! data: inserts, patches (including deleting a required field with
//! `{"$undefined": null}`) and replaces that break the schema are refused
//! with Convex's message and leave nothing behind, even when the function
//! catches the error and commits; `v.id` fields are checked against the real
//! tables; tables outside the schema and schemas without validation are not
//! checked; `check_existing` (one transaction, or in batches) names the
//! first violating document.

mod syscalls_support;

use runtime::schema::{check_existing, check_existing_in_batches, Schema, SchemaError};
use serde_json::{json, Value as Json};
use syscalls_support::*;

/// `defineSchema({messages: defineTable({author: v.string(), body:
/// v.string(), channel: v.optional(v.id("channels"))}).index("by_author",
/// ["author"]), channels: defineTable({name: v.string()})}).export()`
fn schema_json(validation: bool) -> Json {
    json!({
        "tables": [
            {
                "tableName": "messages",
                "indexes": [{"indexDescriptor": "by_author", "fields": ["author"]}],
                "stagedDbIndexes": [],
                "searchIndexes": [],
                "stagedSearchIndexes": [],
                "vectorIndexes": [],
                "stagedVectorIndexes": [],
                "documentType": {"type": "object", "value": {
                    "author": {"fieldType": {"type": "string"}, "optional": false},
                    "body": {"fieldType": {"type": "string"}, "optional": false},
                    "channel": {"fieldType": {"type": "id", "tableName": "channels"}, "optional": true},
                }},
            },
            {
                "tableName": "channels",
                "indexes": [],
                "stagedDbIndexes": [],
                "searchIndexes": [],
                "stagedSearchIndexes": [],
                "vectorIndexes": [],
                "stagedVectorIndexes": [],
                "documentType": {"type": "object", "value": {
                    "name": {"fieldType": {"type": "string"}, "optional": false},
                }},
            },
        ],
        "schemaValidation": validation,
    })
}

fn schema() -> Schema {
    Schema::from_json_str(&schema_json(true).to_string()).expect("schema")
}

const VALIDATOR: &str = "v.object({author: v.string(), body: v.string(), channel: \
                         v.optional(v.id(\"channels\"))})";

#[test]
fn inserts_that_break_the_schema_are_refused() {
    let env = open();
    let s = schema();
    mutation(&env.db, Some(&s), |h| {
        insert(h, "messages", json!({"author": "ada", "body": "hi"}));
        assert_eq!(
            err(
                h,
                "1.0/insert",
                json!({"table": "messages", "value": {"body": "hi"}})
            ),
            format!(
                "Failed to insert or update a document in table \"messages\" because it does not \
                 match the schema: Object is missing the required field `author`. Consider \
                 wrapping the field validator in `v.optional(...)` if this is expected.\n\n\
                 Object: {{body: \"hi\"}}\nValidator: {VALIDATOR}"
            )
        );
        assert_eq!(
            err(
                h,
                "1.0/insert",
                json!({"table": "messages", "value": {"author": "a", "body": "b", "pinned": true}})
            ),
            format!(
                "Failed to insert or update a document in table \"messages\" because it does not \
                 match the schema: Object contains extra field `pinned` that is not in the \
                 validator.\n\nObject: {{author: \"a\", body: \"b\", pinned: true}}\nValidator: \
                 {VALIDATOR}"
            )
        );
        // A table the schema does not name takes anything.
        insert(h, "scratch", json!({"whatever": [1, 2]}));
    });
    // The refused inserts left nothing, though the mutation committed.
    let messages = query(&env.db, |h| collect(h, full_scan("messages")));
    assert_eq!(messages.len(), 1);
}

#[test]
fn patches_and_replaces_that_break_the_schema_are_refused() {
    let env = open();
    let s = schema();
    let id = mutation(&env.db, Some(&s), |h| {
        insert(h, "messages", json!({"author": "ada", "body": "hi"}))
    });
    mutation(&env.db, Some(&s), |h| {
        assert_eq!(
            err(
                h,
                "1.0/shallowMerge",
                json!({"id": id, "value": {"body": 5}})
            ),
            "Failed to insert or update a document in table \"messages\" because it does not \
             match the schema: Value does not match validator.\nPath: .body\nValue: 5.0\n\
             Validator: v.string()"
        );
        let e = err(
            h,
            "1.0/shallowMerge",
            json!({"id": id, "value": {"author": {"$undefined": null}}}),
        );
        assert!(
            e.contains("Object is missing the required field `author`"),
            "{e}"
        );
        let e = err(
            h,
            "1.0/replace",
            json!({"id": id, "value": {"author": "grace"}, "table": "messages"}),
        );
        assert!(
            e.starts_with(
                "Failed to insert or update a document in table \"messages\" because it does not \
                 match the schema: Object is missing the required field `body`."
            ),
            "{e}"
        );
        // A valid patch still works, and keeps the system fields.
        let doc = ok(
            h,
            "1.0/shallowMerge",
            json!({"id": id, "value": {"body": "edited"}}),
        );
        assert_eq!(doc["body"], json!("edited"));
        // Replacing a missing document says so before checking the schema.
        ok(h, "1.0/remove", json!({"id": id}));
        assert_eq!(
            err(h, "1.0/replace", json!({"id": id, "value": {}})),
            format!("Replace on nonexistent document ID {id}")
        );
        assert_eq!(
            err(h, "1.0/shallowMerge", json!({"id": id, "value": {}})),
            format!("Update on nonexistent document ID {id}")
        );
    });
}

#[test]
fn id_fields_are_checked_against_real_tables() {
    let env = open();
    let s = schema();
    let (channel, user) = mutation(&env.db, Some(&s), |h| {
        (
            insert(h, "channels", json!({"name": "general"})),
            insert(h, "users", json!({"name": "ada"})),
        )
    });
    mutation(&env.db, Some(&s), |h| {
        insert(
            h,
            "messages",
            json!({"author": "a", "body": "b", "channel": channel}),
        );
        assert_eq!(
            err(
                h,
                "1.0/insert",
                json!({"table": "messages", "value": {"author": "a", "body": "b", "channel": user}})
            ),
            format!(
                "Failed to insert or update a document in table \"messages\" because it does not \
                 match the schema: Found ID \"{user}\" from table `users`, which does not match \
                 the table name in validator `v.id(\"channels\")`.Path: .channel"
            )
        );
        // An id of the engine's private `_tables` matches no `v.id`.
        let private = engine::id::DocumentId::new(
            engine::id::TableNumber::new(1).unwrap(),
            engine::id::InternalId([1; 16]),
        )
        .encode();
        let e = err(
            h,
            "1.0/insert",
            json!({"table": "messages", "value": {"author": "a", "body": "b", "channel": private}}),
        );
        assert!(
            e.contains("Value does not match validator.\nPath: .channel"),
            "{e}"
        );
        let e = err(
            h,
            "1.0/insert",
            json!({"table": "messages", "value": {"author": "a", "body": "b", "channel": "general"}}),
        );
        assert!(
            e.ends_with("Value does not match validator.\nPath: .channel\nValue: \"general\"\nValidator: v.id(\"channels\")"),
            "{e}"
        );
    });
}

#[test]
fn without_schema_validation_nothing_is_checked() {
    let env = open();
    let s = Schema::from_json(&schema_json(false)).expect("schema");
    mutation(&env.db, Some(&s), |h| {
        insert(h, "messages", json!({"nope": 1}))
    });
    let mut tx = env.db.begin();
    assert!(check_existing(&mut tx, &s).is_ok());
}

#[test]
fn check_existing_names_the_first_violating_document() {
    let env = open();
    // Written before any schema: one good document, then two bad ones.
    let ids = mutation(&env.db, None, |h| {
        vec![
            insert(h, "channels", json!({"name": "general"})),
            insert(h, "messages", json!({"author": "ada", "body": "hi"})),
            insert(h, "messages", json!({"author": "bob"})),
            insert(h, "messages", json!({"body": 1})),
        ]
    });
    let s = schema();
    let mut tx = env.db.begin();
    let e = check_existing(&mut tx, &s).expect_err("violation");
    assert!(matches!(&e, SchemaError::ExistingDocument { table, .. } if table == "messages"));
    assert_eq!(e.table(), Some("messages"));
    assert_eq!(
        e.to_string(),
        format!(
            "Document with ID \"{}\" in table \"messages\" does not match the schema: Object is \
             missing the required field `body`. Consider wrapping the field validator in \
             `v.optional(...)` if this is expected.\n\nObject: {{author: \"bob\"}}\nValidator: \
             {VALIDATOR}",
            ids[2]
        )
    );
    drop(tx);
    // The batched check finds the same document, across batch boundaries.
    for batch in [1, 2, 3, 1000] {
        let batched = check_existing_in_batches(&env.db, &s, batch).expect_err("violation");
        assert_eq!(batched.to_string(), e.to_string(), "batch {batch}");
    }
    // Once the bad documents are fixed, the schema can be activated.
    mutation(&env.db, None, |h| {
        ok(
            h,
            "1.0/shallowMerge",
            json!({"id": ids[2], "value": {"body": "fixed"}}),
        );
        ok(h, "1.0/remove", json!({"id": ids[3]}));
    });
    let mut tx = env.db.begin();
    assert!(check_existing(&mut tx, &s).is_ok());
    drop(tx);
    assert!(check_existing_in_batches(&env.db, &s, 1).is_ok());
}

#[test]
fn check_existing_reads_many_documents() {
    let env = open();
    mutation(&env.db, None, |h| {
        for i in 0..600 {
            insert(h, "channels", json!({"name": format!("c{i}")}));
        }
        insert(h, "channels", json!({"name": 600}));
    });
    let s = schema();
    let mut tx = env.db.begin();
    let e = check_existing(&mut tx, &s).expect_err("the last one");
    assert!(
        e.to_string()
            .contains("Value does not match validator.\nPath: .name\nValue: 600.0"),
        "{e}"
    );
}
