//! mapserve: an HTTP file server whose hot path serves bytes straight out of
//! a cache of read-only shared memory mappings.
//!
//! Data flows one way. The modules, from the top (the binary's entry) down:
//!
//! | module | does |
//! |---|---|
//! | `server` | listeners (TCP, unix, TLS, systemd), PROXY protocol, connections, timeouts, zero-copy sends, HTTP/2 stream watchdog, reload, prewarming, shutdown |
//! | `admin` | the admin listener's routes: metrics, health, the cache API, the dashboard |
//! | `app` | the application as one tower service around the handler |
//! | `handler` | the request pipeline, top to bottom |
//! | `response` | the one place that builds responses |
//! | `body` | response bodies: chunks, each checked before it leaves |
//! | `track` | what a connection and its requests share |
//! | `access_log` | the access log: line formats, the non-blocking writer |
//! | `peer` | who a connection or request comes from |
//! | `cache` | entries, windows, budget, loading, change detection, ROOT, rendered listings |
//! | `listing` | directory listings: read, sort, render as HTML or JSON |
//! | `compress` | which responses are compressed, at what level; the encoders |
//! | `pages` | the page assets of `static/`, compiled in; HTML error pages |
//! | `quota` | what one connection's responses may hold |
//! | `error` | request failures and their statuses |
//! | `fs` | opening files beneath ROOT without races |
//! | `mmap` | the only `unsafe`: mappings, the SIGBUS guard, residency, vmsplice |
//! | `http` | pure HTTP decisions: ranges, preconditions, encodings, framing, header rules, CORS, forwarded headers |
//! | `path` | pure request-path validation |
//! | `config` | command line, environment and file into one `Config` |
//! | `limits` | page size, descriptor and mapping limits |
//! | `logging` | the log subscriber |
//! | `metrics` | request, connection and timeout counters (sharded), Prometheus exposition |
//!
//! A module uses only modules below it in this table (`tests/layering.rs`
//! checks every `crate::` path in `src/`). `http` and `path` are pure. All
//! `unsafe` code lives in `mmap`.

#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod body;
pub mod cache;
pub mod compress;
pub mod config;
mod error;
pub mod fs;
pub mod handler;
pub mod http;
pub mod limits;
pub mod listing;
pub mod logging;
pub mod metrics;
pub mod mmap;
pub mod pages;
pub mod path;
pub mod peer;
mod quota;
pub mod response;
pub mod server;
mod track;
