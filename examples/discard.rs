//! Bench tooling: an HTTP/1.1 load client that discards response bodies in
//! the kernel (`recv` with `MSG_TRUNC`), so that one client core can sink
//! gigabytes per second where wrk, which copies bodies 8 KiB at a time into
//! user space, would saturate its own core first.
//!
//! ```text
//! cargo run --release --example discard -- --addr 127.0.0.1:8080 --path /big.bin \
//!     --conns 16 --duration 5 [--header "Range: bytes=0-0"] [--once]
//! ```
//!
//! Prints one JSON object: requests, bytes, seconds, errors, status counts and
//! latency percentiles. With `--once` each connection makes one request (the
//! "N concurrent downloads" case); otherwise connections loop with keep-alive
//! until the duration ends.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use rustix::net::RecvFlags;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Totals {
    requests: u64,
    bytes: u64,
    errors: u64,
    /// Bodies abandoned at the deadline (--hard-stop).
    cut: u64,
    status: std::collections::BTreeMap<u16, u64>,
    latencies_us: Vec<u32>,
}

struct Args {
    addr: String,
    path: String,
    headers: Vec<String>,
    conns: usize,
    duration: Duration,
    once: bool,
    hard_stop: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8080".into(),
        path: "/".into(),
        headers: Vec::new(),
        conns: 1,
        duration: Duration::from_secs(5),
        once: false,
        hard_stop: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--addr" => a.addr = it.next().unwrap(),
            "--path" => a.path = it.next().unwrap(),
            "--header" => a.headers.push(it.next().unwrap()),
            "--conns" => a.conns = it.next().unwrap().parse().unwrap(),
            "--duration" => a.duration = Duration::from_secs_f64(it.next().unwrap().parse().unwrap()),
            "--once" => a.once = true,
            "--hard-stop" => a.hard_stop = true,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Reads a response head; returns (status, content-length, body bytes already read).
fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, u64, u64)> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            return Ok((status, len, (buf.len() - end - 4) as u64));
        }
    }
}

fn run_conn(args: &Args, request: &[u8], deadline: Instant, totals: &Mutex<Totals>) {
    let mut local = Totals::default();
    let mut sink: Box<[MaybeUninit<u8>]> = Box::new_uninit_slice(64 << 20);
    let mut buf = Vec::with_capacity(8192);
    'outer: while Instant::now() < deadline {
        let Ok(mut s) = TcpStream::connect(&args.addr) else {
            local.errors += 1;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        loop {
            let start = Instant::now();
            if s.write_all(request).is_err() {
                local.errors += 1;
                continue 'outer;
            }
            let (status, len, already) = match read_head(&mut s, &mut buf) {
                Ok(h) => h,
                Err(_) => {
                    local.errors += 1;
                    continue 'outer;
                }
            };
            let mut left = len.saturating_sub(already);
            while left > 0 {
                if args.hard_stop && Instant::now() >= deadline {
                    local.cut += 1;
                    local.bytes += len - left;
                    break 'outer;
                }
                let want = left.min(sink.len() as u64) as usize;
                match rustix::net::recv(&s, &mut sink[..want], RecvFlags::TRUNC) {
                    Ok((_, 0)) => {
                        local.errors += 1;
                        continue 'outer;
                    }
                    Ok((_, n)) => left -= n as u64,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => {
                        local.errors += 1;
                        continue 'outer;
                    }
                }
            }
            local.requests += 1;
            local.bytes += len;
            *local.status.entry(status).or_default() += 1;
            local.latencies_us.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
            if args.once {
                break 'outer;
            }
            if Instant::now() >= deadline {
                break 'outer;
            }
        }
    }
    let mut t = totals.lock().unwrap();
    t.requests += local.requests;
    t.bytes += local.bytes;
    t.errors += local.errors;
    t.cut += local.cut;
    for (k, v) in local.status {
        *t.status.entry(k).or_default() += v;
    }
    t.latencies_us.extend(local.latencies_us);
}

fn main() {
    let args = Arc::new(parse_args());
    let mut request = format!("GET {} HTTP/1.1\r\nHost: bench\r\n", args.path);
    for h in &args.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request: Arc<[u8]> = request.into_bytes().into();
    let totals = Arc::new(Mutex::new(Totals::default()));
    let start = Instant::now();
    let deadline = start + args.duration;
    let threads: Vec<_> = (0..args.conns)
        .map(|_| {
            let (args, request, totals) = (args.clone(), request.clone(), totals.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || run_conn(&args, &request, deadline, &totals))
                .unwrap()
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let mut t = totals.lock().unwrap();
    t.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if t.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((t.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        t.latencies_us[i] as f64 / 1000.0
    };
    let status: Vec<String> = t.status.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!(
        "{{\"requests\":{},\"bytes\":{},\"secs\":{:.3},\"errors\":{},\"cut\":{},\"status\":{{{}}},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"mb_per_s\":{:.1}}}",
        t.requests,
        t.bytes,
        secs,
        t.errors,
        t.cut,
        status.join(","),
        pct(0.5),
        pct(0.99),
        t.bytes as f64 / secs / 1e6
    );
}
