//! The layer applier in process: every kind of entry lands as the tar
//! says, the tar-split it writes rebuilds the exact tar (as podman save
//! rebuilds it), whiteouts follow each driver's rules, and hostile or
//! broken tars are refused. Needs root (layer owners are root): CI runs
//! as root; elsewhere the tests print SKIPPED.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use base64::Engine;
use common::images::{tar_of, E};
use common::skip;
use mtbx::storage::apply::{apply, ApplyError, ApplyOptions, Whiteouts};
use mtbx::storage::limits::Expansion;
use mtbx::storage::tarsplit::TarSplitWriter;

const OVERLAY: ApplyOptions = ApplyOptions {
    whiteouts: Whiteouts::Overlay { opaque_xattr: "trusted.overlay.opaque" },
    rootless: false,
    expansion: Expansion::UNLIMITED,
    compressed_size: 0,
};
const VFS: ApplyOptions = ApplyOptions {
    whiteouts: Whiteouts::Vfs,
    rootless: false,
    expansion: Expansion::UNLIMITED,
    compressed_size: 0,
};

fn root_or_skip(test: &str) -> bool {
    if !common::is_root() {
        skip(test, "needs root: layer files are owned by root");
        return false;
    }
    true
}

/// Apply `tar` under `dir`; the tar-split bytes (gzip) and the result.
fn run(
    tar: &[u8],
    dir: &Path,
    opts: ApplyOptions,
) -> (Vec<u8>, Result<mtbx::storage::apply::ApplyStats, ApplyError>) {
    let root = std::fs::File::open(dir).unwrap();
    let mut split = TarSplitWriter::new(Vec::new());
    let r = apply(&mut &tar[..], root.as_fd(), opts, &mut split);
    (split.finish().unwrap(), r)
}

/// Rebuild the tar from tar-split and the layer directory, as
/// containers/storage's tar-split assembler does.
fn reassemble(split_gz: &[u8], dir: &Path) -> Vec<u8> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(split_gz).read_to_string(&mut text).unwrap();
    let mut out = Vec::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (i, line) in text.lines().enumerate() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(e["position"], i, "positions count up");
        match e["type"].as_u64().unwrap() {
            2 => out.extend(b64.decode(e["payload"].as_str().unwrap()).unwrap()),
            1 => {
                let size = e["size"].as_u64().unwrap_or(0);
                if size > 0 {
                    // Joined under the root as Go's filepath.Join does, absolute or not.
                    let data =
                        std::fs::read(dir.join(e["name"].as_str().unwrap().trim_start_matches('/'))).unwrap();
                    assert_eq!(data.len() as u64, size);
                    let mut crc = mtbx::storage::tarsplit::Crc64::default();
                    crc.update(&data);
                    assert_eq!(b64.encode(crc.value().to_be_bytes()), e["payload"].as_str().unwrap());
                    out.extend(data);
                }
            }
            t => panic!("unknown tar-split type {t}"),
        }
    }
    out
}

fn rich() -> Vec<E> {
    vec![
        E::Dir("etc", 0o755),
        E::File("etc/a", 0o640, b"alpha\n".to_vec()),
        E::File("etc/odd", 0o644, vec![7u8; 513]),
        E::File("etc/empty", 0o600, Vec::new()),
        E::Owned("etc/owned", 0o4755, 1000, 2000, b"suid\n".to_vec()),
        E::Hardlink("etc/b", "etc/a"),
        E::Symlink("etc/s", "a"),
        E::Xattr("etc/x", b"x".to_vec(), "user.k", b"v"),
        E::Long(format!("deep/{}/file", "d".repeat(120)), b"long\n".to_vec()),
        E::File("/abs", 0o644, b"absolute names land inside\n".to_vec()),
        E::Raw("fifo", b'6', "", Vec::new()),
    ]
}

#[test]
fn entries_land_as_the_tar_says_and_tar_split_rebuilds_the_tar() {
    let test = "entries_land_as_the_tar_says_and_tar_split_rebuilds_the_tar";
    if !root_or_skip(test) {
        return;
    }
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for opts in [OVERLAY, VFS] {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&rich());
        let (split, r) = run(&tar, dir.path(), opts);
        let stats = r.unwrap();
        let p = dir.path();
        assert_eq!(std::fs::read(p.join("etc/a")).unwrap(), b"alpha\n");
        let meta = |n: &str| std::fs::symlink_metadata(p.join(n)).unwrap();
        assert_eq!(meta("etc/a").mode() & 0o7777, 0o640);
        assert_eq!(meta("etc/owned").mode() & 0o7777, 0o4755, "setuid survives the chown");
        assert_eq!((meta("etc/owned").uid(), meta("etc/owned").gid()), (1000, 2000));
        assert_eq!(meta("etc/a").ino(), meta("etc/b").ino(), "hardlink");
        assert_eq!(std::fs::read_link(p.join("etc/s")).unwrap(), Path::new("a"));
        assert_eq!(meta("etc/a").mtime(), 1_700_000_000);
        assert_eq!(meta("etc").mtime(), 1_700_000_000, "directory times set after their contents");
        assert!(meta("fifo").file_type().is_fifo());
        assert!(p.join(format!("deep/{}/file", "d".repeat(120))).exists());
        assert!(p.join("abs").exists());
        assert_eq!(stats.uids.iter().copied().collect::<Vec<_>>(), vec![0, 1000]);
        assert_eq!(reassemble(&split, p), tar, "tar-split + files rebuild the exact tar");
    }
}

#[test]
fn whiteouts_follow_each_drivers_rules() {
    let test = "whiteouts_follow_each_drivers_rules";
    if !root_or_skip(test) {
        return;
    }
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let upper = tar_of(&[
        E::File("d/new-before-marker", 0o644, b"kept\n".to_vec()),
        E::Opaque("d"),
        E::Whiteout("gone"),
        E::File("d/new-after-marker", 0o644, b"kept too\n".to_vec()),
    ]);
    // overlay: an empty diff dir gets a 0/0 device and the opaque xattr.
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = run(&upper, dir.path(), OVERLAY);
    r.unwrap();
    let gone = std::fs::symlink_metadata(dir.path().join("gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert!(!dir.path().join(".wh.gone").exists());
    assert_eq!(
        common::lgetxattr(&dir.path().join("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    // vfs: the layer starts as a copy of its parent; whiteouts delete, and
    // an opaque directory keeps only what this layer put there.
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = run(
        &tar_of(&[
            E::File("gone", 0o644, b"x".to_vec()),
            E::Dir("d", 0o755),
            E::File("d/old", 0o644, b"o".to_vec()),
        ]),
        dir.path(),
        VFS,
    );
    r.unwrap();
    let (_, r) = run(&upper, dir.path(), VFS);
    r.unwrap();
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["new-after-marker", "new-before-marker"]);
    assert!(!dir.path().join("gone").exists());
}

#[test]
fn hostile_and_broken_tars_are_refused() {
    let test = "hostile_and_broken_tars_are_refused";
    if !root_or_skip(test) {
        return;
    }
    let outside = tempfile::tempdir().unwrap();
    let out: &'static str = Box::leak(outside.path().display().to_string().into_boxed_str());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", tar_of(&[E::Raw("a/../../x", b'0', "", b"x".to_vec())])),
        ("abs symlink", tar_of(&[E::Symlink("l", out), E::File("l/x", 0o644, b"x".to_vec())])),
        (
            "rel symlink",
            tar_of(&[E::Symlink("l", "../../../../../.."), E::Raw("l/tmp/x", b'0', "", b"x".to_vec())]),
        ),
        ("hardlink out", tar_of(&[E::Raw("h", b'1', "../etc/passwd", Vec::new())])),
        ("hardlink via symlink", tar_of(&[E::Symlink("l", out), E::Raw("h", b'1', "l/x", Vec::new())])),
    ];
    for (what, tar) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (_, r) = run(&tar, dir.path(), OVERLAY);
        match r {
            Err(ApplyError::Traversal(_)) | Err(ApplyError::Escape(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");

    // An absurd size (base-256 encoded), a truncated stream, a bad checksum.
    let mut huge = tar_of(&[E::File("f", 0o644, Vec::new())]);
    huge[124] = 0x80;
    huge[125..136].copy_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0]);
    fix_checksum(&mut huge);
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(run(&huge, dir.path(), OVERLAY).1, Err(ApplyError::TooLarge { .. })));
    let good = tar_of(&[E::File("f", 0o644, vec![1u8; 2000])]);
    assert!(matches!(run(&good[..1200], dir.path(), OVERLAY).1, Err(ApplyError::Corrupt(_))));
    let mut bad = good.clone();
    bad[0] ^= 1;
    assert!(matches!(run(&bad, dir.path(), OVERLAY).1, Err(ApplyError::Corrupt(_))));
}

fn fix_checksum(tar: &mut [u8]) {
    tar[148..156].fill(b' ');
    let sum: u32 = tar[..512].iter().map(|&b| b as u32).sum();
    tar[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn a_directory_replaced_by_a_symlink_is_followed_inside_the_layer() {
    let test = "a_directory_replaced_by_a_symlink_is_followed_inside_the_layer";
    if !root_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[
        E::Dir("b", 0o755),
        E::File("a/one", 0o644, b"1".to_vec()),
        E::Symlink("a", "b"),
        E::File("a/two", 0o644, b"2".to_vec()),
    ]);
    let (_, r) = run(&tar, dir.path(), OVERLAY);
    r.unwrap();
    assert_eq!(std::fs::read(dir.path().join("b/two")).unwrap(), b"2", "written through the new symlink");
    assert!(std::fs::symlink_metadata(dir.path().join("a")).unwrap().file_type().is_symlink());
}

/// cap_net_raw+ep as setcap writes it (VFS_CAP_REVISION_2, effective flag,
/// permitted bit 13), as Debian's /usr/bin/ping carries it.
const CAP_NET_RAW_EP: &[u8] = &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn lgetxattr(path: &Path, key: &std::ffi::CStr) -> Option<Vec<u8>> {
    common::lgetxattr(path, key.to_str().unwrap())
}

#[test]
fn file_capabilities_survive_the_owner_change() {
    let test = "file_capabilities_survive_the_owner_change";
    if !root_or_skip(test) {
        return;
    }
    let tar = tar_of(&[
        E::Dir("bin", 0o755),
        E::Xattr("bin/ping", b"ping\n".to_vec(), "security.capability", CAP_NET_RAW_EP),
    ]);
    for opts in [OVERLAY, VFS] {
        let dir = tempfile::tempdir().unwrap();
        let (_, r) = run(&tar, dir.path(), opts);
        r.unwrap();
        assert_eq!(
            lgetxattr(&dir.path().join("bin/ping"), c"security.capability").as_deref(),
            Some(CAP_NET_RAW_EP),
            "{opts:?}: cap_net_raw+ep kept, as podman keeps it"
        );
    }
}

#[test]
fn a_bad_pax_record_is_refused_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[E::Raw("pax", b'x', "", b"not a record\n".to_vec()), E::File("f", 0o644, Vec::new())]);
    let err = run(&tar, dir.path(), OVERLAY).1.unwrap_err();
    assert!(matches!(err, ApplyError::BadPax(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some(), "the parser's error is kept");
    use mtbx::error::Classify;
    assert_eq!(err.kind(), mtbx::error::Kind::Failed);
}
