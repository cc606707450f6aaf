//! Exact DECIMAL text ↔ Arrow's `i128` unscaled values, rounding HALF_UP as Java's
//! `BigDecimal.setScale` does in ksqlDB.
//!
//! Entry points: [`parse_decimal`], [`format_decimal`], [`push_decimal`].

/// Parses `12.365`, `-0.5`, `1.2E3` or `7` into an unscaled value with `scale` fraction
/// digits, refusing values that need more than `precision` digits.
pub fn parse_decimal(text: &str, precision: u8, scale: u8) -> Result<i128, String> {
    let text = text.trim();
    let invalid = || format!("'{text}' is not a valid decimal number");
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (
            &unsigned[..at],
            unsigned[at + 1..].parse::<i32>().map_err(|_| invalid())?,
        ),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    // digits × 10^(exponent - fraction.len()), as digits with a shift to `scale`.
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let digits = digits.trim_start_matches('0');
    let shift = i64::from(scale) + i64::from(exponent) - fraction.len() as i64;
    let too_large = || format!("'{text}' does not fit DECIMAL({precision}, {scale})");
    let mut unscaled: i128 = 0;
    let kept = if shift >= 0 {
        digits.len()
    } else {
        digits.len().saturating_sub((-shift) as usize)
    };
    for digit in digits[..kept].bytes() {
        unscaled = unscaled
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    if shift > 0 {
        for _ in 0..shift {
            unscaled = unscaled.checked_mul(10).ok_or_else(too_large)?;
        }
    } else if shift < 0 && kept < digits.len() {
        // Round HALF_UP on the first dropped digit.
        if digits.as_bytes()[kept] >= b'5' {
            unscaled = unscaled.checked_add(1).ok_or_else(too_large)?;
        }
    }
    if unscaled >= 10i128.pow(u32::from(precision)) {
        return Err(too_large());
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// `123650` with scale 4 is `12.3650`.
pub fn format_decimal(unscaled: i128, scale: u8) -> String {
    let mut text = String::new();
    push_decimal(&mut text, unscaled, scale);
    text
}

/// Appends what [`format_decimal`] gives to `out`, without allocating.
pub fn push_decimal(out: &mut String, unscaled: i128, scale: u8) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(unscaled.unsigned_abs());
    if unscaled < 0 {
        out.push('-');
    }
    let scale = usize::from(scale);
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() <= scale {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    } else {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        out.push_str(whole);
        out.push('.');
        out.push_str(fraction);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rescales_exactly() {
        assert_eq!(parse_decimal("12.365", 6, 4), Ok(123_650));
        assert_eq!(parse_decimal("12.0", 6, 4), Ok(120_000));
        assert_eq!(parse_decimal("-0.5", 3, 2), Ok(-50));
        assert_eq!(parse_decimal("7", 3, 0), Ok(7));
        assert_eq!(parse_decimal("1.2E3", 6, 1), Ok(12_000));
        assert_eq!(parse_decimal(".5", 2, 1), Ok(5));
        assert_eq!(parse_decimal("0.125", 3, 2), Ok(13), "HALF_UP");
        assert_eq!(
            parse_decimal("-0.125", 3, 2),
            Ok(-13),
            "HALF_UP away from zero"
        );
    }

    #[test]
    fn refuses_what_does_not_fit_or_is_not_a_number() {
        assert!(parse_decimal("123.45", 4, 2).is_err());
        assert!(parse_decimal("abc", 4, 2).is_err());
        assert!(parse_decimal("", 4, 2).is_err());
        assert!(parse_decimal("1.2.3", 4, 2).is_err());
        assert!(parse_decimal("1e999", 38, 0).is_err());
    }

    #[test]
    fn formats_with_the_scale() {
        assert_eq!(format_decimal(123_650, 4), "12.3650");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(7, 0), "7");
        assert_eq!(format_decimal(0, 3), "0.000");
    }
}
