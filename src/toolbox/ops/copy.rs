//! What copies a toolbox: `clone` (a new container from a commit of one,
//! with the same architecture, CPU model, home, volumes, variables and
//! devices) and `snapshot` (a commit into the store, and an OCI archive
//! of it for another machine).
//!
//! A commit carries the container's labels and variables into the image,
//! and a container made from that image inherits them; so the commit
//! empties the labels that say what one container was given (its CPU
//! model, auto-stop, and [`BoxOptions`]'), and create writes its own.

use super::*;
use crate::toolbox::options::{OptionsError, LABELS};

/// A container committed to an image in the store.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The image's name (`localhost/NAME-snapshot:TAG`).
    pub image: String,
    /// Its id.
    pub id: String,
}

/// The image a snapshot of container `name` is stored as: podman's local
/// namespace, the name lowercased (repositories must be) with separators
/// a repository allows, and `-snapshot`; `tag` as given, which must be
/// one podman takes.
pub fn snapshot_image(name: &str, tag: &str) -> Result<String, OptionsError> {
    let valid_tag = tag.len() <= 128
        && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid_tag {
        return Err(OptionsError::Bad(format!(
            "{} is not an image tag: use at most 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
            crate::text::quoted(tag)
        )));
    }
    let mut repo = String::new();
    let mut run = String::new();
    for c in name.chars().map(|c| c.to_ascii_lowercase()) {
        if "._-".contains(c) {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            let ok = run == "." || run == "_" || run == "__" || run.chars().all(|c| c == '-');
            repo.push_str(if ok { &run } else { "-" });
            run.clear();
        }
        repo.push(c);
    }
    Ok(format!("localhost/{repo}-snapshot:{tag}"))
}

/// The label changes of a commit: what one container was given, emptied.
fn commit_changes() -> Vec<String> {
    LABELS.iter().chain([&LABEL_CPU, &LABEL_AUTO_STOP]).map(|l| format!("LABEL {l}=")).collect()
}

impl Toolbox {
    /// Commit mtbx container `name` to `localhost/NAME-snapshot:TAG`
    /// (`latest` when no tag is given, as `podman commit` tags).
    pub fn snapshot(&self, name: &str, tag: Option<&str>) -> Result<Snapshot, OpsError> {
        let c = self.find(Some(name), &SelectFlags::default())?;
        let image = snapshot_image(c.name(), tag.unwrap_or("latest"))?;
        let id = self.podman.commit(c.name(), &image, &commit_changes())?;
        Ok(Snapshot { image, id })
    }

    /// Write a stored image as an OCI archive, for `create --image
    /// oci-archive:FILE` on another machine.
    pub fn save_image(&self, image: &str, file: &Path) -> Result<(), OpsError> {
        Ok(self.podman.save_oci_archive(image, file)?)
    }

    /// Everything `clone NAME NEW` checks before it commits anything: NEW
    /// is a free, valid name; NAME is an mtbx container; its
    /// architecture, CPU model and options (from its labels) still work
    /// on this host. The plan's image is the commit to be made.
    pub fn plan_clone(&self, name: &str, new: &str) -> Result<CreatePlan, OpsError> {
        crate::toolbox::check_name(new)?;
        let c = self.find(Some(name), &SelectFlags::default())?;
        if self.podman.container_exists(new) {
            return Err(OpsError::Exists(new.to_string()));
        }
        let labels = c.labels.clone().unwrap_or_default();
        let label = |k: &str| labels.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let arch = Arch::parse(label(LABEL_ARCH).unwrap_or_default())
            .map_err(|e| OptionsError::Label { label: LABEL_ARCH, why: e.to_string() })?;
        let options = BoxOptions::from_labels(&labels)?;
        options.check(&HostUser::current()?.home)?;
        let native = std::ptr::eq(arch, Arch::host());
        let image = snapshot_image(c.name(), new)?;
        let target = Target { image: image.clone(), arch, native };
        let qemu = if native { None } else { Some(crate::toolbox::check_host(arch, None)?) };
        let cpu = cpu_for(&target, qemu.as_deref(), label(LABEL_CPU))?;
        Ok(CreatePlan {
            name: new.to_string(),
            target,
            qemu,
            cpu,
            mtbx: static_self()?,
            need: Need::Stored(image),
            auto_stop: label(LABEL_AUTO_STOP) == Some("true"),
            options,
            // What it was provisioned with, on record; the commit holds the
            // result and its marker, so the clone does not do it again.
            provision: crate::toolbox::provision::Provision::from_labels(Some(&labels))?,
            labels: Vec::new(),
        })
    }

    /// Commit `source` to the plan's image and create the clone from it;
    /// the image is removed again when the create fails.
    pub fn clone_box(&self, source: &str, plan: &CreatePlan) -> Result<Created, OpsError> {
        let image = &plan.target.image;
        self.podman.commit(source, image, &commit_changes())?;
        self.create(plan, image).inspect_err(|_| {
            let _ = self.podman.remove(Object::Image, &[image], false);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_named_as_podman_takes_them() {
        assert_eq!(snapshot_image("dev", "latest").unwrap(), "localhost/dev-snapshot:latest");
        assert_eq!(snapshot_image("My.Box_1", "v1.0").unwrap(), "localhost/my.box_1-snapshot:v1.0");
        assert_eq!(snapshot_image("a._b--c.", "T").unwrap(), "localhost/a-b--c-snapshot:T");
        assert_eq!(
            snapshot_image("debian-toolbox-12-arm64", "x").unwrap(),
            "localhost/debian-toolbox-12-arm64-snapshot:x"
        );
        for bad in ["", ".x", "-x", "a:b", "a/b", &"x".repeat(129)] {
            let e = snapshot_image("dev", bad).unwrap_err();
            assert_eq!(e.kind(), Kind::BadInput, "{bad}");
        }
        assert!(snapshot_image("dev", &"x".repeat(128)).is_ok());
    }

    #[test]
    fn a_commit_empties_what_one_container_was_given() {
        let c = commit_changes().join(" ");
        for l in [
            LABEL_CPU,
            LABEL_AUTO_STOP,
            crate::toolbox::options::LABEL_HOME,
            crate::toolbox::options::LABEL_ENV,
        ] {
            assert!(c.contains(&format!("LABEL {l}=")), "{c}");
        }
        assert!(
            !c.contains(LABEL_ARCH) && !c.contains(LABEL_TOOLBOX),
            "the image is still a toolbox image: {c}"
        );
    }
}
