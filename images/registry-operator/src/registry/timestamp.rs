//! A point in time as the scan core reports it: RFC 3339 in UTC to the second, the form
//! Kubernetes uses for its own times, so a status reads the same everywhere.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// Whole seconds only: what a status can hold, so a value survives a round trip unchanged.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self::from_unix(at.timestamp()).unwrap_or(Self(at))
    }

    /// `None` outside chrono's range (a registry's made-up number must not panic).
    pub fn from_unix(seconds: i64) -> Option<Self> {
        Utc.timestamp_opt(seconds, 0).single().map(Self)
    }

    pub fn from_unix_millis(millis: i64) -> Option<Self> {
        Self::from_unix(millis.div_euclid(1000))
    }

    /// RFC 3339 with any offset and fraction (what registries and image configs write);
    /// `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| Self::from_datetime(t.with_timezone(&Utc)))
    }

    /// `Some` when the time can be a real event's: after the Unix epoch (0 and earlier are
    /// what reproducible builds and unset fields write) and before the year 10000 (which RFC
    /// 3339, and so a status, cannot hold).
    pub fn meaningful(self) -> Option<Self> {
        const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        (1..=LAST).contains(&self.unix()).then_some(self)
    }

    pub fn unix(self) -> i64 {
        self.0.timestamp()
    }

    pub fn datetime(self) -> DateTime<Utc> {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 date-time"))
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_second_in_utc() {
        let t = Timestamp::parse("2024-03-01T12:30:45.123456+02:00").unwrap();
        assert_eq!(t.to_string(), "2024-03-01T10:30:45Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn refuses_what_is_not_a_time_and_numbers_out_of_range() {
        assert_eq!(Timestamp::parse("yesterday"), None);
        assert_eq!(Timestamp::from_unix(i64::MAX), None);
        assert_eq!(Timestamp::from_unix_millis(i64::MIN), None);
        assert_eq!(
            Timestamp::from_unix_millis(1_700_000_000_999)
                .unwrap()
                .unix(),
            1_700_000_000
        );
    }

    #[test]
    fn only_times_after_the_epoch_and_before_the_year_10000_are_meaningful() {
        let at = |s: i64| Timestamp::from_unix(s).and_then(Timestamp::meaningful);
        assert_eq!(at(0), None, "the epoch is what reproducible builds write");
        assert_eq!(at(-1), None);
        assert!(at(1).is_some());
        assert!(at(253_402_300_799).is_some());
        assert_eq!(at(253_402_300_800), None, "year 10000");
        assert_eq!(
            Timestamp::parse("0001-01-01T00:00:00Z").and_then(Timestamp::meaningful),
            None
        );
    }
}
