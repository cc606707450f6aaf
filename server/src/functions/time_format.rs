//! Parsing and formatting text with Java `DateTimeFormatter` patterns, as ksqlDB's
//! `TIMESTAMP_FORMAT`, `STRINGTODATE`, `PARSE_DATE`, `STRINGTOTIMESTAMP`, `PARSE_TIMESTAMP`,
//! `TIMESTAMPTOSTRING`, `FORMAT_TIMESTAMP`, `DATETOSTRING` and `FORMAT_DATE` use them.
//!
//! Formatting also knows `E` (day names), `k`/`K` (other hour ranges), `z` (the zone's
//! abbreviation) and `VV` (its id); zones are fixed offsets or IANA ids ([`Zone::parse`]).
//!
//! Supported letters: `y`/`u` (year; `yy` is 2000–2099), `M` (month, numeric or `MMM`
//! names), `d`, `D` (day of year), `H`, `h` with `a`, `m`, `s`, `S` (fraction), `X`/`x`/`Z`
//! (zone offsets), `'quoted text'` and any other character as itself. Entry point:
//! [`TimePattern::compile`]; fixed zone offsets (`+05:30`, `UTC-3`) read with
//! [`zone_offset_minutes`].

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimePattern {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// A field letter and how many times it was written.
    Field(char, usize),
}

/// What a parse found; absent fields take their defaults (1970-01-01T00:00 UTC).
#[derive(Debug, Default)]
struct Fields {
    year: Option<i64>,
    month: Option<i64>,
    day: Option<i64>,
    day_of_year: Option<i64>,
    hour: i64,
    pm: Option<bool>,
    minute: i64,
    second: i64,
    millis: i64,
    offset_minutes: Option<i64>,
    /// A zone named in the text (`z`): its rules give the offset.
    zone: Option<chrono_tz::Tz>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

impl TimePattern {
    pub fn compile(pattern: &str) -> Result<TimePattern, String> {
        let mut parts = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            text.push('\'');
                        }
                        Some('\'') => break,
                        Some(other) => text.push(other),
                        None => return Err(format!("Unterminated quote in pattern '{pattern}'")),
                    }
                }
                if text.is_empty() {
                    text.push('\'');
                }
                parts.push(Part::Literal(text));
            } else if c.is_ascii_alphabetic() {
                if !"yuMdDHhmsSXxZaEzkKV".contains(c) {
                    return Err(format!("Unknown pattern letter: {c}"));
                }
                let mut count = 1;
                while chars.peek() == Some(&c) {
                    chars.next();
                    count += 1;
                }
                parts.push(Part::Field(c, count));
            } else {
                parts.push(Part::Literal(c.to_string()));
            }
        }
        Ok(TimePattern { parts })
    }

    /// Epoch milliseconds of `text`, read in `default_offset_minutes` when the pattern has
    /// no zone.
    pub fn parse_millis(&self, text: &str, default_offset_minutes: i64) -> Result<i64, String> {
        let fields = self.parse_fields(text, false)?;
        Ok(self.millis_of(&fields, default_offset_minutes))
    }

    /// Epoch milliseconds of a time `text`, read in `zone` unless the text names its own
    /// zone or offset.
    pub fn parse_millis_in(&self, text: &str, zone: Zone) -> Result<i64, String> {
        let fields = self.parse_fields(text, false)?;
        let millis = self.millis_of(&fields, 0);
        if fields.zone.is_some() || fields.offset_minutes.is_some() {
            return Ok(millis);
        }
        zone.convert_local(millis, Zone::UTC)
            .ok_or_else(|| format!("Text '{text}' is out of range"))
    }

    fn millis_of(&self, fields: &Fields, default_offset_minutes: i64) -> i64 {
        let days = match (fields.day_of_year, fields.month, fields.day) {
            (Some(day_of_year), None, None) => {
                days_from_civil(fields.year.unwrap_or(1970), 1, 1) + day_of_year - 1
            }
            (_, month, day) => days_from_civil(
                fields.year.unwrap_or(1970),
                month.unwrap_or(1),
                day.unwrap_or(1),
            ),
        };
        let hour = match fields.pm {
            Some(pm) => fields.hour % 12 + if pm { 12 } else { 0 },
            None => fields.hour,
        };
        let local_seconds = days * 86_400 + hour * 3_600 + fields.minute * 60 + fields.second;
        let local_millis = local_seconds * 1_000 + fields.millis;
        if let Some(zone) = fields.zone
            && let Some(utc) = Zone::Named(zone).convert_local(local_millis, Zone::UTC)
        {
            return utc;
        }
        let offset = fields.offset_minutes.unwrap_or(default_offset_minutes);
        local_millis - offset * 60_000
    }

    /// Days since the epoch of a date `text`. Text after the date is ignored, as ksqlDB's
    /// date functions ignore it.
    pub fn parse_days(&self, text: &str) -> Result<i64, String> {
        let fields = self.parse_fields(text, true)?;
        Ok(self.millis_of(&fields, 0).div_euclid(86_400_000))
    }

    fn parse_fields(&self, text: &str, allow_trailing: bool) -> Result<Fields, String> {
        let bad = || format!("Text '{text}' could not be parsed");
        let mut fields = Fields::default();
        let mut rest = text;
        for (index, part) in self.parts.iter().enumerate() {
            match part {
                Part::Literal(literal) => {
                    rest = rest.strip_prefix(literal.as_str()).ok_or_else(bad)?;
                }
                Part::Field(letter, count) => {
                    // A numeric field followed directly by another numeric field takes
                    // exactly its width (`yyyyMMdd`).
                    let adjacent = matches!(self.parts.get(index + 1), Some(Part::Field(..)));
                    rest =
                        read_field(*letter, *count, adjacent, rest, &mut fields).ok_or_else(bad)?;
                }
            }
        }
        if !rest.is_empty() && !allow_trailing {
            return Err(bad());
        }
        let valid = fields.month.is_none_or(|m| (1..=12).contains(&m))
            && fields.day.is_none_or(|d| (1..=31).contains(&d))
            && (0..=23).contains(&fields.hour)
            && (0..=59).contains(&fields.minute)
            && (0..=59).contains(&fields.second);
        if !valid {
            return Err(bad());
        }
        Ok(fields)
    }
}

/// Reads one field from the front of `text`, returning what is left.
fn read_field<'t>(
    letter: char,
    count: usize,
    adjacent: bool,
    text: &'t str,
    fields: &mut Fields,
) -> Option<&'t str> {
    let number = |min: usize, max: usize| -> Option<(i64, &'t str)> {
        let max = if adjacent { min.max(count) } else { max };
        let digits = text
            .bytes()
            .take(max)
            .take_while(u8::is_ascii_digit)
            .count();
        if digits < min {
            return None;
        }
        Some((text[..digits].parse().ok()?, &text[digits..]))
    };
    match letter {
        'y' | 'u' if count == 2 => {
            let (year, rest) = number(2, 2)?;
            fields.year = Some(2000 + year);
            Some(rest)
        }
        'y' | 'u' => {
            let (year, rest) = number(count, 9)?;
            fields.year = Some(year);
            Some(rest)
        }
        'M' if count >= 3 => {
            let lower = text.to_ascii_lowercase();
            let month = MONTHS.iter().position(|m| lower.starts_with(m))?;
            fields.month = Some(month as i64 + 1);
            // `MMMM` is the full name: skip the letters after the abbreviation.
            let len = if count >= 4 {
                3 + text[3..]
                    .bytes()
                    .take_while(u8::is_ascii_alphabetic)
                    .count()
            } else {
                3
            };
            Some(&text[len..])
        }
        'M' => number(count, 2).map(|(v, rest)| {
            fields.month = Some(v);
            rest
        }),
        'd' => number(count, 2).map(|(v, rest)| {
            fields.day = Some(v);
            rest
        }),
        'D' => number(count, 3).map(|(v, rest)| {
            fields.day_of_year = Some(v);
            rest
        }),
        'H' | 'h' => number(count, 2).map(|(v, rest)| {
            fields.hour = v;
            rest
        }),
        'm' => number(count, 2).map(|(v, rest)| {
            fields.minute = v;
            rest
        }),
        's' => number(count, 2).map(|(v, rest)| {
            fields.second = v;
            rest
        }),
        'S' => {
            let (value, rest) = number(count, 9)?;
            let digits = text.len() - rest.len();
            // A fraction of a second, to milliseconds.
            fields.millis = match digits {
                0..=3 => value * 10i64.pow(3 - digits as u32),
                _ => value / 10i64.pow(digits as u32 - 3),
            };
            Some(rest)
        }
        'a' => {
            let lower = text.get(..2)?.to_ascii_lowercase();
            fields.pm = Some(match lower.as_str() {
                "am" => false,
                "pm" => true,
                _ => return None,
            });
            Some(&text[2..])
        }
        'z' => {
            let length = text
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/_+-".contains(c)))
                .unwrap_or(text.len());
            fields.zone = Some(zone_named(&text[..length])?);
            Some(&text[length..])
        }
        'X' | 'x' | 'Z' => {
            if letter == 'X'
                && let Some(rest) = text.strip_prefix(['Z', 'z'])
            {
                fields.offset_minutes = Some(0);
                return Some(rest);
            }
            let sign = match text.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let body = &text[1..];
            let hours: i64 = body.get(..2)?.parse().ok()?;
            let mut rest = &body[2..];
            let mut minutes = 0;
            let colon = rest.strip_prefix(':');
            if let Some(after) = colon.or(Some(rest))
                && after.len() >= 2
                && after.as_bytes()[..2].iter().all(u8::is_ascii_digit)
            {
                minutes = after[..2].parse().ok()?;
                rest = &after[2..];
            }
            fields.offset_minutes = Some(sign * (hours * 60 + minutes));
            Some(rest)
        }
        _ => None,
    }
}

/// The zone a text names, as Java reads zone names: an IANA id, or an abbreviation of the
/// zone that uses it (`PST` is Los Angeles, with its summer time).
fn zone_named(name: &str) -> Option<chrono_tz::Tz> {
    use chrono_tz::Tz;
    Some(match name.to_ascii_uppercase().as_str() {
        "UTC" | "GMT" | "UT" | "Z" => Tz::UTC,
        "PST" | "PDT" | "PT" => Tz::America__Los_Angeles,
        "MST" | "MDT" | "MT" => Tz::America__Denver,
        "CST" | "CDT" | "CT" => Tz::America__Chicago,
        "EST" | "EDT" | "ET" => Tz::America__New_York,
        "BST" => Tz::Europe__London,
        "CET" | "CEST" => Tz::Europe__Paris,
        _ => return name.parse().ok(),
    })
}

/// A time zone: a fixed offset, or an IANA zone with its rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Fixed(chrono::FixedOffset),
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `UTC`, `GMT`, `Z`, offsets such as `+05:30` or `UTC-3`, or an IANA id such as
    /// `America/Los_Angeles`; `None` for anything else.
    pub fn parse(zone: &str) -> Option<Zone> {
        if let Some(minutes) = zone_offset_minutes(zone) {
            let offset = chrono::FixedOffset::east_opt(i32::try_from(minutes * 60).ok()?)?;
            return Some(Zone::Fixed(offset));
        }
        zone.trim().parse::<chrono_tz::Tz>().ok().map(Zone::Named)
    }

    pub const UTC: Zone = Zone::Named(chrono_tz::Tz::UTC);

    /// A wall-clock time of this zone (epoch milliseconds as if it were UTC) as the wall
    /// clock of `to` reads it at that instant (`CONVERT_TZ`). A time skipped by a
    /// daylight-saving change reads as the hour after; a repeated one as its first.
    pub fn convert_local(self, millis: i64, to: Zone) -> Option<i64> {
        use chrono::TimeZone;
        let local = chrono::DateTime::from_timestamp_millis(millis)?.naive_utc();
        let instant = match self {
            Zone::Fixed(offset) => offset.from_local_datetime(&local).earliest()?.to_utc(),
            Zone::Named(tz) => match tz.from_local_datetime(&local).earliest() {
                Some(at) => at.to_utc(),
                None => tz
                    .from_local_datetime(&(local + chrono::Duration::hours(1)))
                    .earliest()?
                    .to_utc(),
            },
        };
        let civil = Civil::of(instant.timestamp_millis(), to)?;
        Some(civil.local.and_utc().timestamp_millis())
    }
}

/// The calendar fields of an instant in a zone, as formatting reads them.
struct Civil {
    local: chrono::NaiveDateTime,
    offset_seconds: i32,
    utc: chrono::NaiveDateTime,
    zone: Zone,
}

impl Civil {
    fn of(millis: i64, zone: Zone) -> Option<Civil> {
        use chrono::{Offset, TimeZone};
        let utc = chrono::DateTime::from_timestamp_millis(millis)?.naive_utc();
        let offset_seconds = match zone {
            Zone::Fixed(offset) => offset.local_minus_utc(),
            Zone::Named(tz) => tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
        };
        let local = utc.checked_add_signed(chrono::Duration::seconds(offset_seconds.into()))?;
        Some(Civil {
            local,
            offset_seconds,
            utc,
            zone,
        })
    }

    /// The zone's name at this instant (`z`): `BST`, or the offset of a fixed zone.
    fn push_abbreviation(&self, out: &mut String) {
        use chrono::TimeZone;
        use chrono_tz::OffsetName;
        match self.zone {
            Zone::Named(tz) => {
                let offset = tz.offset_from_utc_datetime(&self.utc);
                match offset.abbreviation() {
                    Some(abbreviation) => out.push_str(abbreviation),
                    // A zone without names for its offsets writes the offset (`+03`).
                    None => {
                        use std::fmt::Write;
                        let _ = write!(out, "{offset}");
                    }
                }
            }
            Zone::Fixed(_) => out.push_str(&offset_text('x', 3, self.offset_seconds)),
        }
    }

    /// The zone's id (`VV`): `Europe/London`, or the offset of a fixed zone.
    fn push_id(&self, out: &mut String) {
        match self.zone {
            Zone::Named(tz) => out.push_str(tz.name()),
            Zone::Fixed(_) => out.push_str(&offset_text('x', 3, self.offset_seconds)),
        }
    }
}

/// `value` in decimal, zero-padded to `width` characters (a minus sign counting as one).
fn push_padded(out: &mut String, value: i64, width: usize) {
    // The common fields first, each on a path of its own so that a pattern's fields branch
    // the same way on every row: two digits (month, day, hour, minute, second), four (a
    // year), three (milliseconds), one.
    let digit = |value: u32| char::from(b'0' + (value % 10) as u8);
    match (u32::try_from(value), width) {
        (Ok(small @ 0..100), 2) => {
            out.push(digit(small / 10));
            out.push(digit(small));
            return;
        }
        (Ok(small @ 1000..10_000), 1..=4) => {
            out.push(digit(small / 1000));
            out.push(digit(small / 100));
            out.push(digit(small / 10));
            out.push(digit(small));
            return;
        }
        (Ok(small @ 0..1000), 3) => {
            out.push(digit(small / 100));
            out.push(digit(small / 10));
            out.push(digit(small));
            return;
        }
        (Ok(small @ 0..10), 1) => {
            out.push(digit(small));
            return;
        }
        _ => {}
    }
    let mut digits = itoa::Buffer::new();
    let text = digits.format(value.unsigned_abs());
    let mut width = width;
    if value < 0 {
        out.push('-');
        width = width.saturating_sub(1);
    }
    out.extend(std::iter::repeat_n('0', width.saturating_sub(text.len())));
    out.push_str(text);
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl TimePattern {
    /// Epoch milliseconds as text in `zone`.
    pub fn format_millis(&self, millis: i64, zone: Zone) -> Result<String, String> {
        let mut out = String::new();
        self.write_millis(millis, zone, &mut out)?;
        Ok(out)
    }

    /// Epoch milliseconds as text in `zone`, appended to `out`.
    pub fn write_millis(&self, millis: i64, zone: Zone, out: &mut String) -> Result<(), String> {
        let civil =
            Civil::of(millis, zone).ok_or_else(|| format!("Timestamp {millis} is out of range"))?;
        self.write_civil(&civil, out)
    }

    /// Days since the epoch as text (a date: its time fields are midnight, in UTC),
    /// appended to `out`.
    pub fn write_days(&self, days: i64, out: &mut String) -> Result<(), String> {
        self.write_millis(days.saturating_mul(86_400_000), Zone::UTC, out)
    }

    fn write_civil(&self, civil: &Civil, out: &mut String) -> Result<(), String> {
        use chrono::{Datelike, Timelike};
        let at = &civil.local;
        for part in &self.parts {
            let (letter, count) = match part {
                Part::Literal(text) => {
                    match text.as_bytes() {
                        [byte] => out.push(char::from(*byte)),
                        _ => out.push_str(text),
                    }
                    continue;
                }
                Part::Field(letter, count) => (*letter, *count),
            };
            match letter {
                'y' | 'u' if count == 2 => {
                    push_padded(out, i64::from(at.year()).rem_euclid(100), 2)
                }
                'y' | 'u' => push_padded(out, i64::from(at.year()), count),
                'M' => match count {
                    1 | 2 => push_padded(out, i64::from(at.month()), count),
                    3 => out.push_str(&MONTH_NAMES[at.month0() as usize][..3]),
                    _ => out.push_str(MONTH_NAMES[at.month0() as usize]),
                },
                'd' => push_padded(out, i64::from(at.day()), count),
                'D' => push_padded(out, i64::from(at.ordinal()), count),
                'E' => {
                    let day = DAYS[at.weekday().num_days_from_monday() as usize];
                    out.push_str(if count >= 4 { day } else { &day[..3] });
                }
                'a' => out.push_str(if at.hour() < 12 { "AM" } else { "PM" }),
                'H' => push_padded(out, i64::from(at.hour()), count),
                'k' => push_padded(
                    out,
                    i64::from(if at.hour() == 0 { 24 } else { at.hour() }),
                    count,
                ),
                'K' => push_padded(out, i64::from(at.hour() % 12), count),
                'h' => {
                    let hour = at.hour() % 12;
                    push_padded(out, i64::from(if hour == 0 { 12 } else { hour }), count);
                }
                'm' => push_padded(out, i64::from(at.minute()), count),
                's' => push_padded(out, i64::from(at.second()), count),
                'S' => {
                    // The first `count` digits of the fraction of a second.
                    let shown = count.min(9);
                    let nanos = i64::from(at.nanosecond().min(999_999_999));
                    push_padded(out, nanos / 10i64.pow(9 - shown as u32), shown);
                    out.extend(std::iter::repeat_n('0', count.saturating_sub(9)));
                }
                'X' | 'x' | 'Z' => out.push_str(&offset_text(letter, count, civil.offset_seconds)),
                'z' => civil.push_abbreviation(out),
                'V' => civil.push_id(out),
                other => return Err(format!("Unknown pattern letter: {other}")),
            }
        }
        Ok(())
    }
}

/// A zone offset as `X`, `x` and `Z` write it (`X` writes `Z` for zero).
fn offset_text(letter: char, count: usize, seconds: i32) -> String {
    if seconds == 0 && (letter == 'X' || (letter == 'Z' && count == 5)) {
        return "Z".into();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let (hours, minutes) = (seconds.abs() / 3600, seconds.abs() / 60 % 60);
    match (letter, count) {
        ('Z', 4) if seconds == 0 => "GMT".into(),
        ('Z', 4) => format!("GMT{sign}{hours:02}:{minutes:02}"),
        ('Z', 5) | ('X' | 'x', 3) => format!("{sign}{hours:02}:{minutes:02}"),
        ('Z', _) | ('X' | 'x', 2) => format!("{sign}{hours:02}{minutes:02}"),
        (_, 1) if minutes == 0 => format!("{sign}{hours:02}"),
        (_, 1) => format!("{sign}{hours:02}{minutes:02}"),
        _ => format!("{sign}{hours:02}:{minutes:02}"),
    }
}

/// Fixed zones only: `UTC`, `GMT`, `Z` and offsets such as `+05:30` or `UTC-3`.
pub fn zone_offset_minutes(zone: &str) -> Option<i64> {
    let upper = zone.trim().to_ascii_uppercase();
    let offset = ["UTC", "GMT", "Z"]
        .iter()
        .find_map(|prefix| upper.strip_prefix(prefix))
        .unwrap_or(&upper);
    if offset.is_empty() {
        return Some(0);
    }
    let sign = match offset.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = offset[1..].replace(':', "");
    let (hours, minutes) = match body.len() {
        1 | 2 => (body.parse::<i64>().ok()?, 0),
        4 => (
            body[..2].parse::<i64>().ok()?,
            body[2..].parse::<i64>().ok()?,
        ),
        _ => return None,
    };
    Some(sign * (hours * 60 + minutes))
}

/// A DATE, TIME or TIMESTAMP value in ISO-8601 (`2021-03-04`, `16:43:40` or `16:43:40.123`,
/// `2021-03-04T16:43:40.000`), as ksqlDB's `TO_JSON_STRING` writes them.
pub fn iso_text(array: &arrow::array::ArrayRef, ty: &crate::types::SqlType, row: usize) -> String {
    use crate::types::SqlType;
    use arrow::array::AsArray;
    use arrow::datatypes::{Date32Type, Time32MillisecondType, TimestampMillisecondType};
    let at = |millis: i64| chrono::DateTime::from_timestamp_millis(millis).map(|t| t.naive_utc());
    match ty {
        SqlType::Date => {
            let days = array.as_primitive::<Date32Type>().value(row);
            at(i64::from(days) * 86_400_000)
                .map_or_else(String::new, |t| t.format("%Y-%m-%d").to_string())
        }
        SqlType::Time => {
            let millis = array.as_primitive::<Time32MillisecondType>().value(row);
            let pattern = if millis % 1000 == 0 {
                "%H:%M:%S"
            } else {
                "%H:%M:%S%.3f"
            };
            at(i64::from(millis)).map_or_else(String::new, |t| t.format(pattern).to_string())
        }
        _ => {
            let millis = array.as_primitive::<TimestampMillisecondType>().value(row);
            at(millis).map_or_else(String::new, |t| {
                t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
            })
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(pattern: &str, text: &str) -> Result<i64, String> {
        TimePattern::compile(pattern)?.parse_millis(text, 0)
    }

    #[test]
    fn numbers_are_padded_to_their_width() {
        for value in (-120..12_000).chain([99_999, 123_456_789, i64::from(i32::MIN)]) {
            for width in 1..=6 {
                let mut out = String::new();
                push_padded(&mut out, value, width);
                assert_eq!(out, format!("{value:0width$}"), "{value} in {width}");
            }
        }
    }

    #[test]
    fn zone_names_in_the_text_apply_their_rules_and_offsets_read_in_any_case() {
        let pattern = "yyyy-MM-dd'T'HH:mm:ss zzz";
        // PST names Los Angeles, which keeps summer time in May.
        assert_eq!(
            millis(pattern, "2018-05-11T21:58:33 PST"),
            Ok(1_526_101_113_000)
        );
        assert_eq!(
            millis(pattern, "2018-12-11T21:58:33 PST"),
            Ok(1_544_594_313_000)
        );
        assert_eq!(
            millis(pattern, "2018-05-11T21:58:33 UTC"),
            Ok(1_526_075_913_000)
        );
        assert_eq!(
            millis(pattern, "2018-05-11T21:58:33 Europe/Paris"),
            Ok(1_526_068_713_000)
        );
        assert!(millis(pattern, "2018-05-11T21:58:33 Nowhere").is_err());
        let offset = "yyyy-MM-dd'T'HH:mm:ssX";
        assert_eq!(
            millis(offset, "2020-05-11T21:58:33z"),
            Ok(1_589_234_313_000)
        );
        assert_eq!(
            millis(offset, "2020-05-11T21:58:33Z"),
            Ok(1_589_234_313_000)
        );
    }

    fn formatted(pattern: &str, millis: i64, zone: &str) -> String {
        let zone = Zone::parse(zone).expect("a zone");
        TimePattern::compile(pattern)
            .and_then(|p| p.format_millis(millis, zone))
            .expect("formats")
    }

    #[test]
    fn patterns_write_dates_times_and_zones() {
        // ksqlDB's documentation and corpus examples.
        let may_11 = 1_526_075_913_000; // 2018-05-11T21:58:33Z
        assert_eq!(
            formatted("yyyy-MM-dd HH:mm:ss zzz", may_11, "America/Los_Angeles"),
            "2018-05-11 14:58:33 PDT"
        );
        assert_eq!(
            formatted("yyyy-MM-dd HH:mm:ss zzz", may_11, "Europe/London"),
            "2018-05-11 22:58:33 BST"
        );
        assert_eq!(
            formatted("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", may_11 + 7, "UTC"),
            "2018-05-11T21:58:33.007Z"
        );
        assert_eq!(formatted("XXX", may_11, "+05:30"), "+05:30");
        assert_eq!(formatted("Z", may_11, "UTC-3"), "-0300");
        assert_eq!(formatted("x", may_11, "UTC"), "+00");
        assert_eq!(formatted("VV", may_11, "Asia/Tokyo"), "Asia/Tokyo");
        assert_eq!(formatted("EEE, d MMM yy", may_11, "UTC"), "Fri, 11 May 18");
        assert_eq!(formatted("EEEE d MMMM", may_11, "UTC"), "Friday 11 May");
        assert_eq!(formatted("hh:mm a", may_11, "UTC"), "09:58 PM");
        assert_eq!(
            formatted("h 'o''clock' k K D", 0, "UTC"),
            "12 o'clock 24 0 1"
        );
        // Before the epoch, and the zone's rules at that time (PST in January).
        assert_eq!(
            formatted("yyyy-MM-dd HH:mm zzz", -1, "America/Los_Angeles"),
            "1969-12-31 15:59 PST"
        );
        let date = |pattern: &str, days: i64| {
            let mut text = String::new();
            TimePattern::compile(pattern)
                .and_then(|p| p.write_days(days, &mut text))
                .expect("formats");
            text
        };
        assert_eq!(date("yyyy-MM-dd", 17_662), "2018-05-11");
        assert_eq!(date("dd/MM/yyyy", 18_027), "11/05/2019");
        assert_eq!(date("dd-MMM-yyyy", 18_993), "01-Jan-2022");
        assert_eq!(Zone::parse("Mars/Olympus"), None);
        assert!(TimePattern::compile("yyyy-qq").is_err());
    }

    #[test]
    fn patterns_read_dates_times_and_zones() {
        assert_eq!(
            millis("yy-MM-dd HH:mm:ssX", "10-04-19 12:00:17Z"),
            Ok(1_271_678_417_000)
        );
        assert_eq!(
            millis("yyyy-MM-dd'T'HH:mm:ss.SSS", "2018-01-01T00:00:00.001"),
            Ok(1_514_764_800_001)
        );
        assert_eq!(millis("yyyyMMdd", "20200201"), Ok(1_580_515_200_000));
        assert_eq!(
            millis("yyyy-MM-dd HH:mm:ss Z", "2019-01-01 00:00:00 +0445"),
            Ok(1_546_283_700_000)
        );
        assert_eq!(millis("dd-MMM-yyyy", "05-Feb-2021"), Ok(1_612_483_200_000));
        assert_eq!(millis("hh:mm a", "01:30 PM"), Ok(48_600_000));
        assert!(millis("yy-MM-dd HH:mm:ssX", "!!!!!!!!!!!!!!!!!").is_err());
        assert!(millis("yyyy-MM-dd", "2020-13-01").is_err());
        assert!(TimePattern::compile("yyyy-qq").is_err());
    }

    #[test]
    fn dates_count_days_from_the_epoch() {
        let pattern = TimePattern::compile("yyyy-MM-dd").expect("compiles");
        assert_eq!(pattern.parse_days("1970-01-02"), Ok(1));
        assert_eq!(pattern.parse_days("1969-12-31"), Ok(-1));
    }
}
