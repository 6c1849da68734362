//! SIGHUP: re-read the command line, the environment and the config file,
//! and apply, all at once, what can change while running. Nothing is
//! applied unless everything is valid (the configuration, the header rules,
//! the TLS pair): otherwise every reason found is logged and the running
//! configuration stays. Keys that need a restart are logged as not applied.
//! A reload never stops the process.
//!
//! Applied live: the cache's byte and entry limits (entries beyond new
//! limits are evicted; a change of `Cache-Control`, compression, hidden
//! files or listings empties the cache, whose entries carry headers and
//! listings built under the old values), header rules and `--header`, CORS, listing and
//! compression switches, `Cache-Control`, hidden files, error pages, the
//! range cap, the access log switch, the log filter, timeouts (for
//! connections accepted from then on), trusted proxies, the grace period
//! and the TLS certificate and key (for handshakes from then on). Requests
//! already in flight finish with the configuration they started with.

use super::conn::Timeouts;
use super::tls::{Pair, Tls};
use crate::cache::FileCache;
use crate::config::{Cli, Config};
use crate::handler::App;
use arc_swap::ArcSwap;
use clap::Parser;
use std::sync::Arc;

/// What a reload changes, and the configuration the process started with.
pub(super) struct Live {
    /// The configuration in force.
    pub config: Config,
    /// The application every request loads.
    pub app: Arc<ArcSwap<App>>,
    /// Timeouts of new connections.
    pub timeouts: Arc<ArcSwap<Timeouts>>,
    /// TLS, when any listener uses it.
    pub tls: Option<Tls>,
    /// The cache (kept across reloads; its limits change).
    pub cache: FileCache,
}

impl Live {
    /// Reloads, logging what happened.
    pub(super) async fn reload(&mut self) {
        tracing::info!("SIGHUP: reloading the configuration");
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let new = match Cli::try_parse_from(&args).map_err(|e| e.to_string()) {
            Ok(cli) => Config::load(cli).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        }
        // One log line: a TOML error spans several.
        .map_err(|e| e.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" "));
        let new = match new {
            Ok(new) => new,
            Err(reason) => {
                tracing::error!(%reason, "reload refused, nothing changed: the new configuration is invalid");
                return;
            }
        };
        let mut reasons = Vec::new();
        let app = super::build_app(&new, &self.cache).map_err(|e| reasons.push(e)).ok();
        let pair = match (&self.tls, &new.tls) {
            (Some(_), Some(files)) => Tls::prepare(files).map_err(|e| reasons.push(e)).ok(),
            _ => None,
        };
        let (Some(app), true) = (app, reasons.is_empty()) else {
            for reason in &reasons {
                tracing::error!(%reason, "reload refused, nothing changed");
            }
            return;
        };
        for key in needs_restart(&self.config, &new, self.tls.is_some()) {
            tracing::warn!(key, "changed in the configuration, but needs a restart: not applied");
        }
        self.apply(new, app, pair).await;
    }

    async fn apply(&mut self, mut new: Config, app: App, pair: Option<Pair>) {
        let old = &self.config;
        let mut changed = live_changes(old, &new);
        if (new.cache_max_bytes, new.cache_max_entries) != (old.cache_max_bytes, old.cache_max_entries) {
            self.cache.set_limits(new.cache_max_bytes, new.cache_max_entries).await;
        }
        self.cache.set_pin_max(new.observe.pin_max_percent);
        // Entries carry headers built under the old policy (Cache-Control,
        // Vary) and listings rendered under the old rules: drop them.
        let rebuilt = old.cache_control != new.cache_control
            || (old.rules.compress, old.rules.compress_min, old.rules.compress_max, old.rules.precompressed)
                != (
                    new.rules.compress,
                    new.rules.compress_min,
                    new.rules.compress_max,
                    new.rules.precompressed,
                )
            || (old.hidden, old.listing, old.listing_max_entries)
                != (new.hidden, new.listing, new.listing_max_entries);
        if rebuilt {
            self.cache.forget_all().await;
        }
        if new.log_level != old.log_level {
            if let Err(e) = crate::logging::set_filter(&new.log_level) {
                tracing::error!(error = %e, "cannot change the log filter");
            }
        }
        if let (Some(tls), Some(pair)) = (&self.tls, pair) {
            tls.install(pair);
            changed.push("tls certificate (re-read)");
        }
        self.timeouts.store(Arc::new(Timeouts {
            header: new.header_timeout,
            idle: new.idle_timeout,
            send: new.send_timeout,
        }));
        self.app.store(Arc::new(app));
        keep_restart_keys(&self.config, &mut new);
        self.config = new;
        tracing::info!(changed = ?changed, "configuration reloaded");
    }
}

/// The live keys that differ.
fn live_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |key: &'static str, same: bool| {
        if !same {
            out.push(key);
        }
    };
    check("cache-max-bytes", old.cache_max_bytes == new.cache_max_bytes);
    check("cache-max-entries", old.cache_max_entries == new.cache_max_entries);
    check("hidden", old.hidden == new.hidden);
    check("listing", old.listing == new.listing);
    check("listing-max-entries", old.listing_max_entries == new.listing_max_entries);
    check("not-found-page", old.not_found_page == new.not_found_page);
    check("fallback", old.fallback == new.fallback);
    check("header-timeout", old.header_timeout == new.header_timeout);
    check("idle-timeout", old.idle_timeout == new.idle_timeout);
    check("send-timeout", old.send_timeout == new.send_timeout);
    check("grace-period", old.grace_period == new.grace_period);
    check("max-ranges", old.max_ranges == new.max_ranges);
    check("cache-control", old.cache_control == new.cache_control);
    check("compression, headers or cors", format!("{:?}", old.rules) == format!("{:?}", new.rules));
    check("access-log", old.access_log == new.access_log);
    check("access-log-format", old.observe.access_log_format == new.observe.access_log_format);
    check("cache-pin-max", old.observe.pin_max_percent == new.observe.pin_max_percent);
    check("log-level", old.log_level == new.log_level);
    check("trusted-proxy", old.trusted_proxies == new.trusted_proxies);
    check("tls-cert or tls-key", old.tls == new.tls);
    out
}

/// The keys whose new value is not applied until a restart.
fn needs_restart(old: &Config, new: &Config, has_tls: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |key: &'static str, same: bool| {
        if !same {
            out.push(key);
        }
    };
    check("root", old.root == new.root);
    check("listen", old.listen == new.listen);
    check("tls-listen", old.tls_listen == new.tls_listen);
    check("tls-cert and tls-key (no TLS listener was started)", has_tls || new.tls.is_none());
    check("unix-mode", old.unix_mode == new.unix_mode);
    check("proxy-protocol", old.proxy_protocol == new.proxy_protocol);
    check("small-file-max", old.small_file_max == new.small_file_max);
    check("window-size", old.window_size == new.window_size);
    check("revalidate", old.revalidate == new.revalidate);
    check("prefault", old.prefault == new.prefault);
    check("verified-sends", old.verified_sends == new.verified_sends);
    check(
        "follow-symlinks-outside-root",
        old.follow_symlinks_outside_root == new.follow_symlinks_outside_root,
    );
    check("max-connections", old.max_connections == new.max_connections);
    check("workers", old.workers == new.workers);
    check("etag", old.etag == new.etag);
    check("etag-hash-max", old.etag_hash_max == new.etag_hash_max);
    check("access-log-file", old.observe.access_log_file == new.observe.access_log_file);
    check("admin-listen or admin-token-file", old.observe.admin == new.observe.admin);
    check("prewarm", old.observe.prewarm == new.observe.prewarm);
    out
}

/// The restart-only keys keep the values the process runs with, so that the
/// next reload still reports them as not applied.
fn keep_restart_keys(old: &Config, new: &mut Config) {
    new.root.clone_from(&old.root);
    new.listen.clone_from(&old.listen);
    new.tls_listen.clone_from(&old.tls_listen);
    new.unix_mode = old.unix_mode;
    new.proxy_protocol = old.proxy_protocol;
    new.small_file_max = old.small_file_max;
    new.window_size = old.window_size;
    new.revalidate = old.revalidate;
    new.prefault = old.prefault;
    new.verified_sends = old.verified_sends;
    new.follow_symlinks_outside_root = old.follow_symlinks_outside_root;
    new.max_connections = old.max_connections;
    new.fd_plan = old.fd_plan;
    new.workers = old.workers;
    new.etag = old.etag;
    new.etag_hash_max = old.etag_hash_max;
}
