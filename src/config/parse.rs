//! Option values from their string form: counts, sizes (`8388608`, `8MiB`,
//! `1GiB`, `500KB`, any case) and durations (`60s`, `500ms`, `24h`).

use std::time::Duration;

/// Parses a count: a plain non-negative integer.
pub(super) fn parse_count(value: &str) -> std::result::Result<u64, String> {
    let v = value.trim();
    if v.starts_with('-') {
        return Err("must not be negative".into());
    }
    v.parse::<u64>()
        .map_err(|_| "expected a whole number".to_string())
}

/// Parses a size: `8388608`, `8MiB`, `8M` (binary), `8MB` (decimal), `1.5GiB`.
pub fn parse_size(value: &str) -> std::result::Result<u64, String> {
    let v = value.trim();
    if v.starts_with('-') {
        return Err("must not be negative".into());
    }
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    // Units in any case: `16mb` is `16MB`; a lone letter or `iB` is binary.
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err("expected a size such as 8388608, 8MiB or 1GiB".into()),
    };
    if num.is_empty() {
        return Err("expected a size such as 8388608, 8MiB or 1GiB".into());
    }
    if num.contains('.') {
        let f: f64 = num
            .parse()
            .map_err(|_| "expected a size such as 8388608, 8MiB or 1GiB".to_string())?;
        let bytes = f * mult as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 / 2.0 {
            return Err("too large".into());
        }
        return Ok(bytes as u64);
    }
    let n: u64 = num.parse().map_err(|_| "too large".to_string())?;
    n.checked_mul(mult).ok_or_else(|| "too large".to_string())
}

/// Parses milliseconds in a `_ms` option.
pub(super) fn parse_millis(value: &str) -> std::result::Result<Duration, String> {
    parse_count(value)
        .map(Duration::from_millis)
        .map_err(|_| "expected a whole number of milliseconds".into())
}

/// Parses a human duration: `500ms`, `60s`, `5m`, `24h`, `7d`, or plain seconds.
pub fn parse_duration(value: &str) -> std::result::Result<Duration, String> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| "expected a duration such as 500ms, 60s, 5m, 24h or 7d".to_string())?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.saturating_mul(1_000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        _ => return Err("expected a duration such as 500ms, 60s, 5m, 24h or 7d".into()),
    };
    Ok(Duration::from_millis(ms))
}
