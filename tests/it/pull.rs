//! `mtbx pull` end to end against the in-process registry, for what a real
//! server cannot be told to do: connections cut in the middle of a blob,
//! corrupt blobs, 503s. The store is a temporary one of the test's own
//! (no podman needed here; vendor-tests/pull.rs has podman read it).
//! Needs root, as a rootful store does; elsewhere the tests print SKIPPED.

use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::registry::{output_within, Auth, FixtureRegistry};
use common::store::Store;
use common::{mtbx, skip, text};
use serde_json::Value;

/// Pulls into a [`Store`] from the fixture registry.
trait RegistryPulls {
    fn pull(&self, args: &[&str]) -> Output;
    fn pull_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output;
    fn command(&self, args: &[&str]) -> Command;
    fn layers(&self) -> Vec<Value>;
}

impl RegistryPulls for Store {
    fn pull(&self, args: &[&str]) -> Output {
        self.pull_env(args, &[])
    }

    fn pull_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args).envs(env.iter().copied()).output().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut all = vec!["pull", "-y", "--tls-verify=false"];
        all.extend_from_slice(args);
        let mut c = mtbx(&all);
        c.env("CONTAINERS_STORAGE_CONF", self.conf()).env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
        c
    }

    fn layers(&self) -> Vec<Value> {
        self.records("overlay-layers/layers.json")
    }
}

/// The layer digests of `image` for `arch`, from `mtbx inspect`.
fn layer_digests(image: &str, arch: &str) -> Vec<String> {
    let info = mtbx(&["inspect", "--tls-verify=false", "--format", "json", "--arch", arch, image])
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    info["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
}

#[test]
fn json_and_quiet_output_and_a_second_pull_reuses_every_layer() {
    let Some(store) = Store::new("json_and_quiet_output_and_a_second_pull_reuses_every_layer") else {
        return;
    };
    let reg = FixtureRegistry::fixtures(Auth::None);
    let image = format!("{}/multi:1", reg.addr);
    let out = store.pull(&["--format", "json", "--arch", "s390x", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["name"], format!("{image}-s390x"));
    assert_eq!(j["platform"], "linux/s390x");
    assert_eq!(j["downloaded_layers"], 2);
    assert_eq!(store.layers().len(), 2);
    let blob_gets = || reg.log.lock().unwrap().iter().filter(|l| l.contains("/blobs/")).count();
    let before = blob_gets();
    let out = store.pull(&["-q", "--arch", "s390x", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), j["id"].as_str().unwrap(), "--quiet prints the id alone");
    assert_eq!(text(&out.stderr), "");
    assert_eq!(blob_gets(), before + 1, "only the config is fetched again; no layer");
}

#[test]
fn a_blob_cut_mid_stream_is_resumed_where_it_stopped() {
    let Some(store) = Store::new("a_blob_cut_mid_stream_is_resumed_where_it_stopped") else { return };
    let reg = FixtureRegistry::fixtures(Auth::None);
    let image = format!("{}/multi:1", reg.addr);
    *reg.faults.cut_only.lock().unwrap() = layer_digests(&image, "arm64");
    reg.faults.cut_blobs.store(2, Ordering::SeqCst);
    let out = store.pull(&["--arch", "arm64", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = reg.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains("/blobs/") && l.contains("range=bytes=")),
        "resumed with Range: {log:?}"
    );
    assert_eq!(store.layers().len(), 2);
}

#[test]
fn transient_errors_are_retried() {
    let Some(store) = Store::new("transient_errors_are_retried") else { return };
    let reg = FixtureRegistry::fixtures(Auth::None);
    reg.faults.fail.store(2, Ordering::SeqCst);
    reg.faults.drop.store(1, Ordering::SeqCst);
    let out = store.pull(&["--arch", "ppc64le", &format!("{}/multi:1", reg.addr)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_corrupt_blob_fails_the_pull_and_leaves_no_layer() {
    let Some(store) = Store::new("a_corrupt_blob_fails_the_pull_and_leaves_no_layer") else { return };
    let reg = FixtureRegistry::fixtures(Auth::None);
    let image = format!("{}/multi:1", reg.addr);
    let bad = layer_digests(&image, "arm64")[1].clone();
    *reg.faults.cut_only.lock().unwrap() = vec![bad.clone()];
    reg.faults.corrupt_blobs.store(true, Ordering::SeqCst);
    let out = store.pull(&["--arch", "arm64", &image]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("corrupt data"), "{err}");
    // The good base layer may stay (the next pull reuses it); the bad one
    // and the image must not be there.
    assert!(store.layers().iter().all(|l| l["compressed-diff-digest"] != bad.as_str()));
    assert!(!store.dir.path().join("graph/overlay-images/images.json").exists());
    assert_eq!(store.staging_left(), 0);
}

#[test]
fn bad_input_is_a_clear_error_with_its_exit_code() {
    let Some(store) = Store::new("bad_input_is_a_clear_error_with_its_exit_code") else { return };
    let reg = FixtureRegistry::fixtures(Auth::None);
    let image = format!("{}/multi:1", reg.addr);
    let out = store.pull(&["--arch", "vax", &image]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = store.pull(&["--arch", "mips64le", &image]);
    assert_eq!(out.status.code(), Some(3), "no such platform: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("offers"), "{}", text(&out.stderr));
    let out = store.pull(&[&format!("{}/nothing:1", reg.addr)]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    std::fs::write(store.conf(), "[storage]\ndriver = \"btrfs\"\n").unwrap();
    let out = store.pull(&[&image]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not supported"), "{}", text(&out.stderr));
    assert!(store.layers().is_empty());
}

#[test]
fn on_a_terminal_the_size_is_asked_about_first() {
    let test = "on_a_terminal_the_size_is_asked_about_first";
    let Some(store) = Store::new(test) else { return };
    if std::process::Command::new("script").arg("--version").output().is_err() {
        return skip(test, "script(1) not installed (bsdutils): it gives the pull a terminal");
    }
    let reg = FixtureRegistry::fixtures(Auth::None);
    let image = format!("{}/multi:1", reg.addr);
    // `script` runs the pull on a pseudo-terminal and passes our answer.
    let on_tty = |answer: &str| {
        let cmd = format!("{} pull --tls-verify=false --arch arm64 {image}", common::mtbx_bin().display());
        let mut child = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("CONTAINERS_STORAGE_CONF", store.conf())
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        use std::io::Write;
        child.stdin.take().unwrap().write_all(answer.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = on_tty("n\n");
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("Download {image}-arm64 (linux/arm64/v8, ")) && shown.contains("? [y/N]"),
        "{shown}"
    );
    assert!(shown.contains("cancelled"), "{shown}");
    assert!(store.layers().is_empty(), "nothing downloaded after no");
    let out = on_tty("y\n");
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(store.layers().len(), 2);
}

/// `built` as an OCI layout `repo` (tag "1") that a fixture registry of
/// its own serves.
fn serve(built: &common::images::Built, repo: &str) -> (tempfile::TempDir, FixtureRegistry) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(repo);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for (d, b) in &built.upload.blobs {
        std::fs::write(blobs.join(&d["sha256:".len()..]), b).unwrap();
    }
    for (d, b, _) in &built.upload.manifests {
        std::fs::write(blobs.join(&d["sha256:".len()..]), b).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": common::images::OCI_MANIFEST, "digest": built.manifest_digest,
        "size": built.manifest_size, "annotations": {"org.opencontainers.image.ref.name": "1"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    let reg = FixtureRegistry::start(root.path(), Auth::None);
    (root, reg)
}

/// Bytes no compressor shrinks (xorshift), so sizes on disk are known.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A tmpfs of `mib` MiB mounted at `dir` while this lives.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "mtbx-test",
                dir.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {}", text(&out.stderr));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_pull_that_fills_the_disk_leaves_no_staging_directory() {
    let Some(store) = Store::new("a_pull_that_fills_the_disk_leaves_no_staging_directory") else { return };
    use common::images::{image, Comp, E};
    let mib = 1 << 20;
    // Two big files and a layer of many small ones, downloaded at once
    // into a disk that holds less than half of it: one layer hits ENOSPC
    // while the others are still being written.
    let many: Vec<E> = (0..1500)
        .map(|i| E::File(Box::leak(format!("many/{i}").into_boxed_str()), 0o644, noise(i + 10, 4096)))
        .collect();
    let built = image(
        "amd64",
        None,
        &[
            (vec![E::File("big1", 0o644, noise(1, 6 * mib))], Comp::Plain),
            (many, Comp::Plain),
            (vec![E::File("big2", 0o644, noise(2, 6 * mib))], Comp::Plain),
        ],
    );
    let (_root, reg) = serve(&built, "full");
    let image = format!("{}/full:1", reg.addr);
    for round in 0..3 {
        let _disk = Tmpfs::mount(&store.dir.path().join("graph"), 8);
        let out = store.pull(&[&image]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "round {round}: {err}");
        assert!(err.to_lowercase().contains("no space left"), "round {round}: {err}");
        assert!(err.contains("may run out of space"), "round {round}: warned before downloading: {err}");
        assert_eq!(store.staging_left(), 0, "round {round}: staging directories left behind");
    }
}

#[test]
fn storage_conf_mistakes_are_one_line_errors_naming_the_file() {
    let Some(store) = Store::new("storage_conf_mistakes_are_one_line_errors_naming_the_file") else { return };
    let reg = FixtureRegistry::fixtures(Auth::None);
    let image = format!("{}/multi:1", reg.addr);
    let conf = store.conf();
    let cwd = tempfile::tempdir().unwrap();
    let pull_in_cwd = || {
        mtbx(&["pull", "-y", "--tls-verify=false", &image])
            .current_dir(cwd.path())
            .env("CONTAINERS_STORAGE_CONF", &conf)
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .output()
            .unwrap()
    };
    // podman refuses a relative graphroot; it would land under the
    // current directory.
    std::fs::write(&conf, "[storage]\ndriver = \"overlay\"\ngraphroot = \"graph\"\nrunroot = \"/run/x\"\n")
        .unwrap();
    let out = pull_in_cwd();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&conf.display().to_string()) && err.contains("graphroot"), "{err}");
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "nothing created under the current directory"
    );
    // A syntax error: one line with the file, line and column.
    std::fs::write(&conf, "[storage]\ndriver = \"overlay\"\ngraphroot = /var/lib/x\n").unwrap();
    let out = pull_in_cwd();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{}:3:13: ", conf.display())), "{err}");
}

#[test]
fn a_layer_that_expands_without_bound_is_stopped_before_it_fills_the_disk() {
    let test = "a_layer_that_expands_without_bound_is_stopped_before_it_fills_the_disk";
    let Some(store) = Store::new(test) else { return };
    use common::images::{image, Comp, E};
    // 8 MiB of zeros gzip to 8 KiB: a small compression bomb. With the
    // ratio at 2 the layer may grow to 2 MiB (the floor: 2 x 1 MiB).
    let built = image("amd64", None, &[(vec![E::File("zeros", 0o644, vec![0u8; 8 << 20])], Comp::Gzip)]);
    let (_root, reg) = serve(&built, "bomb");
    let image = format!("{}/bomb:1", reg.addr);
    let out = store.pull_env(&[&image], &[("MTBX_MAX_LAYER_EXPANSION", "2")]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("expands past 2.0 MiB") && err.contains("MTBX_MAX_LAYER_EXPANSION"), "{err}");
    assert!(store.layers().is_empty());
    assert_eq!(store.staging_left(), 0);
    // The same layer passes when allowed to: it was the limit that stopped it.
    let out = store.pull_env(&[&image], &[("MTBX_MAX_LAYER_EXPANSION", "off")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(store.layers().len(), 1);
    // A value that is not a ratio is the user's to fix.
    let out = store.pull_env(&[&image], &[("MTBX_MAX_LAYER_EXPANSION", "lots")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn a_layer_stops_before_the_disk_is_full() {
    let Some(store) = Store::new("a_layer_stops_before_the_disk_is_full") else { return };
    use common::images::{image, Comp, E};
    // 12 MiB onto 8 MiB, well within the expansion limit (a plain tar).
    let built = image("amd64", None, &[(vec![E::File("zeros", 0o644, vec![0u8; 12 << 20])], Comp::Plain)]);
    let (_root, reg) = serve(&built, "full");
    let image = format!("{}/full:1", reg.addr);
    let _disk = Tmpfs::mount(&store.dir.path().join("graph"), 8);
    let out = store.pull(&[&image]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("kept in reserve"), "stopped by the reserve, not by ENOSPC: {err}");
    assert!(store.layers().is_empty());
    assert_eq!(store.staging_left(), 0);
}

/// Such a manifest, once stored, makes `podman images` fail for every
/// image in the store.
#[test]
fn a_config_that_is_not_an_image_config_is_never_stored() {
    let Some(store) = Store::new("a_config_that_is_not_an_image_config_is_never_stored") else { return };
    let reg = FixtureRegistry::fixtures(Auth::None);
    *reg.faults.config_media_type.lock().unwrap() = Some("application/vnd.oci.image.layer.v1.tar".into());
    let out = store.pull(&["--arch", "amd64", &format!("{}/single:1", reg.addr)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not an image config"), "{err}");
    assert!(!store.dir.path().join("graph/overlay-images/images.json").exists());
    assert!(store.layers().is_empty());
}

#[test]
fn a_blob_that_stalls_is_resumed() {
    let Some(store) = Store::new("a_blob_that_stalls_is_resumed") else { return };
    let reg = FixtureRegistry::fixtures(Auth::None);
    let image = format!("{}/multi:1", reg.addr);
    *reg.faults.cut_only.lock().unwrap() = layer_digests(&image, "arm64");
    reg.faults.drip.store(1, Ordering::SeqCst);
    let mut c = store.command(&["--arch", "arm64", &image]);
    c.env("MTBX_LOW_SPEED_LIMIT", "1024").env("MTBX_LOW_SPEED_TIME", "1");
    let out = output_within(&mut c, Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = reg.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.contains("range=bytes=")), "resumed with Range: {log:?}");
    assert_eq!(store.layers().len(), 2);
}

/// A body that ends cleanly but short is what the registry has: trying
/// again cannot help, and it is not the network's fault.
#[test]
fn a_blob_shorter_than_its_descriptor_is_a_bad_response() {
    let Some(store) = Store::new("a_blob_shorter_than_its_descriptor_is_a_bad_response") else { return };
    let reg = FixtureRegistry::fixtures(Auth::None);
    let image = format!("{}/multi:1", reg.addr);
    *reg.faults.cut_only.lock().unwrap() = vec![layer_digests(&image, "arm64")[1].clone()];
    reg.faults.short_blobs.store(true, Ordering::SeqCst);
    let out = output_within(&mut store.command(&["--arch", "arm64", &image]), Duration::from_secs(60));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad response"), "{err}");
    assert!(!store.dir.path().join("graph/overlay-images/images.json").exists());
}
