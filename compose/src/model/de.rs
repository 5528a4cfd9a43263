//! Deserializing the merged YAML tree into the typed model.
//!
//! After interpolation every value may be a string (`read_only: ${RO}`), so, as Compose
//! does, scalars are cast to the type the model asks for: `"true"` to a bool, `"8080"` to
//! a number, a number to a string. This needs a `Deserializer` over `Value` of our own;
//! serde_yaml_ng's is strict. It is the only hand-written deserializer here.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_yaml_ng::{Number, Value};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError(pub String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DeError {}
impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

/// A lenient deserializer over a borrowed YAML value.
pub struct ValueDe<'a>(pub &'a Value);

fn inner(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => inner(&t.value),
        other => other,
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => de::Unexpected::Signed(i),
            (None, Some(f)) => de::Unexpected::Float(f),
            _ => de::Unexpected::Other("number"),
        },
        Value::String(s) => de::Unexpected::Str(s),
        Value::Sequence(_) => de::Unexpected::Seq,
        Value::Mapping(_) => de::Unexpected::Map,
        Value::Tagged(_) => de::Unexpected::Other("tagged value"),
    }
}

fn visit_number<'de, V: Visitor<'de>>(n: &Number, v: V) -> Result<V::Value, DeError> {
    if let Some(u) = n.as_u64() {
        v.visit_u64(u)
    } else if let Some(i) = n.as_i64() {
        v.visit_i64(i)
    } else {
        v.visit_f64(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Parses a string as a YAML number, for `"8080"` where a number is wanted.
fn parse_number(s: &str) -> Option<Number> {
    let t = s.trim();
    if let Ok(u) = t.parse::<u64>() {
        return Some(Number::from(u));
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Number::from(i));
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite()).map(Number::from)
}

macro_rules! numeric {
    ($($m:ident),*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            match inner(self.0) {
                Value::Number(n) => visit_number(n, v),
                Value::String(s) => match parse_number(s) {
                    Some(n) => visit_number(&n, v),
                    None => Err(de::Error::invalid_type(de::Unexpected::Str(s), &v)),
                },
                other => Err(de::Error::invalid_type(unexpected(other), &v)),
            }
        }
    )*};
}

impl<'de, 'a> de::Deserializer<'de> for ValueDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match inner(self.0) {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Number(n) => visit_number(n, v),
            Value::String(s) => v.visit_str(s),
            Value::Sequence(s) => v.visit_seq(Seq { it: s.iter(), index: 0 }),
            Value::Mapping(m) => v.visit_map(Map {
                it: m.iter(),
                value: None,
            }),
            Value::Tagged(_) => Err(de::Error::custom("unexpected tag")),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match inner(self.0) {
            Value::Bool(b) => v.visit_bool(*b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "on" => v.visit_bool(true),
                "false" | "no" | "n" | "off" => v.visit_bool(false),
                _ => Err(de::Error::invalid_type(de::Unexpected::Str(s), &v)),
            },
            other => Err(de::Error::invalid_type(unexpected(other), &v)),
        }
    }

    numeric!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_f32,
        deserialize_f64
    );

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match inner(self.0) {
            Value::String(s) => v.visit_str(s),
            Value::Number(n) => v.visit_string(n.to_string()),
            Value::Bool(b) => v.visit_string(b.to_string()),
            other => Err(de::Error::invalid_type(unexpected(other), &v)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match inner(self.0) {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match inner(self.0) {
            Value::String(s) => v.visit_enum(s.as_str().into_deserializer()),
            other => Err(de::Error::invalid_type(unexpected(other), &v)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Seq<'a> {
    it: std::slice::Iter<'a, Value>,
    index: usize,
}

impl<'de, 'a> SeqAccess<'de> for Seq<'a> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.it.next() {
            Some(v) => {
                self.index += 1;
                seed.deserialize(ValueDe(v)).map(Some)
            }
            None => Ok(None),
        }
    }
}

struct Map<'a> {
    it: serde_yaml_ng::mapping::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'de, 'a> MapAccess<'de> for Map<'a> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.it.next() {
            Some((k, v)) => {
                self.value = Some(v);
                // Keys are always read as strings (`80: x` is the key "80").
                let key = crate::merge::key_str(k);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(ValueDe(v)),
            None => Err(de::Error::custom("value without a key")),
        }
    }
}
