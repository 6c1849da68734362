//! mapserve: an HTTP file server whose hot path serves bytes straight out of
//! a cache of read-only shared memory mappings.
//!
//! Data flows one way:
//!
//! `config` -> `server` (listeners, connections, timeouts, zero-copy sends)
//! -> `app` (axum handler service + tower-http layer) -> `handler` ->
//! [`path` -> `cache` (`fs`, `mmap`) -> `http::conditional` + `http::range` ->
//! `response`] -> `body` (checked chunks).
//!
//! Modules lower in that list never use modules higher up. `http` and `path`
//! are pure. All `unsafe` code lives in `mmap`.

#![deny(unsafe_code)]

pub mod access;
pub mod app;
pub mod body;
pub mod cache;
pub mod config;
pub mod error;
pub mod fs;
pub mod handler;
pub mod http;
pub mod limits;
pub mod logging;
pub mod mmap;
pub mod path;
pub mod quota;
pub mod response;
pub mod server;
pub mod track;
