//! Real Debian root file systems, built at test time from Debian's own
//! packages with mmdebstrap, for tests that need a distribution rather
//! than busybox: bash, login shells, /etc/profile.d, sudo, PAM, shadow.
//!
//! A foreign one (arm64) is built without touching the host's
//! binfmt_misc: mmdebstrap runs in a user and mount namespace of its own,
//! mapped to the host's first 65536 ids (so package files get their real
//! owners), with a binfmt_misc instance of that namespace in which QEMU is
//! registered with flag F (Linux >= 6.7; see docs/binfmt_misc.md).
//!
//! The tars are cached under target/test-assets/debian, so only the first
//! run pays for them (about a minute native, several under emulation).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::images::{Built, Comp};
use super::{skip, text};

/// The release and the packages beyond minbase: what toolbox images
/// have and the parity tests exercise (sudo, passwd's tools, login's PAM
/// setup, a CA bundle).
const SUITE: &str = "bookworm";
const INCLUDE: &str = "sudo,passwd,login,ca-certificates";

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-assets/debian")
}

/// The rootfs tar of `SUITE` for a Debian architecture (`amd64`,
/// `arm64`), from the cache or built now; None, with a printed skip
/// reason, where it cannot be built (not root, no mmdebstrap, no QEMU, no
/// binfmt_misc of a user namespace's own).
pub fn rootfs(test: &str, deb_arch: &str) -> Option<PathBuf> {
    rootfs_including(test, deb_arch, &[])
}

/// [`rootfs`] with more packages (`build-essential`), cached under a name
/// that lists them.
pub fn rootfs_including(test: &str, deb_arch: &str, extra: &[&str]) -> Option<PathBuf> {
    let dir = cache_dir();
    let name = std::iter::once(format!("{SUITE}-{deb_arch}")).chain(extra.iter().map(|e| e.to_string()));
    let name = name.collect::<Vec<_>>().join("-");
    let tar = dir.join(format!("{name}.tar"));
    if tar.is_file() {
        return Some(tar);
    }
    if !super::podman::is_root() {
        skip(test, "needs root to build a Debian root file system with mmdebstrap");
        return None;
    }
    if Command::new("mmdebstrap").arg("--version").output().is_err() {
        skip(test, "mmdebstrap not installed (scripts/setup.sh installs it)");
        return None;
    }
    std::fs::create_dir_all(&dir).unwrap();
    // One build per architecture at a time; the others wait and reuse it.
    let lock = std::fs::File::create(dir.join(format!(".{deb_arch}.lock"))).unwrap();
    lock.lock().unwrap();
    if tar.is_file() {
        return Some(tar);
    }
    // mmdebstrap picks its output format by the name too: keep `.tar`.
    let partial = dir.join(format!(".partial-{name}.tar"));
    let _ = std::fs::remove_file(&partial);
    let host = Command::new("dpkg").arg("--print-architecture").output().ok().map(|o| text(&o.stdout));
    let native = host.as_deref().map(str::trim) == Some(deb_arch);
    let include = std::iter::once(INCLUDE).chain(extra.iter().copied()).collect::<Vec<_>>().join(",");
    let ok = if native { build_native(&partial, &include) } else { build_foreign(test, deb_arch, &partial, &include)? };
    assert!(ok, "mmdebstrap of {SUITE} for {deb_arch} failed");
    std::fs::rename(&partial, &tar).unwrap();
    Some(tar)
}

fn mmdebstrap(out: &Path, include: &str) -> Command {
    let mut c = Command::new("mmdebstrap");
    // The mirror is explicit: without one mmdebstrap may read sources from
    // stdin. Only the main suite: a security index out of sync for a
    // foreign architecture fails the whole build.
    c.args(["--quiet", "--variant=minbase", "--format=tar", &format!("--include={include}")])
        .arg(SUITE)
        .arg(out)
        .arg("http://deb.debian.org/debian")
        .stdin(Stdio::null());
    c
}

fn build_native(out: &Path, include: &str) -> bool {
    mmdebstrap(out, include).status().is_ok_and(|s| s.success())
}

/// mmdebstrap --mode=root for a foreign architecture, as root of a user
/// namespace whose binfmt_misc has QEMU. util-linux's unshare would map
/// the ids through newuidmap, which wants /etc/subuid ranges for root; so
/// the namespace is made by `unshare`, and this (root) process writes the
/// maps itself while the shell in it waits for them.
fn build_foreign(test: &str, deb_arch: &str, out: &Path, include: &str) -> Option<bool> {
    let arch = mtbx::emu::arch::Arch::parse(deb_arch).unwrap();
    let Some(qemu) = mtbx::emu::host::find_interpreter(arch, None).usable().map(|q| q.path.clone()) else {
        skip(test, &format!("no static QEMU for {deb_arch} (apt-get install qemu-user-static)"));
        return None;
    };
    if let Err(why) = super::userns_binfmt() {
        skip(test, &why);
        return None;
    }
    let flags = mtbx::emu::binfmt::Flags::parse("F").unwrap();
    let line = mtbx::emu::binfmt::Registration::for_arch(arch, &qemu, flags).line().unwrap();
    let mut strap = mmdebstrap(out, include);
    strap.args(["--mode=root", &format!("--architectures={deb_arch}")]);
    let strap: Vec<String> = std::iter::once(strap.get_program())
        .chain(strap.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let script = "until grep -q . /proc/self/uid_map; do sleep 0.05; done
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        printf '%s\\n' \"$LINE\" > /proc/sys/fs/binfmt_misc/register
        exec \"$@\"";
    let mut child = Command::new("unshare")
        .args(["--user", "--mount", "--propagation", "private", "sh", "-ec", script, "sh"])
        .args(&strap)
        .env("LINE", &line)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let proc = PathBuf::from(format!("/proc/{}", child.id()));
    // unshare execs the shell in the same process once the namespace
    // exists: wait for that before writing the maps.
    let own = std::fs::read_link("/proc/self/ns/user").unwrap();
    while std::fs::read_link(proc.join("ns/user")).is_ok_and(|ns| ns == own) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for (file, content) in [("setgroups", "allow"), ("uid_map", "0 0 65536"), ("gid_map", "0 0 65536")] {
        std::fs::OpenOptions::new().write(true).open(proc.join(file)).unwrap().write_all(content.as_bytes()).unwrap();
    }
    Some(child.wait().is_ok_and(|s| s.success()))
}

/// A toolbox image of a rootfs tar: one uncompressed layer, Debian's PATH,
/// bash as the command, and Toolbx's label, as toolbox images carry it.
/// Device nodes are left out, as images ship none (podman provides /dev,
/// and a rootless store could not hold them).
pub fn image(tar: &Path, oci_arch: &str, extra: &[super::images::E]) -> Built {
    let mut layers = vec![(without_devices(tar), Comp::Plain)];
    if !extra.is_empty() {
        layers.push((super::images::tar_of(extra), Comp::Plain));
    }
    super::images::image_from_tars_with_config(
        oci_arch,
        None,
        &layers,
        serde_json::json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/bash"],
            "Labels": {"com.github.containers.toolbox": "true"},
        }),
    )
}

fn without_devices(tar: &Path) -> Vec<u8> {
    let mut input = tar::Archive::new(std::fs::File::open(tar).unwrap());
    let mut out = tar::Builder::new(Vec::new());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() {
            continue;
        }
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        match entry.link_name().unwrap().map(|l| l.into_owned()) {
            Some(link) => out.append_link(&mut header, &path, &link).unwrap(),
            None => out.append_data(&mut header, &path, &mut entry).unwrap(),
        }
    }
    out.into_inner().unwrap()
}
