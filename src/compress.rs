//! Content codings mapserve produces itself: which responses are worth
//! compressing, at what level, and the encoders. No I/O; the cache runs
//! [`encode`] once per file version and coding on the blocking pool and keeps
//! the result (see `cache::variant`).
//!
//! Levels were chosen with `cargo run --release --example levels` (bytes
//! saved against CPU spent once per version; the README has the table):
//! brotli 8, zstd 12, gzip 6: for each, the last level before the CPU cost
//! jumps (brotli 9 is up to 2.5x slower than 8 for 0.1% of the input, 10
//! and 11 ten to sixty times slower for about 1%; zstd past 12 doubles the
//! cost per level for under 0.5%; gzip 9 saves at most 0.1% over 6 at up to
//! twice the CPU). Each output is kept for as long as its file
//! version is cached, so spending more CPU once is worth it, up to the point
//! where a first compression of a 32 MiB file would keep a core busy for
//! many seconds.
//!
//! Encoders: `brotli` (the pure-Rust port maintained by Dropbox; no C to
//! build), `zstd` (bindings to the reference libzstd, the only complete
//! encoder), `flate2` (gzip over zlib-rs, no C). The whole input is in
//! memory and so is the output, so the plain encoders fit better than
//! `async-compression`'s streaming adapters, which would only add a layer.

use crate::http::encoding::Coding;
use std::io::Write;

/// Brotli quality (0..=11).
pub const BROTLI_LEVEL: u32 = 8;
/// Brotli window (log2 bytes).
const BROTLI_WINDOW: u32 = 22;
/// Zstandard level (1..=22).
pub const ZSTD_LEVEL: i32 = 12;
/// gzip level (0..=9).
pub const GZIP_LEVEL: u32 = 6;

/// Default smallest file compressed (`--compress-min`).
pub const DEFAULT_MIN: u64 = crate::config::DEFAULT_COMPRESS_MIN;
/// Default largest file compressed (`--compress-max`).
pub const DEFAULT_MAX: u64 = crate::config::DEFAULT_COMPRESS_MAX;

/// Files up to this size are compressed while the first request waits (at
/// the levels above, at most about 25 ms on one core of the measuring
/// machine, brotli being the slowest); larger ones are compressed in the
/// background and requests get another ready representation, or identity,
/// until it is done.
pub const WAIT_MAX: u64 = 256 << 10;

/// The ETag suffix of a variant in `coding`: the coding and its level, so
/// that a change of level names new bytes with a new tag. (A change of
/// encoder that alters the output at the same level must bump the `v`.)
pub fn etag_tag(coding: Coding) -> String {
    match coding {
        Coding::Br => format!("br{BROTLI_LEVEL}v1"),
        Coding::Zstd => format!("zstd{ZSTD_LEVEL}v1"),
        Coding::Gzip => format!("gzip{GZIP_LEVEL}v1"),
        Coding::Identity => String::new(),
    }
}

/// What is compressed on the fly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressRules {
    /// Compress compressible types on the fly (`--compress`).
    pub enabled: bool,
    /// Smallest file compressed.
    pub min: u64,
    /// Largest file compressed.
    pub max: u64,
    /// Use `file.br`, `file.zst`, `file.gz` next to `file`
    /// (`--precompressed`).
    pub precompressed: bool,
}

impl Default for CompressRules {
    fn default() -> Self {
        CompressRules { enabled: true, min: DEFAULT_MIN, max: DEFAULT_MAX, precompressed: true }
    }
}

impl CompressRules {
    /// Whether a response of `len` bytes of a type that is `compressible`
    /// (see [`compressible`], decided once per entry) is compressed on the
    /// fly.
    pub fn applies(&self, compressible: bool, len: u64) -> bool {
        compressible && self.enabled && (self.min..=self.max).contains(&len)
    }
}

/// Whether a media type gains from compression: text, scripts, JSON, XML,
/// SVG, WebAssembly, uncompressed fonts and a few uncompressed binary
/// formats. Already compressed formats (images other than SVG/BMP/ICO,
/// audio, video, archives, WOFF/WOFF2, PDF) are not.
pub fn compressible(content_type: &[u8]) -> bool {
    let essence = content_type.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    let mut lower = [0u8; 64];
    let Some(lower) = lower.get_mut(..essence.len()) else { return false };
    lower.copy_from_slice(essence);
    lower.make_ascii_lowercase();
    let essence: &[u8] = lower;
    if essence.starts_with(b"text/") {
        return true;
    }
    if essence.ends_with(b"+json") || essence.ends_with(b"+xml") {
        return true;
    }
    COMPRESSIBLE.contains(&essence)
}

/// Exact types (besides `text/*`, `*+json`, `*+xml`) that are compressed.
pub const COMPRESSIBLE: &[&[u8]] = &[
    b"application/javascript",
    b"application/x-javascript",
    b"application/json",
    b"application/ld+json",
    b"application/x-ndjson",
    b"application/xml",
    b"application/wasm",
    b"application/x-sh",
    b"application/x-tar",
    b"application/x-font-ttf",
    b"application/vnd.ms-fontobject",
    b"application/x-bittorrent",
    b"application/rtf",
    b"application/postscript",
    b"font/ttf",
    b"font/otf",
    b"font/collection",
    b"image/bmp",
    b"image/x-icon",
    b"image/vnd.microsoft.icon",
];

/// Whether `compressed` bytes are worth sending instead of `original`: they
/// must save at least an eighth and at least 256 bytes.
pub fn worth_it(original: usize, compressed: usize) -> bool {
    compressed.saturating_add(original / 8).saturating_add(256) <= original
}

/// `input` in `coding` (identity: an error).
pub fn encode(coding: Coding, input: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 + 64);
    match coding {
        Coding::Br => {
            let params = brotli::enc::BrotliEncoderParams {
                quality: BROTLI_LEVEL as i32,
                lgwin: BROTLI_WINDOW as i32,
                size_hint: input.len(),
                ..Default::default()
            };
            let mut reader = input;
            brotli::BrotliCompress(&mut reader, &mut out, &params)?;
        }
        Coding::Zstd => {
            let mut encoder = zstd::stream::Encoder::new(&mut out, ZSTD_LEVEL)?;
            encoder.include_contentsize(true)?;
            encoder.set_pledged_src_size(Some(input.len() as u64))?;
            encoder.write_all(input)?;
            encoder.finish()?;
        }
        Coding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(GZIP_LEVEL));
            encoder.write_all(input)?;
            encoder.finish()?;
        }
        Coding::Identity => return Err(std::io::Error::other("identity is not an encoder")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Br => {
                brotli::Decompressor::new(data, 4096).read_to_end(&mut out).unwrap();
            }
            Coding::Zstd => out = zstd::decode_all(data).unwrap(),
            Coding::Gzip => {
                flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
            }
            Coding::Identity => out = data.to_vec(),
        }
        out
    }

    #[test]
    fn every_coding_round_trips_and_is_deterministic() {
        let text: Vec<u8> =
            (0..20_000).flat_map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}},").into_bytes()).collect();
        for coding in [Coding::Br, Coding::Zstd, Coding::Gzip] {
            let a = encode(coding, &text).unwrap();
            assert!(worth_it(text.len(), a.len()), "{coding:?} gains on JSON");
            assert_eq!(decode(coding, &a), text, "{coding:?} round trip");
            // A strong ETag per version needs the same bytes every time.
            assert_eq!(encode(coding, &text).unwrap(), a, "{coding:?} is deterministic");
            assert_eq!(decode(coding, &encode(coding, b"").unwrap()), b"", "{coding:?} empty");
        }
        assert!(encode(Coding::Identity, b"x").is_err());
    }

    #[test]
    fn types() {
        for yes in [
            "text/html; charset=utf-8",
            "text/javascript; charset=utf-8",
            "application/json",
            "image/svg+xml",
            "application/wasm",
            "font/ttf",
            "application/manifest+json",
            "TEXT/CSS",
        ] {
            assert!(compressible(yes.as_bytes()), "{yes}");
        }
        for no in [
            "image/png",
            "image/jpeg",
            "font/woff2",
            "font/woff",
            "application/gzip",
            "application/zip",
            "video/mp4",
            "application/octet-stream",
            "application/pdf",
            "",
        ] {
            assert!(!compressible(no.as_bytes()), "{no}");
        }
        let rules = CompressRules::default();
        assert!(!rules.applies(true, 1023), "below the minimum");
        assert!(rules.applies(true, 1024));
        assert!(!rules.applies(false, 1024), "not a compressible type");
        assert!(!rules.applies(true, DEFAULT_MAX + 1), "above the maximum");
        assert!(!CompressRules { enabled: false, ..rules }.applies(true, 4096));
    }

    #[test]
    fn small_gains_are_not_worth_it() {
        assert!(!worth_it(1000, 900), "saves a tenth but only 100 bytes");
        assert!(!worth_it(100_000, 90_000), "saves a tenth: under an eighth");
        assert!(worth_it(100_000, 80_000));
    }
}
