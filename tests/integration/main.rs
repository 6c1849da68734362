//! Integration tests: the real `mapserve` binary on 127.0.0.1, driven over
//! sockets by a raw HTTP client and by the clients users use (curl, wget,
//! aria2c). One test binary; modules by topic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod access_log;
mod admin;
mod browse;
mod browser;
mod cache;
mod clients;
mod cold;
mod config;
mod connections;
mod dashboard;
mod encoding;
mod faults;
mod h2;
mod http_semantics;
mod paths;
mod proxies;
mod reload;
mod replicas;
mod rules;
mod systemd;
mod tls;
mod windows;
