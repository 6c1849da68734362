//! Content-Type from a file name's extension.
//!
//! `mime_guess` supplies the table; this module applies the project's rules on
//! top: `charset=utf-8` on text types, JavaScript and JSON, JavaScript as
//! `text/javascript` (RFC 9239), `application/wasm` exactly, and
//! `application/octet-stream` when the extension is unknown.

use http::HeaderValue;

/// Content-Type for a file whose last path segment is `name`.
pub fn content_type(name: &[u8]) -> HeaderValue {
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => name.get(dot + 1..).unwrap_or_default(),
        _ => b"",
    };
    let Ok(ext) = std::str::from_utf8(ext) else {
        return HeaderValue::from_static(OCTET_STREAM);
    };
    let ext = ext.to_ascii_lowercase();
    let essence = match ext.as_str() {
        "" => return HeaderValue::from_static(OCTET_STREAM),
        "js" | "mjs" | "cjs" => return HeaderValue::from_static("text/javascript; charset=utf-8"),
        "wasm" => return HeaderValue::from_static("application/wasm"),
        _ => match mime_guess::from_ext(&ext).first_raw() {
            Some(essence) => essence,
            None => return HeaderValue::from_static(OCTET_STREAM),
        },
    };
    if wants_charset(essence) {
        HeaderValue::from_str(&format!("{essence}; charset=utf-8"))
            .unwrap_or_else(|_| HeaderValue::from_static(OCTET_STREAM))
    } else {
        HeaderValue::from_static(essence)
    }
}

const OCTET_STREAM: &str = "application/octet-stream";

fn wants_charset(essence: &str) -> bool {
    essence.starts_with("text/")
        || essence == "application/javascript"
        || essence == "application/json"
        || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(name: &str) -> String {
        content_type(name.as_bytes()).to_str().unwrap().to_owned()
    }

    #[test]
    fn types_follow_the_project_rules() {
        let cases = [
            ("index.html", "text/html; charset=utf-8"),
            ("INDEX.HTM", "text/html; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("mod.mjs", "text/javascript; charset=utf-8"),
            ("data.json", "application/json; charset=utf-8"),
            ("site.webmanifest", "application/manifest+json; charset=utf-8"),
            ("lib.wasm", "application/wasm"),
            ("photo.png", "image/png"),
            ("clip.mp4", "video/mp4"),
            ("archive.tar.gz", "application/gzip"),
            ("blob.unknownext", "application/octet-stream"),
            ("Makefile", "application/octet-stream"),
            (".hidden", "application/octet-stream"),
            ("trailingdot.", "application/octet-stream"),
        ];
        for (name, expected) in cases {
            assert_eq!(ct(name), expected, "{name}");
        }
    }

    #[test]
    fn non_utf8_names_are_octet_stream() {
        assert_eq!(content_type(b"a.\xff\xfe"), "application/octet-stream");
    }
}
