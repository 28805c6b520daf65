//! The integration suite: one binary, one module per area, every test
//! against real S3 servers (s3s-fs in-process, moto with auth as a child).
//! The command's own tests are cli/tests/cli.rs, sharing `support`.

mod support;

mod concurrency;
mod download;
mod engine;
mod ffi;
mod garage;
mod inputs;
mod integrity;
mod journal;
mod objects;
mod stop;
mod store;
mod tls;
mod transport;
