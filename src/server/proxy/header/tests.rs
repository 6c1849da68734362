use super::*;
use proptest::prelude::*;

const TAIL: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    let len = u16::try_from(body.len()).unwrap();
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn sock(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn proxied(src: &str, dst: &str) -> ProxyHeader {
    ProxyHeader::Proxied { source: sock(src), destination: sock(dst) }
}

fn tcp4_body() -> Vec<u8> {
    let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2];
    body.extend_from_slice(&56324u16.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    body
}

fn tcp6_body() -> Vec<u8> {
    let mut body = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    body.extend_from_slice(&"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
    body.extend_from_slice(&[0, 1, 0xFF, 0xFF]);
    body
}

fn valid() -> Vec<(Vec<u8>, ProxyHeader)> {
    let mut with_tlvs = tcp4_body();
    with_tlvs.extend_from_slice(&[0x01, 0, 2, b'h', b'2', 0x04, 0, 0, 0xEE, 0, 1, 7]);
    let mut max = tcp4_body();
    max.extend_from_slice(&[0x05, 0x03, 0xF1]);
    max.resize(MAX_V2_PAYLOAD, b'x');
    let unknown_107 = format!("PROXY UNKNOWN {}\r\n", "a".repeat(91));
    assert_eq!(unknown_107.len(), MAX_V1);
    let v6_text = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ::ffff:1.2.3.4 65535 0\r\n";
    vec![
        (
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".to_vec(),
            proxied("192.0.2.1:56324", "198.51.100.2:443"),
        ),
        (
            b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n".to_vec(),
            proxied("0.0.0.0:0", "255.255.255.255:65535"),
        ),
        (b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n".to_vec(), proxied("[2001:db8::1]:1", "[::1]:2")),
        (
            v6_text.as_bytes().to_vec(),
            proxied("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[::ffff:1.2.3.4]:0"),
        ),
        (b"PROXY UNKNOWN\r\n".to_vec(), ProxyHeader::Unknown),
        (b"PROXY UNKNOWN ::1 ::1 1 2\r\n".to_vec(), ProxyHeader::Unknown),
        (unknown_107.into_bytes(), ProxyHeader::Unknown),
        (v2(0x21, 0x11, &tcp4_body()), proxied("192.0.2.1:56324", "198.51.100.2:443")),
        (v2(0x21, 0x21, &tcp6_body()), proxied("[2001:db8::1]:1", "[::ffff:10.0.0.1]:65535")),
        (v2(0x21, 0x11, &with_tlvs), proxied("192.0.2.1:56324", "198.51.100.2:443")),
        (v2(0x21, 0x11, &max), proxied("192.0.2.1:56324", "198.51.100.2:443")),
        (v2(0x20, 0x00, &[]), ProxyHeader::Local),
        (v2(0x20, 0x11, &tcp4_body()), ProxyHeader::Local),
        (v2(0x20, 0xFF, b"anything"), ProxyHeader::Local),
        (v2(0x21, 0x12, &tcp4_body()), ProxyHeader::Unknown),
        (v2(0x21, 0x22, &tcp6_body()), ProxyHeader::Unknown),
        (v2(0x21, 0x31, &[0; 216]), ProxyHeader::Unknown),
        (v2(0x21, 0x32, &[0; 219]), ProxyHeader::Unknown),
        (v2(0x21, 0x00, b"ignored"), ProxyHeader::Unknown),
    ]
}

#[test]
fn valid_headers_parse_and_stop_at_their_end() {
    for (header, expected) in valid() {
        let mut buf = header.clone();
        buf.extend_from_slice(TAIL);
        let done = Parsed::Done { header: expected, consumed: header.len() };
        assert_eq!(parse(&buf), Ok(done), "{:?}", String::from_utf8_lossy(&header));
        assert_eq!(parse(&header), Ok(done));
        for n in 0..header.len() {
            assert_eq!(parse(&header[..n]), Ok(Parsed::Incomplete), "prefix {n} of {header:?}");
        }
    }
}

#[test]
fn malformed_headers_are_rejected() {
    let mut short_tlv = tcp4_body();
    short_tlv.extend_from_slice(&[1, 0]);
    let mut overrun_tlv = tcp4_body();
    overrun_tlv.extend_from_slice(&[1, 0, 5, 1, 2]);
    let mut over_limit = tcp4_body();
    over_limit.resize(MAX_V2_PAYLOAD + 1, 0);
    let mut bad_sig = v2(0x21, 0x11, &tcp4_body());
    bad_sig[11] = b'X';
    let cases: Vec<Vec<u8>> = vec![
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(),
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec(),
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4:80 5.6.7.8 1 2\r\n".to_vec(),
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n".to_vec(),
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        b"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        b"PROXY UNKNOWNX\r\n".to_vec(),
        b"PROXY\r\n".to_vec(),
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        format!("PROXY {}", "A".repeat(101)).into_bytes(),
        format!("PROXY UNKNOWN {}\r\n", "a".repeat(92)).into_bytes(),
        bad_sig,
        v2(0x11, 0x11, &tcp4_body()),
        v2(0x31, 0x11, &tcp4_body()),
        v2(0x22, 0x11, &tcp4_body()),
        v2(0x21, 0x41, &tcp4_body()),
        v2(0x21, 0x13, &tcp4_body()),
        v2(0x21, 0x01, &tcp4_body()),
        v2(0x21, 0x11, &tcp4_body()[..11]),
        v2(0x21, 0x21, &tcp4_body()),
        v2(0x21, 0x31, &[0; 215]),
        v2(0x21, 0x11, &short_tlv),
        v2(0x21, 0x11, &overrun_tlv),
        v2(0x21, 0x11, &over_limit),
        b"GET / HTTP/1.1\r\n".to_vec(),
        vec![0x16, 0x03, 0x01, 0x02, 0x00],
        b"\r\n\r\n\r\n".to_vec(),
    ];
    for case in cases {
        assert!(parse(&case).is_err(), "{:?}", String::from_utf8_lossy(&case));
    }
}

#[test]
fn errors_come_as_soon_as_possible() {
    let early: Vec<&[u8]> = vec![
        b"G",
        &[0x16],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r ",
        b"PROXY TCP4 256",
        b"PROXY TCP4 1.2.3.4.",
        b"PROXY TCP4 ::",
        b"PROXY TCP6 1.2.3.4 g",
        b"PROXY TCPX",
        b"PROXY  ",
        b"PROXX",
        b"\r\n\r\n\x00\r\nQUIX",
        b"\r\n\r\n\x00\r\nQUIT\n\x10",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x14",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x04\x01",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0E",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x10\x01\x02\x03\x04\x01\x02\x03\x04\x00\x01\x00\x01\x01\x00\x09",
    ];
    for case in early {
        assert!(parse(case).is_err(), "{:?}", String::from_utf8_lossy(case));
    }
    assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 6553"), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"PROXY TCP6 ::ffff:1.2.3"), Ok(Parsed::Incomplete));
    assert_eq!(parse(b""), Ok(Parsed::Incomplete));
}

#[test]
fn error_displays_reason() {
    let text = parse(b"GET").unwrap_err().to_string();
    assert!(text.contains("not a PROXY protocol header"), "{text}");
}

fn any_valid() -> impl Strategy<Value = (Vec<u8>, ProxyHeader)> {
    let v1_tcp4 =
        (any::<[u8; 4]>(), any::<[u8; 4]>(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| {
            let (s, d) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
            let text = format!("PROXY TCP4 {s} {d} {sp} {dp}\r\n");
            let header = ProxyHeader::Proxied { source: (s, sp).into(), destination: (d, dp).into() };
            (text.into_bytes(), header)
        });
    let v1_tcp6 =
        (any::<[u8; 16]>(), any::<[u8; 16]>(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| {
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let text = format!("PROXY TCP6 {s} {d} {sp} {dp}\r\n");
            let header = ProxyHeader::Proxied { source: (s, sp).into(), destination: (d, dp).into() };
            (text.into_bytes(), header)
        });
    let v1_unknown = proptest::option::of("[ -~]{0,91}").prop_map(|rest| {
        let text = match rest {
            Some(rest) => format!("PROXY UNKNOWN {rest}\r\n"),
            None => "PROXY UNKNOWN\r\n".to_string(),
        };
        (text.into_bytes(), ProxyHeader::Unknown)
    });
    let tlvs = proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..6);
    let v2_proxy = (
        prop_oneof![Just(0x11u8), Just(0x12), Just(0x21), Just(0x22), Just(0x31), Just(0x32)],
        proptest::collection::vec(any::<u8>(), 216),
        tlvs,
    )
        .prop_map(|(fam, addrs, tlvs)| {
            let addr_len = match fam >> 4 {
                1 => 12,
                2 => 36,
                _ => 216,
            };
            let mut body = addrs[..addr_len].to_vec();
            for (kind, value) in tlvs {
                body.push(kind);
                body.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
                body.extend_from_slice(&value);
            }
            let port = |at: usize| u16::from_be_bytes([addrs[at], addrs[at + 1]]);
            let header = match fam {
                0x11 => ProxyHeader::Proxied {
                    source: (Ipv4Addr::from(<[u8; 4]>::try_from(&addrs[0..4]).unwrap()), port(8)).into(),
                    destination: (Ipv4Addr::from(<[u8; 4]>::try_from(&addrs[4..8]).unwrap()), port(10))
                        .into(),
                },
                0x21 => ProxyHeader::Proxied {
                    source: (Ipv6Addr::from(<[u8; 16]>::try_from(&addrs[0..16]).unwrap()), port(32)).into(),
                    destination: (Ipv6Addr::from(<[u8; 16]>::try_from(&addrs[16..32]).unwrap()), port(34))
                        .into(),
                },
                _ => ProxyHeader::Unknown,
            };
            (v2(0x21, fam, &body), header)
        });
    let v2_other = (any::<bool>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..=MAX_V2_PAYLOAD))
        .prop_map(|(local, fam, body)| {
            if local {
                (v2(0x20, fam, &body), ProxyHeader::Local)
            } else {
                (v2(0x21, 0x00, &body), ProxyHeader::Unknown)
            }
        });
    prop_oneof![v1_tcp4, v1_tcp6, v1_unknown, v2_proxy, v2_other]
}

fn noise() -> impl Strategy<Value = Vec<u8>> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        bytes(),
        bytes().prop_map(|b| [b"PROXY ".to_vec(), b].concat()),
        bytes().prop_map(|b| [V2_SIGNATURE.to_vec(), b].concat()),
        bytes().prop_map(|b| [V2_SIGNATURE.to_vec(), vec![0x21, 0x11, 0x00, 0x20], b].concat()),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(buf in noise()) {
        if let Ok(Parsed::Done { consumed, .. }) = parse(&buf) {
            prop_assert!(consumed <= buf.len() && consumed <= MAX_V2.max(MAX_V1));
        }
    }

    #[test]
    fn valid_header_with_tail_is_done((header, expected) in any_valid(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let buf = [header.clone(), tail].concat();
        prop_assert_eq!(parse(&buf), Ok(Parsed::Done { header: expected, consumed: header.len() }));
        for n in 0..header.len() {
            prop_assert_eq!(parse(&header[..n]), Ok(Parsed::Incomplete));
        }
    }
}
