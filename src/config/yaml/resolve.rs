//! What a plain (unquoted) scalar means, by the YAML 1.2 core schema as
//! serde_yaml read it: `~`/`null`/empty, `true`/`false`, integers (decimal,
//! `0x`, `0o`, `0b`), floats (`1.5`, `1e3`, `.inf`, `.nan`); anything else
//! is a string. Quoted and block scalars are always strings.

/// A plain scalar's typed value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(&'a str),
}

/// Types the text of a plain scalar.
pub fn resolve(text: &str) -> Resolved<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Resolved::Null,
        "true" | "True" | "TRUE" => Resolved::Bool(true),
        "false" | "False" | "FALSE" => Resolved::Bool(false),
        _ => integer(text).or_else(|| float(text)).unwrap_or(Resolved::Str(text)),
    }
}

fn integer(text: &str) -> Option<Resolved<'static>> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (digits, radix) = if let Some(hex) = unsigned.strip_prefix("0x") {
        (hex, 16)
    } else if let Some(octal) = unsigned.strip_prefix("0o") {
        (octal, 8)
    } else if let Some(binary) = unsigned.strip_prefix("0b") {
        (binary, 2)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        // `0755` is not an octal number in YAML 1.2, and not a decimal one
        // either: serde_yaml kept it a string, and so does keygate.
        return None;
    } else {
        (unsigned, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        0i64.checked_sub_unsigned(magnitude).map(Resolved::Signed)
    } else {
        Some(Resolved::Unsigned(magnitude))
    }
}

fn float(text: &str) -> Option<Resolved<'static>> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Some(Resolved::Float(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }))
        }
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == text.len() => return Some(Resolved::Float(f64::NAN)),
        _ => {}
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    // Digits alone are an integer or (`0755`) a string, never a float.
    let shaped = mantissa.contains('.') || exponent.is_some();
    let mantissa_ok =
        shaped && all_digits(whole) && all_digits(fraction) && (!whole.is_empty() || !fraction.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    if !(mantissa_ok && exponent_ok) {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Resolved::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Resolved::*;

    #[test]
    fn core_schema() {
        for (text, want) in [
            ("", Null),
            ("~", Null),
            ("NULL", Null),
            ("nUll", Str("nUll")),
            ("True", Bool(true)),
            ("yes", Str("yes")),
            ("8080", Unsigned(8080)),
            ("+5", Unsigned(5)),
            ("-0x10", Signed(-16)),
            ("0o17", Unsigned(15)),
            ("0b101", Unsigned(5)),
            ("0755", Str("0755")),
            ("1_000", Str("1_000")),
            ("0x", Str("0x")),
            ("18446744073709551615", Unsigned(u64::MAX)),
            ("-9223372036854775809", Str("-9223372036854775809")),
            ("1.5", Float(1.5)),
            ("1.", Float(1.0)),
            (".5", Float(0.5)),
            ("1e3", Float(1000.0)),
            ("-.inf", Float(f64::NEG_INFINITY)),
            ("1e", Str("1e")),
            ("1.5e400", Str("1.5e400")),
            ("3.0.3", Str("3.0.3")),
            ("2024-01-01", Str("2024-01-01")),
            ("10s", Str("10s")),
        ] {
            assert_eq!(resolve(text), want, "{text:?}");
        }
        assert!(matches!(resolve(".NaN"), Float(f) if f.is_nan()));
        assert_eq!(resolve("-.nan"), Str("-.nan"));
    }
}
