//! Value parsers for numeric flags: every number a command takes is checked by clap
//! against a range, so a bad value is a one-line error with exit code 2 before the
//! command starts (never a panic, never a silent clamp).

/// Parses a whole number and checks it is in `lo..=hi`.
fn whole(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number from {lo} to {hi}, got {s:?}"))?;
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be from {lo} to {hi}, got {v}"))
    }
}

/// A whole number in `LO..=HI`.
pub(crate) fn int<const LO: u64, const HI: u64>(s: &str) -> Result<u64, String> {
    whole(s, LO, HI)
}

/// A whole number in `LO..=HI`, as a `u32`.
pub(crate) fn int32<const LO: u32, const HI: u32>(s: &str) -> Result<u32, String> {
    whole(s, LO.into(), HI.into()).map(|v| v as u32)
}

/// A whole number in `LO..=HI`, as a `usize`.
pub(crate) fn count<const LO: usize, const HI: usize>(s: &str) -> Result<usize, String> {
    whole(s, LO as u64, HI as u64).map(|v| v as usize)
}

/// A finite number of seconds in `0..=MAX` (`POSITIVE`: more than 0).
fn seconds_in<const POSITIVE: bool, const MAX: u64>(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {s:?}"))?;
    let low_ok = if POSITIVE { v > 0.0 } else { v >= 0.0 };
    if v.is_finite() && low_ok && v <= MAX as f64 {
        Ok(v)
    } else {
        let low = if POSITIVE { "more than 0" } else { "from 0" };
        Err(format!("must be {low} to {MAX} seconds, got {s}"))
    }
}

/// A positive number of seconds, at most a week (`load --duration`).
pub(crate) fn run_seconds(s: &str) -> Result<f64, String> {
    seconds_in::<true, { 7 * 86_400 }>(s)
}

/// Zero to one hour of seconds (`load --settle`).
pub(crate) fn wait_seconds(s: &str) -> Result<f64, String> {
    seconds_in::<false, 3_600>(s)
}

/// A share: a finite number from 0 to 1.
pub(crate) fn share(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a share from 0 to 1, got {s:?}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be from 0 to 1, got {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_reject_what_duration_cannot_hold() {
        for bad in ["inf", "-inf", "nan", "NaN", "1e300", "-1", "0", "", "x"] {
            assert!(run_seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(run_seconds("0.5"), Ok(0.5));
        assert_eq!(wait_seconds("0"), Ok(0.0));
        assert!(wait_seconds("nan").is_err());
        assert!(wait_seconds("3601").is_err());
    }

    #[test]
    fn shares_and_ints_have_ranges() {
        assert!(share("1.01").is_err());
        assert!(share("-0.1").is_err());
        assert!(share("nan").is_err());
        assert_eq!(share("0.35"), Ok(0.35));
        assert!(int::<1, 10>("0").is_err());
        assert!(int::<1, 10>("11").is_err());
        assert!(int::<1, 10>("-1").is_err());
        assert_eq!(int::<1, 10>("10"), Ok(10));
        assert_eq!(count::<1, 4>("4"), Ok(4));
        assert_eq!(int32::<1, 4>("2"), Ok(2));
    }
}
