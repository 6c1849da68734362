//! Measures each encoder at several levels on the files given: output size
//! (as a share of the input) and single-core compression speed, the two
//! numbers the levels in `src/compress.rs` were chosen from.
//!
//! `cargo run --release --example levels -- FILE...`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Instant;

fn brotli(input: &[u8], level: i32) -> usize {
    let params = brotli::enc::BrotliEncoderParams {
        quality: level,
        lgwin: 22,
        size_hint: input.len(),
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &input[..], &mut out, &params).unwrap();
    out.len()
}

fn zstd(input: &[u8], level: i32) -> usize {
    zstd::bulk::compress(input, level).unwrap().len()
}

fn gzip(input: &[u8], level: i32) -> usize {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level as u32));
    e.write_all(input).unwrap();
    e.finish().unwrap().len()
}

type Encoder = fn(&[u8], i32) -> usize;

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    let codecs: [(&str, Encoder, &[i32]); 3] = [
        ("br", brotli, &[4, 5, 6, 7, 8, 9, 10, 11]),
        ("zstd", zstd, &[3, 9, 12, 15, 17, 19]),
        ("gzip", gzip, &[1, 6, 9]),
    ];
    println!("| file | bytes | coding | level | share of input | MB/s (one core) |");
    println!("|---|---|---|---|---|---|");
    for file in &files {
        let input = std::fs::read(file).unwrap();
        let name = file.rsplit('/').next().unwrap_or(file);
        for (codec, f, levels) in &codecs {
            for &level in *levels {
                // Long enough to time: repeat small inputs.
                let rounds = (4_000_000 / input.len().max(1)).clamp(1, 50);
                let start = Instant::now();
                let mut len = 0;
                for _ in 0..rounds {
                    len = f(&input, level);
                }
                let secs = start.elapsed().as_secs_f64() / rounds as f64;
                let speed = input.len() as f64 / secs / 1e6;
                println!(
                    "| {name} | {} | {codec} | {level} | {:.1}% | {speed:.1} |",
                    input.len(),
                    100.0 * len as f64 / input.len() as f64
                );
                if secs > 8.0 {
                    break; // higher levels only get slower
                }
            }
        }
    }
}
