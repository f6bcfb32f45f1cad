//! `airgap serve` under abuse, with a real client (skopeo) pulling every image at the same time: hundreds of
//! silent connections, slow-loris connections, junk requests, too few file descriptors, blob files truncated
//! or damaged on disk (before and during a download). The server must keep serving what is intact and stay up.

use super::{assert_pulled, new_store, skopeo_copy, Served};
use crate::support::attack::{hostile, junk, Fate, JunkResult};
use crate::support::images::{make_image, ImageSpec, MadeImage};
use crate::support::require_tool;
use airgap::registry::store::load_layout;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Three images (multi-platform OCI, Docker list, single) in one layout, as (served path:tag, image).
fn three_images(layout: &Path, seed: u64) -> Vec<(String, MadeImage)> {
    let specs = [
        ("example.test/team/multi:1", "team/multi:1", ImageSpec::multi(&["linux/amd64", "linux/arm64"], seed)),
        (
            "example.test/team/docker:2",
            "team/docker:2",
            ImageSpec { format: crate::support::images::Format::Docker, ..ImageSpec::multi(&["linux/amd64", "linux/arm/v7"], seed + 1) },
        ),
        ("example.test/single:3", "single:3", ImageSpec::single(seed + 2)),
    ];
    specs.into_iter().map(|(r, served, spec)| (served.to_string(), make_image(layout, r, &spec))).collect()
}

/// skopeo copies every image (in turn, while the attack goes on) and each copy is exactly the image.
fn pull_all(addr: &str, images: &[(String, MadeImage)]) {
    let work = tempfile::tempdir().unwrap();
    for (path, img) in images {
        let dst = work.path().join(path.replace(['/', ':'], "_"));
        skopeo_copy(addr, path, &dst).unwrap_or_else(|e| panic!("{e}"));
        assert_pulled(&dst, img);
    }
}

fn curl_status(url: &str, extra: &[&str]) -> String {
    let o = Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"]).args(extra).arg(url).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Every junk request got a 4xx answer or a closed connection: never a 5xx, never a hang. (A valid request
/// with a malformed optional part, a `Range` or a query parameter, is answered as if it were absent.)
fn assert_junk_refused(results: &[JunkResult]) {
    assert!(!results.is_empty());
    for r in results {
        let ignorable = ["a bad range", "a bad query"].contains(&r.what.as_str());
        match r.status {
            Some(200) if ignorable => {}
            Some(s) => assert!((400..500).contains(&s), "junk {:?} got {s}", r.what),
            None => assert!(
                ["garbage bytes", "HTTP/2 preface on HTTP/1", "request line without a version", "NUL in the request line"].contains(&r.what.as_str()),
                "junk {:?} got no answer (only unparseable requests may be closed without one)",
                r.what
            ),
        }
    }
}

#[test]
fn serve_keeps_pulls_going_through_silent_slow_loris_and_junk_connections() {
    require_tool("curl");
    let layout = tempfile::tempdir().unwrap();
    let images = three_images(layout.path(), 700);
    let (_d, store) = new_store();
    load_layout(&store, layout.path()).unwrap();
    // A short header deadline so that the test sees it act; the cap (1024) is not reached here.
    let header_timeout = Duration::from_secs(2);
    let mut s = Served::start_with(store.root(), &["--header-timeout", "2"]);
    let opened = Instant::now();
    let h = hostile(&s.addr, 300, 40);
    assert_eq!((h.opened, h.failed_to_open), (340, 0));
    let j = junk(&s.addr, "team/multi");

    pull_all(&s.addr, &images);

    let junk_results = j.stop();
    // Every hostile connection is closed by the server once its header deadline passed (the pulls took long
    // enough for most; wait for the rest).
    h.wait_all_closed(opened + header_timeout + Duration::from_secs(20));
    let fates = h.stop();
    let open: Vec<&Fate> = fates.iter().filter(|f| f.closed_after.is_none()).collect();
    assert!(open.is_empty(), "{} of {} silent/slow connections still open {:?} after they were opened", open.len(), fates.len(), opened.elapsed());
    let early: Vec<&Fate> = fates.iter().filter(|f| f.closed_after.unwrap() < header_timeout - Duration::from_millis(100)).collect();
    assert!(early.is_empty(), "connections closed before the header deadline (evicted? the cap was not reached): {early:?}");
    let slow: Vec<usize> = fates.iter().filter(|f| f.slow).map(|f| f.sent).collect();
    assert!(slow.len() == 40 && slow.iter().all(|n| *n >= 1), "the slow-loris clients sent no headers: {slow:?}");
    assert_junk_refused(&junk_results);
    // Still up and serving.
    assert!(s.alive(), "the server died:\n{}", s.log());
    assert_eq!(curl_status(&s.url("/v2/"), &[]), "200");
    assert!(s.wait_log("that sent no complete request headers within", Duration::from_secs(15)), "no report of closed connections:\n{}", s.log());
    eprintln!(
        "{} silent + slow-loris connections ({} header bytes trickled) closed after {:.2}-{:.2} s (header timeout {header_timeout:?}); {} junk requests refused",
        fates.len(),
        slow.iter().sum::<usize>(),
        fates.iter().map(|f| f.closed_after.unwrap().as_secs_f64()).fold(f64::MAX, f64::min),
        fates.iter().map(|f| f.closed_after.unwrap().as_secs_f64()).fold(0.0, f64::max),
        junk_results.len()
    );
}

#[test]
fn serve_with_few_file_descriptors_is_not_starved_by_silent_connections() {
    require_tool("curl");
    let layout = tempfile::tempdir().unwrap();
    let images = three_images(layout.path(), 800);
    let (_d, store) = new_store();
    load_layout(&store, layout.path()).unwrap();
    // 256 open files: more silent connections than the process could ever hold. Default limits otherwise.
    let mut s = Served::start_limited(store.root(), &[], Some(256));
    let h = hostile(&s.addr, 400, 50);
    assert_eq!(h.failed_to_open, 0);

    pull_all(&s.addr, &images);

    assert!(s.alive(), "the server died:\n{}", s.log());
    assert_eq!(curl_status(&s.url("/v2/"), &[]), "200");
    // The open-file limit leaves room for (256 - 64 reserved - 64 waiting) / 2 = 64 connections: all the
    // others were closed to make room (or refused after waiting for a slot).
    assert!(s.log().contains("serving at most 64 connections"), "no warning about the lowered cap:\n{}", s.log());
    h.wait_closed(h.opened - 64, Instant::now() + Duration::from_secs(20));
    let fates = h.stop();
    let closed = fates.iter().filter(|f| f.closed_after.is_some()).count();
    assert!(closed >= fates.len() - 64, "only {closed} of {} silent connections were closed to make room", fates.len());
    assert!(s.wait_log("connection cap of", Duration::from_secs(15)), "no report of the cap:\n{}", s.log());
    eprintln!("{closed} of {} silent/slow connections closed to make room for skopeo", fates.len());
}

/// Truncate or damage blob files of a served store: before a request (refused with 500 from then on) and
/// during a download (that download is cut short). Every other image keeps pulling; the process stays up.
#[test]
fn serve_survives_blob_files_truncated_or_damaged_on_disk() {
    require_tool("curl");
    let layout = tempfile::tempdir().unwrap();
    let images = three_images(layout.path(), 900);
    // A 48 MiB layer (more than the socket buffers hold) for the download that is truncated under way, and a
    // 2 MiB one to damage in the middle.
    let big = make_image(layout.path(), "example.test/big/image:1", &ImageSpec { layers: vec![48 << 20], gzip: false, ..ImageSpec::single(901) });
    let flip = make_image(layout.path(), "example.test/flip/image:1", &ImageSpec { layers: vec![2 << 20], gzip: false, ..ImageSpec::single(902) });
    let (_d, store) = new_store();
    load_layout(&store, layout.path()).unwrap();
    let mut s = Served::start(store.root());
    let largest = |img: &MadeImage| img.blobs.iter().max_by_key(|(_, n)| *n).unwrap().clone();

    // 1. Truncated while being downloaded: read the headers and 1 MiB, stop reading (the server blocks on a
    //    full socket), truncate the file, read on.
    let (bd, bsize) = largest(&big);
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(c, "GET /v2/big/image/blobs/{bd} HTTP/1.1\r\nHost: r\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < (1 << 20) {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed the connection early");
        got.extend_from_slice(&buf[..n]);
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200") && head.to_ascii_lowercase().contains(&format!("content-length: {bsize}")), "{head}");
    let blob_file = store.blob_path(&bd);
    fs_err::OpenOptions::new().write(true).open(&blob_file).unwrap().set_len(1000).unwrap();
    let mut body = got.len() - head_end;
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => body += n,
        }
    }
    assert!((body as u64) < bsize, "a truncated blob was sent whole ({body} bytes)");
    assert!(s.alive(), "the server died when a blob file was truncated under a download:\n{}", s.log());
    // From now on that blob is refused, HEAD and ranges included, with the registry's JSON error.
    let url = s.url(&format!("/v2/big/image/blobs/{bd}"));
    assert_eq!(curl_status(&url, &[]), "500");
    assert_eq!(curl_status(&url, &["-I"]), "500");
    assert_eq!(curl_status(&url, &["-r", "0-9"]), "500");

    // 2. Truncated before any request: a streamed layer of single:3 (larger than the small-blob threshold).
    let single = &images.iter().find(|(p, _)| p == "single:3").unwrap().1;
    let (sd, ssize) = largest(single);
    assert!(ssize > 64 * 1024, "the layer to truncate is too small ({ssize})");
    fs_err::OpenOptions::new().write(true).open(store.blob_path(&sd)).unwrap().set_len(ssize / 2).unwrap();
    assert_eq!(curl_status(&s.url(&format!("/v2/single/blobs/{sd}")), &[]), "500");
    let work = tempfile::tempdir().unwrap();
    let err = skopeo_copy(&s.addr, "single:3", &work.path().join("single")).expect_err("skopeo pulled an image with a truncated layer");
    assert!(err.contains("500") || err.contains("Internal Server Error") || err.contains("damaged"), "{err}");

    // 3. Damaged in the middle (same size): the first whole download is cut short before its last bytes, the
    //    next ones are refused.
    let (fd, fsize) = largest(&flip);
    let path = store.blob_path(&fd);
    let mut bytes = fs_err::read(&path).unwrap();
    bytes[(fsize / 2) as usize] ^= 0xff;
    fs_err::write(&path, &bytes).unwrap();
    let url = s.url(&format!("/v2/flip/image/blobs/{fd}"));
    let out = Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--max-time", "20"]).arg(&url).output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "a damaged blob was downloaded whole: {summary}");
    assert!(summary.starts_with("200 ") && summary[4..].parse::<u64>().unwrap() < fsize, "{summary}");
    assert_eq!(curl_status(&url, &[]), "500");

    // Everything else is intact and still pulls, byte for byte; the server is up and said what it refused.
    let intact: Vec<(String, MadeImage)> = images.iter().filter(|(p, _)| p != "single:3").cloned().collect();
    pull_all(&s.addr, &intact);
    assert!(s.alive(), "the server died:\n{}", s.log());
    let log = s.log();
    for d in [&bd, &sd, &fd] {
        assert!(log.contains(&format!("blob {d}")) && log.contains("fails its check"), "the log does not name {d}:\n{log}");
    }
}
