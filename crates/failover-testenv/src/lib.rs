#![doc = include_str!("../README.md")]

#[cfg(feature = "runner")]
pub mod harness;
pub mod live;
pub mod moto;
pub mod services;
