//! The system queries (`_system/cli/...`) the official CLI subscribes to
//! over the sync protocol, answered in Rust over the caller's transaction
//! (so their reads are recorded like any query's). Admin only.
//!
//! Answered: `tableSize:default` (deploy asks it before dropping an index),
//! `tables` and `tableData` (`npx convex data`), `convexUrl:cloudUrl`,
//! and `queryEnvironmentVariables[:get]` (this server has no environment
//! variables yet, so the list is empty and every name unset). Any other
//! `_system/` path is refused by name.

use std::ops::Bound;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use engine::db::{
    prefix_key, Database, DbError, KeyInterval, Order, Transaction, BY_CREATION_TIME,
    CREATION_TIME_FIELD, ID_FIELD,
};
use engine::value::{Object, Value};

/// Most documents one `tableData` page returns.
const MAX_PAGE: usize = 1000;

/// What a system query needs besides its transaction.
#[derive(Debug)]
pub struct SystemContext<'a> {
    pub db: &'a Database,
    pub cloud_url: &'a str,
}

/// Runs system query `module:name`; `None` if there is no such query.
pub fn run(
    module: &str,
    name: &str,
    args: &Value,
    tx: &mut Transaction<'_>,
    cx: &SystemContext<'_>,
) -> Option<Result<Value, String>> {
    let module = module.trim_end_matches(".js");
    let args = match args {
        Value::Object(o) => o,
        _ => return Some(Err("System query arguments must be an object".into())),
    };
    let result = match (module, name) {
        ("_system/cli/tableSize", "default") => table_size(args, tx),
        ("_system/cli/tables", "default") => Ok(tables(cx)),
        ("_system/cli/tableData", "default") => table_data(args, tx),
        ("_system/cli/convexUrl", "cloudUrl") => Ok(Value::String(cx.cloud_url.to_string())),
        ("_system/cli/queryEnvironmentVariables", "default") => Ok(Value::Array(Vec::new())),
        ("_system/cli/queryEnvironmentVariables", "get") => Ok(Value::Null),
        _ => return None,
    };
    Some(result)
}

fn string_arg<'a>(args: &'a Object, name: &str) -> Result<&'a str, String> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(format!("Missing string argument `{name}`")),
    }
}

fn db_error(e: DbError) -> String {
    e.to_string()
}

fn table_size(args: &Object, tx: &mut Transaction<'_>) -> Result<Value, String> {
    let table = string_arg(args, "tableName")?;
    let docs = tx
        .scan(
            table,
            BY_CREATION_TIME,
            &KeyInterval::all(),
            Order::Asc,
            None,
        )
        .map_err(db_error)?;
    Ok(Value::Float64(docs.len() as f64))
}

fn tables(cx: &SystemContext<'_>) -> Value {
    let page = cx
        .db
        .table_names()
        .into_iter()
        .map(|name| {
            let mut o = Object::new();
            o.insert("name".into(), Value::String(name));
            Value::Object(o)
        })
        .collect();
    page_value(page, true, String::new())
}

fn page_value(page: Vec<Value>, is_done: bool, cursor: String) -> Value {
    let mut o = Object::new();
    o.insert("page".into(), Value::Array(page));
    o.insert("isDone".into(), Value::Boolean(is_done));
    o.insert("continueCursor".into(), Value::String(cursor));
    Value::Object(o)
}

/// Documents of a table by creation time, a page at a time; the cursor is
/// the last document's `by_creation_time` key.
fn table_data(args: &Object, tx: &mut Transaction<'_>) -> Result<Value, String> {
    let table = string_arg(args, "table")?;
    let order = match args.get("order") {
        None | Some(Value::Null) => Order::Desc,
        Some(Value::String(s)) if s == "desc" => Order::Desc,
        Some(Value::String(s)) if s == "asc" => Order::Asc,
        Some(other) => return Err(format!("Invalid order {other:?}: use \"asc\" or \"desc\"")),
    };
    let (num_items, cursor) = match args.get("paginationOpts") {
        Some(Value::Object(p)) => {
            let n = match p.get("numItems") {
                Some(Value::Float64(n)) if *n >= 1.0 => *n as usize,
                Some(Value::Int64(n)) if *n >= 1 => *n as usize,
                _ => return Err("paginationOpts.numItems must be a number of at least 1".into()),
            };
            let cursor = match p.get("cursor") {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) if c.is_empty() => None,
                Some(Value::String(c)) => Some(
                    URL_SAFE_NO_PAD
                        .decode(c)
                        .map_err(|_| format!("Invalid cursor {c:?}"))?,
                ),
                Some(_) => return Err("paginationOpts.cursor must be a string or null".into()),
            };
            (n.min(MAX_PAGE), cursor)
        }
        _ => (MAX_PAGE, None),
    };
    let interval = match (&cursor, order) {
        (None, _) => KeyInterval::all(),
        (Some(c), Order::Asc) => KeyInterval {
            start: Bound::Excluded(c.clone()),
            end: Bound::Unbounded,
        },
        (Some(c), Order::Desc) => KeyInterval {
            start: Bound::Unbounded,
            end: Bound::Excluded(c.clone()),
        },
    };
    let docs = tx
        .scan(
            table,
            BY_CREATION_TIME,
            &interval,
            order,
            Some(num_items + 1),
        )
        .map_err(db_error)?;
    let is_done = docs.len() <= num_items;
    let page: Vec<Value> = docs
        .iter()
        .take(num_items)
        .map(|d| Value::Object((**d).clone()))
        .collect();
    let cursor = match page.last() {
        Some(Value::Object(last)) if !is_done => URL_SAFE_NO_PAD.encode(prefix_key(&[
            last.get(CREATION_TIME_FIELD),
            last.get(ID_FIELD),
        ])),
        _ => String::new(),
    };
    Ok(page_value(page, is_done, cursor))
}
