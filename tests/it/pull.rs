//! `mtbx pull` end to end against the in-process registry, for what a real
//! server cannot be told to do: connections cut in the middle of a blob,
//! corrupt blobs, 503s. The store is a temporary one of the test's own
//! (no podman needed here; vendor-tests/pull.rs has podman read it).
//! Needs root, as a rootful store does; elsewhere the tests print SKIPPED.

use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::registry::{output_within, Auth, FixtureRegistry};
use common::{mtbx, skip, text};
use serde_json::Value;

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new(test: &str) -> Option<Store> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            skip(test, "needs root: a rootful image store");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        Some(Store { dir })
    }

    fn pull(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut all = vec!["pull", "-y", "--tls-verify=false"];
        all.extend_from_slice(args);
        let mut c = mtbx(&all);
        c.env("CONTAINERS_STORAGE_CONF", self.dir.path().join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
        c
    }

    fn layers(&self) -> Vec<Value> {
        std::fs::read(self.dir.path().join("graph/overlay-layers/layers.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn staging_left(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("graph/overlay/mtbx-staging")).map(|d| d.count()).unwrap_or(0)
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
    std::fs::write(store.dir.path().join("storage.conf"), "[storage]\ndriver = \"btrfs\"\n").unwrap();
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
            .env("CONTAINERS_STORAGE_CONF", store.dir.path().join("storage.conf"))
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
