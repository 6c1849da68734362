//! Cold pages must not stall a runtime worker. The served files live on a
//! loop-mounted ext4 image whose reads are throttled to 2 MB/s by a blkio
//! cgroup holding the server, and the page cache is dropped before the cold
//! download starts. With one worker thread, a major fault taken inside
//! `writev` would hold every other request for as long as the disk read
//! takes; with prefaulting on the blocking pool, small hot requests keep
//! answering at once. The same run with `--prefault=false` must show the
//! stall, or the test would prove nothing.
//!
//! Needs root (loop device, mount, cgroup, drop_caches), as CI runs.

use crate::common::*;
use std::process::Command;
use std::time::{Duration, Instant};

struct ThrottledMount {
    image: Scratch,
    mount: std::path::PathBuf,
    device: String,
    cgroup: std::path::PathBuf,
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl ThrottledMount {
    fn new(bytes_per_sec: u64) -> ThrottledMount {
        let image = Scratch::new("coldimg");
        let img = image.join("fs.img");
        let mount = image.join("mnt");
        std::fs::create_dir_all(&mount).unwrap();
        sh(&format!("truncate -s 200M {0} && mkfs.ext4 -q -F {0}", img.display()));
        let device = sh(&format!("losetup -f --show {}", img.display()));
        sh(&format!("mount {device} {}", mount.display()));
        set_mode(&mount, 0o755);
        let majmin = sh(&format!("cat /sys/block/{}/dev", device.trim_start_matches("/dev/")));
        let cgroup =
            std::path::PathBuf::from(format!("/sys/fs/cgroup/blkio/mapserve-cold-{}", std::process::id()));
        std::fs::create_dir_all(&cgroup).unwrap();
        std::fs::write(cgroup.join("blkio.throttle.read_bps_device"), format!("{majmin} {bytes_per_sec}"))
            .unwrap();
        ThrottledMount { image, mount, device, cgroup }
    }

    fn enter(&self, pid: u32) {
        std::fs::write(self.cgroup.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for ThrottledMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
        let _ = std::fs::remove_dir(&self.cgroup);
        let _ = &self.image;
    }
}

/// Worst latency of small hot requests while a cold download runs.
fn worst_hot_latency(prefault: bool, unprivileged: bool) -> (Duration, u64) {
    let mount = ThrottledMount::new(2_000_000);
    let cold = pattern(32 << 20, 80);
    std::fs::write(mount.mount.join("cold.bin"), &cold).unwrap();
    std::fs::write(mount.mount.join("hot.txt"), b"hot").unwrap();
    for f in ["cold.bin", "hot.txt"] {
        set_mode(&mount.mount.join(f), 0o644);
    }
    let mut launch = Launch::new(&mount.mount).args(&["--workers", "1", &format!("--prefault={prefault}")]);
    if unprivileged {
        launch = launch.unprivileged();
    }
    let srv = launch.start();
    mount.enter(srv.pid());
    assert_eq!(srv.get("/hot.txt").body, b"hot");
    sh("sync && echo 1 > /proc/sys/vm/drop_caches");
    let out = Scratch::new("cold-out");
    let mut download = Command::new("curl")
        .args(["-sS", "-o", out.join("c").to_str().unwrap(), &srv.url("/cold.bin")])
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let answer = srv.try_raw(b"GET /hot.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        worst = worst.max(t.elapsed());
        let Ok(raw) = answer else {
            // No answer within the client's 10 s: the worker is stalled.
            break;
        };
        assert_eq!(Resp::parse(&raw, false).body, b"hot");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = download.kill();
    let _ = download.wait();
    let got = std::fs::metadata(out.join("c")).map(|m| m.len()).unwrap_or(0);
    (worst, got)
}

#[test]
fn cold_reads_do_not_stall_other_requests_on_the_same_worker() {
    let name = "cold_reads_do_not_stall_other_requests_on_the_same_worker";
    if !is_root() {
        return skip(name, "needs root (loop device, mount, cgroup, drop_caches)");
    }
    if !std::path::Path::new("/sys/fs/cgroup/blkio").is_dir() {
        return skip(
            name,
            "needs the cgroup v1 blkio controller at /sys/fs/cgroup/blkio to throttle the disk",
        );
    }
    if !works("losetup", &["--version"]) {
        return skip(name, "needs losetup");
    }
    for unprivileged in [false, true] {
        let (with, got) = worst_hot_latency(true, unprivileged);
        assert!(got > 0 && got < (32 << 20), "the cold download must be throttled, not done ({got} bytes)");
        // Generous: other tests share the two CPUs. A stalled worker waits
        // for seconds (below), a busy machine for a few milliseconds.
        assert!(
            with < Duration::from_millis(500),
            "prefault on (unprivileged: {unprivileged}): a hot request waited {with:?}"
        );
        eprintln!("prefault on, unprivileged={unprivileged}: worst hot request {with:?}");
    }
    let (without, _) = worst_hot_latency(false, false);
    eprintln!("prefault off: worst hot request {without:?}");
    assert!(
        without > Duration::from_millis(60),
        "without prefault the worker should stall (worst {without:?})"
    );
}
