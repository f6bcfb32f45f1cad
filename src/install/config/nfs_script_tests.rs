//! What the rendered NFS scripts DO, run by bash with stand-ins for the tools they drive (drbdadm, systemctl,
//! mount, umount, mountpoint, ip, logger) on PATH: the stand-ins answer from files in a temp dir and log
//! every call, so each test states a DRBD situation and asserts the exact commands run. (No kernel DRBD or NFS
//! server exists here: this is the proof of the scripts' decisions, not of DRBD.)

use super::tests::example_nfs;
use super::*;
use std::path::PathBuf;
use std::process::Command;

struct Stage {
    dir: tempfile::TempDir,
}

const STUBS: &[(&str, &str)] = &[
    ("drbdadm", r#"echo "drbdadm $*" >> "$STUB/calls"
case "$1" in
  cstate) cat "$STUB/cstate" ;;
  status) cat "$STUB/status" 2>/dev/null ;;
  role) cat "$STUB/role" ;;
  dstate) cat "$STUB/dstate" ;;
  primary) echo Primary/"$(cut -d/ -f2 "$STUB/role")" > "$STUB/role" ;;
  secondary) echo Secondary/"$(cut -d/ -f2 "$STUB/role")" > "$STUB/role" ;;
esac"#),
    ("systemctl", r#"echo "systemctl $*" >> "$STUB/calls"
case "$1" in
  is-active) [ -e "$STUB/active" ] ;;
  start) touch "$STUB/active" ;;
  stop) rm -f "$STUB/active" ;;
esac"#),
    ("mount", r#"echo "mount $*" >> "$STUB/calls"; touch "$STUB/mounted""#),
    ("umount", r#"echo "umount $*" >> "$STUB/calls"; rm -f "$STUB/mounted""#),
    ("mountpoint", r#"[ -e "$STUB/mounted" ]"#),
    ("ip", r#"echo "ip $*" >> "$STUB/calls""#),
    ("logger", r#"echo "logger $*" >> "$STUB/log""#),
    ("sleep", "exit 0"),
    // only the stage's own directories are made; the export path is the test machine's, left alone
    ("mkdir", r#"if [[ "${*: -1}" == "$STUB"* ]]; then exec /bin/mkdir "$@"; fi"#),
];

impl Stage {
    /// A DRBD situation: connection state, local/peer role and disk states.
    fn new(cstate: &str, role: &str, dstate: &str) -> Stage {
        let s = Stage { dir: tempfile::tempdir().unwrap() };
        fs_err::create_dir_all(s.path("bin")).unwrap();
        fs_err::create_dir_all(s.path("run")).unwrap();
        for (name, body) in STUBS {
            let p = s.path("bin").join(name);
            fs_err::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        s.set("cstate", cstate);
        s.set("role", role);
        s.set("dstate", dstate);
        s.set("calls", "");
        s
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn set(&self, f: &str, text: &str) {
        fs_err::write(self.path(f), if text.is_empty() { String::new() } else { format!("{text}\n") }).unwrap();
    }
    fn has(&self, f: &str) -> bool {
        self.path(f).exists()
    }
    /// Run a rendered script (its /run/airgap in the stage) with args; (exit code, the calls it made).
    fn run(&self, script: &str, args: &[&str]) -> (i32, Vec<String>) {
        let text = script.replace("/run/airgap", self.path("run").to_str().unwrap());
        let p = self.path("script.sh");
        fs_err::write(&p, text).unwrap();
        self.set("calls", "");
        let out = Command::new("bash")
            .arg(&p)
            .args(args)
            .env("PATH", format!("{}:/usr/bin:/bin", self.path("bin").display()))
            .env("STUB", self.dir.path())
            .output()
            .unwrap();
        let calls = fs_err::read_to_string(self.path("calls")).unwrap();
        (out.status.code().unwrap_or(-1), calls.lines().map(String::from).filter(|l| !l.starts_with("drbdadm cstate") && !l.starts_with("drbdadm status") && !l.starts_with("drbdadm role") && !l.starts_with("drbdadm dstate") && !l.starts_with("systemctl is-active")).collect())
    }
    fn refused(&self) -> String {
        fs_err::read_to_string(self.path("run/nfs-refused")).unwrap_or_default()
    }
}

fn scripts(drbd: bool) -> (String, String) {
    let files = example_nfs(drbd).keepalived("master2").unwrap();
    let get = |p: &str| files.iter().find(|f| f.path == p).unwrap().content.clone();
    (get(NFS_NOTIFY), get(NFS_CHECK))
}

fn notify(stage: &Stage, state: &str) -> (i32, Vec<String>) {
    stage.run(&scripts(true).0, &["INSTANCE", INSTANCE, state, "140"])
}

#[test]
fn master_promotes_mounts_and_starts_nfs_in_that_order() {
    let s = Stage::new("Connecting", "Secondary/Unknown", "UpToDate/DUnknown");
    let (code, calls) = notify(&s, "MASTER");
    assert_eq!(code, 0, "{calls:?}\n{}", s.refused());
    assert_eq!(calls, ["drbdadm primary airgap-nfs", "mount /dev/drbd0 /opt/mnt/volumes", "systemctl start nfs-server"]);
    assert!(s.has("mounted") && s.has("active"));
    assert_eq!(fs_err::read_to_string(s.path("run/keepalived-airgap_nfs.state")).unwrap().split(' ').next(), Some("MASTER"));
    // the check now passes (state MASTER, Primary, mounted, nfs-server running)
    assert_eq!(s.run(&scripts(true).1, &[]).0, 0);
    // again: nothing more to do (already Primary, mounted, running: start is idempotent)
    let (code, calls) = notify(&s, "MASTER");
    assert_eq!((code, calls), (0, vec!["systemctl start nfs-server".to_string()]));
}

#[test]
fn a_split_brain_is_refused_never_guessed() {
    // StandAlone: the connection was dropped (after-sb-* disconnect on a split brain, or by hand)
    let s = Stage::new("StandAlone", "Secondary/Unknown", "UpToDate/DUnknown");
    let (code, calls) = notify(&s, "MASTER");
    assert_eq!((code, calls), (1, vec![]), "nothing may be promoted, mounted or started");
    assert!(s.refused().contains("StandAlone"), "{}", s.refused());
    assert!(!s.has("mounted") && !s.has("active"));
    // a refused node fails its check: keepalived puts it in FAULT and the VIP goes
    let (code, _) = s.run(&scripts(true).1, &[]);
    assert_eq!(code, 1);
    // `drbdadm status` naming a split brain
    let s = Stage::new("Connecting", "Secondary/Unknown", "UpToDate/DUnknown");
    s.set("status", "airgap-nfs role:Secondary\n  disk:UpToDate\n  master1 connection:Connecting split-brain");
    assert_eq!(notify(&s, "MASTER"), (1, vec![]));
    // the peer still Primary (DRBD 9 status line; DRBD 8.4 role Local/Peer): refused after the wait
    let s = Stage::new("Connected", "Secondary/Primary", "UpToDate/UpToDate");
    assert_eq!(notify(&s, "MASTER"), (1, vec![]));
    assert!(s.refused().contains("peer is still DRBD Primary"), "{}", s.refused());
    let s = Stage::new("Connected", "Secondary", "UpToDate");
    s.set("status", "airgap-nfs role:Secondary\n  disk:UpToDate\n  master1 role:Primary\n    peer-disk:UpToDate");
    assert_eq!(notify(&s, "MASTER"), (1, vec![]));
    // an Outdated or Inconsistent local disk never serves
    let s = Stage::new("Connecting", "Secondary/Unknown", "Outdated/DUnknown");
    assert_eq!(notify(&s, "MASTER"), (1, vec![]));
    assert!(s.refused().contains("Outdated"), "{}", s.refused());
}

#[test]
fn backup_and_fault_stop_nfs_unmount_and_demote() {
    let s = Stage::new("Connected", "Primary/Secondary", "UpToDate/UpToDate");
    s.set("mounted", "");
    s.set("active", "");
    let (code, calls) = notify(&s, "FAULT");
    assert_eq!(code, 0);
    assert_eq!(calls, ["ip addr del 10.20.0.150/24 dev eth0", "systemctl stop nfs-server", "umount /opt/mnt/volumes", "drbdadm secondary airgap-nfs"]);
    assert_eq!(fs_err::read_to_string(s.path("role")).unwrap().trim(), "Secondary/Secondary");
    // BACKUP on a node that serves nothing: stops what is not running, demotes nothing, keeps no VIP to remove
    let s = Stage::new("Connected", "Secondary/Primary", "UpToDate/UpToDate");
    assert_eq!(notify(&s, "BACKUP"), (0, vec!["systemctl stop nfs-server".to_string()]));
    // a mount that stays busy: DRBD stays Primary (so the peer refuses to promote) and the hook says so
    let s = Stage::new("Connected", "Primary/Secondary", "UpToDate/UpToDate");
    s.set("mounted", "");
    fs_err::write(s.path("bin/umount"), "#!/bin/bash\necho \"umount $*\" >> \"$STUB/calls\"; exit 32\n").unwrap();
    let (code, calls) = notify(&s, "STOP");
    assert_eq!(code, 1);
    assert!(!calls.iter().any(|c| c.contains("secondary")), "{calls:?}");
}

#[test]
fn a_backup_with_a_disk_it_cannot_serve_fails_its_check() {
    let check = scripts(true).1;
    let s = Stage::new("Connected", "Secondary/Primary", "UpToDate/UpToDate");
    assert_eq!(s.run(&check, &[]).0, 0);
    let s = Stage::new("Connected", "Secondary/Primary", "Inconsistent/UpToDate");
    assert_eq!(s.run(&check, &[]).0, 1);
    let s = Stage::new("StandAlone", "Secondary/Unknown", "UpToDate/DUnknown");
    assert_eq!(s.run(&check, &[]).0, 1);
    // MASTER state but not Primary: the check fails, the VIP goes
    let s = Stage::new("Connected", "Secondary/Secondary", "UpToDate/UpToDate");
    s.set("run/keepalived-airgap_nfs.state", "MASTER 150 0");
    assert_eq!(s.run(&check, &[]).0, 1);
}

#[test]
fn without_drbd_the_check_follows_nfs_server() {
    let (notify_sh, check) = scripts(false);
    let s = Stage::new("", "", "");
    assert_eq!(s.run(&check, &[]).0, 1);
    let (code, calls) = s.run(&notify_sh, &["INSTANCE", INSTANCE, "MASTER", "150"]);
    assert_eq!((code, calls), (0, vec!["systemctl start nfs-server".to_string()]));
    assert_eq!(s.run(&check, &[]).0, 0);
    assert_eq!(s.run(&notify_sh, &["INSTANCE", INSTANCE, "FAULT", "150"]).1, ["ip addr del 10.20.0.150/24 dev eth0"]);
}
