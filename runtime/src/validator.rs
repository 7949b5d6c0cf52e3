//! Convex validators: the JSON that `exportArgs()` / `exportReturns()` (and
//! a schema's `documentType`) produce, parsed into a [`Validator`], and the
//! check of an [`engine::value::Value`] against it with Convex's messages.
//!
//! Invariant kept here: [`Validator::from_json`] accepts exactly the JSON
//! `convex/values/validators.js` (npm 1.48) emits, plus the legacy aliases the
//! upstream backend accepts (`map` and `set` read as `any`), and
//! [`Validator::to_json`] writes it back in that shape; a check accepts a value
//! exactly when the upstream backend's `Validator::check_value`
//! (`crates/common/src/schemas/validator.rs`) would, and refuses it with the
//! same message, printed with the same value and `v.…` syntax.
//!
//! Messages (all from upstream, `crates/common/src/schemas/validator.rs`,
//! `crates/model/src/modules/function_validators.rs`,
//! `crates/udf/src/validation.rs`, `crates/isolate/src/helpers.rs`):
//! - `Value does not match validator.\nPath: .x\nValue: "a"\nValidator: v.float64()`
//! - `Object is missing the required field `x`. Consider wrapping the field
//!   validator in `v.optional(...)` if this is expected.\n\nObject: {…}\nValidator: v.object({…})`
//! - `Object contains extra field `y` that is not in the validator.\n…`
//! - `Object has multiple validation errors:\n- … Path: .a\n- …\nObject: …\nValidator: …`
//!   when one object has several problems (newer upstream; a single problem
//!   keeps its own message).
//! - arguments: `ArgumentValidationError: <one of the above>`; return values:
//!   `ReturnsValidationError: <one of the above>`.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use engine::id::{DocumentId, TableNumber};
use engine::value::json::{from_json, to_json};
use engine::value::limits::check_field_name;
use engine::value::{Object, Value};
use serde_json::{json, Map, Value as Json};

/// Longest identifier (object validator field name), in bytes. (upstream
/// `MAX_IDENTIFIER_LEN`)
pub const MAX_IDENTIFIER_LEN: usize = 64;

/// Where the documentation of argument validation lives (quoted in messages).
const ARGS_DOCS: &str =
    "See https://docs.convex.dev/functions/validation for docs on how to do argument validation.";
/// Where the documentation of return value validation lives.
const RETURNS_DOCS: &str = "See https://docs.convex.dev/functions/validation for docs on how to \
                            do return value validation.";

// ---- table lookup ----

/// Resolves the table number inside an id to the name of its table, for
/// `v.id("table")` checks. Upstream checks ids this way round (number to
/// name), which is what lets it say which table a wrong id came from.
pub trait TableLookup {
    /// The name of the table with this number, or `None` if there is none.
    fn table_name(&self, number: TableNumber) -> Option<String>;
}

impl<F: Fn(TableNumber) -> Option<String>> TableLookup for F {
    fn table_name(&self, number: TableNumber) -> Option<String> {
        self(number)
    }
}

/// A [`TableLookup`] that knows no tables: every `v.id(..)` check fails.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTables;

impl TableLookup for NoTables {
    fn table_name(&self, _number: TableNumber) -> Option<String> {
        None
    }
}

// ---- the validator ----

/// A validator: what `v.…` builds in JavaScript.
#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    /// `v.id("table")`: a string that decodes as an id of that table.
    Id(String),
    /// `v.null()`.
    Null,
    /// `v.number()` / `v.float64()`: any float64.
    Float64,
    /// `v.int64()` / `v.bigint()`: any int64.
    Int64,
    /// `v.commitTs()`: an int64 (a commit timestamp once written).
    CommitTs,
    /// `v.boolean()`.
    Boolean,
    /// `v.string()`.
    String,
    /// `v.bytes()`.
    Bytes,
    /// `v.literal(x)`: exactly `x`.
    Literal(Literal),
    /// `v.array(element)`.
    Array(Box<Validator>),
    /// `v.record(keys, values)`: an object whose every field name matches
    /// `keys` and every value `values`.
    Record(Box<Validator>, Box<Validator>),
    /// `v.object({...})`.
    Object(ObjectValidator),
    /// `v.union(...)`: any one of the members.
    Union(Vec<Validator>),
    /// `v.any()`.
    Any,
}

/// The value of a `v.literal(...)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// A number.
    Float64(f64),
    /// A bigint.
    Int64(i64),
    /// A boolean.
    Boolean(bool),
    /// A string.
    String(String),
}

impl Literal {
    /// The literal as a value.
    pub fn to_value(&self) -> Value {
        match self {
            Literal::Float64(f) => Value::Float64(*f),
            Literal::Int64(n) => Value::Int64(*n),
            Literal::Boolean(b) => Value::Boolean(*b),
            Literal::String(s) => Value::String(s.clone()),
        }
    }
}

impl fmt::Display for Literal {
    /// As upstream: JSON where JSON can say it, `<number>` for NaN and the
    /// infinities, `<bigint>` for any int64.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Float64(x) => match serde_json::Number::from_f64(*x) {
                Some(n) => write!(f, "{}", Json::Number(n)),
                None => f.write_str("<number>"),
            },
            Literal::Int64(_) => f.write_str("<bigint>"),
            Literal::Boolean(b) => write!(f, "{b}"),
            Literal::String(s) => write!(f, "{}", Json::String(s.clone())),
        }
    }
}

/// `v.object({...})`: field name to field validator, sorted by name.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObjectValidator {
    /// The fields, sorted by name.
    pub fields: BTreeMap<String, FieldValidator>,
}

impl ObjectValidator {
    /// The same validator without top-level fields starting with `_` (the
    /// system fields), as upstream stores a schema's document validators.
    pub fn without_system_fields(&self) -> ObjectValidator {
        ObjectValidator {
            fields: self
                .fields
                .iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// One field of an object validator.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldValidator {
    /// What the field's value must match.
    pub validator: Validator,
    /// Whether the field may be absent (`v.optional(...)`).
    pub optional: bool,
}

impl fmt::Display for FieldValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.optional {
            write!(f, "v.optional({})", self.validator)
        } else {
            write!(f, "{}", self.validator)
        }
    }
}

impl fmt::Display for ObjectValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v.object({")?;
        for (i, (name, field)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}: {field}")?;
        }
        f.write_str("})")
    }
}

impl fmt::Display for Validator {
    /// The validator as `v.…` source, as upstream prints it in messages
    /// (`v.number()` prints as `v.float64()`, `v.bigint()` as `v.int64()`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Validator::Id(table) => write!(f, "v.id(\"{table}\")"),
            Validator::Null => f.write_str("v.null()"),
            Validator::Float64 => f.write_str("v.float64()"),
            Validator::Int64 => f.write_str("v.int64()"),
            Validator::CommitTs => f.write_str("v.commitTs()"),
            Validator::Boolean => f.write_str("v.boolean()"),
            Validator::String => f.write_str("v.string()"),
            Validator::Bytes => f.write_str("v.bytes()"),
            Validator::Literal(l) => write!(f, "v.literal({l})"),
            Validator::Array(v) => write!(f, "v.array({v})"),
            Validator::Record(k, v) => write!(f, "v.record({k}, {v})"),
            Validator::Object(o) => write!(f, "{o}"),
            Validator::Union(members) => {
                f.write_str("v.union(")?;
                for (i, m) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{m}")?;
                }
                f.write_str(")")
            }
            Validator::Any => f.write_str("v.any()"),
        }
    }
}

// ---- printing values ----

/// Prints a value the way upstream's messages do (`ConvexValue`'s
/// `Display`): `null`, int64 as `5`, float64 as Rust prints it (`5.0`,
/// `NaN`, `inf`), strings and booleans quoted as Rust debug-prints them,
/// bytes as `b"<base64>"`, `[a, b]`, `{field: value, ...}`.
#[derive(Clone, Copy, Debug)]
pub struct DisplayValue<'a>(pub &'a Value);

impl fmt::Display for DisplayValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
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
                    write!(f, "{}", DisplayValue(item))?;
                }
                f.write_str("]")
            }
            Value::Object(fields) => write!(f, "{}", DisplayObject(fields)),
        }
    }
}

/// [`DisplayValue`] for an object not wrapped in a [`Value`].
#[derive(Clone, Copy, Debug)]
pub struct DisplayObject<'a>(pub &'a Object);

impl fmt::Display for DisplayObject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}: {}", DisplayValue(v))?;
        }
        f.write_str("}")
    }
}

// ---- parsing ----

/// Validator JSON that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidatorJsonError {
    /// What was wrong, and where.
    pub message: String,
}

impl ValidatorJsonError {
    fn new(message: impl Into<String>) -> Self {
        ValidatorJsonError {
            message: message.into(),
        }
    }
}

fn json_kind(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn field<'j>(
    obj: &'j Map<String, Json>,
    name: &str,
    whole: &Json,
) -> Result<&'j Json, ValidatorJsonError> {
    obj.get(name).ok_or_else(|| {
        ValidatorJsonError::new(format!(
            "Invalid validator: missing field `{name}` in {}",
            excerpt(whole)
        ))
    })
}

/// The JSON text, cut to a readable length for a message.
fn excerpt(j: &Json) -> String {
    const MAX_CHARS: usize = 120;
    let text = j.to_string();
    if text.chars().count() <= MAX_CHARS {
        text
    } else {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut}…")
    }
}

/// Checks an object validator's field name as upstream does
/// (`IdentifierFieldName`): a valid field name that is also an identifier
/// (ASCII letters, digits and `_`, not starting with a digit, not only
/// underscores, at most 64 bytes).
pub fn check_identifier(name: &str) -> Result<(), ValidatorJsonError> {
    check_field_name(name).map_err(|e| ValidatorJsonError::new(e.to_string()))?;
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(ValidatorJsonError::new("Identifier cannot be empty")),
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        Some(c) => {
            return Err(ValidatorJsonError::new(format!(
                "Invalid first character '{c}' in {name}: Identifiers must start with an \
                 alphabetic character or underscore"
            )))
        }
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(ValidatorJsonError::new(format!(
            "Identifier {name} has invalid character '{c}': Identifiers can only contain \
             alphanumeric characters or underscores"
        )));
    }
    if name.len() > MAX_IDENTIFIER_LEN {
        return Err(ValidatorJsonError::new(format!(
            "Identifier is too long ({} > maximum {MAX_IDENTIFIER_LEN})",
            name.len()
        )));
    }
    if name.chars().all(|c| c == '_') {
        return Err(ValidatorJsonError::new(format!(
            "Identifier {name} cannot have exclusively underscores"
        )));
    }
    Ok(())
}

impl Validator {
    /// Reads validator JSON (reference §2.2; `validators.js` `.json`).
    pub fn from_json(j: &Json) -> Result<Validator, ValidatorJsonError> {
        let Json::Object(obj) = j else {
            return Err(ValidatorJsonError::new(format!(
                "Invalid validator: expected an object with a \"type\", got {}",
                json_kind(j)
            )));
        };
        let ty = match field(obj, "type", j)? {
            Json::String(s) => s.as_str(),
            other => {
                return Err(ValidatorJsonError::new(format!(
                    "Invalid validator: `type` must be a string, got {} in {}",
                    json_kind(other),
                    excerpt(j)
                )))
            }
        };
        Ok(match ty {
            "null" => Validator::Null,
            "number" => Validator::Float64,
            "bigint" => Validator::Int64,
            "commitTs" => Validator::CommitTs,
            "boolean" => Validator::Boolean,
            "string" => Validator::String,
            "bytes" => Validator::Bytes,
            // Upstream reads the retired map and set validators as any.
            "any" | "map" | "set" => Validator::Any,
            "literal" => Validator::Literal(parse_literal(field(obj, "value", j)?)?),
            "id" => match field(obj, "tableName", j)? {
                Json::String(t) => Validator::Id(t.clone()),
                other => {
                    return Err(ValidatorJsonError::new(format!(
                        "Invalid validator: `tableName` must be a string, got {} in {}",
                        json_kind(other),
                        excerpt(j)
                    )))
                }
            },
            "array" => Validator::Array(Box::new(Validator::from_json(field(obj, "value", j)?)?)),
            "record" => parse_record(field(obj, "keys", j)?, field(obj, "values", j)?)?,
            "object" => Validator::Object(parse_object(field(obj, "value", j)?)?),
            "union" => match field(obj, "value", j)? {
                Json::Array(members) => Validator::Union(
                    members
                        .iter()
                        .map(Validator::from_json)
                        .collect::<Result<_, _>>()?,
                ),
                other => {
                    return Err(ValidatorJsonError::new(format!(
                        "Invalid validator: a union's `value` must be an array, got {}",
                        json_kind(other)
                    )))
                }
            },
            other => {
                return Err(ValidatorJsonError::new(format!(
                    "Invalid validator: unknown type {other:?} in {}",
                    excerpt(j)
                )))
            }
        })
    }

    /// Writes the validator as `validators.js` does (`v.float64()` as
    /// `{"type":"number"}`, literals as Convex JSON, ...).
    pub fn to_json(&self) -> Json {
        match self {
            Validator::Id(t) => json!({"type": "id", "tableName": t}),
            Validator::Null => json!({"type": "null"}),
            Validator::Float64 => json!({"type": "number"}),
            Validator::Int64 => json!({"type": "bigint"}),
            Validator::CommitTs => json!({"type": "commitTs"}),
            Validator::Boolean => json!({"type": "boolean"}),
            Validator::String => json!({"type": "string"}),
            Validator::Bytes => json!({"type": "bytes"}),
            Validator::Literal(l) => json!({"type": "literal", "value": to_json(&l.to_value())}),
            Validator::Array(v) => json!({"type": "array", "value": v.to_json()}),
            Validator::Record(k, v) => json!({
                "type": "record",
                "keys": k.to_json(),
                "values": {"fieldType": v.to_json(), "optional": false},
            }),
            Validator::Object(o) => json!({"type": "object", "value": object_to_json(o)}),
            Validator::Union(members) => json!({
                "type": "union",
                "value": members.iter().map(Validator::to_json).collect::<Vec<_>>(),
            }),
            Validator::Any => json!({"type": "any"}),
        }
    }

    /// Whether every value this validator accepts is a string (upstream's
    /// `is_subset(&Validator::String)`, which decides valid record keys).
    fn only_strings(&self) -> bool {
        match self {
            Validator::String | Validator::Id(_) | Validator::Literal(Literal::String(_)) => true,
            Validator::Union(members) => members.iter().all(Validator::only_strings),
            _ => false,
        }
    }

    /// Whether a string literal appears, possibly inside unions.
    fn has_string_literal(&self) -> bool {
        match self {
            Validator::Literal(Literal::String(_)) => true,
            Validator::Union(members) => members.iter().any(Validator::has_string_literal),
            _ => false,
        }
    }
}

fn object_to_json(o: &ObjectValidator) -> Json {
    Json::Object(
        o.fields
            .iter()
            .map(|(k, f)| {
                (
                    k.clone(),
                    json!({"fieldType": f.validator.to_json(), "optional": f.optional}),
                )
            })
            .collect(),
    )
}

fn parse_literal(j: &Json) -> Result<Literal, ValidatorJsonError> {
    let value = from_json(j)
        .map_err(|e| ValidatorJsonError::new(format!("Invalid validator: literal value: {e}")))?;
    Ok(match value {
        Value::Float64(f) => Literal::Float64(f),
        Value::Int64(n) => Literal::Int64(n),
        Value::Boolean(b) => Literal::Boolean(b),
        Value::String(s) => Literal::String(s),
        other => {
            return Err(ValidatorJsonError::new(format!(
                "Value {} is not a valid literal.",
                DisplayValue(&other)
            )))
        }
    })
}

fn parse_field(j: &Json) -> Result<FieldValidator, ValidatorJsonError> {
    let Json::Object(obj) = j else {
        return Err(ValidatorJsonError::new(format!(
            "Invalid validator: a field must be {{\"fieldType\": validator, \"optional\": \
             boolean}}, got {}",
            json_kind(j)
        )));
    };
    let validator = Validator::from_json(field(obj, "fieldType", j)?)?;
    let optional = match field(obj, "optional", j)? {
        Json::Bool(b) => *b,
        other => {
            return Err(ValidatorJsonError::new(format!(
                "Invalid validator: `optional` must be a boolean, got {}",
                json_kind(other)
            )))
        }
    };
    Ok(FieldValidator {
        validator,
        optional,
    })
}

fn parse_object(j: &Json) -> Result<ObjectValidator, ValidatorJsonError> {
    let Json::Object(fields) = j else {
        return Err(ValidatorJsonError::new(format!(
            "Invalid validator: an object's `value` must map field names to fields, got {}",
            json_kind(j)
        )));
    };
    let mut out = BTreeMap::new();
    for (name, f) in fields {
        check_identifier(name)?;
        let field = parse_field(f).map_err(|e| {
            ValidatorJsonError::new(format!("Invalid validator for key `{name}`: {e}"))
        })?;
        out.insert(name.clone(), field);
    }
    Ok(ObjectValidator { fields: out })
}

fn parse_record(keys: &Json, values: &Json) -> Result<Validator, ValidatorJsonError> {
    let keys = Validator::from_json(keys)?;
    if !keys.only_strings() {
        return Err(ValidatorJsonError::new(format!(
            "Records can only have string keys. Your validator contains a record with key typed \
             as `{keys}`, which is not a subtype of `v.string()`"
        )));
    }
    let values = parse_field(values)?;
    if keys.has_string_literal() {
        return Err(ValidatorJsonError::new(
            "Records cannot have string literal keys",
        ));
    }
    if values.optional {
        return Err(ValidatorJsonError::new(
            "Records cannot have optional values",
        ));
    }
    Ok(Validator::Record(
        Box::new(keys),
        Box::new(values.validator),
    ))
}

// ---- checking ----

/// Why a value does not match a validator. `Display` is upstream's message.
#[derive(Clone, Debug, PartialEq)]
pub enum ValidationError {
    /// A `v.id("t")` got an id of another user table.
    TableNamesDoNotMatch {
        /// The id as given.
        id: String,
        /// The table it belongs to.
        found_table: String,
        /// The table the validator names.
        validator_table: String,
        /// Where, as `.a[0].b` (empty at the top).
        path: String,
    },
    /// A `v.id("t")` got an id of a system table.
    SystemTableReference {
        /// The id as given.
        id: String,
        /// The table the validator names.
        validator_table: String,
        /// Where.
        path: String,
    },
    /// A `v.literal(x)` got something else.
    LiteralMismatch {
        /// The value found.
        value: Value,
        /// The literal wanted.
        literal: Literal,
        /// Where.
        path: String,
    },
    /// An object lacks a required field.
    MissingRequiredField {
        /// The object.
        object: Object,
        /// The missing field.
        field: String,
        /// The object's validator.
        validator: ObjectValidator,
        /// Where the object is.
        path: String,
    },
    /// An object has a field its validator does not list.
    ExtraField {
        /// The object.
        object: Object,
        /// The extra field.
        field: String,
        /// The object's validator.
        validator: ObjectValidator,
        /// Where the object is.
        path: String,
    },
    /// A value of the wrong kind (or matching no member of a union, or an
    /// id that does not decode or whose table does not exist).
    NoMatch {
        /// The value found.
        value: Value,
        /// The validator it failed.
        validator: Validator,
        /// Where.
        path: String,
    },
    /// Several problems in one object, each at its own path (nested
    /// objects' problems flattened in).
    Multiple {
        /// The problems, in the order upstream lists them: the validator's
        /// fields in name order, then the extra fields.
        errors: Vec<ValidationError>,
        /// The object.
        object: Object,
        /// Its validator.
        validator: ObjectValidator,
        /// Where the object is.
        path: String,
    },
}

impl ValidationError {
    /// Where the problem is, as `.a[0].b`; empty for the value itself.
    pub fn path(&self) -> &str {
        match self {
            ValidationError::TableNamesDoNotMatch { path, .. }
            | ValidationError::SystemTableReference { path, .. }
            | ValidationError::LiteralMismatch { path, .. }
            | ValidationError::MissingRequiredField { path, .. }
            | ValidationError::ExtraField { path, .. }
            | ValidationError::NoMatch { path, .. }
            | ValidationError::Multiple { path, .. } => path,
        }
    }

    fn path_mut(&mut self) -> &mut String {
        match self {
            ValidationError::TableNamesDoNotMatch { path, .. }
            | ValidationError::SystemTableReference { path, .. }
            | ValidationError::LiteralMismatch { path, .. }
            | ValidationError::MissingRequiredField { path, .. }
            | ValidationError::ExtraField { path, .. }
            | ValidationError::NoMatch { path, .. }
            | ValidationError::Multiple { path, .. } => path,
        }
    }

    /// Puts `segment` (`.field`, `[3]`, `.keys()`) in front of the path of
    /// this error and, for [`ValidationError::Multiple`], of each problem.
    fn within(mut self, segment: &str) -> Self {
        fn push(e: &mut ValidationError, segment: &str) {
            if let ValidationError::Multiple { errors, .. } = e {
                for child in errors.iter_mut() {
                    push(child, segment);
                }
            }
            let path = e.path_mut();
            path.insert_str(0, segment);
        }
        push(&mut self, segment);
        self
    }
}

/// `Path: .a.b` or nothing.
struct Context<'a>(&'a str);

impl fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "Path: {}", self.0)
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationError::TableNamesDoNotMatch {
                id,
                found_table,
                validator_table,
                path,
            } => write!(
                f,
                "Found ID \"{id}\" from table `{found_table}`, which does not match the table \
                 name in validator `v.id(\"{validator_table}\")`.{}",
                Context(path)
            ),
            ValidationError::SystemTableReference {
                id,
                validator_table,
                path,
            } => write!(
                f,
                "Found ID \"{id}\" from a system table, which does not match the table name in \
                 validator `v.id(\"{validator_table}\")`.{}",
                Context(path)
            ),
            ValidationError::LiteralMismatch {
                value,
                literal,
                path,
            } => write!(
                f,
                "`{}` does not match literal validator `v.literal({literal})`.{}",
                DisplayValue(value),
                Context(path)
            ),
            ValidationError::MissingRequiredField {
                object,
                field,
                validator,
                path,
            } => write!(
                f,
                "Object is missing the required field `{field}`. Consider wrapping the field \
                 validator in `v.optional(...)` if this is expected.\n{}\nObject: {}\nValidator: \
                 {validator}",
                Context(path),
                DisplayObject(object)
            ),
            ValidationError::ExtraField {
                object,
                field,
                validator,
                path,
            } => write!(
                f,
                "Object contains extra field `{field}` that is not in the validator.\n{}\nObject: \
                 {}\nValidator: {validator}",
                Context(path),
                DisplayObject(object)
            ),
            ValidationError::NoMatch {
                value,
                validator,
                path,
            } => write!(
                f,
                "Value does not match validator.\n{}\nValue: {}\nValidator: {validator}",
                Context(path),
                DisplayValue(value)
            ),
            ValidationError::Multiple {
                errors,
                object,
                validator,
                ..
            } => {
                writeln!(f, "Object has multiple validation errors:")?;
                for e in errors {
                    write_bullet(f, e)?;
                }
                write!(
                    f,
                    "Object: {}\nValidator: {validator}",
                    DisplayObject(object)
                )
            }
        }
    }
}

fn write_bullet(f: &mut fmt::Formatter<'_>, e: &ValidationError) -> fmt::Result {
    if let ValidationError::Multiple { errors, .. } = e {
        for child in errors {
            write_bullet(f, child)?;
        }
        return Ok(());
    }
    f.write_str("- ")?;
    match e {
        ValidationError::NoMatch {
            value, validator, ..
        } => write!(
            f,
            "`{}` does not match validator `{validator}`",
            DisplayValue(value)
        )?,
        ValidationError::LiteralMismatch { value, literal, .. } => write!(
            f,
            "`{}` does not match literal validator `v.literal({literal})`.",
            DisplayValue(value)
        )?,
        ValidationError::MissingRequiredField { field, .. } => {
            write!(f, "missing required field `{field}`")?
        }
        ValidationError::ExtraField { field, .. } => {
            write!(f, "extra field `{field}` that is not in the validator")?
        }
        ValidationError::TableNamesDoNotMatch {
            id,
            found_table,
            validator_table,
            ..
        } => write!(
            f,
            "Found ID \"{id}\" from table `{found_table}`, which does not match the table name \
             in validator `v.id(\"{validator_table}\")`."
        )?,
        ValidationError::SystemTableReference {
            id,
            validator_table,
            ..
        } => write!(
            f,
            "Found ID \"{id}\" from a system table, which does not match the table name in \
             validator `v.id(\"{validator_table}\")`."
        )?,
        ValidationError::Multiple { .. } => unreachable!("expanded above"),
    }
    if !e.path().is_empty() {
        write!(f, " {}", Context(e.path()))?;
    }
    writeln!(f)
}

impl Validator {
    /// Checks `value` against this validator; `tables` resolves the table
    /// numbers inside ids for `v.id(...)`.
    pub fn check(&self, value: &Value, tables: &dyn TableLookup) -> Result<(), ValidationError> {
        let no_match = || ValidationError::NoMatch {
            value: value.clone(),
            validator: self.clone(),
            path: String::new(),
        };
        match (self, value) {
            (Validator::Id(table), Value::String(s)) => {
                let found = DocumentId::decode(s)
                    .ok()
                    .and_then(|id| tables.table_name(id.table));
                match found {
                    None => Err(no_match()),
                    Some(name) if &name == table => Ok(()),
                    Some(name) if name.starts_with('_') => {
                        Err(ValidationError::SystemTableReference {
                            id: s.clone(),
                            validator_table: table.clone(),
                            path: String::new(),
                        })
                    }
                    Some(name) => Err(ValidationError::TableNamesDoNotMatch {
                        id: s.clone(),
                        found_table: name,
                        validator_table: table.clone(),
                        path: String::new(),
                    }),
                }
            }
            (Validator::Null, Value::Null)
            | (Validator::Float64, Value::Float64(_))
            | (Validator::Int64 | Validator::CommitTs, Value::Int64(_))
            | (Validator::Boolean, Value::Boolean(_))
            | (Validator::String, Value::String(_))
            | (Validator::Bytes, Value::Bytes(_))
            | (Validator::Any, _) => Ok(()),
            (Validator::Literal(literal), value) => {
                if *value == literal.to_value() {
                    Ok(())
                } else {
                    Err(ValidationError::LiteralMismatch {
                        value: value.clone(),
                        literal: literal.clone(),
                        path: String::new(),
                    })
                }
            }
            (Validator::Array(element), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    element
                        .check(item, tables)
                        .map_err(|e| e.within(&format!("[{i}]")))?;
                }
                Ok(())
            }
            (Validator::Record(keys, values), Value::Object(fields)) => {
                for (name, v) in fields {
                    keys.check(&Value::String(name.clone()), tables)
                        .map_err(|e| e.within(".keys()"))?;
                    values.check(v, tables).map_err(|e| e.within(".values()"))?;
                }
                Ok(())
            }
            (Validator::Object(object_validator), Value::Object(fields)) => {
                check_object(object_validator, fields, tables)
            }
            (Validator::Union(members), value) => {
                if let [only] = members.as_slice() {
                    return only.check(value, tables);
                }
                if members.iter().any(|m| m.check(value, tables).is_ok()) {
                    Ok(())
                } else {
                    Err(no_match())
                }
            }
            _ => Err(no_match()),
        }
    }
}

fn check_object(
    validator: &ObjectValidator,
    fields: &Object,
    tables: &dyn TableLookup,
) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    for (name, field) in &validator.fields {
        match fields.get(name) {
            Some(v) => {
                if let Err(e) = field.validator.check(v, tables) {
                    match e.within(&format!(".{name}")) {
                        ValidationError::Multiple { errors: nested, .. } => errors.extend(nested),
                        other => errors.push(other),
                    }
                }
            }
            None if !field.optional => errors.push(ValidationError::MissingRequiredField {
                object: fields.clone(),
                field: name.clone(),
                validator: validator.clone(),
                path: String::new(),
            }),
            None => {}
        }
    }
    for name in fields.keys() {
        if !validator.fields.contains_key(name) {
            errors.push(ValidationError::ExtraField {
                object: fields.clone(),
                field: name.clone(),
                validator: validator.clone(),
                path: String::new(),
            });
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(ValidationError::Multiple {
            errors,
            object: fields.clone(),
            validator: validator.clone(),
            path: String::new(),
        }),
    }
}

// ---- function arguments and return values ----

/// A function's `args` validator, from the JSON `exportArgs()` returns.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgsValidator {
    /// No `args` (`{"type":"any"}`): anything goes.
    Unvalidated,
    /// The argument object must match.
    Validated(ObjectValidator),
}

impl ArgsValidator {
    /// Reads the JSON of `exportArgs()` (parsed). `{"type":"any"}` is
    /// unvalidated; anything but an object or any is refused, as upstream.
    pub fn from_json(j: &Json) -> Result<ArgsValidator, ValidatorJsonError> {
        let validator = Validator::from_json(j).map_err(|e| {
            ValidatorJsonError::new(format!("Error in args validator: {e}\n{ARGS_DOCS}"))
        })?;
        match validator {
            Validator::Object(o) => Ok(ArgsValidator::Validated(o)),
            Validator::Any => Ok(ArgsValidator::Unvalidated),
            _ => Err(ValidatorJsonError::new(
                "Args validator must be an object or any",
            )),
        }
    }

    /// Writes it back as `exportArgs()` would.
    pub fn to_json(&self) -> Json {
        match self {
            ArgsValidator::Unvalidated => Validator::Any.to_json(),
            ArgsValidator::Validated(o) => Validator::Object(o.clone()).to_json(),
        }
    }

    /// Checks a call's positional arguments (in practice one object). The
    /// error is the whole message the caller sees: `ArgumentValidationError:
    /// …`.
    pub fn check(&self, args: &[Value], tables: &dyn TableLookup) -> Result<(), String> {
        let ArgsValidator::Validated(validator) = self else {
            return Ok(());
        };
        let fail = |reason: String| Err(format!("ArgumentValidationError: {reason}"));
        let [single] = args else {
            return fail(format!(
                "Expected to receive a single object as the function's argument. Instead \
                 received {} arguments: {}",
                args.len(),
                DisplayValue(&Value::Array(args.to_vec()))
            ));
        };
        let Value::Object(fields) = single else {
            return fail(format!(
                "Expected to receive an object as the function's argument. Instead received: {}",
                DisplayValue(single)
            ));
        };
        match check_object(validator, fields, tables) {
            Ok(()) => Ok(()),
            Err(e) => fail(e.to_string()),
        }
    }
}

/// A function's `returns` validator, from the JSON `exportReturns()`
/// returns.
#[derive(Clone, Debug, PartialEq)]
pub enum ReturnsValidator {
    /// No `returns` (the JSON `null`).
    Unvalidated,
    /// The return value must match.
    Validated(Validator),
}

impl ReturnsValidator {
    /// Reads the JSON of `exportReturns()` (parsed); `null` is unvalidated.
    pub fn from_json(j: &Json) -> Result<ReturnsValidator, ValidatorJsonError> {
        if j.is_null() {
            return Ok(ReturnsValidator::Unvalidated);
        }
        Validator::from_json(j)
            .map(ReturnsValidator::Validated)
            .map_err(|e| {
                ValidatorJsonError::new(format!("Error in returns validator: {e}\n{RETURNS_DOCS}"))
            })
    }

    /// Writes it back as `exportReturns()` would.
    pub fn to_json(&self) -> Json {
        match self {
            ReturnsValidator::Unvalidated => Json::Null,
            ReturnsValidator::Validated(v) => v.to_json(),
        }
    }

    /// Checks a function's return value (`undefined` is `null` by then). The
    /// error is the whole message: `ReturnsValidationError: …`.
    pub fn check(&self, value: &Value, tables: &dyn TableLookup) -> Result<(), String> {
        match self {
            ReturnsValidator::Unvalidated => Ok(()),
            ReturnsValidator::Validated(v) => v
                .check(value, tables)
                .map_err(|e| format!("ReturnsValidationError: {e}")),
        }
    }
}

/// The message for a return value that is not a valid Convex value at all
/// (its JSON does not decode, or breaks a limit), before any validator runs:
/// `Function <path> return value invalid: <reason>` (upstream
/// `crates/isolate/src/helpers.rs`, `deserialize_udf_result`).
pub fn return_value_invalid(function_path: &str, reason: &dyn fmt::Display) -> String {
    format!("Function {function_path} return value invalid: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(fields: &[(&str, Value)]) -> Object {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn parse(j: Json) -> Validator {
        Validator::from_json(&j).expect("valid validator JSON")
    }

    #[test]
    fn displays_like_upstream() {
        assert_eq!(
            Validator::Id("tableName".into()).to_string(),
            "v.id(\"tableName\")"
        );
        assert_eq!(
            Validator::Literal(Literal::Float64(123.0)).to_string(),
            "v.literal(123.0)"
        );
        assert_eq!(
            Validator::Literal(Literal::Int64(123)).to_string(),
            "v.literal(<bigint>)"
        );
        assert_eq!(
            Validator::Literal(Literal::Float64(f64::NAN)).to_string(),
            "v.literal(<number>)"
        );
        assert_eq!(
            Validator::Literal(Literal::String("abc".into())).to_string(),
            "v.literal(\"abc\")"
        );
        assert_eq!(
            Validator::Literal(Literal::Boolean(true)).to_string(),
            "v.literal(true)"
        );
        assert_eq!(
            Validator::Array(Box::new(Validator::String)).to_string(),
            "v.array(v.string())"
        );
        let o = parse(json!({"type": "object", "value": {
            "required": {"fieldType": {"type": "string"}, "optional": false},
            "optional": {"fieldType": {"type": "number"}, "optional": true},
        }}));
        assert_eq!(
            o.to_string(),
            "v.object({optional: v.optional(v.float64()), required: v.string()})"
        );
        assert_eq!(
            Validator::Union(vec![Validator::String, Validator::Float64]).to_string(),
            "v.union(v.string(), v.float64())"
        );
        assert_eq!(
            Validator::Record(Box::new(Validator::String), Box::new(Validator::Int64)).to_string(),
            "v.record(v.string(), v.int64())"
        );
        assert_eq!(Validator::CommitTs.to_string(), "v.commitTs()");
    }

    #[test]
    fn values_display_like_upstream() {
        let v = Value::Object(obj(&[
            ("a", Value::Float64(1.0)),
            ("b", Value::Int64(5)),
            ("c", Value::String("x\"y".into())),
            ("d", Value::Bytes(vec![1, 2, 3])),
            ("e", Value::Array(vec![Value::Null, Value::Boolean(false)])),
            ("f", Value::Float64(f64::NAN)),
        ]));
        assert_eq!(
            DisplayValue(&v).to_string(),
            r#"{a: 1.0, b: 5, c: "x\"y", d: b"AQID", e: [null, false], f: NaN}"#
        );
    }

    #[test]
    fn json_round_trips() {
        let cases = [
            json!({"type": "null"}),
            json!({"type": "number"}),
            json!({"type": "bigint"}),
            json!({"type": "commitTs"}),
            json!({"type": "boolean"}),
            json!({"type": "string"}),
            json!({"type": "bytes"}),
            json!({"type": "any"}),
            json!({"type": "literal", "value": "a"}),
            json!({"type": "literal", "value": 1.5}),
            json!({"type": "literal", "value": {"$integer": "KgAAAAAAAAA="}}),
            json!({"type": "literal", "value": false}),
            json!({"type": "id", "tableName": "users"}),
            json!({"type": "array", "value": {"type": "string"}}),
            json!({"type": "record", "keys": {"type": "string"},
                   "values": {"fieldType": {"type": "number"}, "optional": false}}),
            json!({"type": "object", "value": {"a": {"fieldType": {"type": "string"}, "optional": true}}}),
            json!({"type": "union", "value": [{"type": "string"}, {"type": "null"}]}),
        ];
        for j in cases {
            assert_eq!(parse(j.clone()).to_json(), j);
        }
        assert_eq!(parse(json!({"type": "map"})), Validator::Any);
        assert_eq!(parse(json!({"type": "set"})), Validator::Any);
    }

    #[test]
    fn bad_json_is_refused_with_upstream_messages() {
        let err = |j: Json| Validator::from_json(&j).expect_err("invalid").to_string();
        assert_eq!(
            err(json!({"type": "record", "keys": {"type": "number"},
                       "values": {"fieldType": {"type": "number"}, "optional": false}})),
            "Records can only have string keys. Your validator contains a record with key typed \
             as `v.float64()`, which is not a subtype of `v.string()`"
        );
        assert_eq!(
            err(json!({"type": "record", "keys": {"type": "any"},
                       "values": {"fieldType": {"type": "number"}, "optional": false}})),
            "Records can only have string keys. Your validator contains a record with key typed \
             as `v.any()`, which is not a subtype of `v.string()`"
        );
        assert_eq!(
            err(
                json!({"type": "record", "keys": {"type": "union", "value": [
                {"type": "string"}, {"type": "literal", "value": "abc"}]},
                "values": {"fieldType": {"type": "number"}, "optional": false}})
            ),
            "Records cannot have string literal keys"
        );
        assert_eq!(
            err(
                json!({"type": "record", "keys": {"type": "id", "tableName": "users"},
                       "values": {"fieldType": {"type": "number"}, "optional": true}})
            ),
            "Records cannot have optional values"
        );
        assert!(Validator::from_json(&json!({"type": "record",
            "keys": {"type": "union", "value": [{"type": "string"}, {"type": "id", "tableName": "u"}]},
            "values": {"fieldType": {"type": "number"}, "optional": false}}))
        .is_ok());
        assert_eq!(
            err(json!({"type": "literal", "value": null})),
            "Value null is not a valid literal."
        );
        assert!(err(json!({"type": "wat"})).contains("unknown type \"wat\""));
        assert!(err(json!({"type": "id"})).contains("missing field `tableName`"));
        assert_eq!(
            err(
                json!({"type": "object", "value": {"1a": {"fieldType": {"type": "string"}, "optional": false}}})
            ),
            "Invalid first character '1' in 1a: Identifiers must start with an alphabetic \
             character or underscore"
        );
        assert_eq!(
            err(
                json!({"type": "object", "value": {"a": {"fieldType": {"type": "nope"}, "optional": false}}})
            ),
            "Invalid validator for key `a`: Invalid validator: unknown type \"nope\" in \
             {\"type\":\"nope\"}"
        );
    }

    #[test]
    fn messages_match_upstream() {
        let v = parse(json!({"type": "object", "value": {
            "x": {"fieldType": {"type": "number"}, "optional": false},
        }}));
        let e = v
            .check(&Value::Object(obj(&[("x", "a".into())])), &NoTables)
            .expect_err("wrong type");
        assert_eq!(
            e.to_string(),
            "Value does not match validator.\nPath: .x\nValue: \"a\"\nValidator: v.float64()"
        );
        let e = v
            .check(&Value::Object(Object::new()), &NoTables)
            .expect_err("missing");
        assert_eq!(
            e.to_string(),
            "Object is missing the required field `x`. Consider wrapping the field validator in \
             `v.optional(...)` if this is expected.\n\nObject: {}\nValidator: v.object({x: \
             v.float64()})"
        );
        let e = v
            .check(
                &Value::Object(obj(&[("x", 1.0.into()), ("y", true.into())])),
                &NoTables,
            )
            .expect_err("extra");
        assert_eq!(
            e.to_string(),
            "Object contains extra field `y` that is not in the validator.\n\nObject: {x: 1.0, \
             y: true}\nValidator: v.object({x: v.float64()})"
        );
        let lit = Validator::Literal(Literal::String("hello".into()));
        assert_eq!(
            lit.check(&Value::Int64(0), &NoTables)
                .expect_err("literal")
                .to_string(),
            "`0` does not match literal validator `v.literal(\"hello\")`."
        );
    }

    #[test]
    fn several_problems_are_one_error() {
        let v = parse(json!({"type": "object", "value": {
            "name": {"fieldType": {"type": "string"}, "optional": false},
            "count": {"fieldType": {"type": "number"}, "optional": false},
        }}));
        let value = Value::Object(obj(&[("name", 1.0.into()), ("extra", true.into())]));
        let e = v.check(&value, &NoTables).expect_err("several");
        assert!(matches!(e, ValidationError::Multiple { .. }));
        assert_eq!(
            e.to_string(),
            "Object has multiple validation errors:\n- missing required field `count`\n- `1.0` \
             does not match validator `v.string()` Path: .name\n- extra field `extra` that is \
             not in the validator\nObject: {extra: true, name: 1.0}\nValidator: v.object({count: \
             v.float64(), name: v.string()})"
        );
    }

    #[test]
    fn nested_problems_are_flattened_with_their_paths() {
        let payload = json!({"type": "object", "value": {
            "a": {"fieldType": {"type": "string"}, "optional": false},
            "b": {"fieldType": {"type": "number"}, "optional": false},
        }});
        let v = parse(json!({"type": "object", "value": {
            "payload": {"fieldType": payload, "optional": false},
        }}));
        let value = Value::Object(obj(&[
            (
                "payload",
                Value::Object(obj(&[("a", 1.0.into()), ("b", "no".into())])),
            ),
            ("extra", true.into()),
        ]));
        let e = v.check(&value, &NoTables).expect_err("nested");
        let ValidationError::Multiple { errors, .. } = &e else {
            panic!("expected Multiple, got {e:?}");
        };
        let paths: Vec<&str> = errors.iter().map(ValidationError::path).collect();
        assert_eq!(paths, [".payload.a", ".payload.b", ""]);
        let text = e.to_string();
        assert_eq!(text.matches("Object:").count(), 1);
        assert!(text.contains("Path: .payload.a"), "{text}");
    }

    #[test]
    fn arrays_report_the_first_bad_element() {
        let v = Validator::Array(Box::new(Validator::String));
        let e = v
            .check(&Value::Array(vec![1.0.into(), 2.0.into()]), &NoTables)
            .expect_err("bad");
        assert_eq!(e.path(), "[0]");
    }

    #[test]
    fn records_check_keys_and_values() {
        let v = Validator::Record(Box::new(Validator::String), Box::new(Validator::Float64));
        let e = v
            .check(&Value::Object(obj(&[("a", true.into())])), &NoTables)
            .expect_err("bad value");
        assert_eq!(e.path(), ".values()");
        let ids = Validator::Record(
            Box::new(Validator::Id("users".into())),
            Box::new(Validator::Float64),
        );
        let e = ids
            .check(&Value::Object(obj(&[("hello", 1.0.into())])), &NoTables)
            .expect_err("bad key");
        assert_eq!(e.path(), ".keys()");
        assert!(matches!(e, ValidationError::NoMatch { .. }));
    }

    #[test]
    fn ids_are_checked_by_table() {
        let users = TableNumber::new(10001).unwrap();
        let messages = TableNumber::new(10002).unwrap();
        let lookup = |n: TableNumber| match n.get() {
            10001 => Some("users".to_owned()),
            10002 => Some("messages".to_owned()),
            540 => Some("_storage".to_owned()),
            _ => None,
        };
        let id = |t: TableNumber| DocumentId::new(t, engine::id::InternalId([7; 16])).encode();
        let v = Validator::Id("users".into());
        assert_eq!(v.check(&Value::String(id(users)), &lookup), Ok(()));
        let wrong = id(messages);
        let e = v
            .check(&Value::String(wrong.clone()), &lookup)
            .expect_err("other table");
        assert_eq!(
            e.to_string(),
            format!(
                "Found ID \"{wrong}\" from table `messages`, which does not match the table name \
                 in validator `v.id(\"users\")`."
            )
        );
        let system = id(TableNumber::new(540).unwrap());
        assert!(matches!(
            v.check(&Value::String(system), &lookup),
            Err(ValidationError::SystemTableReference { .. })
        ));
        let unknown = id(TableNumber::new(10009).unwrap());
        assert!(matches!(
            v.check(&Value::String(unknown), &lookup),
            Err(ValidationError::NoMatch { .. })
        ));
        assert!(matches!(
            v.check(&Value::String("nope".into()), &lookup),
            Err(ValidationError::NoMatch { .. })
        ));
    }

    #[test]
    fn unions_try_each_member() {
        let v = Validator::Union(vec![Validator::String, Validator::Null]);
        assert_eq!(v.check(&Value::Null, &NoTables), Ok(()));
        let e = v.check(&Value::Int64(1), &NoTables).expect_err("none");
        assert_eq!(
            e.to_string(),
            "Value does not match validator.\n\nValue: 1\nValidator: v.union(v.string(), \
             v.null())"
        );
        // A single member reports its own error.
        let one = Validator::Union(vec![Validator::String]);
        assert!(matches!(
            one.check(&Value::Int64(1), &NoTables),
            Err(ValidationError::NoMatch {
                validator: Validator::String,
                ..
            })
        ));
        assert!(Validator::Union(vec![])
            .check(&Value::Null, &NoTables)
            .is_err());
    }

    #[test]
    fn commit_ts_accepts_int64() {
        assert_eq!(
            Validator::CommitTs.check(&Value::Int64(3), &NoTables),
            Ok(())
        );
        assert!(Validator::CommitTs
            .check(&Value::Float64(3.0), &NoTables)
            .is_err());
    }

    #[test]
    fn args_and_returns() {
        let args = ArgsValidator::from_json(&json!({"type": "object", "value": {
            "x": {"fieldType": {"type": "string"}, "optional": false}}}))
        .expect("args");
        assert_eq!(
            ArgsValidator::from_json(&json!({"type": "any"})).expect("any"),
            ArgsValidator::Unvalidated
        );
        assert_eq!(
            ArgsValidator::from_json(&json!({"type": "string"}))
                .expect_err("string")
                .to_string(),
            "Args validator must be an object or any"
        );
        assert!(ArgsValidator::from_json(&json!({"type": "??"}))
            .expect_err("bad")
            .to_string()
            .starts_with("Error in args validator: "));
        assert_eq!(
            args.check(&[Value::Object(obj(&[("x", "s".into())]))], &NoTables),
            Ok(())
        );
        let e = args
            .check(&[Value::Object(Object::new())], &NoTables)
            .expect_err("missing");
        assert!(
            e.starts_with("ArgumentValidationError: Object is missing the required field `x`."),
            "{e}"
        );
        assert_eq!(
            args.check(&[], &NoTables).expect_err("none"),
            "ArgumentValidationError: Expected to receive a single object as the function's \
             argument. Instead received 0 arguments: []"
        );
        assert_eq!(
            args.check(&[Value::Float64(1.0)], &NoTables)
                .expect_err("number"),
            "ArgumentValidationError: Expected to receive an object as the function's argument. \
             Instead received: 1.0"
        );
        assert_eq!(
            ArgsValidator::Unvalidated.check(&[Value::Null, Value::Null], &NoTables),
            Ok(())
        );

        let returns = ReturnsValidator::from_json(&json!({"type": "number"})).expect("returns");
        assert_eq!(
            ReturnsValidator::from_json(&Json::Null).expect("null"),
            ReturnsValidator::Unvalidated
        );
        assert_eq!(
            returns.check(&Value::String("a".into()), &NoTables),
            Err(
                "ReturnsValidationError: Value does not match validator.\n\nValue: \
                 \"a\"\nValidator: v.float64()"
                    .to_owned()
            )
        );
        assert_eq!(returns.to_json(), json!({"type": "number"}));
        assert_eq!(
            return_value_invalid("messages.js:list", &"Array length is too long"),
            "Function messages.js:list return value invalid: Array length is too long"
        );
    }
}
