//! Huge files in page-aligned windows under a hard budget.

use crate::common::*;
use std::io::{Seek, SeekFrom, Write};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

#[test]
fn a_sparse_20_gib_file_is_served_anywhere_within_a_256_mib_budget() {
    let s = Scratch::new("sparse");
    let path = s.join("sparse20g.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    f.set_len(20 * GIB).unwrap();
    // Markers at awkward places: window boundaries, unaligned offsets, the end.
    let markers: Vec<(u64, Vec<u8>)> = vec![
        (0, pattern(5000, 1)),
        (16 * MIB - 2000, pattern(4000, 2)),
        (5 * GIB + 123, pattern(9000, 3)),
        (19 * GIB + 4095, pattern(3, 4)),
        (20 * GIB - 777, pattern(777, 5)),
    ];
    for (at, data) in &markers {
        f.seek(SeekFrom::Start(*at)).unwrap();
        f.write_all(data).unwrap();
    }
    drop(f);
    set_mode(&path, 0o644);
    let srv = Launch::new(&s.path).args(&["--cache-max-bytes", "256MiB", "--window-size", "16MiB"]).start();
    let pid = srv.pid();
    for (at, data) in &markers {
        let range = format!("bytes={}-{}", at, at + data.len() as u64 - 1);
        let r = srv.req("GET", "/sparse20g.bin", &[("Range", &range)]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(&r.body, data, "{range}");
    }
    // Spanning a window boundary: chained slices of two windows.
    let r = srv.req(
        "GET",
        "/sparse20g.bin",
        &[("Range", &format!("bytes={}-{}", 16 * MIB - 100, 16 * MIB + 99))],
    );
    let marker = &markers[1].1;
    assert_eq!(r.body.len(), 200);
    assert_eq!(&r.body[..], &marker[1900..2100]);
    // Many ranges all over the file, unaligned starts; the budget holds.
    let mut rng = 0x1234_5678_u64;
    for _ in 0..120 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let start = rng % (20 * GIB - 70_000);
        let r =
            srv.req("GET", "/sparse20g.bin", &[("Range", &format!("bytes={}-{}", start, start + 65_536))]);
        assert_eq!((r.status, r.body.len()), (206, 65_537));
        // Away from the markers everything is a hole: zeros.
        if markers.iter().all(|(at, d)| start > at + d.len() as u64 || start + 65_537 < *at) {
            assert!(r.body.iter().all(|&b| b == 0));
        }
        let mapped = mapped_bytes(pid, "sparse20g.bin");
        assert!(mapped <= 256 * MIB, "mapped {} MiB", mapped / MIB);
    }
    // Multipart across distant windows.
    let r = srv.req(
        "GET",
        "/sparse20g.bin",
        &[("Range", &format!("bytes=0-9,{}-{}", 20 * GIB - 10, 20 * GIB - 1))],
    );
    assert_eq!(r.status, 206);
    assert!(r.header("content-type").unwrap().starts_with("multipart/byteranges"));
    let rss_mib = status_kb(pid, "VmRSS") / 1024;
    assert!(rss_mib < 256 + 64, "RSS {rss_mib} MiB");
}

#[test]
fn a_large_file_downloads_whole_through_windows_and_the_pread_fallback() {
    let s = Scratch::new("windowed");
    let data = pattern(100 * MIB as usize, 9);
    s.write("big.bin", &data);
    // A budget of two windows, and three downloads at once: some spans must
    // come from pread because every mapped window is in use.
    let srv = Launch::new(&s.path)
        .args(&[
            "--cache-max-bytes",
            "8MiB",
            "--window-size",
            "4MiB",
            "--log-level",
            "info,mapserve::cache=debug",
        ])
        .start();
    let port = srv.port;
    let threads: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let out = std::process::Command::new("curl")
                    .args(["-sS", "--limit-rate", "80M", &format!("http://127.0.0.1:{port}/big.bin")])
                    .output()
                    .unwrap();
                out.stdout
            })
        })
        .collect();
    for t in threads {
        let got = t.join().unwrap();
        assert!(got == data, "a windowed download was corrupted ({} bytes)", got.len());
    }
    let mapped = mapped_bytes(srv.pid(), "big.bin");
    assert!(mapped <= 8 * MIB, "mapped {} MiB", mapped / MIB);
    assert!(
        eventually(std::time::Duration::from_secs(5), || srv.log().contains("streaming it with pread")),
        "the pread fallback was exercised"
    );
}
