//! Between a decoded partition and the bytes L2 holds under its key. Every value the
//! two levels write to or read from L2 passes here, so that this is the one place where
//! the stored form is decided: today MSAL V3 JSON as it is (readable by MSAL Python,
//! msal-node and Microsoft.Identity.Web).

use std::fmt;

use super::Core;
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
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Schema(e) => e.fmt(f),
            DecodeError::DataProtected => f.write_str("encrypted by .NET Data Protection"),
        }
    }
}

impl Core {
    /// The bytes to store under `full` (the full L2 key) for `partition`.
    pub(super) fn encode(&self, _full: &str, partition: &Partition) -> Vec<u8> {
        partition.to_vec()
    }

    /// The partition stored as `bytes` under `full`.
    pub(super) fn decode(&self, _full: &str, bytes: &[u8]) -> Result<Partition, DecodeError> {
        if crate::store::dotnet::is_data_protected(bytes) {
            return Err(DecodeError::DataProtected);
        }
        Partition::parse(bytes).map_err(DecodeError::Schema)
    }
}
