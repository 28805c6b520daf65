//! The command's logger: what the library logs through `log` (warnings,
//! errors, retries at debug) goes to standard error as
//! `batchput: warning: ...`, above the progress bar while one is drawn.
//! Standard output is never written: it belongs to the report (`--json`).
//!
//! Which records show: warnings and errors by default; `-v` adds info and
//! `-vv` debug (`-vvv` trace) for batchput's own records. Without `-v`,
//! `RUST_LOG` is honoured with env_logger's directives, `LEVEL` and
//! `TARGET=LEVEL` separated by commas (the longest matching target wins);
//! anything it leaves unnamed stays at warnings. A flag beats the
//! environment, as for every other option of the command.
//!
//! The library logs a job's own failure at error level ("job failed: ..."),
//! for hosts that only read its log; the command prints that error itself,
//! so by default that one record is dropped rather than said twice. `-v`
//! or `RUST_LOG` shows it.
//!
//! Our own few dozen lines rather than env_logger: it could not write above
//! the bar, and the rest of it (styles, timestamps, regex filters) is not
//! wanted here.

use std::io::Write;
use std::sync::Mutex;

use indicatif::ProgressBar;
use log::{Level, LevelFilter, Log, Metadata, Record};

/// The bar drawn right now, if any: log lines are written above it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// The crates whose records `-v` makes visible.
const OURS: [&str; 2] = ["batchput", "batchput_cli"];

/// Which records pass: a level for every target not named, then
/// `(target, level)` pairs.
#[derive(Debug, PartialEq)]
struct Filter {
    default: LevelFilter,
    targets: Vec<(String, LevelFilter)>,
}

impl Filter {
    /// `-v` count 0 with `RUST_LOG` unset or empty: warnings and errors.
    fn new(verbosity: u8, rust_log: Option<&str>) -> Filter {
        let mut filter = Filter {
            default: LevelFilter::Warn,
            targets: Vec::new(),
        };
        let ours = match verbosity {
            0 => {
                for directive in rust_log.unwrap_or("").split(',').map(str::trim) {
                    // env_logger's `/regex` message filter is not supported.
                    let directive = directive.split('/').next().unwrap_or("");
                    match directive.split_once('=') {
                        _ if directive.is_empty() => {}
                        Some((target, level)) => {
                            if let Ok(level) = level.trim().parse() {
                                filter.targets.push((target.trim().to_string(), level));
                            }
                        }
                        // A bare word is a level, or a target to trace.
                        None => match directive.parse() {
                            Ok(level) => filter.default = level,
                            Err(_) => filter
                                .targets
                                .push((directive.to_string(), LevelFilter::Trace)),
                        },
                    }
                }
                return filter;
            }
            1 => LevelFilter::Info,
            2 => LevelFilter::Debug,
            _ => LevelFilter::Trace,
        };
        for target in OURS {
            filter.targets.push((target.to_string(), ours));
        }
        filter
    }

    fn level(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .filter(|(t, _)| {
                target == t
                    || (target.starts_with(t.as_str()) && target[t.len()..].starts_with("::"))
            })
            .max_by_key(|(t, _)| t.len())
            .map_or(self.default, |(_, level)| *level)
    }

    fn max(&self) -> LevelFilter {
        let named = self.targets.iter().map(|(_, level)| *level);
        named.fold(self.default, Ord::max)
    }
}

struct Logger {
    filter: Filter,
    /// Drop the library's "job failed: ..." record: the report says it.
    hide_job_failure: bool,
}

/// The library's record of a job's own failure, which the report repeats.
fn is_job_failure(record: &Record, message: &str) -> bool {
    record.level() == Level::Error
        && record.target().starts_with("batchput::")
        && message.starts_with("job failed: ")
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.filter.level(metadata.target())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let message = record.args().to_string();
        if self.hide_job_failure && is_job_failure(record, &message) {
            return;
        }
        let target = record.target();
        let crate_name = target.split("::").next().unwrap_or(target);
        // Another crate's record (rustls, say) says whose it is.
        let line = if OURS.contains(&crate_name) {
            format!("batchput: {level}: {message}\n")
        } else {
            format!("batchput: {level}: {target}: {message}\n")
        };
        // A logger must not panic: a closed stderr loses the line.
        let write = || {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        };
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    fn flush(&self) {}
}

/// Installs the logger for a command run with `-v` given `verbosity` times;
/// without `-v`, `RUST_LOG` decides (see the module's documentation).
pub fn init(verbosity: u8) {
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = Filter::new(verbosity, rust_log.as_deref());
    let max = filter.max();
    let logger: &'static Logger = Box::leak(Box::new(Logger {
        filter,
        hide_job_failure: verbosity == 0 && rust_log.is_none(),
    }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
    }
}

/// From now on log lines are written above `bar` (unless it is hidden).
pub fn draw_above(bar: &ProgressBar) {
    if !bar.is_hidden() {
        *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    }
}

/// The bar is gone: log lines are written plainly again.
pub fn no_bar() {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_errors_show_by_default() {
        let f = Filter::new(0, None);
        assert_eq!(f.level("batchput::engine::worker"), LevelFilter::Warn);
        assert_eq!(f.level("rustls"), LevelFilter::Warn);
        assert_eq!(Filter::new(0, Some("")), f);
    }

    #[test]
    fn v_raises_our_records_only() {
        let f = Filter::new(1, Some("off"));
        assert_eq!(f.level("batchput::engine::worker"), LevelFilter::Info);
        assert_eq!(f.level("batchput_cli"), LevelFilter::Info);
        assert_eq!(f.level("rustls::client"), LevelFilter::Warn);
        let f = Filter::new(2, None);
        assert_eq!(f.level("batchput::engine::worker"), LevelFilter::Debug);
        assert_eq!(f.max(), LevelFilter::Debug);
        assert_eq!(Filter::new(3, None).level("batchput"), LevelFilter::Trace);
    }

    #[test]
    fn rust_log_directives_apply_by_longest_target() {
        let f = Filter::new(0, Some("info, batchput=debug,batchput::store=off,rustls"));
        assert_eq!(f.level("batchput::engine::worker"), LevelFilter::Debug);
        assert_eq!(f.level("batchput::store::http"), LevelFilter::Off);
        // A prefix of a name is not its parent module.
        assert_eq!(f.level("batchput_cli"), LevelFilter::Info);
        assert_eq!(f.level("rustls::client::hs"), LevelFilter::Trace);
        assert_eq!(f.level("hyper"), LevelFilter::Info);
        assert_eq!(f.max(), LevelFilter::Trace);
        let f = Filter::new(0, Some("off"));
        assert_eq!(f.level("batchput"), LevelFilter::Off);
        // A level it cannot read is ignored, not a reason to show nothing.
        let f = Filter::new(0, Some("batchput=loud"));
        assert_eq!(f.level("batchput"), LevelFilter::Warn);
    }
}
