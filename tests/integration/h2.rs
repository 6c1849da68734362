//! HTTP/2 connections driven frame by frame (`h2client.py`, built on the
//! `h2` library): what they may hold, how long they may stall, and what
//! floods they may send.

use crate::common::*;
use std::time::Duration;

#[test]
fn an_idle_h2_connection_pins_no_mapping_of_a_deleted_file() {
    let s = Scratch::new("h2-pin");
    let data = pattern(1_114_212, 1);
    let path = s.write("f.bin", &data);
    let srv = Server::start(&s.path);
    let mut client = H2Client::spawn(srv.port, &["get-and-hold", "/f.bin", "30"]);
    let got = client.next_line().unwrap();
    assert_eq!(got["status"], 200);
    assert_eq!(got["length"], data.len());
    std::fs::remove_file(&path).unwrap();
    // The connection stays open and silent; two sweeps (2 s apart) later the
    // deleted file must no longer be mapped.
    assert!(
        eventually(Duration::from_secs(8), || deleted_mappings(srv.pid()) == 0),
        "the idle h2 connection keeps the deleted file mapped"
    );
    drop(client);
}
