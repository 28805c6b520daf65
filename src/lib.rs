//! batchput uploads batches of local files to S3-compatible object storage
//! (AWS S3, Huawei OBS, Aliyun OSS, MinIO, Ceph, Garage) as fast as the link
//! and the server allow, and never leaves billed garbage behind.
//!
//! ```no_run
//! use batchput::{Batch, Config, JobState, Uploader};
//!
//! let up = Uploader::new(
//!     Config::new()
//!         .endpoint("http://127.0.0.1:9000")
//!         .bucket("photos")
//!         .credentials("AKID", "SECRET"),
//! )?;
//! let mut batch = Batch::new();
//! batch.add("/data/a.jpg", "2026/a.jpg").add("/data/b.jpg", "2026/b.jpg");
//! let job = up.start(&batch)?;
//! while !job.wait(Some(std::time::Duration::from_secs(1))) {
//!     let p = job.progress();
//!     println!("{} / {} bytes", p.bytes_done, p.bytes_total);
//! }
//! assert_eq!(job.state(), JobState::Succeeded, "{:?}", job.error());
//! # Ok::<(), batchput::Error>(())
//! ```
//!
//! # Failure
//! The first fatal error fails the whole job: queued work is dropped,
//! in-flight requests are cut, every multipart upload of the job that is not
//! complete is aborted and checked gone, completed objects stay, and files
//! never started never start. [`Job::stop`] does the same on request.
//!
//! See the README for the C ABI, the CLI and the design.
#![deny(missing_docs)]

mod config;
mod engine;
mod error;
/// The C ABI (`bp_*`): what `include/batchput.h` declares. Rust callers
/// use the Rust API above; this module is public so its tests can call it.
pub mod ffi;
mod job;
mod journal;
mod objects;
mod plan;
pub mod store;
mod uploader;

pub use config::{
    parse_duration, parse_size, Addressing, Config, Integrity, MAX_KEY_LEN, MAX_PARTS,
    MAX_PART_SIZE, MIN_PART_SIZE, OPTIONS,
};
pub use engine::Verification;
pub use error::{Error, ErrorKind, Result};
pub use job::{FileReport, FileState, Job, JobState, Progress};
pub use journal::JournalInfo;
pub use store::{DeleteFailure, DeleteReport, ListedObject};
pub use uploader::{Batch, SkipReason, Skipped, Uploader};
