//! `inspect`: what an image is, for the architecture asked for, without
//! pulling it. The result carries the fields `skopeo inspect` prints and
//! what skopeo leaves out for cross-architecture users: the selected
//! platform, every platform on offer, the index digest and the size.

use crate::emu::arch::Arch;
use crate::error::{Classify, Kind};
use crate::image::local::{self, LocalError};
use crate::image::manifest::Descriptor;
use crate::image::platform::{self, Wanted};
use crate::image::reference::ImageRef;
use crate::image::registries_conf::{Registries, RegistriesError};
use crate::image::registry::{Client, Options, RegistryError};
use crate::image::resolve::{self, Fetch, Top};
use crate::image::resolved::{ImageError, Inspection};

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
    let (bytes, digest) = client.manifest(&image).await?;
    let on = OnRegistry { client, image: &image };
    let mut found =
        resolve::resolve(&on, &image.to_string(), image.clone(), Top { bytes, digest }, wanted).await?;
    if req.tags {
        found.tags = Some(client.tags(&image).await?);
    }
    Ok(found)
}

/// An image on its registry, as [`resolve`] reads it.
struct OnRegistry<'a> {
    client: &'a Client,
    image: &'a ImageRef,
}

impl Fetch for OnRegistry<'_> {
    type Error = InspectError;

    /// By digest; the client checks the digest and caps the body.
    async fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, InspectError> {
        let by_digest = ImageRef { digest: Some(desc.digest.clone()), ..self.image.clone() };
        Ok(self.client.manifest(&by_digest).await?.0)
    }

    async fn config(&self, desc: &Descriptor, cap: u64) -> Result<Vec<u8>, InspectError> {
        Ok(self.client.small_blob(self.image, desc, cap).await?)
    }

    fn refused(&self, why: String) -> InspectError {
        ImageError::BadManifest { image: self.image.to_string(), why }.into()
    }
}
