//! What the `batchput` command (src/main.rs) and the quickstart example
//! (examples/quickstart.rs) share: the live progress display and Ctrl-C
//! handling (`ui`) and the final report (`report`). Not an API: it changes
//! with the command.
//!
//! The library proper is the `batchput` crate; nothing here is linked into
//! libbatchput.so/.a.

mod report;
mod ui;

pub use report::*;
pub use ui::*;
