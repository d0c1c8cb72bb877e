//! Reading a TOML table key by key: every problem (wrong type, missing or unknown key, a failed
//! `${VAR}`) is recorded under its table path and the reading goes on, so one run reports all.

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::interpolate;

/// The part of the configuration a problem belongs to, so a command can check only the parts
/// it uses (`herald trigger` needs `[server]` and `[[apps]]`, not the dashboard password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Top-level keys and the file as a whole.
    File,
    /// `[server]`, `[server.tls]` and `HERALD_HOST` / `HERALD_PORT`.
    Server,
    /// `[limits]`.
    Limits,
    /// `adapter` and `[redis]`.
    Redis,
    /// `[webhooks]`.
    Webhooks,
    /// `[metrics]` and `HERALD_METRICS_PORT`.
    Metrics,
    /// `[dashboard]`.
    Dashboard,
    /// `[[apps]]` and everything inside them.
    Apps,
    /// `[app_store]`.
    AppStore,
}

/// Every problem found, each with its part; keys that could not be read are remembered so
/// later checks do not report them a second time.
#[derive(Debug, Default)]
pub struct Report {
    problems: Vec<(Part, String)>,
    unread: HashSet<String>,
}

impl Report {
    /// Records a problem of a whole table (or of the file, with an empty path).
    pub fn table(&mut self, part: Part, path: &str, message: impl std::fmt::Display) {
        let text = if path.is_empty() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        };
        self.problems.push((part, text));
    }

    /// Records a problem of one key, unless reading that key already failed.
    pub fn key(&mut self, part: Part, path: &str, key: &str, message: impl std::fmt::Display) {
        if self.unread.contains(&key_id(path, key)) {
            return;
        }
        let text = if path.is_empty() {
            format!("{key}: {message}")
        } else {
            format!("{path} {key}: {message}")
        };
        self.problems.push((part, text));
    }

    /// Whether reading `key` of `path` failed (its value is a default, not the file's).
    pub fn is_unread(&self, path: &str, key: &str) -> bool {
        self.unread.contains(&key_id(path, key))
    }

    /// Marks `key` of `path` as not read from the file, so checks skip it.
    pub fn mark_unread(&mut self, path: &str, key: &str) {
        self.unread.insert(key_id(path, key));
    }

    /// The problems of the given parts, in the order found.
    pub fn problems_of(&self, parts: &[Part]) -> Vec<String> {
        self.problems
            .iter()
            .filter(|(p, _)| parts.contains(p))
            .map(|(_, t)| t.clone())
            .collect()
    }
}

fn key_id(path: &str, key: &str) -> String {
    format!("{path}\u{0}{key}")
}

/// One table being read. Keys are taken out as they are read; what is left at
/// [`Reader::finish`] is unknown.
pub struct Reader<'a> {
    part: Part,
    path: String,
    table: Table,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Reader<'a> {
    /// A reader over `value`, which must be a table (else the problem is recorded and `None`
    /// returned). `path` is how the table is named in messages, e.g. `[server.tls]`.
    pub fn new(
        part: Part,
        path: impl Into<String>,
        value: Value,
        env: &'a dyn Fn(&str) -> Option<String>,
        report: &mut Report,
    ) -> Option<Reader<'a>> {
        let path = path.into();
        match value {
            Value::Table(table) => Some(Reader {
                part,
                path,
                table,
                env,
            }),
            other => {
                report.table(
                    part,
                    &path,
                    format!("must be a table, not {}", other.type_str()),
                );
                None
            }
        }
    }

    /// This table's path in messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Takes `key` out of the table as it is (no interpolation), if present.
    pub fn take_raw(&mut self, key: &str) -> Option<Value> {
        self.table.remove(key)
    }

    /// Reads `key` if present: strings inside are interpolated, then the value is converted.
    /// A failure is recorded under this table and the key is marked unread.
    pub fn get<T: DeserializeOwned>(&mut self, key: &str, report: &mut Report) -> Option<T> {
        let mut value = self.table.remove(key)?;
        let mut problems = Vec::new();
        interpolate_value(&mut value, self.env, &mut problems);
        if !problems.is_empty() {
            for p in problems {
                report.key(self.part, &self.path, key, p);
            }
            report.mark_unread(&self.path, key);
            return None;
        }
        match value.try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                report.key(self.part, &self.path, key, e.message());
                report.mark_unread(&self.path, key);
                None
            }
        }
    }

    /// Reads `key` into `slot` when present and valid; `slot` keeps its default otherwise.
    pub fn set<T: DeserializeOwned>(&mut self, key: &str, slot: &mut T, report: &mut Report) {
        if let Some(v) = self.get(key, report) {
            *slot = v;
        }
    }

    /// Reads a key that must be present; a missing one is recorded and marked unread.
    pub fn required<T: DeserializeOwned>(&mut self, key: &str, report: &mut Report) -> Option<T> {
        if !self.table.contains_key(key) {
            report.table(self.part, &self.path, format!("missing key '{key}'"));
            report.mark_unread(&self.path, key);
            return None;
        }
        self.get(key, report)
    }

    /// Records every key nobody read as unknown.
    pub fn finish(self, report: &mut Report) {
        for key in self.table.keys() {
            if self.path.is_empty() {
                report.table(self.part, "", format!("unknown top-level key '{key}'"));
            } else {
                report.table(self.part, &self.path, format!("unknown key '{key}'"));
            }
        }
    }
}

/// Interpolates every string inside `v`, collecting problems.
fn interpolate_value(
    v: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) {
    match v {
        Value::String(s) => *s = interpolate::interpolate(s, env, problems),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| interpolate_value(i, env, problems)),
        Value::Table(t) => t
            .iter_mut()
            .for_each(|(_, i)| interpolate_value(i, env, problems)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn every_key_is_checked_and_unknown_keys_are_named() {
        let value: Value =
            toml::from_str("port = \"sixty\"\ntimeout = 0\nname = \"${NOPE}\"\nextra = 1\n")
                .unwrap();
        let mut report = Report::default();
        let mut r = Reader::new(Part::Server, "[server]", value, &no_env, &mut report).unwrap();
        assert_eq!(r.get::<u16>("port", &mut report), None);
        assert_eq!(r.get::<u64>("timeout", &mut report), Some(0));
        assert_eq!(r.get::<String>("name", &mut report), None);
        assert_eq!(r.required::<String>("secret", &mut report), None);
        r.finish(&mut report);
        assert_eq!(
            report.problems_of(&[Part::Server]),
            [
                "[server] port: invalid type: string \"sixty\", expected u16",
                "[server] name: environment variable NOPE is not set",
                "[server]: missing key 'secret'",
                "[server]: unknown key 'extra'",
            ]
        );
        assert!(report.is_unread("[server]", "port") && report.is_unread("[server]", "secret"));
        // a later check of an unread key is not reported twice
        report.key(Part::Server, "[server]", "secret", "must not be empty");
        assert_eq!(report.problems_of(&[Part::Server]).len(), 4);
        assert!(report.problems_of(&[Part::Apps]).is_empty());
    }
}
