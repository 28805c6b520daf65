//! The integration suite: one binary, one module per area, every test
//! against real S3 servers (s3s-fs in-process, moto with auth as a child).

mod support;

mod engine;
mod garage;
mod journal;
mod store;
