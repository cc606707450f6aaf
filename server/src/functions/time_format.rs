//! Parsing text with Java `DateTimeFormatter` patterns, as ksqlDB's `TIMESTAMP_FORMAT`,
//! `STRINGTODATE`, `PARSE_DATE`, `STRINGTOTIMESTAMP` and `PARSE_TIMESTAMP` use them.
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
                if !"yuMdDHhmsSXxZa".contains(c) {
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
        let offset = fields.offset_minutes.unwrap_or(default_offset_minutes);
        let seconds =
            days * 86_400 + hour * 3_600 + fields.minute * 60 + fields.second - offset * 60;
        seconds * 1_000 + fields.millis
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
        'X' | 'x' | 'Z' => {
            if letter == 'X'
                && let Some(rest) = text.strip_prefix('Z')
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
