//! Scalars of our own.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// A 64-bit integer: event ids, log positions, durations in seconds, totals across
/// assets. GraphQL's `Int` is 32-bit and these may exceed it, so they are this scalar,
/// written as a JSON number (exact in JavaScript up to 2^53); as an argument it is a
/// number or a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Int64(pub i64);

#[Scalar(name = "Int64")]
impl ScalarType for Int64 {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => n
                .as_i64()
                .map(Int64)
                .ok_or_else(|| InputValueError::custom(format!("{n} is not a 64-bit integer"))),
            Value::String(s) if s.len() <= 20 => s
                .parse()
                .map(Int64)
                .map_err(|_| InputValueError::custom("not a 64-bit integer")),
            Value::String(_) => Err(InputValueError::custom("not a 64-bit integer")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::Number(n) if n.is_i64()) || matches!(value, Value::String(_))
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

impl From<i64> for Int64 {
    fn from(v: i64) -> Self {
        Self(v)
    }
}

impl From<u64> for Int64 {
    fn from(v: u64) -> Self {
        Self(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
