#![doc = include_str!("../README.md")]

pub mod bedrock_server;
#[cfg(feature = "clients")]
mod clients;
#[cfg(feature = "collector")]
pub mod collector;
pub mod eventstream;
pub mod openai_fixtures;
pub mod seed;
mod standin;

#[cfg(feature = "clients")]
pub use clients::STANDIN_OPENAI_KEY;
pub use standin::{
    BEDROCK_JSON_TOOL, BEDROCK_REPLY, Fault, JSON_REPLY, OPENAI_REPLY, Reply, StandIns, Vendor,
};
