//! batchput uploads batches of local files to S3-compatible object storage
//! (AWS S3, Huawei OBS, Aliyun OSS, MinIO, Ceph, Garage) as fast as the link
//! and the server allow, and never leaves billed garbage behind.
//!
//! See the README for the C ABI, the CLI and the design.
#![deny(missing_docs)]

#[allow(dead_code)] // pieces the engine (next) uses
mod config;
#[allow(dead_code)]
mod error;
pub mod store;

pub use config::{
    parse_duration, parse_size, Addressing, Config, Integrity, MAX_KEY_LEN, MAX_PARTS,
    MAX_PART_SIZE, MIN_PART_SIZE, OPTIONS,
};
pub use error::{Error, ErrorKind, Result};
