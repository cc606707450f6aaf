//! Exact DECIMAL text ↔ Arrow's unscaled values (`i128` up to 38 digits, `i256` beyond),
//! rounding HALF_UP as Java's `BigDecimal.setScale` does in ksqlDB.
//!
//! Entry points: [`parse_decimal`], [`parse_wide_decimal`], [`format_decimal`],
//! [`push_decimal_at`].

use arrow::array::{Array, Decimal128Array, Decimal256Array};
use arrow::datatypes::{
    ArrowNativeType, ArrowNativeTypeOp, Decimal128Type, Decimal256Type, DecimalType, i256,
};

/// Parses `12.365`, `-0.5`, `1.2E3` or `7` into an unscaled value with `scale` fraction
/// digits, refusing values that need more than `precision` digits (at most 38).
pub fn parse_decimal(text: &str, precision: u8, scale: u8) -> Result<i128, String> {
    parse_unscaled::<Decimal128Type>(text, precision, scale)
}

/// [`parse_decimal`] for precisions beyond 38 digits.
pub fn parse_wide_decimal(text: &str, precision: u8, scale: u8) -> Result<i256, String> {
    parse_unscaled::<Decimal256Type>(text, precision, scale)
}

fn parse_unscaled<T: DecimalType>(
    text: &str,
    precision: u8,
    scale: u8,
) -> Result<T::Native, String> {
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
    // The significant digits, read in place (a hot path of decoding: no copy per value).
    let leading_zeros = whole
        .bytes()
        .chain(fraction.bytes())
        .take_while(|&b| b == b'0')
        .count();
    let digits = || whole.bytes().chain(fraction.bytes()).skip(leading_zeros);
    let count = whole.len() + fraction.len() - leading_zeros;
    let shift = i64::from(scale) + i64::from(exponent) - fraction.len() as i64;
    let too_large = || format!("'{text}' does not fit DECIMAL({precision}, {scale})");
    let kept = if shift >= 0 {
        count
    } else {
        count.saturating_sub((-shift) as usize)
    };
    let ten = T::Native::usize_as(10);
    let mut unscaled = T::Native::ZERO;
    for digit in digits().take(kept) {
        unscaled = unscaled
            .mul_checked(ten)
            .and_then(|v| v.add_checked(T::Native::usize_as(usize::from(digit - b'0'))))
            .map_err(|_| too_large())?;
    }
    if shift > 0 {
        for _ in 0..shift {
            unscaled = unscaled.mul_checked(ten).map_err(|_| too_large())?;
        }
    } else if shift < 0 && kept < count {
        // Round HALF_UP on the first dropped digit.
        if digits().nth(kept).is_some_and(|digit| digit >= b'5') {
            unscaled = unscaled
                .add_checked(T::Native::ONE)
                .map_err(|_| too_large())?;
        }
    }
    if !T::is_valid_decimal_precision(unscaled, precision) {
        return Err(too_large());
    }
    Ok(if negative {
        unscaled.neg_wrapping()
    } else {
        unscaled
    })
}

/// `123650` with scale 4 is `12.3650`.
pub fn format_decimal(unscaled: i128, scale: u8) -> String {
    let mut text = String::new();
    push_decimal(&mut text, unscaled, scale);
    text
}

/// Appends an unscaled value with `scale` digits after the point (`123650` with scale 4
/// is `12.3650`), without allocating.
fn push_decimal(out: &mut String, unscaled: i128, scale: u8) {
    let mut buffer = itoa::Buffer::new();
    push_digits(
        out,
        unscaled < 0,
        buffer.format(unscaled.unsigned_abs()),
        scale,
    );
}

/// Appends the value at `row` of a DECIMAL column, 128- or 256-bit, with `scale` digits
/// after the point; `None` when the column holds no decimals.
pub fn push_decimal_at(out: &mut String, array: &dyn Array, row: usize, scale: u8) -> Option<()> {
    match array.as_any().downcast_ref::<Decimal256Array>() {
        Some(wide) => push_wide_decimal(out, wide.value(row), scale),
        None => {
            let narrow = array.as_any().downcast_ref::<Decimal128Array>()?;
            push_decimal(out, narrow.value(row), scale);
        }
    }
    Some(())
}

/// [`push_decimal_at`] for a value that keeps a scale of its own, `own_scale` digits after
/// the point, below its column's (`GREATEST(1234567.89, 0.123456)` is `1234567.89` in a
/// `DECIMAL(13, 6)` column). The digits the column added are zeros; should any not be,
/// the value is written whole, at the column's scale.
pub fn push_decimal_at_own_scale(
    out: &mut String,
    array: &dyn Array,
    row: usize,
    column_scale: u8,
    own_scale: u8,
) -> Option<()> {
    let dropped = u32::from(column_scale.saturating_sub(own_scale));
    if dropped == 0 {
        return push_decimal_at(out, array, row, column_scale);
    }
    match array.as_any().downcast_ref::<Decimal256Array>() {
        Some(wide) => {
            let value = wide.value(row);
            match i256::from_i128(10).checked_pow(dropped) {
                Some(divisor) if value.wrapping_rem(divisor) == i256::ZERO => {
                    push_wide_decimal(out, value.wrapping_div(divisor), own_scale)
                }
                _ => push_wide_decimal(out, value, column_scale),
            }
        }
        None => {
            let value = array.as_any().downcast_ref::<Decimal128Array>()?.value(row);
            match 10i128.checked_pow(dropped) {
                Some(divisor) if value % divisor == 0 => {
                    push_decimal(out, value / divisor, own_scale)
                }
                _ => push_decimal(out, value, column_scale),
            }
        }
    }
    Some(())
}

/// [`push_decimal`] for a value of more than 38 digits.
fn push_wide_decimal(out: &mut String, unscaled: i256, scale: u8) {
    let digits = unscaled.wrapping_abs().to_string();
    push_digits(out, unscaled.is_negative(), &digits, scale);
}

/// A value's digits (without sign) written with `scale` of them after the point.
fn push_digits(out: &mut String, negative: bool, digits: &str, scale: u8) {
    if negative {
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
    fn values_are_written_at_their_own_scale() {
        let narrow = Decimal128Array::from(vec![123456780000, -500000, 123456789001, 7])
            .with_precision_and_scale(13, 6)
            .expect("valid");
        let wide = Decimal256Array::from(vec![i256::from_i128(-1_250_000)])
            .with_precision_and_scale(50, 6)
            .expect("valid");
        let written = |array: &dyn Array, row, column_scale, own_scale| {
            let mut out = String::new();
            push_decimal_at_own_scale(&mut out, array, row, column_scale, own_scale)
                .expect("decimals");
            out
        };
        assert_eq!(written(&narrow, 0, 6, 2), "123456.78");
        assert_eq!(written(&narrow, 1, 6, 1), "-0.5");
        assert_eq!(written(&narrow, 3, 6, 6), "0.000007");
        // Digits that are not zeros are never dropped: the column's scale then.
        assert_eq!(written(&narrow, 2, 6, 2), "123456.789001");
        assert_eq!(written(&narrow, 3, 6, 0), "0.000007");
        assert_eq!(written(&wide, 0, 6, 2), "-1.25");
    }

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
        assert!(
            parse_decimal("-999.995", 5, 2).is_err(),
            "rounds past the precision"
        );
    }

    #[test]
    fn wide_decimals_keep_every_digit() {
        let text = "-12345678901234567890.123456789012345678901234567890";
        let value = parse_wide_decimal(text, 50, 30).expect("fits");
        let mut out = String::new();
        push_wide_decimal(&mut out, value, 30);
        assert_eq!(out, text);
        assert!(parse_wide_decimal("1e50", 50, 0).is_err());
        assert_eq!(parse_wide_decimal("0.5", 40, 0), Ok(i256::ONE), "HALF_UP");
    }

    #[test]
    fn formats_with_the_scale() {
        assert_eq!(format_decimal(123_650, 4), "12.3650");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(7, 0), "7");
        assert_eq!(format_decimal(0, 3), "0.000");
    }
}
