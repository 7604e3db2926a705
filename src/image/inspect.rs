//! `inspect`: what an image is, for the architecture asked for, without
//! pulling it. The result carries the fields `skopeo inspect` prints and
//! what skopeo leaves out for cross-architecture users: the selected
//! platform, every platform on offer, the index digest and the size.

use crate::emu::arch::Arch;
use crate::error::{Classify, Kind};
use crate::image::local::{self, LocalError};
use crate::image::manifest::{ImageConfig, Manifest, MAX_CONFIG_BYTES};
use crate::image::platform::{self, Wanted};
use crate::image::reference::ImageRef;
use crate::image::registries_conf::{Registries, RegistriesError};
use crate::image::registry::{Client, Options, RegistryError};
use crate::image::resolved::{check_config, check_platform, platforms_of, ImageError, Inspection};

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
    /// The image is not what was asked for, or is broken.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// An image in files could not be read.
    #[error(transparent)]
    Local(#[from] LocalError),
}

impl Classify for InspectError {
    fn kind(&self) -> Kind {
        match self {
            InspectError::Registries(_) | InspectError::Conflict(_) => Kind::BadInput,
            InspectError::Registry(e) => e.kind(),
            InspectError::Image(e) => e.kind(),
            InspectError::Local(e) => e.kind(),
        }
    }
}

/// Inspect an image on its registry, trying mirrors first, or in files
/// (`oci:`, `oci-archive:`, `docker-archive:`).
pub async fn inspect(req: &Request, regs: &Registries, opts: &Options) -> Result<Inspection, InspectError> {
    if let Some(r) = local::parse(&req.image) {
        let r = r?;
        let name = local::name(&r)?;
        let wanted = req.wanted(platform::choose_arch(&name, req.arch)?);
        let opened = tokio::task::spawn_blocking(move || local::open(&r, name, &wanted));
        return Ok(crate::error::joined(opened).await?.1);
    }
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
    let bad = |why: String| ImageError::BadManifest { image: image.to_string(), why };
    let malformed = |source| ImageError::Malformed { image: image.to_string(), source };
    let (top_bytes, top_digest) = client.manifest(&image).await?;
    tracing::debug!("top manifest {top_digest}");
    let top = Manifest::parse(&top_bytes).map_err(malformed)?;
    let (index, manifest_digest, manifest_bytes, manifest, entry_platform) = match top {
        Manifest::Index { manifests, .. } => {
            let Some(entry) = platform::select(&manifests, wanted).cloned() else {
                let mut offered = platforms_of(&manifests);
                offered.dedup();
                return Err(ImageError::NoPlatform {
                    image: image.to_string(),
                    wanted: wanted.display(),
                    offered,
                }
                .into());
            };
            let by_digest = ImageRef { digest: Some(entry.descriptor.digest.clone()), ..image.clone() };
            let (bytes, digest) = client.manifest(&by_digest).await?;
            let m = Manifest::parse(&bytes).map_err(malformed)?;
            if matches!(m, Manifest::Index { .. }) {
                return Err(bad("an index entry points at another index".into()).into());
            }
            (Some(manifests), digest, bytes, m, entry.platform.clone())
        }
        m => (None, top_digest.clone(), top_bytes.clone(), m, None),
    };
    let Manifest::Image { media_type, config: config_desc, layers } = manifest else {
        unreachable!("indexes were handled above")
    };
    tracing::debug!("image manifest {manifest_digest}");
    check_config(&image.to_string(), &config_desc)?;
    let config_bytes = client.small_blob(&image, &config_desc, MAX_CONFIG_BYTES).await?;
    tracing::debug!("config {}", config_desc.digest);
    let config = ImageConfig::parse(&config_bytes).map_err(malformed)?;
    check_platform(&image.to_string(), entry_platform.as_ref(), &config, wanted)?;
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
