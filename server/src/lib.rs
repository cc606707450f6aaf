//! `riffle-server`: the Riffle engine and server.
//!
//! Today it holds the [`log`]: topics, partitions and offsets, embedded or on Kafka.

pub mod catalog;
pub mod format;
pub mod log;
pub mod plan;
pub mod types;
