//! `tokencache keys generate`: a new random key as one line `id:base64key`, ready for
//! `TOKENCACHE_KEYS` (put it first to make it the primary; keep the old ones after it
//! until `tokencache rekey` has moved every entry).

use clap::{Args, Subcommand};
use std::process::ExitCode;
use tokencache::protect::{Key, KeyId};

/// Key ring chores.
#[derive(Subcommand, Debug)]
pub(crate) enum KeysCommand {
    /// Print a new random 256-bit key as `id:base64key` (the key is printed once,
    /// to stdout only: store it in your secret manager).
    Generate(GenerateArgs),
}

/// Arguments of `keys generate`.
#[derive(Args, Debug)]
pub(crate) struct GenerateArgs {
    /// The key id (1 to 32 of A-Z a-z 0-9 _ -). Default: `k`, the UTC date and time and
    /// a random suffix, e.g. `k20261201-0915-x3f9qa` (unique even for keys made in the
    /// same minute: a ring refuses two keys with one id).
    #[arg(long)]
    id: Option<String>,
}

pub(crate) fn run(cmd: KeysCommand) -> ExitCode {
    match cmd {
        KeysCommand::Generate(args) => generate(args),
    }
}

fn generate(args: GenerateArgs) -> ExitCode {
    let id = args.id.unwrap_or_else(default_id);
    let Some(id) = KeyId::new(&id) else {
        return crate::fail(format!(
            "--id {id:?}: a key id is 1 to 32 characters of A-Z a-z 0-9 _ -"
        ));
    };
    let (_key, line) = Key::generate(id);
    outln!("{}", line.as_str());
    crate::finish(Ok(()))
}

/// `k` + UTC `YYYYMMDD-HHMM` now + `-` and six random characters (a-z 0-9: 31 bits).
fn default_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "k{y:04}{m:02}{d:02}-{:02}{:02}-{}",
        rem / 3600,
        rem % 3600 / 60,
        suffix()
    )
}

/// Six characters of a-z 0-9 from the operating system's generator.
fn suffix() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 8];
    // The system generator failing is not recoverable: Key::generate needs it too.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random generator failed");
    let mut n = u64::from_le_bytes(bytes);
    (0..6)
        .map(|_| {
            let c = ALPHABET[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let id = default_id();
        assert!(KeyId::new(&id).is_some(), "{id}");
        assert_eq!(id.len(), 21, "{id}");
        assert_ne!(default_id(), id, "a random suffix");
    }
}
