//! Which container, image and architecture a command means: one pipeline
//! for `mtbx` and `toolbox` alike, so that the same host, toolbox.conf and
//! flags name the same container under either name.
//!
//! 1. Toolbx's rules ([`naming::resolve`]): the host's os-release and
//!    toolbox.conf give the default distribution, release and image; the
//!    container's name comes from the image.
//! 2. The image as a full reference: images in files as pull names them,
//!    a distribution's images under its registry, other short names as the
//!    front end says ([`ShortNames`]).
//! 3. The architecture: `--arch`, else toolbox.conf's `arch`, else the
//!    tag's (`42-aarch64`), else the host's; a tag naming another one is
//!    refused. An image already in the store settles it: its config is the
//!    truth, whatever its name says, and an `--arch` contradicting it is
//!    refused.
//! 4. A foreign default container gets the architecture on its name
//!    (`debian-toolbox-12-arm64`), unless its tag already names one.

use crate::emu::arch::{Arch, UnknownArch};
use crate::error::{Classify, Kind};
use crate::image::platform::{self, ArchConflict};
use crate::image::reference::{self, ImageRef, Parsed, RefError};
use crate::image::registries_conf::{Registries, RegistriesError};
use crate::storage::{StorageConfig, Store};

use super::naming::{self, Defaults, ResolveError};

/// What a command line asks for; every field optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The container's name, when given.
    pub container: Option<&'a str>,
    /// `--distro`.
    pub distro: Option<&'a str>,
    /// `--image`.
    pub image: Option<&'a str>,
    /// `--release`.
    pub release: Option<&'a str>,
    /// `--arch`.
    pub arch: Option<&'a str>,
    /// `--variant`: a platform only a registry's index can tell apart.
    pub variant: Option<&'a str>,
}

/// Which container or image a command means, as the user said it.
#[derive(Debug, Clone, Default)]
pub struct SelectFlags {
    /// `--arch`.
    pub arch: Option<String>,
    /// `--distro`.
    pub distro: Option<String>,
    /// `--release`.
    pub release: Option<String>,
    /// `--image`.
    pub image: Option<String>,
}

impl SelectFlags {
    /// The selection request of these flags, for `container` when named.
    pub fn request<'a>(&'a self, container: Option<&'a str>, variant: Option<&'a str>) -> Request<'a> {
        Request {
            container,
            distro: self.distro.as_deref(),
            image: self.image.as_deref(),
            release: self.release.as_deref(),
            arch: self.arch.as_deref(),
            variant,
        }
    }
}

/// How an unqualified image name that no distribution claims is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortNames {
    /// Through registries.conf, as podman reads it (`mtbx`).
    Registries,
    /// As a local image, `localhost/NAME` (Toolbx's rule, `toolbox`).
    Local,
}

/// The container and image a command means.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The container's name.
    pub container: String,
    /// The image as the user or the defaults named it.
    pub image: String,
    /// Its full reference; None for an image named by its id in the store.
    pub parsed: Option<ImageRef>,
    /// The release (Toolbx's words mention it).
    pub release: String,
    /// The architecture.
    pub arch: &'static Arch,
    /// Whether that is the host's own platform.
    pub native: bool,
    /// The store's name (or id) of the image, when the store has it for
    /// this platform: create then needs no download.
    pub stored: Option<String>,
}

/// Why no container or image could be selected.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// Toolbx's rules refused a name, distribution or release.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// `--arch` (or toolbox.conf's `arch`) is not an architecture.
    #[error(transparent)]
    Arch(#[from] UnknownArch),
    /// The tag names another architecture than `--arch`.
    #[error(transparent)]
    Tag(#[from] ArchConflict),
    /// The image in the store is of another architecture than `--arch`.
    #[error("image {image} in the image store is {stored}, but --arch asks for {asked}: drop --arch, or name an image of {asked}")]
    Stored {
        /// The image as named.
        image: String,
        /// The platform its config records.
        stored: String,
        /// What was asked for.
        asked: String,
    },
    /// The image reference is malformed.
    #[error(transparent)]
    Reference(#[from] RefError),
    /// registries.conf cannot resolve a short name.
    #[error(transparent)]
    Registries(#[from] RegistriesError),
    /// An image in files (`oci:`, ...) that cannot be named.
    #[error(transparent)]
    Local(#[from] crate::image::local::LocalError),
    /// A short name that no distribution claims, read as a local image.
    #[error("image {0} not found in local storage and known registries")]
    NotFound(String),
}

impl Classify for SelectError {
    fn kind(&self) -> Kind {
        match self {
            SelectError::Registries(e) => e.kind(),
            SelectError::Local(e) => e.kind(),
            SelectError::Reference(e) => e.kind(),
            SelectError::NotFound(_) => Kind::NotFound,
            _ => Kind::BadInput,
        }
    }
}

/// An image in the store and the platform its config records.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// The name it was found by (or its id, when found by id).
    pub name: String,
    /// Its architecture, when the table knows the config's.
    pub arch: Option<&'static Arch>,
    /// The platform as its config spells it, for messages.
    pub platform: String,
}

/// Select the container and image `req` means over `d`.
pub fn select(d: &Defaults, req: &Request<'_>, short: ShortNames) -> Result<Selection, SelectError> {
    select_with(d, req, short, &|names| find_stored(names))
}

/// [`select`] with the store lookup given, so the rules are testable
/// without a store.
pub fn select_with(
    d: &Defaults,
    req: &Request<'_>,
    short: ShortNames,
    lookup: &dyn Fn(&[String]) -> Option<StoredImage>,
) -> Result<Selection, SelectError> {
    let r = naming::resolve(req.container, req.distro, req.image, req.release, d)?;
    let flag = req.arch.or(d.config.arch.as_deref()).map(Arch::parse).transpose()?;
    let settle = |found: StoredImage, bound: bool| -> Result<Option<(&'static Arch, String)>, SelectError> {
        match (found.arch, flag) {
            (Some(s), Some(f)) if !std::ptr::eq(s, f) => match bound {
                true => Err(SelectError::Stored {
                    image: r.image.clone(),
                    stored: found.platform,
                    asked: f.platform(),
                }),
                false => Ok(None),
            },
            (Some(s), _) => Ok(Some((s, found.name))),
            (None, _) => Ok(Some((flag.unwrap_or(Arch::host()), found.name))),
        }
    };
    // An image id names one image of the store, whatever registries.conf
    // would make of it as a short name.
    if naming::image_can_be_id(&r.image) && req.variant.is_none() {
        if let Some(found) = lookup(std::slice::from_ref(&r.image)) {
            if let Some((arch, name)) = settle(found, true)? {
                let container = with_arch(r.container, req, arch, None);
                let native = std::ptr::eq(arch, Arch::host());
                return Ok(Selection {
                    container,
                    image: r.image,
                    parsed: None,
                    release: r.release,
                    arch,
                    native,
                    stored: Some(name),
                });
            }
        }
    }
    let parsed = qualify(&r.image, &r.release, short)?;
    let mut arch = platform::choose_arch(&parsed, flag)?;
    // The store's image for this platform: by the name a pull gives it
    // (the architecture on the tag for a foreign one), or by the name as
    // given (an image built or pulled for its own platform).
    let mut stored = None;
    if req.variant.is_none() {
        let suffixed = crate::pull::store_name(&parsed, arch, std::ptr::eq(arch, Arch::host()), "");
        let plain = parsed.to_string();
        let mut names = vec![suffixed.clone()];
        if plain != suffixed {
            names.push(plain);
        }
        if let Some(found) = lookup(&names) {
            // Another platform under the plain name of a registry's image
            // means "pull the one asked for"; the name a pull of --arch
            // gives, a digest or a local image can only be what the store
            // holds.
            let bound = found.name == suffixed || parsed.registry == "localhost" || parsed.digest.is_some();
            if let Some((a, name)) = settle(found, bound)? {
                arch = a;
                stored = Some(name);
            }
        }
    }
    let native = std::ptr::eq(arch, Arch::host()) && req.variant.is_none();
    let container = with_arch(r.container, req, arch, Some(&parsed));
    Ok(Selection {
        container,
        image: r.image,
        parsed: Some(parsed),
        release: r.release,
        arch,
        native,
        stored,
    })
}

/// A default container of a foreign architecture carries it in its name,
/// unless the tag names it already (`42-aarch64`, or pull's `1-arm64`).
fn with_arch(
    mut container: String,
    req: &Request<'_>,
    arch: &'static Arch,
    image: Option<&ImageRef>,
) -> String {
    let suffix = format!("-{}", arch.short_name());
    let tagged = image.is_some_and(|i| platform::arch_from_tag(i).is_some());
    let native = std::ptr::eq(arch, Arch::host()) && req.variant.is_none();
    if req.container.is_none() && !native && !tagged && !container.ends_with(&suffix) {
        container.push_str(&suffix);
    }
    container
}

/// The full reference of an image as named by the user or the defaults.
fn qualify(image: &str, release: &str, short: ShortNames) -> Result<ImageRef, SelectError> {
    if let Some(local) = crate::image::local::parse(image) {
        return Ok(crate::image::local::name(&local?)?);
    }
    if let Some(full) = naming::fully_qualified(image, release) {
        if let Ok(Parsed::Qualified(r)) = reference::parse(&full) {
            return Ok(r);
        }
    }
    match reference::parse(image)? {
        Parsed::Qualified(r) => Ok(r),
        Parsed::Short { .. } => match short {
            ShortNames::Registries => Ok(Registries::load(None)?.resolve(image)?.0),
            ShortNames::Local => match reference::parse(&format!("localhost/{image}"))? {
                Parsed::Qualified(r) => Ok(r),
                Parsed::Short { .. } => Err(SelectError::NotFound(image.to_string())),
            },
        },
    }
}

/// The first of `names` the store holds (a name, or a unique prefix of an
/// image id by the rule the front ends use to tell an id,
/// [`naming::image_can_be_id`]), with its platform.
pub fn find_stored(names: &[String]) -> Option<StoredImage> {
    let store = Store::open(StorageConfig::for_current_user().ok()?).ok()?;
    let images = store.images().ok()?;
    names.iter().find_map(|n| {
        let id = n.strip_prefix("sha256:").unwrap_or(n);
        let by_id =
            |i: &&crate::storage::ImageInfo| naming::image_can_be_id(id) && i.record.id.starts_with(id);
        let found = images.iter().find(|i| i.record.names.contains(n)).or_else(|| {
            Some(images.iter().filter(by_id).collect::<Vec<_>>()).filter(|v| v.len() == 1)?.pop()
        })?;
        let c = found.parsed_config();
        let arch = Arch::from_oci(&c.architecture, c.variant.as_deref());
        let os = if c.os.is_empty() { "linux" } else { &c.os };
        let platform = match c.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{os}/{}/{v}", c.architecture),
            None => format!("{os}/{}", c.architecture),
        };
        Some(StoredImage { name: n.clone(), arch, platform })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use naming::{General, OsRelease};

    fn debian12(config: General) -> Defaults {
        Defaults::new(&OsRelease { id: Some("debian".into()), version_id: Some("12".into()) }, config)
    }

    fn none(_: &[String]) -> Option<StoredImage> {
        None
    }

    fn arm64() -> &'static Arch {
        Arch::parse("arm64").unwrap()
    }

    #[test]
    fn toolbox_conf_decides_image_arch_and_the_default_container_alike() {
        let d = debian12(General {
            image: Some("quay.io/toolbx-images/debian-toolbox:12".into()),
            arch: Some("arm64".into()),
            ..General::default()
        });
        for short in [ShortNames::Registries, ShortNames::Local] {
            let s = select_with(&d, &Request::default(), short, &none).unwrap();
            assert_eq!(s.parsed.as_ref().unwrap().to_string(), "quay.io/toolbx-images/debian-toolbox:12");
            assert!(std::ptr::eq(s.arch, arm64()));
            assert_eq!(s.container, "debian-toolbox-12-arm64");
        }
    }

    #[test]
    fn the_default_follows_the_host_and_rhel_is_a_distribution() {
        let s =
            select_with(&debian12(General::default()), &Request::default(), ShortNames::Registries, &none)
                .unwrap();
        assert_eq!(s.parsed.as_ref().unwrap().to_string(), "quay.io/toolbx-images/debian-toolbox:12");
        assert_eq!(s.container, "debian-toolbox-12");
        let req = Request { distro: Some("rhel"), release: Some("9.4"), ..Request::default() };
        let s = select_with(&debian12(General::default()), &req, ShortNames::Registries, &none).unwrap();
        assert_eq!(s.parsed.as_ref().unwrap().to_string(), "registry.access.redhat.com/ubi9/toolbox:9.4");
        assert_eq!(s.container, "rhel-toolbox-9.4");
    }

    #[test]
    fn the_store_is_the_truth_about_an_image() {
        let d = debian12(General::default());
        let stored = |names: &[String]| {
            names.iter().find(|n| n.ends_with(":multi-arm64")).map(|n| StoredImage {
                name: n.clone(),
                arch: Some(arm64()),
                platform: "linux/arm64/v8".into(),
            })
        };
        let req = Request { image: Some("127.0.0.1:5599/hb/bb:multi-arm64"), ..Request::default() };
        let s = select_with(&d, &req, ShortNames::Registries, &stored).unwrap();
        assert!(std::ptr::eq(s.arch, arm64()), "the config's arm64, not the host's");
        assert_eq!(s.stored.as_deref(), Some("127.0.0.1:5599/hb/bb:multi-arm64"));
        assert_eq!(
            s.container, "bb-multi-arm64",
            "a pulled foreign image's tag names its architecture already"
        );
        let req = Request { arch: Some("amd64"), ..req };
        let e = select_with(&d, &req, ShortNames::Registries, &stored).unwrap_err();
        assert!(matches!(e, SelectError::Stored { .. }), "{e}");
        assert_eq!(e.kind(), Kind::BadInput);
        // --arch arm64 of the plain name finds the pulled arm64 image.
        let req = Request { image: Some("127.0.0.1:5599/hb/bb:multi"), arch: Some("arm64"), ..req };
        let s = select_with(&d, &req, ShortNames::Registries, &stored).unwrap();
        assert_eq!(s.stored.as_deref(), Some("127.0.0.1:5599/hb/bb:multi-arm64"));
        assert_eq!(s.container, "bb-multi-arm64");
    }

    #[test]
    fn an_id_names_a_stored_image_whatever_registries_conf_says() {
        let d = debian12(General::default());
        let stored = |names: &[String]| {
            (names == ["872322d26017678d"]).then(|| StoredImage {
                name: names[0].clone(),
                arch: Some(arm64()),
                platform: "linux/arm64/v8".into(),
            })
        };
        let req = Request { image: Some("872322d26017678d"), container: Some("box"), ..Request::default() };
        let s = select_with(&d, &req, ShortNames::Registries, &stored).unwrap();
        assert!(std::ptr::eq(s.arch, arm64()) && s.parsed.is_none());
        assert_eq!(s.stored.as_deref(), Some("872322d26017678d"));
        let req = Request { arch: Some("s390x"), ..req };
        assert!(matches!(select_with(&d, &req, ShortNames::Local, &stored), Err(SelectError::Stored { .. })));
    }

    #[test]
    fn a_native_image_under_the_plain_name_does_not_stop_a_foreign_pull() {
        let d = debian12(General::default());
        let host = Arch::host();
        let stored = move |names: &[String]| {
            names.iter().find(|n| n.ends_with(":42")).map(|n| StoredImage {
                name: n.clone(),
                arch: Some(host),
                platform: host.platform(),
            })
        };
        let req = Request {
            image: Some("registry.fedoraproject.org/fedora-toolbox:42"),
            arch: Some("arm64"),
            ..Request::default()
        };
        let s = select_with(&d, &req, ShortNames::Registries, &stored).unwrap();
        assert!(std::ptr::eq(s.arch, arm64()));
        assert_eq!(s.stored, None, "the arm64 image is still to be pulled");
    }
}
