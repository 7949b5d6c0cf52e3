//! Named system tables (`_modules`, ...): written only through the
//! `*_system` calls, numbered below the user tables, and recovered from
//! the log and from checkpoints like every other table.

use engine::db::{Database, DbError, DbOptions, FIRST_SYSTEM_TABLE_NUMBER};
use engine::dir::DataDir;
use engine::id::TableNumber;
use engine::value::{Object, Value};

fn open(dir: &tempfile::TempDir) -> Database {
    let data = DataDir::open(dir.path()).unwrap();
    Database::open(&data, DbOptions::default()).unwrap()
}

fn obj(k: &str, v: &str) -> Object {
    let mut o = Object::new();
    o.insert(k.into(), Value::String(v.into()));
    o
}

#[test]
fn system_tables_are_written_only_through_the_system_calls_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (module, user) = {
        let db = open(&dir);
        let mut tx = db.begin();
        assert!(matches!(
            tx.insert("_modules", obj("path", "a.js")),
            Err(DbError::SystemTableWrite)
        ));
        assert!(matches!(
            tx.insert_system("modules", obj("path", "a.js")),
            Err(DbError::InvalidTableName(_))
        ));
        assert!(matches!(
            tx.insert_system("_tables", obj("name", "x")),
            Err(DbError::SystemTableWrite)
        ));
        let module = tx.insert_system("_modules", obj("path", "a.js")).unwrap();
        let user = tx.insert("messages", obj("body", "hi")).unwrap();
        assert_eq!(module.table.get(), FIRST_SYSTEM_TABLE_NUMBER);
        assert_eq!(user.table, TableNumber::FIRST_USER);
        db.commit(tx).unwrap();

        // User-facing calls cannot touch a system document, nor the system
        // calls a user document.
        let mut tx = db.begin();
        assert!(matches!(tx.delete(module), Err(DbError::SystemTableWrite)));
        assert!(matches!(
            tx.replace(module, obj("path", "b.js")),
            Err(DbError::SystemTableWrite)
        ));
        assert!(matches!(
            tx.delete_system(user),
            Err(DbError::SystemTableWrite)
        ));
        tx.replace_system(module, obj("path", "b.js")).unwrap();
        let other = tx.insert_system("_schemas", obj("x", "y")).unwrap();
        assert_eq!(other.table.get(), FIRST_SYSTEM_TABLE_NUMBER + 1);
        db.commit(tx).unwrap();
        assert_eq!(db.table_names(), vec!["messages".to_string()]);
        (module, user)
    };
    // Reopen from the log, then from a checkpoint.
    for round in 0..2 {
        let db = open(&dir);
        let mut tx = db.begin();
        assert_eq!(
            tx.get(module).unwrap().unwrap().get("path"),
            Some(&Value::String("b.js".into())),
            "round {round}"
        );
        assert!(tx.get(user).unwrap().is_some());
        assert_eq!(
            tx.table_number("_modules").unwrap(),
            Some(module.table),
            "round {round}"
        );
        // A new system table after reopen takes the next free number.
        let n = tx
            .insert_system(&format!("_round{round}"), obj("a", "b"))
            .unwrap()
            .table
            .get();
        assert_eq!(n, FIRST_SYSTEM_TABLE_NUMBER + 2 + round);
        db.commit(tx).unwrap();
        db.checkpoint().unwrap();
    }
}

#[test]
fn user_indexes_lists_defined_indexes_without_tie_breakers() {
    use engine::db::FieldPath;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let mut tx = db.begin();
    tx.insert("messages", obj("author", "a")).unwrap();
    tx.insert_system("_modules", obj("path", "a.js")).unwrap();
    db.commit(tx).unwrap();
    assert!(db.user_indexes().is_empty());
    let mut tx = db.begin();
    tx.add_index(
        "messages",
        "by_author",
        &[FieldPath::parse("author").unwrap()],
    )
    .unwrap();
    db.commit(tx).unwrap();
    db.wait_for_index("messages", "by_author", Duration::from_secs(10))
        .unwrap();
    let ixs = db.user_indexes();
    assert_eq!(ixs.len(), 1);
    assert_eq!(
        (ixs[0].table.as_str(), ixs[0].name.as_str(), ixs[0].ready),
        ("messages", "by_author", true)
    );
    assert_eq!(ixs[0].fields, vec![FieldPath::parse("author").unwrap()]);
    let mut tx = db.begin();
    tx.remove_index("messages", "by_author").unwrap();
    db.commit(tx).unwrap();
    assert!(db.user_indexes().is_empty());
}

#[test]
fn begin_at_reads_an_earlier_snapshot_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let mut tx = db.begin();
    let id = tx.insert("t", obj("v", "old")).unwrap();
    db.commit(tx).unwrap();
    let before = db.snapshot_ts();
    let mut tx = db.begin();
    tx.replace(id, obj("v", "new")).unwrap();
    db.commit(tx).unwrap();
    let mut at = db.begin_at(before).unwrap();
    assert_eq!(
        at.get(id).unwrap().unwrap().get("v"),
        Some(&Value::String("old".into()))
    );
    assert!(matches!(
        at.replace(id, obj("v", "x")),
        Err(DbError::ReadOnlySnapshot)
    ));
    drop(at);
    let future = engine::ts::Ts(db.snapshot_ts().0 + 1);
    assert!(matches!(
        db.begin_at(future),
        Err(DbError::SnapshotUnavailable { .. })
    ));
}

#[test]
fn system_indexes_are_scanned_by_prefix_and_hidden_from_user_indexes() {
    use engine::db::{prefix_key, prefix_successor, FieldPath, KeyInterval, Order};
    use std::ops::Bound;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(&dir);
        let mut tx = db.begin();
        let fields = [FieldPath::parse("session").unwrap()];
        assert!(matches!(
            tx.add_system_index("requests", "by_session", &fields),
            Err(DbError::InvalidTableName(_))
        ));
        assert!(matches!(
            tx.add_index("_requests", "by_session", &fields),
            Err(DbError::InvalidTableName(_))
        ));
        tx.add_system_index("_requests", "by_session", &fields)
            .unwrap();
        db.commit(tx).unwrap();
        db.wait_for_index("_requests", "by_session", Duration::from_secs(10))
            .unwrap();
        let mut tx = db.begin();
        tx.insert_system("_requests", obj("session", "a")).unwrap();
        tx.insert_system("_requests", obj("session", "b")).unwrap();
        tx.insert("messages", obj("session", "a")).unwrap();
        db.commit(tx).unwrap();
        // Defining it twice is refused.
        let mut tx = db.begin();
        assert!(matches!(
            tx.add_system_index("_requests", "by_session", &fields),
            Err(DbError::InvalidIndex(_))
        ));
        assert!(db.user_indexes().is_empty());
    }
    let db = open(&dir);
    let mut tx = db.begin();
    let start = prefix_key(&[Some(&Value::String("b".into()))]);
    let end = prefix_successor(&start).unwrap();
    let interval = KeyInterval {
        start: Bound::Included(start),
        end: Bound::Excluded(end),
    };
    let docs = tx
        .scan("_requests", "by_session", &interval, Order::Asc, None)
        .unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].get("session"), Some(&Value::String("b".into())));
}
