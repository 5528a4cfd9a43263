//! The typed Compose model: every service and top-level key of the canonical schema.
//!
//! Structs are declared with [`model!`], which derives `Serialize` (absent values are not
//! printed, as with `docker compose config`) and writes a `Deserialize` that knows the
//! struct's keys: an unknown key is an error that names the closest known one, and `x-`
//! extension keys are kept. Values with a short and a long syntax go through the
//! wrappers of [`short`], which always produce the long form.

pub mod blocks;
pub mod de;
pub mod project;
pub mod service;
pub mod short;
pub mod syntax;
pub mod units;

pub use blocks::*;
pub use project::*;
pub use service::*;
pub use syntax::*;
pub use units::*;

use indexmap::IndexMap;
use serde::{Serialize, Serializer};
use serde_yaml_ng::Value;

/// Whether a field has nothing to print.
pub trait Empty {
    fn is_empty(&self) -> bool;
}
impl<T> Empty for Option<T> {
    fn is_empty(&self) -> bool {
        self.is_none()
    }
}
impl<T> Empty for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}
impl<K, V> Empty for IndexMap<K, V> {
    fn is_empty(&self) -> bool {
        IndexMap::is_empty(self)
    }
}

/// The keys a struct of the model accepts.
pub trait Keys {
    const KEYS: &'static [&'static str];
}

/// `x-` keys kept beside the known ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extensions(pub IndexMap<String, Value>);

impl Serialize for Extensions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Strips the raw-identifier prefix that `stringify!(r#type)` keeps.
pub const fn key_name(s: &'static str) -> &'static str {
    match s.as_bytes() {
        [b'r', b'#', ..] => {
            // SAFETY-free slicing at a char boundary: "r#" is two ASCII bytes.
            let (_, rest) = s.split_at(2);
            rest
        }
        _ => s,
    }
}

/// "unknown key `depnds_on`, did you mean `depends_on`?"
pub fn unknown_key(key: &str, known: &[&'static str]) -> String {
    let best = known
        .iter()
        .map(|k| key_name(k))
        .map(|k| (strsim::damerau_levenshtein(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, k)) => format!("unknown key `{key}`, did you mean `{k}`?"),
        None => format!("unknown key `{key}`"),
    }
}

/// Declares a model struct. A field may name a wrapper type to deserialize through
/// (`@via(Wrapper)`), which converts into the field's type.
macro_rules! model {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $(@via($via:ty))?
                $field:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[serde(skip_serializing_if = "crate::model::Empty::is_empty")]
                pub $field: $ty,
            )*
            /// `x-` extension keys.
            #[serde(flatten)]
            pub extensions: crate::model::Extensions,
        }

        impl crate::model::Keys for $name {
            const KEYS: &'static [&'static str] = &[$(crate::model::key_name(stringify!($field))),*];
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a mapping")
                    }
                    fn visit_unit<E: serde::de::Error>(self) -> Result<$name, E> {
                        Ok($name::default())
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        use serde::de::Error as _;
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<String>()? {
                            match key.as_str() {
                                $(
                                    k if k == crate::model::key_name(stringify!($field)) => {
                                        out.$field = model!(@value map $ty $(, $via)?);
                                    }
                                )*
                                k if k.starts_with("x-") => {
                                    let v: serde_yaml_ng::Value = map.next_value()?;
                                    out.extensions.0.insert(key, v);
                                }
                                _ => {
                                    return Err(A::Error::custom(crate::model::unknown_key(
                                        &key,
                                        <$name as crate::model::Keys>::KEYS,
                                    )))
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
    (@value $map:ident $ty:ty) => { $map.next_value::<$ty>()? };
    (@value $map:ident $ty:ty, $via:ty) => { $map.next_value::<$via>()?.into() };
}
pub(crate) use model;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = &["depends_on", "image", "r#type"];
        assert_eq!(
            unknown_key("depnds_on", keys),
            "unknown key `depnds_on`, did you mean `depends_on`?"
        );
        assert_eq!(unknown_key("typ", keys), "unknown key `typ`, did you mean `type`?");
        assert_eq!(unknown_key("zzzzzzzz", keys), "unknown key `zzzzzzzz`");
    }
}
