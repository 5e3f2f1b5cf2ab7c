//! Python's `repr()` of a float, written without Python: the recorder
//! renders the floats inside containers with it, and the writer the floats
//! a batch holds as numbers ([`crate::Values::push_float`]) — a variable or
//! returned value that is a float (unless the recorder has its text at
//! hand) is stored as its 8 bytes while recording and becomes this text on
//! the writer's thread, off the recorded program's.

/// `repr(value)` for a float: the shortest digits that
/// read back as the same float (as Rust's `{:e}` gives them), laid out as
/// CPython does — exponent form when the decimal point would sit more than
/// 16 digits right or 4 left of the first digit, else fixed with at least
/// one decimal (`1e-05`, `1e+16`, `0.0001`, `100.0`).
pub fn push_float_repr(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("nan");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value < 0.0 { "-inf" } else { "inf" });
        return;
    }
    if value.is_sign_negative() {
        out.push('-');
    }
    // The shortest round-trip digits (Żmij, a Schubfach descendant: the
    // same digits as Ryū at about half its instructions), then CPython's
    // layout.
    let mut digits_buffer = zmij::Buffer::new();
    let text = digits_buffer.format_finite(value.abs());
    if (1e-4..1e16).contains(&value.abs()) {
        // Where CPython writes the digits without an exponent Żmij does
        // too, and alike (`0.0001`, `1.5`, `123.0`): no relayout. (Both
        // write an exponent only when the decimal point sits more than 16
        // places right or 4 left of the first digit.)
        debug_assert!(!text.contains('e'), "{text}");
        out.push_str(text);
        return;
    }
    let (digits, point) = shortest_digits(text.as_bytes());
    let digits = &digits.bytes[..digits.len];
    // Whole slices, not one char at a time.
    let push = |out: &mut String, bytes: &[u8]| {
        // SAFETY: Żmij writes ASCII only, and `shortest_digits` keeps a
        // subset of its bytes.
        out.push_str(unsafe { std::str::from_utf8_unchecked(bytes) });
    };
    if !(-4 < point && point <= 16) {
        push(out, &digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            push(out, &digits[1..]);
        }
        let exponent = point - 1;
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        // At least two digits, as CPython writes them (`1e-05`, `5e-324`).
        let exponent = exponent.unsigned_abs();
        if exponent >= 100 {
            out.push(char::from(b'0' + (exponent / 100) as u8));
        }
        out.push(char::from(b'0' + (exponent / 10 % 10) as u8));
        out.push(char::from(b'0' + (exponent % 10) as u8));
    } else if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        push(out, digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            push(out, digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
            out.push_str(".0");
        } else {
            push(out, &digits[..point]);
            out.push('.');
            push(out, &digits[point..]);
        }
    }
}

/// Up to 17 significant digits, without leading or trailing zeros.
#[derive(Default)]
struct Digits {
    bytes: [u8; 24],
    len: usize,
}

/// The significant digits of a positive number as Żmij prints it
/// (`1234.5`, `0.00012`, `1e+30`, `1.234e-7`, `12340000000.0`), and the
/// position of the decimal point relative to the first digit (`1234.5` ->
/// 4, `0.00012` -> -3).
fn shortest_digits(text: &[u8]) -> (Digits, i32) {
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (
            &text[..e],
            std::str::from_utf8(&text[e + 1..])
                .ok()
                .and_then(|x| x.parse::<i32>().ok())
                .unwrap_or(0),
        ),
        None => (text, 0),
    };
    let mut digits = Digits::default();
    let mut point = None;
    let mut leading_zeros = 0i32;
    for &b in mantissa {
        if b == b'.' {
            point = Some(digits.len as i32 + leading_zeros);
        } else if b == b'0' && digits.len == 0 {
            leading_zeros += 1;
        } else if digits.len < digits.bytes.len() {
            digits.bytes[digits.len] = b;
            digits.len += 1;
        }
    }
    while digits.len > 1 && digits.bytes[digits.len - 1] == b'0' {
        digits.len -= 1;
    }
    if digits.len == 0 {
        digits.bytes[0] = b'0';
        digits.len = 1;
        return (digits, 1);
    }
    let integer_places = point.unwrap_or(digits.len as i32 + leading_zeros);
    (digits, integer_places - leading_zeros + exponent)
}

#[cfg(test)]
mod tests {
    use super::push_float_repr;

    #[test]
    fn floats_render_as_python_does() {
        for (value, text) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000012345, "1.2345e-05"),
            (5e-324, "5e-324"),
            (1e100, "1e+100"),
            (-2.2250738585072014e-308, "-2.2250738585072014e-308"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (-f64::NAN, "nan"),
        ] {
            let mut out = String::new();
            push_float_repr(&mut out, value);
            assert_eq!(out, text, "{value:e}");
        }
    }
}
