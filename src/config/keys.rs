//! Every key the config file knows, read from the serde structs themselves (feature
//! `test-support`): the tests hold `config.example.toml` to this list, so a setting added to
//! [`ConfigFile`] and not documented there fails a test instead of drifting.
//!
//! [`setting_keys`] runs [`ConfigFile`]'s own `Deserialize` against a deserializer that
//! offers every field a struct declares, descends into nested structs (the `[s3]`, `[gcs]`,
//! `[storage_retries]` tables) and notes each field that takes a value.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

use super::ConfigFile;

/// Every key of the config file, nested ones dotted (`s3.region`), in declaration order.
pub fn setting_keys() -> Vec<String> {
    let mut keys = Vec::new();
    ConfigFile::deserialize(Tracer {
        path: String::new(),
        keys: &mut keys,
    })
    .unwrap_or_else(|e| panic!("tracing the config file's keys: {e}"));
    keys
}

/// Why a trace stopped: a field of a shape it does not offer values for.
#[derive(Debug)]
struct Stop(String);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Offers a value for the key at `path`, noting it in `keys`; a struct is walked field by
/// field instead.
struct Tracer<'a> {
    path: String,
    keys: &'a mut Vec<String>,
}

impl Tracer<'_> {
    fn note(self) {
        self.keys.push(self.path);
    }
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop(format!(
            "setting {:?} has a type the trace does not know",
            self.path
        )))
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_some(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Stop> {
        v.visit_map(Fields {
            prefix: self.path,
            keys: self.keys,
            fields: fields.iter(),
            current: "",
        })
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_bool(true)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_u64(1)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_u64(1)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_u64(1)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_u64(1)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_i64(1)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_i64(1)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_i64(1)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_i64(1)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_f64(1.0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_f64(1.0)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_str("x")
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        self.note();
        v.visit_str("x")
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// A struct's fields, each offered once with a traced value.
struct Fields<'a> {
    prefix: String,
    keys: &'a mut Vec<String>,
    fields: std::slice::Iter<'static, &'static str>,
    current: &'static str,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        let Some(field) = self.fields.next() else {
            return Ok(None);
        };
        self.current = field;
        seed.deserialize(IntoDeserializer::<Stop>::into_deserializer(*field))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let path = if self.prefix.is_empty() {
            self.current.to_string()
        } else {
            format!("{}.{}", self.prefix, self.current)
        };
        seed.deserialize(Tracer {
            path,
            keys: &mut *self.keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_tables_are_walked_and_dotted() {
        let keys = setting_keys();
        assert_eq!(keys.first().map(String::as_str), Some("repo"));
        for k in ["s3.region", "gcs.endpoint", "storage_retries.tries"] {
            assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
        }
        assert!(
            !keys.iter().any(|x| x == "s3"),
            "a table is not a key: {keys:?}"
        );
    }
}
