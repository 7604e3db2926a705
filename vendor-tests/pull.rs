//! `mtbx pull` against the real tools: images pushed into the real
//! distribution registry, pulled by mtbx into a containers-storage of the
//! test's own, then read, run, saved and removed by real podman; and the
//! same image pulled by podman itself, compared record by record.
//!
//! Rootful tests need root (CI runs as root); the rootless test runs as
//! the user scripts/setup.sh creates, with /etc/subuid ranges.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};

use common::images::{image, index, Built, Comp, E};
use common::podman::PodmanEnv;
use common::real_registry::RealRegistry;
use common::{skip, text};
use serde_json::Value;

fn busybox(test: &str) -> Option<Vec<u8>> {
    match std::fs::read("/bin/busybox") {
        Ok(b) => Some(b),
        Err(_) => {
            skip(test, "busybox-static not installed (apt-get install busybox-static)");
            None
        }
    }
}

/// cap_net_raw+ep as setcap writes it (VFS_CAP_REVISION_2), as Debian's
/// /usr/bin/ping carries it.
const CAP_NET_RAW_EP: &[u8] = &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// The rich test image: three layers (gzip, zstd, plain tar) with modes,
/// owners, xattrs (a file capability among them), a hardlink, symlinks, a whiteout and an opaque
/// directory, and busybox to look at them with.
fn rich_amd64(bb: &[u8]) -> Built {
    let mut base = vec![E::Dir("bin", 0o755), E::File("bin/busybox", 0o755, bb.to_vec())];
    for tool in ["sh", "cat", "ls", "stat", "readlink", "test", "["] {
        base.push(E::Symlink(Box::leak(format!("bin/{tool}").into_boxed_str()), "busybox"));
    }
    base.extend([
        E::Dir("etc", 0o755),
        E::File("etc/motd", 0o644, b"hello from mtbx\n".to_vec()),
        E::Dir("data", 0o755),
        E::File("data/secret", 0o640, b"s\n".to_vec()),
        E::File("data/tool", 0o4755, b"#!/bin/sh\necho tool\n".to_vec()),
        E::File("data/gone", 0o644, b"bye\n".to_vec()),
        E::Hardlink("data/hard", "data/secret"),
        E::Owned("data/owned", 0o600, 1234, 4321, b"o\n".to_vec()),
        E::Xattr("data/x", b"x\n".to_vec(), "user.mtbx", b"yes"),
        E::Dir("caps", 0o755),
        E::Xattr("caps/ping", b"ping\n".to_vec(), "security.capability", CAP_NET_RAW_EP),
        E::Symlink("data/link", "../etc/motd"),
        E::Dir("opq", 0o755),
        E::File("opq/a", 0o644, b"a\n".to_vec()),
        E::Dir("devnode", 0o755),
        E::CharDev("devnode/null", 1, 3),
    ]);
    let second = vec![
        E::Whiteout("data/gone"),
        E::Opaque("opq"),
        E::File("opq/b", 0o644, b"b\n".to_vec()),
        E::File("etc/motd", 0o644, b"changed\n".to_vec()),
    ];
    let third = vec![E::File("data/new", 0o644, b"new\n".to_vec()), E::Dir("empty", 0o700)];
    image("amd64", None, &[(base, Comp::Gzip), (second, Comp::Zstd), (third, Comp::Plain)])
}

fn hello(arch: &str) -> Built {
    let a = mtbx::emu::arch::Arch::parse(arch).unwrap();
    let prog = mtbx::emu::testprog::program(a);
    let (oci, variant) = (a.oci, a.variant.filter(|_| !a.default_variant || a.oci == "arm"));
    image(oci, variant, &[(vec![E::File("hello", 0o755, prog)], Comp::Gzip)])
}

/// A real registry holding the rich image and an arm64 one as `rich:1`;
/// the registry, both images and the reference.
fn rich_registry(test: &str, bb: &[u8]) -> Option<(RealRegistry, Built, Built, String)> {
    let reg = RealRegistry::start(test)?;
    let amd = rich_amd64(bb);
    let arm = hello("arm64");
    reg.push("rich", "1", &index(&[&amd, &arm]));
    let name = format!("{}/rich:1", reg.addr);
    Some((reg, amd, arm, name))
}

const SCRIPT: &str = "cat /etc/motd; ls /opq; ls /data; \
    stat -c '%n %a %u %g' /data/secret /data/tool /data/owned /empty; \
    [ \"$(stat -c %i /data/secret)\" = \"$(stat -c %i /data/hard)\" ] && echo hardlinked; \
    readlink /data/link; cat /data/link";

const EXPECTED: &str = "changed\nb\nhard\nlink\nnew\nowned\nsecret\ntool\nx\n\
    /data/secret 640 0 0\n/data/tool 4755 0 0\n/data/owned 600 1234 4321\n/empty 700 0 0\n\
    hardlinked\n../etc/motd\nchanged\n";

fn pull_ok(env: &PodmanEnv, args: &[&str]) -> Value {
    let mut all = vec!["pull", "-y", "--tls-verify=false", "--format", "json"];
    all.extend_from_slice(args);
    let out = env.run_mtbx(&all);
    assert!(out.status.success(), "mtbx {all:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn podman_reads_runs_saves_and_removes_what_mtbx_pulled() {
    let test = "podman_reads_runs_saves_and_removes_what_mtbx_pulled";
    let Some(bb) = busybox(test) else { return };
    let Some(env) = PodmanEnv::rootful(test) else { return };
    let Some((_reg, amd, _arm, name)) = rich_registry(test, &bb) else { return };

    let r = pull_ok(&env, &[&name]);
    assert_eq!(r["id"], amd.config_digest.trim_start_matches("sha256:"));
    assert_eq!(r["name"], name);
    assert_eq!(r["downloaded_layers"], 3);
    assert_eq!(r["storage_driver"], "overlay");

    let inspect: Value = serde_json::from_str(&env.podman_ok(&["image", "inspect", &name])).unwrap();
    assert_eq!(inspect[0]["Id"], r["id"]);
    assert_eq!(inspect[0]["Architecture"], "amd64");
    assert_eq!(inspect[0]["RootFS"]["Layers"], serde_json::json!(amd.diff_ids));
    assert_eq!(inspect[0]["RepoTags"], serde_json::json!([name]));

    let out = env.podman_ok(&["run", "--rm", "--network", "none", &name, "sh", "-c", SCRIPT]);
    assert_eq!(out, EXPECTED);
    let dev = env.podman_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &name,
        "stat",
        "-c",
        "%F %t,%T",
        "/devnode/null",
    ]);
    assert_eq!(dev, "character special file 1,3\n", "device nodes are created where they can be");

    // Overlay's own forms of whiteouts, and no literal .wh. files (they
    // would switch rootless podman to fuse-overlayfs for good).
    let layers = env.layers_json();
    let second = layers.as_array().unwrap().iter().find(|l| l["diff-digest"] == amd.diff_ids[1]).unwrap();
    let diff = env.graph.join("overlay").join(second["id"].as_str().unwrap()).join("diff");
    let gone = std::fs::symlink_metadata(diff.join("data/gone")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0, "whiteout is a 0/0 char device");
    assert_eq!(xattr(&diff.join("opq"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    let base = layers.as_array().unwrap().iter().find(|l| l["diff-digest"] == amd.diff_ids[0]).unwrap();
    let base_diff = env.graph.join("overlay").join(base["id"].as_str().unwrap()).join("diff");
    assert_eq!(xattr(&base_diff.join("data/x"), "user.mtbx").as_deref(), Some(&b"yes"[..]));
    let walk = Command::new("find").arg(&env.graph).args(["-name", ".wh.*"]).output().unwrap();
    assert_eq!(text(&walk.stdout), "", "no literal whiteout files in the store");
    assert_eq!(second["compression"], 4, "zstd layer recorded as zstd");
    assert_eq!(base["compression"], 2);
    assert_eq!(base["uidset"], serde_json::json!([0, 1234]));

    // podman save rebuilds each layer's tar from tar-split: the bytes must
    // hash to the diff_ids. (Uncompressed OCI: docker-archive cannot hold
    // the zstd layer, and compressed blobs would hide the tar's digest.)
    let saved = env.dir.path().join("saved.tar");
    env.podman_ok(&[
        "save",
        "--format",
        "oci-archive",
        "--uncompressed",
        "-o",
        saved.to_str().unwrap(),
        &name,
    ]);
    let mut found: Vec<String> = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path.starts_with("blobs/sha256/") && path.len() > "blobs/sha256/".len() {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            let digest = common::fixtures::sha256(&bytes);
            assert_eq!(format!("sha256:{}", &path["blobs/sha256/".len()..]), digest, "{path}");
            found.push(digest);
        }
    }
    for d in &amd.diff_ids {
        assert!(found.contains(d), "podman save reproduces layer {d} bit for bit: {found:?}");
    }

    // A second pull downloads nothing.
    let again = pull_ok(&env, &[&name]);
    assert_eq!(again["downloaded_layers"], 0);

    env.podman_ok(&["rmi", &name]);
    assert_eq!(env.podman_ok(&["images", "-q"]), "");
    assert_eq!(env.layers_json(), serde_json::json!([]), "podman removed every layer mtbx wrote");
}

fn xattr(path: &std::path::Path, key: &str) -> Option<Vec<u8>> {
    common::lgetxattr(path, key)
}

/// Records of layers.json/images.json without what differs by nature
/// (creation times, podman's empty signature item).
fn comparable(env: &PodmanEnv) -> (Vec<Value>, Vec<Value>) {
    let mut layers: Vec<Value> = env.layers_json().as_array().unwrap().clone();
    for l in &mut layers {
        l.as_object_mut().unwrap().remove("created");
    }
    layers.sort_by_key(|l| l["id"].as_str().unwrap().to_string());
    let mut images: Vec<Value> = env.images_json().as_array().unwrap().clone();
    for i in &mut images {
        let o = i.as_object_mut().unwrap();
        for k in ["big-data-names", "big-data-sizes", "big-data-digests"] {
            let v = o.get_mut(k).unwrap();
            match v {
                Value::Array(a) => a.retain(|n| !n.as_str().unwrap().starts_with("signature-")),
                Value::Object(m) => m.retain(|n, _| !n.starts_with("signature-")),
                _ => {}
            }
        }
    }
    (layers, images)
}

/// A path of the image's tree as the store holds it: in vfs the top
/// layer is the whole tree; in overlay, the topmost layer's diff that has
/// it.
fn layer_file(env: &PodmanEnv, driver: &str, rel: &str) -> std::path::PathBuf {
    let layers = env.layers_json();
    let ids: Vec<&str> = layers.as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    match driver {
        "vfs" => env.graph.join("vfs/dir").join(ids.last().unwrap()).join(rel),
        _ => ids
            .iter()
            .rev()
            .map(|id| env.graph.join("overlay").join(id).join("diff").join(rel))
            .find(|p| p.symlink_metadata().is_ok())
            .unwrap_or_else(|| env.graph.join("overlay").join(ids.last().unwrap()).join("diff").join(rel)),
    }
}

fn tar_splits(env: &PodmanEnv, driver: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(env.graph.join(format!("{driver}-layers"))).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tar-split.gz") {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(e.path()).unwrap())
                .read_to_end(&mut text)
                .unwrap();
            out.insert(name, text);
        }
    }
    out
}

#[test]
fn records_and_tar_split_match_podmans_own_pull() {
    let test = "records_and_tar_split_match_podmans_own_pull";
    let Some(bb) = busybox(test) else { return };
    let Some(ours) = PodmanEnv::rootful(test) else { return };
    let theirs = PodmanEnv::rootful(test).unwrap();
    let Some((_reg, _amd, _arm, name)) = rich_registry(test, &bb) else { return };
    pull_ok(&ours, &[&name]);
    theirs.podman_ok(&["pull", "-q", "--tls-verify=false", &name]);
    let (ol, oi) = comparable(&ours);
    let (tl, ti) = comparable(&theirs);
    assert_eq!(ol, tl, "layers.json records");
    assert_eq!(oi, ti, "images.json records");
    assert_eq!(
        tar_splits(&ours, "overlay"),
        tar_splits(&theirs, "overlay"),
        "tar-split files, byte for byte"
    );
    let caps = |env: &PodmanEnv| {
        let layers = env.layers_json();
        let base = layers.as_array().unwrap().iter().find(|l| l["parent"].is_null()).unwrap().clone();
        let diff = env.graph.join("overlay").join(base["id"].as_str().unwrap()).join("diff");
        xattr(&diff.join("caps/ping"), "security.capability")
    };
    assert_eq!(caps(&theirs).as_deref(), Some(CAP_NET_RAW_EP), "podman keeps the file capability");
    assert_eq!(caps(&ours), caps(&theirs), "mtbx keeps the file capability as podman does");
}

#[test]
fn a_foreign_pull_sits_beside_the_native_image_and_runs_under_qemu() {
    let test = "a_foreign_pull_sits_beside_the_native_image_and_runs_under_qemu";
    let Some(bb) = busybox(test) else { return };
    let arm64 = mtbx::emu::arch::Arch::parse("arm64").unwrap();
    if !common::have_qemu(arm64) {
        return skip(test, "qemu-aarch64-static not installed (apt-get install qemu-user-static)");
    }
    let Some(env) = PodmanEnv::rootful(test) else { return };
    let Some((_reg, _amd, arm, name)) = rich_registry(test, &bb) else { return };
    let host_before = common::host_binfmt_snapshot();

    let native = pull_ok(&env, &[&name]);
    let foreign = pull_ok(&env, &["--arch", "arm64", &name]);
    assert_eq!(foreign["name"], format!("{name}-arm64"));
    assert_eq!(foreign["platform"], "linux/arm64");
    assert_eq!(foreign["id"], arm.config_digest.trim_start_matches("sha256:"));
    // Pulling the native one again leaves the foreign one alone, and back.
    pull_ok(&env, &[&name]);
    let listed = env.podman_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let short = |v: &Value| v.as_str().unwrap()[..12].to_string();
    assert!(listed.contains(&format!("{name} {}", short(&native["id"]))), "{listed}");
    assert!(listed.contains(&format!("{name}-arm64 {}", short(&foreign["id"]))), "{listed}");
    let ours = env.run_mtbx(&["images", "--format", "json"]);
    assert!(ours.status.success(), "{}", text(&ours.stderr));
    let rows: Value = serde_json::from_slice(&ours.stdout).unwrap();
    let arch_of = |n: &str| {
        rows.as_array().unwrap().iter().find(|r| r["names"][0] == n).map(|r| r["architecture"].clone())
    };
    assert_eq!(arch_of(&name), Some("amd64".into()));
    assert_eq!(arch_of(&format!("{name}-arm64")), Some("arm64".into()));

    // Run it: a private binfmt_misc in the container's own user namespace
    // (never the host's), registered by a static shell, then the arm64
    // program under qemu.
    let qemu = mtbx::emu::host::find_interpreter(arm64, None).usable().unwrap().path.clone();
    let reg_line = mtbx::emu::binfmt::Registration::for_arch(
        arm64,
        std::path::Path::new("/qemu"),
        mtbx::emu::binfmt::Flags::parse("F").unwrap(),
    )
    .line()
    .unwrap();
    let script = format!(
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && echo '{reg_line}' > /proc/sys/fs/binfmt_misc/register && /hello"
    );
    let out = env.podman_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--privileged",
        "--uidmap",
        "0:100000:65536",
        "--gidmap",
        "0:100000:65536",
        "-v",
        "/bin/busybox:/busybox:ro",
        "-v",
        &format!("{}:/qemu:ro", qemu.display()),
        "--entrypoint",
        "/busybox",
        &format!("{name}-arm64"),
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.trim_end_matches('\0').trim(), "aarch64");
    assert_eq!(common::host_binfmt_snapshot(), host_before, "the host's binfmt_misc is untouched");
}

#[test]
fn rootless_pull_runs_in_rootless_podman_and_matches_its_own_pull() {
    let test = "rootless_pull_runs_in_rootless_podman_and_matches_its_own_pull";
    let Some(bb) = busybox(test) else { return };
    let Some(env) = PodmanEnv::rootless(test) else { return };
    let theirs = PodmanEnv::rootless(test).unwrap();
    let Some((_reg, _amd, _arm, name)) = rich_registry(test, &bb) else { return };

    let r = pull_ok(&env, &[&name]);
    // podman's own rootless default: vfs on podman 4, overlay on 5.
    let driver = common::podman::rootless_driver();
    assert_eq!(r["storage_driver"], driver, "podman's rootless default here");
    let user = env.user.clone().unwrap();
    // Owners as podman's user namespace maps them: 0 -> the user, 1234 ->
    // the user's subordinate range.
    let file = |rel: &str| layer_file(&env, driver, rel);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(file("data/secret")).unwrap().uid(), user.uid);
    let sub_start: u32 = std::fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{}:", user.name)).and_then(|r| r.split(':').next()?.parse().ok())
        })
        .unwrap();
    assert_eq!(std::fs::metadata(file("data/owned")).unwrap().uid(), sub_start + 1234 - 1);
    if driver == "vfs" {
        // A vfs layer is the whole tree: whiteouts applied.
        assert!(!file("data/gone").exists() && !file("opq/a").exists() && file("opq/b").exists());
    }
    assert!(!file("devnode/null").exists(), "a device node cannot be created in a user namespace: skipped");

    let out = env.podman_ok(&["run", "--rm", "--network", "none", &name, "sh", "-c", SCRIPT]);
    assert_eq!(out, EXPECTED);

    theirs.podman_ok(&["pull", "-q", "--tls-verify=false", &name]);
    let (ol, oi) = comparable(&env);
    let (tl, ti) = comparable(&theirs);
    assert_eq!(ol, tl, "layers.json records");
    assert_eq!(oi, ti, "images.json records");
    assert_eq!(tar_splits(&env, driver), tar_splits(&theirs, driver), "tar-split files, byte for byte");
    // vfs copies each layer from its parent: the capability must survive
    // the copy and the namespace's owner mapping, as podman's does (and
    // overlay's layer its owner mapping).
    let caps = |env: &PodmanEnv| xattr(&layer_file(env, driver, "caps/ping"), "security.capability");
    assert!(caps(&theirs).is_some(), "podman keeps the file capability rootless");
    assert_eq!(caps(&env), caps(&theirs), "mtbx keeps the file capability as rootless podman does");

    env.podman_ok(&["rmi", &name]);
    assert_eq!(env.layers_json(), serde_json::json!([]));
}

/// Store state that must hold after anything: podman can list it, no
/// layer is left incomplete, no staging directory is left behind once no
/// mtbx runs.
fn assert_store_sound(env: &PodmanEnv) {
    env.podman_ok(&["images"]);
    for l in env.layers_json().as_array().unwrap() {
        assert!(l["flags"]["incomplete"].as_bool() != Some(true), "incomplete layer left: {l}");
    }
}

#[test]
fn hostile_layers_are_refused_and_leave_nothing_behind() {
    let test = "hostile_layers_are_refused_and_leave_nothing_behind";
    let Some(env) = PodmanEnv::rootful(test) else { return };
    let Some(reg) = RealRegistry::start(test) else { return };
    let outside = tempfile::tempdir().unwrap();
    let target: &'static str = Box::leak(outside.path().display().to_string().into_boxed_str());
    let cases: Vec<(&str, Vec<E>, &str)> = vec![
        ("dotdot", vec![E::Raw("../../../escaped", b'0', "", b"x".to_vec())], "climbs out"),
        (
            "symlink",
            vec![E::Symlink("evil", target), E::File("evil/pwned", 0o644, b"x".to_vec())],
            "leads out",
        ),
        ("hardlink", vec![E::Raw("h", b'1', "../../../../etc/passwd", vec![])], "climbs out"),
        (
            "relsymlink",
            vec![E::Symlink("up", "../../../../.."), E::Raw("up/tmp/pwned2", b'0', "", b"x".to_vec())],
            "leads out",
        ),
    ];
    for (repo, entries, why) in cases {
        let img = image(
            "amd64",
            None,
            &[(vec![E::File("ok", 0o644, b"fine".to_vec())], Comp::Gzip), (entries, Comp::Gzip)],
        );
        reg.push(repo, "1", &index(&[&img]));
        let name = format!("{}/{repo}:1", reg.addr);
        let out = env.run_mtbx(&["pull", "-y", "--tls-verify=false", &name]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{repo}: {err}");
        assert!(err.contains(why) && err.lines().count() == 1, "{repo}: one clear line: {err}");
        assert_store_sound(&env);
        // Only the good base layer may be in the store; the bad one is not.
        let layers = env.layers_json();
        assert!(
            layers.as_array().unwrap().iter().all(|l| l["diff-digest"] != img.diff_ids[1]),
            "{repo}: the refused layer is not in the store"
        );
        assert_eq!(
            env.podman(&["image", "exists", &name]).status().unwrap().code(),
            Some(1),
            "{repo}: no image"
        );
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");
    assert!(!env.graph.join("../escaped").exists() && !env.dir.path().join("escaped").exists());
    assert!(!std::path::Path::new("/tmp/pwned2").exists());
    let staging = env.graph.join("overlay/mtbx-staging");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "no staging left");
}

fn big_image(seed: u8) -> Built {
    // Incompressible, so the download takes a while even on loopback.
    let mut data = vec![0u8; 32 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(seed);
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let bb = std::fs::read("/bin/busybox").unwrap();
    let layers = vec![
        (
            vec![E::Dir("bin", 0o755), E::File("bin/busybox", 0o755, bb), E::Symlink("bin/cat", "busybox")],
            Comp::Gzip,
        ),
        (vec![E::File("big", 0o644, data)], Comp::Plain),
        (vec![E::File("marker", 0o644, format!("image {seed}\n").into_bytes())], Comp::Gzip),
    ];
    image("amd64", None, &layers)
}

#[test]
fn a_pull_killed_at_any_point_leaves_a_store_podman_reads_and_the_next_pull_finishes() {
    let test = "a_pull_killed_at_any_point_leaves_a_store_podman_reads_and_the_next_pull_finishes";
    if busybox(test).is_none() {
        return;
    }
    let Some(env) = PodmanEnv::rootful(test) else { return };
    let Some(reg) = RealRegistry::start(test) else { return };
    let img = big_image(1);
    reg.push("big", "1", &index(&[&img]));
    let name = format!("{}/big:1", reg.addr);
    let staging = env.graph.join("overlay/mtbx-staging");
    let staged = || std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0) > 0;
    // First a kill in the middle of extracting (a staging directory
    // exists), then kills at fixed moments, whatever they hit.
    let mut child =
        env.mtbx(&["pull", "-y", "--tls-verify=false", &name]).stdout(Stdio::null()).spawn().unwrap();
    let start = std::time::Instant::now();
    while !staged() && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    assert!(staged(), "the kill hit a pull in the middle of a layer");
    assert_store_sound(&env);
    for delay_ms in [5u64, 30, 80, 150, 300] {
        let mut child =
            env.mtbx(&["pull", "-y", "--tls-verify=false", &name]).stdout(Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        assert_store_sound(&env);
        if env.podman(&["image", "exists", &name]).status().unwrap().success() {
            break; // it finished before the kill
        }
    }
    // A crash in the middle of a commit: a record flagged incomplete and a
    // half-written directory, as a kill between the two steps leaves them.
    let layers_path = env.graph.join("overlay-layers/layers.json");
    let mut layers: Vec<Value> = env.layers_json().as_array().unwrap().clone();
    let top_id = mtbx::storage::layer_id(
        Some(&mtbx::storage::layer_id(
            Some(&mtbx::storage::layer_id(None, &img.diff_ids[0])),
            &img.diff_ids[1],
        )),
        &img.diff_ids[2],
    );
    if !layers.iter().any(|l| l["id"] == top_id.as_str()) {
        layers.push(serde_json::json!({"id": top_id, "flags": {"incomplete": true}}));
        std::fs::write(&layers_path, serde_json::to_vec(&layers).unwrap()).unwrap();
        std::fs::create_dir_all(env.graph.join("overlay").join(&top_id).join("diff/half")).unwrap();
    }
    let out = env.run_mtbx(&["pull", "-y", "--tls-verify=false", "--format", "json", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_store_sound(&env);
    assert_eq!(env.podman_ok(&["run", "--rm", "--network", "none", &name, "cat", "/marker"]), "image 1\n");
    assert!(!env.graph.join("overlay").join(&top_id).join("diff/half").exists());
    assert!(!staged(), "dead runs' staging removed");
}

#[test]
fn two_mtbx_pulls_and_a_podman_pull_at_once_lose_nothing() {
    let test = "two_mtbx_pulls_and_a_podman_pull_at_once_lose_nothing";
    if busybox(test).is_none() {
        return;
    }
    let Some(env) = PodmanEnv::rootful(test) else { return };
    let Some(reg) = RealRegistry::start(test) else { return };
    // Three images sharing the busybox base layer.
    let imgs: Vec<_> = (1..=3u8).map(big_image).collect();
    for (i, img) in imgs.iter().enumerate() {
        reg.push(&format!("c{i}"), "1", &index(&[img]));
    }
    let names: Vec<String> = (0..3).map(|i| format!("{}/c{i}:1", reg.addr)).collect();
    let spawn = |mut c: Command| c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let a = spawn(env.mtbx(&["pull", "-y", "--tls-verify=false", &names[0]]));
    let b = spawn(env.mtbx(&["pull", "-y", "--tls-verify=false", &names[1]]));
    let c = spawn(env.podman(&["pull", "-q", "--tls-verify=false", &names[2]]));
    for (who, child) in [("mtbx a", a), ("mtbx b", b), ("podman", c)] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{who}: {}", text(&out.stderr));
    }
    assert_store_sound(&env);
    for (i, n) in names.iter().enumerate() {
        let got = env.podman_ok(&["run", "--rm", "--network", "none", n, "cat", "/marker"]);
        assert_eq!(got, format!("image {}\n", i + 1));
    }
    let layers = env.layers_json();
    let mut ids: Vec<&str> = layers.as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no layer recorded twice");
    assert_eq!(n, 7, "one shared base layer and two of each image's own");
}

/// Peak RSS in MiB of one `mtbx pull`.
fn pull_peak_rss(env: &PodmanEnv, name: &str) -> u64 {
    common::peak_rss_mib(env.mtbx(&["pull", "-q", "-y", "--tls-verify=false", name]))
}

#[test]
fn memory_does_not_grow_with_the_image() {
    let test = "memory_does_not_grow_with_the_image";
    let Some(env) = PodmanEnv::rootful(test) else { return };
    let Some(reg) = RealRegistry::start(test) else { return };
    reg.push("small", "1", &index(&[&common::images::incompressible_image(1, 1)]));
    reg.push("large", "1", &index(&[&common::images::incompressible_image(96, 2)]));
    let small = pull_peak_rss(&env, &format!("{}/small:1", reg.addr));
    let large = pull_peak_rss(&env, &format!("{}/large:1", reg.addr));
    eprintln!("peak RSS: 1 MiB layer {small} MiB, 96 MiB layer {large} MiB");
    assert!(
        large < small + 24,
        "a 96 MiB layer took {large} MiB of RSS, a 1 MiB layer {small} MiB: something buffers the layer"
    );
}

#[test]
fn the_skopeo_proxy_source_feeds_the_same_store_writer() {
    let test = "the_skopeo_proxy_source_feeds_the_same_store_writer";
    if Command::new("skopeo").arg("--version").output().is_err() {
        return skip(test, "skopeo not installed (apt-get install skopeo)");
    }
    let Some(bb) = busybox(test) else { return };
    let Some(env) = PodmanEnv::rootful(test) else { return };
    let native = PodmanEnv::rootful(test).unwrap();
    let Some((reg, amd, arm, name)) = rich_registry(test, &bb) else { return };
    // docker-archive cannot hold zstd layers: a gzip-only image for it.
    let plain = image(
        "amd64",
        None,
        &[
            (
                vec![
                    E::Dir("bin", 0o755),
                    E::File("bin/busybox", 0o755, bb.clone()),
                    E::Symlink("bin/cat", "busybox"),
                ],
                Comp::Gzip,
            ),
            (vec![E::File("marker", 0o644, b"archived\n".to_vec())], Comp::Gzip),
        ],
    );
    reg.push("plain", "1", &index(&[&plain]));
    let skopeo = |args: &[&str]| {
        let out = Command::new("skopeo").args(args).output().unwrap();
        assert!(out.status.success(), "skopeo {args:?}: {}", text(&out.stderr));
    };
    let layout = env.dir.path().join("richlayout");
    let archive = env.dir.path().join("rich-docker.tar");
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:1", layout.display()),
    ]);
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{}/plain:1", reg.addr),
        &format!("docker-archive:{}:rich/archived:7", archive.display()),
    ]);

    // oci: layout, as skopeo wrote it: the very image and layers of a
    // native pull of the same image.
    let r = pull_ok(&env, &["--source", "proxy", &format!("oci:{}:1", layout.display())]);
    assert_eq!(r["name"], "localhost/richlayout:1");
    assert_eq!(r["id"], amd.config_digest.trim_start_matches("sha256:"));
    pull_ok(&native, &[&name]);
    let ids = |e: &PodmanEnv| {
        let mut v: Vec<String> = e
            .layers_json()
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&env), ids(&native));
    assert_eq!(
        env.podman_ok(&["run", "--rm", "--network", "none", "localhost/richlayout:1", "sh", "-c", SCRIPT]),
        EXPECTED
    );

    // docker-archive: named by the reference inside; its layers arrive
    // uncompressed and its manifest converted, and it still runs.
    let r = pull_ok(&env, &["--source", "proxy", &format!("docker-archive:{}", archive.display())]);
    assert_eq!(
        r["name"], "docker.io/rich/archived:7",
        "the tag recorded in the archive, as podman load names it"
    );
    assert_eq!(
        env.podman_ok(&["run", "--rm", "--network", "none", "docker.io/rich/archived:7", "cat", "/marker"]),
        "archived\n"
    );

    // docker:// through skopeo, another platform: stored under its arch name.
    let r = pull_ok(&env, &["--source", "proxy", "--arch", "arm64", &format!("docker://{name}")]);
    assert_eq!(r["name"], format!("{name}-arm64"));
    assert_eq!(r["id"], arm.config_digest.trim_start_matches("sha256:"));

    // A platform the image does not have: refused, not silently swapped.
    let out = env.run_mtbx(&[
        "pull",
        "-y",
        "--source",
        "proxy",
        "--arch",
        "s390x",
        &format!("docker-archive:{}", archive.display()),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

/// A nested index on the real registry (an outer index naming two inner
/// ones without platforms: amd64 and arm64 in the first, s390x in the
/// second) held against containers/image. For arm64, which its choice of
/// instance finds, skopeo inspects the very image mtbx's native source
/// pulls. s390x it misses (it follows only the first platform-less index);
/// mtbx goes on to the second (image::resolve). Through skopeo's proxy,
/// which chooses the platform itself and cannot hand mtbx an inner index,
/// a pull is that same image or a clean refusal that stores nothing, never
/// another image.
#[test]
fn a_nested_index_on_the_real_registry_is_the_image_skopeo_chooses() {
    let test = "a_nested_index_on_the_real_registry_is_the_image_skopeo_chooses";
    if Command::new("skopeo").arg("--version").output().is_err() {
        return skip(test, "skopeo not installed (apt-get install skopeo)");
    }
    let Some(env) = PodmanEnv::rootful(test) else { return };
    let Some(reg) = RealRegistry::start(test) else { return };
    let (up, built, _) = common::images::nested_index();
    reg.push("nested", "1", &up);
    let name = format!("{}/nested:1", reg.addr);

    let skopeo = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--override-os", "linux", "--override-arch", "arm64"])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(skopeo.status.success(), "skopeo: {}", text(&skopeo.stderr));
    let skopeo: Value = serde_json::from_slice(&skopeo.stdout).unwrap();
    let out = env.run_mtbx(&["inspect", "--tls-verify=false", "--format", "json", "--arch", "arm64", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mine: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mine["Layers"], skopeo["Layers"]);
    assert_eq!(mine["Architecture"], skopeo["Architecture"]);
    assert_eq!(mine["ManifestDigest"], built[1].manifest_digest.as_str());

    let native = pull_ok(&env, &["--arch", "arm64", &name]);
    assert_eq!(native["id"], built[1].config_digest.trim_start_matches("sha256:"));
    let s390x = pull_ok(&env, &["--arch", "s390x", &name]);
    assert_eq!(s390x["id"], built[2].config_digest.trim_start_matches("sha256:"));

    let proxied = PodmanEnv::rootful(test).unwrap();
    for (arch, want) in [("arm64", &built[1]), ("s390x", &built[2])] {
        let all = [
            "pull",
            "-y",
            "--tls-verify=false",
            "--format",
            "json",
            "--source",
            "proxy",
            "--arch",
            arch,
            &name,
        ];
        let before = proxied.images_json();
        let out = proxied.run_mtbx(&all);
        let err = text(&out.stderr);
        if out.status.success() {
            let r: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(r["id"], want.config_digest.trim_start_matches("sha256:"), "{arch}");
        } else {
            eprintln!("{test}: through the proxy, {arch}: {err}");
            assert_eq!(err.lines().count(), 1, "{arch}: one line: {err}");
            assert_eq!(proxied.images_json(), before, "{arch}: nothing stored");
        }
    }
}
