//! HTTP/2 connections driven frame by frame (`h2client.py`, built on the
//! `h2` library): what they may hold, how long they may stall, and what
//! floods they may send.

use crate::common::*;
use std::time::Duration;

#[test]
fn an_idle_h2_connection_pins_no_mapping_of_a_deleted_file() {
    let s = Scratch::new("h2-pin");
    let data = pattern(1_114_212, 1);
    let path = s.write("f.bin", &data);
    let srv = Server::start(&s.path);
    let mut client = H2Client::spawn(srv.port, &["get-and-hold", "/f.bin", "30"]);
    let got = client.next_line().unwrap();
    assert_eq!(got["status"], 200);
    assert_eq!(got["length"], data.len());
    std::fs::remove_file(&path).unwrap();
    // The connection stays open and silent; two sweeps (2 s apart) later the
    // deleted file must no longer be mapped.
    assert!(
        eventually(Duration::from_secs(8), || deleted_mappings(srv.pid()) == 0),
        "the idle h2 connection keeps the deleted file mapped"
    );
    drop(client);
}

/// The cache totals line a server logs at exit.
fn totals_at_exit(srv: &mut Server) -> String {
    srv.signal(rustix::process::Signal::TERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(15)), Some(0));
    let log = srv.log();
    log.lines().rev().find(|l| l.contains("cache totals")).unwrap_or_default().to_owned()
}

fn field(line: &str, name: &str) -> u64 {
    let at = line.find(&format!(" {name}=")).unwrap_or_else(|| panic!("no {name} in {line}"));
    line[at + name.len() + 2..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_reset_flood_leaves_no_load_behind_and_memory_flat() {
    let s = Scratch::new("h2-reset");
    for i in 0..5000 {
        s.write(&format!("p{i}"), format!("file {i}\n").as_bytes());
    }
    let mut srv = Launch::new(&s.path).args(&["--no-access-log"]).start();
    let warm = H2Client::run(srv.port, &["reset-flood", "2000", "/p", "/warm-missing-"]);
    assert_eq!(warm["sent"], 2000);
    let before = status_kb(srv.pid(), "RssAnon");
    // 100,000 streams: HEADERS, then RST_STREAM, half of them for files that
    // exist (their loads run while the streams are reset), half missing.
    let flood = H2Client::run(srv.port, &["reset-flood", "100000", "/p", "/missing-"]);
    assert_eq!(flood["sent"], 100_000);
    let growth = status_kb(srv.pid(), "RssAnon").saturating_sub(before);
    eprintln!("reset flood: {flood}, RssAnon growth {growth} KiB");
    assert!(growth < 8 * 1024, "RssAnon grew by {growth} KiB after 100,000 reset streams");
    assert_eq!(srv.get("/p7").body, b"file 7\n", "still serving");
    let totals = totals_at_exit(&mut srv);
    assert!(field(&totals, "misses") > 0, "some requests reached the cache: {totals}");
    assert_eq!(field(&totals, "loads_under_way"), 0, "{totals}");
}

const MIB: u64 = 1 << 20;

#[test]
fn streams_stalled_by_flow_control_pin_a_bounded_share_and_are_reset() {
    let s = Scratch::new("h2-stall");
    let sparse = s.join("sparse.bin");
    std::fs::File::create(&sparse).unwrap().set_len(1 << 30).unwrap();
    set_mode(&sparse, 0o644);
    let bystander = pattern(8 << 20, 5);
    s.write("bystander.bin", &bystander);
    // Budget 256 MiB in 16 MiB windows: one connection may pin 32 MiB.
    let srv = Launch::new(&s.path)
        .args(&["--cache-max-bytes", "256MiB", "--window-size", "16MiB", "--send-timeout", "3s"])
        .args(&["--log-level", "info,mapserve::cache=debug"])
        .start();
    let pid = srv.pid();
    let base_fds = fd_count(pid);
    // The attack: a window of 0, 17 ranges in 17 distinct windows.
    let specs: Vec<String> =
        (0..17).map(|i| format!("/sparse.bin@{}-{}", i * 16 * MIB + 5, i * 16 * MIB + 104)).collect();
    let mut args = vec!["stall", "10"];
    args.extend(specs.iter().map(String::as_str));
    let attack = H2Client::spawn(srv.port, &args);
    assert!(eventually(Duration::from_secs(5), || mapped_bytes(pid, "sparse.bin") > 0), "the attack started");
    // Every stream's range is answered (its body handed to h2) before any
    // reset: wait for all 17 access lines, then the mapped total is final.
    let answered = || srv.log().matches("target=/sparse.bin").count() >= 17;
    assert!(eventually(Duration::from_secs(5), answered), "{}", srv.log());
    let pinned = mapped_bytes(pid, "sparse.bin");
    assert!(pinned <= 32 * MIB, "one connection mapped {} MiB over its 32 MiB share", pinned / MIB);
    // Others are served, from mappings (no budget shortage: no pread spans).
    let got = run("curl", &["-sS", &srv.url("/bystander.bin")]);
    assert!(got.stdout == bystander, "the bystander's download");
    assert!(mapped_bytes(pid, "bystander.bin") > 0, "the bystander's file was mapped");
    // Every stalled stream is reset at the send timeout.
    let report = attack.wait().unwrap();
    for stream in report["streams"].as_array().unwrap() {
        let after = stream["reset_after"].as_f64().unwrap_or_else(|| panic!("not reset: {stream}"));
        assert!((2.5..6.0).contains(&after), "reset after {after} s: {stream}");
    }
    // Released: a reader of 16 windows (the whole budget) maps them all,
    // evicting what the attacker had pinned; and no descriptor is left.
    for i in 0..16 {
        let r = srv.req(
            "GET",
            "/sparse.bin",
            &[("Range", &format!("bytes={}-{}", i * 16 * MIB + 7, i * 16 * MIB + 70_000))],
        );
        assert_eq!(r.status, 206);
    }
    assert!(
        eventually(Duration::from_secs(5), || fd_count(pid) <= base_fds),
        "descriptors: {} vs {base_fds}",
        fd_count(pid)
    );
    // Nobody, bystander or later reader, ever lacked budget for a window.
    assert!(!log_at_exit(srv).contains("no budget for a window"), "the attacker pinned the budget");
}

#[test]
fn stalled_streams_cannot_take_the_descriptors_others_need() {
    let s = Scratch::new("h2-fds");
    for i in 0..400 {
        s.write(&format!("f{i}.txt"), &pattern(20_000, i));
    }
    s.write("hot.txt", b"hot");
    // 400 descriptors: 168 connections, 84 held files, 42 pipes. A 1 MiB
    // budget that the stalled streams' small files fill, so later files
    // must be read from a descriptor of their own.
    let srv = Launch::new(&s.path)
        .prefix(&["prlimit", "--nofile=400:400", "--"])
        .args(&["--cache-max-bytes", "1MiB", "--small-file-max", "64KiB", "--window-size", "512KiB"])
        .args(&["--send-timeout", "4s"])
        .start();
    let pid = srv.pid();
    assert_eq!(srv.get("/hot.txt").status, 200);
    let base_fds = fd_count(pid);
    let attackers: Vec<H2Client> = (0..10)
        .map(|c| {
            let paths: Vec<String> = (0..40).map(|i| format!("/f{}.txt", c * 40 + i)).collect();
            let mut args = vec!["stall", "12"];
            args.extend(paths.iter().map(String::as_str));
            H2Client::spawn(srv.port, &args)
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || fd_count(pid) > base_fds + 10),
        "the attack holds descriptors"
    );
    let held = settled(Duration::from_secs(5), || fd_count(pid));
    assert!(held < 400 - 100, "{held} descriptors open: too close to the limit");
    // A new client is answered at once: a cached file, and a new one (200,
    // or 503 with Retry-After when every file slot is taken), never a hang.
    let t = std::time::Instant::now();
    assert_eq!(srv.get("/hot.txt").status, 200);
    let fresh = srv.get("/f399.txt");
    assert!(
        fresh.status == 200 || (fresh.status == 503 && fresh.header("retry-after") == Some("1")),
        "{}",
        fresh.status
    );
    assert!(t.elapsed() < Duration::from_secs(2), "new clients waited {:?}", t.elapsed());
    for a in attackers {
        let report = a.wait().unwrap();
        assert!(
            report["streams"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| !s["reset_after"].is_null() || s["ended"] == true)
        );
    }
    assert!(
        eventually(Duration::from_secs(8), || fd_count(pid) <= base_fds),
        "descriptors back: {} vs {base_fds}",
        fd_count(pid)
    );
    assert_eq!(srv.get("/f399.txt").body, pattern(20_000, 399));
}

#[test]
fn control_frame_floods_get_goaway_within_a_second() {
    let s = Scratch::new("h2-flood");
    s.write("a.txt", b"a");
    let srv = Server::start(&s.path);
    for kind in ["PING", "SETTINGS", "WINDOW_UPDATE", "PRIORITY"] {
        let r = H2Client::run(srv.port, &["flood", kind, "5"]);
        eprintln!("{kind}: {r}");
        assert_eq!(r["goaway"], true, "{kind}: {r}");
        assert_eq!(r["error_code"], 11, "{kind}: ENHANCE_YOUR_CALM");
        let after = r["closed_after"].as_f64().unwrap_or_else(|| panic!("{kind}: never closed: {r}"));
        assert!(after < 1.0, "{kind}: closed after {after} s");
    }
    assert_eq!(srv.get("/a.txt").status, 200);
}

#[test]
fn a_ping_a_second_does_not_keep_an_idle_connection_open() {
    let s = Scratch::new("h2-ping");
    s.write("a.txt", b"a");
    let srv = Launch::new(&s.path).args(&["--idle-timeout", "2s", "--header-timeout", "10s"]).start();
    let r = H2Client::run(srv.port, &["ping-idle", "/a.txt", "1", "8"]);
    let after = r["closed_after"].as_f64().unwrap_or_else(|| panic!("still open after 8 s of PINGs: {r}"));
    assert!((1.5..4.0).contains(&after), "closed after {after} s");
}

#[test]
fn an_h2_connection_that_sends_no_request_is_closed_at_the_header_timeout() {
    let s = Scratch::new("h2-noreq");
    let srv = Launch::new(&s.path).args(&["--header-timeout", "1s", "--idle-timeout", "30s"]).start();
    let r = H2Client::run(srv.port, &["idle", "6"]);
    let after = r["closed_after"].as_f64().unwrap_or_else(|| panic!("still open: {r}"));
    assert!((0.7..3.0).contains(&after), "closed after {after} s");
}

#[test]
fn memory_comes_back_after_a_flood_of_stalled_streams() {
    let s = Scratch::new("h2-memory");
    for i in 0..128 {
        s.write(&format!("f{i}.txt"), &pattern(2000, i));
    }
    let srv = Launch::new(&s.path).args(&["--no-access-log", "--send-timeout", "3s"]).start();
    let pid = srv.pid();
    assert_eq!(srv.get("/f1.txt").status, 200);
    let before = status_kb(pid, "RssAnon");
    let paths: Vec<String> = (0..128).map(|i| format!("/f{i}.txt")).collect();
    let mut args = vec!["stall-many", "100", "6"];
    args.extend(paths.iter().map(String::as_str));
    let mut flood = H2Client::spawn(srv.port, &args);
    let mut peak = before;
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        peak = peak.max(status_kb(pid, "RssAnon"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = flood.next_line().unwrap();
    drop(flood);
    eprintln!("12,800 stalled streams: RssAnon {before} KiB before, {peak} KiB at the peak; {report}");
    assert!(peak > before + 8 * 1024, "the flood used memory (else this test proves nothing)");
    // Released at the send timeout, and the memory handed back.
    assert!(
        eventually(Duration::from_secs(10), || status_kb(pid, "RssAnon") < before + 6 * 1024),
        "RssAnon stays at {} KiB after the streams are gone ({before} before)",
        status_kb(pid, "RssAnon")
    );
}

#[test]
fn a_preface_sent_in_pieces_is_still_http2_to_the_flood_guard() {
    let s = Scratch::new("h2-split");
    let srv = Server::start(&s.path);
    let r = H2Client::run(srv.port, &["flood", "PING", "5", "split"]);
    assert_eq!(r["goaway"], true, "{r}");
    assert_eq!(r["error_code"], 11, "{r}");
}

#[test]
fn a_slow_http2_download_outlives_its_body_and_the_idle_timeout() {
    // The whole 1 MiB body is handed to h2 at once (its buffers hold it), so
    // the response is "done" long before the client has read it; the client
    // opens 64 KiB every 300 ms, about 5 s in all, past a 2 s idle timeout.
    let s = Scratch::new("h2-slow");
    s.write("m.bin", &pattern(1 << 20, 8));
    let srv = Launch::new(&s.path).args(&["--idle-timeout", "2s", "--send-timeout", "30s"]).start();
    let r = H2Client::run(srv.port, &["slow-get", "/m.bin", "65536", "0.3"]);
    assert_eq!(r["ended"], true, "the stream was cut: {r}");
    assert_eq!(r["bytes"], 1 << 20, "{r}");
    assert!(r["secs"].as_f64().unwrap() > 3.0, "the client really was slow: {r}");
}
