//! What a queued task is: the JSON a dispatcher puts in a stream entry's
//! `task` field, read and checked here before any work starts, and the
//! result and dead-letter records a worker writes about it.
//!
//! ```text
//! {"id": "t1", "files": [{"path": "/abs/a", "key": "k/a"}, ...]}
//! {"id": "t2", "dir": "/abs/dir", "prefix": "p/"}
//!   optional: "bucket": "...", "options": {"part_size": "16MiB", ...}
//! ```
//!
//! A task that cannot be read (not JSON, no id, no files, a relative path,
//! an option a task may not set) is poison: no retry can fix it, so the
//! worker dead-letters it at once with the message built here.

use std::path::{Path, PathBuf};

use batchput::OPTIONS;
use serde_json::{json, Map, Value};

/// The longest task id: ids name journal files, and file names have a
/// limit (255 bytes) that an encoded id must stay under.
pub const MAX_ID_LEN: usize = 200;

/// Options that belong to the worker (where it writes and as whom), not
/// to a task: a task that could set them could send a worker's files and
/// signatures anywhere.
const WORKER_ONLY: [&str; 9] = [
    "endpoint",
    "region",
    "bucket",
    "access_key",
    "secret_key",
    "session_token",
    "addressing",
    "ca_file",
    "proxy",
];

/// What a task uploads.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Listed files, each with its key.
    Files(Vec<(PathBuf, String)>),
    /// Every regular file under a directory, keyed prefix + relative path.
    Dir { dir: PathBuf, prefix: String },
}

/// A task, as read from its stream entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub source: Source,
    /// Overrides the worker's `--bucket`.
    pub bucket: Option<String>,
    /// Upload options by key (`part_size`, `meta.NAME`, ...), values as text.
    pub options: Vec<(String, String)>,
}

/// Why a task is poison, with its id when it has a readable one (so the
/// dead letter and the result can name it).
#[derive(Debug, Clone, PartialEq)]
pub struct Poison {
    pub id: Option<String>,
    pub message: String,
}

impl Task {
    /// Reads the `task` field of an entry (`None` when the entry has none).
    pub fn parse(text: Option<&str>) -> Result<Task, Poison> {
        let poison = |id: Option<&str>, message: String| Poison {
            id: id.map(str::to_string),
            message,
        };
        let text = text.ok_or_else(|| poison(None, "the entry has no 'task' field".into()))?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| poison(None, format!("the task is not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| poison(None, "the task is not a JSON object".into()))?;
        let id = match obj.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            Some(Value::Number(_)) => {
                return Err(poison(None, "'id' must be a string, not a number".into()))
            }
            _ => {
                return Err(poison(
                    None,
                    "the task has no 'id' (a non-empty string)".into(),
                ))
            }
        };
        let bad = |message: String| poison(Some(id), message);
        if id.len() > MAX_ID_LEN {
            return Err(bad(format!("'id' is longer than {MAX_ID_LEN} bytes")));
        }
        for key in obj.keys() {
            if !["id", "files", "dir", "prefix", "bucket", "options"].contains(&key.as_str()) {
                return Err(bad(format!("unknown field '{key}'")));
            }
        }
        let absolute = |field: &str, s: &str| -> Result<PathBuf, Poison> {
            if s.is_empty() || !Path::new(s).is_absolute() {
                return Err(bad(format!(
                    "{field} '{s}' is not an absolute path (workers run anywhere)"
                )));
            }
            Ok(PathBuf::from(s))
        };
        let source = match (obj.get("files"), obj.get("dir")) {
            (Some(_), Some(_)) => return Err(bad("give 'files' or 'dir', not both".into())),
            (None, None) => return Err(bad("the task names no files ('files' or 'dir')".into())),
            (Some(files), None) => {
                if obj.contains_key("prefix") {
                    return Err(bad(
                        "'prefix' goes with 'dir'; give each file its key".into()
                    ));
                }
                let list = files
                    .as_array()
                    .ok_or_else(|| bad("'files' must be a list".into()))?;
                if list.is_empty() {
                    return Err(bad("the task names no files ('files' is empty)".into()));
                }
                let mut out = Vec::with_capacity(list.len());
                for (i, f) in list.iter().enumerate() {
                    let text = |name: &str| f.get(name).and_then(Value::as_str);
                    let (Some(path), Some(key)) = (text("path"), text("key")) else {
                        return Err(bad(format!(
                            "files[{i}] needs \"path\" and \"key\" (strings)"
                        )));
                    };
                    out.push((
                        absolute(&format!("files[{i}].path"), path)?,
                        key.to_string(),
                    ));
                }
                Source::Files(out)
            }
            (None, Some(dir)) => {
                let dir = dir
                    .as_str()
                    .ok_or_else(|| bad("'dir' must be a string".into()))?;
                let prefix = match obj.get("prefix") {
                    None => String::new(),
                    Some(Value::String(p)) => p.clone(),
                    Some(_) => return Err(bad("'prefix' must be a string".into())),
                };
                Source::Dir {
                    dir: absolute("'dir'", dir)?,
                    prefix,
                }
            }
        };
        let bucket = match obj.get("bucket") {
            None | Some(Value::Null) => None,
            Some(Value::String(b)) if !b.is_empty() => Some(b.clone()),
            Some(_) => return Err(bad("'bucket' must be a non-empty string".into())),
        };
        let mut options = Vec::new();
        match obj.get("options") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, value) in map {
                    check_option(key).map_err(bad)?;
                    let value = match value {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => {
                            return Err(bad(format!(
                                "option '{key}' must be a string, number or boolean"
                            )))
                        }
                    };
                    options.push((key.clone(), value));
                }
            }
            Some(_) => return Err(bad("'options' must be an object".into())),
        }
        Ok(Task {
            id: id.to_string(),
            source,
            bucket,
            options,
        })
    }

    /// The task as JSON, the way `batchput enqueue` writes it.
    pub fn to_json(&self) -> String {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.id));
        match &self.source {
            Source::Files(files) => {
                let list: Vec<Value> = files
                    .iter()
                    .map(|(p, k)| json!({"path": p.to_string_lossy(), "key": k}))
                    .collect();
                o.insert("files".into(), Value::Array(list));
            }
            Source::Dir { dir, prefix } => {
                o.insert("dir".into(), json!(dir.to_string_lossy()));
                o.insert("prefix".into(), json!(prefix));
            }
        }
        if let Some(b) = &self.bucket {
            o.insert("bucket".into(), json!(b));
        }
        if !self.options.is_empty() {
            let opts: Map<String, Value> = self
                .options
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            o.insert("options".into(), Value::Object(opts));
        }
        Value::Object(o).to_string()
    }

    /// Whether the task's options ask for `strict_inputs`.
    pub fn strict_inputs(&self) -> Option<bool> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == "strict_inputs")
            .map(|(_, v)| matches!(v.as_str(), "true" | "1" | "yes" | "on"))
    }
}

/// An upload option a task may set: one of the library's, and not one of
/// the worker's own.
pub fn check_option(key: &str) -> Result<(), String> {
    if WORKER_ONLY.contains(&key) {
        return Err(format!(
            "option '{key}' belongs to the worker (its --{} flag), not to a task",
            key.replace('_', "-")
        ));
    }
    let known = OPTIONS
        .iter()
        .any(|(k, _, _)| match k.strip_suffix("NAME") {
            Some(stem) => key.len() > stem.len() && key.starts_with(stem),
            None => *k == key,
        });
    if !known {
        return Err(format!("unknown option '{key}'"));
    }
    Ok(())
}

/// The journal file of a task: its id, with every byte that is not
/// `[A-Za-z0-9._-]` percent-encoded (and a leading dot too), so any id
/// names exactly one file in the journal directory and none outside it.
pub fn journal_file(dir: &Path, id: &str) -> PathBuf {
    let mut name = String::with_capacity(id.len() + 8);
    for (i, b) in id.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".journal");
    dir.join(name)
}

/// The final outcome of a task, as written to the results stream and
/// kept in its completion record.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: String,
    /// `succeeded` or `failed`.
    pub state: &'static str,
    pub files: u64,
    pub bytes: u64,
    pub error: Option<String>,
    pub worker: String,
    pub attempts: u64,
    pub elapsed_ms: u64,
    /// The stream entry that carried the task.
    pub entry: String,
}

impl Outcome {
    /// The record as JSON (the completion record's value).
    pub fn to_json(&self) -> String {
        json!({
            "id": self.id,
            "state": self.state,
            "files": self.files,
            "bytes": self.bytes,
            "error": self.error,
            "worker": self.worker,
            "attempts": self.attempts,
            "elapsed_ms": self.elapsed_ms,
            "entry": self.entry,
        })
        .to_string()
    }

    /// The results stream entry's fields, in order; `result` repeats them
    /// as one JSON value for readers that want a single field.
    pub fn fields(&self) -> Vec<(String, String)> {
        vec![
            ("id".into(), self.id.clone()),
            ("state".into(), self.state.into()),
            ("files".into(), self.files.to_string()),
            ("bytes".into(), self.bytes.to_string()),
            ("error".into(), self.error.clone().unwrap_or_default()),
            ("worker".into(), self.worker.clone()),
            ("attempts".into(), self.attempts.to_string()),
            ("elapsed_ms".into(), self.elapsed_ms.to_string()),
            ("entry".into(), self.entry.clone()),
            ("result".into(), self.to_json()),
        ]
    }
}

/// Field/value pairs flattened into a JSON array of strings: how they
/// reach the completion script, which XADDs them as they are.
pub fn flat_json(fields: &[(String, String)]) -> String {
    Value::Array(
        fields
            .iter()
            .flat_map(|(f, v)| [json!(f), json!(v)])
            .collect(),
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poison(text: &str) -> String {
        Task::parse(Some(text)).unwrap_err().message
    }

    #[test]
    fn both_shapes_read() {
        let t = Task::parse(Some(
            r#"{"id":"t1","files":[{"path":"/a/b","key":"k/b"}],"bucket":"x",
                "options":{"part_size":"8MiB","workers":4,"meta.owner":"me"}}"#,
        ))
        .unwrap();
        assert_eq!(t.id, "t1");
        assert_eq!(
            t.source,
            Source::Files(vec![(PathBuf::from("/a/b"), "k/b".into())])
        );
        assert_eq!(t.bucket.as_deref(), Some("x"));
        assert!(t.options.contains(&("workers".into(), "4".into())));
        assert_eq!(Task::parse(Some(&t.to_json())).unwrap(), t);
        let d = Task::parse(Some(r#"{"id":"t2","dir":"/d","prefix":"p/"}"#)).unwrap();
        assert_eq!(
            d.source,
            Source::Dir {
                dir: "/d".into(),
                prefix: "p/".into()
            }
        );
    }

    #[test]
    fn poison_says_what_is_wrong() {
        assert!(poison("{nope").starts_with("the task is not valid JSON"));
        assert_eq!(
            poison(r#"{"files":[]}"#),
            "the task has no 'id' (a non-empty string)"
        );
        assert_eq!(
            poison(r#"{"id":"x"}"#),
            "the task names no files ('files' or 'dir')"
        );
        assert_eq!(
            poison(r#"{"id":"x","files":[]}"#),
            "the task names no files ('files' is empty)"
        );
        assert_eq!(
            poison(r#"{"id":"x","dir":"rel/dir"}"#),
            "'dir' 'rel/dir' is not an absolute path (workers run anywhere)"
        );
        assert_eq!(
            poison(r#"{"id":"x","dir":"/d","options":{"secret_key":"s"}}"#),
            "option 'secret_key' belongs to the worker (its --secret-key flag), not to a task"
        );
        assert_eq!(
            poison(r#"{"id":"x","dir":"/d","options":{"speed":"1"}}"#),
            "unknown option 'speed'"
        );
        let e = Task::parse(Some(r#"{"id":"x","dir":"/d","extra":1}"#)).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("x"));
        assert_eq!(
            Task::parse(None).unwrap_err().message,
            "the entry has no 'task' field"
        );
    }

    #[test]
    fn journal_names_stay_in_their_directory() {
        let dir = Path::new("/j");
        assert_eq!(journal_file(dir, "t-1.a"), Path::new("/j/t-1.a.journal"));
        assert_eq!(
            journal_file(dir, "../x/y"),
            Path::new("/j/%2E.%2Fx%2Fy.journal")
        );
        assert_ne!(journal_file(dir, "a/b"), journal_file(dir, "a%2Fb"));
    }
}
