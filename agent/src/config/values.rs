//! Value parsers (durations, crontab lines, times, sizes, shares, names,
//! paths, connection strings) and the span-keyed helpers that report a bad
//! value at its place in the file.

use super::*;

/// Parses a duration such as "90s", "2h", "7d" or "1h 30m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. \"90s\", \"2h\", \"7d\""))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

/// Reads a 5-field crontab line (or 6-7 fields with seconds) with crontab's
/// day-of-week numbers (0 and 7 are Sunday), which the cron crate numbers 1-7
/// from Sunday; numbers are rewritten to names before parsing.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let mut full: Vec<String> = match fields.len() {
        5 => std::iter::once("0")
            .chain(fields.iter().copied())
            .map(String::from)
            .collect(),
        6 | 7 => fields.iter().map(|s| s.to_string()).collect(),
        n => {
            return Err(format!(
                "cron expression {expr:?} has {n} fields; use 5 (minute hour day month weekday) or 6-7 with seconds"
            ));
        }
    };
    full[5] = crontab_weekdays(&full[5])?;
    cron::Schedule::from_str(&full.join(" ")).map_err(|e| {
        // The crate's message quotes the rewritten expression and points at it;
        // its last line is the part that makes sense for what the user wrote.
        let msg = e.to_string();
        let last = msg
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        format!("invalid cron expression {expr:?}: {last}")
    })
}

pub(super) fn crontab_weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let name = |s: &str| -> Result<String, String> {
        match s.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(NAMES[n].to_string()),
            Ok(n) => Err(format!("day of week {n} is out of range 0-7")),
            Err(_) => Ok(s.to_string()),
        }
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let mapped = match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (name(a)?, name(b)?);
                // "5-7" is Friday to Sunday; the cron crate wants ranges that do
                // not wrap past Saturday.
                if b == "SUN" && a != "SUN" && range.ends_with('7') {
                    out.push("SUN".to_string());
                    format!("{a}-SAT")
                } else {
                    format!("{a}-{b}")
                }
            }
            None => name(range)?,
        };
        out.push(match step {
            Some(s) => format!("{mapped}/{s}"),
            None => mapped,
        });
    }
    Ok(out.join(","))
}

pub(super) fn parse_time(s: &str) -> Result<SystemTime, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(SystemTime::from)
        .map_err(|e| {
            format!("invalid time {s:?} ({e}); use RFC 3339, e.g. \"2026-11-01T02:30:00+09:00\"")
        })
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(super) fn duration(cx: &mut Ctx, v: Option<Spanned<String>>, key: String) -> Option<Duration> {
    let v = v?;
    match parse_duration(v.get_ref()) {
        Ok(d) => Some(d),
        Err(m) => {
            cx.at(v.span(), key, m);
            None
        }
    }
}

/// A share such as `10%` (0 to 100).
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let bad = || format!("{s:?} is not a percentage; write it like \"10%\" (0% to 100%)");
    let n: f64 = s
        .trim()
        .strip_suffix('%')
        .ok_or_else(bad)?
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if (0.0..=100.0).contains(&n) {
        Ok(n)
    } else {
        Err(bad())
    }
}

/// A size such as `500MiB`, `20GB` or `1048576` (bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write e.g. \"500MiB\" or \"20GB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{s:?} must be more than 0 and less than 16 EiB"))
}

pub(super) fn bytes_key(cx: &mut Ctx, v: Option<Spanned<String>>, key: String) -> Option<u64> {
    let v = v?;
    match parse_bytes(v.get_ref()) {
        Ok(n) => Some(n),
        Err(m) => {
            cx.at(v.span(), key, m);
            None
        }
    }
}

pub(super) fn count(
    cx: &mut Ctx,
    v: Option<Spanned<i64>>,
    key: String,
    min: i64,
    default: u64,
) -> u64 {
    match v {
        Some(n) if *n.get_ref() < min => {
            cx.at(n.span(), key, format!("must be at least {min}"));
            default
        }
        Some(n) => *n.get_ref() as u64,
        None => default,
    }
}

/// True when a libpq connection string or URI carries a password.
pub fn has_password(conninfo: &str) -> bool {
    // As libpq reads it (`password = x` with spaces too), and as written.
    if conninfo
        .parse::<postgres::Config>()
        .is_ok_and(|c| c.get_password().is_some())
    {
        return true;
    }
    let c = conninfo.to_ascii_lowercase();
    c.contains("password=")
        || c.split_once("://").is_some_and(|(_, rest)| {
            rest.split('@')
                .next()
                .is_some_and(|auth| rest.contains('@') && auth.contains(':'))
        })
}
