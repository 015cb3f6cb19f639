//! Between a decoded partition and the bytes L2 holds under its key. Every value the
//! two levels write to or read from L2 passes here, so that this is the one place where
//! the stored form is decided: MSAL V3 JSON as it is (readable by MSAL Python,
//! msal-node and Microsoft.Identity.Web) when no keys are configured, else that JSON
//! sealed in an envelope bound to the full L2 key ([`crate::protect`]).

use std::fmt;

use super::Core;
use crate::protect::{self, ProtectError};
use crate::schema::{Partition, SchemaError};

/// Why the bytes under a key are not a partition.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum DecodeError {
    /// Not MSAL V3 JSON.
    Schema(SchemaError),
    /// Encrypted by ASP.NET Core Data Protection (Microsoft.Identity.Web's `Encrypt`):
    /// not corrupt, but not readable here, and never to be written over.
    DataProtected,
    /// Could not be opened with the key ring (or is plaintext where keys are required).
    Protect(ProtectError),
}

impl DecodeError {
    /// An envelope sealed with a key id this ring does not hold: another replica's
    /// valid data (a rotation this replica has not caught up with), not garbage, so a
    /// write must not replace it.
    pub(super) fn is_foreign_key(&self) -> bool {
        matches!(
            self,
            DecodeError::Protect(ProtectError::UnknownKeyId { .. })
        )
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Schema(e) => e.fmt(f),
            DecodeError::DataProtected => f.write_str("encrypted by .NET Data Protection"),
            DecodeError::Protect(e) => e.fmt(f),
        }
    }
}

impl Core {
    /// The bytes to store under `full` (the full L2 key) for `partition`.
    pub(super) fn encode(&self, full: &str, partition: &Partition) -> Vec<u8> {
        match &self.protection {
            None => partition.to_vec(),
            Some(p) => p.seal(full, &partition.to_vec()),
        }
    }

    /// The partition stored as `bytes` under `full`, decoded whole (to change it).
    pub(super) fn decode(&self, full: &str, bytes: &[u8]) -> Result<Partition, DecodeError> {
        self.decode_with(full, bytes, Partition::parse)
    }

    /// The partition stored as `bytes` under `full`, to read: the sections a token
    /// lookup never reads are decoded on first use ([`Partition::parse_deferred`]).
    pub(super) fn decode_to_read(
        &self,
        full: &str,
        bytes: &[u8],
    ) -> Result<Partition, DecodeError> {
        self.decode_with(full, bytes, Partition::parse_deferred)
    }

    fn decode_with(
        &self,
        full: &str,
        bytes: &[u8],
        parse: fn(&[u8]) -> Result<Partition, crate::schema::SchemaError>,
    ) -> Result<Partition, DecodeError> {
        if crate::store::dotnet::is_data_protected(bytes) {
            return Err(DecodeError::DataProtected);
        }
        match &self.protection {
            Some(p) => {
                let (plain, _) = p.open(full, bytes).map_err(DecodeError::Protect)?;
                parse(&plain).map_err(DecodeError::Schema)
            }
            // Sealed by a replica with keys, read by one without: say so, not "bad JSON".
            None if protect::is_envelope(bytes) => {
                Err(DecodeError::Protect(protect::unopenable(bytes)))
            }
            None => parse(bytes).map_err(DecodeError::Schema),
        }
    }
}
