//! SQL jobs: commands the extension runs itself. `api` creates them as the
//! caller may, `supervisor` is the background worker's side, `runner` the
//! executor process, `channel` what the two share.

pub mod api;
mod channel;
mod runner;
mod supervisor;

pub use supervisor::{Executors, Plan};
