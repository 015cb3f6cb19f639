//! Reading one TOML table, each key overridable by its environment variable, with the
//! errors that name the file, the key and the variable (never a secret value).

use std::collections::BTreeSet;

use tokencache::Secret;

use super::ConfigError;

/// Reads the environment (a function, so that tests need not change the process's).
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The placeholder in `value`, if it looks like a template's: `...`, `…`, `{name}` or
/// `<name>` (a name: letters, digits, `_`, `-`, `.`, spaces). Only the placeholder is
/// returned, never the rest of the value.
pub(crate) fn placeholder(value: &str) -> Option<String> {
    for dots in ["...", "\u{2026}"] {
        if value.contains(dots) {
            return Some(dots.to_string());
        }
    }
    for (open, close) in [('{', '}'), ('<', '>')] {
        let mut rest = value;
        while let Some(i) = rest.find(open) {
            let after = &rest[i + open.len_utf8()..];
            let Some(j) = after.find(close) else { break };
            let name = &after[..j];
            let is_name = !name.is_empty()
                && name.len() <= 40
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
            if is_name {
                return Some(format!("{open}{name}{close}"));
            }
            rest = after;
        }
    }
    None
}

/// `text` on one line.
pub(crate) fn one_line(text: &str) -> String {
    crate::one_line(text)
}

/// Where a value came from, for its error.
pub(crate) struct At {
    pub(crate) key: String,
    pub(crate) env: Option<String>,
}

/// Reads the keys of one table, each overridable by its environment variable, and
/// remembers which it read (the others are unknown keys).
pub(crate) struct Reader<'a> {
    pub(crate) file: &'a str,
    table: &'a toml::Table,
    path: String,
    env_prefix: String,
    pub(crate) env: Env<'a>,
    seen: BTreeSet<String>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(
        file: &'a str,
        table: &'a toml::Table,
        path: &str,
        env_prefix: String,
        env: Env<'a>,
    ) -> Self {
        Self {
            file,
            table,
            path: path.to_string(),
            env_prefix,
            env,
            seen: BTreeSet::new(),
        }
    }

    pub(crate) fn var(&self, key: &str) -> String {
        format!("{}{}", self.env_prefix, key.to_ascii_uppercase())
    }

    pub(crate) fn here(&self, key: &str) -> At {
        At {
            key: format!("{}{key}", self.path),
            env: None,
        }
    }

    pub(crate) fn error_at(&self, at: &At, problem: &str) -> ConfigError {
        let key = match &at.env {
            Some(v) => format!("{} (from {v})", at.key),
            None => at.key.clone(),
        };
        ConfigError(format!("{}: {key}: {}", self.file, one_line(problem)))
    }

    /// Marks `key` read; whether it is in the file (its place, if so).
    pub(crate) fn present(&mut self, key: &str) -> Option<At> {
        self.seen.insert(key.to_string());
        self.table.get(key).map(|_| self.here(key))
    }

    /// The raw value: the environment's (a string) or the file's.
    pub(crate) fn raw(&mut self, key: &str) -> Option<(Raw<'a>, At)> {
        self.seen.insert(key.to_string());
        let var = self.var(key);
        if let Some(v) = (self.env)(&var) {
            let at = At {
                key: format!("{}{key}", self.path),
                env: Some(var),
            };
            return Some((Raw::Env(v), at));
        }
        self.table.get(key).map(|v| (Raw::File(v), self.here(key)))
    }

    pub(crate) fn string(&mut self, key: &str) -> Result<Option<(String, At)>, ConfigError> {
        let found = match self.raw(key) {
            None => return Ok(None),
            Some((Raw::Env(v), at)) => (v, at),
            Some((Raw::File(toml::Value::String(s)), at)) => (s.clone(), at),
            Some((Raw::File(other), at)) => {
                return Err(
                    self.error_at(&at, &format!("must be a string, not {}", other.type_str()))
                )
            }
        };
        // A key prefix may hold a Redis hash tag (`{app}:`): not a placeholder.
        if key != "key_prefix" {
            self.refuse_placeholder(&found.0, &found.1)?;
        }
        Ok(Some(found))
    }

    /// Fails when `value` (read at `at`) is still a template's placeholder.
    pub(crate) fn refuse_placeholder(&self, value: &str, at: &At) -> Result<(), ConfigError> {
        match placeholder(value) {
            Some(p) => Err(self.error_at(
                at,
                &format!("still holds the placeholder {p}: put the real value"),
            )),
            None => Ok(()),
        }
    }

    pub(crate) fn required_string(&mut self, key: &str) -> Result<String, ConfigError> {
        match self.string(key)? {
            Some((v, at)) if v.trim().is_empty() => Err(self.error_at(&at, "is empty")),
            Some((v, _)) => Ok(v),
            None => Err(self.error_at(&self.here(key), "missing")),
        }
    }

    pub(crate) fn int(&mut self, key: &str, lo: u64, hi: u64) -> Result<Option<u64>, ConfigError> {
        let (v, at) = match self.raw(key) {
            None => return Ok(None),
            Some((Raw::Env(v), at)) => match v.trim().parse::<i64>() {
                Ok(n) => (n, at),
                Err(_) => return Err(self.error_at(&at, "must be a whole number")),
            },
            Some((Raw::File(toml::Value::Integer(n)), at)) => (*n, at),
            Some((Raw::File(other), at)) => {
                return Err(self.error_at(
                    &at,
                    &format!("must be a whole number, not {}", other.type_str()),
                ))
            }
        };
        match u64::try_from(v) {
            Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            _ => Err(self.error_at(&at, &format!("must be from {lo} to {hi}, got {v}"))),
        }
    }

    pub(crate) fn bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some((Raw::Env(v), at)) => match v.trim() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(self.error_at(&at, "must be true or false")),
            },
            Some((Raw::File(toml::Value::Boolean(b)), _)) => Ok(Some(*b)),
            Some((Raw::File(other), at)) => Err(self.error_at(
                &at,
                &format!("must be true or false, not {}", other.type_str()),
            )),
        }
    }

    pub(crate) fn strings(&mut self, key: &str) -> Result<Option<(Vec<String>, At)>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some((Raw::Env(v), at)) => {
                let out: Vec<String> = v
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                for s in &out {
                    self.refuse_placeholder(s, &at)?;
                }
                Ok(Some((out, at)))
            }
            Some((Raw::File(toml::Value::Array(items)), at)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => return Err(self.error_at(&at, "must be a list of strings")),
                    }
                }
                for s in &out {
                    self.refuse_placeholder(s, &at)?;
                }
                Ok(Some((out, at)))
            }
            Some((Raw::File(other), at)) => Err(self.error_at(
                &at,
                &format!("must be a list of strings, not {}", other.type_str()),
            )),
        }
    }

    pub(crate) fn table(&mut self, key: &str) -> Result<Option<&'a toml::Table>, ConfigError> {
        self.seen.insert(key.to_string());
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(other) => Err(self.error_at(
                &self.here(key),
                &format!("must be a table, not {}", other.type_str()),
            )),
        }
    }

    /// The secret in environment variable `var` (named by the key at `at`).
    pub(crate) fn secret_from_env(&self, var: &str, at: &At) -> Result<Secret, ConfigError> {
        if var.trim().is_empty() {
            return Err(self.error_at(at, "is empty (the name of an environment variable)"));
        }
        match (self.env)(var) {
            Some(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim().to_string())),
            Some(_) => Err(self.error_at(at, &format!("the environment variable {var} is empty"))),
            None => Err(self.error_at(at, &format!("the environment variable {var} is not set"))),
        }
    }

    /// The secret in file `path` (trimmed).
    pub(crate) fn secret_from_file(&self, path: &str, at: &At) -> Result<Secret, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| self.error_at(at, &format!("cannot read {path}: {e}")))?;
        let v = text.trim();
        if v.is_empty() {
            return Err(self.error_at(at, &format!("{path} is empty")));
        }
        Ok(Secret::new(v.to_string()))
    }

    /// Fails on the first key of the table that was not read.
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        match self.table.keys().find(|k| !self.seen.contains(k.as_str())) {
            Some(k) => Err(self.error_at(&self.here(k), "unknown key")),
            None => Ok(()),
        }
    }
}

/// A value from the environment (always a string) or from the file.
pub(crate) enum Raw<'a> {
    Env(String),
    File(&'a toml::Value),
}
