use super::*;
use proptest::prelude::*;
use std::net::Ipv6Addr;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

fn run(peer: &str, trusted: &[&str], headers: &[(&str, &str)]) -> Forwarded {
    let trusted = cidrs(trusted);
    resolve(ip(peer), &trusted, headers.iter().map(|(n, v)| (*n, v.as_bytes())))
}

fn client(peer: &str, trusted: &[&str], headers: &[(&str, &str)]) -> Option<IpAddr> {
    run(peer, trusted, headers).client
}

type Headers<'a> = &'a [(&'a str, &'a str)];

const PROXIES: &[&str] = &["10.0.0.0/8", "fd00::/8"];

#[test]
fn cidr_parsing() {
    let ok = [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.168.1.7", "192.168.1.7/32"),
        (" 0.0.0.0/0 ", "0.0.0.0/0"),
        ("::1", "::1/128"),
        ("fd00::/8", "fd00::/8"),
        ("::/0", "::/0"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:192.0.2.1", "192.0.2.1/32"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("2001:db8::/32", "2001:db8::/32"),
    ];
    for (input, shown) in ok {
        assert_eq!(input.parse::<Cidr>().map(|c| c.to_string()), Ok(shown.to_string()), "{input}");
    }
    let bad = [
        "",
        "garbage",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        "10.0.0/8",
        "fe80::1%eth0",
        "10.0.0.0/0x8",
        "10.0.0.0/ 8",
        "10.0.0.0/1000",
    ];
    for input in bad {
        assert!(input.parse::<Cidr>().is_err(), "{input}");
    }
    assert_eq!(
        "10.1.2.3/8".parse::<Cidr>(),
        Err("10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?".to_string())
    );
    let err = "fd00::1/8".parse::<Cidr>().unwrap_err();
    assert!(err.contains("did you mean fd00::/8?"), "{err}");
    let err = "::ffff:10.1.0.0/104".parse::<Cidr>().unwrap_err();
    assert!(err.contains("did you mean 10.0.0.0/8?"), "{err}");
}

#[test]
fn cidr_contains() {
    let cases = [
        ("10.0.0.0/8", "10.255.1.2", true),
        ("10.0.0.0/8", "11.0.0.0", false),
        ("10.0.0.0/8", "::ffff:10.1.2.3", true),
        ("::ffff:10.0.0.0/104", "10.1.2.3", true),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("0.0.0.0/0", "::1", false),
        ("::/0", "2001:db8::1", true),
        ("::/0", "192.0.2.1", false),
        ("::/0", "::ffff:192.0.2.1", false),
        ("192.168.1.7", "192.168.1.7", true),
        ("192.168.1.7/32", "192.168.1.8", false),
        ("::1", "::1", true),
        ("::1/128", "::2", false),
        ("fd00::/8", "fdff::1", true),
        ("fd00::/8", "fe00::1", false),
    ];
    for (cidr, addr, expected) in cases {
        assert_eq!(cidr.parse::<Cidr>().unwrap().contains(ip(addr)), expected, "{cidr} {addr}");
    }
}

#[test]
fn normalise_maps_only_v4_mapped() {
    assert_eq!(normalise(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
    assert_eq!(normalise(ip("::1.2.3.4")), ip("::1.2.3.4"));
    assert_eq!(normalise(ip("1.2.3.4")), ip("1.2.3.4"));
}

#[test]
fn untrusted_peer_is_ignored() {
    let spoof = [
        ("x-forwarded-for", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4;proto=https"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-prefix", "/app"),
    ];
    assert_eq!(run("203.0.113.5", PROXIES, &spoof), Forwarded::default());
    assert_eq!(run("10.0.0.1", &[], &spoof), Forwarded::default());
    assert_eq!(run("::ffff:203.0.113.5", PROXIES, &spoof), Forwarded::default());
    assert_eq!(run("::ffff:10.0.0.1", PROXIES, &spoof).client, Some(ip("1.2.3.4")));
}

#[test]
fn x_forwarded_for_chains() {
    let cases: &[(Headers, Option<&str>)] = &[
        (&[("x-forwarded-for", "1.2.3.4")], Some("1.2.3.4")),
        (&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2, 10.0.0.3")], Some("1.2.3.4")),
        (
            &[("x-forwarded-for", "6.6.6.6,1.2.3.4"), ("x-forwarded-for", "\t10.0.0.2 ,fd00::5")],
            Some("1.2.3.4"),
        ),
        (&[("x-forwarded-for", "10.0.0.9, 10.0.0.2")], Some("10.0.0.9")),
        (&[("x-forwarded-for", "1.2.3.4, garbage, 10.0.0.2")], None),
        (&[("x-forwarded-for", "garbage, 1.2.3.4, 10.0.0.2")], Some("1.2.3.4")),
        (&[("x-forwarded-for", "unknown")], None),
        (&[("x-forwarded-for", "2001:db8::1")], Some("2001:db8::1")),
        (&[("x-forwarded-for", "[2001:db8::1]:443")], Some("2001:db8::1")),
        (&[("x-forwarded-for", "[2001:db8::1]")], Some("2001:db8::1")),
        (&[("x-forwarded-for", "1.2.3.4:5678")], Some("1.2.3.4")),
        (&[("x-forwarded-for", "1.2.3.4:99999")], None),
        (&[("x-forwarded-for", "::ffff:1.2.3.4")], Some("1.2.3.4")),
        (&[("x-forwarded-for", "1.2.3.4, ::ffff:10.0.0.7")], Some("1.2.3.4")),
        (&[("x-forwarded-for", " , ")], None),
        (&[("X-Forwarded-For", "1.2.3.4")], Some("1.2.3.4")),
        (&[], None),
    ];
    for (headers, expected) in cases {
        assert_eq!(client("10.0.0.1", PROXIES, headers), expected.map(ip), "{headers:?}");
    }
}

#[test]
fn forwarded_header() {
    let cases: &[(&str, Option<&str>)] = &[
        ("for=192.0.2.43", Some("192.0.2.43")),
        ("For=\"192.0.2.43:47011\"", Some("192.0.2.43")),
        ("for=\"[2001:db8:cafe::17]\"", Some("2001:db8:cafe::17")),
        ("for=\"[2001:db8:cafe::17]:4711\"", Some("2001:db8:cafe::17")),
        ("for=\"[2001:db8:cafe::17]:_abc\"", Some("2001:db8:cafe::17")),
        ("for=192.0.2.43, for=198.51.100.17", Some("198.51.100.17")),
        ("for=192.0.2.43 ,\tFOR=\"10.0.0.5\" ; proto=http", Some("192.0.2.43")),
        ("for=192.0.2.43;by=10.0.0.5;host=example.com, for=10.0.0.5", Some("192.0.2.43")),
        ("for=10.0.0.7, for=10.0.0.5", Some("10.0.0.7")),
        ("for=192.0.2.43, for=unknown, for=10.0.0.5", None),
        ("for=192.0.2.43, for=_hidden, for=10.0.0.5", None),
        ("for=192.0.2.43, proto=https, for=10.0.0.5", None),
        ("for=_hidden, for=192.0.2.43", Some("192.0.2.43")),
        ("for=\"2001:db8::17\"", None),
        ("for=\"\\1\\9\\2.0.2.43\"", Some("192.0.2.43")),
        (", for=192.0.2.43,,", Some("192.0.2.43")),
        ("for=2001:db8::17", None),
        ("for=\"192.0.2.43", None),
        ("for=192.0.2.43;for=192.0.2.44", None),
        ("for=", None),
        ("for 192.0.2.43", None),
        ("for=192.0.2.43 x", None),
        ("", None),
    ];
    for (value, expected) in cases {
        let headers = [("forwarded", *value), ("x-forwarded-for", "203.0.113.1")];
        assert_eq!(client("10.0.0.1", PROXIES, &headers), expected.map(ip), "{value}");
    }
    let lines = [("forwarded", "for=192.0.2.43"), ("forwarded", "for=10.0.0.9")];
    assert_eq!(client("10.0.0.1", PROXIES, &lines), Some(ip("192.0.2.43")));
    let bad_second_line = [("forwarded", "for=192.0.2.43"), ("forwarded", "for=\"")];
    assert_eq!(client("10.0.0.1", PROXIES, &bad_second_line), None);
}

#[test]
fn scheme_rules() {
    let cases: &[(Headers, Option<bool>)] = &[
        (&[("x-forwarded-proto", "https")], Some(true)),
        (&[("x-forwarded-proto", "HTTP")], Some(false)),
        (&[("x-forwarded-proto", " https , http")], Some(true)),
        (&[("x-forwarded-proto", "http"), ("x-forwarded-proto", "https")], Some(false)),
        (&[("x-forwarded-proto", "wss")], None),
        (&[("x-forwarded-proto", "")], None),
        (&[("forwarded", "for=1.2.3.4;proto=https"), ("x-forwarded-proto", "http")], Some(true)),
        (&[("forwarded", "for=1.2.3.4;proto=https, for=10.0.0.2;proto=http")], Some(true)),
        (
            &[("forwarded", "for=1.2.3.4, for=10.0.0.2;proto=http"), ("x-forwarded-proto", "https")],
            Some(true),
        ),
        (&[("forwarded", "for=1.2.3.4, for=10.0.0.2;proto=http")], None),
        (&[("forwarded", "proto=HTTPS")], Some(true)),
        (&[("forwarded", "for=1.2.3.4;proto=\"ftp\""), ("x-forwarded-proto", "https")], None),
        (&[("forwarded", "for=\"1.2.3.4;proto=https"), ("x-forwarded-proto", "https")], None),
    ];
    for (headers, expected) in cases {
        assert_eq!(run("10.0.0.1", PROXIES, headers).https, *expected, "{headers:?}");
    }
}

#[test]
fn prefix_rules() {
    let cases: &[(&str, Option<&str>)] = &[
        ("/app", Some("/app")),
        ("/app/", Some("/app")),
        ("/a-b_c.d~e/%20x/@:!$&'()*+,;=", Some("/a-b_c.d~e/%20x/@:!$&'()*+,;=")),
        ("/", None),
        ("", None),
        ("app", None),
        ("//evil.com", None),
        ("/app//x", None),
        ("/app/../etc", None),
        ("/..", None),
        ("/./app", None),
        ("/app/%2e%2E", None),
        ("/app/.hidden", Some("/app/.hidden")),
        ("/app\r\nSet-Cookie: x", None),
        ("/app x", None),
        ("/app?x", None),
        ("/app#x", None),
        ("/app\\x", None),
        ("/app%2", None),
        ("/app%zz", None),
        ("/caf\u{e9}", None),
    ];
    for (value, expected) in cases {
        let got = run("10.0.0.1", PROXIES, &[("x-forwarded-prefix", value)]).prefix;
        assert_eq!(got.as_deref(), *expected, "{value:?}");
    }
    let long = format!("/{}", "a".repeat(255));
    assert_eq!(run("10.0.0.1", PROXIES, &[("x-forwarded-prefix", &long)]).prefix.as_deref(), Some(&*long));
    let too_long = format!("/{}", "a".repeat(256));
    assert_eq!(run("10.0.0.1", PROXIES, &[("x-forwarded-prefix", &too_long)]).prefix, None);
    let two = [("x-forwarded-prefix", "/first"), ("x-forwarded-prefix", "/second")];
    assert_eq!(run("10.0.0.1", PROXIES, &two).prefix.as_deref(), Some("/first"));
    let bad_first = [("x-forwarded-prefix", "/../x"), ("x-forwarded-prefix", "/second")];
    assert_eq!(run("10.0.0.1", PROXIES, &bad_first).prefix, None);
    assert_eq!(
        resolve(ip("10.0.0.1"), &cidrs(PROXIES), [("x-forwarded-prefix", &b"/\xff"[..])].into_iter()).prefix,
        None
    );
}

fn header_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("forwarded"),
        Just("x-forwarded-for"),
        Just("x-forwarded-proto"),
        Just("x-forwarded-prefix"),
        Just("other"),
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        "((for|proto|by)=(\"[\\[\\]0-9a-f:._\\\\ ]*\"?|[0-9a-z.:_]*)[;, ]{0,2}){0,4}"
            .prop_map(String::into_bytes),
        "([0-9a-f:.\\[\\] ]{0,20},?){0,4}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn resolve_never_panics(
        peer in any::<[u8; 16]>(),
        headers in proptest::collection::vec((header_name(), header_value()), 0..6),
    ) {
        let trusted = cidrs(&["0.0.0.0/0", "::/0"]);
        let result = resolve(IpAddr::V6(Ipv6Addr::from(peer)), &trusted, headers.iter().map(|(n, v)| (*n, v.as_slice())));
        if let Some(prefix) = result.prefix {
            prop_assert!(prefix.starts_with('/') && !prefix.ends_with('/') && prefix.len() <= 256);
        }
        if let Some(client) = result.client {
            prop_assert_eq!(client, normalise(client));
        }
    }
}
