//! The length of the request line being read on an HTTP/1 connection, so
//! that an over-long one gets 414 URI Too Long as soon as it passes
//! [`MAX_REQUEST_LINE`] (nginx's default buffer), instead of being buffered
//! to hyper's 64 KiB head limit and answered 431 (which is for header
//! fields). Pure: fed with the bytes read.
//!
//! It follows lines: the first line after a blank line (the end of a head)
//! is taken for a request line when it starts like one (an upper-case method
//! and a space). A request body that follows a head is not parsed; bodies on
//! GET and HEAD are rare, and the check above keeps binary body data from
//! being taken for a request line.

/// Longest request line accepted.
pub const MAX_REQUEST_LINE: usize = 8 << 10;

/// Where the reader is.
#[derive(Debug, Clone, Default)]
pub struct LineScanner {
    /// Bytes of the current (unterminated) line.
    line_len: usize,
    /// Complete lines since the last blank line (0: in a request line).
    lines_in_head: u32,
    /// For the first line of a head: whether it starts like a request.
    looks_like_request: Option<bool>,
    /// The last byte of the current line seen so far.
    last: u8,
}

impl LineScanner {
    /// Feeds bytes read; true once the current request line is longer than
    /// [`MAX_REQUEST_LINE`].
    pub fn feed(&mut self, data: &[u8]) -> bool {
        // The usual read: whole request heads, starting at a head and ending
        // with its blank line, shorter than the limit. No line in it can be
        // too long, and it leaves the scanner where it was.
        if self.line_len == 0
            && self.lines_in_head == 0
            && data.len() <= MAX_REQUEST_LINE
            && data.ends_with(b"\r\n\r\n")
        {
            return false;
        }
        let mut start = 0;
        // Runs on every read: newlines are found with SIMD (memchr).
        for nl in memchr::memchr_iter(b'\n', data) {
            self.see(data.get(start..nl).unwrap_or_default());
            if self.too_long() {
                return true;
            }
            let blank = self.line_len == 0 || (self.line_len == 1 && self.last == b'\r');
            self.lines_in_head = if blank { 0 } else { self.lines_in_head.saturating_add(1) };
            self.line_len = 0;
            self.last = 0;
            self.looks_like_request = None;
            start = nl + 1;
        }
        self.see(data.get(start..).unwrap_or_default());
        self.too_long()
    }

    fn see(&mut self, part: &[u8]) {
        if self.lines_in_head == 0 && self.looks_like_request.is_none() {
            // Decided on the first byte that is not part of a method token.
            let seen = self.line_len;
            if let Some(i) = part.iter().position(|b| !b.is_ascii_uppercase()) {
                self.looks_like_request = Some(seen + i > 0 && part.get(i) == Some(&b' '));
            }
        }
        if let Some(&b) = part.last() {
            self.last = b;
        }
        self.line_len = self.line_len.saturating_add(part.len());
    }

    fn too_long(&self) -> bool {
        self.lines_in_head == 0 && self.line_len > MAX_REQUEST_LINE && self.looks_like_request == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in(parts: &[&[u8]]) -> bool {
        let mut s = LineScanner::default();
        parts.iter().any(|p| s.feed(p))
    }

    #[test]
    fn a_long_request_line_is_caught_however_it_arrives() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert!(feed_in(&[long.as_bytes()]));
        let bytes = long.as_bytes();
        assert!(feed_in(&bytes.chunks(7).collect::<Vec<_>>()));
        // Only once the limit is passed: a short first piece says nothing.
        let mut s = LineScanner::default();
        assert!(!s.feed(&bytes[..100]));
        assert!(s.feed(&bytes[100..]));
    }

    #[test]
    fn long_header_lines_and_normal_requests_are_left_to_hyper() {
        let ok = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n".repeat(500);
        assert!(!feed_in(&[ok.as_bytes()]));
        let cookie = format!("GET / HTTP/1.1\r\nCookie: {}\r\n\r\n", "c".repeat(40_000));
        assert!(!feed_in(&[cookie.as_bytes()]), "a long header line is 431's business");
        let exact = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE - 15));
        assert!(!feed_in(&[exact.as_bytes()]), "{} bytes is within the limit", exact.find('\r').unwrap());
    }

    #[test]
    fn the_next_request_after_a_keep_alive_one_is_checked_too() {
        let first = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let second = format!("GET /{} HTTP/1.1\r\n", "b".repeat(MAX_REQUEST_LINE));
        assert!(feed_in(&[first.as_bytes(), second.as_bytes()]));
    }

    #[test]
    fn body_bytes_that_do_not_start_like_a_request_are_ignored() {
        let body = format!("POST / HTTP/1.1\r\nContent-Length: 20000\r\n\r\n{}", "\u{1}x".repeat(10_000));
        assert!(!feed_in(&[body.as_bytes()]));
        let lower = format!("get /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert!(!feed_in(&[lower.as_bytes()]), "not a method token: hyper answers 400");
    }
}
