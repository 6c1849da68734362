//! The download clients people use: curl resume, wget resume, aria2c with
//! eight connections; every result checked by sha256.

use crate::common::*;

fn big_site() -> (Scratch, std::path::PathBuf) {
    let s = Scratch::new("clients");
    let p = s.write("files/big.bin", &pattern(24 << 20, 11));
    (s, p)
}

#[test]
fn curl_resumes_a_partial_download() {
    let (s, original) = big_site();
    let srv = Server::start(&s.path);
    let out = s.join("curl.out");
    // A first, partial download: the first 5 MB as curl would have left it.
    std::fs::write(&out, &std::fs::read(&original).unwrap()[..5_000_000]).unwrap();
    let r = run("curl", &["-sS", "-C", "-", "-o", out.to_str().unwrap(), &srv.url("/files/big.bin")]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(sha256_file(&out), sha256_file(&original));
    // Resuming a complete file: 416, and curl treats it as done.
    let r = run(
        "curl",
        &["-sS", "-C", "-", "-o", out.to_str().unwrap(), "-w", "%{http_code}", &srv.url("/files/big.bin")],
    );
    assert_eq!(String::from_utf8_lossy(&r.stdout), "416");
    assert_eq!(sha256_file(&out), sha256_file(&original));
}

#[test]
fn curl_killed_mid_download_then_resumed() {
    let (s, original) = big_site();
    let srv = Server::start(&s.path);
    let out = s.join("killed.out");
    let _ = run(
        "curl",
        &["-sS", "--limit-rate", "4M", "-m", "1", "-o", out.to_str().unwrap(), &srv.url("/files/big.bin")],
    );
    let partial = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    assert!(partial > 0 && partial < 24 << 20, "partial {partial}");
    let r = run("curl", &["-sS", "-C", "-", "-o", out.to_str().unwrap(), &srv.url("/files/big.bin")]);
    assert!(r.status.success());
    assert_eq!(sha256_file(&out), sha256_file(&original));
}

#[test]
fn wget_continues_a_partial_download() {
    let (s, original) = big_site();
    let srv = Server::start(&s.path);
    let dir = Scratch::new("wget");
    let out = dir.join("big.bin");
    std::fs::write(&out, &std::fs::read(&original).unwrap()[..7_777_777]).unwrap();
    let r = run("wget", &["-q", "-c", "-O", out.to_str().unwrap(), &srv.url("/files/big.bin")]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(sha256_file(&out), sha256_file(&original));
}

#[test]
fn aria2c_with_eight_connections_gets_identical_bytes() {
    let (s, original) = big_site();
    let srv = Server::start(&s.path);
    let dir = Scratch::new("aria");
    let r = run(
        "aria2c",
        &[
            "-q",
            "-x8",
            "-s8",
            "-k1M",
            "--allow-overwrite=true",
            "-d",
            dir.path.to_str().unwrap(),
            "-o",
            "got.bin",
            &srv.url("/files/big.bin"),
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stdout));
    assert_eq!(sha256_file(&dir.join("got.bin")), sha256_file(&original));
    let ranged = || srv.log().matches("status=206").count() >= 6;
    assert!(eventually(std::time::Duration::from_secs(5), ranged), "aria2c used ranges:\n{}", srv.log());
}
