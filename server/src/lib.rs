//! `riffle-server`: the Riffle engine and server.
//!
//! [`engine::Engine`] runs statements: the [`catalog`] keeps sources, [`plan`] turns queries
//! into expressions, [`query`] runs persistent queries over the [`log`] with the
//! operators of [`runtime`] and the serdes of [`format`]; [`api`] serves it over HTTP.

pub mod api;
pub mod catalog;
pub mod engine;
pub mod format;
pub mod functions;
pub mod log;
pub mod plan;
pub mod query;
pub mod runtime;
pub mod types;
