//! `minAge`: a duration such as `24h`, `90m`, `1h30m`, `7d` (Go's duration units `s`, `m`,
//! `h`, plus `d` for days; whole numbers).

use std::time::Duration;

/// Longest `minAge` accepted: ten years, far past any release cadence.
const MAX_MIN_AGE: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

pub fn parse_min_age(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "minAge {text:?} is not a duration: use whole numbers with s, m, h or d, e.g. 24h, 90m, 1h30m, 7d"
        )
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut parts = 0;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let n: u64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        parts += 1;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(invalid)?;
    }
    if parts == 0 || !digits.is_empty() {
        return Err(invalid());
    }
    let age = Duration::from_secs(total);
    if age > MAX_MIN_AGE {
        return Err(format!("minAge {text:?} is longer than ten years"));
    }
    Ok(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go_with_days() {
        assert_eq!(parse_min_age("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_min_age("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_min_age("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_min_age("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_min_age("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "24",
            "h",
            "1.5h",
            "-1h",
            "1w",
            "1h 30m",
            "99999999999999999999s",
            "4000d",
        ] {
            assert!(parse_min_age(bad).is_err(), "{bad:?}");
        }
    }
}
