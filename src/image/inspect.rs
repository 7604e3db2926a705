//! `inspect`: what an image is, for the architecture asked for, without
//! pulling it. The result carries the fields `skopeo inspect` prints and
//! what skopeo leaves out for cross-architecture users: the selected
//! platform, every platform on offer, the index digest and the size.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::emu::arch::Arch;
use crate::error::{Classify, Kind};
use crate::image::manifest::{Descriptor, ImageConfig, IndexEntry, Manifest, MAX_CONFIG_BYTES};
use crate::image::platform::{self, Wanted};
use crate::image::reference::ImageRef;
use crate::image::registries_conf::{Registries, RegistriesError};
use crate::image::registry::{Client, Options, RegistryError};

/// What to inspect.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The reference as typed.
    pub image: String,
    /// `--arch`, parsed.
    pub arch: Option<&'static Arch>,
    /// `--variant`.
    pub variant: Option<String>,
    /// `--os`.
    pub os: Option<String>,
    /// Fetch the repository's tags too (one request per page).
    pub tags: bool,
}

impl Request {
    /// The platform asked for, once the architecture is chosen (flag or
    /// tag): the OS defaults to linux.
    pub fn wanted(&self, arch: &'static Arch) -> Wanted {
        Wanted { os: self.os.clone().unwrap_or_else(|| "linux".into()), arch, variant: self.variant.clone() }
    }
}

/// Failures of inspect, each with a kind for the exit code.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Reference or registries.conf trouble.
    #[error(transparent)]
    Registries(#[from] RegistriesError),
    /// --arch contradicts the tag.
    #[error(transparent)]
    Conflict(#[from] platform::ArchConflict),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The index has no entry for the platform.
    #[error("{image} has no {wanted} image; it offers {}", offered.join(", "))]
    NoPlatform {
        /// The image.
        image: String,
        /// What was asked for.
        wanted: String,
        /// What the index offers.
        offered: Vec<String>,
    },
    /// A single-arch image of another platform.
    #[error("image {image} is {have} only; asked for {wanted}")]
    SingleArchMismatch {
        /// The image.
        image: String,
        /// Its platform.
        have: String,
        /// What was asked for.
        wanted: String,
    },
    /// The index entry and the config disagree.
    #[error("image {image} is broken: its index entry says {entry} but its config says {config}")]
    Contradiction {
        /// The image.
        image: String,
        /// The index entry's platform.
        entry: String,
        /// The config's platform.
        config: String,
    },
    /// The skopeo proxy source failed.
    #[error(transparent)]
    Proxy(#[from] crate::image::proxy::ProxyError),
    /// A manifest that does not parse or is not what it should be.
    #[error("{image}: {why}")]
    BadManifest {
        /// The image.
        image: String,
        /// What is wrong.
        why: String,
    },
}

impl Classify for InspectError {
    fn kind(&self) -> Kind {
        match self {
            InspectError::Registries(_) | InspectError::Conflict(_) => Kind::BadInput,
            InspectError::Registry(e) => e.kind(),
            InspectError::NoPlatform { .. } | InspectError::SingleArchMismatch { .. } => Kind::NotFound,
            InspectError::Contradiction { .. } | InspectError::BadManifest { .. } => Kind::Failed,
            InspectError::Proxy(e) => e.kind(),
        }
    }
}

/// Everything inspect learned.
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

/// Inspect an image on its registry, trying mirrors first.
pub async fn inspect(req: &Request, regs: &Registries, opts: &Options) -> Result<Inspection, InspectError> {
    locate(req, regs, opts).await.map(|(_, found)| found)
}

/// Inspect, and keep the client of the endpoint that had the image: a
/// pull downloads the layers from the same place.
pub async fn locate(
    req: &Request,
    regs: &Registries,
    opts: &Options,
) -> Result<(Client, Inspection), InspectError> {
    let (image, how) = regs.resolve(&req.image)?;
    tracing::debug!("{} resolved to {image} ({how:?})", req.image);
    let arch = platform::choose_arch(&image, req.arch)?;
    let wanted = req.wanted(arch);
    let endpoints = regs.endpoints(&image, opts.tls_verify)?;
    let mut last: Option<InspectError> = None;
    for ep in endpoints {
        let attempt = async {
            let client = Client::connect(ep, opts).await?;
            let found = inspect_at(&client, req, &wanted).await?;
            Ok::<_, InspectError>((client, found))
        };
        match attempt.await {
            Ok(found) => return Ok(found),
            // A mirror that lacks the image or is down: try the next place.
            Err(InspectError::Registry(e)) if matches!(e.kind(), Kind::NotFound | Kind::Network) => {
                tracing::info!("{e}");
                last = Some(e.into());
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one endpoint"))
}

async fn inspect_at(client: &Client, req: &Request, wanted: &Wanted) -> Result<Inspection, InspectError> {
    let image = client.endpoint.image.clone();
    let bad = |why: String| InspectError::BadManifest { image: image.to_string(), why };
    let (top_bytes, top_digest) = client.manifest(&image).await?;
    tracing::debug!("top manifest {top_digest}");
    let top = Manifest::parse(&top_bytes).map_err(|e| bad(e.to_string()))?;
    let (index, manifest_digest, manifest_bytes, manifest, entry_platform) = match top {
        Manifest::Index { manifests, .. } => {
            let Some(entry) = platform::select(&manifests, wanted).cloned() else {
                let mut offered = platforms_of(&manifests);
                offered.dedup();
                return Err(InspectError::NoPlatform {
                    image: image.to_string(),
                    wanted: wanted.display(),
                    offered,
                });
            };
            let by_digest = ImageRef { digest: Some(entry.descriptor.digest.clone()), ..image.clone() };
            let (bytes, digest) = client.manifest(&by_digest).await?;
            let m = Manifest::parse(&bytes).map_err(|e| bad(e.to_string()))?;
            if matches!(m, Manifest::Index { .. }) {
                return Err(bad("an index entry points at another index".into()));
            }
            (Some(manifests), digest, bytes, m, entry.platform.clone())
        }
        m => (None, top_digest.clone(), top_bytes.clone(), m, None),
    };
    let Manifest::Image { media_type, config: config_desc, layers } = manifest else {
        unreachable!("indexes were handled above")
    };
    tracing::debug!("image manifest {manifest_digest}");
    let config_bytes = client.small_blob(&image, &config_desc, MAX_CONFIG_BYTES).await?;
    tracing::debug!("config {}", config_desc.digest);
    let config = ImageConfig::parse(&config_bytes).map_err(|e| bad(e.to_string()))?;
    let config_platform = config.platform();
    match &entry_platform {
        // The config must agree with the index entry it was reached by.
        Some(p) if p.architecture != config.architecture || (!config.os.is_empty() && p.os != config.os) => {
            return Err(InspectError::Contradiction {
                image: image.to_string(),
                entry: p.display(),
                config: config_platform.display(),
            });
        }
        Some(_) => {}
        // A single-arch image: refuse rather than silently hand back another
        // architecture, as skopeo --override-arch does.
        None => {
            if !wanted.matches_config(&config.architecture, &config.os, config.variant.as_deref()) {
                return Err(InspectError::SingleArchMismatch {
                    image: image.to_string(),
                    have: config_platform.display(),
                    wanted: wanted.display(),
                });
            }
        }
    }
    let tags = if req.tags { Some(client.tags(&image).await?) } else { None };
    Ok(Inspection {
        image,
        top_bytes,
        top_digest,
        index,
        manifest_digest,
        manifest_bytes,
        media_type,
        config_desc,
        layers,
        config_bytes,
        config,
        tags,
    })
}

/// The platforms of index entries, in index order (entries without one,
/// such as some artifacts, are left out).
fn platforms_of(entries: &[IndexEntry]) -> Vec<String> {
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
