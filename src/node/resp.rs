//! A minimal Redis client (RESP2 over TCP, with deadlines): what the Redis cluster commands need to look at
//! and steer instances (`AUTH`, `CLUSTER NODES`, `INFO`, `CLUSTER REPLICATE`...). The password is sent in the
//! `AUTH` command, never on a command line.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A status or bulk string as text; an error reply is an error.
    pub fn text(self) -> Result<String> {
        match self {
            Reply::Simple(s) => Ok(s),
            Reply::Bulk(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Reply::Bulk(None) => Ok(String::new()),
            Reply::Int(i) => Ok(i.to_string()),
            Reply::Error(e) => Err(anyhow!("{e}")),
            Reply::Array(_) => bail!("unexpected array reply"),
        }
    }

    pub fn int(self) -> Result<i64> {
        match self {
            Reply::Int(i) => Ok(i),
            Reply::Error(e) => Err(anyhow!("{e}")),
            other => bail!("expected an integer reply, got {other:?}"),
        }
    }
}

/// A connection to one instance.
pub struct Conn {
    addr: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    /// Connect to `addr` (`ip:port`); every read and write has `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Conn> {
        let sa = addr
            .to_socket_addrs()
            .with_context(|| format!("bad Redis address {addr}"))?
            .next()
            .ok_or_else(|| anyhow!("bad Redis address {addr}"))?;
        let s = TcpStream::connect_timeout(&sa, timeout).with_context(|| format!("cannot connect to {addr}"))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(Conn { addr: addr.to_string(), reader: BufReader::new(s.try_clone()?), writer: s })
    }

    /// Connect and authenticate (`AUTH password`).
    pub fn open(addr: &str, password: &str, timeout: Duration) -> Result<Conn> {
        let mut c = Conn::connect(addr, timeout)?;
        c.cmd(&["AUTH", password])?.text().with_context(|| format!("{addr} refused the password"))?;
        Ok(c)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Send one command and read its reply (an error reply is a `Reply::Error`, not an `Err`).
    pub fn cmd(&mut self, args: &[&str]) -> Result<Reply> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&buf).with_context(|| format!("failed to send to {}", self.addr))?;
        read_reply(&mut self.reader).with_context(|| format!("no answer from {}", self.addr))
    }

    /// `cmd` whose reply must be text (an error reply is an `Err` naming the command).
    pub fn text(&mut self, args: &[&str]) -> Result<String> {
        self.cmd(args)?.text().with_context(|| format!("{} on {}", args[0], self.addr))
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("connection closed");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Read one RESP2 reply.
pub fn read_reply(r: &mut impl BufRead) -> Result<Reply> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    Ok(match kind {
        "+" => Reply::Simple(rest.into()),
        "-" => Reply::Error(rest.into()),
        ":" => Reply::Int(rest.parse().context("bad integer reply")?),
        "$" => {
            let n: i64 = rest.parse().context("bad bulk length")?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut b = vec![0u8; n as usize + 2];
                r.read_exact(&mut b)?;
                b.truncate(n as usize);
                Reply::Bulk(Some(b))
            }
        }
        "*" => {
            let n: i64 = rest.parse().context("bad array length")?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(read_reply(r)?);
                }
                Reply::Array(Some(v))
            }
        }
        _ => bail!("not a RESP reply: {line:?}"),
    })
}

/// `INFO` text as key → value.
pub fn info_map(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_every_kind_are_read() {
        let mut r = std::io::Cursor::new(b"+OK\r\n-ERR no\r\n:42\r\n$5\r\nab\r\nc\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n".to_vec());
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Error("ERR no".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Int(42));
        assert_eq!(read_reply(&mut r).unwrap().text().unwrap(), "ab\r\nc");
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(None));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Array(Some(vec![Reply::Int(1), Reply::Bulk(Some(b"x".to_vec()))])));
        assert!(read_reply(&mut r).is_err());
        let m = info_map("# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n");
        assert_eq!(m["role"], "slave");
        assert_eq!(m["master_link_status"], "up");
    }
}
