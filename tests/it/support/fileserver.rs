//! A plain HTTP file server on loopback (Python's stock `http.server`) for `files:` URLs.

use super::{free_port, require_tool, wait_for_port, ChildGuard};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct FileServer {
    pub addr: String,
    _child: ChildGuard,
}

impl FileServer {
    /// Serve `dir` at `http://127.0.0.1:PORT/`.
    pub fn start(dir: &Path) -> FileServer {
        require_tool("python3");
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start python3 -m http.server");
        let addr = format!("127.0.0.1:{port}");
        wait_for_port(&addr, Duration::from_secs(10));
        FileServer { addr, _child: ChildGuard(child) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }
}
