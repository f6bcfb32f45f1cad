//! Facts about a node, gathered ON the node by `airgap node facts --json` and evaluated centrally by preflight
//! (the deploy side fetches them with `install::facts::fetch`).

use super::system;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::Path;

/// The kernel modules the cluster needs.
pub const MODULES: [&str; 2] = ["br_netfilter", "overlay"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    pub euid: u32,
    pub cpus: u32,
    pub memory_mb: u64,
    /// `/etc/os-release` ID, ID_LIKE, VERSION_ID, PRETTY_NAME
    pub os_id: String,
    pub os_like: Vec<String>,
    pub os_version: String,
    pub os_pretty: String,
    /// `uname -m`
    pub arch: String,
    pub kernel: String,
    /// Wall clock when the facts were taken (ms since the epoch).
    pub time_ms: i64,
    pub product_uuid: Option<String>,
    pub machine_id: Option<String>,
    /// (interface, MAC) of every non-loopback interface
    pub macs: Vec<(String, String)>,
    /// The IPv4 addresses of every non-loopback interface.
    pub addresses: Vec<IfAddr>,
    /// TCP ports something listens on, and the processes holding them
    pub listening: Vec<Listener>,
    pub swaps: Vec<String>,
    /// (module, available, how)
    pub modules: Vec<(String, bool, String)>,
    /// The file systems of the paths the deploy side asked about (`--disk`), in the order asked.
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// What the paths the deploy side asked about (`--block`) are: (path, `block device` or what it is instead).
    #[serde(default)]
    pub blocks: Vec<(String, String)>,
    pub in_container: bool,
}

/// An IPv4 address on one of the node's interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfAddr {
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Facts {
    /// The interface that holds `address` (the node's inventory address: where its VIPs go).
    pub fn interface_holding(&self, address: Ipv4Addr) -> Option<&str> {
        self.addresses.iter().find(|a| a.address == address).map(|a| a.interface.as_str())
    }

    /// The names of the node's interfaces (those with a MAC or an IPv4 address; loopback aside).
    pub fn interface_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.macs.iter().map(|(i, _)| i.as_str()).chain(self.addresses.iter().map(|a| a.interface.as_str())).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn has_interface(&self, name: &str) -> bool {
        self.interface_names().contains(&name)
    }

    /// The node's addresses as `ip -br addr` shows them: `eth0 10.0.0.5/24, ens3 192.168.1.5/24`.
    pub fn addresses_text(&self) -> String {
        if self.addresses.is_empty() {
            return "no IPv4 address on any interface".into();
        }
        let v: Vec<String> = self.addresses.iter().map(|a| format!("{} {}/{}", a.interface, a.address, a.prefix)).collect();
        v.join(", ")
    }
}

#[cfg(test)]
impl Facts {
    /// A healthy Debian 12 node of this machine's architecture holding `address` on `interface` (for tests).
    pub fn example(name: &str, address: Ipv4Addr, interface: &str) -> Facts {
        let id = u32::from(address);
        Facts {
            hostname: name.into(),
            euid: 0,
            cpus: 4,
            memory_mb: 8192,
            os_id: "debian".into(),
            os_like: vec![],
            os_version: "12".into(),
            os_pretty: "Debian GNU/Linux 12 (bookworm)".into(),
            arch: std::env::consts::ARCH.into(),
            kernel: "6.1.0".into(),
            time_ms: 0,
            product_uuid: Some(format!("uuid-{id}")),
            machine_id: Some(format!("{id:032x}")),
            macs: vec![(interface.into(), format!("52:54:00:{:02x}:{:02x}:{:02x}", (id >> 16) & 255, (id >> 8) & 255, id & 255))],
            addresses: vec![IfAddr { interface: interface.into(), address, prefix: 24 }],
            listening: vec![],
            swaps: vec![],
            modules: MODULES.iter().map(|m| (m.to_string(), true, "loaded".to_string())).collect(),
            disks: vec![],
            blocks: vec![],
            in_container: false,
        }
    }
}

/// The IPv4 addresses of the non-loopback interfaces (getifaddrs), in interface order.
fn addresses() -> Vec<IfAddr> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut v: Vec<IfAddr> = list
        .filter(|a| a.interface_name != "lo")
        .filter_map(|a| {
            let address = a.address.as_ref()?.as_sockaddr_in()?.ip();
            let prefix = a.netmask.as_ref().and_then(|m| m.as_sockaddr_in()).map_or(32, |m| u32::from(m.ip()).count_ones() as u8);
            Some(IfAddr { interface: a.interface_name.clone(), address, prefix })
        })
        .collect();
    v.dedup();
    v
}

fn read_trim(p: &str) -> Option<String> {
    fs_err::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn os_release() -> Vec<(String, String)> {
    let text = read_trim("/etc/os-release")
        .or_else(|| read_trim("/usr/lib/os-release"))
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// A TCP port something listens on (any address, IPv4 or IPv6), and the processes that hold its sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub port: u16,
    /// Empty when no process could be told (another user's process, seen without root).
    pub holders: Vec<Holder>,
}

/// A process holding a listening socket: what preflight tells airgap's own services (on a re-run) from
/// anything else by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/PID/comm`
    pub comm: String,
    /// The systemd system unit whose cgroup the process is in (`haproxy.service`), if any.
    pub unit: Option<String>,
}

/// (port, socket inode) of the listening sockets in `/proc/net/tcp`-format text (state 0A).
pub fn parse_proc_net_tcp(text: &str) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                return None;
            }
            let port = u16::from_str_radix(cols[1].rsplit(':').next()?, 16).ok()?;
            Some((port, cols[9].parse().ok()?))
        })
        .collect()
}

/// The systemd system unit of a process from its `/proc/PID/cgroup` (v2 `0::/system.slice/x.service`, or v1's
/// `name=systemd` hierarchy): the innermost `.service` on its path. User sessions' units do not count.
pub fn unit_of_cgroup(text: &str) -> Option<String> {
    let unit = |path: &str| -> Option<String> {
        if path.split('/').any(|seg| seg == "user.slice") {
            return None;
        }
        path.rsplit('/').find(|seg| seg.ends_with(".service")).map(String::from)
    };
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::"));
    let v1 = text.lines().find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p));
    v2.and_then(unit).or_else(|| v1.and_then(unit))
}

/// Listening TCP ports (`/proc/net/tcp` and `tcp6`) and who holds them: every process's open files
/// (`/proc/PID/fd/*` -> `socket:[INODE]`), its `comm` and its systemd unit.
pub fn listening() -> Vec<Listener> {
    let mut by_inode: std::collections::HashMap<u64, Vec<u16>> = std::collections::HashMap::new();
    let mut ports = std::collections::BTreeMap::<u16, Vec<Holder>>::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for (port, inode) in fs_err::read_to_string(f).map(|t| parse_proc_net_tcp(&t)).unwrap_or_default() {
            ports.entry(port).or_default();
            by_inode.entry(inode).or_default().push(port);
        }
    }
    let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        let mut held: Vec<u16> = fds
            .flatten()
            .filter_map(|fd| {
                let target = std::fs::read_link(fd.path()).ok()?;
                let inode = target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok()?;
                by_inode.get(&inode)
            })
            .flatten()
            .copied()
            .collect();
        held.sort_unstable();
        held.dedup();
        if held.is_empty() {
            continue;
        }
        let holder = Holder {
            pid,
            comm: read_trim(&format!("/proc/{pid}/comm")).unwrap_or_default(),
            unit: std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok().and_then(|t| unit_of_cgroup(&t)),
        };
        for port in held {
            ports.entry(port).or_default().push(holder.clone());
        }
    }
    ports.into_iter().map(|(port, holders)| Listener { port, holders }).collect()
}

/// A path where files will land (`--disk PATH[=LISTED]`): the file system that holds it (or will: its nearest
/// existing directory's), its free space, and the files already under `LISTED` (a subdirectory of PATH; `PATH=`
/// lists all of PATH, `PATH` nothing), so that the deploy side counts only what is not there yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub path: String,
    /// Where that file system is mounted.
    pub mount: String,
    /// The file system's id (`st_dev`): paths on one file system share its free space.
    pub device: u64,
    /// Free bytes for an unprivileged writer (statvfs `f_bavail`).
    pub free: u64,
    /// Regular files under PATH/LISTED: path relative to PATH -> size.
    pub present: std::collections::BTreeMap<String, u64>,
}

/// The files under `dir` (relative to `base`, not following links nor leaving the file system), with their
/// sizes. At most `limit` files: a bigger directory is not what these lists are for.
fn list_files(base: &Path, dir: &Path, device: u64, limit: usize, out: &mut std::collections::BTreeMap<String, u64>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if out.len() >= limit {
            return;
        }
        let Ok(m) = e.path().symlink_metadata() else { continue };
        if m.is_dir() && m.dev() == device {
            list_files(base, &e.path(), device, limit, out);
        } else if m.is_file() {
            if let Ok(rel) = e.path().strip_prefix(base) {
                out.insert(rel.to_string_lossy().into_owned(), m.len());
            }
        }
    }
}

/// What [`Disk`] says about `spec` (`PATH` or `PATH=LISTED`).
pub fn disk(spec: &str) -> Result<Disk> {
    use std::os::unix::fs::MetadataExt;
    let (path, listed) = match spec.split_once('=') {
        Some((p, l)) => (p, Some(l)),
        None => (spec, None),
    };
    let existing = crate::fsutil::nearest_existing(Path::new(path));
    let device = fs_err::metadata(&existing)?.dev();
    let mut mount = existing.clone();
    while let Some(parent) = mount.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == device => mount = parent.to_path_buf(),
            _ => break,
        }
    }
    let mut present = std::collections::BTreeMap::new();
    if let Some(dir) = listed.map(|l| Path::new(path).join(l)).filter(|d| d.is_dir()) {
        list_files(Path::new(path), &dir, device, 100_000, &mut present);
    }
    Ok(Disk {
        path: path.to_string(),
        mount: mount.display().to_string(),
        device,
        free: crate::fsutil::free_bytes(&existing)?,
        present,
    })
}

fn macs() -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Ok(rd) = fs_err::read_dir("/sys/class/net") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "lo" {
                continue;
            }
            if let Some(mac) = read_trim(&format!("/sys/class/net/{name}/address")) {
                if mac != "00:00:00:00:00:00" {
                    v.push((name, mac));
                }
            }
        }
    }
    v.sort();
    v
}

fn memory_mb() -> u64 {
    let text = fs_err::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// What `path` is: `block device`, or what it is instead (`missing`, `a regular file`, `a directory`...).
pub fn block_kind(path: &str) -> String {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_block_device() => BLOCK_DEVICE.into(),
        Ok(m) if m.is_dir() => "a directory".into(),
        Ok(m) if m.file_type().is_char_device() => "a character device".into(),
        Ok(m) if m.is_file() => "a regular file".into(),
        Ok(_) => "not a block device".into(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing".into(),
        Err(e) => format!("unreadable ({e})"),
    }
}

/// What [`block_kind`] says of a block device.
pub const BLOCK_DEVICE: &str = "block device";

/// Gather the facts of this machine, with the file systems of `disks` (see [`disk`]).
pub fn gather(disks: &[String]) -> Result<Facts> {
    gather_with(disks, &[])
}

/// [`gather`], also telling what each of `blocks` is ([`block_kind`]).
pub fn gather_with(disks: &[String], blocks: &[String]) -> Result<Facts> {
    let os = os_release();
    let get = |k: &str| {
        os.iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let uts = nix::sys::utsname::uname()?;
    Ok(Facts {
        hostname: nix::unistd::gethostname()?.to_string_lossy().into_owned(),
        euid: nix::unistd::geteuid().as_raw(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_mb: memory_mb(),
        os_id: get("ID"),
        os_like: get("ID_LIKE").split_whitespace().map(String::from).collect(),
        os_version: get("VERSION_ID"),
        os_pretty: get("PRETTY_NAME"),
        arch: uts.machine().to_string_lossy().into_owned(),
        kernel: uts.release().to_string_lossy().into_owned(),
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        product_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
        machine_id: read_trim("/etc/machine-id"),
        macs: macs(),
        addresses: addresses(),
        listening: listening(),
        swaps: system::active_swaps().unwrap_or_default(),
        modules: MODULES
            .iter()
            .map(|m| {
                let (ok, how) = system::module_available(m);
                (m.to_string(), ok, how)
            })
            .collect(),
        disks: disks.iter().map(|d| disk(d)).collect::<Result<_>>()?,
        blocks: blocks.iter().map(|b| (b.clone(), block_kind(b))).collect(),
        in_container: system::in_container(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_holding_an_address() {
        let mut f = Facts::example("master1", "10.0.0.11".parse().unwrap(), "ens3");
        f.addresses.insert(0, IfAddr { interface: "docker0".into(), address: "172.17.0.1".parse().unwrap(), prefix: 16 });
        assert_eq!(f.interface_holding("10.0.0.11".parse().unwrap()), Some("ens3"));
        assert_eq!(f.interface_holding("10.0.0.12".parse().unwrap()), None);
        assert_eq!(f.addresses_text(), "docker0 172.17.0.1/16, ens3 10.0.0.11/24");
        assert_eq!(f.interface_names(), ["docker0", "ens3"]);
    }

    #[test]
    fn listeners_and_their_units_are_read_from_proc() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CEA 0100007F:1388 01 00000000:00000000 00:00000000 00000000     0        0 41299 1 0000000000000000 20 4 30 10 -1
   2: 0B14000A:404B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41500 1 0000000000000000 100 0 0 10 0
";
        // :5000 and :16459 listen; the established connection does not count
        assert_eq!(parse_proc_net_tcp(tcp), [(5000, 41234), (16459, 41500)]);
        assert_eq!(unit_of_cgroup("0::/system.slice/airgap-registry.service\n").as_deref(), Some("airgap-registry.service"));
        // hybrid hierarchies: the unified one may be empty
        assert_eq!(unit_of_cgroup("12:pids:/\n1:name=systemd:/system.slice/haproxy.service\n0::/\n").as_deref(), Some("haproxy.service"));
        assert_eq!(unit_of_cgroup("12:pids:/x\n1:name=systemd:/system.slice/haproxy.service\n").as_deref(), Some("haproxy.service"));
        assert_eq!(unit_of_cgroup("0::/system.slice/nginx.service/worker\n").as_deref(), Some("nginx.service"));
        assert_eq!(unit_of_cgroup("0::/user.slice/user-0.slice/session-3.scope\n"), None);
        assert_eq!(unit_of_cgroup("0::/user.slice/user-0.slice/user@0.service/app.slice/haproxy.service\n"), None);
        assert_eq!(unit_of_cgroup(""), None);
    }

    #[test]
    fn a_listener_of_this_process_is_found_with_its_pid() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let found = listening().into_iter().find(|x| x.port == port).expect("the port is listed");
        let me = found.holders.iter().find(|h| h.pid == std::process::id()).unwrap_or_else(|| panic!("{found:?}"));
        assert_eq!(me.comm, read_trim("/proc/self/comm").unwrap());
    }

    #[test]
    fn disks_say_their_file_system_and_what_is_already_there() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(d.path().join("store/blobs/sha256")).unwrap();
        fs_err::write(d.path().join("store/blobs/sha256/aa"), b"12345").unwrap();
        fs_err::write(d.path().join("store/catalog.json"), b"{}").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("store/blobs/sha256/link")).unwrap();
        let store = d.path().join("store").display().to_string();
        let d1 = disk(&format!("{store}=blobs")).unwrap();
        assert_eq!(d1.path, store);
        // only the listed subdirectory, regular files only, relative to the path
        assert_eq!(d1.present, [("blobs/sha256/aa".to_string(), 5)].into());
        assert!(d1.free > 0);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(d1.device, fs_err::metadata(d.path()).unwrap().dev());
        assert!(d.path().starts_with(&d1.mount), "{d1:?}");
        // a path that does not exist yet: its nearest existing directory's file system, nothing present
        let later = disk(&format!("{}/not/yet", d.path().display())).unwrap();
        assert_eq!((later.device, later.present.len()), (d1.device, 0));
        let root = disk("/").unwrap();
        assert_eq!((root.mount.as_str(), root.present.len()), ("/", 0));
        // `PATH=` lists all of it
        assert_eq!(disk(&format!("{store}=")).unwrap().present.len(), 2);
    }

    #[test]
    fn block_devices_are_told_from_what_is_not_one() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs_err::write(&f, b"").unwrap();
        assert_eq!(block_kind(f.to_str().unwrap()), "a regular file");
        assert_eq!(block_kind(d.path().to_str().unwrap()), "a directory");
        assert_eq!(block_kind("/dev/null"), "a character device");
        assert_eq!(block_kind(d.path().join("no").to_str().unwrap()), "missing");
        let block = std::fs::read_dir("/dev").unwrap().flatten().find(|e| e.file_type().is_ok_and(|t| std::os::unix::fs::FileTypeExt::is_block_device(&t)));
        if let Some(b) = block {
            assert_eq!(block_kind(b.path().to_str().unwrap()), BLOCK_DEVICE);
        }
    }

    #[test]
    fn addresses_of_this_machine_leave_loopback_out() {
        let a = addresses();
        assert!(a.iter().all(|a| a.interface != "lo" && !a.address.is_loopback()), "{a:?}");
        assert!(a.iter().all(|a| a.prefix <= 32));
    }
}
