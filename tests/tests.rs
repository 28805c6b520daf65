//! The integration suite: one binary, one module per area, every test
//! against real S3 servers (s3s-fs in-process, moto with auth as a child).

mod support;

// The `batchput` command is built only with the `cli` feature.
#[cfg(feature = "cli")]
mod cli;
mod engine;
mod ffi;
mod garage;
mod inputs;
mod journal;
mod stop;
mod store;
mod tls;
