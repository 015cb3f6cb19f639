//! Azure workload identity federation, configured as the Azure SDKs read it: the pod's
//! environment names the app registration (`AZURE_CLIENT_ID`), its tenant
//! (`AZURE_TENANT_ID`), the file the platform keeps a signed assertion in
//! (`AZURE_FEDERATED_TOKEN_FILE`) and the cloud (`AZURE_AUTHORITY_HOST`, default
//! `https://login.microsoftonline.com/`). The client authenticates with the assertion,
//! read from the file for every token request
//! ([`ClientCredential::AssertionFile`]).

use std::path::PathBuf;

use super::client_auth::ClientCredential;
use super::error::AcquireError;

/// The public cloud's login host, when `AZURE_AUTHORITY_HOST` is not set.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

/// What the workload identity environment names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// The authority: `{AZURE_AUTHORITY_HOST}/{AZURE_TENANT_ID}/v2.0`.
    pub authority: String,
    /// `AZURE_CLIENT_ID`.
    pub client_id: String,
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub token_file: PathBuf,
}

impl WorkloadIdentity {
    /// From the process environment.
    pub fn from_env() -> Result<Self, AcquireError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// From `env`; a missing or empty variable is an error naming it.
    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, AcquireError> {
        let required = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    AcquireError::Config(format!(
                        "workload identity: {k} is not set (the Azure workload identity webhook sets AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE)"
                    ))
                })
        };
        let client_id = required("AZURE_CLIENT_ID")?;
        let tenant = required("AZURE_TENANT_ID")?;
        let token_file = PathBuf::from(required("AZURE_FEDERATED_TOKEN_FILE")?);
        let host = env("AZURE_AUTHORITY_HOST")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_string());
        if tenant.contains('/') || tenant.chars().any(char::is_whitespace) {
            return Err(AcquireError::Config(
                "workload identity: AZURE_TENANT_ID is not a tenant id or name".into(),
            ));
        }
        Ok(Self {
            authority: format!("{}/{tenant}/v2.0", host.trim_end_matches('/')),
            client_id,
            token_file,
        })
    }

    /// The client credential: the assertion in the token file, read for every request.
    pub fn credential(&self) -> ClientCredential {
        ClientCredential::AssertionFile(self.token_file.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_azure_variables_make_the_authority_client_and_assertion_file() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let w = WorkloadIdentity::from_lookup(&env(&[
            ("AZURE_CLIENT_ID", "c1"),
            ("AZURE_TENANT_ID", "t1"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
        ]))
        .unwrap();
        assert_eq!(w.authority, "https://login.microsoftonline.com/t1/v2.0");
        assert_eq!(w.client_id, "c1");
        assert!(matches!(w.credential(), ClientCredential::AssertionFile(p) if p == w.token_file));
        let us = WorkloadIdentity::from_lookup(&env(&[
            ("AZURE_CLIENT_ID", "c1"),
            ("AZURE_TENANT_ID", "t1"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
        ]))
        .unwrap();
        assert_eq!(us.authority, "https://login.microsoftonline.us/t1/v2.0");
        let e = WorkloadIdentity::from_lookup(&env(&[("AZURE_CLIENT_ID", "c1")])).unwrap_err();
        assert!(e.to_string().contains("AZURE_TENANT_ID"), "{e}");
        let e = WorkloadIdentity::from_lookup(&env(&[
            ("AZURE_CLIENT_ID", "c1"),
            ("AZURE_TENANT_ID", "../x"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("AZURE_TENANT_ID"), "{e}");
    }
}
