//! The shipped `config/mapserve.socket` and `config/mapserve.service`: run
//! the way they say under `systemd-socket-activate` (addresses and root
//! replaced by scratch ones), with and without their HTTPS lines, checked by
//! `systemd-analyze`, and their system call filter compared with the calls
//! mapserve makes under strace.

use super::*;

/// A unit file's `Key=value` lines: the live ones, and those commented out
/// as `#Key=value` (the optional parts the comments describe).
struct Unit {
    text: String,
}

impl Unit {
    fn read(name: &str) -> Unit {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name);
        Unit { text: std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) }
    }

    fn values(&self, key: &str) -> Vec<String> {
        self.matching(key, "")
    }

    fn commented(&self, key: &str) -> Vec<String> {
        self.matching(key, "#")
    }

    fn matching(&self, key: &str, prefix: &str) -> Vec<String> {
        let start = format!("{prefix}{key}=");
        self.text
            .lines()
            .filter_map(|l| l.trim_end().strip_prefix(start.as_str()))
            .map(str::to_owned)
            .collect()
    }

    fn one(&self, key: &str) -> String {
        let v = self.values(key);
        assert_eq!(v.len(), 1, "{key}= should appear once: {v:?}");
        v[0].clone()
    }
}

/// Splits a systemd command line or Environment= value (double quotes
/// group; no other syntax is used in the units).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cur, mut quoted, mut any) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// A ListenStream= value as the test's stand-in: TCP on 127.0.0.1 and a
/// free port, a unix socket in the scratch directory.
fn stand_in(listen: &str, s: &Scratch, n: usize) -> String {
    if listen.starts_with('/') {
        s.join(&format!("unit-{n}.sock")).display().to_string()
    } else {
        let port = listen.rsplit(':').next().unwrap();
        assert!(port.parse::<u16>().is_ok(), "ListenStream={listen}: not a port or a path");
        format!("127.0.0.1:{}", free_port())
    }
}

fn parse_seconds(v: &str) -> f64 {
    let v = v.trim();
    if let Some(ms) = v.strip_suffix("ms") {
        ms.parse::<f64>().unwrap() / 1000.0
    } else if let Some(m) = v.strip_suffix("min") {
        m.parse::<f64>().unwrap() * 60.0
    } else {
        v.trim_end_matches('s').parse().unwrap_or_else(|_| panic!("not a duration: {v}"))
    }
}

/// What the units say to run: ExecStart= with the built binary and a
/// scratch root, the sockets with stand-in addresses and their names, the
/// Environment= variables.
struct Plan {
    argv: Vec<String>,
    sockets: Vec<(String, String)>,
    env: Vec<(String, String)>,
}

fn plan_from_units(s: &Scratch, www: &Path, with_tls: Option<&Leaf>) -> Plan {
    let (socket, service) = (Unit::read("mapserve.socket"), Unit::read("mapserve.service"));
    let name = socket.values("FileDescriptorName").pop().unwrap_or_else(|| "mapserve.socket".to_owned());
    let mut sockets: Vec<(String, String)> = socket
        .values("ListenStream")
        .iter()
        .enumerate()
        .map(|(n, l)| (stand_in(l, s, n), name.clone()))
        .collect();
    assert!(!sockets.is_empty(), "mapserve.socket has no ListenStream=");
    let exec = words(service.one("ExecStart").trim_start_matches(['-', '@', '+', '!', ':']));
    assert!(exec[0].starts_with('/') && exec[0].ends_with("/mapserve"), "ExecStart= runs {}", exec[0]);
    let root = &exec[1];
    assert!(root.starts_with('/'), "ExecStart=: the first argument should be the root: {exec:?}");
    assert!(
        service.values("ReadOnlyPaths").iter().any(|v| words(v).contains(root)),
        "ReadOnlyPaths= does not name the root {root}"
    );
    let bin =
        std::env::var("MAPSERVE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mapserve").to_owned());
    let mut argv = vec![bin, www.display().to_string()];
    argv.extend(exec[2..].iter().cloned());
    let mut env: Vec<(String, String)> = service
        .values("Environment")
        .iter()
        .flat_map(|v| words(v))
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    if let Some(leaf) = with_tls {
        // The commented-out HTTPS parts: the socket unit in the comments,
        // and the service's certificate and key variables.
        let tls_name =
            socket.commented("FileDescriptorName").pop().expect("no #FileDescriptorName= for HTTPS");
        let tls_listen = socket.commented("ListenStream");
        assert!(!tls_listen.is_empty(), "no #ListenStream= for HTTPS");
        for (n, l) in tls_listen.iter().enumerate() {
            sockets.push((stand_in(l, s, 100 + n), tls_name.clone()));
        }
        let mut found = BTreeSet::new();
        for kv in service.commented("Environment").iter().flat_map(|v| words(v)) {
            let (k, v) = kv.split_once('=').unwrap();
            assert!(v.starts_with('/'), "{k}: not an absolute path: {v}");
            let file = match k {
                "MAPSERVE_TLS_CERT" => &leaf.cert,
                "MAPSERVE_TLS_KEY" => &leaf.key,
                _ => continue,
            };
            found.insert(k.to_owned());
            env.push((k.to_owned(), file.display().to_string()));
        }
        assert_eq!(
            found.len(),
            2,
            "the service's comments should give MAPSERVE_TLS_CERT and MAPSERVE_TLS_KEY"
        );
    }
    Plan { argv, sockets, env }
}

#[test]
fn the_shipped_units_run_mapserve_as_they_say() {
    if !have_activate("the_shipped_units_run_mapserve_as_they_say") {
        return;
    }
    let (socket, service) = (Unit::read("mapserve.socket"), Unit::read("mapserve.service"));
    assert_eq!(service.one("Type"), "notify");
    assert_eq!(service.one("ExecReload"), "/bin/kill -HUP $MAINPID");
    for name in socket.values("FileDescriptorName") {
        assert!(name != "tls" && !name.starts_with("tls-"), "plain sockets named {name} would be TLS");
    }
    let s = Scratch::new("sd-units");
    s.write("www/a.txt", b"as the units say");
    let www = s.join("www");
    let (notify, notify_path) = notify_socket(&s);
    let plan = plan_from_units(&s, &www, None);
    let mut env: Vec<(&str, &str)> = plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("NOTIFY_SOCKET", notify_path.to_str().unwrap()));
    let sockets: Vec<(String, &str)> = plan.sockets.iter().map(|(a, n)| (a.clone(), n.as_str())).collect();
    let mut prefix = activate(&sockets, &env);
    prefix.extend(WITHOUT_DEFAULT_LISTEN.map(String::from));
    let tcp = plan.sockets.iter().find(|(a, _)| a.starts_with("127.0.0.1:")).expect("a TCP ListenStream=");
    let port: u16 = tcp.0.rsplit(':').next().unwrap().parse().unwrap();
    let first = first_connection(port, "/a.txt");
    // The harness runs the binary and ROOT; the rest is ExecStart= as written.
    let mut srv = Launch::new(&www).prefix(&strs(&prefix)).args(&strs(&plan.argv[2..])).start();
    assert_eq!(recv_state(&notify), "READY=1", "Type=notify");
    assert_eq!(Resp::parse(&first.join().unwrap(), false).body, b"as the units say");
    assert!(
        eventually(Duration::from_secs(5), || srv.listening().len() == plan.sockets.len()),
        "{}",
        srv.log()
    );
    for (addr, _) in &plan.sockets {
        if addr.starts_with('/') {
            let out = curl_unix(Path::new(addr), "/a.txt");
            assert_eq!(out.stdout, b"as the units say", "{}", String::from_utf8_lossy(&out.stderr));
        } else {
            let out = run("curl", &["-sSf", "--max-time", "10", &format!("http://{addr}/a.txt")]);
            assert_eq!(out.stdout, b"as the units say", "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    assert!(srv.log().contains("socket activation"), "{}", srv.log());
    // ExecReload=, with $MAINPID.
    await_sighup_handler(&srv);
    let reload = words(&service.one("ExecReload").replace("$MAINPID", &srv.pid().to_string()));
    let out = run(&reload[0], &strs(&reload[1..]));
    assert!(out.status.success(), "{out:?}");
    assert!(
        eventually(Duration::from_secs(10), || srv.log().contains("configuration reloaded")),
        "{}",
        srv.log()
    );
    assert!(srv.alive());
    // KillSignal= (SIGTERM): STOPPING=1, then exit 0 well within
    // TimeoutStopSec=, which is longer than the grace period ExecStart= sets.
    assert_eq!(service.one("KillSignal"), "SIGTERM");
    let stop_timeout = parse_seconds(&service.one("TimeoutStopSec"));
    if let Some(at) = plan.argv.iter().position(|a| a == "--grace-period") {
        assert!(
            parse_seconds(&plan.argv[at + 1]) < stop_timeout,
            "TimeoutStopSec= is not longer than the grace period"
        );
    }
    srv.signal(Signal::TERM);
    assert_eq!(recv_state(&notify), "STOPPING=1");
    assert_eq!(srv.wait_exit(Duration::from_secs(15)), Some(0), "{}", srv.log());
}

#[test]
fn the_units_with_their_https_lines_serve_https() {
    if !have_activate("the_units_with_their_https_lines_serve_https") {
        return;
    }
    let s = Scratch::new("sd-units-tls");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 0x1001, KeyKind::EcPkcs8);
    s.write("www/a.txt", b"https as the units say");
    let www = s.join("www");
    let plan = plan_from_units(&s, &www, Some(&leaf));
    let env: Vec<(&str, &str)> = plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let sockets: Vec<(String, &str)> = plan.sockets.iter().map(|(a, n)| (a.clone(), n.as_str())).collect();
    let mut prefix = activate(&sockets, &env);
    prefix.extend(WITHOUT_DEFAULT_LISTEN.map(String::from));
    let tcp = plan.sockets.iter().find(|(a, _)| a.starts_with("127.0.0.1:")).unwrap();
    let port: u16 = tcp.0.rsplit(':').next().unwrap().parse().unwrap();
    let first = first_connection(port, "/a.txt");
    let srv = Launch::new(&www).prefix(&strs(&prefix)).args(&strs(&plan.argv[2..])).start();
    assert_eq!(Resp::parse(&first.join().unwrap(), false).status, 200);
    let tls: Vec<&String> =
        plan.sockets.iter().filter(|(_, n)| n == "tls" || n.starts_with("tls-")).map(|(a, _)| a).collect();
    assert!(!tls.is_empty(), "the commented HTTPS socket is not named for TLS: {:?}", plan.sockets);
    assert_eq!(https_ports(&srv, tls.len()).len(), tls.len());
    for addr in tls {
        let url = format!("https://{addr}/a.txt");
        let out = run("curl", &["-sSf", "--max-time", "10", "--cacert", pki.ca.to_str().unwrap(), &url]);
        assert_eq!(out.stdout, b"https as the units say", "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The units, and the HTTPS socket unit their comments describe, in a
/// scratch directory, with ExecStart= naming the built binary (verify
/// checks that it exists).
fn units_for_verify(s: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    let dir = s.join("units");
    std::fs::create_dir_all(&dir).unwrap();
    let bin =
        std::env::var("MAPSERVE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mapserve").to_owned());
    let service = Unit::read("mapserve.service");
    let exec = words(&service.one("ExecStart"));
    let text = service.text.replace(&format!("ExecStart={}", exec[0]), &format!("ExecStart={bin}"));
    let service_path = dir.join("mapserve.service");
    std::fs::write(&service_path, text).unwrap();
    let socket = Unit::read("mapserve.socket");
    let socket_path = dir.join("mapserve.socket");
    std::fs::write(&socket_path, &socket.text).unwrap();
    // The commented block: every `#[Section]`, `#Key=value` and `#` line
    // from the first `#[Unit]` on.
    let from = socket.text.find("\n#[Unit]").expect("no commented HTTPS socket unit in mapserve.socket");
    let tls: Vec<&str> = socket.text[from + 1..]
        .lines()
        .take_while(|l| l.starts_with('#') && !l.starts_with("# "))
        .map(|l| &l[1..])
        .collect();
    let tls_path = dir.join("mapserve-tls.socket");
    std::fs::write(&tls_path, tls.join("\n") + "\n").unwrap();
    (socket_path, service_path, tls_path)
}

#[test]
fn systemd_analyze_accepts_the_units() {
    let test = "systemd_analyze_accepts_the_units";
    if !works("systemd-analyze", &["--version"]) {
        skip(test, "systemd-analyze is not installed");
        return;
    }
    let s = Scratch::new("sd-verify");
    // Whether verify works here at all (it needs no running systemd, but a
    // container may lack what it loads).
    let probe = s.write("probe.service", b"[Service]\nExecStart=/bin/true\n");
    let ok = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&probe).output().unwrap();
    if !ok.status.success() || !ok.stderr.is_empty() {
        skip(
            test,
            &format!("systemd-analyze verify does not work here: {}", String::from_utf8_lossy(&ok.stderr)),
        );
        return;
    }
    let (socket, service, tls) = units_for_verify(&s);
    let tls_text = std::fs::read_to_string(&tls).unwrap();
    assert!(
        tls_text.contains("FileDescriptorName=tls") && tls_text.contains("Service=mapserve.service"),
        "{tls_text}"
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args([&socket, &service, &tls])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
    // The sandboxing, as systemd rates it (0 best, 10 worst).
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&service)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().find_map(|l| l.split_once("Overall exposure level for mapserve.service: ")) {
        Some((_, rest)) => {
            let level: f64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            assert!(level <= 2.0, "exposure {level}: {text}");
        }
        None => skip(
            test,
            &format!("systemd-analyze security --offline: {}", String::from_utf8_lossy(&out.stderr)),
        ),
    }
}

/// systemd's system call groups (`systemd-analyze syscall-filter`), each
/// expanded to its calls.
fn syscall_groups() -> BTreeMap<String, BTreeSet<String>> {
    let out = run("systemd-analyze", &["syscall-filter", "--no-pager"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut raw: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(group) = line.strip_prefix('@') {
            current = Some(format!("@{}", group.trim()));
            raw.entry(current.clone().unwrap()).or_default();
        } else if let (Some(item), Some(group)) = (line.strip_prefix("    "), &current) {
            if !item.starts_with('#') && !item.trim().is_empty() {
                raw.get_mut(group).unwrap().push(item.trim().to_owned());
            }
        } else if line.starts_with('#') {
            current = None;
        }
    }
    fn expand(name: &str, raw: &BTreeMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
        for item in raw.get(name).map(Vec::as_slice).unwrap_or_default() {
            if item.starts_with('@') {
                expand(item, raw, out);
            } else {
                out.insert(item.clone());
            }
        }
    }
    raw.keys()
        .map(|g| {
            let mut set = BTreeSet::new();
            expand(g, &raw, &mut set);
            (g.clone(), set)
        })
        .collect()
}

/// A traced mapserve, killed on drop: killing strace (the harness's child)
/// detaches it and leaves it running.
struct Tracee(u32);

impl Drop for Tracee {
    fn drop(&mut self) {
        if comm(self.0) == "mapserve" {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(self.0 as i32).unwrap(),
                Signal::KILL,
            );
        }
    }
}

#[test]
fn the_services_system_call_filter_allows_every_call_mapserve_makes() {
    let test = "the_services_system_call_filter_allows_every_call_mapserve_makes";
    if !works("strace", &["-f", "-qq", "-o", "/dev/null", "true"])
        || !works("systemd-analyze", &["--version"])
    {
        skip(test, "strace (that can trace here) and systemd-analyze are needed");
        return;
    }
    // What the unit allows: its SystemCallFilter= lines in order.
    let groups = syscall_groups();
    let resolve = |word: &str| -> BTreeSet<String> {
        if word.starts_with('@') {
            groups.get(word).unwrap_or_else(|| panic!("unknown group {word}")).clone()
        } else {
            BTreeSet::from([word.to_owned()])
        }
    };
    let mut allowed = BTreeSet::new();
    for line in Unit::read("mapserve.service").values("SystemCallFilter") {
        match line.strip_prefix('~') {
            Some(deny) => {
                for w in words(deny) {
                    allowed.retain(|c| !resolve(&w).contains(c));
                }
            }
            None => words(&line).iter().for_each(|w| allowed.extend(resolve(w))),
        }
    }
    assert!(allowed.contains("read") && !allowed.contains("reboot"), "{allowed:?}");

    // mapserve under strace, doing a bit of everything.
    let s = Scratch::new("sd-syscalls");
    let pki = Pki::new(&s.join("pki"));
    let leaf = pki.issue("leaf", "localhost", 0x1001, KeyKind::EcPkcs8);
    let big = pattern(3 << 20, 5);
    s.write("www/big.bin", &big);
    s.write("www/t.txt", &b"compress me please ".repeat(500));
    s.write("www/dir/x.txt", b"x");
    // Not beside www/: mapserve watches the directories along the root's
    // path, and strace writing there would wake it at every line it writes.
    let trace = s.join("trace/trace.txt");
    std::fs::create_dir_all(trace.parent().unwrap()).unwrap();
    let mut srv = Launch::new(&s.join("www"))
        .prefix(&["strace", "-f", "-qq", "-o", trace.to_str().unwrap()])
        .args(&[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            leaf.cert.to_str().unwrap(),
            "--tls-key",
            leaf.key.to_str().unwrap(),
        ])
        .args(&["--window-size", "1MiB", "--small-file-max", "4KiB"])
        .start();
    let tls = https_ports(&srv, 1)[0];
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", srv.pid())).unwrap();
    let pid: u32 = children.split_whitespace().next().expect("no traced child").parse().unwrap();
    assert_eq!(comm(pid), "mapserve");
    let _tracee = Tracee(pid);
    assert_eq!(srv.get("/big.bin").body.len(), big.len());
    assert_eq!(srv.req("GET", "/big.bin", &[("Range", "bytes=1048000-1049000")]).status, 206);
    assert_eq!(
        srv.req("GET", "/t.txt", &[("Accept-Encoding", "gzip")]).header("content-encoding"),
        Some("gzip")
    );
    assert_eq!(srv.req("GET", "/dir/", &[("Accept", "text/html")]).status, 200);
    assert_eq!(srv.get("/missing").status, 404);
    let url = format!("https://127.0.0.1:{tls}/big.bin");
    let got = s.join("got.bin");
    let out = run(
        "curl",
        &["-sSf", "--http2", "--cacert", pki.ca.to_str().unwrap(), "-o", got.to_str().unwrap(), &url],
    );
    assert!(out.status.success(), "{out:?}");
    let out = run(
        "curl",
        &["-sSf", "--http1.1", "--cacert", pki.ca.to_str().unwrap(), "-o", got.to_str().unwrap(), &url],
    );
    assert!(out.status.success(), "{out:?}");
    let target = rustix::process::Pid::from_raw(pid as i32).unwrap();
    assert!(eventually(Duration::from_secs(10), || catches_signal(pid, 1)));
    let _ = rustix::process::kill_process(target, Signal::HUP);
    assert!(
        eventually(Duration::from_secs(10), || srv.log().contains("configuration reloaded")),
        "{}",
        srv.log()
    );
    let _ = rustix::process::kill_process(target, Signal::TERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(20)), Some(0), "{}", srv.log());

    let text = std::fs::read_to_string(&trace).unwrap();
    let mut used = BTreeSet::new();
    for line in text.lines() {
        // `PID name(args) = result`, `PID <... name resumed>`, `+++`, `---`.
        let Some((_, rest)) = line.split_once(' ') else { continue };
        let rest = rest.trim_start();
        let rest = rest.strip_prefix("<... ").unwrap_or(rest);
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty()
            && (rest[name.len()..].starts_with('(') || rest[name.len()..].starts_with(" resumed"))
        {
            used.insert(name);
        }
    }
    assert!(used.contains("accept4") || used.contains("accept"), "the trace missed the server: {used:?}");
    let denied: Vec<&String> = used.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(denied.is_empty(), "SystemCallFilter= would refuse {denied:?} (mapserve used {used:?})");
}
