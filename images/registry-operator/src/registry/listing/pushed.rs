//! Push times as the vendors' listing APIs write them (RFC 3339 text, Unix seconds, Unix
//! milliseconds as a number or as text). A value of another type, out of range or not a time
//! is no push time: never an error that would fail the page, and never kept in full.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::registry::Timestamp;

/// Longer text is no time any vendor writes (RFC 3339 with nanoseconds and an offset is 35).
const MAX_TEXT: usize = 64;

/// A field as it arrived, as far as a time can be read from it.
enum Raw {
    Text(String),
    Number(i64),
    Nothing,
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a time")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(if v.len() <= MAX_TEXT {
            Raw::Text(v.to_string())
        } else {
            Raw::Nothing
        })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Number(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::Nothing, Raw::Number))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Raw, E> {
        Ok(Raw::Nothing)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Raw, E> {
        Ok(Raw::Nothing)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Nothing)
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Nothing)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Nothing)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Nothing)
    }
}

fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
    d.deserialize_any(RawVisitor)
}

/// RFC 3339 text (Docker Hub's `tag_last_pushed`, Harbor's `push_time`, ACR's
/// `lastUpdateTime`).
pub(super) fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    Ok(match raw(d)? {
        Raw::Text(t) => Timestamp::parse(&t).and_then(Timestamp::meaningful),
        _ => None,
    })
}

/// Unix seconds, a number (Quay's `start_ts`).
pub(super) fn unix_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    Ok(match raw(d)? {
        Raw::Number(n) => Timestamp::from_unix(n).and_then(Timestamp::meaningful),
        _ => None,
    })
}

/// Unix milliseconds, as text (GCR) or a number (Artifact Registry): `timeUploadedMs`.
pub(super) fn unix_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let millis = match raw(d)? {
        Raw::Number(n) => Some(n),
        Raw::Text(t) => t.trim().parse::<i64>().ok(),
        Raw::Nothing => None,
    };
    Ok(millis
        .and_then(Timestamp::from_unix_millis)
        .and_then(Timestamp::meaningful))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Fields {
        #[serde(default, deserialize_with = "rfc3339")]
        text: Option<Timestamp>,
        #[serde(default, deserialize_with = "unix_seconds")]
        seconds: Option<Timestamp>,
        #[serde(default, deserialize_with = "unix_millis")]
        millis: Option<Timestamp>,
    }

    fn parse(json: &str) -> (Option<String>, Option<String>, Option<String>) {
        let f: Fields = serde_json::from_str(json).unwrap();
        let s = |t: Option<Timestamp>| t.map(|t| t.to_string());
        (s(f.text), s(f.seconds), s(f.millis))
    }

    #[test]
    fn each_vendor_format_reads_as_the_same_second() {
        let at = Some("2024-06-18T19:39:13Z".to_string());
        assert_eq!(
            parse(
                r#"{"text":"2024-06-18T19:39:13.0856539Z","seconds":1718739553,"millis":"1718739553123"}"#
            ),
            (at.clone(), at.clone(), at.clone())
        );
        assert_eq!(
            parse(r#"{"millis":1718739553999}"#).2,
            at,
            "AR sends a number"
        );
    }

    #[test]
    fn anything_else_is_no_time_and_not_an_error() {
        let none = (None, None, None);
        for json in [
            r#"{"text":"yesterday","seconds":"1718739553","millis":"soon"}"#,
            r#"{"text":1718739553,"seconds":1.5e300,"millis":-5}"#,
            r#"{"text":null,"seconds":null,"millis":null}"#,
            r#"{"text":{"a":[1,2,{"b":3}]},"seconds":[1,2],"millis":true}"#,
            r#"{"text":"0001-01-01T00:00:00Z","seconds":0,"millis":"0"}"#,
            r#"{"seconds":99999999999999999999,"millis":"9223372036854775807"}"#,
            r#"{"seconds":-9223372036854775808,"millis":-9223372036854775808}"#,
            r#"{}"#,
        ] {
            assert_eq!(parse(json), none, "{json}");
        }
        let long = format!(
            r#"{{"text":"2024-06-18T19:39:13{}Z"}}"#,
            "0".repeat(1 << 20)
        );
        assert_eq!(parse(&long), none, "a megabyte of digits is not kept");
    }
}
