//! Images in files (`oci:`, `oci-archive:`, `docker-archive:`) read by mtbx
//! itself: every test runs mtbx with a PATH that has no skopeo, on layouts
//! and archives made at test time. The platform is chosen from a layout's
//! index as from a registry's; hostile archives (names leading out, blobs
//! shorter, longer or other than their descriptors, huge indexes) are
//! refused and leave nothing in the store; `save` writes an archive that
//! reads back as the same image. Pulls need root (a rootful store of the
//! test's own); elsewhere those tests print SKIPPED.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::images::{image, index, tar_of, Built, Comp, E};
use common::local::{docker_archive, docker_archive_stored, raw_tar, tar_dir, write_layout, PathWithout};
use common::store::Store;
use common::{mtbx, text};
use serde_json::Value;

/// Three platforms, each with a layer of its own.
fn platforms() -> Vec<Built> {
    ["amd64", "arm64", "s390x"]
        .iter()
        .map(|a| {
            image(
                a,
                None,
                &[(
                    vec![E::Dir("etc", 0o755), E::File("etc/arch", 0o644, a.as_bytes().to_vec())],
                    Comp::Gzip,
                )],
            )
        })
        .collect()
}

struct Files {
    dir: tempfile::TempDir,
    built: Vec<Built>,
    index_digest: String,
    no_skopeo: PathWithout,
}

impl Files {
    /// A multi-platform layout `<tmp>/multi` tagged `1`, and the same as
    /// `<tmp>/multi.tar`.
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let built = platforms();
        let up = index(&built.iter().collect::<Vec<_>>());
        write_layout(&dir.path().join("multi"), &up, "1");
        tar_dir(&dir.path().join("multi"), &dir.path().join("multi.tar"));
        let index_digest = up.manifests.last().unwrap().0.clone();
        Files { dir, built, index_digest, no_skopeo: PathWithout::new("skopeo") }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn mtbx(&self, args: &[&str]) -> Command {
        let mut c = mtbx(args);
        c.env("PATH", self.no_skopeo.path()).env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
        c
    }

    fn inspect(&self, image: &str, arch: &str) -> Output {
        self.mtbx(&["inspect", "--format", "json", "--arch", arch, image]).output().unwrap()
    }
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn inspect_chooses_the_platform_from_a_layout_and_an_archive() {
    let f = Files::new();
    let dir = f.path("multi");
    let tar = f.path("multi.tar");
    for r in [
        format!("oci:{}:1", dir.display()),
        format!("oci:{}", dir.display()),
        format!("oci-archive:{}:1", tar.display()),
        format!("oci-archive:{}", tar.display()),
    ] {
        for b in &f.built {
            let j = json(&f.inspect(&r, &b.platform.0));
            assert_eq!(j["ManifestDigest"], b.manifest_digest.as_str(), "{r}");
            assert_eq!(j["Architecture"], b.platform.0.as_str(), "{r}");
            assert_eq!(j["IndexDigest"], f.index_digest.as_str(), "{r}");
            assert_eq!(j["Name"], "localhost/multi", "{r}");
        }
        let missing = f.inspect(&r, "riscv64");
        let err = text(&missing.stderr);
        assert_eq!(missing.status.code(), Some(3), "{err}");
        assert!(
            err.contains("linux/riscv64") && err.contains("linux/arm64") && err.contains("linux/s390x"),
            "{err}"
        );
    }
    // An index inside an index (as the spec allows): the inner one's
    // platforms are chosen from.
    let mut up = index(&f.built.iter().collect::<Vec<_>>());
    let (inner, inner_bytes, media) = up.manifests.last().unwrap().clone();
    let outer = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": media,
        "manifests": [{"mediaType": media, "digest": inner, "size": inner_bytes.len()}]}))
    .unwrap();
    up.manifests.push((common::fixtures::sha256(&outer), outer, media));
    write_layout(&f.path("nested"), &up, "1");
    let j = json(&f.inspect(&format!("oci:{}:1", f.path("nested").display()), "s390x"));
    assert_eq!(j["ManifestDigest"], f.built[2].manifest_digest.as_str());
    assert_eq!(j["Platforms"], serde_json::json!(["linux/amd64", "linux/arm64", "linux/s390x"]));
    let no_tag = f.inspect(&format!("oci:{}:2", dir.display()), "arm64");
    let err = text(&no_tag.stderr);
    assert_eq!(no_tag.status.code(), Some(3), "{err}");
    assert!(err.contains("no image tagged \"2\"") && err.contains("it has: 1"), "{err}");
    let not_there = f.inspect(&format!("oci-archive:{}", f.path("nope.tar").display()), "arm64");
    assert_eq!(not_there.status.code(), Some(3), "{}", text(&not_there.stderr));
    // A docker archive is not an OCI archive: said so, not a parser error.
    let (docker, _, _) = docker_archive("amd64", &[tar_of(&[E::Dir("etc", 0o755)])], "me/app:2");
    std::fs::write(f.path("docker.tar"), docker).unwrap();
    let wrong = f.inspect(&format!("oci-archive:{}", f.path("docker.tar").display()), "amd64");
    assert!(text(&wrong.stderr).contains("no oci-layout file"), "{}", text(&wrong.stderr));
}

/// Pulls into a [`Store`] from files.
trait LocalPulls {
    fn pull(&self, f: &Files, args: &[&str]) -> Output;
    fn diff_ids(&self) -> Vec<String>;
    fn images(&self) -> Vec<Value>;
}

impl LocalPulls for Store {
    fn pull(&self, f: &Files, args: &[&str]) -> Output {
        let mut all = vec!["pull", "-y", "--format", "json"];
        all.extend_from_slice(args);
        f.mtbx(&all).env("CONTAINERS_STORAGE_CONF", self.conf()).output().unwrap()
    }

    fn diff_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .records("overlay-layers/layers.json")
            .iter()
            .map(|l| l["diff-digest"].as_str().unwrap().into())
            .collect();
        v.sort();
        v
    }

    fn images(&self) -> Vec<Value> {
        self.records("overlay-images/images.json")
    }
}

#[test]
fn pull_stores_layouts_and_archives_without_skopeo() {
    let Some(store) = Store::new("pull_stores_layouts_and_archives_without_skopeo") else { return };
    let f = Files::new();
    let arm64 = &f.built[1];
    let j = json(&store.pull(&f, &["--arch", "arm64", &format!("oci:{}:1", f.path("multi").display())]));
    assert_eq!(j["name"], "localhost/multi:1-arm64");
    assert_eq!(j["platform"], "linux/arm64");
    assert_eq!(j["id"], &arm64.config_digest[7..]);
    assert_eq!(store.diff_ids(), arm64.diff_ids);
    let image = &store.images()[0];
    assert_eq!(
        image["digest"],
        f.index_digest.as_str(),
        "the digest of what the tag names, as from a registry"
    );

    let s390x = &f.built[2];
    let j = json(
        &store.pull(&f, &["--arch", "s390x", &format!("oci-archive:{}:1", f.path("multi.tar").display())]),
    );
    assert_eq!(j["name"], "localhost/multi:1-s390x");
    assert_eq!(j["id"], &s390x.config_digest[7..]);

    // docker save's layout, named by RepoTags as podman names it.
    let layer = tar_of(&[E::Dir("etc", 0o755), E::File("etc/docker", 0o644, b"yes".to_vec())]);
    let host = mtbx::emu::arch::Arch::host().oci;
    let (docker, config_digest, diff_ids) = docker_archive(host, &[layer], "me/app:2");
    std::fs::write(f.path("docker.tar"), docker).unwrap();
    let j = json(&store.pull(&f, &[&format!("docker-archive:{}", f.path("docker.tar").display())]));
    assert_eq!(j["name"], "localhost/me/app:2");
    assert_eq!(j["id"], &config_digest[7..]);
    assert!(store.diff_ids().contains(&diff_ids[0]));
    // A compressed layer is served uncompressed, under its diff_id.
    let plain = tar_of(&[E::Dir("etc", 0o755), E::File("etc/zipped", 0o644, b"gz".to_vec())]);
    let zipped = common::images::compress(&plain, Comp::Gzip);
    let (docker, config_digest, diff_ids) = docker_archive_stored(host, &[(plain, zipped)], "me/zipped:1");
    std::fs::write(f.path("zipped.tar"), docker).unwrap();
    let j = json(&store.pull(&f, &[&format!("docker-archive:{}", f.path("zipped.tar").display())]));
    assert_eq!(j["name"], "localhost/me/zipped:1");
    assert_eq!(j["id"], &config_digest[7..]);
    assert!(store.diff_ids().contains(&diff_ids[0]));
    // Asked for another architecture, a single-platform archive is refused.
    let other =
        store.pull(&f, &["--arch", "arm64", &format!("docker-archive:{}", f.path("docker.tar").display())]);
    assert_eq!(other.status.code(), Some(3), "{}", text(&other.stderr));
}

/// The layout of `f` copied to `name`, with `edit` applied to the arm64
/// image's layer blob file.
fn edited_layout(f: &Files, name: &str, edit: impl Fn(&Path)) -> PathBuf {
    let dir = f.path(name);
    let mut up = index(&f.built.iter().collect::<Vec<_>>());
    up.manifests.sort_by_key(|m| m.2.contains("index"));
    write_layout(&dir, &up, "1");
    let layer = f.built[1].upload.blobs.keys().find(|d| **d != f.built[1].config_digest).unwrap().clone();
    edit(&dir.join("blobs/sha256").join(&layer[7..]));
    dir
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let Some(store) = Store::new("hostile_archives_are_refused_and_leave_nothing") else { return };
    let f = Files::new();
    let mut cases: Vec<(String, &str)> = Vec::new();

    // Names that lead out of the archive, directly or through a symlink.
    let manifest = br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["../../../etc/passwd"]}]"#;
    let config = br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
    std::fs::write(
        f.path("out.tar"),
        raw_tar(&[("manifest.json", b'0', "", manifest), ("c.json", b'0', "", config)]),
    )
    .unwrap();
    cases.push((format!("docker-archive:{}", f.path("out.tar").display()), "points outside the archive"));
    let manifest = br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#;
    std::fs::write(
        f.path("link.tar"),
        raw_tar(&[
            ("manifest.json", b'0', "", manifest),
            ("c.json", b'0', "", config),
            ("l/layer.tar", b'2', "../../../../etc/passwd", b""),
        ]),
    )
    .unwrap();
    cases.push((format!("docker-archive:{}", f.path("link.tar").display()), "is missing"));

    // Blobs shorter, longer or other than their descriptors, in a
    // directory and in an archive.
    let truncate = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        std::fs::write(p, &b[..b.len() / 2]).unwrap();
    };
    let extend = |p: &Path| {
        let mut b = std::fs::read(p).unwrap();
        b.extend_from_slice(b"more");
        std::fs::write(p, b).unwrap();
    };
    let flip = |p: &Path| {
        let mut b = std::fs::read(p).unwrap();
        let n = b.len() - 9;
        b[n] ^= 0xff;
        std::fs::write(p, b).unwrap();
    };
    let short = edited_layout(&f, "short", truncate);
    cases.push((format!("oci:{}:1", short.display()), "but its descriptor says"));
    tar_dir(&short, &f.path("short.tar"));
    cases.push((format!("oci-archive:{}:1", f.path("short.tar").display()), "but its descriptor says"));
    let long = edited_layout(&f, "long", extend);
    cases.push((format!("oci:{}:1", long.display()), "but its descriptor says"));
    let other = edited_layout(&f, "other", flip);
    tar_dir(&other, &f.path("other.tar"));
    cases.push((format!("oci-archive:{}:1", f.path("other.tar").display()), "the blob's digest"));

    // An archive cut off in the middle of a blob.
    let whole = std::fs::read(f.path("multi.tar")).unwrap();
    std::fs::write(f.path("cut.tar"), &whole[..whole.len() * 2 / 3]).unwrap();
    cases.push((
        format!("oci-archive:{}:1", f.path("cut.tar").display()),
        "not a usable image layout or archive",
    ));

    // A compressed docker-archive layer that expands without end.
    let bomb_tar = tar_of(&[E::File("zeros", 0o644, vec![0u8; 64 << 20])]);
    let bomb = common::images::compress(&bomb_tar, Comp::Gzip);
    let arm = "arm64";
    let (docker, _, _) = docker_archive_stored(arm, &[(bomb_tar, bomb)], "me/bomb:1");
    std::fs::write(f.path("bomb.tar"), docker).unwrap();
    cases.push((format!("docker-archive:{}", f.path("bomb.tar").display()), "expands more than 1000 times"));

    // An index.json larger than any index.
    let huge = f.path("huge");
    write_layout(&huge, &index(&f.built.iter().collect::<Vec<_>>()), "1");
    std::fs::write(huge.join("index.json"), vec![b' '; 5 << 20]).unwrap();
    cases.push((format!("oci:{}:1", huge.display()), "-byte limit"));

    for (r, says) in &cases {
        let out = store.pull(&f, &["--arch", "arm64", r]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{r}: {err}");
        assert!(err.contains(says), "{r}: {err}");
        assert_eq!(err.lines().count(), 1, "{r}: one line: {err}");
        assert!(store.images().is_empty(), "{r}: no image");
        assert!(!store.diff_ids().contains(&f.built[1].diff_ids[0]), "{r}: not the bad layer");
        assert_eq!(store.staging_left(), 0, "{r}: no staging left");
    }
    // And `save` writes nothing from them.
    for (r, _) in &cases {
        let out_file = f.path("saved.tar");
        let out = f.mtbx(&["save", "--arch", "arm64", "-o", out_file.to_str().unwrap(), r]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{r}: {}", text(&out.stderr));
        assert!(!out_file.exists(), "{r}");
        let left: Vec<_> = std::fs::read_dir(f.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .collect();
        assert!(left.is_empty(), "{r}: {left:?}");
    }
}

#[test]
fn save_writes_one_platform_that_reads_back_as_the_same_image() {
    let f = Files::new();
    let out_file = f.path("arm64.tar");
    let src = format!("oci-archive:{}:1", f.path("multi.tar").display());
    let out = f.mtbx(&["save", "--arch", "arm64", "-o", out_file.to_str().unwrap(), &src]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let arm64 = &f.built[1];
    let saved = format!("oci-archive:{}", out_file.display());
    let j = json(&f.inspect(&saved, "arm64"));
    assert_eq!(j["ManifestDigest"], arm64.manifest_digest.as_str());
    assert_eq!(j["Digest"], arm64.manifest_digest.as_str(), "one platform: the manifest itself");
    assert_eq!(j["RepoTags"], serde_json::json!(["1"]), "the ref.name annotation");
    assert_eq!(j["Platforms"], serde_json::json!(["linux/arm64"]));
    let other = f.inspect(&saved, "s390x");
    assert_eq!(other.status.code(), Some(3), "{}", text(&other.stderr));
    // The same bytes again: the archive is deterministic.
    let again = f.path("again.tar");
    let out = f.mtbx(&["save", "--arch", "arm64", "-o", again.to_str().unwrap(), &saved]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&out_file).unwrap(), std::fs::read(&again).unwrap());
    // Bad output paths are bad input.
    for bad in [f.dir.path().to_str().unwrap(), "/nonexistent-dir/x.tar"] {
        let out = f.mtbx(&["save", "--arch", "arm64", "-o", bad, &src]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
    }
}

#[test]
fn memory_does_not_grow_with_the_image_read_from_an_archive() {
    let test = "memory_does_not_grow_with_the_image_read_from_an_archive";
    let Some(store) = Store::new(test) else { return };
    let f = Files::new();
    let mut peaks = Vec::new();
    for (name, mib) in [("small", 1), ("large", 96)] {
        let built = common::images::incompressible_image(mib, mib as u64);
        write_layout(&f.path(name), &index(&[&built]), "1");
        let archive = f.path(&format!("{name}.tar"));
        tar_dir(&f.path(name), &archive);
        let saved = f.path(&format!("{name}-saved.tar"));
        let src = format!("oci-archive:{}:1", archive.display());
        let save = common::peak_rss_mib(f.mtbx(&[
            "save",
            "-q",
            "--arch",
            "amd64",
            "-o",
            saved.to_str().unwrap(),
            &src,
        ]));
        let mut pull = f.mtbx(&["pull", "-q", "-y", &format!("oci-archive:{}", saved.display())]);
        pull.env("CONTAINERS_STORAGE_CONF", store.conf());
        let pulled = common::peak_rss_mib(pull);
        peaks.push((save, pulled));
    }
    let ((save_small, pull_small), (save_large, pull_large)) = (peaks[0], peaks[1]);
    eprintln!("peak RSS, 1 MiB vs 96 MiB layer: save {save_small}/{save_large} MiB, pull {pull_small}/{pull_large} MiB");
    assert!(save_large < save_small + 24, "save: {save_large} MiB for 96 MiB, {save_small} MiB for 1 MiB");
    assert!(pull_large < pull_small + 24, "pull: {pull_large} MiB for 96 MiB, {pull_small} MiB for 1 MiB");
}

#[test]
fn an_interrupted_save_leaves_nothing() {
    use common::registry::{Auth, FixtureRegistry};
    use std::sync::atomic::Ordering;
    let reg = FixtureRegistry::fixtures(Auth::None);
    let image = format!("{}/multi:1", reg.addr);
    let info = json(
        &mtbx(&["inspect", "--tls-verify=false", "--format", "json", "--arch", "arm64", &image])
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .output()
            .unwrap(),
    );
    let layers: Vec<String> =
        info["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().into()).collect();
    // The second layer drips (5 bytes a second): the save is caught with
    // its temporary file open.
    *reg.faults.cut_only.lock().unwrap() = vec![layers[1].clone()];
    reg.faults.drip.store(1, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("arm64.tar");
    let child =
        mtbx(&["save", "--tls-verify=false", "--arch", "arm64", "-o", out_file.to_str().unwrap(), &image])
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let dripping = || reg.log.lock().unwrap().iter().any(|l| l.contains(&layers[1]));
    while !dripping() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let parts = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert!(parts().iter().any(|n| n.ends_with(".part")), "{:?}", parts());
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted; nothing was written"), "{err}");
    assert!(parts().is_empty(), "{:?}", parts());
}

/// The part of an error after "offers"/"only", or the kind of failure:
/// what must not depend on where the image was read.
fn verdict(out: &Output) -> (Option<i32>, String) {
    if out.status.success() {
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        return (Some(0), format!("{} {}", j["ManifestDigest"], j["Platform"]));
    }
    let err = text(&out.stderr);
    let tail = ["it offers", "only;", "config says"]
        .iter()
        .find_map(|w| err.find(w).map(|i| err[i..].trim().to_string()))
        .unwrap_or(err.clone());
    (out.status.code(), tail)
}

#[test]
fn every_platform_choice_is_the_registrys() {
    use common::registry::{fixtures_root, Auth, FixtureRegistry};
    let reg = FixtureRegistry::fixtures(Auth::None);
    let no_skopeo = PathWithout::new("skopeo");
    let inspect = |image: &str, arch: &[&str]| {
        let mut args = vec!["inspect", "--tls-verify=false", "--format", "json"];
        args.extend_from_slice(arch);
        args.push(image);
        mtbx(&args)
            .env("PATH", no_skopeo.path())
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .output()
            .unwrap()
    };
    let choices: &[&[&str]] = &[
        &["--arch", "amd64"],
        &["--arch", "arm64"],
        &["--arch", "arm64", "--variant", "v8"],
        &["--arch", "arm"],
        &["--arch", "arm", "--variant", "v6"],
        &["--arch", "arm", "--variant", "v5"],
        &["--arch", "386"],
        &["--arch", "ppc64le"],
        &["--arch", "s390x"],
        &["--arch", "riscv64"],
        &["--arch", "mips64le"],
    ];
    let mut compared = 0;
    for (repo, tag) in [("multi", "1"), ("dockerlist", "1"), ("single", "1"), ("liar", "1"), ("armold", "1")]
    {
        let remote = format!("{}/{repo}:{tag}", reg.addr);
        let local = format!("oci:{}:{tag}", fixtures_root().join(repo).display());
        for choice in choices {
            let (r, l) = (verdict(&inspect(&remote, choice)), verdict(&inspect(&local, choice)));
            assert_eq!(l, r, "{repo} {choice:?}: layout vs registry");
            compared += 1;
        }
    }
    assert_eq!(compared, 55);
}
