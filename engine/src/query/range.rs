//! Index ranges compiled to intervals of index-key bytes, validated as
//! upstream's `IndexRange::compile` (convex-backend
//! `crates/common/src/query.rs`).
//!
//! Invariant kept here: for an index with fields `F` and a range accepted by
//! [`compile_range`], a document's key `index_key_of(F, doc)` lies in the
//! interval **iff** the document satisfies every range term under the Convex
//! total order (undefined lowest). This rests on two properties of
//! [`crate::value::key`]: the encoding preserves order, and it is prefix-free
//! per element, so every key whose leading elements are `p` has `encode(p)`
//! as a byte prefix and nothing else does.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;

use super::expr::Shown;
use super::{FieldPath, RangeKind, RangeTerm};
use crate::value::key::encode_index_key;
use crate::value::{Object, Value};

/// A set of index keys: the byte strings between `start` and `end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInterval {
    /// The lower bound.
    pub start: Bound<Vec<u8>>,
    /// The upper bound.
    pub end: Bound<Vec<u8>>,
}

impl KeyInterval {
    /// Every key.
    pub fn all() -> Self {
        KeyInterval {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// No key at all.
    pub fn empty() -> Self {
        KeyInterval {
            start: Bound::Unbounded,
            end: Bound::Excluded(Vec::new()),
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: Vec<u8>) -> Self {
        let end = match prefix_successor(&prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        KeyInterval {
            start: included_or_unbounded(prefix),
            end,
        }
    }

    /// Whether `key` lies in the interval.
    /// Exactly one key.
    pub fn point(key: Vec<u8>) -> Self {
        KeyInterval {
            start: Bound::Included(key.clone()),
            end: Bound::Included(key),
        }
    }

    pub fn start_bound(&self) -> Bound<&[u8]> {
        self.start.as_ref().map(Vec::as_slice)
    }

    pub fn end_bound(&self) -> Bound<&[u8]> {
        self.end.as_ref().map(Vec::as_slice)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        let above_start = match &self.start {
            Bound::Unbounded => true,
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
        };
        let below_end = match &self.end {
            Bound::Unbounded => true,
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
        };
        above_start && below_end
    }

    /// Whether no byte string at all lies in the interval. Exact: the
    /// smallest string above `s` is `s` followed by `0x00`, so
    /// `(Excluded(s), Excluded(s ++ [0]))` is empty too.
    pub fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (_, Bound::Unbounded) => false,
            (Bound::Unbounded, Bound::Included(_)) => false,
            (Bound::Unbounded, Bound::Excluded(e)) => e.is_empty(),
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s), Bound::Excluded(e)) => s >= e,
            (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            (Bound::Excluded(s), Bound::Excluded(e)) => {
                // Empty iff e <= s ++ [0x00].
                let mut next = s.clone();
                next.push(0);
                *e <= next
            }
        }
    }
}

fn included_or_unbounded(start: Vec<u8>) -> Bound<Vec<u8>> {
    if start.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(start)
    }
}

/// The smallest byte string greater than every string that starts with
/// `bytes`, or `None` if there is none (`bytes` is empty or all `0xFF`).
pub fn prefix_successor(bytes: &[u8]) -> Option<Vec<u8>> {
    let last = bytes.iter().rposition(|&b| b != 0xFF)?;
    let mut out = bytes[..=last].to_vec();
    out[last] += 1;
    Some(out)
}

/// The index key of `doc` for an index over `fields`: the key encoding of
/// the tuple of the fields' values, a missing field being undefined.
pub fn index_key_of(fields: &[FieldPath], doc: &Object) -> Vec<u8> {
    let values: Vec<Option<&Value>> = fields.iter().map(|f| f.get(doc)).collect();
    let mut out = Vec::new();
    encode_index_key(&values, &mut out);
    out
}

/// The fields of the built-in `by_id` index: `[_id]`.
pub fn by_id_fields() -> Vec<FieldPath> {
    vec![FieldPath::id()]
}

/// The fields of the built-in `by_creation_time` index:
/// `[_creationTime, _id]`.
pub fn by_creation_time_fields() -> Vec<FieldPath> {
    vec![FieldPath::creation_time(), FieldPath::id()]
}

/// The full fields of a user index declared over `user_fields`: those, then
/// `_creationTime` and `_id`.
pub fn user_index_fields(user_fields: &[FieldPath]) -> Vec<FieldPath> {
    let mut fields = user_fields.to_vec();
    fields.push(FieldPath::creation_time());
    fields.push(FieldPath::id());
    fields
}

/// Why an index range cannot be used with an index. The messages are
/// upstream's (`crates/common/src/query.rs`), with the index written
/// `table.index` and fields quoted.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeError {
    /// Two `Eq` on one field, two lower or two upper bounds, or an `Eq` and
    /// a bound on one field. (upstream `already_defined_bound_error`)
    #[error(
        "Already defined {bound_type} bound in index range. Can't add \"{field_path}\" \
         {comparator} {value}."
    )]
    AlreadyDefinedBound {
        /// `equality`, `lower`, `upper` or `inequality`.
        bound_type: &'static str,
        /// The field the conflicting term is on.
        field_path: FieldPath,
        /// `==`, `>`, `>=`, `<` or `<=`.
        comparator: &'static str,
        /// The value, as upstream prints it.
        value: String,
    },
    /// Bounds on two different fields. (upstream
    /// `bounds_on_multiple_fields_error`)
    #[error(
        "Upper and lower bounds in `range` can only be applied to a single index field. This \
         query against index {index_name} attempted to set a range bound on both \"{first}\" \
         and \"{second}\". Consider using `filter` instead. See \
         https://docs.convex.dev/using/indexes for more info."
    )]
    BoundsOnMultipleFields {
        /// `table.index`.
        index_name: String,
        /// The field of the first bound.
        first: FieldPath,
        /// The other field.
        second: FieldPath,
    },
    /// A term on a field the index does not have. (upstream
    /// `field_not_in_index_error`)
    #[error(
        "The index range included a comparison with \"{field_path}\", but {index_name} with \
         fields {indexed_fields} doesn't index this field. For more information see \
         https://docs.convex.dev/using/indexes."
    )]
    FieldNotInIndex {
        /// The field.
        field_path: FieldPath,
        /// `table.index`.
        index_name: String,
        /// The index's fields as upstream prints them (without `_id`).
        indexed_fields: String,
    },
    /// The terms do not cover a prefix of the index's fields (with the
    /// bounded field last). (upstream `invalid_index_range`)
    #[error(
        "Tried to query index {index_name} but the query didn't use the index fields in \
         order.\nIndex fields: {indexed_fields}\nQuery fields: {query_fields}\nFirst incorrect \
         field: \"{field_path}\"\nFor more information see https://docs.convex.dev/using/indexes."
    )]
    FieldsOutOfOrder {
        /// `table.index`.
        index_name: String,
        /// The index's fields (without `_id`).
        indexed_fields: String,
        /// The queried fields, equalities in index order then the bounded one.
        query_fields: String,
        /// The first queried field that is not where the index has it.
        field_path: FieldPath,
    },
    /// The index definition itself lists a field twice. (upstream: "{index}
    /// has duplicate fields?")
    #[error(
        "Index {index_name} lists the field \"{field_path}\" more than once; an index's fields \
         must be distinct"
    )]
    DuplicateIndexField {
        /// `table.index`.
        index_name: String,
        /// The repeated field.
        field_path: FieldPath,
    },
}

/// The terms of a range, sorted into equalities and one optional inequality.
struct Split<'a> {
    equalities: BTreeMap<&'a FieldPath, Option<&'a Value>>,
    inequality: Option<Inequality<'a>>,
}

struct Inequality<'a> {
    field_path: &'a FieldPath,
    lower: Bound<Option<&'a Value>>,
    upper: Bound<Option<&'a Value>>,
}

/// Upstream's `IndexRange::split`, including its checks and their order.
fn split<'a>(index_name: &str, range: &'a [RangeTerm]) -> Result<Split<'a>, RangeError> {
    let mut equalities = BTreeMap::new();
    let mut ineq_path: Option<&FieldPath> = None;
    let mut lower = Bound::Unbounded;
    let mut upper = Bound::Unbounded;
    for term in range {
        let value = term.value.as_ref();
        let (is_upper, inclusive) = match term.kind {
            RangeKind::Eq => {
                if let Some(old) = equalities.insert(&term.field_path, value) {
                    return Err(RangeError::AlreadyDefinedBound {
                        bound_type: "equality",
                        field_path: term.field_path.clone(),
                        comparator: "==",
                        value: Shown(old).to_string(),
                    });
                }
                continue;
            }
            RangeKind::Gt => (false, false),
            RangeKind::Gte => (false, true),
            RangeKind::Lt => (true, false),
            RangeKind::Lte => (true, true),
        };
        let destination = if is_upper { &mut upper } else { &mut lower };
        if !matches!(destination, Bound::Unbounded) {
            return Err(RangeError::AlreadyDefinedBound {
                bound_type: if is_upper { "upper" } else { "lower" },
                field_path: term.field_path.clone(),
                comparator: comparator(term.kind),
                value: Shown(value).to_string(),
            });
        }
        if let Some(first) = ineq_path {
            if *first != term.field_path {
                return Err(RangeError::BoundsOnMultipleFields {
                    index_name: index_name.to_owned(),
                    first: first.clone(),
                    second: term.field_path.clone(),
                });
            }
        }
        ineq_path = Some(&term.field_path);
        *destination = if inclusive {
            Bound::Included(value)
        } else {
            Bound::Excluded(value)
        };
    }
    if let Some(path) = ineq_path {
        if let Some(value) = equalities.get(path) {
            return Err(RangeError::AlreadyDefinedBound {
                bound_type: "inequality",
                field_path: path.clone(),
                comparator: "==",
                value: Shown(*value).to_string(),
            });
        }
    }
    Ok(Split {
        equalities,
        inequality: ineq_path.map(|field_path| Inequality {
            field_path,
            lower,
            upper,
        }),
    })
}

fn comparator(kind: RangeKind) -> &'static str {
    match kind {
        RangeKind::Eq => "==",
        RangeKind::Gt => ">",
        RangeKind::Gte => ">=",
        RangeKind::Lt => "<",
        RangeKind::Lte => "<=",
    }
}

/// Prints paths as upstream prints a field list: `["a", "b.c"]`.
struct PathList<'a>(&'a [&'a FieldPath]);

impl fmt::Display for PathList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "\"{p}\"")?;
        }
        f.write_str("]")
    }
}

/// The index's fields as upstream's `IndexedFields` prints them: without the
/// trailing `_id` the system adds.
fn indexed_fields_display(fields: &[FieldPath]) -> String {
    let shown: Vec<&FieldPath> = match fields.split_last() {
        Some((last, rest)) if *last == FieldPath::id() => rest.iter().collect(),
        _ => fields.iter().collect(),
    };
    PathList(&shown).to_string()
}

/// Checks `range` against an index over `fields` (the full list, with
/// `_creationTime` and `_id` where the index has them; see
/// [`user_index_fields`]) and compiles it to the interval of index keys (as
/// [`index_key_of`] computes them) of exactly the documents that satisfy
/// every term. `index_name` (`table.index`) is only used in messages.
///
/// Accepted, as upstream: `Eq` terms on the leading fields of the index in
/// any order, then on the next field at most one lower bound (`Gt`/`Gte`)
/// and at most one upper bound (`Lt`/`Lte`).
pub fn compile_range(
    index_name: &str,
    fields: &[FieldPath],
    range: &[RangeTerm],
) -> Result<KeyInterval, RangeError> {
    let Split {
        equalities,
        inequality,
    } = split(index_name, range)?;

    let mut rank: HashMap<&FieldPath, usize> = HashMap::with_capacity(fields.len());
    for (i, field) in fields.iter().enumerate() {
        if rank.insert(field, i).is_some() {
            return Err(RangeError::DuplicateIndexField {
                index_name: index_name.to_owned(),
                field_path: field.clone(),
            });
        }
    }
    let not_in_index = |field_path: &FieldPath| RangeError::FieldNotInIndex {
        field_path: field_path.clone(),
        index_name: index_name.to_owned(),
        indexed_fields: indexed_fields_display(fields),
    };

    let mut ranked = Vec::with_capacity(equalities.len());
    for (path, value) in equalities {
        let r = *rank.get(path).ok_or_else(|| not_in_index(path))?;
        ranked.push((r, path, value));
    }
    ranked.sort_by_key(|(r, ..)| *r);
    if let Some(ineq) = &inequality {
        if !rank.contains_key(ineq.field_path) {
            return Err(not_in_index(ineq.field_path));
        }
    }

    let used: Vec<&FieldPath> = ranked
        .iter()
        .map(|(_, path, _)| *path)
        .chain(inequality.as_ref().map(|i| i.field_path))
        .collect();
    for (i, path) in used.iter().enumerate() {
        if fields.get(i) != Some(*path) {
            return Err(RangeError::FieldsOutOfOrder {
                index_name: index_name.to_owned(),
                indexed_fields: indexed_fields_display(fields),
                query_fields: PathList(&used).to_string(),
                field_path: (*path).clone(),
            });
        }
    }

    let prefix_values: Vec<Option<&Value>> = ranked.iter().map(|(.., v)| *v).collect();
    let mut prefix = Vec::new();
    encode_index_key(&prefix_values, &mut prefix);
    let Some(ineq) = inequality else {
        return Ok(KeyInterval::prefix(prefix));
    };
    let with = |v: Option<&Value>| {
        let mut key = prefix.clone();
        encode_index_key(&[v], &mut key);
        key
    };
    // Keys whose bounded element is `v` are exactly those starting with
    // `with(v)`; smaller elements sort wholly before it, larger wholly after.
    let start = match ineq.lower {
        Bound::Unbounded => included_or_unbounded(prefix.clone()),
        Bound::Included(v) => Bound::Included(with(v)),
        Bound::Excluded(v) => match prefix_successor(&with(v)) {
            Some(s) => Bound::Included(s),
            None => return Ok(KeyInterval::empty()),
        },
    };
    let end = match ineq.upper {
        Bound::Unbounded => prefix_successor(&prefix).map_or(Bound::Unbounded, Bound::Excluded),
        Bound::Included(v) => prefix_successor(&with(v)).map_or(Bound::Unbounded, Bound::Excluded),
        Bound::Excluded(v) => Bound::Excluded(with(v)),
    };
    Ok(KeyInterval { start, end })
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use proptest::prelude::*;

    use super::*;
    use crate::value::arb_value;

    fn path(p: &str) -> FieldPath {
        FieldPath::parse(p).expect("valid path")
    }

    fn term(kind: RangeKind, p: &str, v: impl Into<Value>) -> RangeTerm {
        RangeTerm {
            kind,
            field_path: path(p),
            value: Some(v.into()),
        }
    }

    fn channel_index() -> Vec<FieldPath> {
        user_index_fields(&[path("channel"), path("author")])
    }

    fn compile_err(range: &[RangeTerm]) -> String {
        compile_range("messages.by_channel", &channel_index(), range)
            .expect_err("invalid range")
            .to_string()
    }

    #[test]
    fn prefix_successor_cases() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(&[1, 2, 3]), Some(vec![1, 2, 4]));
        assert_eq!(prefix_successor(&[1, 0xFF, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0, 0xFE, 0xFF]), Some(vec![0, 0xFF]));
    }

    #[test]
    fn built_in_index_fields() {
        assert_eq!(by_id_fields(), vec![path("_id")]);
        assert_eq!(
            by_creation_time_fields(),
            vec![path("_creationTime"), path("_id")]
        );
        assert_eq!(
            user_index_fields(&[path("a.b")]),
            vec![path("a.b"), path("_creationTime"), path("_id")]
        );
    }

    #[test]
    fn empty_range_is_every_key() {
        let i =
            compile_range("t.by_creation_time", &by_creation_time_fields(), &[]).expect("valid");
        assert_eq!(i, KeyInterval::all());
        assert!(!i.is_empty());
        assert!(KeyInterval::empty().is_empty());
        assert!(!KeyInterval::empty().contains(b""));
    }

    #[test]
    fn equalities_may_come_in_any_order() {
        let fields = channel_index();
        let in_order = [
            term(RangeKind::Eq, "channel", "general"),
            term(RangeKind::Eq, "author", "bob"),
        ];
        let reversed = [in_order[1].clone(), in_order[0].clone()];
        assert_eq!(
            compile_range("m.i", &fields, &in_order),
            compile_range("m.i", &fields, &reversed)
        );
    }

    #[test]
    fn duplicate_bounds_are_rejected_with_upstream_messages() {
        assert_eq!(
            compile_err(&[
                term(RangeKind::Eq, "channel", "a"),
                term(RangeKind::Eq, "channel", "b"),
            ]),
            "Already defined equality bound in index range. Can't add \"channel\" == \"a\"."
        );
        assert_eq!(
            compile_err(&[
                term(RangeKind::Gt, "channel", 1i64),
                term(RangeKind::Gte, "channel", 2i64),
            ]),
            "Already defined lower bound in index range. Can't add \"channel\" >= 2."
        );
        assert_eq!(
            compile_err(&[
                term(RangeKind::Lte, "channel", 1.5),
                term(RangeKind::Lt, "channel", 2.5),
            ]),
            "Already defined upper bound in index range. Can't add \"channel\" < 2.5."
        );
        assert_eq!(
            compile_err(&[
                term(RangeKind::Eq, "channel", "a"),
                RangeTerm {
                    kind: RangeKind::Gt,
                    field_path: path("channel"),
                    value: None,
                },
            ]),
            "Already defined inequality bound in index range. Can't add \"channel\" == \"a\"."
        );
    }

    #[test]
    fn bounds_on_two_fields_are_rejected() {
        assert_eq!(
            compile_err(&[
                term(RangeKind::Gt, "channel", "a"),
                term(RangeKind::Lt, "author", "b"),
            ]),
            "Upper and lower bounds in `range` can only be applied to a single index field. \
             This query against index messages.by_channel attempted to set a range bound on \
             both \"channel\" and \"author\". Consider using `filter` instead. See \
             https://docs.convex.dev/using/indexes for more info."
        );
    }

    #[test]
    fn fields_not_in_the_index_are_rejected() {
        assert_eq!(
            compile_err(&[term(RangeKind::Eq, "body", "hi")]),
            "The index range included a comparison with \"body\", but messages.by_channel with \
             fields [\"channel\", \"author\", \"_creationTime\"] doesn't index this field. For \
             more information see https://docs.convex.dev/using/indexes."
        );
        assert!(matches!(
            compile_range(
                "messages.by_channel",
                &channel_index(),
                &[term(RangeKind::Lt, "body", 1i64)]
            ),
            Err(RangeError::FieldNotInIndex { .. })
        ));
    }

    #[test]
    fn fields_out_of_order_are_rejected() {
        assert_eq!(
            compile_err(&[term(RangeKind::Eq, "author", "bob")]),
            "Tried to query index messages.by_channel but the query didn't use the index fields \
             in order.\nIndex fields: [\"channel\", \"author\", \"_creationTime\"]\nQuery \
             fields: [\"author\"]\nFirst incorrect field: \"author\"\nFor more information see \
             https://docs.convex.dev/using/indexes."
        );
        // A bound before an equality on a later field.
        let e = compile_err(&[
            term(RangeKind::Gt, "channel", "a"),
            term(RangeKind::Eq, "author", "bob"),
        ]);
        assert!(
            e.contains(
                "Query fields: [\"author\", \"channel\"]\nFirst incorrect field: \"author\""
            ),
            "{e}"
        );
        // Skipping a field.
        let e = compile_err(&[
            term(RangeKind::Eq, "channel", "a"),
            term(RangeKind::Gt, "_creationTime", 1.0),
        ]);
        assert!(
            e.contains("First incorrect field: \"_creationTime\""),
            "{e}"
        );
        // by_id lists only _id, and prints as an empty field list.
        let e = compile_range(
            "t.by_id",
            &by_id_fields(),
            &[term(RangeKind::Eq, "x", 1i64)],
        )
        .expect_err("x");
        assert!(e.to_string().contains("t.by_id with fields []"), "{e}");
    }

    #[test]
    fn duplicate_index_fields_are_reported() {
        let fields = vec![path("a"), path("a")];
        let e = compile_range("t.bad", &fields, &[]).expect_err("duplicate");
        assert_eq!(
            e.to_string(),
            "Index t.bad lists the field \"a\" more than once; an index's fields must be distinct"
        );
    }

    fn satisfies(doc: &Object, terms: &[RangeTerm]) -> bool {
        terms.iter().all(|t| {
            let c = t.field_path.get(doc).cmp(&t.value.as_ref());
            match t.kind {
                RangeKind::Eq => c == Ordering::Equal,
                RangeKind::Gt => c == Ordering::Greater,
                RangeKind::Gte => c != Ordering::Less,
                RangeKind::Lt => c == Ordering::Less,
                RangeKind::Lte => c != Ordering::Greater,
            }
        })
    }

    /// A few values of every type, so documents and bounds often collide,
    /// plus arbitrary values now and then.
    fn small_value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            2 => Just(None),
            2 => Just(Some(Value::Null)),
            4 => (-2i64..=2).prop_map(|n| Some(Value::Int64(n))),
            3 => prop::sample::select(vec![0.0, -0.0, 1.5, f64::NAN, f64::NEG_INFINITY])
                .prop_map(|x| Some(Value::Float64(x))),
            2 => any::<bool>().prop_map(|b| Some(Value::Boolean(b))),
            3 => prop::sample::select(vec!["", "a", "a\0", "b"])
                .prop_map(|s| Some(Value::from(s))),
            1 => prop::sample::select(vec![vec![], vec![0u8], vec![0, 0xFF]])
                .prop_map(|b| Some(Value::Bytes(b))),
            1 => prop::collection::vec(-1i64..=1, 0..3)
                .prop_map(|v| Some(Value::Array(v.into_iter().map(Value::Int64).collect()))),
            1 => arb_value().prop_map(Some),
        ]
    }

    /// The index under test: a plain field, a nested one, then the system
    /// fields.
    fn fields() -> Vec<FieldPath> {
        user_index_fields(&[path("a"), path("n.x")])
    }

    fn arb_doc() -> impl Strategy<Value = Object> {
        let nested = prop_oneof![
            Just(None),
            small_value(),
            small_value().prop_map(|x| {
                let mut o = Object::new();
                if let Some(x) = x {
                    o.insert("x".into(), x);
                }
                Some(Value::Object(o))
            }),
        ];
        (small_value(), nested, small_value(), small_value()).prop_map(|(a, n, ct, id)| {
            let mut doc = Object::new();
            for (name, v) in [("a", a), ("n", n), ("_creationTime", ct), ("_id", id)] {
                if let Some(v) = v {
                    doc.insert(name.into(), v);
                }
            }
            doc
        })
    }

    /// Valid term sets: equalities on the first `k` fields, then optional
    /// bounds on field `k`, in shuffled order.
    fn arb_terms() -> impl Strategy<Value = Vec<RangeTerm>> {
        let n = fields().len();
        (
            0..=n,
            prop::collection::vec(small_value(), n),
            prop::option::of((any::<bool>(), small_value())),
            prop::option::of((any::<bool>(), small_value())),
        )
            .prop_flat_map(move |(k, eq_values, lower, upper)| {
                let fields = fields();
                let mut terms: Vec<RangeTerm> = fields[..k]
                    .iter()
                    .zip(eq_values)
                    .map(|(f, value)| RangeTerm {
                        kind: RangeKind::Eq,
                        field_path: f.clone(),
                        value,
                    })
                    .collect();
                if k < n {
                    if let Some((inclusive, value)) = lower {
                        let kind = if inclusive {
                            RangeKind::Gte
                        } else {
                            RangeKind::Gt
                        };
                        terms.push(RangeTerm {
                            kind,
                            field_path: fields[k].clone(),
                            value,
                        });
                    }
                    if let Some((inclusive, value)) = upper {
                        let kind = if inclusive {
                            RangeKind::Lte
                        } else {
                            RangeKind::Lt
                        };
                        terms.push(RangeTerm {
                            kind,
                            field_path: fields[k].clone(),
                            value,
                        });
                    }
                }
                Just(terms).prop_shuffle()
            })
    }

    /// Every byte string of length <= 4 over {0x00, 0x01, 0xFF}.
    fn small_strings() -> Vec<Vec<u8>> {
        let mut out = vec![vec![]];
        let mut frontier = vec![vec![]];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &frontier {
                for b in [0x00u8, 0x01, 0xFF] {
                    let mut t: Vec<u8> = s.clone();
                    t.push(b);
                    next.push(t);
                }
            }
            out.extend(next.iter().cloned());
            frontier = next;
        }
        out
    }

    fn arb_bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
        let bytes = prop::collection::vec(prop::sample::select(vec![0x00u8, 0x01, 0xFF]), 0..=3);
        prop_oneof![
            Just(Bound::Unbounded),
            bytes.clone().prop_map(Bound::Included),
            bytes.prop_map(Bound::Excluded),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn interval_contains_exactly_the_matching_documents(
            terms in arb_terms(),
            docs in prop::collection::vec(arb_doc(), 1..12),
        ) {
            let fields = fields();
            let interval = compile_range("t.by_a_nx", &fields, &terms)
                .expect("generated ranges are valid");
            for doc in &docs {
                let key = index_key_of(&fields, doc);
                prop_assert_eq!(
                    interval.contains(&key),
                    satisfies(doc, &terms),
                    "doc {:?} terms {:?} interval {:?}", doc, terms, interval
                );
                if interval.is_empty() {
                    prop_assert!(!interval.contains(&key));
                }
            }
        }

        #[test]
        fn documents_built_from_the_bounds_are_classified_right(terms in arb_terms()) {
            // Documents whose fields are exactly the term values hit the
            // boundaries, where off-by-one mistakes live.
            let fields = fields();
            let interval = compile_range("t.by_a_nx", &fields, &terms).expect("valid");
            for t in &terms {
                let mut doc = Object::new();
                for other in &terms {
                    if other.kind == RangeKind::Eq {
                        if let Some(v) = &other.value {
                            put(&mut doc, &other.field_path, v.clone());
                        }
                    }
                }
                if let Some(v) = &t.value {
                    put(&mut doc, &t.field_path, v.clone());
                }
                prop_assert_eq!(
                    interval.contains(&index_key_of(&fields, &doc)),
                    satisfies(&doc, &terms)
                );
            }
        }

        #[test]
        fn is_empty_is_exact(start in arb_bound(), end in arb_bound()) {
            let interval = KeyInterval { start, end };
            let witness = small_strings().into_iter().any(|s| interval.contains(&s));
            prop_assert_eq!(interval.is_empty(), !witness, "{:?}", interval);
        }

        #[test]
        fn prefix_successor_is_the_least_upper_bound(
            prefix in prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xFE, 0xFF]), 0..4),
            suffix in prop::collection::vec(any::<u8>(), 0..4),
            other in prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 0xFE, 0xFF]), 0..5),
        ) {
            let mut extended = prefix.clone();
            extended.extend(&suffix);
            // `other` is above every extension of the prefix exactly when it
            // is above the prefix without starting with it.
            let above_all = other > prefix && !other.starts_with(&prefix);
            match prefix_successor(&prefix) {
                Some(succ) => {
                    prop_assert!(extended < succ);
                    prop_assert!(!succ.starts_with(&prefix));
                    prop_assert_eq!(above_all, other >= succ, "{:?} vs {:?}", other, succ);
                }
                None => {
                    prop_assert!(prefix.iter().all(|&b| b == 0xFF));
                    prop_assert!(!above_all);
                }
            }
        }
    }

    /// Sets `path` in `doc`, creating objects on the way.
    fn put(doc: &mut Object, path: &FieldPath, v: Value) {
        let (last, init) = path.components().split_last().expect("non-empty");
        let mut cur = doc;
        for name in init {
            let entry = cur.get_or_insert_with(name, || Value::Object(Object::new()));
            if !matches!(entry, Value::Object(_)) {
                *entry = Value::Object(Object::new());
            }
            cur = match entry {
                Value::Object(o) => o,
                _ => return,
            };
        }
        cur.insert(last.clone(), v);
    }
}
