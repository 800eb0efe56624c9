//! The Kubernetes resource quantity grammar (`apimachinery/pkg/api/resource`): a signed decimal
//! number and one suffix, binary (`Ki` … `Ei`), decimal SI (`m`, `k`, `M` … `E`) or a decimal
//! exponent (`e3`, `E-2`). `k8s-openapi`'s `Quantity` is only a string, so `lots` would reach the
//! Deployment unchecked.

/// A parsed quantity's value (approximate beyond 2^53, enough to compare requests and limits).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Value(pub f64);

/// Parses `text` as a quantity; `Err` says what is wrong in words a user can act on.
pub fn parse(text: &str) -> Result<Value, String> {
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1.0, &text[1..]),
        Some(b'-') => (-1.0, &text[1..]),
        Some(_) => (1.0, text),
        None => return Err("is empty".into()),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return Err("does not start with a number".into());
    }
    let mantissa: f64 = number
        .parse()
        .map_err(|_| "does not start with a number".to_string())?;
    let scale = match suffix {
        "" => 1.0,
        "Ki" => 2f64.powi(10),
        "Mi" => 2f64.powi(20),
        "Gi" => 2f64.powi(30),
        "Ti" => 2f64.powi(40),
        "Pi" => 2f64.powi(50),
        "Ei" => 2f64.powi(60),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => exponent(suffix).ok_or_else(|| {
            format!(
                "has the unknown suffix {suffix:?} (use one of Ki, Mi, Gi, Ti, Pi, Ei, m, k, M, G, \
                 T, P, E, or an exponent such as e3)"
            )
        })?,
    };
    Ok(Value(sign * mantissa * scale))
}

/// `e<int>` or `E<int>`: ten to that power.
fn exponent(suffix: &str) -> Option<f64> {
    let rest = suffix.strip_prefix(['e', 'E'])?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let power: i32 = rest.parse().ok()?;
    Some(10f64.powi(power))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_quantity_grammar_is_accepted_and_nothing_else() {
        for (text, want) in [
            ("1", 1.0),
            ("0", 0.0),
            ("100m", 0.1),
            ("0.5", 0.5),
            (".5", 0.5),
            ("5.", 5.0),
            ("+2", 2.0),
            ("-2", -2.0),
            ("64Mi", 64.0 * 1024.0 * 1024.0),
            ("1Gi", 1073741824.0),
            ("1.5Gi", 1.5 * 1073741824.0),
            ("2k", 2000.0),
            ("3M", 3e6),
            ("1E", 1e18),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("12e-1", 1.2),
            ("1e+2", 100.0),
        ] {
            let got = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(
                (got.0 - want).abs() <= want.abs() * 1e-12,
                "{text}: {got:?}"
            );
        }
        for bad in [
            "", "lots", "Mi", "1 Mi", "1mi", "1KiB", "1.2.3", ".", "+", "1e", "1e1.5", "1ee3",
            "1Ki2", "--1", "1K",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse("lots").unwrap_err().contains("number"));
        assert!(parse("10MB").unwrap_err().contains("\"MB\""));
    }
}
