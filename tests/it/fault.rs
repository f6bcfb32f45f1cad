//! A fault injector: a TCP proxy in front of a real server (registry, file server) that answers the first N
//! HTTP requests with 503 (or cuts the connection), then forwards everything byte for byte.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `HTTP/1.1 503 Service Unavailable`
    Status503,
    /// Close the connection without answering.
    Reset,
}

pub struct FaultProxy {
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Connections seen (first request of each).
    #[allow(dead_code)]
    pub requests: Arc<AtomicUsize>,
    /// Requests that got a fault.
    pub faults: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: &str, fault: Fault, fail_first: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let faults = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, f, s, up) = (requests.clone(), faults.clone(), stop.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut client) = conn else { continue };
                let (r, f, up) = (r.clone(), f.clone(), up.clone());
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 8192];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match client.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    if n < fail_first {
                        f.fetch_add(1, Ordering::SeqCst);
                        if fault == Fault::Status503 {
                            let _ = client.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        }
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(&up) else { return };
                    if server.write_all(&head).is_err() {
                        return;
                    }
                    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let t = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut s2, &mut c2);
                        let _ = c2.shutdown(std::net::Shutdown::Both);
                    });
                    let _ = std::io::copy(&mut client, &mut server);
                    let _ = server.shutdown(std::net::Shutdown::Write);
                    let _ = t.join();
                });
            }
        });
        FaultProxy { addr, requests, faults, stop }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}
