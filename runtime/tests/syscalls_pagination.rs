//! `1.0/queryPage` through `DbSyscalls`, with the arguments `.paginate()`
//! sends: walking 1,000 documents in pages of 37 (each page its own query
//! execution, as a client's `loadMore` makes) visits every document exactly
//! once in order, in both directions and through an index range; a rerun
//! with the page's `continueCursor` as `endCursor` (or the journal's) returns
//! the same page; the page's cursor is kept as the journal; one function may
//! paginate only once; page sizes and foreign cursors are refused; `_` tables
//! page as empty.

mod syscalls_support;

use std::collections::HashSet;

use runtime::syscalls::{CallContext, DbSyscalls, SYSTEM_TABLE_END_CURSOR};
use runtime::UdfType;
use serde_json::{json, Value as Json};
use syscalls_support::*;

/// The arguments `QueryImpl.paginate` sends (`maximumBytesRead` undefined,
/// so absent).
fn page_args(query: &Json, cursor: Option<&str>, page_size: u64) -> Json {
    json!({
        "query": query,
        "cursor": cursor,
        "endCursor": null,
        "pageSize": page_size,
        "maximumRowsRead": null,
        "version": VERSION,
    })
}

fn fill(env: &Env, n: usize) -> Vec<String> {
    mutation(&env.db, None, |h| {
        (0..n)
            .map(|i| insert(h, "items", json!({"i": i as f64, "group": (i % 3) as f64})))
            .collect()
    })
}

/// Every page of `query`, each read by its own query execution.
fn all_pages(env: &Env, query: &Json, page_size: u64) -> Vec<Vec<Json>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = query_page(env, query, cursor.as_deref(), page_size);
        let docs = page["page"].as_array().expect("page").clone();
        pages.push(docs);
        assert_eq!(page["pageStatus"], Json::Null);
        assert_eq!(page["splitCursor"], Json::Null);
        cursor = Some(page["continueCursor"].as_str().expect("cursor").to_owned());
        if page["isDone"] == json!(true) {
            return pages;
        }
        assert!(pages.len() < 1000, "pagination does not end");
    }
}

fn query_page(env: &Env, query: &Json, cursor: Option<&str>, page_size: u64) -> Json {
    crate::query(&env.db, |h| {
        ok(h, "1.0/queryPage", page_args(query, cursor, page_size))
    })
}

fn ids(pages: &[Vec<Json>]) -> Vec<String> {
    pages
        .iter()
        .flatten()
        .map(|d| d["_id"].as_str().expect("_id").to_owned())
        .collect()
}

#[test]
fn a_thousand_documents_in_pages_of_37() {
    let env = open();
    let inserted = fill(&env, 1000);
    let pages = all_pages(&env, &full_scan("items"), 37);
    // 27 full pages, one of 1, and possibly an empty last page at the end.
    assert!(pages[..27].iter().all(|p| p.len() == 37));
    let seen = ids(&pages);
    assert_eq!(seen.len(), 1000, "no gaps, no duplicates");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 1000);
    assert_eq!(seen, inserted, "creation order");

    let mut desc = full_scan("items");
    desc["source"]["order"] = json!("desc");
    let mut backwards = ids(&all_pages(&env, &desc, 37));
    backwards.reverse();
    assert_eq!(backwards, inserted);
}

#[test]
fn pages_through_an_index_range_with_a_filter() {
    let env = open();
    let inserted = fill(&env, 300);
    add_index(&env.db, "items", "by_group", &["group"]);
    let query = json!({
        "source": {"type": "IndexRange", "indexName": "items.by_group",
                   "range": [{"type": "Eq", "fieldPath": "group", "value": 1.0}], "order": null},
        "operators": [{"filter": {"$lt": [{"$field": "i"}, {"$literal": 200.0}]}}],
    });
    let seen = ids(&all_pages(&env, &query, 7));
    let expected: Vec<String> = inserted
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 1 && *i < 200)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn end_cursor_reruns_return_the_same_page_and_the_journal_keeps_it() {
    let env = open();
    fill(&env, 50);
    let query = full_scan("items");
    let first = query_page(&env, &query, None, 10);
    let end = first["continueCursor"].as_str().unwrap().to_owned();

    // Documents inserted after the page (later in creation order) must not
    // join a rerun of it.
    fill(&env, 5);
    let rerun = crate::query(&env.db, |h| {
        // A larger pageSize: the end cursor wins.
        let mut args = page_args(&query, None, 20);
        args["endCursor"] = json!(end);
        let page = ok(h, "1.0/queryPage", args);
        assert_eq!(h.journal_end_cursor(), Some(end.as_str()));
        page
    });
    assert_eq!(rerun["page"], first["page"]);
    assert_eq!(rerun["continueCursor"], json!(end));

    // The same through the journal of the previous run.
    let mut tx = env.db.begin();
    let mut h = DbSyscalls::new(&mut tx, UdfType::Query, CallContext::default())
        .with_journal_end_cursor(Some(end.clone()));
    let journaled = ok(&mut h, "1.0/queryPage", page_args(&query, None, 3));
    assert_eq!(
        journaled["page"], first["page"],
        "the journal overrides pageSize"
    );
}

#[test]
fn one_paginated_query_per_function() {
    let env = open();
    fill(&env, 3);
    crate::query(&env.db, |h| {
        ok(h, "1.0/queryPage", page_args(&full_scan("items"), None, 2));
        assert_eq!(
            err(h, "1.0/queryPage", page_args(&full_scan("items"), None, 2)),
            "This query or mutation function ran multiple paginated queries. Convex only \
             supports a single paginated query in each function."
        );
    });
}

#[test]
fn bad_page_requests_are_refused() {
    let env = open();
    fill(&env, 3);
    let query = full_scan("items");
    crate::query(&env.db, |h| {
        assert_eq!(
            err(h, "1.0/queryPage", page_args(&query, None, 0)),
            "Must request at least 1 document while paginating"
        );
    });
    crate::query(&env.db, |h| {
        let e = err(h, "1.0/queryPage", page_args(&query, None, 32_001));
        assert!(e.starts_with("Requested too many items: 32001"), "{e}");
    });
    crate::query(&env.db, |h| {
        let mut args = page_args(&query, None, 2);
        args["pageSize"] = json!(2.5);
        assert_eq!(
            err(h, "1.0/queryPage", args),
            "Invalid arguments for `queryPage`: invalid type: floating point `2.5`, expected usize"
        );
    });
    crate::query(&env.db, |h| {
        let mut args = page_args(&query, None, 2);
        args["maximumRowsRead"] = json!(0);
        assert_eq!(
            err(h, "1.0/queryPage", args),
            "maximumRowsRead and maximumBytesRead must be greater than 0"
        );
    });
    crate::query(&env.db, |h| {
        let e = err(
            h,
            "1.0/queryPage",
            page_args(&query, Some("not a cursor"), 2),
        );
        assert!(e.starts_with("Invalid cursor: "), "{e}");
    });
    // A cursor of another query.
    let other = query_page(&env, &full_scan("others"), None, 2);
    crate::query(&env.db, |h| {
        let e = err(
            h,
            "1.0/queryPage",
            page_args(&query, other["continueCursor"].as_str(), 2),
        );
        assert!(e.starts_with("The cursor does not match this query"), "{e}");
    });
}

#[test]
fn maximum_rows_read_splits_the_page() {
    let env = open();
    fill(&env, 20);
    let mut args = page_args(&full_scan("items"), None, 15);
    args["maximumRowsRead"] = json!(6);
    let page = crate::query(&env.db, |h| ok(h, "1.0/queryPage", args));
    assert_eq!(page["page"].as_array().unwrap().len(), 6);
    assert_eq!(page["pageStatus"], json!("SplitRequired"));
    assert!(page["splitCursor"].is_string());
    assert_eq!(page["isDone"], json!(false));
}

#[test]
fn system_tables_page_as_empty() {
    let env = open();
    let page = query_page(&env, &full_scan("_storage"), None, 10);
    assert_eq!(
        page,
        json!({"page": [], "isDone": true, "continueCursor": SYSTEM_TABLE_END_CURSOR,
               "splitCursor": null, "pageStatus": null})
    );
    // Its cursor is accepted back.
    let again = query_page(
        &env,
        &full_scan("_storage"),
        Some(SYSTEM_TABLE_END_CURSOR),
        10,
    );
    assert_eq!(again["isDone"], json!(true));
}
