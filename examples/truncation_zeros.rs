//! Measures how many zero bytes a file truncated in place can put on the
//! wire, for each way mapserve can send mapped bytes (README, "The mmap
//! caveats"). Linux only; uses the server's own `mmap` module.
//!
//! For each trial: write a file (one `write`, so the page cache holds large
//! folios, as after a deploy), map it, hand `len` bytes from `offset` to a
//! socket pair (the client does not read yet), truncate the file to a size
//! inside that span, then read what arrives and count the zero bytes (the
//! file holds no zero bytes).
//!
//! * `vmsplice`: the pipe and the socket hold page-cache pages; the kernel
//!   zeroes the tail of the folio that holds the new end of file in place,
//!   so bytes already "sent" turn to zeros.
//! * `writev`: the socket holds copies made at the call, so a truncation
//!   after it changes nothing;
//! * `writev-race`: a truncation that lands while the kernel copies.
//!
//! `cargo run --release --example truncation_zeros [TRIALS]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mapserve::mmap::{Region, pipe, vmsplice_mapped};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

const MIB: usize = 1 << 20;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| 1 + (i % 251) as u8).collect()
}

/// Zero bytes received when `len` bytes from `offset` are sent by `how`,
/// then the file is cut to `cut`.
fn trial(dir: &std::path::Path, how: &str, size: usize, offset: usize, len: usize, cut: u64) -> usize {
    let path = dir.join(format!("f-{how}"));
    std::fs::write(&path, pattern(size)).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let region = Region::map(&file, 0, size).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let data = &region.as_slice()[offset..offset + len];
    let mut sent = 0;
    match how {
        "vmsplice" => {
            let (read, write) = pipe().unwrap();
            while sent < len {
                let n = vmsplice_mapped(&write, &region.probe(), &data[sent..]).unwrap();
                let moved =
                    rustix::pipe::splice(&read, None, &server, None, n, rustix::pipe::SpliceFlags::empty())
                        .unwrap();
                assert_eq!(moved, n);
                sent += n;
            }
        }
        "writev" => {
            (&server).write_all(data).unwrap();
        }
        "writev-race" => {
            // The truncation lands while the kernel copies (a 1 MiB copy
            // takes about 100 us here): start it, then write.
            let delay = std::time::Duration::from_micros(cut % 150);
            std::thread::scope(|s| {
                s.spawn(|| {
                    std::thread::sleep(delay);
                    file.set_len(cut).unwrap();
                });
                let _ = (&server).write(data);
            });
        }
        _ => unreachable!(),
    }
    file.set_len(cut).unwrap();
    drop(server);
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    got.iter().filter(|&&b| b == 0).count()
}

fn main() {
    let trials: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let dir = std::env::temp_dir().join(format!("mapserve-zeros-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Loopback TCP buffers hold the whole 1 MiB span while nobody reads.
    let size = 8 * MIB;
    let mut worst = std::collections::BTreeMap::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..trials {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let offset = (rng as usize % (4 * MIB)) & !4095;
        let len = MIB;
        let cut = (offset + 1 + (rng >> 32) as usize % (len - 1)) as u64;
        for how in ["vmsplice", "writev", "writev-race"] {
            let zeros = trial(&dir, how, size, offset, len, cut);
            let w = worst.entry(how).or_insert((0usize, 0u64));
            if zeros > w.0 {
                *w = (zeros, cut);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("{trials} trials, 1 MiB sent from a page-aligned offset of an 8 MiB file, cut inside the span");
    for (how, (zeros, cut)) in worst {
        println!(
            "{how:>9}: at most {zeros} zero bytes received (cut at {cut}, {} into its 2 MiB folio)",
            cut % (2 * MIB as u64)
        );
    }
}
