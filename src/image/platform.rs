//! Choosing the platform of an image: which entry of an index serves the
//! architecture asked for, following the OCI/containerd rules for variants,
//! and which architecture a toolbox tag like `42-aarch64` already names.

use crate::emu::arch::Arch;
use crate::error::{Classify, Kind};
use crate::image::manifest::IndexEntry;
use crate::image::reference::ImageRef;

/// The platform asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// OS (`linux` unless overridden).
    pub os: String,
    /// The table row of the architecture.
    pub arch: &'static Arch,
    /// A variant given with `--variant`, overriding the row's.
    pub variant: Option<String>,
}

impl Wanted {
    /// The variant being asked for, if any.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref().or(self.arch.variant)
    }

    /// `os/arch[/variant]`.
    pub fn display(&self) -> String {
        match self.variant() {
            Some(v) => format!("{}/{}/{v}", self.os, self.arch.oci),
            None => format!("{}/{}", self.os, self.arch.oci),
        }
    }

    /// Entry variants acceptable for this request, best first. `None`
    /// stands for an entry without a variant. An exact variant beats none;
    /// a missing variant means arm64's v8 and arm's v7; an ARMv7 machine
    /// also runs v6 and v5 images, an ARMv6 one v5 images.
    fn preferences(&self) -> Vec<Option<String>> {
        let v = self.variant().map(str::to_string);
        let is_default = self.variant.is_none() || self.variant.as_deref() == self.arch.variant;
        match (self.arch.oci, v.as_deref()) {
            ("arm", Some("v7")) => vec![Some("v7".into()), None, Some("v6".into()), Some("v5".into())],
            ("arm", Some("v6")) => vec![Some("v6".into()), Some("v5".into())],
            (_, Some(v)) if is_default => vec![Some(v.to_string()), None],
            (_, Some(v)) => vec![Some(v.to_string())],
            (_, None) => vec![None],
        }
    }

    /// Whether an image config's platform is this one (variants compared
    /// only when both sides state one).
    pub fn matches_config(&self, arch: &str, os: &str, variant: Option<&str>) -> bool {
        let os_ok = os.is_empty() || os == self.os;
        let variant_ok = match (variant.filter(|v| !v.is_empty()), self.variant()) {
            // The preferences start with the variant asked for.
            (Some(have), Some(_)) => self.preferences().contains(&Some(have.to_string())),
            _ => true,
        };
        arch == self.arch.oci && os_ok && variant_ok
    }
}

/// The entry of `entries` that serves `wanted`, if any; among equals, the
/// first in index order, as podman and skopeo choose.
pub fn select<'a>(entries: &'a [IndexEntry], wanted: &Wanted) -> Option<&'a IndexEntry> {
    let candidates: Vec<&IndexEntry> = entries
        .iter()
        .filter(|e| {
            e.platform.as_ref().is_some_and(|p| p.os == wanted.os && p.architecture == wanted.arch.oci)
        })
        .collect();
    for pref in wanted.preferences() {
        let hit = candidates.iter().find(|e| {
            let v = e.platform.as_ref().and_then(|p| p.variant.as_deref()).filter(|v| !v.is_empty());
            v == pref.as_deref()
        });
        if let Some(e) = hit {
            return Some(e);
        }
    }
    None
}

/// Repositories whose tags may end in an architecture: the toolbox images
/// of Fedora, Ubuntu, Arch, Debian, CentOS and RHEL all end in `toolbox`.
fn is_toolbox_repository(image: &ImageRef) -> bool {
    image.repository.rsplit('/').next().is_some_and(|last| last.ends_with("toolbox"))
}

/// The architecture a toolbox tag names (`fedora-toolbox:42-aarch64`),
/// if it names one.
pub fn arch_from_tag(image: &ImageRef) -> Option<&'static Arch> {
    if !is_toolbox_repository(image) {
        return None;
    }
    let tag = image.tag.as_deref()?;
    let (_, suffix) = tag.rsplit_once('-')?;
    Arch::parse(suffix).ok()
}

/// An `--arch` that contradicts the tag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the tag '{tag}' selects {tag_arch}, but --arch asks for {asked}; drop --arch or use a tag without an architecture")]
pub struct ArchConflict {
    /// The tag.
    pub tag: String,
    /// What the tag selects.
    pub tag_arch: String,
    /// What --arch said.
    pub asked: String,
}

/// The architecture to use: the tag's, the flag's (they must agree), or
/// the host's.
pub fn choose_arch(image: &ImageRef, flag: Option<&'static Arch>) -> Result<&'static Arch, ArchConflict> {
    match (arch_from_tag(image), flag) {
        (Some(t), Some(f)) if !std::ptr::eq(t, f) => Err(ArchConflict {
            tag: image.tag.clone().unwrap_or_default(),
            tag_arch: t.platform(),
            asked: f.platform(),
        }),
        (Some(t), _) => Ok(t),
        (None, Some(f)) => Ok(f),
        (None, None) => Ok(Arch::host()),
    }
}

/// The user's input (a reference, registries.conf, flags) is wrong.
impl Classify for ArchConflict {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::{Descriptor, Platform};
    use crate::image::reference::{parse, Parsed};

    fn entry(n: u8, arch: &str, variant: Option<&str>) -> IndexEntry {
        IndexEntry {
            descriptor: Descriptor {
                media_type: crate::image::manifest::OCI_MANIFEST.into(),
                digest: format!("sha256:{n:064x}"),
                size: 1,
                annotations: None,
            },
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(String::from),
                os_version: None,
            }),
        }
    }

    fn pick(entries: &[IndexEntry], arch: &str, variant: Option<&str>) -> Option<u8> {
        let w = Wanted {
            os: "linux".into(),
            arch: Arch::parse(arch).unwrap(),
            variant: variant.map(String::from),
        };
        select(entries, &w).map(|e| u8::from_str_radix(&e.descriptor.digest[69..], 16).unwrap())
    }

    #[test]
    fn arm64_without_variant_means_v8() {
        let e = [entry(1, "amd64", None), entry(2, "arm64", None)];
        assert_eq!(pick(&e, "arm64", None), Some(2));
        let e = [entry(1, "arm64", None), entry(2, "arm64", Some("v8"))];
        assert_eq!(pick(&e, "aarch64", None), Some(2), "an exact variant beats none");
    }

    #[test]
    fn arm_defaults_to_v7_and_falls_back_to_older_variants() {
        let e = [entry(5, "arm", Some("v5")), entry(6, "arm", Some("v6")), entry(7, "arm", Some("v7"))];
        assert_eq!(pick(&e, "arm", None), Some(7));
        assert_eq!(pick(&e, "arm/v6", None), Some(6));
        assert_eq!(pick(&e, "armel", None), Some(5));
        assert_eq!(pick(&e, "arm", Some("v6")), Some(6));
        let old = [entry(5, "arm", Some("v5")), entry(6, "arm", Some("v6"))];
        assert_eq!(pick(&old, "armhf", None), Some(6), "a v7 machine runs v6 images");
        assert_eq!(pick(&[entry(7, "arm", Some("v7"))], "arm/v6", None), None, "v6 cannot run v7");
        assert_eq!(pick(&[entry(9, "arm", None)], "arm", None), Some(9), "no variant means v7");
    }

    #[test]
    fn os_and_missing_platforms() {
        let mut win = entry(1, "amd64", None);
        win.platform.as_mut().unwrap().os = "windows".into();
        let mut attest = entry(2, "unknown", None);
        attest.platform.as_mut().unwrap().os = "unknown".into();
        let e = [win, attest, entry(3, "amd64", None)];
        assert_eq!(pick(&e, "amd64", None), Some(3));
        assert_eq!(pick(&e, "s390x", None), None);
    }

    #[test]
    fn first_of_equals_wins() {
        let e = [entry(1, "ppc64le", None), entry(2, "ppc64le", None)];
        assert_eq!(pick(&e, "ppc64le", None), Some(1));
    }

    fn img(s: &str) -> ImageRef {
        match parse(s).unwrap() {
            Parsed::Qualified(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn toolbox_tags_select_their_arch() {
        let r = img("registry.fedoraproject.org/fedora-toolbox:42-aarch64");
        assert_eq!(arch_from_tag(&r).unwrap().platform(), "arm64/v8");
        assert_eq!(choose_arch(&r, None).unwrap().platform(), "arm64/v8");
        assert_eq!(choose_arch(&r, Some(Arch::parse("arm64").unwrap())).unwrap().platform(), "arm64/v8");
        let e = choose_arch(&r, Some(Arch::parse("ppc64le").unwrap())).unwrap_err();
        assert!(e.to_string().contains("selects arm64/v8, but --arch asks for ppc64le"), "{e}");
        // Not a toolbox image, or no arch in the tag: the flag or the host.
        assert!(arch_from_tag(&img("docker.io/library/debian:12-arm64")).is_none());
        assert!(arch_from_tag(&img("registry.fedoraproject.org/fedora-toolbox:42")).is_none());
        assert_eq!(choose_arch(&img("quay.io/x/y:1"), None).unwrap(), Arch::host());
    }
}
