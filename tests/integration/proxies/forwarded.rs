//! Forwarded headers: spoofed by untrusted clients (nothing changes) and
//! believed from trusted peers (client, scheme, redirect prefix, relative
//! listing links).

use super::*;

// ---------------------------------------------------------------------------
// 4. Spoofing
// ---------------------------------------------------------------------------

const SPOOF: [(&str, &str); 4] = [
    ("Forwarded", "for=198.51.100.66;proto=https"),
    ("X-Forwarded-For", "203.0.113.66"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Prefix", "/evil"),
];

/// A direct client sending every forwarding header: logged as itself over
/// plain HTTP, redirected without the prefix.
fn spoof_changes_nothing(srv: &Server, tag: &str) {
    let (r, local) = http(srv.port, &[get_with(&format!("/a.txt?{tag}"), &SPOOF).as_bytes()]);
    assert_eq!(r.status, 200);
    let a = access_for(srv, &format!("/a.txt?{tag}"));
    assert_eq!(a.get("client"), local.to_string(), "{tag}: {}", a.line);
    assert_eq!(a.get("scheme"), "http", "{tag}: {}", a.line);
    let (r, _) = http(srv.port, &[get_with(&format!("/sub?{tag}"), &SPOOF).as_bytes()]);
    assert_eq!((r.status, r.header("location")), (301, Some(format!("/sub/?{tag}").as_str())), "{tag}");
    // Each header alone, too (no fallback from one to another).
    for (i, header) in SPOOF.iter().enumerate() {
        let target = format!("/a.txt?{tag}-{i}");
        let (r, local) = http(srv.port, &[get_with(&target, &[*header]).as_bytes()]);
        assert_eq!(r.status, 200);
        let a = access_for(srv, &target);
        assert_eq!((a.get("client"), a.get("scheme")), (local.to_string().as_str(), "http"), "{header:?}");
    }
}

#[test]
fn forwarded_headers_from_a_peer_that_is_not_trusted_change_nothing() {
    let s = Scratch::new("spoof");
    let (root, _) = tree(&s);
    let none = Launch::new(&root).start();
    spoof_changes_nothing(&none, "no-trusted-proxy");
    let other =
        Launch::new(&root).args(&["--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "unix"]).start();
    spoof_changes_nothing(&other, "other-networks-trusted");
    // 127.0.0.1 trusted but not `unix`: a unix-socket client is not trusted.
    let sock = s.join("spoof.sock");
    let both = Launch::new(&root)
        .args(&[
            "-l",
            "127.0.0.1:0",
            "-l",
            &format!("unix:{}", sock.display()),
            "--trusted-proxy",
            "127.0.0.1",
        ])
        .start();
    let r = unix_get_with(&sock, "/sub?unix-spoof", &SPOOF);
    assert_eq!((r.status, r.header("location")), (301, Some("/sub/?unix-spoof")));
    let r = unix_get_with(&sock, "/a.txt?unix-spoof", &SPOOF);
    assert_eq!(r.status, 200);
    let a = access_for(&both, "/a.txt?unix-spoof");
    assert_eq!((a.get("client"), a.get("scheme")), ("unix", "http"), "{}", a.line);
    // 127.0.0.1 trusted: the same headers are believed (the control).
    let trusted = Launch::new(&root).args(&["--trusted-proxy", "127.0.0.1"]).start();
    let (r, _) = http(trusted.port, &[get_with("/sub?control", &SPOOF).as_bytes()]);
    assert_eq!(r.header("location"), Some("/evil/sub/?control"));
    http(trusted.port, &[get_with("/a.txt?control", &SPOOF).as_bytes()]);
    let a = access_for(&trusted, "/a.txt?control");
    assert_eq!(
        (a.get("client"), a.get("scheme")),
        ("198.51.100.66", "https"),
        "Forwarded wins over X-Forwarded-For"
    );
}

// ---------------------------------------------------------------------------
// 5. A trusted peer
// ---------------------------------------------------------------------------

/// The values of every `href`, `src` and `action` attribute in `html`.
pub(super) fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\"", "action=\""] {
        for (i, _) in html.match_indices(attr) {
            // Only whole attribute names (not e.g. `data-href="`).
            if html[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-') {
                continue;
            }
            let rest = &html[i + attr.len()..];
            out.push(rest[..rest.find('"').unwrap()].replace("&amp;", "&"));
        }
    }
    out
}

/// A link that leaves the current directory's URL space only by `../`: no
/// scheme, no host, no absolute path.
pub(super) fn is_relative(link: &str) -> bool {
    !link.starts_with('/')
        && !link.starts_with('\\')
        && !link.split(['/', '?', '#']).next().unwrap_or("").contains(':')
}

#[test]
fn a_trusted_peer_names_the_client_scheme_and_prefix() {
    let s = Scratch::new("trusted");
    let (root, _) = tree(&s);
    let srv =
        Launch::new(&root).args(&["--trusted-proxy", "127.0.0.1", "--trusted-proxy", "10.0.0.0/8"]).start();
    let client = |target: &str, headers: &[(&str, &str)]| -> Access {
        let (r, _) = http(srv.port, &[get_with(target, headers).as_bytes()]);
        assert_eq!(r.status, 200, "{target}");
        access_for(&srv, target)
    };
    // X-Forwarded-For: the rightmost address that is not itself trusted.
    let a = client("/a.txt?xff-chain", &[("X-Forwarded-For", "203.0.113.9, 10.0.0.2")]);
    assert_eq!((a.get("client"), a.get("scheme")), ("203.0.113.9", "http"));
    let a = client("/a.txt?xff-long", &[("X-Forwarded-For", "198.51.100.7, 203.0.113.9, 10.0.0.2")]);
    assert_eq!(a.get("client"), "203.0.113.9", "not the leftmost (the client could write it)");
    let a = client(
        "/a.txt?xff-two-lines",
        &[("X-Forwarded-For", "203.0.113.10"), ("X-Forwarded-For", "10.0.0.3")],
    );
    assert_eq!(a.get("client"), "203.0.113.10", "two header lines are one list");
    let a = client("/a.txt?xfp", &[("X-Forwarded-For", "203.0.113.11"), ("X-Forwarded-Proto", "https")]);
    assert_eq!((a.get("client"), a.get("scheme")), ("203.0.113.11", "https"));
    // Forwarded (RFC 7239), quoted IPv6 with a port, and proto.
    let a = client("/a.txt?fwd-v6", &[("Forwarded", "for=\"[2001:db8::1]:4711\";proto=https")]);
    assert_eq!((a.get("client"), a.get("scheme")), ("2001:db8::1", "https"), "{}", a.line);
    // Forwarded wins over X-Forwarded-For.
    let a = client("/a.txt?fwd-wins", &[("Forwarded", "for=192.0.2.60"), ("X-Forwarded-For", "203.0.113.9")]);
    assert_eq!(a.get("client"), "192.0.2.60");
    // An unusable hop keeps the peer.
    let a = client("/a.txt?xff-garbage", &[("X-Forwarded-For", "203.0.113.9, not-an-address")]);
    assert!(a.get("client").starts_with("127.0.0.1:"), "{}", a.line);

    // The prefix goes in front of a directory redirect; a bad one is ignored.
    let location = |target: &str, prefix: &str| -> Option<String> {
        let (r, _) = http(srv.port, &[get_with(target, &[("X-Forwarded-Prefix", prefix)]).as_bytes()]);
        assert_eq!(r.status, 301, "{target} with {prefix}");
        r.header("location").map(str::to_owned)
    };
    assert_eq!(location("/sub", "/files").as_deref(), Some("/files/sub/"));
    assert_eq!(location("/sub/deeper?x=1", "/files/").as_deref(), Some("/files/sub/deeper/?x=1"));
    assert_eq!(location("/sub", "//evil.example").as_deref(), Some("/sub/"), "a protocol-relative prefix");
    assert_eq!(location("/sub", "/files/../..").as_deref(), Some("/sub/"), "dot segments");
    assert_eq!(location("/sub", "https://evil.example").as_deref(), Some("/sub/"), "a URL");
    assert_eq!(location("/sub", "/a\"b").as_deref(), Some("/sub/"), "a quote");

    // The listing under a prefix links only relatively, so it needs none.
    let (r, _) = http(
        srv.port,
        &[get_with("/sub/", &[("X-Forwarded-Prefix", "/files"), ("Accept", "text/html")]).as_bytes()],
    );
    assert_eq!(r.status, 200);
    let html = String::from_utf8(r.body).unwrap();
    let found = links(&html);
    for needed in ["b.txt", "a%20b%26c.txt", "deeper/", "../"] {
        assert!(found.iter().any(|l| l == needed), "no link {needed} in {found:?}");
    }
    let absolute: Vec<&String> = found.iter().filter(|l| !is_relative(l)).collect();
    assert!(absolute.is_empty(), "absolute links in a listing: {absolute:?}");
    assert!(!html.contains("/files"), "the prefix does not leak into the page");
}
