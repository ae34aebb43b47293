//! Human-friendly durations (`250ms`, `1h30m`, `30d`) and sizes (`64KiB`,
//! `10MB`, bare bytes). Parsed during deserialization so a bad
//! value is reported at its line; printed back in the same forms
//! (`keygate config print`) and described to editors as patterned strings.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::schema::text_pattern;

/// A duration written as a humantime string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim()).map(HumanDuration).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {text:?}: {e} (use e.g. 250ms, 10s, 15m, 30d)"
            ))
        })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(self.0))
    }
}

/// humantime's units, longest first so the pattern reads them whole.
const DURATION_UNITS: &str = "nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|\
    minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y";

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let number_and_unit = format!("[0-9]+(\\.[0-9]+)?\\s*({DURATION_UNITS})");
        json_schema!({
            "type": "string",
            "description": "A duration: numbers with units, combinable (`250ms`, `10s`, `15m`, `1h30m`, `30d`).",
            "pattern": text_pattern(&format!("\\s*({number_and_unit}\\s*)+")),
            "examples": ["250ms", "10s", "1h30m"],
        })
    }
}

/// A byte size: `KiB/MiB/GiB` (binary), `KB/MB/GB` (decimal), `B` or a bare integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid size {text:?} (use e.g. 64KiB, 10MiB, 1GB or a number of bytes)"))?;
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {text:?} (KiB, MiB, GiB, KB, MB, GB or B)"
                ))
            }
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 10MiB or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl Serialize for ByteSize {
    /// The largest binary unit that divides the size, else bytes as a number.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let unit = [(30, "GiB"), (20, "MiB"), (10, "KiB")]
            .into_iter()
            .find(|(shift, _)| self.0 != 0 && self.0.is_multiple_of(1 << shift));
        match unit {
            Some((shift, unit)) => serializer.collect_str(&format_args!("{}{unit}", self.0 >> shift)),
            None => serializer.serialize_u64(self.0),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: a number of bytes, or a number with KiB, MiB, GiB (1024), KB, MB, GB (1000) or B.",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": text_pattern("\\s*[0-9]+\\s*(KiB|MiB|GiB|KB|kB|MB|GB|B)?\\s*")},
            ],
            "examples": ["64KiB", "10MiB", 4096],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(65536)));
        assert_eq!(ByteSize::parse("10MiB"), Ok(ByteSize(10 << 20)));
        assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10_000_000)));
        assert_eq!(ByteSize::parse("123"), Ok(ByteSize(123)));
        assert!(ByteSize::parse("10 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
    }

    #[test]
    fn durations() {
        let d: HumanDuration = serde_saphyr::from_str("1h30m").unwrap();
        assert_eq!(d.0, Duration::from_secs(5400));
        let d: HumanDuration = serde_saphyr::from_str("250ms").unwrap();
        assert_eq!(d.0, Duration::from_millis(250));
        assert!(serde_saphyr::from_str::<HumanDuration>("soon").is_err());
    }
}
