//! stop, rm and rmi: which containers and images a command means, and
//! their removal with the readiness stamps that go with them.

use super::*;

impl Toolbox {
    /// The containers `rm` means: all, the names given (each must be
    /// mtbx's), or the selector's.
    pub fn to_remove(&self, names: &[String], all: bool, sel: &SelectFlags) -> Result<Vec<String>, OpsError> {
        let ours = self.containers()?;
        if all {
            return Ok(ours.iter().map(|c| c.name().to_string()).collect());
        }
        if names.is_empty() {
            return Ok(vec![self.find(None, sel)?.name().to_string()]);
        }
        for n in names {
            if !ours.iter().any(|c| c.name() == n) {
                return Err(OpsError::NoContainer { name: n.clone(), create: format!("mtbx create {n}") });
            }
        }
        Ok(names.to_vec())
    }

    /// The containers `stop` means: every running one (of `arch`, when
    /// given) with `all`, else the names given, each of which must be
    /// mtbx's.
    pub fn to_stop(
        &self,
        names: &[String],
        all: bool,
        arch: Option<&'static Arch>,
    ) -> Result<Vec<String>, OpsError> {
        let ours = self.containers()?;
        if all {
            let of_arch = |c: &&ContainerInfo| arch_matches(c.label(LABEL_ARCH).unwrap_or(""), arch);
            return Ok(ours
                .iter()
                .filter(|c| c.state == "running")
                .filter(of_arch)
                .map(|c| c.name().to_string())
                .collect());
        }
        for n in names {
            if !ours.iter().any(|c| c.name() == n) {
                if self.podman.container_exists(n) {
                    return Err(OpsError::NotToolbox(n.clone()));
                }
                return Err(OpsError::NoContainer { name: n.clone(), create: format!("mtbx create {n}") });
            }
        }
        Ok(names.to_vec())
    }

    /// Remove a container and its readiness stamp.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), OpsError> {
        // The name podman knows it by (the one given may be an id) and the
        // stamp directory its label records.
        let found = self.podman.inspect(Object::Container, name).ok();
        let (known, stamp) = match &found {
            Some(c) => (c.name.as_str(), c.labels.get(LABEL_STAMP_DIR).map(String::as_str)),
            None => (name, None),
        };
        self.remove_forgetting(Object::Container, name, known, stamp, force).map_err(|source| {
            OpsError::Remove {
                hint: match (&source, force) {
                    (EngineError::InUse { .. }, false) => " (a running container needs --force)",
                    _ => "",
                },
                source,
            }
        })
    }

    /// Remove one Toolbx container or image named by name or id, as
    /// Toolbx's `rm NAME`/`rmi NAME` do: only one carrying Toolbx's label;
    /// a container's stamp directory goes with it.
    pub fn remove_toolbx(&self, object: Object, name: &str, force: bool) -> Result<(), Removal> {
        let found = self.podman.inspect(object, name).map_err(Removal::Inspect)?;
        if !is_toolbx(Some(&found.labels)) {
            return Err(Removal::NotToolbx);
        }
        let known = if found.name.is_empty() { name } else { &found.name };
        let stamp = found.labels.get(LABEL_STAMP_DIR).map(String::as_str);
        Ok(self.remove_forgetting(object, name, known, stamp, force)?)
    }

    /// Remove a container Toolbx's listing showed (`rm --all`): no label
    /// check and no inspect, the listing has both; its stamp goes with it.
    pub fn remove_listed_container(&self, c: &ContainerInfo, force: bool) -> Result<(), Removal> {
        Ok(self.remove_forgetting(Object::Container, &c.id, c.name(), c.label(LABEL_STAMP_DIR), force)?)
    }

    /// Remove an image Toolbx's listing showed (`rmi --all`).
    pub fn remove_listed_image(&self, id: &str, force: bool) -> Result<(), Removal> {
        Ok(self.remove_forgetting(Object::Image, id, id, None, force)?)
    }

    /// The one removal: podman's, then, for a container, the readiness
    /// stamp directory it had (`stamp`, its label, else where this
    /// environment puts `known`'s, the name podman knew it by).
    fn remove_forgetting(
        &self,
        object: Object,
        id: &str,
        known: &str,
        stamp: Option<&str>,
        force: bool,
    ) -> Result<(), EngineError> {
        self.podman.remove(object, &[id], force)?;
        if object == Object::Container {
            crate::toolbox::forget_stamp_dir(known, stamp);
        }
        Ok(())
    }

    /// Remove images: those named, or with `all` every one `list` shows;
    /// with `arch`, only those of that architecture. podman's report.
    /// `all` with nothing to remove succeeds, as in Toolbx.
    pub fn remove_images(
        &self,
        images: &[String],
        all: bool,
        arch: Option<&'static Arch>,
        force: bool,
    ) -> Result<String, OpsError> {
        let listed = || -> Result<Vec<ImageRow>, OpsError> { Ok(self.listing()?.images) };
        let images: Vec<String> = match (all, arch) {
            (true, _) => {
                listed()?.into_iter().filter(|i| arch_matches(&i.arch, arch)).map(|i| i.id).collect()
            }
            (false, None) => images.to_vec(),
            (false, Some(_)) => {
                let rows = listed()?;
                images
                    .iter()
                    .filter(|n| {
                        rows.iter()
                            .find(|r| &&r.name == n || r.id.starts_with(n.as_str()))
                            .is_some_and(|r| arch_matches(&r.arch, arch))
                    })
                    .cloned()
                    .collect()
            }
        };
        if images.is_empty() {
            return if all || arch.is_some() { Ok(String::new()) } else { Err(OpsError::NothingToRemove) };
        }
        if force {
            // podman rmi --force removes the containers that use an image;
            // removing mtbx's first takes their stamp directories along.
            let uses = |c: &ContainerInfo| {
                images
                    .iter()
                    .any(|i| *i == c.image || (!c.image_id.is_empty() && c.image_id.starts_with(i.as_str())))
            };
            for c in self.containers()?.iter().filter(|c| uses(c)) {
                self.remove(c.name(), true)?;
            }
        }
        let names: Vec<&str> = images.iter().map(String::as_str).collect();
        Ok(self.podman.remove(Object::Image, &names, force)?)
    }
}

impl From<EngineError> for Removal {
    fn from(e: EngineError) -> Removal {
        match e {
            EngineError::NotFound { .. } => Removal::NotFound,
            EngineError::InUse { .. } => Removal::InUse,
            e => Removal::Failed(e),
        }
    }
}

/// Whether an image's architecture (as `list` shows it) is `arch`'s.
fn arch_matches(shown: &str, arch: Option<&'static Arch>) -> bool {
    match arch {
        None => true,
        Some(a) => Arch::parse(shown).is_ok_and(|s| std::ptr::eq(s, a)),
    }
}

/// Why Toolbx's `rm NAME`/`rmi NAME` left one alone; each front end words
/// it (Toolbx goes on with the next name).
#[derive(Debug, thiserror::Error)]
pub enum Removal {
    /// podman cannot inspect it (no such one, or podman failed).
    #[error("cannot inspect it")]
    Inspect(#[source] EngineError),
    /// It does not carry Toolbx's label.
    #[error("it is not a Toolbx container or image")]
    NotToolbx,
    /// podman said there is no such one.
    #[error("not found")]
    NotFound,
    /// A running container, or an image in use.
    #[error("in use")]
    InUse,
    /// podman failed otherwise.
    #[error("podman failed")]
    Failed(#[source] EngineError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rmi --arch` matches the ARCH column as list shows it (`arm/v7`,
    /// `arm64`), by any name of the architecture.
    #[test]
    fn arch_filter_reads_the_list_column() {
        let arm64 = Arch::parse("aarch64").unwrap();
        let armv7 = Arch::parse("armhf").unwrap();
        assert!(arch_matches("arm64", Some(arm64)));
        assert!(arch_matches("arm/v7", Some(armv7)));
        assert!(!arch_matches("arm/v7", Some(arm64)));
        assert!(!arch_matches("amd64", Some(arm64)));
        assert!(arch_matches("anything", None));
    }
}
