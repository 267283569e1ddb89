#![doc = include_str!("../README.md")]

mod faults;
mod scripted;
pub mod suites;

pub use faults::{BrokenCache, CacheFault};
pub use scripted::{ErrorSpec, ScriptedProvider, Step, StreamStep};
