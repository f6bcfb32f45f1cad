//! Node-local operations behind the hidden `airgap node ...` subcommands: they run ON the node, as root.
//! Every write is atomic and happens only when the content (or mode) differs.

use crate::digest::{Digest, HashingReader};
use crate::fsutil;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Result of comparing a file on this node with its desired state.
pub enum FileState {
    Same,
    Differs(String),
}

fn begin(block: &str) -> String {
    format!("# BEGIN {block} (managed by airgap: edits between these lines are replaced)")
}
fn end(block: &str) -> String {
    format!("# END {block}")
}

/// The managed block's content in `text`, if the markers are there.
pub fn extract_block(text: &str, block: &str) -> Option<String> {
    let (b, e) = (begin(block), end(block));
    let start = text.find(&b)?;
    let after = &text[start + b.len()..];
    let after = after.strip_prefix('\n').unwrap_or(after);
    let stop = after.find(&e)?;
    Some(after[..stop].to_string())
}

/// `text` with the managed block set to `content` (appended when the markers are not there yet).
pub fn merge_block(text: &str, block: &str, content: &str) -> String {
    let (b, e) = (begin(block), end(block));
    let mut content = content.to_string();
    if !content.is_empty() && !content.ends_with('\n') {
        content.push('\n');
    }
    let new_block = format!("{b}\n{content}{e}\n");
    if let (Some(s), Some(_)) = (text.find(&b), extract_block(text, block)) {
        let tail_start = s + text[s..].find(&e).unwrap_or(0) + e.len();
        let tail = text[tail_start..].strip_prefix('\n').unwrap_or(&text[tail_start..]);
        format!("{}{new_block}{tail}", &text[..s])
    } else if text.is_empty() || text.ends_with('\n') {
        format!("{text}{new_block}")
    } else {
        format!("{text}\n{new_block}")
    }
}

/// The sidecar of a received file: its verified sha256 with the size and mtime it had then, so that a re-run
/// need not hash gigabytes again (`HEX SIZE MTIME`, the same line `stat -c '%s %Y'` helps a shell write).
pub fn stamp_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.sha256"))
}

fn stamp_line(meta: &std::fs::Metadata, sha256: &Digest) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{} {} {}", sha256.hex(), meta.len(), meta.mtime())
}

fn stamp_matches(path: &Path, meta: &std::fs::Metadata, sha256: &Digest) -> bool {
    std::fs::read_to_string(stamp_path(path)).is_ok_and(|s| s.trim() == stamp_line(meta, sha256))
}

/// Compare `path` with the desired sha256 (of the whole file, or of its managed block) and mode.
pub fn check_file(path: &Path, sha256: &Digest, mode: Option<u32>, block: Option<&str>) -> Result<FileState> {
    let meta = match fs_err::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Differs("missing".into())),
        Err(e) => return Err(e.into()),
    };
    let actual = match block {
        Some(b) => {
            let text = fs_err::read_to_string(path)?;
            match extract_block(&text, b) {
                Some(c) => Digest::of_bytes(c.as_bytes()),
                None => return Ok(FileState::Differs(format!("no '# BEGIN {b}' block"))),
            }
        }
        None if stamp_matches(path, &meta, sha256) => sha256.clone(),
        None => Digest::of_file(path)?.0,
    };
    if &actual != sha256 {
        return Ok(FileState::Differs("content differs".into()));
    }
    if let Some(m) = mode {
        let have = meta.permissions().mode() & 0o7777;
        if have != m && block.is_none() {
            return Ok(FileState::Differs(format!("mode {have:o}, want {m:o}")));
        }
    }
    Ok(FileState::Same)
}

/// Write `content` (already verified) to `path` with `mode`, atomically, only when different.
/// Returns whether the file was written.
pub fn write_file(path: &Path, mode: u32, content: &[u8], block: Option<&str>) -> Result<bool> {
    let sha = Digest::of_bytes(content);
    if let FileState::Same = check_file(path, &sha, Some(mode), block)? {
        return Ok(false);
    }
    let data: Vec<u8> = match block {
        Some(b) => {
            let old = match fs_err::read_to_string(path) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e.into()),
            };
            let content = std::str::from_utf8(content).context("a managed block must be UTF-8 text")?;
            merge_block(&old, b, content).into_bytes()
        }
        None => content.to_vec(),
    };
    // keep the existing mode for a file with a managed block (we own only the block)
    let mode = match (block, fs_err::metadata(path)) {
        (Some(_), Ok(m)) => m.permissions().mode() & 0o7777,
        _ => mode,
    };
    fsutil::atomic_write_with(path, |f| {
        use std::io::Write;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(&data)?;
        Ok(())
    })?;
    Ok(true)
}

/// Read a file from `input` into `path` atomically, hashing while streaming; the rename happens only when the
/// sha256 matches. A partial file under a fixed name (`.NAME.airgap-partial`) is replaced by the next attempt.
pub fn receive(path: &Path, mode: u32, sha256: &Digest, input: impl Read) -> Result<()> {
    let dir = path.parent().context("target path has no parent directory")?;
    fs_err::create_dir_all(dir)?;
    let name = path
        .file_name()
        .context("target path has no file name")?
        .to_string_lossy();
    let partial = dir.join(format!(".{name}.airgap-partial"));
    let mut reader = HashingReader::expecting(input, sha256.clone(), None);
    {
        let mut f = fs_err::File::create(&partial)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::io::copy(&mut reader, &mut f).with_context(|| format!("failed to receive {}", path.display()))?;
        f.sync_all()?;
    }
    fsutil::rename_durable(&partial, path)?;
    let meta = fs_err::metadata(path)?;
    fsutil::atomic_write(&stamp_path(path), format!("{}\n", stamp_line(&meta, sha256)).as_bytes())?;
    Ok(())
}

/// Set the hostname (kernel + /etc/hostname). Returns whether anything changed.
pub fn set_hostname(name: &str) -> Result<bool> {
    let mut changed = write_file(Path::new("/etc/hostname"), 0o644, format!("{name}\n").as_bytes(), None)?;
    let current = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    if current != name {
        nix::unistd::sethostname(name).with_context(|| format!("failed to set the hostname to {name}"))?;
        changed = true;
    }
    Ok(changed)
}

pub fn hostname_is(name: &str) -> Result<bool> {
    let current = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    let file = fs_err::read_to_string("/etc/hostname").unwrap_or_default();
    Ok(current == name && file.trim() == name)
}

/// Active swap devices (from /proc/swaps).
pub fn active_swaps() -> Result<Vec<String>> {
    let s = fs_err::read_to_string("/proc/swaps")?;
    Ok(s.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect())
}

/// `/etc/fstab` with every swap entry commented out (`None` when nothing to change).
pub fn fstab_without_swap(text: &str) -> Option<String> {
    let mut changed = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if !l.trim_start().starts_with('#') && fields.len() >= 3 && fields[2] == "swap" {
                changed = true;
                format!("# {l}  # swap off: airgap (kubelet)")
            } else {
                l.to_string()
            }
        })
        .collect();
    changed.then(|| out.join("\n") + if text.ends_with('\n') { "\n" } else { "" })
}

/// Is swap off now and at boot? Returns the reasons when not.
pub fn swap_state() -> Result<Vec<String>> {
    let mut why = Vec::new();
    let active = active_swaps()?;
    if !active.is_empty() {
        why.push(format!("swap is on ({})", active.join(", ")));
    }
    if let Ok(t) = fs_err::read_to_string("/etc/fstab") {
        if fstab_without_swap(&t).is_some() {
            why.push("/etc/fstab has swap entries".into());
        }
    }
    Ok(why)
}

/// `swapoff -a` and comment swap out of /etc/fstab (atomically, only when different).
pub fn swap_off() -> Result<()> {
    if !active_swaps()?.is_empty() {
        let st = std::process::Command::new("swapoff")
            .arg("-a")
            .status()
            .context("failed to run swapoff -a")?;
        if !st.success() {
            bail!("swapoff -a failed ({st})");
        }
    }
    let fstab = Path::new("/etc/fstab");
    if let Ok(t) = fs_err::read_to_string(fstab) {
        if let Some(new) = fstab_without_swap(&t) {
            let mode = fs_err::metadata(fstab)?.permissions().mode() & 0o7777;
            write_file(fstab, mode, new.as_bytes(), None)?;
        }
    }
    Ok(())
}

/// Is kernel module `m` available: loaded (`/sys/module/m`), built in (`modules.builtin`), loadable
/// (`modprobe -n`), or its feature present (for the modules the installer needs)?
pub fn module_available(m: &str) -> (bool, String) {
    if Path::new("/sys/module").join(m).exists() {
        return (true, "loaded".into());
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(b) = fs_err::read_to_string(format!("/lib/modules/{release}/modules.builtin")) {
        if b.lines().any(|l| l.rsplit('/').next() == Some(&format!("{m}.ko"))) {
            return (true, "built in".into());
        }
    }
    // built in without modules.builtin on disk: the feature itself is there
    let feature = match m {
        "br_netfilter" => Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists(),
        "overlay" => {
            fs_err::read_to_string("/proc/filesystems").is_ok_and(|f| f.lines().any(|l| l.ends_with("\toverlay")))
        }
        _ => false,
    };
    if feature {
        return (true, "built in (feature present)".into());
    }
    match std::process::Command::new("modprobe").args(["-n", m]).output() {
        Ok(o) if o.status.success() => (true, "loadable".into()),
        Ok(o) => (false, String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => (false, format!("modprobe not runnable: {e}")),
    }
}

/// Load the modules that are not there yet (built-in ones need nothing).
pub fn load_modules(mods: &[String]) -> Result<()> {
    for m in mods {
        let (ok, how) = module_available(m);
        if ok && how != "loadable" {
            continue;
        }
        let out = std::process::Command::new("modprobe")
            .arg(m)
            .output()
            .with_context(|| format!("failed to run modprobe {m}"))?;
        if !out.status.success() {
            bail!(
                "failed to load kernel module {m}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// sysctl keys that the kernel does not namespace: inside a container they belong to the host.
pub fn non_namespaced(key: &str) -> bool {
    key.starts_with("net.bridge.") || key.starts_with("kernel.") || key.starts_with("vm.") || key.starts_with("fs.")
}

pub fn in_container() -> bool {
    Path::new("/run/systemd/container").exists()
        || Path::new("/.dockerenv").exists()
        || std::env::var_os("container").is_some()
        || fs_err::read_to_string("/proc/1/environ").is_ok_and(|e| e.contains("container="))
}

/// Parse a sysctl.d file: `key = value` lines.
pub fn parse_sysctl(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().trim_start_matches('-').to_string(), v.trim().to_string()))
        })
        .collect()
}

fn sysctl_path(key: &str) -> std::path::PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// One key's state: `Ok(None)` when it has the value; `Ok(Some(warning))` when it differs but the kernel refuses
/// the key in this container (not namespaced); `Err` when it differs (or could not be set with `apply`).
pub fn sysctl_key(key: &str, want: &str, apply: bool) -> Result<Option<String>> {
    let p = sysctl_path(key);
    let have = fs_err::read_to_string(&p).map(|s| s.trim().to_string());
    let have = match have {
        Ok(h) => h,
        Err(e) => bail!("{key}: cannot read {}: {e}", p.display()),
    };
    if have.split_whitespace().eq(want.split_whitespace()) {
        return Ok(None);
    }
    let refused_here = || in_container() && non_namespaced(key);
    if !apply {
        if refused_here() && nix::unistd::access(&p, nix::unistd::AccessFlags::W_OK).is_err() {
            return Ok(Some(format!("{key} is {have}, want {want}: not settable in this container (the key is not namespaced): set it on the host")));
        }
        bail!("{key} is {have}, want {want}");
    }
    match fs_err::write(&p, want) {
        Ok(()) => Ok(None),
        Err(e) if refused_here() => Ok(Some(format!(
            "{key} is {have}, want {want}: the kernel refused the write inside a container ({}) because the key is not namespaced: set it on the host",
            e.kind()
        ))),
        Err(e) => Err(anyhow::anyhow!("failed to set {key} = {want} (it is {have}): {e}")),
    }
}

/// Apply (or check) every key of a sysctl.d file; returns warnings, fails on keys that differ.
pub fn sysctl_file(file: &Path, apply: bool) -> Result<Vec<String>> {
    let text = fs_err::read_to_string(file)?;
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for (k, v) in parse_sysctl(&text) {
        match sysctl_key(&k, &v, apply) {
            Ok(None) => {}
            Ok(Some(w)) => warnings.push(w),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_merge_and_replace() {
        let t = "127.0.0.1 localhost\n";
        let a = merge_block(t, "airgap", "10.0.0.11 master1\n");
        assert!(a.starts_with("127.0.0.1 localhost\n# BEGIN airgap"));
        assert_eq!(extract_block(&a, "airgap").unwrap(), "10.0.0.11 master1\n");
        let b = merge_block(&format!("{a}# other\n"), "airgap", "10.0.0.12 master2\n");
        assert_eq!(extract_block(&b, "airgap").unwrap(), "10.0.0.12 master2\n");
        assert!(b.ends_with("# END airgap\n# other\n"), "{b}");
        assert_eq!(merge_block(&b, "airgap", "10.0.0.12 master2\n"), b);
    }

    #[test]
    fn fstab_swap_commented() {
        let t = "UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n# /old none swap sw 0 0\n";
        let n = fstab_without_swap(t).unwrap();
        assert!(n.contains("# /swapfile none swap sw 0 0"));
        assert!(fstab_without_swap(&n).is_none());
    }

    #[test]
    fn write_file_only_when_different() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        assert!(write_file(&p, 0o644, b"x\n", None).unwrap());
        assert!(!write_file(&p, 0o644, b"x\n", None).unwrap());
        assert!(write_file(&p, 0o600, b"x\n", None).unwrap());
        let bad = Digest::of_bytes(b"y");
        let err = receive(&d.path().join("r"), 0o644, &bad, &b"x"[..]).unwrap_err();
        assert!(format!("{err:#}").contains("sha256"), "{err:#}");
        assert!(!d.path().join("r").exists());
    }
}
