//! The command-line contract: precedence across CLI, environment, config file
//! and defaults; refusal of bad values with the key named; --help.

use crate::common::*;
use std::process::Command;
use std::time::Duration;

fn mapserve() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mapserve"))
}

#[test]
fn help_lists_every_option() {
    let out = mapserve().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--listen",
        "--config",
        "--cache-max-bytes",
        "--cache-max-entries",
        "--hidden",
        "--follow-symlinks-outside-root",
        "--header-timeout",
        "--idle-timeout",
        "--send-timeout",
        "--max-connections",
        "--grace-period",
        "--no-access-log",
        "--compress",
        "--compress-min",
        "--compress-max",
        "--precompressed",
        "--header",
        "--cors",
        "MAPSERVE_LISTEN",
        "MAPSERVE_CORS",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}");
    }
    // Every option --help shows is in the README's table (as a whole word).
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme.split("## Usage").nth(1).unwrap().split("\n## ").next().unwrap();
    let options: std::collections::BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '=' || c == '<')
        .map(|w| w.trim_end_matches([')', ';', '.', ':']))
        .filter(|w| w.starts_with("--") && w.len() > 2 && !["--help", "--version"].contains(w))
        .collect();
    assert!(options.len() > 30, "{options:?}");
    for opt in options {
        let whole = table.match_indices(opt).any(|(at, _)| {
            !table[at + opt.len()..].starts_with(|c: char| c.is_ascii_lowercase() || c == '-')
        });
        assert!(whole, "README's option table lacks {opt}");
    }
}

#[test]
fn bad_values_stop_start_up_naming_the_key() {
    let s = Scratch::new("badcfg");
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--cache-max-bytes", "lots"], vec![], "cache-max-bytes"),
        (vec![], vec![("MAPSERVE_CACHE_MAX_BYTES", "lots")], "MAPSERVE_CACHE_MAX_BYTES"),
        (vec![], vec![("MAPSERVE_HEADER_TIMEOUT", "0")], "MAPSERVE_HEADER_TIMEOUT"),
        (vec![], vec![("MAPSERVE_HIDDEN", "maybe")], "MAPSERVE_HIDDEN"),
        (vec![], vec![("MAPSERVE_WINDOW_SIZE", "12345")], "MAPSERVE_WINDOW_SIZE"),
        (vec!["--listen", "not-an-address"], vec![], "listen"),
        (vec!["--window-size", "12345"], vec![], "window-size"),
    ];
    for (args, env, key) in cases {
        let mut cmd = mapserve();
        cmd.arg(&s.path).args(&args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{args:?} {env:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{args:?} {env:?}: {err}");
    }
    let cfg = s.write("bad.toml", b"listen = \"127.0.0.1:0\"\ncache-max-byts = 5\n");
    let out = mapserve().arg(&s.path).arg("-c").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cache-max-byts"));
}

#[test]
fn precedence_is_cli_then_env_then_file_then_default() {
    let s = Scratch::new("precedence");
    s.write(".hidden.txt", b"dot");
    let cfg = s.write("cfg.toml", b"hidden = true\ncache-control = \"from-file\"\n");
    let cfg = cfg.to_str().unwrap();
    // File alone.
    let srv = Launch::new(&s.path).args(&["-c", cfg]).start();
    let r = srv.get("/.hidden.txt");
    assert_eq!((r.status, r.header("cache-control")), (200, Some("from-file")));
    drop(srv);
    // Env beats file.
    let srv = Launch::new(&s.path)
        .args(&["-c", cfg])
        .env("MAPSERVE_CACHE_CONTROL", "from-env")
        .env("MAPSERVE_HIDDEN", "false")
        .start();
    assert_eq!(srv.get("/.hidden.txt").status, 404);
    assert_eq!(srv.get("/cfg.toml").header("cache-control"), Some("from-env"));
    drop(srv);
    // CLI beats env.
    let srv = Launch::new(&s.path)
        .args(&["-c", cfg, "--cache-control", "from-cli", "--hidden"])
        .env("MAPSERVE_CACHE_CONTROL", "from-env")
        .env("MAPSERVE_HIDDEN", "false")
        .start();
    assert_eq!(srv.get("/.hidden.txt").header("cache-control"), Some("from-cli"));
    drop(srv);
    // The environment can carry the listen address.
    let srv = Launch::new(&s.path).args(&["-l", "127.0.0.1:1"]).start_with_env_listen();
    assert_eq!(srv.get("/cfg.toml").status, 200);
}

#[test]
fn repeated_listen_serves_on_every_address() {
    let s = Scratch::new("twolisten");
    s.write("a.txt", b"a");
    let srv = Launch::new(&s.path).args(&["-l", "127.0.0.1:0", "-l", "127.0.0.1:0"]).start();
    let log = srv.log();
    assert_eq!(srv.get("/a.txt").body, b"a");
    // Both lines are printed; wait for the second.
    assert!(
        eventually(std::time::Duration::from_secs(5), || srv.log().matches("listening on http://").count()
            == 2),
        "{log}"
    );
}

#[test]
fn access_log_lines_and_the_flag_to_turn_them_off() {
    let s = Scratch::new("accesslog");
    s.write("a.txt", b"abc");
    let srv = Server::start(&s.path);
    srv.get("/a.txt?q=1");
    assert!(
        eventually(std::time::Duration::from_secs(5), || {
            let log = srv.log();
            log.contains("method=GET")
                && log.contains("target=/a.txt?q=1")
                && log.contains("status=200")
                && log.contains("bytes=3")
        }),
        "{}",
        srv.log()
    );
    drop(srv);
    let srv = Launch::new(&s.path).arg("--no-access-log").start();
    assert_eq!(srv.get("/a.txt").status, 200);
    assert!(!log_at_exit(srv).contains("status=200"));
}

#[test]
fn a_port_in_use_is_reported_once() {
    let s = Scratch::new("inuse");
    let first = Server::start(&s.path);
    let out = mapserve().arg(&s.path).args(["-l", &format!("127.0.0.1:{}", first.port)]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{}", first.port)), "{err}");
}

#[test]
fn file_booleans_accept_the_command_line_words() {
    let s = Scratch::new("cfgbool");
    s.write(".hidden.txt", b"dot");
    let cfg = s.write("c.toml", b"hidden = \"yes\"\naccess-log = \"off\"\n");
    let srv = Launch::new(&s.path).args(&["-c", cfg.to_str().unwrap()]).start();
    assert_eq!(srv.get("/.hidden.txt").status, 200);
    let _ = srv.get("/c.toml");
    assert!(!log_at_exit(srv).contains("mapserve::access"), "access log off");
}

#[test]
fn the_connection_cap_is_sized_from_the_raised_descriptor_limit() {
    let s = Scratch::new("autocap");
    let srv = Launch::new(&s.path).prefix(&["prlimit", "--nofile=1024:20000", "--"]).start();
    assert!(eventually(Duration::from_secs(5), || srv.log().contains("mapserve starting")));
    let log = srv.log();
    let line = log.lines().find(|l| l.contains("mapserve starting")).unwrap();
    assert!(line.contains("nofile=20000"), "{line}");
    let plan = mapserve::limits::FdPlan::new(20_000, None);
    assert!(line.contains(&format!("max_connections={}", plan.connections)), "{line}");
    assert!(line.contains(&format!("response_files={}", plan.response_files)), "{line}");
    assert!(plan.connections > 736 * 10, "sized from 20000, not 1024: {plan:?}");
}
