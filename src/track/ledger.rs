//! What left the socket, per HTTP/1 response, for the access log and the
//! metrics: an aborted download is logged with the body bytes the kernel
//! took, not the Content-Length nor what was handed to hyper.
//!
//! A response body registers every chunk it hands to hyper (its address
//! range; hyper writes those bytes from the same memory, with `writev`).
//! The connection's I/O wrapper credits each write to the response whose
//! chunk the written bytes lie in, so response heads, which are not in any
//! chunk, are never counted. A body that has ended is *deferred* until its
//! bytes are out: at the next successful flush (hyper flushes only once
//! everything it queued is written, so then every ended body is out in
//! full), or when the connection closes, with what was credited (less what
//! still sat in the splice pipe): `cancelled` if that is short of what the
//! body handed over.
//!
//! Only HTTP/1 over plain TCP or unix sockets keeps a ledger; under TLS and
//! HTTP/2 the bytes written are ciphertext or frames, and a response is
//! reported with what its body handed over.

use crate::access_log::{Ending, Report};
use std::collections::VecDeque;

/// One ended body waiting for its bytes to be written.
#[derive(Debug)]
struct Deferred {
    seq: u64,
    handed: u64,
    ending: Ending,
    report: Report,
}

/// The ledger's state (behind the tracker's lock).
#[derive(Debug, Default)]
pub(super) struct Ledger {
    next_seq: u64,
    /// Registered chunks not yet written in full: (response, from, to).
    chunks: VecDeque<(u64, usize, usize)>,
    /// Body bytes written per response not yet reported.
    credit: VecDeque<(u64, u64)>,
    pending: VecDeque<Deferred>,
    /// The response the last credited bytes belonged to.
    last_credited: Option<u64>,
    closed: bool,
}

/// A report ready to be sent once the lock is released.
pub(super) type Ready = (Report, u64, Ending);

impl Ledger {
    /// A sequence number for a new body.
    pub(super) fn next(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Registers a chunk of body `seq`.
    pub(super) fn chunk(&mut self, seq: u64, from: usize, len: usize) {
        if len > 0 && !self.closed {
            self.chunks.push_back((seq, from, from.saturating_add(len)));
        }
    }

    /// Credits `len` bytes written from address `at`.
    pub(super) fn written(&mut self, at: usize, len: usize) {
        let Some(i) = self.chunks.iter().position(|&(_, from, to)| from <= at && at < to) else { return };
        let Some(chunk) = self.chunks.get_mut(i) else { return };
        let take = len.min(chunk.2 - at);
        chunk.1 = at + take;
        let seq = chunk.0;
        // Writes go in order: chunks before this one are done.
        if chunk.1 >= chunk.2 {
            self.chunks.drain(..=i);
        } else {
            self.chunks.drain(..i);
        }
        match self.credit.iter_mut().find(|c| c.0 == seq) {
            Some(c) => c.1 += take as u64,
            None => self.credit.push_back((seq, take as u64)),
        }
        self.last_credited = Some(seq);
    }

    fn take_credit(&mut self, seq: u64) -> u64 {
        match self.credit.iter().position(|c| c.0 == seq) {
            Some(i) => self.credit.remove(i).map_or(0, |c| c.1),
            None => 0,
        }
    }

    /// Body `seq` ended, having handed `handed` bytes over: deferred, or
    /// ready at once when the connection is already closed.
    pub(super) fn defer(&mut self, seq: u64, handed: u64, ending: Ending, report: Report) -> Option<Ready> {
        if self.closed {
            self.chunks.retain(|c| c.0 != seq);
            let bytes = self.take_credit(seq).min(handed);
            return Some((report, bytes, short(ending, bytes, handed)));
        }
        self.pending.push_back(Deferred { seq, handed, ending, report });
        None
    }

    /// A flush completed: every ended body is out in full. One at a time,
    /// so that the caller reports each outside the lock.
    pub(super) fn flushed(&mut self) -> Option<Ready> {
        let d = self.pending.pop_front()?;
        self.chunks.retain(|c| c.0 != d.seq);
        self.take_credit(d.seq);
        Some((d.report, d.handed, d.ending))
    }

    /// The connection closed with `in_pipe` bytes never sent: what each
    /// ended body got out.
    pub(super) fn close(&mut self, in_pipe: u64, out: &mut Vec<Ready>) {
        self.closed = true;
        if let Some(seq) = self.last_credited {
            if let Some(c) = self.credit.iter_mut().find(|c| c.0 == seq) {
                c.1 = c.1.saturating_sub(in_pipe);
            }
        }
        while let Some(d) = self.pending.pop_front() {
            let bytes = self.take_credit(d.seq).min(d.handed);
            out.push((d.report, bytes, short(d.ending, bytes, d.handed)));
        }
        self.chunks.clear();
    }
}

/// A body that handed everything over but did not get it all out was cut
/// off by the client.
fn short(ending: Ending, bytes: u64, handed: u64) -> Ending {
    if ending == Ending::Complete && bytes < handed { Ending::Cancelled } else { ending }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report::default()
    }

    #[test]
    fn heads_are_not_credited_and_a_flush_settles_ended_bodies() {
        let mut l = Ledger::default();
        let seq = l.next();
        l.chunk(seq, 1000, 100);
        l.written(5000, 40); // a response head: no chunk holds it
        l.written(1000, 60);
        assert!(l.defer(seq, 100, Ending::Complete, report()).is_none());
        let ready = l.flushed().unwrap();
        assert_eq!((ready.1, ready.2), (100, Ending::Complete));
        assert!(l.flushed().is_none());
        assert!(l.chunks.is_empty() && l.credit.is_empty());
    }

    #[test]
    fn a_closed_connection_reports_what_was_credited() {
        let mut l = Ledger::default();
        let a = l.next();
        l.chunk(a, 0, 1000);
        l.chunk(a, 2000, 1000);
        l.written(0, 1000);
        l.written(2000, 300);
        assert!(l.defer(a, 2000, Ending::Complete, report()).is_none());
        let mut out = Vec::new();
        l.close(100, &mut out);
        assert_eq!((out[0].1, out[0].2), (1200, Ending::Cancelled), "100 bytes were still in the pipe");
        // A body dropped after the close is reported at once.
        let b = l.next();
        let ready = l.defer(b, 10, Ending::Cancelled, report()).unwrap();
        assert_eq!((ready.1, ready.2), (0, Ending::Cancelled));
    }

    #[test]
    fn pipelined_bodies_are_credited_apart() {
        let mut l = Ledger::default();
        let (a, b) = (l.next(), l.next());
        l.chunk(a, 100, 10);
        l.chunk(b, 500, 10);
        l.written(100, 10);
        l.written(500, 4);
        l.defer(a, 10, Ending::Complete, report());
        l.defer(b, 10, Ending::Complete, report());
        let mut out = Vec::new();
        l.close(0, &mut out);
        assert_eq!(
            out.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(),
            [(10, Ending::Complete), (4, Ending::Cancelled)]
        );
    }
}
