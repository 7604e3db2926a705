//! Where podman 4 and podman 5 write the same store differently: the
//! `metadata` of an unsigned image's record, and whether a layer's
//! tar-split ends in an empty segment (docs/podman.md). Both read either;
//! mtbx writes what the podman on this machine writes, so its store stays
//! byte for byte what that podman's own pull would have made.

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The installed podman's way, asked once in the background.
#[derive(Debug)]
pub struct PodmanStyle {
    probe: Mutex<Option<Child>>,
    major: OnceLock<Option<u32>>,
}

impl PodmanStyle {
    /// Start asking `podman --version`; a pull's downloads hide the cost,
    /// and the answer is read where it is first needed.
    pub fn probe() -> PodmanStyle {
        let mut podman = Command::new("podman");
        // In mtbx's rootless user namespace podman would take itself for
        // root and refuse the user's storage.conf ("runroot must be
        // set"), even for --version: tell it, as its own re-exec does,
        // that it runs in the rootless user's namespace already.
        if let Some(uid) = crate::sys::userns::rootless_uid() {
            podman.env("_CONTAINERS_USERNS_CONFIGURED", "1").env("_CONTAINERS_ROOTLESS_UID", uid.to_string());
        }
        let child = podman
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        PodmanStyle { probe: Mutex::new(child), major: OnceLock::new() }
    }

    /// podman's major version; None without podman or a readable answer.
    fn major(&self) -> Option<u32> {
        *self.major.get_or_init(|| {
            let child = self.probe.lock().ok()?.take()?;
            let out = child.wait_with_output().ok()?;
            let text = String::from_utf8(out.stdout).ok()?;
            text.split_whitespace().last()?.split('.').next()?.parse().ok()
        })
    }

    /// The metadata of an unsigned image pulled by `manifest_digest`.
    pub fn unsigned_metadata(&self, manifest_digest: &str) -> String {
        metadata_for(self.major(), manifest_digest)
    }

    /// Whether a layer's tar-split ends in an empty segment when nothing
    /// trails the archive (podman 4's tar-split; podman 5's does not).
    pub fn empty_end_segment(&self) -> bool {
        before_podman_5(self.major())
    }
}

fn before_podman_5(major: Option<u32>) -> bool {
    matches!(major, Some(m) if m < 5)
}

fn metadata_for(major: Option<u32>, manifest_digest: &str) -> String {
    match before_podman_5(major) {
        true => serde_json::json!({"signatures-sizes": {manifest_digest: []}}).to_string(),
        // podman 5, and without podman the current form.
        false => "{}".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_podman_gets_its_own_forms() {
        let d = "sha256:abc";
        assert_eq!(super::metadata_for(Some(4), d), r#"{"signatures-sizes":{"sha256:abc":[]}}"#);
        assert_eq!(super::metadata_for(Some(5), d), "{}");
        assert_eq!(super::metadata_for(None, d), "{}");
        assert!(super::before_podman_5(Some(4)) && !super::before_podman_5(Some(5)));
    }
}
