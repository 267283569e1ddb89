#![doc = include_str!("../README.md")]

pub mod bedrock_server;
pub mod eventstream;
mod faults;
pub mod harness;
pub mod live;
pub mod moto;
pub mod openai_fixtures;
mod scripted;
pub mod services;
pub mod standin;
pub mod suites;
#[cfg(feature = "system")]
pub mod system;

pub use faults::{BrokenCache, CacheFault};
pub use scripted::{ErrorSpec, ScriptedProvider, Step, StreamStep};
