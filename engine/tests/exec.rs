//! Queries run against transactions (`engine::exec`): operators apply in
//! order, both scan directions, index ranges over nested fields, missing
//! tables and indexes, cursor pagination that visits every match exactly
//! once, page read sets that conflict exactly when a concurrent insert falls
//! inside the page, gapless end-cursor reruns, foreign cursors refused, and
//! the transaction read limit. Each test opens a fresh database in a
//! temporary directory, fills it through transactions and checks the
//! results against a plain model (a sorted `Vec`).

use std::ops::Bound;

use engine::db::{
    key_of, Database, DbError, DbOptions, Doc, FieldPath, IndexDef, KeyInterval, Transaction,
};
use engine::dir::DataDir;
use engine::exec::{
    paginate, run_query, ExecError, PageRequest, PageResult, PageStatus, QueryStream,
};
use engine::query::{parse_query, Query};
use engine::value::{Object, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// An open database; `db` drops before the directory it lives in.
struct Env {
    db: Database,
    _dir: DataDir,
    _tmp: tempfile::TempDir,
}

fn open() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Database::open(&dir, DbOptions::default()).unwrap();
    Env {
        db,
        _dir: dir,
        _tmp: tmp,
    }
}

fn item(n: f64) -> Object {
    let mut o = Object::new();
    o.insert("n".into(), Value::Float64(n));
    o
}

/// Inserts one `items` document per value of `ns`, in order (so creation
/// order is `ns` order).
fn insert_items(db: &Database, ns: impl IntoIterator<Item = f64>) {
    let ns: Vec<f64> = ns.into_iter().collect();
    for chunk in ns.chunks(8000) {
        let mut tx = db.begin();
        for n in chunk {
            tx.insert("items", item(*n)).unwrap();
        }
        db.commit(tx).unwrap();
    }
}

fn add_index(db: &Database, table: &str, name: &str, fields: &[&str]) {
    let fields: Vec<FieldPath> = fields
        .iter()
        .map(|f| FieldPath::parse(f).unwrap())
        .collect();
    let mut tx = db.begin();
    tx.add_index(table, name, &fields).unwrap();
    db.commit(tx).unwrap();
    db.wait_for_index(table, name, std::time::Duration::from_secs(10))
        .unwrap();
}

fn query(j: serde_json::Value) -> Query {
    parse_query(&j).unwrap()
}

fn ns(docs: &[Doc]) -> Vec<f64> {
    docs.iter()
        .map(|d| match d.get("n") {
            Some(Value::Float64(n)) => *n,
            other => panic!("document without a float n: {other:?}"),
        })
        .collect()
}

fn run(db: &Database, q: &Query) -> Result<Vec<Doc>, ExecError> {
    let mut tx = db.begin();
    let out = run_query(&mut tx, q);
    db.commit(tx).unwrap();
    out
}

/// `{"$eq": [{"$mod": [n, m]}, r]}`
fn n_mod(m: f64, r: f64) -> serde_json::Value {
    json!({"$eq": [{"$mod": [{"$field": "n"}, {"$literal": m}]}, {"$literal": r}]})
}

fn page_request(cursor: Option<String>, page_size: usize) -> PageRequest {
    PageRequest {
        cursor,
        end_cursor: None,
        page_size,
        maximum_rows_read: None,
        maximum_bytes_read: None,
    }
}

fn page(db: &Database, q: &Query, request: PageRequest) -> PageResult {
    let mut tx = db.begin();
    let p = paginate(&mut tx, q, request).unwrap();
    db.commit(tx).unwrap();
    p
}

/// One step of a model pipeline.
#[derive(Clone, Debug)]
enum ModelOp {
    ModEq(f64, f64),
    AtLeast(f64),
    Limit(u64),
}

fn model(source: &[f64], ops: &[ModelOp]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut passed = vec![0u64; ops.len()];
    'docs: for &n in source {
        if ops
            .iter()
            .zip(&passed)
            .any(|(o, p)| matches!(o, ModelOp::Limit(l) if p >= l))
        {
            break;
        }
        for (i, op) in ops.iter().enumerate() {
            match op {
                ModelOp::ModEq(m, r) if n % m != *r => continue 'docs,
                ModelOp::AtLeast(x) if n < *x => continue 'docs,
                ModelOp::Limit(_) => passed[i] += 1,
                _ => {}
            }
        }
        out.push(n);
    }
    out
}

fn ops_json(ops: &[ModelOp]) -> serde_json::Value {
    ops.iter()
        .map(|o| match o {
            ModelOp::ModEq(m, r) => json!({"filter": n_mod(*m, *r)}),
            ModelOp::AtLeast(x) => {
                json!({"filter": {"$gte": [{"$field": "n"}, {"$literal": x}]}})
            }
            ModelOp::Limit(l) => json!({"limit": l}),
        })
        .collect()
}

#[test]
fn filters_and_limits_apply_in_order() {
    let env = open();
    insert_items(&env.db, (0..60).map(f64::from));
    let asc: Vec<f64> = (0..60).map(f64::from).collect();
    let desc: Vec<f64> = asc.iter().rev().copied().collect();

    let fixed: Vec<(Vec<ModelOp>, Vec<f64>)> = vec![
        (
            vec![
                ModelOp::ModEq(2.0, 0.0),
                ModelOp::Limit(5),
                ModelOp::AtLeast(4.0),
                ModelOp::Limit(2),
            ],
            vec![4.0, 6.0],
        ),
        (
            vec![ModelOp::Limit(10), ModelOp::ModEq(3.0, 0.0)],
            vec![0.0, 3.0, 6.0, 9.0],
        ),
        (
            vec![ModelOp::ModEq(3.0, 0.0), ModelOp::Limit(3)],
            vec![0.0, 3.0, 6.0],
        ),
        (
            vec![ModelOp::Limit(3), ModelOp::Limit(5)],
            vec![0.0, 1.0, 2.0],
        ),
        (vec![ModelOp::Limit(0)], vec![]),
        (vec![ModelOp::AtLeast(1000.0)], vec![]),
    ];
    for (ops, want) in &fixed {
        assert_eq!(model(&asc, ops), *want, "model of {ops:?}");
        let q = query(json!({
            "source": {"type": "FullTableScan", "tableName": "items", "order": null},
            "operators": ops_json(ops),
        }));
        assert_eq!(ns(&run(&env.db, &q).unwrap()), *want, "{ops:?}");
    }

    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..150 {
        let ops: Vec<ModelOp> = (0..rng.gen_range(0..5))
            .map(|_| match rng.gen_range(0..3) {
                0 => ModelOp::ModEq(
                    f64::from(rng.gen_range(2..5)),
                    f64::from(rng.gen_range(0..2)),
                ),
                1 => ModelOp::AtLeast(f64::from(rng.gen_range(0..60))),
                _ => ModelOp::Limit(rng.gen_range(0..40)),
            })
            .collect();
        for (order, source) in [("asc", &asc), ("desc", &desc)] {
            let q = query(json!({
                "source": {"type": "FullTableScan", "tableName": "items", "order": order},
                "operators": ops_json(&ops),
            }));
            assert_eq!(
                ns(&run(&env.db, &q).unwrap()),
                model(source, &ops),
                "{order} {ops:?}"
            );
        }
    }
}

#[test]
fn a_stream_that_stops_early_reads_only_what_it_used() {
    let env = open();
    insert_items(&env.db, (0..500).map(f64::from));
    let all = run(
        &env.db,
        &query(
            json!({"source": {"type": "FullTableScan", "tableName": "items", "order": null},
                      "operators": []}),
        ),
    )
    .unwrap();
    let key = |i: usize| key_of(&IndexDef::by_creation_time_fields(), &all[i]);
    let covered =
        |tx: &Transaction<'_>, i: usize| tx.read_set().iter().any(|(_, iv)| iv.contains(&key(i)));

    // `first()`: one document read.
    let mut tx = env.db.begin();
    let q = query(
        json!({"source": {"type": "FullTableScan", "tableName": "items", "order": null},
                         "operators": [{"limit": 1}]}),
    );
    assert_eq!(ns(&run_query(&mut tx, &q).unwrap()), [0.0]);
    assert!(covered(&tx, 0));
    assert!(!covered(&tx, 1));
    env.db.commit(tx).unwrap();

    // A filtered stream dropped after its first match read at most a batch.
    let mut tx = env.db.begin();
    let q = query(
        json!({"source": {"type": "FullTableScan", "tableName": "items", "order": null},
                         "operators": [{"filter": n_mod(100.0, 42.0)}]}),
    );
    let mut stream = QueryStream::new(&mut tx, &q).unwrap();
    assert_eq!(ns(&[stream.next(&mut tx).unwrap().unwrap()]), [42.0]);
    drop(stream);
    assert!(covered(&tx, 42));
    assert!(!covered(&tx, 42 + engine::exec::BATCH_DOCUMENTS_MAX));
    assert!(!covered(&tx, 499));
    env.db.commit(tx).unwrap();
}

/// A document's `n`, whatever its type.
fn label(d: &Doc) -> String {
    format!("{:?}", d.get("n"))
}

/// What a stream gives when asked one document at a time: each answer
/// (a document's `n`, or a failure's message) until `None` or `most`
/// answers.
fn one_by_one(
    tx: &mut Transaction<'_>,
    stream: &mut QueryStream,
    most: usize,
) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    while out.len() < most {
        match stream.next(tx) {
            Ok(Some(d)) => out.push(Ok(label(&d))),
            Ok(None) => break,
            Err(e) => out.push(Err(e.to_string())),
        }
    }
    out
}

#[test]
fn batches_give_and_read_exactly_what_one_by_one_calls_would() {
    let env = open();
    insert_items(&env.db, (0..400).map(f64::from));
    // A document the arithmetic filters below fail on, in the middle.
    let mut tx = env.db.begin();
    let mut odd = Object::new();
    odd.insert("n".into(), Value::String("x".into()));
    tx.insert("items", odd).unwrap();
    env.db.commit(tx).unwrap();
    insert_items(&env.db, (400..600).map(f64::from));

    let mut rng = StdRng::seed_from_u64(11);
    for round in 0..300 {
        let mut ops: Vec<serde_json::Value> = Vec::new();
        for _ in 0..rng.gen_range(0..4) {
            ops.push(match rng.gen_range(0..4) {
                0 => json!({"filter": n_mod(f64::from(rng.gen_range(2..40)), 1.0)}),
                1 => json!({"filter": {"$gte": [
                    {"$add": [{"$field": "n"}, {"$literal": 0.0}]},
                    {"$literal": f64::from(rng.gen_range(0..600))}]}}),
                2 => json!({"filter": {"$neq": [{"$field": "n"}, {"$literal": 3.0}]}}),
                _ => json!({"limit": rng.gen_range(0..700)}),
            });
        }
        let order = if rng.gen_bool(0.5) { "asc" } else { "desc" };
        let q = query(json!({
            "source": {"type": "FullTableScan", "tableName": "items", "order": order},
            "operators": ops,
        }));
        let max_docs = rng.gen_range(1..200);
        let max_bytes = if rng.gen_bool(0.3) { 1 } else { 1 << 20 };
        // Stop after a random number of batches (the function stops
        // iterating), or run to the end.
        let batches = if rng.gen_bool(0.5) {
            rng.gen_range(1..6)
        } else {
            usize::MAX
        };

        let mut tx = env.db.begin();
        let mut stream = QueryStream::new(&mut tx, &q).unwrap();
        let mut got: Vec<Result<String, String>> = Vec::new();
        let mut done = false;
        for _ in 0..batches.min(10_000) {
            match stream.next_batch(&mut tx, max_docs, max_bytes) {
                Ok((docs, d)) => {
                    assert!(docs.len() <= max_docs, "round {round}");
                    assert!(
                        !docs.is_empty() || d,
                        "round {round}: an empty batch not done"
                    );
                    got.extend(docs.iter().map(|d| Ok(label(d))));
                    done = d;
                }
                Err(e) => got.push(Err(e.to_string())),
            }
            if done {
                break;
            }
        }
        let batch_reads = tx.read_set().to_vec();
        drop(stream);
        drop(tx);

        let mut tx = env.db.begin();
        let mut stream = QueryStream::new(&mut tx, &q).unwrap();
        let want = one_by_one(&mut tx, &mut stream, got.len());
        assert_eq!(got, want, "round {round}: {q:?}");
        if done {
            // The call that tells one by one that there is no more.
            assert!(
                matches!(stream.next(&mut tx), Ok(None)),
                "round {round}: done, but one by one there is more"
            );
        }
        assert_eq!(
            batch_reads,
            tx.read_set(),
            "round {round}: {q:?} read differently"
        );
    }
}

#[test]
fn ascending_and_descending() {
    let env = open();
    let values = [5.0, -1.0, 3.5, 2.0, 8.0];
    insert_items(&env.db, values);
    add_index(&env.db, "items", "by_n", &["n"]);
    let scan = |order: &str| {
        query(
            json!({"source": {"type": "FullTableScan", "tableName": "items", "order": order},
                     "operators": []}),
        )
    };
    assert_eq!(ns(&run(&env.db, &scan("asc")).unwrap()), values);
    let mut rev = values.to_vec();
    rev.reverse();
    assert_eq!(ns(&run(&env.db, &scan("desc")).unwrap()), rev);
    let by_n = |order: &str| {
        query(
            json!({"source": {"type": "IndexRange", "indexName": "items.by_n", "range": [],
                                "order": order}, "operators": []}),
        )
    };
    assert_eq!(
        ns(&run(&env.db, &by_n("asc")).unwrap()),
        [-1.0, 2.0, 3.5, 5.0, 8.0]
    );
    assert_eq!(
        ns(&run(&env.db, &by_n("desc")).unwrap()),
        [8.0, 5.0, 3.5, 2.0, -1.0]
    );
}

#[test]
fn index_range_with_eq_prefix_and_bounds_over_nested_fields() {
    let env = open();
    add_index(
        &env.db,
        "posts",
        "by_author_score",
        &["author.name", "stats.score"],
    );
    let authors = [Some("ann"), Some("bob"), None];
    let mut expected_all: Vec<(Option<&str>, Option<f64>, f64)> = Vec::new();
    let mut tx = env.db.begin();
    for i in 0..90 {
        let author = authors[i % 3];
        let score = if i % 7 == 0 {
            None
        } else {
            Some(f64::from((i * 5 % 13) as u32))
        };
        let mut doc = Object::new();
        doc.insert("n".into(), Value::Float64(i as f64));
        let mut a = Object::new();
        if let Some(name) = author {
            a.insert("name".into(), Value::String(name.into()));
        }
        doc.insert("author".into(), Value::Object(a));
        if let Some(s) = score {
            let mut st = Object::new();
            st.insert("score".into(), Value::Float64(s));
            doc.insert("stats".into(), Value::Object(st));
        }
        tx.insert("posts", doc).unwrap();
        expected_all.push((author, score, i as f64));
    }
    env.db.commit(tx).unwrap();

    // The model: documents in (author, score, creation) order; a missing
    // value (undefined) sorts first.
    let model = |pred: &dyn Fn(Option<&str>, Option<f64>) -> bool, desc: bool| {
        let mut v: Vec<&(Option<&str>, Option<f64>, f64)> = expected_all
            .iter()
            .filter(|(a, s, _)| pred(*a, *s))
            .collect();
        v.sort_by(|x, y| {
            (x.0, x.1.map(|s| (s * 100.0) as i64), x.2 as i64).cmp(&(
                y.0,
                y.1.map(|s| (s * 100.0) as i64),
                y.2 as i64,
            ))
        });
        if desc {
            v.reverse();
        }
        v.into_iter().map(|(_, _, n)| *n).collect::<Vec<f64>>()
    };
    for (order, desc) in [("asc", false), ("desc", true)] {
        let q = query(json!({
            "source": {"type": "IndexRange", "indexName": "posts.by_author_score", "order": order,
                       "range": [
                           {"type": "Eq", "fieldPath": "author.name", "value": "ann"},
                           {"type": "Gt", "fieldPath": "stats.score", "value": 3.0},
                           {"type": "Lte", "fieldPath": "stats.score", "value": 8.0},
                       ]},
            "operators": [],
        }));
        let want = model(
            &|a, s| a == Some("ann") && s.is_some_and(|s| s > 3.0 && s <= 8.0),
            desc,
        );
        assert!(want.len() > 3, "the range selects something");
        assert_eq!(ns(&run(&env.db, &q).unwrap()), want, "{order}");

        // An Eq prefix alone, and a missing author (undefined).
        let q = query(json!({
            "source": {"type": "IndexRange", "indexName": "posts.by_author_score", "order": order,
                       "range": [{"type": "Eq", "fieldPath": "author.name", "value": "bob"}]},
            "operators": [],
        }));
        assert_eq!(
            ns(&run(&env.db, &q).unwrap()),
            model(&|a, _| a == Some("bob"), desc)
        );
        let q = query(json!({
            "source": {"type": "IndexRange", "indexName": "posts.by_author_score", "order": order,
                       "range": [
                           {"type": "Eq", "fieldPath": "author.name", "value": {"$undefined": null}},
                           {"type": "Lt", "fieldPath": "stats.score", "value": 5.0},
                       ]},
            "operators": [],
        }));
        assert_eq!(
            ns(&run(&env.db, &q).unwrap()),
            model(&|a, s| a.is_none() && s.is_none_or(|s| s < 5.0), desc)
        );
    }

    // A range the index cannot serve fails when the stream is created.
    let mut tx = env.db.begin();
    let q = query(json!({
        "source": {"type": "IndexRange", "indexName": "posts.by_author_score", "order": null,
                   "range": [{"type": "Gt", "fieldPath": "stats.score", "value": 1.0}]},
        "operators": [],
    }));
    let e = QueryStream::new(&mut tx, &q).unwrap_err();
    assert!(matches!(e, ExecError::Range(_)), "{e}");
    assert!(e.to_string().contains("posts.by_author_score"), "{e}");
}

#[test]
fn missing_tables_indexes_and_failing_filters() {
    let env = open();
    insert_items(&env.db, [1.0, 2.0]);
    for source in [
        json!({"type": "FullTableScan", "tableName": "nope", "order": null}),
        json!({"type": "IndexRange", "indexName": "nope.by_x", "range": [], "order": null}),
        json!({"type": "IndexRange", "indexName": "nope.by_creation_time", "range": [], "order": "desc"}),
    ] {
        let q = query(json!({"source": source, "operators": []}));
        assert!(run(&env.db, &q).unwrap().is_empty(), "{source}");
        let mut tx = env.db.begin();
        let p = paginate(&mut tx, &q, page_request(None, 10)).unwrap();
        assert!(p.page.is_empty() && p.is_done);
    }

    let mut tx = env.db.begin();
    let q = query(
        json!({"source": {"type": "IndexRange", "indexName": "items.by_x", "range": [],
                                    "order": null}, "operators": []}),
    );
    let e = QueryStream::new(&mut tx, &q).unwrap_err();
    assert_eq!(e.to_string(), "Index items.by_x not found.");
    drop(tx);

    let q = query(
        json!({"source": {"type": "FullTableScan", "tableName": "items", "order": null},
                         "operators": [{"filter": {"$add": [{"$field": "n"}, {"$literal": "x"}]}}]}),
    );
    let e = run(&env.db, &q).unwrap_err();
    assert!(matches!(e, ExecError::Eval(_)), "{e}");
    assert!(e.to_string().starts_with("Cannot add"), "{e}");
    let q = query(
        json!({"source": {"type": "FullTableScan", "tableName": "items", "order": null},
                         "operators": [{"filter": {"$field": "n"}}]}),
    );
    let e = run(&env.db, &q).unwrap_err();
    assert!(e.to_string().contains("as a Boolean"), "{e}");

    let e: ExecError = parse_query(&json!({
        "source": {"type": "Search", "indexName": "items.search", "filters": []},
        "operators": [],
    }))
    .unwrap_err()
    .into();
    assert!(
        e.to_string().contains("not supported by this server yet"),
        "{e}"
    );
}

/// Pages through `q` with `page_size`, each page in its own transaction;
/// returns every document and the number of pages.
fn page_through(db: &Database, q: &Query, page_size: usize) -> (Vec<f64>, usize) {
    let mut cursor = None;
    let mut out = Vec::new();
    for pages in 1.. {
        let p = page(db, q, page_request(cursor, page_size));
        assert!(p.page.len() <= page_size);
        assert!(p.page_status.is_none());
        out.extend(ns(&p.page));
        if p.is_done {
            return (out, pages);
        }
        assert_eq!(p.page.len(), page_size, "only the last page is short");
        cursor = Some(p.continue_cursor);
    }
    unreachable!()
}

#[test]
fn pagination_returns_every_match_once_in_order() {
    let env = open();
    // Creation order differs from n order, to tell the indexes apart.
    let values: Vec<f64> = (0..1000).map(|i| f64::from((i * 389) % 1000)).collect();
    insert_items(&env.db, values.iter().copied());
    add_index(&env.db, "items", "by_n", &["n"]);
    let matches = |n: &f64| n % 3.0 == 0.0;

    let q = query(
        json!({"source": {"type": "FullTableScan", "tableName": "items", "order": null},
                         "operators": [{"filter": n_mod(3.0, 0.0)}]}),
    );
    let want: Vec<f64> = values.iter().copied().filter(matches).collect();
    let (got, pages) = page_through(&env.db, &q, 37);
    assert_eq!(got, want);
    assert_eq!(pages, want.len().div_ceil(37));

    let q = query(
        json!({"source": {"type": "IndexRange", "indexName": "items.by_n", "order": "desc",
                                    "range": [{"type": "Gte", "fieldPath": "n", "value": 100.0},
                                              {"type": "Lt", "fieldPath": "n", "value": 900.0}]},
                         "operators": [{"filter": n_mod(3.0, 0.0)}]}),
    );
    let want: Vec<f64> = (100..900).rev().map(f64::from).filter(matches).collect();
    let (got, _) = page_through(&env.db, &q, 37);
    assert_eq!(got, want);

    // Unfiltered, the page boundaries fall on exact multiples.
    let q = query(
        json!({"source": {"type": "IndexRange", "indexName": "items.by_n", "order": null,
                                    "range": []}, "operators": []}),
    );
    let (got, pages) = page_through(&env.db, &q, 100);
    assert_eq!(got, (0..1000).map(f64::from).collect::<Vec<_>>());
    assert_eq!(
        pages, 11,
        "the tenth page is full, so an empty eleventh says done"
    );
}

/// A database of `items` with `n = 0, 10, ..., 990` and the index `by_n`.
fn tens() -> Env {
    let env = open();
    insert_items(&env.db, (0..100).map(|i| f64::from(i * 10)));
    add_index(&env.db, "items", "by_n", &["n"]);
    let mut tx = env.db.begin();
    tx.insert("dummy", Object::new()).unwrap();
    env.db.commit(tx).unwrap();
    env
}

fn by_n(order: &str, operators: serde_json::Value) -> Query {
    query(
        json!({"source": {"type": "IndexRange", "indexName": "items.by_n", "order": order,
                            "range": []}, "operators": operators}),
    )
}

#[test]
fn a_page_conflicts_iff_a_concurrent_insert_falls_inside_it() {
    // (query, page size, the expected second page, inserted n, conflict?)
    type Case = (&'static str, serde_json::Value, usize, Vec<f64>, f64, bool);
    let second_asc: Vec<f64> = (10..20).map(|i| f64::from(i * 10)).collect();
    let second_filtered: Vec<f64> = (5..10).map(|i| f64::from(i * 20)).collect();
    let second_desc: Vec<f64> = (80..90).rev().map(|i| f64::from(i * 10)).collect();
    let cases: Vec<Case> = vec![
        // Page 2 covers (90, 190].
        ("asc", json!([]), 10, second_asc.clone(), 85.0, false),
        ("asc", json!([]), 10, second_asc.clone(), 95.0, true),
        ("asc", json!([]), 10, second_asc.clone(), 145.0, true),
        // Same n as the last document but created later: just past the page.
        ("asc", json!([]), 10, second_asc.clone(), 190.0, false),
        ("asc", json!([]), 10, second_asc.clone(), 195.0, false),
        // Filtered: page 2 covers (80, 180], filtered-out documents included.
        (
            "asc",
            json!([{"filter": n_mod(20.0, 0.0)}]),
            5,
            second_filtered.clone(),
            85.0,
            true,
        ),
        (
            "asc",
            json!([{"filter": n_mod(20.0, 0.0)}]),
            5,
            second_filtered.clone(),
            175.0,
            true,
        ),
        (
            "asc",
            json!([{"filter": n_mod(20.0, 0.0)}]),
            5,
            second_filtered.clone(),
            185.0,
            false,
        ),
        // Descending: page 2 covers [800, 900).
        ("desc", json!([]), 10, second_desc.clone(), 905.0, false),
        ("desc", json!([]), 10, second_desc.clone(), 895.0, true),
        // Same n as the last document but created later: it sorts above it,
        // so inside a descending page.
        ("desc", json!([]), 10, second_desc.clone(), 800.0, true),
        ("desc", json!([]), 10, second_desc.clone(), 805.0, true),
        ("desc", json!([]), 10, second_desc.clone(), 795.0, false),
    ];
    for (order, ops, size, second, insert, conflict) in cases {
        let env = tens();
        let q = by_n(order, ops.clone());
        let first = page(&env.db, &q, page_request(None, size));
        let mut tx = env.db.begin();
        let p = paginate(&mut tx, &q, page_request(Some(first.continue_cursor), size)).unwrap();
        assert_eq!(ns(&p.page), second, "{order} {ops}");
        assert!(!p.is_done);
        // A read-only transaction commits whatever happened; a dummy write
        // makes this one validate its reads.
        tx.insert("dummy", Object::new()).unwrap();
        let mut read_only = env.db.begin();
        paginate(
            &mut read_only,
            &q,
            page_request(Some(p.continue_cursor), size),
        )
        .unwrap();
        let mut other = env.db.begin();
        other.insert("items", item(insert)).unwrap();
        env.db.commit(other).unwrap();
        let result = env.db.commit(tx);
        assert_eq!(
            matches!(result, Err(DbError::Conflict { .. })),
            conflict,
            "{order} {ops} insert {insert}: {result:?}"
        );
        env.db.commit(read_only).unwrap();
    }
}

#[test]
fn an_end_cursor_rerun_returns_the_same_range_with_new_documents() {
    let env = tens();
    let q = by_n("asc", json!([]));
    let first = page(&env.db, &q, page_request(None, 10));
    let second = page(
        &env.db,
        &q,
        page_request(Some(first.continue_cursor.clone()), 10),
    );
    assert_eq!(
        ns(&second.page),
        (10..20).map(|i| f64::from(i * 10)).collect::<Vec<_>>()
    );
    insert_items(&env.db, [5.0, 45.0, 90.0, 95.0, 195.0, 2000.0]);

    let rerun = |cursor: Option<String>, end: &str| {
        page(
            &env.db,
            &q,
            PageRequest {
                cursor,
                end_cursor: Some(end.to_owned()),
                page_size: 10,
                maximum_rows_read: None,
                maximum_bytes_read: None,
            },
        )
    };
    let p = rerun(None, &first.continue_cursor);
    let mut want: Vec<f64> = (0..10).map(|i| f64::from(i * 10)).collect();
    want.extend([5.0, 45.0]);
    want.sort_by(f64::total_cmp);
    assert_eq!(
        ns(&p.page),
        want,
        "page_size is ignored; the new 90 was created after the old one, so it sorts after the cursor"
    );
    assert_eq!(p.continue_cursor, first.continue_cursor);
    assert!(!p.is_done);

    let p = rerun(Some(first.continue_cursor.clone()), &second.continue_cursor);
    let mut want: Vec<f64> = (10..20).map(|i| f64::from(i * 10)).collect();
    want.splice(0..0, [90.0, 95.0]);
    assert_eq!(ns(&p.page), want);
    assert_eq!(p.continue_cursor, second.continue_cursor);

    // The last page ends at the end cursor: a rerun takes in what was
    // appended since.
    let mut cursor = None;
    let last = loop {
        let p = page(&env.db, &q, page_request(cursor.clone(), 500));
        if p.is_done {
            break (cursor, p);
        }
        cursor = Some(p.continue_cursor);
    };
    let (last_start, last_page) = last;
    insert_items(&env.db, [3000.0]);
    let p = rerun(last_start, &last_page.continue_cursor);
    assert!(p.is_done);
    assert_eq!(ns(&p.page).last(), Some(&3000.0));
    assert_eq!(p.page.len(), last_page.page.len() + 1);
}

#[test]
fn bad_requests_and_foreign_cursors_are_refused() {
    let env = tens();
    let q = by_n("asc", json!([]));
    let cursor = page(&env.db, &q, page_request(None, 10)).continue_cursor;
    let try_page = |q: &Query, request: PageRequest| {
        let mut tx = env.db.begin();
        paginate(&mut tx, q, request)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    for other in [
        by_n("desc", json!([])),
        query(
            json!({"source": {"type": "FullTableScan", "tableName": "items", "order": null},
                     "operators": []}),
        ),
        query(
            json!({"source": {"type": "IndexRange", "indexName": "items.by_n", "order": null,
                                "range": [{"type": "Gte", "fieldPath": "n", "value": 10.0}]},
                     "operators": []}),
        ),
    ] {
        let e = try_page(&other, page_request(Some(cursor.clone()), 10));
        assert!(e.starts_with("The cursor does not match this query"), "{e}");
        let e = try_page(
            &other,
            PageRequest {
                end_cursor: Some(cursor.clone()),
                ..page_request(None, 10)
            },
        );
        assert!(
            e.starts_with("The endCursor does not match this query"),
            "{e}"
        );
    }
    // Filters do not change the source: the cursor still fits.
    let filtered = by_n("asc", json!([{"filter": n_mod(20.0, 0.0)}]));
    let mut tx = env.db.begin();
    paginate(&mut tx, &filtered, page_request(Some(cursor.clone()), 10)).unwrap();
    drop(tx);

    let e = try_page(&q, page_request(Some("not a cursor".into()), 10));
    assert!(e.starts_with("Invalid cursor"), "{e}");
    let e = try_page(&q, page_request(Some(cursor[..4].into()), 10));
    assert!(e.starts_with("Invalid cursor"), "{e}");
    assert_eq!(
        try_page(&q, page_request(None, 0)),
        "Must request at least 1 document while paginating"
    );
    assert!(try_page(&q, page_request(None, 32_001)).starts_with("Requested too many items: 32001"));
    let e = try_page(
        &q,
        PageRequest {
            maximum_rows_read: Some(0),
            ..page_request(None, 10)
        },
    );
    assert_eq!(
        e,
        "maximumRowsRead and maximumBytesRead must be greater than 0"
    );
}

#[test]
fn read_maximums_split_pages() {
    let env = open();
    insert_items(&env.db, (0..1000).map(f64::from));
    let q = query(
        json!({"source": {"type": "FullTableScan", "tableName": "items", "order": null},
                         "operators": [{"filter": n_mod(10.0, 0.0)}]}),
    );
    let limited = |cursor, rows| PageRequest {
        maximum_rows_read: Some(rows),
        ..page_request(cursor, 50)
    };
    let p = page(&env.db, &q, limited(None, 100));
    assert_eq!(
        ns(&p.page),
        (0..10).map(|i| f64::from(i * 10)).collect::<Vec<_>>()
    );
    assert_eq!(p.page_status, Some(PageStatus::SplitRequired));
    assert!(!p.is_done);
    let split = p.split_cursor.clone().expect("a split cursor");
    // The cursor is after the last document read (99, filtered out).
    let next = page(&env.db, &q, limited(Some(p.continue_cursor.clone()), 100));
    assert_eq!(ns(&next.page)[0], 100.0);
    // The split cursor halves what the page read: after document 49.
    let halves = (
        page(
            &env.db,
            &q,
            PageRequest {
                end_cursor: Some(split.clone()),
                ..page_request(None, 1)
            },
        ),
        page(
            &env.db,
            &q,
            PageRequest {
                end_cursor: Some(p.continue_cursor.clone()),
                ..page_request(Some(split), 1)
            },
        ),
    );
    assert_eq!(ns(&halves.0.page), [0.0, 10.0, 20.0, 30.0, 40.0]);
    assert_eq!(ns(&halves.1.page), [50.0, 60.0, 70.0, 80.0, 90.0]);

    // Bytes: every document is the same size, so the page stops after
    // the first document that reaches the maximum.
    let size = engine::value::limits::object_size(&run(&env.db, &q).unwrap()[0]);
    let p = page(
        &env.db,
        &q,
        PageRequest {
            maximum_bytes_read: Some(size * 25 - 1),
            ..page_request(None, 50)
        },
    );
    assert_eq!(p.page_status, Some(PageStatus::SplitRequired));
    assert_eq!(ns(&p.page), [0.0, 10.0, 20.0]);

    // Near a maximum: recommended.
    let q = query(
        json!({"source": {"type": "FullTableScan", "tableName": "items", "order": null},
                         "operators": []}),
    );
    let p = page(
        &env.db,
        &q,
        PageRequest {
            maximum_rows_read: Some(100),
            ..page_request(None, 80)
        },
    );
    assert_eq!(p.page.len(), 80);
    assert_eq!(p.page_status, Some(PageStatus::SplitRecommended));
    assert!(p.split_cursor.is_some());
    let p = page(
        &env.db,
        &q,
        PageRequest {
            maximum_rows_read: Some(100),
            ..page_request(None, 70)
        },
    );
    assert_eq!(p.page_status, None);
    assert_eq!(p.split_cursor, None);
}

#[test]
fn a_filtered_scan_past_the_read_limit_fails_with_too_many_reads() {
    let env = open();
    let n = engine::db::READ_DOCUMENTS_MAX + 100;
    insert_items(&env.db, (0..n).map(|i| i as f64));
    let q = query(
        json!({"source": {"type": "FullTableScan", "tableName": "items", "order": null},
                         "operators": [{"filter": {"$lt": [{"$field": "n"}, {"$literal": -1.0}]}}]}),
    );
    let e = run(&env.db, &q).unwrap_err();
    assert!(matches!(e, ExecError::Db(DbError::TooManyReads)), "{e}");
    assert_eq!(e.to_string(), DbError::TooManyReads.to_string());
    assert!(e.to_string().starts_with("Too many documents read"), "{e}");

    // A page with a row maximum stops before the limit instead.
    let p = page(
        &env.db,
        &q,
        PageRequest {
            maximum_rows_read: Some(1000),
            ..page_request(None, 10)
        },
    );
    assert!(p.page.is_empty() && !p.is_done);
    assert_eq!(p.page_status, Some(PageStatus::SplitRequired));
}

#[test]
fn the_read_set_of_a_page_ends_at_its_cursor() {
    let env = tens();
    let q = by_n("asc", json!([{"filter": n_mod(20.0, 0.0)}]));
    let mut tx = env.db.begin();
    let p = paginate(&mut tx, &q, page_request(None, 5)).unwrap();
    assert_eq!(ns(&p.page), [0.0, 20.0, 40.0, 60.0, 80.0]);
    let def_fields = IndexDef::user_fields(&[FieldPath::single("n").unwrap()]);
    let all = run(&env.db, &by_n("asc", json!([]))).unwrap();
    let key = |n: usize| key_of(&def_fields, &all[n / 10]);
    let reads: Vec<&KeyInterval> = tx.read_set().iter().map(|(_, iv)| iv).collect();
    let covered = |k: &[u8]| reads.iter().any(|iv| iv.contains(k));
    assert!((0..=80).step_by(10).all(|n| covered(&key(n))));
    assert!(!covered(&key(90)));
    // The interval that reaches furthest ends exactly at the cursor's key.
    assert!(reads.iter().any(|iv| iv.end == Bound::Included(key(80))));
    env.db.commit(tx).unwrap();
}
