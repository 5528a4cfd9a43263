//! Wrappers that read a value written in its short or its long syntax and yield the
//! long form. Each converts into the model field's type.

use indexmap::IndexMap;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// A type with a short (scalar) syntax; some short forms stand for several values
/// (a port range).
pub trait FromShort: Sized {
    const EXPECTING: &'static str;
    fn from_short(s: &str) -> Result<Vec<Self>, String>;
}

/// One value: short scalar or long mapping.
pub struct One<T>(pub Option<T>);

impl<T> From<One<T>> for Option<T> {
    fn from(v: One<T>) -> Self {
        v.0
    }
}

struct OneV<T>(PhantomData<T>);

impl<'de, T: FromShort + Deserialize<'de>> OneV<T> {
    fn short<E: de::Error>(s: &str) -> Result<T, E> {
        let mut v = T::from_short(s).map_err(E::custom)?;
        if v.len() != 1 {
            return Err(E::custom(format!(
                "{s:?} stands for {} values where one is expected",
                v.len()
            )));
        }
        Ok(v.remove(0))
    }
}

impl<'de, T: FromShort + Deserialize<'de>> Visitor<'de> for OneV<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Self::short(s).map(Some)
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Self::short(&n.to_string()).map(Some)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Self::short(&n.to_string()).map(Some)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
}

impl<'de, T: FromShort + Deserialize<'de>> Deserialize<'de> for One<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneV(PhantomData)).map(One)
    }
}

/// A sequence of values, each short or long (a lone scalar counts as a one-item list).
pub struct Many<T>(pub Option<Vec<T>>);

impl<T> From<Many<T>> for Option<Vec<T>> {
    fn from(v: Many<T>) -> Self {
        v.0
    }
}

/// One item of a [`Many`], possibly expanding to several.
struct Item<T>(Vec<T>);

impl<'de, T: FromShort + Deserialize<'de>> Deserialize<'de> for Item<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: FromShort + Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<T>, E> {
                T::from_short(s).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Vec<T>, E> {
                T::from_short(&n.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Vec<T>, E> {
                T::from_short(&n.to_string()).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|v| vec![v])
            }
        }
        d.deserialize_any(V(PhantomData)).map(Item)
    }
}

impl<'de, T: FromShort + Deserialize<'de>> Deserialize<'de> for Many<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: FromShort + Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Option<Vec<T>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of {}", T::EXPECTING)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                T::from_short(s).map(Some).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Item(v)) = seq.next_element::<Item<T>>()? {
                    out.extend(v);
                }
                Ok(Some(out))
            }
        }
        d.deserialize_any(V(PhantomData)).map(Many)
    }
}

/// A scalar as a string (numbers and booleans as written).
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
                Ok(s.to_string())
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<String, E> {
                Ok(b.to_string())
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<String, E> {
                Ok(n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<String, E> {
                Ok(n.to_string())
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<String, E> {
                Ok(n.to_string())
            }
        }
        d.deserialize_any(V).map(Scalar)
    }
}

/// A string or a list of strings.
pub struct StringOrList(pub Option<Vec<String>>);

impl From<StringOrList> for Option<Vec<String>> {
    fn from(v: StringOrList) -> Self {
        v.0
    }
}

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Vec<String>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Some(vec![s.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Some(vec![n.to_string()]))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Some(vec![n.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Scalar(s)) = seq.next_element()? {
                    out.push(s);
                }
                Ok(Some(out))
            }
        }
        d.deserialize_any(V).map(StringOrList)
    }
}

/// A command: a string (split as a shell would) or a list. `[]` is kept: it clears the
/// image's command.
pub struct Command(pub Option<Vec<String>>);

impl From<Command> for Option<Vec<String>> {
    fn from(v: Command) -> Self {
        v.0
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Vec<String>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command string or a list of arguments")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                shell_words::split(s)
                    .map(Some)
                    .map_err(|e| E::custom(format!("cannot split command {s:?}: {e}")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let v: Vec<Scalar> = Deserialize::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(Some(v.into_iter().map(|s| s.0).collect()))
            }
        }
        d.deserialize_any(V).map(Command)
    }
}

/// `KEY=VALUE` list or mapping; a bare key, or a null value, is `None`.
pub struct ListOrMap(pub Option<BTreeMap<String, Option<String>>>);

impl From<ListOrMap> for Option<BTreeMap<String, Option<String>>> {
    fn from(v: ListOrMap) -> Self {
        v.0
    }
}

/// Same input as [`ListOrMap`]; a missing value is the empty string (labels, args).
pub struct Labels(pub Option<BTreeMap<String, String>>);

impl From<Labels> for Option<BTreeMap<String, String>> {
    fn from(v: Labels) -> Self {
        v.0
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ListOrMap(m) = ListOrMap::deserialize(d)?;
        Ok(Labels(m.map(|m| {
            m.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect()
        })))
    }
}

impl<'de> Deserialize<'de> for ListOrMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<BTreeMap<String, Option<String>>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping or a list of KEY=VALUE strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(Scalar(s)) = seq.next_element()? {
                    match s.split_once('=') {
                        Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                        None => out.insert(s, None),
                    };
                }
                Ok(Some(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    let v: Option<Scalar> = map.next_value()?;
                    out.insert(k, v.map(|s| s.0));
                }
                Ok(Some(out))
            }
        }
        d.deserialize_any(V).map(ListOrMap)
    }
}

/// A mapping whose values may be null (`networks: {front: }`), nulls read as defaults.
pub struct NullableMap<T>(pub IndexMap<String, T>);

impl<T> From<NullableMap<T>> for IndexMap<String, T> {
    fn from(v: NullableMap<T>) -> Self {
        v.0
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for NullableMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
            type Value = IndexMap<String, T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IndexMap::new())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = IndexMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    let v: Option<T> = map.next_value()?;
                    out.insert(k, v.unwrap_or_default());
                }
                Ok(out)
            }
        }
        d.deserialize_any(V(PhantomData)).map(NullableMap)
    }
}

/// A list of names or a mapping of name to options (service `networks`, `models`).
pub struct NamesOrMap<T>(pub Option<IndexMap<String, Option<T>>>);

impl<T> From<NamesOrMap<T>> for Option<IndexMap<String, Option<T>>> {
    fn from(v: NamesOrMap<T>) -> Self {
        v.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamesOrMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Option<IndexMap<String, Option<T>>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of names or a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = IndexMap::new();
                while let Some(Scalar(s)) = seq.next_element()? {
                    out.insert(s, None);
                }
                Ok(Some(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = IndexMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    out.insert(k, map.next_value()?);
                }
                Ok(Some(out))
            }
        }
        d.deserialize_any(V(PhantomData)).map(NamesOrMap)
    }
}
