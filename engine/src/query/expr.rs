//! Filter expressions (`q.eq(q.field("a"), 1)` and friends) and their
//! evaluation against a document, as upstream's `Expression::eval`
//! (convex-backend `crates/common/src/query.rs`).
//!
//! Invariant kept here: evaluation is total and deterministic: comparisons
//! use the Convex total order with undefined lowest and never fail, and every
//! other failure (wrong types for arithmetic, a non-boolean where a boolean
//! is needed, Int64 overflow, Int64 division by zero) is an [`EvalError`]
//! with upstream's wording, never a panic or a silently wrapped result.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::FieldPath;
use crate::value::{Object, Value};

/// A filter expression. `None` in a literal is `undefined`.
///
/// The JSON form is in [`super::parse`]; the operators are those of the
/// client's `filterBuilderImpl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `l == r` (`$eq`), by the total order.
    Eq(Box<Expr>, Box<Expr>),
    /// `l != r` (`$neq`).
    Neq(Box<Expr>, Box<Expr>),
    /// `l < r` (`$lt`).
    Lt(Box<Expr>, Box<Expr>),
    /// `l <= r` (`$lte`).
    Lte(Box<Expr>, Box<Expr>),
    /// `l > r` (`$gt`).
    Gt(Box<Expr>, Box<Expr>),
    /// `l >= r` (`$gte`).
    Gte(Box<Expr>, Box<Expr>),
    /// `l + r` (`$add`).
    Add(Box<Expr>, Box<Expr>),
    /// `l - r` (`$sub`).
    Sub(Box<Expr>, Box<Expr>),
    /// `l * r` (`$mul`).
    Mul(Box<Expr>, Box<Expr>),
    /// `l / r` (`$div`).
    Div(Box<Expr>, Box<Expr>),
    /// `l % r` (`$mod`), truncated like JavaScript's `%`.
    Mod(Box<Expr>, Box<Expr>),
    /// `-x` (`$neg`).
    Neg(Box<Expr>),
    /// `!x` (`$not`).
    Not(Box<Expr>),
    /// `a && b && ...` (`$and`), short-circuiting; `true` when empty.
    And(Vec<Expr>),
    /// `a || b || ...` (`$or`), short-circuiting; `false` when empty.
    Or(Vec<Expr>),
    /// The document's field at this path (`$field`); undefined if missing.
    Field(FieldPath),
    /// A constant (`$literal`); `None` is undefined.
    Literal(Option<Value>),
}

/// Why an expression could not be evaluated on a document. Every message
/// follows upstream's `EvalError` wording where upstream has one.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvalError {
    /// Arithmetic on anything but two Int64s or two Float64s. (upstream
    /// `binary_arithmetic`: "Cannot {name} {l} (type {}) and {r} (type {})")
    #[error("Cannot {verb} {left} (type {left_type}) and {right} (type {right_type})")]
    ArithmeticTypes {
        /// `add`, `subtract`, `multiply`, `divide` or `mod`.
        verb: &'static str,
        /// The left operand as upstream prints it.
        left: String,
        /// Its type name (`Int64`, `String`, `undefined`, ...).
        left_type: &'static str,
        /// The right operand as upstream prints it.
        right: String,
        /// Its type name.
        right_type: &'static str,
    },
    /// Int64 arithmetic whose exact result does not fit in an Int64.
    /// (upstream panics or wraps here; the wording extends the one above)
    #[error(
        "Cannot {verb} {left} (type Int64) and {right} (type Int64): the result does not fit \
         in an Int64"
    )]
    Int64Overflow {
        /// `add`, `subtract`, `multiply` or `divide`.
        verb: &'static str,
        /// The left operand.
        left: i64,
        /// The right operand.
        right: i64,
    },
    /// Int64 division or remainder by zero. (Float64 division by zero
    /// follows IEEE-754 and is not an error.)
    #[error("Cannot {verb} {left} (type Int64) by 0 (type Int64): Int64 division by zero")]
    Int64DivisionByZero {
        /// `divide` or `mod`.
        verb: &'static str,
        /// The dividend.
        left: i64,
    },
    /// `$neg` of something that is not a number. (upstream: "Cannot negate
    /// {x} (type {})")
    #[error("Cannot negate {value} (type {type_name})")]
    NegateType {
        /// The operand as upstream prints it.
        value: String,
        /// Its type name.
        type_name: &'static str,
    },
    /// `$neg` of the smallest Int64, whose negation does not fit.
    #[error("Cannot negate {value} (type Int64): the result does not fit in an Int64")]
    NegateOverflow {
        /// The operand (always `i64::MIN`).
        value: i64,
    },
    /// A non-boolean where `$and`, `$or`, `$not` or a filter needs a boolean.
    /// (upstream `MaybeValue::into_boolean`: "Cannot use value {self} (type
    /// {}) as a Boolean")
    #[error("Cannot use value {value} (type {type_name}) as a Boolean")]
    NotBoolean {
        /// The value as upstream prints it.
        value: String,
        /// Its type name.
        type_name: &'static str,
    },
}

impl Expr {
    /// Evaluates the expression on `doc`; `None` is undefined.
    pub fn eval(&self, doc: &Object) -> Result<Option<Value>, EvalError> {
        Ok(self.eval_ref(doc)?.map(Cow::into_owned))
    }

    /// Evaluates the expression as a filter predicate: it must produce a
    /// boolean (anything else, undefined included, is [`EvalError::NotBoolean`]).
    pub fn matches(&self, doc: &Object) -> Result<bool, EvalError> {
        into_boolean(self.eval_ref(doc)?.as_deref())
    }

    /// Evaluation that borrows fields and literals instead of cloning them.
    fn eval_ref<'a>(&'a self, doc: &'a Object) -> Result<Option<Cow<'a, Value>>, EvalError> {
        let boolean = |b: bool| Ok(Some(Cow::Owned(Value::Boolean(b))));
        match self {
            Expr::Field(path) => Ok(path.get(doc).map(Cow::Borrowed)),
            Expr::Literal(v) => Ok(v.as_ref().map(Cow::Borrowed)),
            Expr::Eq(l, r) => boolean(compare(l, r, doc)? == Ordering::Equal),
            Expr::Neq(l, r) => boolean(compare(l, r, doc)? != Ordering::Equal),
            Expr::Lt(l, r) => boolean(compare(l, r, doc)? == Ordering::Less),
            Expr::Lte(l, r) => boolean(compare(l, r, doc)? != Ordering::Greater),
            Expr::Gt(l, r) => boolean(compare(l, r, doc)? == Ordering::Greater),
            Expr::Gte(l, r) => boolean(compare(l, r, doc)? != Ordering::Less),
            Expr::Add(l, r) => arithmetic(Arith::Add, l, r, doc),
            Expr::Sub(l, r) => arithmetic(Arith::Sub, l, r, doc),
            Expr::Mul(l, r) => arithmetic(Arith::Mul, l, r, doc),
            Expr::Div(l, r) => arithmetic(Arith::Div, l, r, doc),
            Expr::Mod(l, r) => arithmetic(Arith::Mod, l, r, doc),
            Expr::Neg(x) => {
                let x = x.eval_ref(doc)?;
                let negated = match x.as_deref() {
                    Some(Value::Int64(n)) => Value::Int64(
                        n.checked_neg()
                            .ok_or(EvalError::NegateOverflow { value: *n })?,
                    ),
                    Some(Value::Float64(f)) => Value::Float64(-f),
                    other => {
                        return Err(EvalError::NegateType {
                            value: Shown(other).to_string(),
                            type_name: type_name(other),
                        })
                    }
                };
                Ok(Some(Cow::Owned(negated)))
            }
            Expr::Not(x) => boolean(!into_boolean(x.eval_ref(doc)?.as_deref())?),
            Expr::And(items) => {
                for item in items {
                    if !into_boolean(item.eval_ref(doc)?.as_deref())? {
                        return boolean(false);
                    }
                }
                boolean(true)
            }
            Expr::Or(items) => {
                for item in items {
                    if into_boolean(item.eval_ref(doc)?.as_deref())? {
                        return boolean(true);
                    }
                }
                boolean(false)
            }
        }
    }
}

/// Evaluates both sides and compares them by the total order (undefined
/// first). Never fails on its own.
fn compare(l: &Expr, r: &Expr, doc: &Object) -> Result<Ordering, EvalError> {
    let l = l.eval_ref(doc)?;
    let r = r.eval_ref(doc)?;
    Ok(l.as_deref().cmp(&r.as_deref()))
}

/// The binary arithmetic operators.
#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl Arith {
    /// The verb upstream's messages use.
    fn verb(self) -> &'static str {
        match self {
            Arith::Add => "add",
            Arith::Sub => "subtract",
            Arith::Mul => "multiply",
            Arith::Div => "divide",
            Arith::Mod => "mod",
        }
    }

    fn ints(self, l: i64, r: i64) -> Result<i64, EvalError> {
        let overflow = || EvalError::Int64Overflow {
            verb: self.verb(),
            left: l,
            right: r,
        };
        let by_zero = || EvalError::Int64DivisionByZero {
            verb: self.verb(),
            left: l,
        };
        match self {
            Arith::Add => l.checked_add(r).ok_or_else(overflow),
            Arith::Sub => l.checked_sub(r).ok_or_else(overflow),
            Arith::Mul => l.checked_mul(r).ok_or_else(overflow),
            Arith::Div if r == 0 => Err(by_zero()),
            // Only i64::MIN / -1 overflows.
            Arith::Div => l.checked_div(r).ok_or_else(overflow),
            Arith::Mod if r == 0 => Err(by_zero()),
            // i64::MIN % -1 is 0 (as for JavaScript bigints); only Rust's
            // checked_rem calls it an overflow.
            Arith::Mod => Ok(l.wrapping_rem(r)),
        }
    }

    /// IEEE-754 arithmetic; `%` is `fmod`, like JavaScript's.
    fn floats(self, l: f64, r: f64) -> f64 {
        match self {
            Arith::Add => l + r,
            Arith::Sub => l - r,
            Arith::Mul => l * r,
            Arith::Div => l / r,
            Arith::Mod => l % r,
        }
    }
}

fn arithmetic<'a>(
    op: Arith,
    l: &'a Expr,
    r: &'a Expr,
    doc: &'a Object,
) -> Result<Option<Cow<'a, Value>>, EvalError> {
    let l = l.eval_ref(doc)?;
    let r = r.eval_ref(doc)?;
    let result = match (l.as_deref(), r.as_deref()) {
        (Some(Value::Int64(a)), Some(Value::Int64(b))) => Value::Int64(op.ints(*a, *b)?),
        (Some(Value::Float64(a)), Some(Value::Float64(b))) => Value::Float64(op.floats(*a, *b)),
        (l, r) => {
            return Err(EvalError::ArithmeticTypes {
                verb: op.verb(),
                left: Shown(l).to_string(),
                left_type: type_name(l),
                right: Shown(r).to_string(),
                right_type: type_name(r),
            })
        }
    };
    Ok(Some(Cow::Owned(result)))
}

/// The boolean inside `v`, or upstream's "as a Boolean" error.
fn into_boolean(v: Option<&Value>) -> Result<bool, EvalError> {
    match v {
        Some(Value::Boolean(b)) => Ok(*b),
        other => Err(EvalError::NotBoolean {
            value: Shown(other).to_string(),
            type_name: type_name(other),
        }),
    }
}

/// The type name upstream prints for a possibly undefined value.
pub(crate) fn type_name(v: Option<&Value>) -> &'static str {
    v.map_or("undefined", Value::type_name)
}

/// Prints a possibly undefined value the way upstream's `MaybeValue` and
/// `ConvexValue` `Display` do: `undefined`, `null`, `5`, `1.5`, `NaN`,
/// `true`, `"text"` (Rust string escapes), `b"AAE="` (base64), `[1, 2]`,
/// `{a: 1, b: "x"}`.
pub(crate) struct Shown<'a>(pub(crate) Option<&'a Value>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("undefined"),
            Some(v) => write_value(v, f),
        }
    }
}

fn write_value(v: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match v {
        Value::Null => f.write_str("null"),
        Value::Int64(n) => write!(f, "{n}"),
        Value::Float64(x) => write!(f, "{x:?}"),
        Value::Boolean(b) => write!(f, "{b:?}"),
        Value::String(s) => write!(f, "{s:?}"),
        Value::Bytes(b) => write!(f, "b{:?}", STANDARD.encode(b)),
        Value::Array(items) => {
            f.write_str("[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_value(item, f)?;
            }
            f.write_str("]")
        }
        Value::Object(fields) => {
            f.write_str("{")?;
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{name}: ")?;
                write_value(value, f)?;
            }
            f.write_str("}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(v: impl Into<Value>) -> Box<Expr> {
        Box::new(Expr::Literal(Some(v.into())))
    }

    fn undefined() -> Box<Expr> {
        Box::new(Expr::Literal(None))
    }

    fn field(p: &str) -> Box<Expr> {
        Box::new(Expr::Field(FieldPath::parse(p).expect("valid path")))
    }

    fn doc() -> Object {
        let mut address = Object::new();
        address.insert("city".into(), Value::from("Paris"));
        let mut d = Object::new();
        d.insert("email".into(), Value::from("bw@convex.dev"));
        d.insert("salary".into(), Value::Int64(5));
        d.insert("rate".into(), Value::Float64(1.5));
        d.insert("ok".into(), Value::Boolean(true));
        d.insert("nothing".into(), Value::Null);
        d.insert("address".into(), Value::Object(address));
        d
    }

    fn eval(e: &Expr) -> Option<Value> {
        e.eval(&doc()).expect("evaluates")
    }

    fn err(e: &Expr) -> String {
        e.eval(&doc()).expect_err("fails").to_string()
    }

    fn t() -> Option<Value> {
        Some(Value::Boolean(true))
    }

    fn f() -> Option<Value> {
        Some(Value::Boolean(false))
    }

    #[test]
    fn fields_and_literals() {
        assert_eq!(eval(&field("salary")), Some(Value::Int64(5)));
        assert_eq!(eval(&field("address.city")), Some(Value::from("Paris")));
        assert_eq!(eval(&field("level")), None);
        assert_eq!(eval(&field("address.zip")), None);
        assert_eq!(eval(&field("email.length")), None);
        assert_eq!(eval(&lit("foo")), Some(Value::from("foo")));
        assert_eq!(eval(&undefined()), None);
    }

    #[test]
    fn comparisons_follow_the_total_order() {
        // The upstream test cases (`test_expr_eval`, `test_eval_undefined`).
        assert_eq!(eval(&Expr::Eq(lit("foo"), lit("foo"))), t());
        assert_eq!(eval(&Expr::Lt(field("salary"), lit(6i64))), t());
        assert_eq!(eval(&Expr::Gt(field("level"), lit(2i64))), f());
        assert_eq!(eval(&Expr::Neq(field("level"), lit(2i64))), t());
        assert_eq!(eval(&Expr::Lt(field("salary"), lit(4i64))), f());
        assert_eq!(eval(&Expr::Gt(field("salary"), lit(4i64))), t());
        assert_eq!(eval(&Expr::Eq(field("level"), undefined())), t());
        assert_eq!(
            eval(&Expr::Eq(
                field("level"),
                Box::new(Expr::Literal(Some(Value::Null)))
            )),
            f()
        );
        assert_eq!(
            eval(&Expr::Lt(
                field("level"),
                Box::new(Expr::Literal(Some(Value::Null)))
            )),
            t()
        );
        // Across types: int64 < float64 < boolean < string, never an error.
        assert_eq!(eval(&Expr::Lt(lit(100i64), lit(0.5))), t());
        assert_eq!(eval(&Expr::Gt(lit(true), lit(f64::INFINITY))), t());
        assert_eq!(eval(&Expr::Lte(lit(""), lit(false))), f());
        assert_eq!(eval(&Expr::Gte(lit(vec![]), lit("zzz"))), t());
        assert_eq!(eval(&Expr::Gte(lit(1i64), lit(1i64))), t());
        assert_eq!(eval(&Expr::Lte(lit(1i64), lit(1i64))), t());
        // Floats by total order: NaN equals itself, -0.0 < 0.0.
        assert_eq!(eval(&Expr::Eq(lit(f64::NAN), lit(f64::NAN))), t());
        assert_eq!(eval(&Expr::Lt(lit(-0.0), lit(0.0))), t());
        assert_eq!(eval(&Expr::Neq(lit(-0.0), lit(0.0))), t());
    }

    #[test]
    fn arithmetic_on_matching_numbers() {
        // Upstream's composite: -((3 * 5) + (5 - 11 % 3)) / 3 == -6.
        let e = Expr::Div(
            Box::new(Expr::Neg(Box::new(Expr::Add(
                Box::new(Expr::Mul(lit(3i64), lit(5i64))),
                Box::new(Expr::Sub(
                    lit(5i64),
                    Box::new(Expr::Mod(lit(11i64), lit(3i64))),
                )),
            )))),
            lit(3i64),
        );
        assert_eq!(eval(&e), Some(Value::Int64(-6)));
        assert_eq!(
            eval(&Expr::Add(field("rate"), lit(1.0))),
            Some(Value::Float64(2.5))
        );
        assert_eq!(
            eval(&Expr::Sub(lit(1.0), lit(2.5))),
            Some(Value::Float64(-1.5))
        );
        assert_eq!(
            eval(&Expr::Mul(lit(1.5), lit(-2.0))),
            Some(Value::Float64(-3.0))
        );
        assert_eq!(
            eval(&Expr::Div(lit(7i64), lit(-2i64))),
            Some(Value::Int64(-3))
        );
        assert_eq!(
            eval(&Expr::Mod(lit(-7i64), lit(2i64))),
            Some(Value::Int64(-1))
        );
        assert_eq!(
            eval(&Expr::Mod(lit(-7.5), lit(2.0))),
            Some(Value::Float64(-1.5))
        );
        assert_eq!(eval(&Expr::Neg(lit(0.0))), Some(Value::Float64(-0.0)));
        assert_eq!(eval(&Expr::Neg(field("salary"))), Some(Value::Int64(-5)));
        assert_eq!(
            eval(&Expr::Mod(lit(i64::MIN), lit(-1i64))),
            Some(Value::Int64(0))
        );
        // Float division by zero is IEEE, not an error.
        assert_eq!(
            eval(&Expr::Div(lit(1.0), lit(0.0))),
            Some(Value::Float64(f64::INFINITY))
        );
        assert_eq!(
            eval(&Expr::Div(lit(-1.0), lit(0.0))),
            Some(Value::Float64(f64::NEG_INFINITY))
        );
        let nan = eval(&Expr::Div(lit(0.0), lit(0.0)));
        assert!(matches!(nan, Some(Value::Float64(x)) if x.is_nan()));
        let nan = eval(&Expr::Mod(lit(1.0), lit(0.0)));
        assert!(matches!(nan, Some(Value::Float64(x)) if x.is_nan()));
    }

    #[test]
    fn arithmetic_type_errors_use_upstream_wording() {
        assert_eq!(
            err(&Expr::Add(lit(1i64), lit(1.0))),
            "Cannot add 1 (type Int64) and 1.0 (type Float64)"
        );
        assert_eq!(
            err(&Expr::Sub(field("email"), lit(1i64))),
            "Cannot subtract \"bw@convex.dev\" (type String) and 1 (type Int64)"
        );
        assert_eq!(
            err(&Expr::Mul(field("missing"), lit(2.0))),
            "Cannot multiply undefined (type undefined) and 2.0 (type Float64)"
        );
        assert_eq!(
            err(&Expr::Div(field("nothing"), lit(true))),
            "Cannot divide null (type Null) and true (type Boolean)"
        );
        assert_eq!(
            err(&Expr::Mod(
                field("address"),
                lit(vec![Value::Bytes(vec![0, 1])])
            )),
            "Cannot mod {city: \"Paris\"} (type Object) and [b\"AAE=\"] (type Array)"
        );
        assert_eq!(
            err(&Expr::Neg(lit("x"))),
            "Cannot negate \"x\" (type String)"
        );
        assert_eq!(
            err(&Expr::Neg(undefined())),
            "Cannot negate undefined (type undefined)"
        );
        assert_eq!(
            err(&Expr::Add(lit(f64::NAN), lit(i64::MAX))),
            "Cannot add NaN (type Float64) and 9223372036854775807 (type Int64)"
        );
    }

    #[test]
    fn int64_overflow_and_division_by_zero_are_errors() {
        assert_eq!(
            err(&Expr::Add(lit(i64::MAX), lit(1i64))),
            "Cannot add 9223372036854775807 (type Int64) and 1 (type Int64): the result does \
             not fit in an Int64"
        );
        assert!(matches!(
            Expr::Sub(lit(i64::MIN), lit(1i64)).eval(&doc()),
            Err(EvalError::Int64Overflow {
                verb: "subtract",
                ..
            })
        ));
        assert!(matches!(
            Expr::Mul(lit(i64::MAX), lit(2i64)).eval(&doc()),
            Err(EvalError::Int64Overflow {
                verb: "multiply",
                ..
            })
        ));
        assert!(matches!(
            Expr::Div(lit(i64::MIN), lit(-1i64)).eval(&doc()),
            Err(EvalError::Int64Overflow { verb: "divide", .. })
        ));
        assert_eq!(
            err(&Expr::Div(lit(5i64), lit(0i64))),
            "Cannot divide 5 (type Int64) by 0 (type Int64): Int64 division by zero"
        );
        assert_eq!(
            err(&Expr::Mod(lit(5i64), lit(0i64))),
            "Cannot mod 5 (type Int64) by 0 (type Int64): Int64 division by zero"
        );
        assert_eq!(
            err(&Expr::Neg(lit(i64::MIN))),
            "Cannot negate -9223372036854775808 (type Int64): the result does not fit in an Int64"
        );
    }

    #[test]
    fn logic_needs_booleans_and_short_circuits() {
        for i in 0..8 {
            let (a, b, c) = (i & 1 != 0, i & 2 != 0, i & 4 != 0);
            let items = || vec![*lit(a), *lit(b), *lit(c)];
            assert_eq!(eval(&Expr::And(items())), Some(Value::Boolean(a && b && c)));
            assert_eq!(eval(&Expr::Or(items())), Some(Value::Boolean(a || b || c)));
        }
        assert_eq!(eval(&Expr::And(vec![])), t());
        assert_eq!(eval(&Expr::Or(vec![])), f());
        assert_eq!(eval(&Expr::Not(lit(true))), f());
        assert_eq!(eval(&Expr::Not(field("ok"))), f());
        // Short circuit: the bad operand after the deciding one is not looked at.
        assert_eq!(eval(&Expr::And(vec![*lit(false), *lit(5i64)])), f());
        assert_eq!(eval(&Expr::Or(vec![*lit(true), *lit("x")])), t());
        assert_eq!(
            err(&Expr::And(vec![*lit(true), *lit(5i64)])),
            "Cannot use value 5 (type Int64) as a Boolean"
        );
        assert_eq!(
            err(&Expr::Or(vec![*lit(false), *field("email")])),
            "Cannot use value \"bw@convex.dev\" (type String) as a Boolean"
        );
        assert_eq!(
            err(&Expr::Not(field("missing"))),
            "Cannot use value undefined (type undefined) as a Boolean"
        );
        assert_eq!(
            err(&Expr::Not(field("nothing"))),
            "Cannot use value null (type Null) as a Boolean"
        );
        // An error inside an operand surfaces as is.
        assert_eq!(
            err(&Expr::Eq(Box::new(Expr::Neg(lit("x"))), lit(1i64))),
            "Cannot negate \"x\" (type String)"
        );
    }

    #[test]
    fn matches_needs_a_boolean_result() {
        let d = doc();
        assert_eq!(Expr::Eq(field("salary"), lit(5i64)).matches(&d), Ok(true));
        assert_eq!(Expr::Eq(field("salary"), lit(5.0)).matches(&d), Ok(false));
        assert_eq!(
            Expr::Literal(Some(Value::Boolean(true))).matches(&d),
            Ok(true)
        );
        assert_eq!(
            field("salary").matches(&d).expect_err("int").to_string(),
            "Cannot use value 5 (type Int64) as a Boolean"
        );
        assert_eq!(
            field("level")
                .matches(&d)
                .expect_err("undefined")
                .to_string(),
            "Cannot use value undefined (type undefined) as a Boolean"
        );
    }

    #[test]
    fn values_print_like_upstream() {
        let show = |v: Value| Shown(Some(&v)).to_string();
        assert_eq!(show(Value::Float64(-0.0)), "-0.0");
        assert_eq!(show(Value::Float64(f64::INFINITY)), "inf");
        assert_eq!(show(Value::Float64(1e300)), "1e300");
        assert_eq!(show(Value::String("a\"b\n".into())), "\"a\\\"b\\n\"");
        assert_eq!(show(Value::Bytes(vec![])), "b\"\"");
        let mut o = Object::new();
        o.insert(
            "b".into(),
            Value::Array(vec![Value::Null, Value::Int64(-1)]),
        );
        o.insert("a".into(), Value::Object(Object::new()));
        assert_eq!(show(Value::Object(o)), "{a: {}, b: [null, -1]}");
        assert_eq!(Shown(None).to_string(), "undefined");
    }
}
