//! Hostile files given to the surfaces that read them: OCI layouts and
//! archives built to cost exponential work, FIFOs where files should be,
//! names holding terminal escapes, and `save` interrupted. Each must end
//! promptly with one clean line (or a clean answer), and leave nothing
//! behind.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::local::{tar_dir, PathWithout};
use common::registry::{Auth, FixtureRegistry};
use common::{mtbx, text};
use serde_json::{json, Value};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI layout written blob by blob.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: PathBuf) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    /// Store `bytes` as a blob; its descriptor.
    fn blob(&self, media: &str, bytes: &[u8]) -> Value {
        let digest = common::fixtures::sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
        json!({"mediaType": media, "digest": digest, "size": bytes.len()})
    }

    /// An index of `entries`, stored; its descriptor.
    fn index(&self, entries: Vec<Value>) -> Value {
        let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        self.blob(OCI_INDEX, &serde_json::to_vec(&idx).unwrap())
    }

    /// index.json naming `top` by `tag`.
    fn tag(&self, mut top: Value, tag: &str) {
        top["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    }
}

/// mtbx with no skopeo on PATH and no registries.conf.
fn local_mtbx(no_skopeo: &PathWithout, args: &[&str]) -> Output {
    mtbx(args).env("PATH", no_skopeo.path()).env("CONTAINERS_REGISTRIES_CONF", "/dev/null").output().unwrap()
}

/// One line, `mtbx: error: ...`, containing `what`.
fn one_line_error(err: &str, what: &str) {
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("mtbx: error: ") && err.contains(what), "{what}: {err}");
}

/// Nested indexes whose entries all name the same child (five levels of
/// 40, the last offering only s390x; as deep as mtbx follows) cost 40^4 searches if each entry is
/// searched again; each index is searched once, so inspect answers at once
/// (no amd64 here: exit 3) after looking at a few hundred entries, from a
/// layout, from an archive of it and from a registry serving it. A layout
/// whose distinct indexes list too many entries in all is refused, from
/// files and from a registry alike.
#[test]
fn nested_indexes_naming_one_child_are_searched_once() {
    let d = tempfile::tempdir().unwrap();
    let no_skopeo = PathWithout::new("skopeo");
    let l = Layout::new(d.path().join("deep"));
    let leaf = l.blob(OCI_MANIFEST, br#"{"schemaVersion":2}"#);
    let mut entries: Vec<Value> = (0..40)
        .map(|_| {
            let mut e = leaf.clone();
            e["platform"] = json!({"architecture": "s390x", "os": "linux"});
            e
        })
        .collect();
    for _ in 0..4 {
        let child = l.index(entries);
        entries = vec![child; 40];
    }
    l.tag(l.index(entries), "1");
    tar_dir(&l.dir, &d.path().join("deep.tar"));
    let reg = FixtureRegistry::start(d.path(), Auth::None);
    for image in [
        format!("oci:{}:1", l.dir.display()),
        format!("oci-archive:{}:1", d.path().join("deep.tar").display()),
        format!("{}/deep:1", reg.addr),
    ] {
        let out = local_mtbx(
            &no_skopeo,
            &["--log-level", "debug", "inspect", "--tls-verify=false", "--arch", "amd64", &image],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{image}: {err}");
        let seen: usize = err
            .lines()
            .find_map(|l| l.split(" index entries looked at").next().filter(|_| l.contains("looked at")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count of entries: {err}"));
        assert!(seen <= 6 * 40, "{seen} entries looked at: {err}");
        assert!(err.contains("linux/s390x"), "{err}");
    }

    // 300 distinct indexes of 40 entries each: more than mtbx looks at.
    let wide = Layout::new(d.path().join("wide"));
    let tops: Vec<Value> = (0..300)
        .map(|i| {
            let entries: Vec<Value> = (0..40)
                .map(|_| {
                    let mut e = leaf.clone();
                    e["platform"] =
                        json!({"architecture": "s390x", "os": "linux", "os.version": i.to_string()});
                    e
                })
                .collect();
            wide.index(entries)
        })
        .collect();
    wide.tag(wide.index(tops), "1");
    for image in [format!("oci:{}:1", wide.dir.display()), format!("{}/wide:1", reg.addr)] {
        let out = local_mtbx(&no_skopeo, &["inspect", "--tls-verify=false", "--arch", "amd64", &image]);
        assert_eq!(out.status.code(), Some(1), "{image}: {}", text(&out.stderr));
        one_line_error(&text(&out.stderr), "entries in all");
    }
}

/// A chain of indexes deeper than mtbx follows (each naming the next, the
/// last the image) is refused by the same bound from a layout, an archive
/// of it and a registry serving it; one level less is followed by all.
#[test]
fn indexes_nested_too_deep_are_refused_by_every_source() {
    let d = tempfile::tempdir().unwrap();
    let no_skopeo = PathWithout::new("skopeo");
    for (name, levels) in [("deep", 5), ("deeper", 6)] {
        let l = Layout::new(d.path().join(name));
        let config = l.blob(
            "application/vnd.oci.image.config.v1+json",
            br#"{"architecture":"s390x","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []});
        let mut top = l.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        top["platform"] = json!({"architecture": "s390x", "os": "linux"});
        for _ in 0..levels {
            top = l.index(vec![top]);
        }
        l.tag(top, "1");
        tar_dir(&l.dir, &d.path().join(format!("{name}.tar")));
    }
    let reg = FixtureRegistry::start(d.path(), Auth::None);
    for name in ["deep", "deeper"] {
        for image in [
            format!("oci:{}:1", d.path().join(name).display()),
            format!("oci-archive:{}:1", d.path().join(format!("{name}.tar")).display()),
            format!("{}/{name}:1", reg.addr),
        ] {
            let out = local_mtbx(&no_skopeo, &["inspect", "--tls-verify=false", "--arch", "s390x", &image]);
            let err = text(&out.stderr);
            if name == "deep" {
                assert_eq!(out.status.code(), Some(0), "{image}: {err}");
            } else {
                assert_eq!(out.status.code(), Some(1), "{image}: {err}");
                one_line_error(&err, "indexes nest more than 4 deep");
            }
        }
    }
}

/// A FIFO at `path` (replacing what is there).
pub fn fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let out = Command::new("mkfifo").arg(path).output().unwrap();
    assert!(out.status.success(), "mkfifo {}: {}", path.display(), text(&out.stderr));
}

/// An amd64 image of one small layer, as a layout at `dir` tagged `1`;
/// the layer blob's path.
fn small_layout(dir: &Path) -> PathBuf {
    use common::images::{image, Comp, E};
    let built = image("amd64", None, &[(vec![E::File("hello", 0o644, b"hi\n".to_vec())], Comp::Gzip)]);
    common::local::write_layout(dir, &built.upload, "1");
    let layer = built.upload.blobs.keys().find(|d| **d != built.config_digest).unwrap().clone();
    dir.join("blobs/sha256").join(&layer[7..])
}

/// The names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A FIFO where a layout or archive has a file (index.json, oci-layout, a
/// layer blob, the archive itself) is refused in one line at once, never
/// opened for a writer that will not come; save leaves no file, and pull
/// nothing in the store.
#[test]
fn fifos_in_layouts_and_archives_are_refused_without_blocking() {
    let d = tempfile::tempdir().unwrap();
    let no_skopeo = PathWithout::new("skopeo");
    for (name, file) in [("index", "index.json"), ("layout", "oci-layout")] {
        let dir = d.path().join(name);
        small_layout(&dir);
        fifo(&dir.join(file));
        let out = local_mtbx(&no_skopeo, &["inspect", &format!("oci:{}:1", dir.display())]);
        assert_eq!(out.status.code(), Some(1), "{file}: {}", text(&out.stderr));
        one_line_error(&text(&out.stderr), "FIFO");
    }
    let archive = d.path().join("archive.tar");
    fifo(&archive);
    let out = local_mtbx(&no_skopeo, &["inspect", &format!("oci-archive:{}", archive.display())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    one_line_error(&text(&out.stderr), "FIFO");

    let dir = d.path().join("blob");
    let layer = small_layout(&dir);
    fifo(&layer);
    let outdir = d.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let target = outdir.join("x.tar");
    let out = local_mtbx(
        &no_skopeo,
        &["save", "--arch", "amd64", "-o", target.to_str().unwrap(), &format!("oci:{}:1", dir.display())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    one_line_error(&text(&out.stderr), "FIFO");
    assert_eq!(names(&outdir), Vec::<String>::new());
    // A pull of it stores nothing (a rootful store of the test's own).
    let Some(store) = common::store::Store::new("fifos_in_layouts_and_archives_are_refused_without_blocking")
    else {
        return;
    };
    let out = mtbx(&["pull", "-y", "--arch", "amd64", &format!("oci:{}:1", dir.display())])
        .env("PATH", no_skopeo.path())
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
        .env("CONTAINERS_STORAGE_CONF", store.conf())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    one_line_error(&text(&out.stderr), "FIFO");
    assert!(store.records("overlay-images/images.json").is_empty(), "no image");
    assert!(store.records("overlay-layers/layers.json").is_empty(), "no layer");
    assert_eq!(store.staging_left(), 0, "no staging left");
}

/// A layout whose blob is a link to a file outside it (one its owner may
/// not read, saved by root) is refused without naming the file's size or
/// digest, and nothing is written; a link inside the layout is followed.
#[test]
fn links_out_of_a_layout_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let no_skopeo = PathWithout::new("skopeo");
    let secret = d.path().join("secret");
    std::fs::write(&secret, b"root's own secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dir = d.path().join("user-layout");
    let layer = small_layout(&dir);
    // Inside: the blob moved elsewhere in the layout, linked back.
    std::fs::rename(&layer, dir.join("moved")).unwrap();
    std::os::unix::fs::symlink("../../moved", &layer).unwrap();
    let outdir = d.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let target = outdir.join("x.tar");
    let image = format!("oci:{}:1", dir.display());
    let out = local_mtbx(&no_skopeo, &["save", "--arch", "amd64", "-o", target.to_str().unwrap(), &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::remove_file(&target).unwrap();
    // Outside: refused.
    std::fs::remove_file(&layer).unwrap();
    std::os::unix::fs::symlink(&secret, &layer).unwrap();
    let out = local_mtbx(&no_skopeo, &["save", "--arch", "amd64", "-o", target.to_str().unwrap(), &image]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    one_line_error(&err, "points outside the archive or layout");
    let secret_digest = common::fixtures::sha256(&std::fs::read(&secret).unwrap());
    assert!(!err.contains(&secret_digest[7..]) && !err.contains(" 18 "), "{err}");
    assert_eq!(names(&outdir), Vec::<String>::new());
}

/// `save` stopped by SIGTERM or SIGHUP in the middle of a blob ends as
/// Ctrl-C does: exit 1, "interrupted", no temporary file. One killed
/// outright (SIGKILL) leaves its temporary file, which the next save to
/// the same file removes. The archive's mode follows the umask.
#[test]
fn save_cleans_up_after_every_signal_and_follows_the_umask() {
    use common::registry::{Auth, FixtureRegistry};
    use std::sync::atomic::Ordering;
    let reg = FixtureRegistry::fixtures(Auth::None);
    let image = format!("{}/multi:1", reg.addr);
    let out = mtbx(&["inspect", "--tls-verify=false", "--format", "json", "--arch", "arm64", &image])
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer = info["Layers"][1].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("arm64.tar");
    let save = || {
        let mut c = mtbx(&[
            "save",
            "--tls-verify=false",
            "--arch",
            "arm64",
            "-o",
            out_file.to_str().unwrap(),
            &image,
        ]);
        c.env("CONTAINERS_REGISTRIES_CONF", "/dev/null").stderr(std::process::Stdio::piped());
        c
    };
    let requests = || reg.log.lock().unwrap().iter().filter(|l| l.contains(&layer)).count();
    for signal in ["TERM", "HUP", "KILL"] {
        // The layer drips (5 bytes a second): the save is caught with its
        // temporary file open.
        *reg.faults.cut_only.lock().unwrap() = vec![layer.clone()];
        reg.faults.drip.store(1, Ordering::SeqCst);
        let seen = requests();
        let child = save().spawn().unwrap();
        while requests() == seen {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        while !names(dir.path()).iter().any(|n| n.ends_with(".part")) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let kill =
            Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        if signal == "KILL" {
            assert_eq!(names(dir.path()).len(), 1, "{:?}", names(dir.path()));
        } else {
            assert_eq!(out.status.code(), Some(1), "{signal}: {err}");
            one_line_error(&err, "interrupted; nothing was written");
            assert_eq!(names(dir.path()), Vec::<String>::new(), "{signal}");
        }
    }
    reg.faults.drip.store(0, Ordering::SeqCst);
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 077 && exec \"$@\"")
        .arg("sh")
        .arg(common::mtbx_bin())
        .args(["save", "--tls-verify=false", "--arch", "arm64", "-o", out_file.to_str().unwrap(), &image])
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(names(dir.path()), vec!["arm64.tar".to_string()], "the killed save's file is gone");
    let mode = std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "umask 077");
}

/// No byte of an escape sequence (ESC, BEL, CSI) in what mtbx printed,
/// and an error is one line.
fn no_escapes(what: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !bytes.iter().any(|b| matches!(b, 0x1b | 0x07 | 0x9b)),
            "{what}: raw escape on {stream}: {:?}",
            text(bytes)
        );
    }
    if !out.status.success() {
        assert_eq!(text(&out.stderr).lines().count(), 1, "{what}: {}", text(&out.stderr));
    }
}

const PWNED: &str = "\x1b]0;PWNED\x07\x1b[2J";

/// Names from outside reach the terminal escaped: a layout's tags,
/// platform fields and config labels in inspect's report and errors, and
/// what the user typed echoed in errors (--rootfs, with a newline too,
/// oci:, oci-archive:, save -o, -c, --arch, --bin, --delete), and the
/// markers export --list shows.
#[test]
fn names_from_outside_are_printed_escaped() {
    use common::images::{image_from_tars_with_config, tar_of, Comp, E};
    let d = tempfile::tempdir().unwrap();
    let no_skopeo = PathWithout::new("skopeo");
    let built = image_from_tars_with_config(
        "amd64",
        None,
        &[(tar_of(&[E::File("f", 0o644, b"x".to_vec())]), Comp::Gzip)],
        json!({"Labels": {"evil": PWNED, PWNED: "key"}}),
    );
    let l = Layout::new(d.path().join("evil"));
    for (dg, b) in built
        .upload
        .blobs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(built.upload.manifests.iter().map(|(k, v, _)| (k.clone(), v.clone())))
    {
        std::fs::write(l.dir.join("blobs/sha256").join(&dg[7..]), b).unwrap();
    }
    let manifest = json!({"mediaType": OCI_MANIFEST, "digest": built.manifest_digest, "size": built.manifest_size,
        "platform": {"architecture": "amd64", "os": "linux"}});
    let mut odd = manifest.clone();
    odd["platform"] = json!({"architecture": format!("s390x{PWNED}"), "os": "linux", "variant": PWNED});
    let top = l.index(vec![manifest, odd]);
    let mut one = top.clone();
    one["annotations"] = json!({"org.opencontainers.image.ref.name": "1"});
    let mut evil = top;
    evil["annotations"] = json!({"org.opencontainers.image.ref.name": format!("x{PWNED}")});
    let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [one, evil]});
    std::fs::write(l.dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    let layout = format!("oci:{}", l.dir.display());
    let tagged = format!("{layout}:1");
    for args in [
        vec!["inspect", "--arch", "amd64", "--tags", tagged.as_str()],
        vec!["inspect", "--arch", "amd64", "--platforms", tagged.as_str()],
        vec!["inspect", "--arch", "arm64", tagged.as_str()],
        vec!["inspect", "--arch", "amd64", layout.as_str()],
    ] {
        let out = local_mtbx(&no_skopeo, &args);
        no_escapes(&format!("{args:?}"), &out);
    }
    let out = local_mtbx(&no_skopeo, &["inspect", "--arch", "amd64", "--tags", &tagged]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\\u{1b}]0;PWNED\\u{7}"), "{}", text(&out.stdout));

    // Typed by the user.
    let missing = d.path().join(format!("no{PWNED}\nsuch"));
    let missing = missing.to_str().unwrap();
    let out_file = format!("{}/x.tar", missing);
    let bin_dir = d.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let marker = json!({"container": format!("box{PWNED}"), "program": format!("/usr/bin/x{PWNED}")});
    std::fs::write(bin_dir.join("x-arm64"), format!("#!/bin/sh\n# mtbx-export {marker}\nexit 0\n")).unwrap();
    let bin_dir = bin_dir.to_str().unwrap();
    let oci = format!("oci:{missing}");
    let archive = format!("oci-archive:{missing}");
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "--rootfs", missing, "true"],
        vec!["inspect", &oci],
        vec!["inspect", &archive],
        vec!["save", "--arch", "amd64", "-o", &out_file, &tagged],
        vec!["run", "-c", missing, "true"],
        vec!["inspect", "--arch", missing, &tagged],
        vec!["export", "-c", "box", "--bin", missing],
        vec!["export", "--list", "--dir", bin_dir],
    ];
    let evil_name = format!("x{PWNED}");
    let delete = ["export", "-c", "box", "--dir", bin_dir, "--delete", evil_name.as_str()];
    // A tree whose passwd names a shell it lacks, for enter.
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("usr/bin/env"), mtbx::emu::testprog::program(mtbx::emu::arch::Arch::host()))
        .unwrap();
    std::fs::write(tree.join("etc/passwd"), format!("root:x:0:0::/root:/bin/{PWNED}\n")).unwrap();
    let tree = tree.to_str().unwrap();
    let enter = ["enter", "--rootfs", tree, "--root"];
    for args in cases.iter().map(|c| c.as_slice()).chain([&delete[..], &enter[..]]) {
        let out = local_mtbx(&no_skopeo, args);
        no_escapes(&format!("{args:?}"), &out);
    }
    let out = local_mtbx(&no_skopeo, &enter);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("has no shell"), "{}", text(&out.stderr));
    let out = local_mtbx(&no_skopeo, &["run", "--rootfs", missing, "true"]);
    assert!(text(&out.stderr).contains("\\nsuch"), "the newline is shown, not obeyed: {}", text(&out.stderr));
}
