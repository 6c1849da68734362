//! Precedence and validation of the configuration layers, and agreement
//! between the built-in defaults and the annotated example file.

use super::*;
use clap::Parser;

fn cli(args: &[&str]) -> Cli {
    let mut argv = vec!["mapserve"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap()
}

fn file(text: &str) -> FileConfig {
    FileConfig::parse(text).unwrap()
}

#[test]
fn defaults_apply_when_nothing_is_given() {
    let c = resolve(cli(&[]), FileConfig::default()).unwrap();
    assert_eq!(c.listen, vec![ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap())]);
    assert_eq!(c.cache_max_bytes, DEFAULT_CACHE_MAX_BYTES);
    assert_eq!(c.header_timeout, DEFAULT_HEADER_TIMEOUT);
    assert!(!c.hidden);
    assert!(c.access_log);
    assert_eq!(c.root, std::path::absolute(".").unwrap());
}

#[test]
fn command_line_beats_file_and_file_beats_defaults() {
    let f =
        file("cache-max-bytes = \"512MiB\"\nhidden = true\nheader-timeout = 3\nlisten = [\"127.0.0.1:0\"]\n");
    let from_file = resolve(cli(&[]), f).unwrap();
    assert_eq!(from_file.cache_max_bytes, 512 << 20);
    assert!(from_file.hidden);
    assert_eq!(from_file.header_timeout, Duration::from_secs(3));
    assert_eq!(from_file.listen[0], ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()));

    let f = file("cache-max-bytes = \"512MiB\"\nhidden = true\n");
    let c = resolve(cli(&["--cache-max-bytes", "256MiB", "--hidden=false"]), f).unwrap();
    assert_eq!(c.cache_max_bytes, 256 << 20);
    assert!(!c.hidden);
}

#[test]
fn revalidate_modes_from_the_command_line_and_the_file() {
    assert_eq!(resolve(cli(&[]), FileConfig::default()).unwrap().revalidate, Revalidate::Inotify);
    for mode in [Revalidate::Inotify, Revalidate::InotifyAsync, Revalidate::Stat] {
        let c = resolve(cli(&["--revalidate", mode.as_str()]), FileConfig::default()).unwrap();
        assert_eq!(c.revalidate, mode);
        let c = resolve(cli(&[]), file(&format!("revalidate = \"{}\"\n", mode.as_str()))).unwrap();
        assert_eq!(c.revalidate, mode);
    }
    let c = resolve(cli(&["--revalidate", "stat"]), file("revalidate = \"inotify-async\"\n")).unwrap();
    assert_eq!(c.revalidate, Revalidate::Stat, "the command line wins");
    assert!(Cli::try_parse_from(["mapserve", "--revalidate", "async"]).is_err());
}

#[test]
fn flags_do_not_swallow_the_root_argument() {
    let c = cli(&["--hidden", "/tmp"]);
    assert_eq!(c.hidden, Some(true));
    assert_eq!(c.root, Some(PathBuf::from("/tmp")));
}

#[test]
fn sizes_accept_plain_and_suffixed_forms() {
    assert_eq!(cli(&["--cache-max-bytes", "268435456"]).cache_max_bytes, Some(268_435_456));
    assert_eq!(cli(&["--cache-max-bytes", "256MiB"]).cache_max_bytes, Some(268_435_456));
    assert!(Cli::try_parse_from(["mapserve", "--cache-max-bytes", "lots"]).is_err());
}

#[test]
fn repeated_listen_gives_several_addresses() {
    let c = resolve(cli(&["-l", "127.0.0.1:0", "--listen", "[::1]:0"]), FileConfig::default()).unwrap();
    assert_eq!(c.listen.len(), 2);
}

#[test]
fn bad_values_name_their_key() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--cache-max-bytes", "1KiB"], "", "cache-max-bytes"),
        (&["--cache-max-entries", "0"], "", "cache-max-entries"),
        (&["--cache-max-entries", "10000000"], "", "cache-max-entries"),
        (&["--window-size", "1000"], "", "window-size"),
        (&["--header-timeout", "0"], "", "header-timeout"),
        (&["--max-ranges", "0"], "", "max-ranges"),
        (&["--workers", "5000"], "", "workers"),
        (&["--listen", "nonsense"], "", "listen"),
        (&["/definitely/not/here"], "", "root"),
        (&[], "cache-max-bytes = \"many\"", "cache-max-bytes"),
        (&[], "idle-timeout = \"soon\"", "idle-timeout"),
        (&[], "revalidate = \"sometimes\"", "revalidate"),
        (&["--log-level", "[["], "", "log-level"),
    ];
    for (args, text, key) in cases {
        let err = resolve(cli(args), file(text)).unwrap_err().to_string();
        assert!(err.contains(key), "{args:?} {text:?}: {err}");
    }
}

#[test]
fn unknown_file_keys_are_refused_with_their_name() {
    let err = FileConfig::parse("cache-max-byte = 5\n").unwrap_err().to_string();
    assert!(err.contains("cache-max-byte"), "{err}");
}

#[test]
fn example_config_documents_every_default() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/mapserve.toml")).unwrap();
    // Every key appears, commented out, with its default value.
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")))
        .map(|l| format!("{l}\n"))
        .collect();
    let f = FileConfig::parse(&uncommented).unwrap();
    let from_example = resolve(Cli::default(), f).unwrap();
    let defaults = resolve(Cli::default(), FileConfig::default()).unwrap();
    assert_eq!(format!("{:?}", from_example.listen), format!("{:?}", defaults.listen));
    assert_eq!(from_example.cache_max_bytes, defaults.cache_max_bytes);
    assert_eq!(from_example.cache_max_entries, defaults.cache_max_entries);
    assert_eq!(from_example.small_file_max, defaults.small_file_max);
    assert_eq!(from_example.window_size, defaults.window_size);
    assert_eq!(from_example.hidden, defaults.hidden);
    assert_eq!(from_example.revalidate, defaults.revalidate);
    assert_eq!(from_example.prefault, defaults.prefault);
    assert_eq!(from_example.verified_sends, defaults.verified_sends);
    assert_eq!(from_example.follow_symlinks_outside_root, defaults.follow_symlinks_outside_root);
    assert_eq!(from_example.header_timeout, defaults.header_timeout);
    assert_eq!(from_example.idle_timeout, defaults.idle_timeout);
    assert_eq!(from_example.send_timeout, defaults.send_timeout);
    assert_eq!(from_example.grace_period, defaults.grace_period);
    assert_eq!(from_example.max_ranges, defaults.max_ranges);
    assert_eq!(from_example.cache_control, defaults.cache_control);
    assert_eq!(from_example.access_log, defaults.access_log);
    assert_eq!(from_example.log_level, defaults.log_level);
    assert_eq!(from_example.observe, defaults.observe);
    assert_eq!(from_example.workers, defaults.workers);
    assert_eq!(from_example.unix_mode, defaults.unix_mode);
    assert_eq!(from_example.tls_listen, defaults.tls_listen);
    assert_eq!(from_example.proxy_protocol, defaults.proxy_protocol);
    assert_eq!(from_example.trusted_proxies, defaults.trusted_proxies);
    assert_eq!(from_example.etag, defaults.etag);
    assert_eq!(from_example.etag_hash_max, defaults.etag_hash_max);
    assert_eq!(from_example.listing, defaults.listing);
    assert_eq!(from_example.listing_max_entries, defaults.listing_max_entries);
    assert_eq!(format!("{:?}", from_example.rules), format!("{:?}", defaults.rules));
    // And every FileConfig key is documented.
    for key in [
        "root",
        "listen",
        "unix-mode",
        "tls-listen",
        "tls-cert",
        "tls-key",
        "proxy-protocol",
        "trusted-proxy",
        "etag",
        "etag-hash-max",
        "cache-max-bytes",
        "cache-max-entries",
        "small-file-max",
        "window-size",
        "revalidate",
        "prefault",
        "verified-sends",
        "hidden",
        "listing",
        "listing-max-entries",
        "not-found-page",
        "fallback",
        "follow-symlinks-outside-root",
        "header-timeout",
        "idle-timeout",
        "send-timeout",
        "max-connections",
        "grace-period",
        "max-ranges",
        "cache-control",
        "compress",
        "compress-min",
        "compress-max",
        "precompressed",
        "header",
        "cors",
        "access-log",
        "log-level",
        "workers",
    ] {
        assert!(text.contains(&format!("{key} =")), "config/mapserve.toml lacks {key}");
    }
}

#[test]
fn file_booleans_take_the_command_line_words() {
    for (text, want) in [
        ("hidden = true", true),
        ("hidden = \"yes\"", true),
        ("hidden = \"on\"", true),
        ("hidden = 1", true),
        ("hidden = \"1\"", true),
        ("hidden = \"No\"", false),
        ("hidden = \"off\"", false),
        ("hidden = 0", false),
    ] {
        let c = resolve(cli(&[]), file(text)).unwrap();
        assert_eq!(c.hidden, want, "{text}");
    }
    let c = resolve(cli(&[]), file("access-log = \"no\"\nprefault = \"off\"")).unwrap();
    assert!(!c.access_log && !c.prefault);
    for bad in ["hidden = \"maybe\"", "hidden = 2"] {
        let err = resolve(cli(&[]), file(bad)).unwrap_err().to_string();
        assert!(err.contains("`hidden`"), "{bad}: {err}");
    }
}

#[test]
fn listing_defaults_on_and_pages_are_checked() {
    let c = resolve(cli(&[]), file("")).unwrap();
    assert!(c.listing);
    assert_eq!(c.listing_max_entries, 10_000);
    assert_eq!((c.not_found_page, c.fallback), (None, None));
    let c = resolve(cli(&["--listing=false", "--fallback", "/app//index.html"]), file("")).unwrap();
    assert!(!c.listing);
    assert_eq!(c.fallback.as_deref(), Some("app/index.html"));
    let c = resolve(cli(&[]), file("listing = \"off\"\nnot-found-page = \"404.html\"")).unwrap();
    assert!(!c.listing);
    assert_eq!(c.not_found_page.as_deref(), Some("404.html"));
    for bad in ["../x.html", "a/./b", "dir/", ".secret/404.html", "a\\b"] {
        let err = resolve(cli(&["--not-found-page", bad]), file("")).unwrap_err().to_string();
        assert!(err.contains("not-found-page"), "{bad}: {err}");
    }
    assert!(resolve(cli(&["--hidden", "--fallback", ".app/index.html"]), file("")).is_ok());
    assert!(resolve(cli(&["--listing-max-entries", "0"]), file("")).is_err());
}

#[test]
fn response_rules_are_checked_and_name_the_rule() {
    let c = resolve(cli(&["--header", "X-Served-By: mapserve", "--cors"]), file("")).unwrap();
    assert_eq!(c.rules.headers.len(), 1);
    assert_eq!(c.rules.cors, Some(vec!["*".to_owned()]));
    assert!(c.rules.compress && c.rules.precompressed);
    assert_eq!((c.rules.compress_min, c.rules.compress_max), (1024, 32 << 20));
    let c = resolve(cli(&["--cors=https://a.example, http://localhost:3000"]), file("")).unwrap();
    assert_eq!(c.rules.cors.unwrap(), ["https://a.example", "http://localhost:3000"]);
    let ok = "[[headers]]\nmatch = \"/assets/**\"\nset = { \"Cache-Control\" = \"immutable\" }\n";
    assert_eq!(resolve(cli(&[]), file(ok)).unwrap().rules.header_rules.len(), 1);
    for (args, text, needle) in [
        (&["--header", "no colon"][..], "", "`no colon` is not `Name: value`"),
        (&["--header", "Bad Name: x"][..], "", "is not a header name"),
        (&["--header", "Content-Length: 5"][..], "", "cannot be overridden"),
        (&["--cors=https://a.example/path"][..], "", "is not `*` or an origin"),
        (&["--compress-min", "2MiB", "--compress-max", "1MiB"][..], "", "compress-max"),
        (
            &[][..],
            "[[headers]]\nmatch = \"/a/[\"\nset = { X = \"1\" }\n",
            "[[headers]] #1 (match = \"/a/[\")",
        ),
        (
            &[][..],
            "[[headers]]\nmatch = \"/a\"\nset = { X = \"1\" }\n[[headers]]\nmatch = \"/b\"\nset = { \"X Y\" = \"1\" }\n",
            "[[headers]] #2",
        ),
        (
            &[][..],
            "[[headers]]\nmatch = \"/a\"\nset = { ETag = \"\\\"x\\\"\" }\n",
            "`etag` is set by mapserve",
        ),
        (&[][..], "[[headers]]\nmatch = \"/a\"\nset = { X = \"a\\u0001b\" }\n", "not a valid header value"),
        (&[][..], "[[headers]]\nmatch = \"assets/*\"\nset = { X = \"1\" }\n", "must start with `/`"),
        (&[][..], "[[headers]]\nmatch = \"*.js\"\nset = { X = \"1\" }\n", "must start with `/` or `**`"),
    ] {
        let err = resolve(cli(args), file(text)).unwrap_err().to_string();
        assert!(err.contains(needle), "{args:?} {text}: {err}");
    }
}
