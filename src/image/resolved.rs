//! What a source (the registry client or skopeo's proxy) resolves an
//! image to, and the image-level failures both can find. It sits below
//! [`crate::image::inspect`] and [`crate::image::proxy`] so that neither
//! needs the other: each produces an [`Inspection`] and [`ImageError`]s,
//! and pull consumes them whatever the source.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Classify, Kind};
use crate::image::manifest::{
    Descriptor, ImageConfig, IndexEntry, ManifestError, Platform, DOCKER_CONFIG, OCI_CONFIG,
};
use crate::image::platform::Wanted;
use crate::image::reference::ImageRef;
use crate::text::{escaped, quoted};

/// The image itself is not what was asked for, or is broken; the same
/// whichever source found it.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The index has no entry for the platform.
    #[error("{image} has no {wanted} image; it offers {}", offered.iter().map(|o| escaped(o)).collect::<Vec<_>>().join(", "))]
    NoPlatform {
        /// The image.
        image: String,
        /// What was asked for.
        wanted: String,
        /// What the index offers.
        offered: Vec<String>,
    },
    /// A single-arch image of another platform.
    #[error("image {image} is {} only; asked for {wanted}", escaped(.have))]
    SingleArchMismatch {
        /// The image.
        image: String,
        /// Its platform.
        have: String,
        /// What was asked for.
        wanted: String,
    },
    /// The index entry and the config disagree.
    #[error("image {image} is broken: its index entry says {} but its config says {}", escaped(.entry), escaped(.config))]
    Contradiction {
        /// The image.
        image: String,
        /// The index entry's platform.
        entry: String,
        /// The config's platform.
        config: String,
    },
    /// A manifest whose config is not an image config (an artifact, or a
    /// registry's mistake).
    #[error("{image} is not a container image: its config's media type {} is not an image config ({OCI_CONFIG} or {DOCKER_CONFIG})", quoted(.media_type))]
    NotAnImage {
        /// The image.
        image: String,
        /// The config descriptor's media type.
        media_type: String,
    },
    /// A manifest or config that does not parse.
    #[error("{image}")]
    Malformed {
        /// The image.
        image: String,
        /// What the parser said.
        #[source]
        source: ManifestError,
    },
    /// A manifest that is not what it should be.
    #[error("{image}: {why}")]
    BadManifest {
        /// The image.
        image: String,
        /// What is wrong.
        why: String,
    },
}

impl Classify for ImageError {
    fn kind(&self) -> Kind {
        match self {
            ImageError::NoPlatform { .. } | ImageError::SingleArchMismatch { .. } => Kind::NotFound,
            ImageError::Contradiction { .. }
            | ImageError::BadManifest { .. }
            | ImageError::Malformed { .. }
            | ImageError::NotAnImage { .. } => Kind::Failed,
        }
    }
}

/// Refuse a config that is not an image config, before anything of the
/// image is fetched or stored.
pub(crate) fn check_config(image: &str, config: &Descriptor) -> Result<(), ImageError> {
    if crate::image::manifest::is_image_config(&config.media_type) {
        return Ok(());
    }
    Err(ImageError::NotAnImage { image: image.to_string(), media_type: config.media_type.clone() })
}

/// The config must agree with the index entry it was reached by
/// (`entry`); a single-platform image (no entry) must be of the platform
/// asked for: refused rather than silently handed back, as skopeo
/// --override-arch would.
pub(crate) fn check_platform(
    image: &str,
    entry: Option<&Platform>,
    config: &ImageConfig,
    wanted: &Wanted,
) -> Result<(), ImageError> {
    let config_platform = config.platform();
    match entry {
        Some(p) if p.architecture != config.architecture || (!config.os.is_empty() && p.os != config.os) => {
            Err(ImageError::Contradiction {
                image: image.to_string(),
                entry: p.display(),
                config: config_platform.display(),
            })
        }
        Some(_) => Ok(()),
        None if !wanted.matches_config(&config.architecture, &config.os, config.variant.as_deref()) => {
            Err(ImageError::SingleArchMismatch {
                image: image.to_string(),
                have: config_platform.display(),
                wanted: wanted.display(),
            })
        }
        None => Ok(()),
    }
}

/// Everything a source learned about one image, resolved for one platform.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The resolved reference (after registries.conf rewrites).
    pub image: ImageRef,
    /// The top-level manifest bytes as served.
    pub top_bytes: Vec<u8>,
    /// Their digest.
    pub top_digest: String,
    /// The index, if the reference named one.
    pub index: Option<Vec<IndexEntry>>,
    /// The selected image manifest's digest.
    pub manifest_digest: String,
    /// Its bytes as served (the same as `top_bytes` without an index).
    pub manifest_bytes: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// Its config descriptor.
    pub config_desc: Descriptor,
    /// Its layers.
    pub layers: Vec<Descriptor>,
    /// The config bytes as served.
    pub config_bytes: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfig,
    /// Tags, when asked for.
    pub tags: Option<Vec<String>>,
}

/// The platforms of index entries, in index order (entries without one,
/// such as some artifacts, are left out).
pub(crate) fn platforms_of(entries: &[IndexEntry]) -> Vec<String> {
    entries.iter().filter_map(|e| e.platform.as_ref().map(|p| p.display())).collect()
}

/// One layer, as skopeo's LayersData shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerData {
    /// Media type.
    #[serde(rename = "MIMEType")]
    pub mime_type: String,
    /// Compressed digest.
    pub digest: String,
    /// Compressed size.
    pub size: u64,
    /// Annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The JSON document of `inspect --format json`: skopeo's fields, in
/// skopeo's order, then mtbx's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    /// registry/repository, without tag.
    pub name: String,
    /// Digest of what the reference names (the index, if it is one).
    pub digest: String,
    /// Tags of the repository (empty unless asked for).
    pub repo_tags: Vec<String>,
    /// Creation time from the config.
    pub created: Option<String>,
    /// Docker version from the config ("" when none).
    pub docker_version: String,
    /// Labels from the config.
    pub labels: Option<BTreeMap<String, String>>,
    /// Architecture from the config.
    pub architecture: String,
    /// Variant from the config, when it states one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS from the config.
    pub os: String,
    /// Compressed layer digests.
    pub layers: Vec<String>,
    /// Layer details.
    pub layers_data: Vec<LayerData>,
    /// Environment from the config.
    pub env: Option<Vec<String>>,
    /// Digest of the index, when the reference named one.
    pub index_digest: Option<String>,
    /// Digest of the selected image manifest.
    pub manifest_digest: String,
    /// Its media type.
    pub media_type: String,
    /// The platform selected, `os/arch[/variant]`.
    pub platform: String,
    /// Every platform the index offers (just this one for a single image).
    pub platforms: Vec<String>,
    /// Sum of the compressed layer sizes.
    pub compressed_size: u64,
    /// The same, for people.
    pub compressed_size_human: String,
}

impl Inspection {
    /// Every platform on offer, in index order.
    pub fn platforms(&self) -> Vec<String> {
        match &self.index {
            Some(entries) => platforms_of(entries),
            None => vec![self.selected_platform()],
        }
    }

    /// The selected platform as the config states it.
    pub fn selected_platform(&self) -> String {
        self.config.platform().display()
    }

    /// Total compressed size of the layers.
    pub fn compressed_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// The JSON report.
    pub fn report(&self) -> Report {
        let run = self.config.config.clone().unwrap_or_default();
        let compressed_size = self.compressed_size();
        Report {
            name: self.image.name(),
            digest: self.top_digest.clone(),
            repo_tags: self.tags.clone().unwrap_or_default(),
            created: self.config.created.clone(),
            docker_version: self.config.docker_version.clone().unwrap_or_default(),
            labels: run.labels,
            architecture: self.config.architecture.clone(),
            variant: self.config.variant.clone().filter(|v| !v.is_empty()),
            os: self.config.os.clone(),
            layers: self.layers.iter().map(|l| l.digest.clone()).collect(),
            layers_data: self
                .layers
                .iter()
                .map(|l| LayerData {
                    mime_type: l.media_type.clone(),
                    digest: l.digest.clone(),
                    size: l.size,
                    annotations: l.annotations.clone(),
                })
                .collect(),
            env: run.env,
            index_digest: self.index.as_ref().map(|_| self.top_digest.clone()),
            manifest_digest: self.manifest_digest.clone(),
            media_type: self.media_type.clone(),
            platform: self.selected_platform(),
            platforms: self.platforms(),
            compressed_size,
            compressed_size_human: human_size(compressed_size),
        }
    }
}

/// Sizes as podman prints them: decimal units, three significant digits.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string() + " " + UNITS[u]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1000), "1 kB");
        assert_eq!(human_size(1_234_567), "1.235 MB");
        assert_eq!(human_size(2_000_000_000), "2 GB");
    }
}
