//! The query JSON of `1.0/queryStream` / `1.0/queryPage` (reference §3.2):
//! [`parse_query`] reads it into a [`Query`], [`Query::to_json`] writes it
//! back.
//!
//! Invariant kept here: `parse_query` accepts what upstream's
//! `Query::try_from(JsonValue)` (convex-backend
//! `crates/common/src/json/query.rs`, `json/expression.rs`) accepts, except
//! search sources and `$commitTs`, which it refuses with a clear error rather
//! than answering wrongly; every refusal names where in the JSON it was; and
//! `parse_query(&q.to_json()) == Ok(q)` for every `Query`.

use serde_json::{json, Map, Value as Json};

use super::{
    Expr, FieldPath, FieldPathError, Operator, Order, Query, RangeKind, RangeTerm, Source,
    MAX_QUERY_OPERATORS,
};
use crate::value::json::{from_json, to_json};
use crate::value::{Value, ValueError};

/// Deepest nesting of filter expressions accepted, so evaluation's recursion
/// is bounded. (serde_json already stops JSON text at 128 levels; this also
/// bounds JSON built in memory.)
pub const MAX_EXPRESSION_DEPTH: usize = 128;

/// Longest excerpt of offending JSON quoted in a message.
const EXCERPT_CHARS_MAX: usize = 80;

/// Why query JSON was refused. `at` is where in the query, such as
/// `source.range[1].value` or `operators[0].filter.$and[2]`.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum QueryError {
    /// A required key is absent.
    #[error("Invalid query: {at} is missing")]
    MissingField {
        /// The missing key's place.
        at: String,
    },
    /// A key holds the wrong JSON type.
    #[error("Invalid query: {at} must be {expected}, got {got}")]
    WrongType {
        /// The place.
        at: String,
        /// What it must be, as `a string`.
        expected: &'static str,
        /// What it is, as `a number`.
        got: &'static str,
    },
    /// `source.type` is none of the three kinds.
    #[error(
        "Invalid query: {at} is {got:?}; expected \"FullTableScan\", \"IndexRange\" or \
         \"Search\""
    )]
    UnknownSourceType {
        /// The place (`source.type`).
        at: String,
        /// The type given.
        got: String,
    },
    /// A `withSearchIndex` query: refused rather than answered wrongly.
    #[error("Search queries are not supported by this server yet")]
    SearchUnsupported,
    /// `order` is not `null`, `"asc"` or `"desc"`. (upstream: expected "asc"
    /// or "desc")
    #[error("Invalid query: {at} is {got}; expected \"asc\" or \"desc\"")]
    InvalidOrder {
        /// The place (`source.order`).
        at: String,
        /// The JSON given.
        got: String,
    },
    /// An empty table name.
    #[error("Invalid query: {at} is empty; expected a table name")]
    EmptyTableName {
        /// The place (`source.tableName`).
        at: String,
    },
    /// `indexName` without a dot. (upstream `not_enough_name_components`)
    #[error("Insufficient components in index name {name}")]
    IndexNameTooFewComponents {
        /// The name given.
        name: String,
    },
    /// `indexName` with more than one dot. (upstream
    /// `too_many_name_components`)
    #[error("Too many components in index name {name}")]
    IndexNameTooManyComponents {
        /// The name given.
        name: String,
    },
    /// `indexName` with an empty table or index part, as `".by_x"`.
    #[error(
        "Invalid index name {name:?}: expected \"table.index\" with neither part empty, as \
         \"messages.by_channel\""
    )]
    IndexNameEmptyComponent {
        /// The name given.
        name: String,
    },
    /// A range term's `type` is not a comparison.
    #[error("Invalid query: {at} is {got:?}; expected \"Eq\", \"Gt\", \"Gte\", \"Lt\" or \"Lte\"")]
    UnknownRangeType {
        /// The place.
        at: String,
        /// The type given.
        got: String,
    },
    /// A `fieldPath` or `$field` that is not a field path.
    #[error("Invalid query: {at}: {source}")]
    InvalidFieldPath {
        /// The place.
        at: String,
        /// What is wrong with it.
        source: FieldPathError,
    },
    /// A value that is not valid `convex_encoded_json`.
    #[error("Invalid query: {at}: {source}")]
    InvalidValue {
        /// The place.
        at: String,
        /// What is wrong with it.
        source: ValueError,
    },
    /// `{"$commitTs": null}`: refused rather than answered wrongly.
    #[error(
        "Invalid query: {at} is {{\"$commitTs\": null}}; comparing with the commit timestamp is \
         not supported by this server yet"
    )]
    CommitTsUnsupported {
        /// The place.
        at: String,
    },
    /// An operator that is neither `{"filter": e}` nor `{"limit": n}`.
    #[error(
        "Invalid query: {at} must be {{\"filter\": expression}} or {{\"limit\": n}}, got {got}"
    )]
    UnknownOperator {
        /// The place (`operators[i]`).
        at: String,
        /// An excerpt of the JSON given.
        got: String,
    },
    /// A limit that is not a non-negative integer.
    #[error("Invalid query: {at} must be a non-negative integer, got {got}")]
    InvalidLimit {
        /// The place (`operators[i].limit`).
        at: String,
        /// The JSON given.
        got: String,
    },
    /// More than [`MAX_QUERY_OPERATORS`] operators. (the client's wording:
    /// "Can't construct query with more than 256 operators")
    #[error("Can't construct query with more than {max} operators (this query has {count})")]
    TooManyOperators {
        /// Operators given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A malformed filter expression.
    #[error("Invalid filter expression at {at}: {reason}")]
    InvalidExpression {
        /// The place.
        at: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// Filter expressions nested deeper than [`MAX_EXPRESSION_DEPTH`].
    #[error("Invalid filter expression at {at}: nested more than {max} levels deep")]
    ExpressionTooNested {
        /// Where the limit was crossed.
        at: String,
        /// The limit.
        max: usize,
    },
}

/// Reads query JSON (`{source, operators}`, reference §3.2) into a
/// [`Query`]. Values inside are `convex_encoded_json`; `{"$undefined":
/// null}` is undefined where a value may be undefined (range values and
/// `$literal`). Unknown extra keys are ignored, as upstream's serde does.
pub fn parse_query(json: &Json) -> Result<Query, QueryError> {
    let query = object(json, "query")?;
    let source = parse_source(required(query, "", "source")?)?;
    let operators_json = array(required(query, "", "operators")?, "operators")?;
    if operators_json.len() > MAX_QUERY_OPERATORS {
        return Err(QueryError::TooManyOperators {
            count: operators_json.len(),
            max: MAX_QUERY_OPERATORS,
        });
    }
    let operators = operators_json
        .iter()
        .enumerate()
        .map(|(i, op)| parse_operator(op, &format!("operators[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(Query { source, operators })
}

fn parse_source(j: &Json) -> Result<Source, QueryError> {
    const AT: &str = "source";
    let src = object(j, AT)?;
    let ty = string(required(src, AT, "type")?, "source.type")?;
    match ty {
        "FullTableScan" => {
            let table = string(required(src, AT, "tableName")?, "source.tableName")?;
            if table.is_empty() {
                return Err(QueryError::EmptyTableName {
                    at: "source.tableName".to_owned(),
                });
            }
            Ok(Source::FullTableScan {
                table: table.to_owned(),
                order: parse_order(src.get("order"))?,
            })
        }
        "IndexRange" => {
            let name = string(required(src, AT, "indexName")?, "source.indexName")?;
            let (table, index) = split_index_name(name)?;
            let range = array(required(src, AT, "range")?, "source.range")?
                .iter()
                .enumerate()
                .map(|(i, t)| parse_range_term(t, &format!("source.range[{i}]")))
                .collect::<Result<_, _>>()?;
            Ok(Source::IndexRange {
                table: table.to_owned(),
                index: index.to_owned(),
                range,
                order: parse_order(src.get("order"))?,
            })
        }
        "Search" => Err(QueryError::SearchUnsupported),
        other => Err(QueryError::UnknownSourceType {
            at: "source.type".to_owned(),
            got: other.to_owned(),
        }),
    }
}

fn parse_order(j: Option<&Json>) -> Result<Order, QueryError> {
    match j {
        None | Some(Json::Null) => Ok(Order::Asc),
        Some(Json::String(s)) if s == "asc" => Ok(Order::Asc),
        Some(Json::String(s)) if s == "desc" => Ok(Order::Desc),
        Some(other) => Err(QueryError::InvalidOrder {
            at: "source.order".to_owned(),
            got: excerpt(other),
        }),
    }
}

/// `"table.index"` into its two parts, as upstream's `IndexName::from_str`.
fn split_index_name(name: &str) -> Result<(&str, &str), QueryError> {
    let mut parts = name.split('.');
    let table = parts.next().unwrap_or_default();
    let Some(index) = parts.next() else {
        return Err(QueryError::IndexNameTooFewComponents {
            name: name.to_owned(),
        });
    };
    if parts.next().is_some() {
        return Err(QueryError::IndexNameTooManyComponents {
            name: name.to_owned(),
        });
    }
    if table.is_empty() || index.is_empty() {
        return Err(QueryError::IndexNameEmptyComponent {
            name: name.to_owned(),
        });
    }
    Ok((table, index))
}

fn parse_range_term(j: &Json, at: &str) -> Result<RangeTerm, QueryError> {
    let term = object(j, at)?;
    let type_at = join(at, "type");
    let kind = match string(required(term, at, "type")?, &type_at)? {
        "Eq" => RangeKind::Eq,
        "Gt" => RangeKind::Gt,
        "Gte" => RangeKind::Gte,
        "Lt" => RangeKind::Lt,
        "Lte" => RangeKind::Lte,
        other => {
            return Err(QueryError::UnknownRangeType {
                at: type_at,
                got: other.to_owned(),
            })
        }
    };
    let path_at = join(at, "fieldPath");
    let path = string(required(term, at, "fieldPath")?, &path_at)?;
    let field_path = FieldPath::parse(path).map_err(|source| QueryError::InvalidFieldPath {
        at: path_at,
        source,
    })?;
    let value = maybe_value(required(term, at, "value")?, &join(at, "value"))?;
    Ok(RangeTerm {
        kind,
        field_path,
        value,
    })
}

/// A value that may be undefined: `{"$undefined": null}` is `None`.
fn maybe_value(j: &Json, at: &str) -> Result<Option<Value>, QueryError> {
    match single_entry(j) {
        Some((key, inner)) if key == "$undefined" && inner.is_null() => return Ok(None),
        Some((key, _)) if key == "$commitTs" => {
            return Err(QueryError::CommitTsUnsupported { at: at.to_owned() })
        }
        _ => {}
    }
    from_json(j)
        .map(Some)
        .map_err(|source| QueryError::InvalidValue {
            at: at.to_owned(),
            source,
        })
}

fn parse_operator(j: &Json, at: &str) -> Result<Operator, QueryError> {
    let unknown = || QueryError::UnknownOperator {
        at: at.to_owned(),
        got: excerpt(j),
    };
    let (key, inner) = single_entry(j).ok_or_else(unknown)?;
    match key.as_str() {
        "filter" => Ok(Operator::Filter(parse_expr(inner, &join(at, "filter"), 0)?)),
        "limit" => inner
            .as_u64()
            .map(Operator::Limit)
            .ok_or_else(|| QueryError::InvalidLimit {
                at: join(at, "limit"),
                got: excerpt(inner),
            }),
        _ => Err(unknown()),
    }
}

/// The operator keys of a filter expression, for messages.
const EXPRESSION_KEYS: &str =
    "$eq, $neq, $lt, $lte, $gt, $gte, $add, $sub, $mul, $div, $mod, $neg, $not, $and, $or, \
     $field, $literal";

/// Reads a filter expression: an object with exactly one operator key, as
/// upstream's serde enum `JsonExpression`. A bare value is refused as
/// upstream refuses it; the client always sends `{"$literal": value}`.
fn parse_expr(j: &Json, at: &str, depth: usize) -> Result<Expr, QueryError> {
    if depth >= MAX_EXPRESSION_DEPTH {
        return Err(QueryError::ExpressionTooNested {
            at: at.to_owned(),
            max: MAX_EXPRESSION_DEPTH,
        });
    }
    let invalid = |reason: String| QueryError::InvalidExpression {
        at: at.to_owned(),
        reason,
    };
    let map = match j {
        Json::Object(map) => map,
        other => {
            return Err(invalid(format!(
                "expected an object with one operator key, such as {{\"$field\": \"name\"}} or \
                 {{\"$literal\": value}}, got {} {} (plain values must be wrapped in $literal)",
                json_type(other),
                excerpt(other)
            )))
        }
    };
    let Some((op, arg)) = single_entry(j) else {
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        return Err(invalid(format!(
            "expected exactly one operator key ({EXPRESSION_KEYS}), got {} keys: {keys:?}",
            map.len()
        )));
    };
    let here = join(at, op);
    let next = depth + 1;
    let binary = |make: fn(Box<Expr>, Box<Expr>) -> Expr| match arg {
        Json::Array(items) if items.len() == 2 => Ok(make(
            Box::new(parse_expr(&items[0], &format!("{here}[0]"), next)?),
            Box::new(parse_expr(&items[1], &format!("{here}[1]"), next)?),
        )),
        other => Err(invalid(format!(
            "{op} takes an array of 2 expressions, got {} {}",
            json_type(other),
            excerpt(other)
        ))),
    };
    let list = |make: fn(Vec<Expr>) -> Expr| match arg {
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_expr(item, &format!("{here}[{i}]"), next))
            .collect::<Result<Vec<_>, _>>()
            .map(make),
        other => Err(invalid(format!(
            "{op} takes an array of expressions, got {} {}",
            json_type(other),
            excerpt(other)
        ))),
    };
    match op.as_str() {
        "$eq" => binary(Expr::Eq),
        "$neq" => binary(Expr::Neq),
        "$lt" => binary(Expr::Lt),
        "$lte" => binary(Expr::Lte),
        "$gt" => binary(Expr::Gt),
        "$gte" => binary(Expr::Gte),
        "$add" => binary(Expr::Add),
        "$sub" => binary(Expr::Sub),
        "$mul" => binary(Expr::Mul),
        "$div" => binary(Expr::Div),
        "$mod" => binary(Expr::Mod),
        "$neg" => Ok(Expr::Neg(Box::new(parse_expr(arg, &here, next)?))),
        "$not" => Ok(Expr::Not(Box::new(parse_expr(arg, &here, next)?))),
        "$and" => list(Expr::And),
        "$or" => list(Expr::Or),
        "$field" => match arg {
            Json::String(path) => FieldPath::parse(path)
                .map(Expr::Field)
                .map_err(|source| QueryError::InvalidFieldPath { at: here, source }),
            other => Err(invalid(format!(
                "$field takes a field path string, got {} {}",
                json_type(other),
                excerpt(other)
            ))),
        },
        "$literal" => Ok(Expr::Literal(maybe_value(arg, &here)?)),
        other => Err(invalid(format!(
            "unknown operator {other:?}; expected one of {EXPRESSION_KEYS}"
        ))),
    }
}

// ---- small JSON helpers ----

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn required<'a>(obj: &'a Map<String, Json>, at: &str, key: &str) -> Result<&'a Json, QueryError> {
    obj.get(key)
        .ok_or_else(|| QueryError::MissingField { at: join(at, key) })
}

fn object<'a>(j: &'a Json, at: &str) -> Result<&'a Map<String, Json>, QueryError> {
    j.as_object().ok_or_else(|| wrong_type(j, at, "an object"))
}

fn array<'a>(j: &'a Json, at: &str) -> Result<&'a Vec<Json>, QueryError> {
    j.as_array().ok_or_else(|| wrong_type(j, at, "an array"))
}

fn string<'a>(j: &'a Json, at: &str) -> Result<&'a str, QueryError> {
    j.as_str().ok_or_else(|| wrong_type(j, at, "a string"))
}

fn wrong_type(j: &Json, at: &str, expected: &'static str) -> QueryError {
    QueryError::WrongType {
        at: at.to_owned(),
        expected,
        got: json_type(j),
    }
}

/// The only key and value of a one-key object.
fn single_entry(j: &Json) -> Option<(&String, &Json)> {
    match j {
        Json::Object(map) if map.len() == 1 => map.iter().next(),
        _ => None,
    }
}

fn json_type(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// The JSON text of `j`, cut to [`EXCERPT_CHARS_MAX`] characters.
fn excerpt(j: &Json) -> String {
    let text = j.to_string();
    match text.char_indices().nth(EXCERPT_CHARS_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

// ---- back to JSON ----

impl Query {
    /// The query JSON, in the client's shape. `order` is written `"asc"` or
    /// `"desc"` (as upstream writes it), never the client's initial `null`.
    pub fn to_json(&self) -> Json {
        json!({
            "source": source_json(&self.source),
            "operators": self.operators.iter().map(operator_json).collect::<Vec<_>>(),
        })
    }
}

fn order_json(order: Order) -> Json {
    Json::from(match order {
        Order::Asc => "asc",
        Order::Desc => "desc",
    })
}

fn source_json(source: &Source) -> Json {
    match source {
        Source::FullTableScan { table, order } => json!({
            "type": "FullTableScan",
            "tableName": table,
            "order": order_json(*order),
        }),
        Source::IndexRange {
            table,
            index,
            range,
            order,
        } => json!({
            "type": "IndexRange",
            "indexName": format!("{table}.{index}"),
            "range": range.iter().map(range_term_json).collect::<Vec<_>>(),
            "order": order_json(*order),
        }),
    }
}

fn range_term_json(term: &RangeTerm) -> Json {
    let kind = match term.kind {
        RangeKind::Eq => "Eq",
        RangeKind::Gt => "Gt",
        RangeKind::Gte => "Gte",
        RangeKind::Lt => "Lt",
        RangeKind::Lte => "Lte",
    };
    json!({
        "type": kind,
        "fieldPath": term.field_path.to_string(),
        "value": maybe_value_json(term.value.as_ref()),
    })
}

fn maybe_value_json(v: Option<&Value>) -> Json {
    match v {
        Some(v) => to_json(v),
        None => json!({"$undefined": null}),
    }
}

fn operator_json(op: &Operator) -> Json {
    match op {
        Operator::Filter(e) => json!({ "filter": e.to_json() }),
        Operator::Limit(n) => json!({ "limit": n }),
    }
}

impl Expr {
    /// The expression's JSON, in the client's shape (`{"$eq": [l, r]}`,
    /// `{"$literal": v}`, ...).
    pub fn to_json(&self) -> Json {
        let binary = |op: &str, l: &Expr, r: &Expr| json!({ op: [l.to_json(), r.to_json()] });
        let list = |op: &str, items: &[Expr]| {
            let items: Vec<Json> = items.iter().map(Expr::to_json).collect();
            json!({ op: items })
        };
        match self {
            Expr::Eq(l, r) => binary("$eq", l, r),
            Expr::Neq(l, r) => binary("$neq", l, r),
            Expr::Lt(l, r) => binary("$lt", l, r),
            Expr::Lte(l, r) => binary("$lte", l, r),
            Expr::Gt(l, r) => binary("$gt", l, r),
            Expr::Gte(l, r) => binary("$gte", l, r),
            Expr::Add(l, r) => binary("$add", l, r),
            Expr::Sub(l, r) => binary("$sub", l, r),
            Expr::Mul(l, r) => binary("$mul", l, r),
            Expr::Div(l, r) => binary("$div", l, r),
            Expr::Mod(l, r) => binary("$mod", l, r),
            Expr::Neg(x) => json!({ "$neg": x.to_json() }),
            Expr::Not(x) => json!({ "$not": x.to_json() }),
            Expr::And(items) => list("$and", items),
            Expr::Or(items) => list("$or", items),
            Expr::Field(path) => json!({ "$field": path.to_string() }),
            Expr::Literal(v) => json!({ "$literal": maybe_value_json(v.as_ref()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::value::arb_valid_value;

    fn path(p: &str) -> FieldPath {
        FieldPath::parse(p).expect("valid path")
    }

    fn lit(v: impl Into<Value>) -> Box<Expr> {
        Box::new(Expr::Literal(Some(v.into())))
    }

    fn field(p: &str) -> Box<Expr> {
        Box::new(Expr::Field(path(p)))
    }

    fn parse_err(j: Json) -> String {
        parse_query(&j).expect_err("refused").to_string()
    }

    fn scan_with(operators: Json) -> Json {
        json!({
            "source": {"type": "FullTableScan", "tableName": "t", "order": null},
            "operators": operators,
        })
    }

    fn filter_err(expr: Json) -> String {
        parse_err(scan_with(json!([{ "filter": expr }])))
    }

    /// `db.query("messages").withIndex("by_channel", q => q.eq("channel",
    /// "general").gt("_creationTime", 5)).order("desc").filter(q =>
    /// q.eq(q.field("author"), "bob")).take(10)`, as the client sends it.
    fn client_example() -> Json {
        json!({
            "source": {
                "type": "IndexRange",
                "indexName": "messages.by_channel",
                "range": [
                    {"type": "Eq", "fieldPath": "channel", "value": "general"},
                    {"type": "Gt", "fieldPath": "_creationTime", "value": 5},
                ],
                "order": "desc",
            },
            "operators": [
                {"filter": {"$eq": [{"$field": "author"}, {"$literal": "bob"}]}},
                {"limit": 10},
            ],
        })
    }

    #[test]
    fn parses_the_client_example_and_writes_it_back() {
        let j = client_example();
        let q = parse_query(&j).expect("valid");
        let expected = Query {
            source: Source::IndexRange {
                table: "messages".into(),
                index: "by_channel".into(),
                range: vec![
                    RangeTerm {
                        kind: RangeKind::Eq,
                        field_path: path("channel"),
                        value: Some(Value::from("general")),
                    },
                    RangeTerm {
                        kind: RangeKind::Gt,
                        field_path: path("_creationTime"),
                        // JSON numbers are float64.
                        value: Some(Value::Float64(5.0)),
                    },
                ],
                order: Order::Desc,
            },
            operators: vec![
                Operator::Filter(Expr::Eq(field("author"), lit("bob"))),
                Operator::Limit(10),
            ],
        };
        assert_eq!(q, expected);
        // Written back, `5` is `5.0`: the same float64, spelled as one.
        let mut expected_back = j.clone();
        expected_back["source"]["range"][1]["value"] = json!(5.0);
        let back = q.to_json();
        assert_eq!(back, expected_back);
        assert_eq!(parse_query(&back), Ok(q));
    }

    #[test]
    fn full_table_scans_and_default_order() {
        // db.query("users").collect()
        let j = json!({
            "source": {"type": "FullTableScan", "tableName": "users", "order": null},
            "operators": [],
        });
        let q = parse_query(&j).expect("valid");
        assert_eq!(
            q.source,
            Source::FullTableScan {
                table: "users".into(),
                order: Order::Asc,
            }
        );
        assert_eq!(q.to_json()["source"]["order"], json!("asc"));
        assert_eq!(parse_query(&q.to_json()), Ok(q));
        // `order` may be left out entirely (upstream's Option<String>).
        let j = json!({
            "source": {"type": "FullTableScan", "tableName": "users"},
            "operators": [{"limit": 0}],
            "extra": "ignored",
        });
        let q = parse_query(&j).expect("valid");
        assert_eq!(q.operators, vec![Operator::Limit(0)]);
        // db.query("users").withIndex("by_creation_time").order("asc").first()
        let j = json!({
            "source": {"type": "IndexRange", "indexName": "users.by_creation_time",
                       "range": [], "order": "asc"},
            "operators": [{"limit": 1}],
        });
        let q = parse_query(&j).expect("valid");
        assert_eq!(q.to_json(), j);
    }

    #[test]
    fn undefined_and_encoded_values() {
        // q.eq("deletedAt", undefined) and q.neq(q.field("n"), 5n) with bytes
        let j = json!({
            "source": {"type": "IndexRange", "indexName": "t.by_deleted",
                       "range": [{"type": "Eq", "fieldPath": "deletedAt",
                                  "value": {"$undefined": null}}],
                       "order": null},
            "operators": [{"filter": {"$and": [
                {"$neq": [{"$field": "n"}, {"$literal": {"$integer": "BQAAAAAAAAA="}}]},
                {"$eq": [{"$field": "b"}, {"$literal": {"$bytes": "AAE="}}]},
                {"$eq": [{"$field": "x.y"}, {"$literal": {"$undefined": null}}]},
                {"$lt": [{"$field": "f"}, {"$literal": {"$float": "AAAAAAAA8H8="}}]},
                {"$eq": [{"$field": "o"}, {"$literal": {"k": [null, true, 1.5]}}]},
            ]}}],
        });
        let q = parse_query(&j).expect("valid");
        let Source::IndexRange { range, .. } = &q.source else {
            panic!("index range expected, got {:?}", q.source)
        };
        assert_eq!(range[0].value, None);
        let Operator::Filter(Expr::And(items)) = &q.operators[0] else {
            panic!("$and expected, got {:?}", q.operators[0])
        };
        assert_eq!(items[0], Expr::Neq(field("n"), lit(5i64)));
        assert_eq!(
            items[1],
            Expr::Eq(field("b"), lit(Value::Bytes(vec![0, 1])))
        );
        assert_eq!(
            items[2],
            Expr::Eq(field("x.y"), Box::new(Expr::Literal(None)))
        );
        assert_eq!(items[3], Expr::Lt(field("f"), lit(f64::INFINITY)));
        let mut j_back = j.clone();
        j_back["source"]["order"] = json!("asc");
        assert_eq!(q.to_json(), j_back);
    }

    #[test]
    fn every_operator_parses_and_writes_back() {
        let e = json!({"$or": [
            {"$eq": [{"$field": "a"}, {"$literal": 1.0}]},
            {"$neq": [{"$field": "a"}, {"$literal": null}]},
            {"$lt": [{"$field": "a"}, {"$literal": 2.0}]},
            {"$lte": [{"$field": "a"}, {"$literal": 3.0}]},
            {"$gt": [{"$field": "a"}, {"$literal": 4.0}]},
            {"$gte": [{"$field": "a"}, {"$literal": 5.0}]},
            {"$eq": [{"$add": [{"$field": "a"}, {"$literal": 1.0}]},
                     {"$sub": [{"$field": "b"}, {"$literal": 1.0}]}]},
            {"$eq": [{"$mul": [{"$field": "a"}, {"$literal": 2.0}]},
                     {"$div": [{"$field": "b"}, {"$literal": 2.0}]}]},
            {"$eq": [{"$mod": [{"$field": "a"}, {"$literal": 2.0}]},
                     {"$neg": {"$field": "b"}}]},
            {"$not": {"$and": []}},
            {"$or": []},
        ]});
        let q = parse_query(&scan_with(json!([{ "filter": e }]))).expect("valid");
        let Operator::Filter(expr) = &q.operators[0] else {
            panic!("filter expected")
        };
        let Expr::Or(items) = expr else {
            panic!("$or expected, got {expr:?}")
        };
        assert_eq!(items.len(), 11);
        assert_eq!(items[0], Expr::Eq(field("a"), lit(1.0)));
        assert_eq!(
            items[8],
            Expr::Eq(
                Box::new(Expr::Mod(field("a"), lit(2.0))),
                Box::new(Expr::Neg(field("b")))
            )
        );
        assert_eq!(items[9], Expr::Not(Box::new(Expr::And(vec![]))));
        assert_eq!(expr.to_json(), e);
    }

    #[test]
    fn search_and_commit_ts_are_refused_clearly() {
        let j = json!({
            "source": {"type": "Search", "indexName": "messages.search_body",
                       "filters": [{"type": "Search", "fieldPath": "body", "value": "hi"}]},
            "operators": [],
        });
        assert_eq!(
            parse_err(j),
            "Search queries are not supported by this server yet"
        );
        let j = json!({
            "source": {"type": "IndexRange", "indexName": "t.by_creation_time",
                       "range": [{"type": "Lt", "fieldPath": "_creationTime",
                                  "value": {"$commitTs": null}}],
                       "order": null},
            "operators": [],
        });
        assert_eq!(
            parse_err(j),
            "Invalid query: source.range[0].value is {\"$commitTs\": null}; comparing with the \
             commit timestamp is not supported by this server yet"
        );
    }

    #[test]
    fn at_most_256_operators() {
        let ops = |n: usize| Json::Array(vec![json!({"limit": 1}); n]);
        let q = parse_query(&scan_with(ops(256))).expect("256 is fine");
        assert_eq!(q.operators.len(), 256);
        let e = parse_query(&scan_with(ops(257))).expect_err("257 is too many");
        assert_eq!(
            e,
            QueryError::TooManyOperators {
                count: 257,
                max: 256
            }
        );
        assert_eq!(
            e.to_string(),
            "Can't construct query with more than 256 operators (this query has 257)"
        );
    }

    #[test]
    fn malformed_operators_and_limits() {
        assert_eq!(
            parse_err(scan_with(json!([{"limit": -1}]))),
            "Invalid query: operators[0].limit must be a non-negative integer, got -1"
        );
        assert_eq!(
            parse_err(scan_with(json!([{"limit": 1}, {"limit": 1.5}]))),
            "Invalid query: operators[1].limit must be a non-negative integer, got 1.5"
        );
        assert_eq!(
            parse_err(scan_with(json!([{"limit": "10"}]))),
            "Invalid query: operators[0].limit must be a non-negative integer, got \"10\""
        );
        assert_eq!(
            parse_err(scan_with(json!([{"skip": 1}]))),
            "Invalid query: operators[0] must be {\"filter\": expression} or {\"limit\": n}, got \
             {\"skip\":1}"
        );
        assert!(matches!(
            parse_query(&scan_with(
                json!([{"limit": 1, "filter": {"$literal": true}}])
            )),
            Err(QueryError::UnknownOperator { .. })
        ));
    }

    #[test]
    fn malformed_expressions() {
        // A bare value is not an expression (upstream's serde enum refuses
        // it; the client always wraps values in $literal).
        assert_eq!(
            filter_err(json!({"$eq": [{"$field": "author"}, "bob"]})),
            "Invalid filter expression at operators[0].filter.$eq[1]: expected an object with \
             one operator key, such as {\"$field\": \"name\"} or {\"$literal\": value}, got a \
             string \"bob\" (plain values must be wrapped in $literal)"
        );
        assert_eq!(
            filter_err(json!(true)),
            "Invalid filter expression at operators[0].filter: expected an object with one \
             operator key, such as {\"$field\": \"name\"} or {\"$literal\": value}, got a \
             boolean true (plain values must be wrapped in $literal)"
        );
        assert_eq!(
            filter_err(json!({"$eq": [{"$field": "a"}]})),
            "Invalid filter expression at operators[0].filter: $eq takes an array of 2 \
             expressions, got an array [{\"$field\":\"a\"}]"
        );
        assert_eq!(
            filter_err(json!({"$and": {"$literal": true}})),
            "Invalid filter expression at operators[0].filter: $and takes an array of \
             expressions, got an object {\"$literal\":true}"
        );
        assert_eq!(
            filter_err(json!({"$field": 3})),
            "Invalid filter expression at operators[0].filter: $field takes a field path \
             string, got a number 3"
        );
        assert_eq!(
            filter_err(json!({"$in": []})),
            "Invalid filter expression at operators[0].filter: unknown operator \"$in\"; \
             expected one of $eq, $neq, $lt, $lte, $gt, $gte, $add, $sub, $mul, $div, $mod, \
             $neg, $not, $and, $or, $field, $literal"
        );
        assert_eq!(
            filter_err(json!({"$not": {"$literal": true, "$field": "a"}})),
            "Invalid filter expression at operators[0].filter.$not: expected exactly one \
             operator key ($eq, $neq, $lt, $lte, $gt, $gte, $add, $sub, $mul, $div, $mod, \
             $neg, $not, $and, $or, $field, $literal), got 2 keys: [\"$field\", \"$literal\"]"
        );
        assert_eq!(
            filter_err(json!({"$or": [{"$field": "a..b"}]})),
            "Invalid query: operators[0].filter.$or[0].$field: Invalid field path \"a..b\": \
             component 1 is empty (two dots in a row); write field names separated by single \
             dots, like \"address.city\""
        );
        assert_eq!(
            filter_err(json!({"$literal": {"$foo": 1}})),
            "Invalid query: operators[0].filter.$literal: Field name $foo starts with '$', \
             which is reserved."
        );
        // Long JSON is quoted in part.
        let e = filter_err(json!({"$neg": "x".repeat(200)}));
        let cut = format!("got a string \"{}... (plain values", "x".repeat(79));
        assert!(e.contains(&cut), "{e}");
    }

    #[test]
    fn expression_nesting_is_bounded() {
        let nest = |n: usize| {
            let mut e = json!({"$literal": true});
            for _ in 0..n {
                e = json!({ "$not": e });
            }
            e
        };
        assert!(parse_query(&scan_with(
            json!([{ "filter": nest(MAX_EXPRESSION_DEPTH - 1) }])
        ))
        .is_ok());
        let e = parse_query(&scan_with(
            json!([{ "filter": nest(MAX_EXPRESSION_DEPTH) }]),
        ))
        .expect_err("too deep");
        assert!(
            matches!(e, QueryError::ExpressionTooNested { max: 128, .. }),
            "{e}"
        );
        assert!(
            e.to_string().ends_with("nested more than 128 levels deep"),
            "{e}"
        );
    }

    #[test]
    fn malformed_sources() {
        assert_eq!(
            parse_err(json!([])),
            "Invalid query: query must be an object, got an array"
        );
        assert_eq!(
            parse_err(json!({"operators": []})),
            "Invalid query: source is missing"
        );
        assert_eq!(
            parse_err(json!({"source": {"type": "FullTableScan", "tableName": "t"}})),
            "Invalid query: operators is missing"
        );
        assert_eq!(
            parse_err(json!({"source": {"type": "Scan"}, "operators": []})),
            "Invalid query: source.type is \"Scan\"; expected \"FullTableScan\", \"IndexRange\" \
             or \"Search\""
        );
        assert_eq!(
            parse_err(json!({"source": {"type": "FullTableScan", "tableName": 1},
                             "operators": []})),
            "Invalid query: source.tableName must be a string, got a number"
        );
        assert_eq!(
            parse_err(json!({"source": {"type": "FullTableScan", "tableName": ""},
                             "operators": []})),
            "Invalid query: source.tableName is empty; expected a table name"
        );
        assert_eq!(
            parse_err(json!({"source": {"type": "FullTableScan", "tableName": "t",
                                        "order": "up"}, "operators": []})),
            "Invalid query: source.order is \"up\"; expected \"asc\" or \"desc\""
        );
        let index = |name: &str| {
            json!({"source": {"type": "IndexRange", "indexName": name, "range": [],
                              "order": null}, "operators": []})
        };
        assert_eq!(
            parse_err(index("messages")),
            "Insufficient components in index name messages"
        );
        assert_eq!(
            parse_err(index("a.b.c")),
            "Too many components in index name a.b.c"
        );
        assert_eq!(
            parse_err(index(".by_x")),
            "Invalid index name \".by_x\": expected \"table.index\" with neither part empty, as \
             \"messages.by_channel\""
        );
        let term = |t: Json| {
            json!({"source": {"type": "IndexRange", "indexName": "t.i", "range": [t],
                              "order": null}, "operators": []})
        };
        assert_eq!(
            parse_err(term(json!({"type": "Ne", "fieldPath": "a", "value": 1}))),
            "Invalid query: source.range[0].type is \"Ne\"; expected \"Eq\", \"Gt\", \"Gte\", \
             \"Lt\" or \"Lte\""
        );
        assert_eq!(
            parse_err(term(json!({"type": "Eq", "fieldPath": "a"}))),
            "Invalid query: source.range[0].value is missing"
        );
        assert_eq!(
            parse_err(term(json!({"type": "Eq", "fieldPath": "", "value": 1}))),
            "Invalid query: source.range[0].fieldPath: Empty path \"\": a field path names at \
             least one field, like \"author\" or \"address.city\""
        );
        assert!(matches!(
            parse_query(&term(json!({"type": "Eq", "fieldPath": "a",
                                     "value": {"$integer": "AA=="}}))),
            Err(QueryError::InvalidValue { .. })
        ));
    }

    fn arb_maybe_value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            1 => Just(None),
            4 => arb_valid_value().prop_map(Some),
        ]
    }

    fn arb_path() -> impl Strategy<Value = FieldPath> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "_id", "x y"]), 1..3).prop_map(
            |parts| {
                FieldPath::new(parts.into_iter().map(String::from).collect()).expect("non-empty")
            },
        )
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            arb_path().prop_map(Expr::Field),
            arb_maybe_value().prop_map(Expr::Literal),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            let pair = || (inner.clone(), inner.clone());
            prop_oneof![
                pair().prop_map(|(l, r)| Expr::Eq(Box::new(l), Box::new(r))),
                pair().prop_map(|(l, r)| Expr::Neq(Box::new(l), Box::new(r))),
                pair().prop_map(|(l, r)| Expr::Lt(Box::new(l), Box::new(r))),
                pair().prop_map(|(l, r)| Expr::Lte(Box::new(l), Box::new(r))),
                pair().prop_map(|(l, r)| Expr::Gt(Box::new(l), Box::new(r))),
                pair().prop_map(|(l, r)| Expr::Gte(Box::new(l), Box::new(r))),
                pair().prop_map(|(l, r)| Expr::Add(Box::new(l), Box::new(r))),
                pair().prop_map(|(l, r)| Expr::Sub(Box::new(l), Box::new(r))),
                pair().prop_map(|(l, r)| Expr::Mul(Box::new(l), Box::new(r))),
                pair().prop_map(|(l, r)| Expr::Div(Box::new(l), Box::new(r))),
                pair().prop_map(|(l, r)| Expr::Mod(Box::new(l), Box::new(r))),
                inner.clone().prop_map(|x| Expr::Neg(Box::new(x))),
                inner.clone().prop_map(|x| Expr::Not(Box::new(x))),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::And),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::Or),
            ]
        })
    }

    fn arb_query() -> impl Strategy<Value = Query> {
        let order = prop_oneof![Just(Order::Asc), Just(Order::Desc)];
        let kind = prop::sample::select(vec![
            RangeKind::Eq,
            RangeKind::Gt,
            RangeKind::Gte,
            RangeKind::Lt,
            RangeKind::Lte,
        ]);
        let term =
            (kind, arb_path(), arb_maybe_value()).prop_map(|(kind, field_path, value)| RangeTerm {
                kind,
                field_path,
                value,
            });
        let source = prop_oneof![
            order.clone().prop_map(|order| Source::FullTableScan {
                table: "users".into(),
                order,
            }),
            (prop::collection::vec(term, 0..4), order).prop_map(|(range, order)| {
                Source::IndexRange {
                    table: "users".into(),
                    index: "by_x".into(),
                    range,
                    order,
                }
            }),
        ];
        let operator = prop_oneof![
            arb_expr().prop_map(Operator::Filter),
            any::<u64>().prop_map(Operator::Limit),
        ];
        (source, prop::collection::vec(operator, 0..4))
            .prop_map(|(source, operators)| Query { source, operators })
    }

    proptest! {
        #[test]
        fn to_json_round_trips(q in arb_query()) {
            let text = serde_json::to_string(&q.to_json()).expect("serialize");
            let j: Json = serde_json::from_str(&text).expect("reparse");
            prop_assert_eq!(parse_query(&j), Ok(q));
        }
    }
}
