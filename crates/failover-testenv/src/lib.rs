#![doc = include_str!("../README.md")]

#[cfg(feature = "runner")]
pub mod harness;
pub mod live;
pub mod moto;
#[cfg(feature = "runner")]
pub mod recorded;
pub mod services;
