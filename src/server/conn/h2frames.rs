//! HTTP/2 frame boundaries, read off the bytes a connection reads and
//! writes, and a flood guard fed from them. Pure: no I/O, no clock of its own.
//!
//! hyper's HTTP/2 server answers every PING, applies every SETTINGS,
//! WINDOW_UPDATE and PRIORITY frame, and never says a peer sends too many of
//! them; a client can keep a core busy with control frames alone (measured:
//! 27.8 million frames in 6 s) and keep a connection open forever with one
//! PING a second. So the connection counts frames itself, on the way in:
//!
//! * each control frame (PING, SETTINGS, WINDOW_UPDATE, PRIORITY,
//!   RST_STREAM, CONTINUATION, and DATA frames that carry nothing and do not
//!   end their stream) spends a token;
//! * tokens come back with useful work: a request (HEADERS) returns
//!   [`CREDIT_PER_REQUEST`], every KiB the server writes returns one (a
//!   client downloading fast sends WINDOW_UPDATEs in proportion), and time
//!   returns [`REFILL_PER_SEC`] a second, up to [`BURST`];
//! * below zero the connection is a flood: it gets GOAWAY
//!   (ENHANCE_YOUR_CALM) and is closed, as nginx does.
//!
//! The same scanner tracks the frames written, so that a GOAWAY is only ever
//! written between two frames.

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Tokens a connection starts with, and holds at most.
pub const BURST: i64 = 1000;
/// Tokens a request returns.
pub const CREDIT_PER_REQUEST: i64 = 16;
/// Tokens returned per second.
pub const REFILL_PER_SEC: i64 = 100;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;

/// One frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length.
    pub len: u32,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier.
    pub stream: u32,
}

impl FrameHeader {
    fn parse(b: &[u8; 9]) -> FrameHeader {
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// Whether this frame is control traffic that does no work for the
    /// client (it spends a token).
    pub fn is_control(&self) -> bool {
        match self.kind {
            PING | SETTINGS => self.flags & ACK == 0,
            PRIORITY | RST_STREAM | WINDOW_UPDATE | CONTINUATION => true,
            DATA => self.len == 0 && self.flags & END_STREAM == 0,
            _ => false,
        }
    }

    /// Whether this frame opens a request.
    pub fn is_request(&self) -> bool {
        self.kind == HEADERS
    }
}

/// Follows frame boundaries through a byte stream fed in pieces.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    preface_left: usize,
    header: [u8; 9],
    have: usize,
    payload_left: u64,
}

impl FrameScanner {
    /// A scanner for the bytes a server reads (they start with the preface).
    pub fn reading() -> FrameScanner {
        FrameScanner { preface_left: PREFACE.len(), header: [0; 9], have: 0, payload_left: 0 }
    }

    /// A scanner for frames from the first byte (the preface, if any,
    /// already consumed).
    pub fn frames() -> FrameScanner {
        FrameScanner { preface_left: 0, header: [0; 9], have: 0, payload_left: 0 }
    }

    /// Whether the stream is between two frames.
    pub fn at_boundary(&self) -> bool {
        self.preface_left == 0 && self.have == 0 && self.payload_left == 0
    }

    /// Feeds `data`; calls `on_frame` for each frame header completed.
    pub fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(FrameHeader)) {
        while !data.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(data.len());
                self.preface_left -= n;
                data = data.get(n..).unwrap_or_default();
            } else if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left).unwrap_or(usize::MAX).min(data.len());
                self.payload_left -= n as u64;
                data = data.get(n..).unwrap_or_default();
            } else {
                let n = (9 - self.have).min(data.len());
                if let (Some(dst), Some(src)) = (self.header.get_mut(self.have..self.have + n), data.get(..n))
                {
                    dst.copy_from_slice(src);
                }
                self.have += n;
                data = data.get(n..).unwrap_or_default();
                if self.have == 9 {
                    self.have = 0;
                    let frame = FrameHeader::parse(&self.header);
                    self.payload_left = u64::from(frame.len);
                    on_frame(frame);
                }
            }
        }
    }

    /// Skips `n` bytes known to be frame payload or whole frames' worth of
    /// counted bytes without looking at them (spliced file data).
    pub fn skip_payload(&mut self, n: u64) {
        self.payload_left = self.payload_left.saturating_sub(n);
    }

    /// Payload bytes left in the current frame.
    pub fn payload_left(&self) -> u64 {
        self.payload_left
    }
}

/// The token bucket of [`module docs`](self).
#[derive(Debug, Clone)]
pub struct FloodGuard {
    tokens: i64,
    last_refill_ms: u64,
    written_remainder: u64,
    /// Highest stream a request was opened on (for GOAWAY).
    pub last_stream: u32,
}

impl FloodGuard {
    /// A full bucket at `now_ms`.
    pub fn new(now_ms: u64) -> FloodGuard {
        FloodGuard { tokens: BURST, last_refill_ms: now_ms, written_remainder: 0, last_stream: 0 }
    }

    fn add(&mut self, n: i64) {
        self.tokens = self.tokens.saturating_add(n).min(BURST);
    }

    /// Accounts one frame read at `now_ms`; false once the peer floods.
    pub fn on_frame(&mut self, frame: FrameHeader, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_refill_ms);
        if elapsed >= 10 {
            let refill = i64::try_from(elapsed.saturating_mul(REFILL_PER_SEC as u64) / 1000).unwrap_or(BURST);
            self.add(refill);
            self.last_refill_ms = now_ms;
        }
        if frame.is_request() {
            self.add(CREDIT_PER_REQUEST);
            self.last_stream = self.last_stream.max(frame.stream);
        } else if frame.is_control() {
            self.tokens -= 1;
        }
        self.tokens >= 0
    }

    /// Accounts `n` bytes written to the peer.
    pub fn on_written(&mut self, n: u64) {
        let total = self.written_remainder.saturating_add(n);
        self.add(i64::try_from(total / 1024).unwrap_or(BURST));
        self.written_remainder = total % 1024;
    }
}

/// A GOAWAY frame (RFC 9113 §6.8) naming `last_stream` and ENHANCE_YOUR_CALM.
pub fn goaway_enhance_your_calm(last_stream: u32) -> [u8; 17] {
    let mut f = [0u8; 17];
    f[2] = 8; // length
    f[3] = 0x7; // GOAWAY
    f[9..13].copy_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f[13..17].copy_from_slice(&0xbu32.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn stream_of(frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        for (k, fl, s, p) in frames {
            bytes.extend(frame(*k, *fl, *s, p));
        }
        bytes
    }

    proptest! {
        /// However the bytes are cut into reads, the same frames are seen.
        #[test]
        fn frames_are_found_whatever_the_read_sizes(
            frames in proptest::collection::vec((0u8..10, any::<u8>(), 0u32..1000, proptest::collection::vec(any::<u8>(), 0..300)), 0..20),
            cuts in proptest::collection::vec(1usize..50, 1..200),
        ) {
            let bytes = stream_of(&frames);
            let mut scanner = FrameScanner::reading();
            let mut seen = Vec::new();
            let mut rest = &bytes[..];
            let mut cuts = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*cuts.next().unwrap()).min(rest.len());
                scanner.feed(&rest[..n], |f| seen.push((f.kind, f.flags, f.stream, f.len)));
                rest = &rest[n..];
            }
            let want: Vec<_> = frames.iter().map(|(k, fl, s, p)| (*k, *fl, *s, p.len() as u32)).collect();
            prop_assert_eq!(seen, want);
            prop_assert!(scanner.at_boundary());
        }
    }

    #[test]
    fn a_ping_flood_is_caught_and_a_ping_a_second_is_not() {
        let ping = FrameHeader { len: 8, kind: PING, flags: 0, stream: 0 };
        let mut g = FloodGuard::new(0);
        let flooded = (0..5000).position(|i| !g.on_frame(ping, i / 100));
        assert!(flooded.is_some_and(|i| i <= BURST as usize + 1), "{flooded:?}");
        let mut g = FloodGuard::new(0);
        assert!((0..10_000u64).all(|s| g.on_frame(ping, s * 1000)), "one PING a second for hours");
    }

    #[test]
    fn requests_and_downloads_pay_for_their_control_frames() {
        let wu = FrameHeader { len: 4, kind: WINDOW_UPDATE, flags: 0, stream: 1 };
        let headers = FrameHeader { len: 20, kind: HEADERS, flags: 0x5, stream: 7 };
        let mut g = FloodGuard::new(0);
        // A fast download: two WINDOW_UPDATEs per 16 KiB DATA frame, forever.
        for _ in 0..100_000 {
            g.on_written(16 * 1024 + 9);
            assert!(g.on_frame(wu, 0) && g.on_frame(wu, 0));
        }
        // A browser: a request, a PRIORITY and a RST_STREAM each, forever.
        let prio = FrameHeader { len: 5, kind: PRIORITY, flags: 0, stream: 7 };
        let rst = FrameHeader { len: 4, kind: RST_STREAM, flags: 0, stream: 7 };
        for _ in 0..100_000 {
            assert!(g.on_frame(headers, 0) && g.on_frame(prio, 0) && g.on_frame(rst, 0));
        }
        assert_eq!(g.last_stream, 7);
        // Acknowledgements and requests cost nothing; empty DATA does.
        assert!(!FrameHeader { len: 0, kind: PING, flags: ACK, stream: 0 }.is_control());
        assert!(!FrameHeader { len: 0, kind: DATA, flags: END_STREAM, stream: 1 }.is_control());
        assert!(FrameHeader { len: 0, kind: DATA, flags: 0, stream: 1 }.is_control());
    }

    #[test]
    fn goaway_is_a_well_formed_frame() {
        let f = goaway_enhance_your_calm(41);
        let mut s = FrameScanner::frames();
        let mut seen = Vec::new();
        s.feed(&f, |h| seen.push(h));
        assert_eq!(seen, vec![FrameHeader { len: 8, kind: 0x7, flags: 0, stream: 0 }]);
        assert!(s.at_boundary());
        assert_eq!(&f[9..13], &41u32.to_be_bytes());
        assert_eq!(&f[13..], &11u32.to_be_bytes());
    }
}
