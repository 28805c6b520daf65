//! What the `batchput` command (src/main.rs) and the quickstart example
//! (examples/quickstart.rs) share: the live progress display and Ctrl-C
//! handling (`progress`, `interrupt`), messages (`ui`), the final report (`report`) and the logger
//! ([`logger`]). Not an API: it changes with the command.
//!
//! The library proper is the `batchput` crate; nothing here is linked into
//! libbatchput.so/.a.

mod interrupt;
pub mod logger;
mod progress;
mod report;
mod ui;

pub use interrupt::*;
pub use progress::*;
pub use report::*;
pub use ui::*;
