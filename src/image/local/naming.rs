//! Local references (`oci:PATH[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker-archive:FILE[:REF]`) and the names their images are stored
//! under, as podman names them.

use std::path::{Path, PathBuf};

use super::files::Files;
use super::{docker, oci, LocalError};
use crate::image::reference::{self, ImageRef, Parsed};

/// Which kind of file an image is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// An OCI image layout directory.
    Oci,
    /// An OCI image layout in a tar archive.
    OciArchive,
    /// A `docker save` archive.
    DockerArchive,
}

impl Transport {
    /// Its prefix in references.
    pub fn prefix(self) -> &'static str {
        match self {
            Transport::Oci => "oci:",
            Transport::OciArchive => "oci-archive:",
            Transport::DockerArchive => "docker-archive:",
        }
    }
}

/// A reference to an image in files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRef {
    /// The kind of file.
    pub transport: Transport,
    /// The directory or archive.
    pub path: PathBuf,
    /// `:TAG` (oci) or `:REF` (docker-archive), as given.
    pub tag: Option<String>,
}

/// The local reference `reference` names, if it names one: `None` for
/// anything else (a registry's image). The path and the tag part split at
/// the first `:`, as containers/image splits them.
pub fn parse(reference: &str) -> Option<Result<LocalRef, LocalError>> {
    let (transport, rest) = [Transport::Oci, Transport::OciArchive, Transport::DockerArchive]
        .into_iter()
        .find_map(|t| reference.strip_prefix(t.prefix()).map(|rest| (t, rest)))?;
    let (path, tag) = match rest.split_once(':') {
        Some((p, t)) => (p, Some(t.to_string())),
        None => (rest, None),
    };
    if path.is_empty() {
        return Some(Err(LocalError::BadReference(format!(
            "{}: no path; write {}PATH[:TAG]",
            crate::text::quoted(reference),
            transport.prefix()
        ))));
    }
    if tag.as_deref() == Some("") {
        return Some(Err(LocalError::BadReference(format!(
            "{}: empty tag after ':'",
            crate::text::quoted(reference)
        ))));
    }
    Some(Ok(LocalRef { transport, path: PathBuf::from(path), tag }))
}

/// A name as Docker normalizes it (to match docker-archive's RepoTags
/// against REF, as containers/image does): `app` is
/// `docker.io/library/app:latest`.
pub(super) fn docker_named(r: &str) -> Result<ImageRef, LocalError> {
    let bad = |e: reference::RefError| LocalError::BadReference(e.to_string());
    let mut image = match reference::parse(r).map_err(bad)? {
        Parsed::Qualified(i) => i,
        Parsed::Short { path, tag, digest } => ImageRef {
            registry: reference::DOCKER_HUB.into(),
            repository: if path.contains('/') { path } else { format!("library/{path}") },
            tag,
            digest,
        },
    };
    if image.tag.is_none() && image.digest.is_none() {
        image.tag = Some("latest".into());
    }
    Ok(image)
}

/// A RepoTags entry as podman names the image it loads: a short name goes
/// under `localhost/` (podman 4.3 stores `me/app:2` as
/// `localhost/me/app:2`, docs/podman.md).
fn podman_named(r: &str) -> Result<ImageRef, LocalError> {
    let bad = |e: reference::RefError| LocalError::BadReference(e.to_string());
    let mut image = match reference::parse(r).map_err(bad)? {
        Parsed::Qualified(i) => i,
        Parsed::Short { path, tag, digest } => {
            ImageRef { registry: "localhost".into(), repository: path, tag, digest }
        }
    };
    if image.tag.is_none() && image.digest.is_none() {
        image.tag = Some("latest".into());
    }
    Ok(image)
}

/// The name an image of an OCI layout gets: `localhost/<base name of the
/// path>:<TAG>`, or the TAG itself when it is a whole qualified reference
/// (as buildah writes them). podman 4.3 names such a pull `localhost/<TAG>:latest`,
/// which makes every layout tagged `latest` the same image; see
/// docs/podman.md, "Names of local images".
fn oci_name(path: &Path, tag: Option<&str>) -> Result<ImageRef, LocalError> {
    if let Some(t) = tag.filter(|t| !reference::valid_tag(t)) {
        return match reference::parse(t) {
            Ok(Parsed::Qualified(i)) => Ok(i),
            _ => Err(LocalError::BadReference(format!(
                "{} is neither a tag nor a qualified image name; name the image by its tag",
                crate::text::quoted(t)
            ))),
        };
    }
    Ok(ImageRef { tag: Some(tag.unwrap_or("latest").into()), ..base_name(path)? })
}

/// `localhost/<base name>`, lowercased, `.tar` dropped.
fn base_name(path: &Path) -> Result<ImageRef, LocalError> {
    let base = path.file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_default();
    let base = base.strip_suffix(".tar").unwrap_or(&base).to_ascii_lowercase();
    let repo: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    if repo.is_empty() {
        return Err(LocalError::BadReference(format!(
            "cannot name an image after {}",
            crate::text::quoted_path(path)
        )));
    }
    Ok(ImageRef { registry: "localhost".into(), repository: repo, tag: None, digest: None })
}

/// The name the image of `r` is stored under (before pull appends a
/// foreign architecture): see [`oci_name`]; a docker-archive's image by
/// its first RepoTags entry as podman names it ([`podman_named`]), else by
/// REF, else after the file. Reads the layout's index (when the reference
/// has no tag) or the archive's manifest.json.
pub fn name(r: &LocalRef) -> Result<ImageRef, LocalError> {
    match (r.transport, &r.tag) {
        (Transport::Oci | Transport::OciArchive, Some(t)) => oci_name(&r.path, Some(t)),
        (Transport::Oci | Transport::OciArchive, None) => {
            let files = r.files()?;
            let entries = oci::read_index(&files)?;
            let tag = match entries.as_slice() {
                [one] => oci::ref_name(one),
                _ => None,
            };
            oci_name(&r.path, tag.as_deref())
        }
        (Transport::DockerArchive, _) => {
            let files = r.files()?;
            let images = docker::read_manifest(&files)?;
            let image = docker::chosen(r, &images)?;
            match (image.repo_tags.as_ref().and_then(|t| t.first()), &r.tag) {
                (Some(t), _) | (None, Some(t)) => podman_named(t),
                (None, None) => Ok(ImageRef { tag: Some("latest".into()), ..base_name(&r.path)? }),
            }
        }
    }
}

impl LocalRef {
    pub(super) fn files(&self) -> Result<Files, LocalError> {
        match self.transport {
            Transport::Oci => Files::dir(&self.path),
            Transport::OciArchive | Transport::DockerArchive => Files::tar(&self.path),
        }
    }

    /// The image as messages name it (`oci:PATH`), the path escaped.
    pub(super) fn shown(&self) -> String {
        format!("{}{}", self.transport.prefix(), super::shown_path(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(r: &str) -> String {
        name(&parse(r).unwrap().unwrap()).unwrap().to_string()
    }

    #[test]
    fn references_split_at_the_first_colon_and_are_named() {
        let r = parse("oci:/srv/images/Rich_Layout:1").unwrap().unwrap();
        assert_eq!(
            (r.transport, r.path.to_str().unwrap(), r.tag.as_deref()),
            (Transport::Oci, "/srv/images/Rich_Layout", Some("1"))
        );
        assert_eq!(named("oci:/srv/images/Rich_Layout:1"), "localhost/rich-layout:1");
        assert_eq!(named("oci-archive:/tmp/img.tar:2"), "localhost/img:2");
        assert_eq!(named("oci:/x/y:example.com/app:3"), "example.com/app:3");
        assert_eq!(podman_named("me/app:3").unwrap().to_string(), "localhost/me/app:3");
        assert_eq!(podman_named("quay.io/me/app").unwrap().to_string(), "quay.io/me/app:latest");
        assert_eq!(docker_named("app").unwrap().to_string(), "docker.io/library/app:latest");
        assert!(parse("docker://x").is_none());
        assert!(parse("quay.io/x").is_none());
        assert!(matches!(parse("oci:"), Some(Err(LocalError::BadReference(_)))));
        assert!(name(&parse("oci:/x:not/a:ref:").unwrap().unwrap()).is_err());
    }
}
