//! JS values → [`Attr`]: the one place where context attributes cross from JavaScript.
//!
//! The JS wrapper reads only the attributes a flag uses (`Flag::attributes`) out of the
//! caller's context object and passes them here positionally; this module converts each one
//! without ever failing. The mapping is the same for every entry point (and matches the Python
//! binding and `attr_from_json` in the core):
//!
//! | JS                                   | Attr                                   |
//! |--------------------------------------|----------------------------------------|
//! | string                               | `Str`                                  |
//! | number, `Number.isSafeInteger`       | `Int`                                  |
//! | other number (fractions, NaN, ±∞, beyond 2^53) | `Float`                      |
//! | bigint within i64                    | `Int`                                  |
//! | boolean                              | `Bool`                                 |
//! | array of strings                     | `List`                                 |
//! | null / undefined                     | `Missing`                              |
//! | anything else                        | `Unsupported(type name)`: never matches, shown by `explain` |

use std::borrow::Cow;

use flagrail_core::Attr;
use napi::bindgen_prelude::{Array, BigInt, FromNapiValue, JsObjectValue, JsValue, Unknown};
use napi::ValueType;

/// Largest integer a JS number represents exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// An attribute value read out of JS and owned on the Rust side for the length of one call.
#[derive(Debug)]
pub enum JsAttr {
    Missing,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
    Unsupported(&'static str),
}

impl JsAttr {
    /// Reads one JS value. Never fails: a value napi cannot read is `Unsupported`.
    #[inline]
    pub fn read(value: Unknown<'_>) -> JsAttr {
        match value.get_type() {
            Ok(ValueType::String) => String::from_unknown(value)
                .map(JsAttr::Str)
                .unwrap_or(JsAttr::Unsupported("unreadable string")),
            Ok(ValueType::Number) => match f64::from_unknown(value) {
                Ok(n) => number(n),
                Err(_) => JsAttr::Unsupported("unreadable number"),
            },
            Ok(ValueType::Undefined | ValueType::Null) => JsAttr::Missing,
            Ok(ValueType::Boolean) => bool::from_unknown(value)
                .map(JsAttr::Bool)
                .unwrap_or(JsAttr::Unsupported("unreadable boolean")),
            Ok(ValueType::BigInt) => match BigInt::from_unknown(value) {
                Ok(big) => match big.get_i64() {
                    (i, true) => JsAttr::Int(i),
                    (_, false) => JsAttr::Unsupported("bigint outside the 64-bit range"),
                },
                Err(_) => JsAttr::Unsupported("unreadable bigint"),
            },
            Ok(ValueType::Object) => object(value),
            Ok(ValueType::Function) => JsAttr::Unsupported("function"),
            Ok(ValueType::Symbol) => JsAttr::Unsupported("symbol"),
            Ok(_) | Err(_) => JsAttr::Unsupported("unknown JS type"),
        }
    }

    /// The core's view of this value, borrowing the strings.
    #[inline]
    pub fn attr(&self) -> Attr<'_> {
        match self {
            JsAttr::Missing => Attr::Missing,
            JsAttr::Str(s) => Attr::Str(s),
            JsAttr::Int(i) => Attr::Int(*i),
            JsAttr::Float(f) => Attr::Float(*f),
            JsAttr::Bool(b) => Attr::Bool(*b),
            JsAttr::List(items) => Attr::List(Cow::Owned(
                items.iter().map(|s| Cow::Borrowed(s.as_str())).collect(),
            )),
            JsAttr::Unsupported(name) => Attr::Unsupported(name),
        }
    }
}

/// `Number.isSafeInteger(n)` → integer, everything else → float (integers beyond 2^53 are not
/// exact in JS, so they must not be bucketed as if they were; pass a bigint instead).
#[inline]
fn number(n: f64) -> JsAttr {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        JsAttr::Int(n as i64)
    } else {
        JsAttr::Float(n)
    }
}

fn object(value: Unknown<'_>) -> JsAttr {
    if !value.is_array().unwrap_or(false) {
        return JsAttr::Unsupported("object");
    }
    let Ok(array) = Array::from_unknown(value) else {
        return JsAttr::Unsupported("unreadable array");
    };
    let mut items = Vec::with_capacity(array.len() as usize);
    for index in 0..array.len() {
        let item = match array.get_element::<Unknown<'_>>(index) {
            Ok(item) => item,
            Err(_) => return JsAttr::Unsupported("unreadable array"),
        };
        match item.get_type() {
            Ok(ValueType::String) => match String::from_unknown(item) {
                Ok(s) => items.push(s),
                Err(_) => return JsAttr::Unsupported("unreadable array"),
            },
            // Same wording as the core's JSON reader, so explanations match across languages.
            _ => return JsAttr::Unsupported("list with non-string items"),
        }
    }
    JsAttr::List(items)
}

/// Reads every element of a JS array of attribute values (the general, non-fast path).
pub fn read_all(values: &Array<'_>) -> Vec<JsAttr> {
    (0..values.len())
        .map(|index| match values.get_element::<Unknown<'_>>(index) {
            Ok(value) => JsAttr::read(value),
            Err(_) => JsAttr::Unsupported("unreadable value"),
        })
        .collect()
}
