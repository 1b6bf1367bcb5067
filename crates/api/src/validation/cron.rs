//! Standard five-field cron schedules and `@` descriptors, with the error texts of the cron
//! library upstream uses (`cron.ParseStandard`).

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// Checks a schedule; `Err` carries the library's message.
pub(crate) fn parse_standard(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let (Some(eq), Some(sp)) = (spec.find('='), spec.find(' ')) else {
            return Err(format!(
                "provided bad location {}: unknown time zone",
                &spec[spec.find('=').map_or(0, |i| i + 1)..]
            ));
        };
        let loc = &spec[eq + 1..sp];
        if jiff::tz::TimeZone::get(loc).is_err() {
            return Err(format!("provided bad location {loc}: unknown time zone {loc}"));
        }
        spec = spec[sp..].trim();
    }
    if spec.starts_with('@') {
        return descriptor(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (f, b) in fields.iter().zip([&MINUTES, &HOURS, &DOM, &MONTHS, &DOW]) {
        for part in f.split(',') {
            range(part, b)?;
        }
    }
    Ok(())
}

fn descriptor(spec: &str) -> Result<(), String> {
    match spec {
        "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight" | "@hourly" => Ok(()),
        _ => match spec.strip_prefix("@every ") {
            Some(d) if is_go_duration(d) => Ok(()),
            Some(d) => Err(format!(
                "failed to parse duration {spec}: time: invalid duration \"{d}\""
            )),
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

/// Go `time.ParseDuration` syntax: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` with known units.
fn is_go_duration(s: &str) -> bool {
    go_duration_seconds(s).is_some()
}

/// A Go `time.ParseDuration` string in seconds (`1h30m` is 5400, `1.5s` is 1.5).
pub fn go_duration_seconds(s: &str) -> Option<f64> {
    let negative = s.starts_with('-');
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return Some(0.0);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        // "m" must not swallow "ms".
        let (unit, factor) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("μs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))?;
        rest = &rest[unit.len()..];
        total += value * factor;
    }
    Some(if negative { -total } else { total })
}

fn parse_int(expr: &str) -> Result<u32, String> {
    let n: i64 = expr.parse().map_err(|_| {
        let why = if !expr.is_empty()
            && expr.trim_start_matches(['-', '+']).bytes().all(|c| c.is_ascii_digit())
            && expr.len() > 1
        {
            "value out of range"
        } else {
            "invalid syntax"
        };
        format!("failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": {why}")
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    u32::try_from(n)
        .map_err(|_| format!("failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": value out of range"))
}

fn int_or_name(expr: &str, b: &Bounds) -> Result<u32, String> {
    let lower = expr.to_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    parse_int(expr)
}

fn range(expr: &str, b: &Bounds) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (b.min, b.max)
    } else {
        let start = int_or_name(low_high[0], b)?;
        let end = match low_high.len() {
            1 => start,
            2 => int_or_name(low_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let s = parse_int(range_and_step[1])?;
            if single {
                end = b.max;
            }
            s
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", b.max));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_have_their_seconds() {
        assert_eq!(go_duration_seconds("1h30m"), Some(5400.0));
        assert_eq!(go_duration_seconds("1.5s"), Some(1.5));
        assert_eq!(go_duration_seconds("90m"), Some(5400.0));
        assert_eq!(go_duration_seconds("500ms"), Some(0.5));
        assert_eq!(go_duration_seconds("-2m"), Some(-120.0));
        assert_eq!(go_duration_seconds("0"), Some(0.0));
        for bad in ["", "1", "h", "1x", "1..2s", "."] {
            assert_eq!(go_duration_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn accepts_standard_schedules() {
        for ok in [
            "*/1 * * * *",
            "0 0 * * 0",
            "5 4 * * sun",
            "0 22 * * 1-5",
            "@hourly",
            "@every 1h30m",
            "0 0 1 jan,feb *",
        ] {
            assert_eq!(parse_standard(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn reports_library_messages() {
        for (spec, message) in [
            ("foo", "expected exactly 5 fields, found 1: [foo]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("@often", "unrecognized descriptor: @often"),
        ] {
            assert_eq!(parse_standard(spec).unwrap_err(), message, "{spec}");
        }
    }
}
