//! The optional second source of images: skopeo's image proxy, through
//! the `containers-image-proxy` crate, when skopeo is installed. It opens
//! what the native client does not speak, `oci:`, `oci-archive:` and
//! `docker-archive:` references, and `docker://` as a cross-check. Its
//! layers go through the very same storage writer as native pulls.
//!
//! Facts about skopeo's proxy (protocol 0.2.3 in skopeo 1.9) that shape
//! this module: it never returns an index, it picks the platform itself
//! (`--override-arch/-variant/-os` on its command line choose it, so there
//! is one proxy per pull); it may convert a Docker manifest to OCI, in which
//! case its config is rebuilt too (fetched with GetFullConfig); a blob
//! stream must be read while its "driver" future is polled, and errors
//! (digest, size) come from the driver after the last byte.

use std::str::FromStr;

use containers_image_proxy::oci_spec::image::Digest;
use containers_image_proxy::{ImageProxy, ImageProxyConfig, OpenedImage};
use tokio::io::AsyncReadExt;

use crate::error::{Classify, Kind};
use crate::image::local::{self, LocalError};
use crate::image::manifest::{sha256_digest, Descriptor, Manifest};
use crate::image::platform::Wanted;
use crate::image::reference::{self, ImageRef};
use crate::image::registries_conf::{Registries, RegistriesError};
use crate::image::registry::Options;
use crate::image::resolve::{self as pipeline, Fetch, Top};
use crate::image::resolved::{ImageError, Inspection};
use crate::image::source::{BlobSource, Chunks};

/// Failures of the proxy source.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// skopeo is missing or would not start.
    #[error("--source proxy needs skopeo (apt-get install skopeo / dnf install skopeo)")]
    NoSkopeo(#[source] containers_image_proxy::Error),
    /// A reference the proxy cannot take.
    #[error("{0}")]
    BadReference(String),
    /// A reference that does not parse.
    #[error(transparent)]
    Reference(#[from] reference::RefError),
    /// A digest skopeo's client library cannot take.
    #[error("digest {digest}")]
    BadDigest {
        /// The digest.
        digest: String,
        /// Why not.
        #[source]
        source: containers_image_proxy::oci_spec::OciSpecError,
    },
    /// skopeo reported an error.
    #[error("skopeo")]
    Skopeo(#[source] containers_image_proxy::Error),
    /// Reading a blob from skopeo failed.
    #[error("reading a blob from skopeo")]
    Read(#[source] std::io::Error),
    /// A plain reference that registries.conf cannot resolve.
    #[error(transparent)]
    Registries(#[from] RegistriesError),
    /// The image skopeo opened is not what was asked for, or is broken.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A local reference that cannot be named.
    #[error(transparent)]
    Local(#[from] LocalError),
}

/// An image opened through skopeo.
pub struct ProxySource {
    proxy: ImageProxy,
    img: OpenedImage,
}

/// Start a proxy for the platform `wanted`, open `reference` (a skopeo
/// reference, from [`resolve`]) and read its manifest and config into an
/// [`Inspection`] named `name`, as the native path has it.
pub async fn open(
    reference: &str,
    name: ImageRef,
    wanted: &Wanted,
    opts: &Options,
) -> Result<(ProxySource, Inspection), ProxyError> {
    let transport_ref = reference;
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["--override-os", &wanted.os, "--override-arch", wanted.arch.oci]);
    if let Some(v) = wanted.variant() {
        cmd.args(["--override-variant", v]);
    }
    let mut cfg = ImageProxyConfig::default();
    cfg.skopeo_cmd = Some(cmd);
    cfg.insecure_skip_tls_verification = opts.tls_verify.map(|v| !v);
    cfg.authfile = opts.authfile.clone();
    let proxy = ImageProxy::new_with_config(cfg).await.map_err(ProxyError::NoSkopeo)?;
    let skopeo = ProxyError::Skopeo;
    let img = proxy.open_image(transport_ref).await.map_err(skopeo)?;
    let source = ProxySource { proxy, img };
    let (_, bytes) = source.proxy.fetch_manifest_raw_oci(&source.img).await.map_err(skopeo)?;
    // What mtbx stores is these bytes, so they are named by their own
    // digest (skopeo reports the original's when it converted).
    let digest = sha256_digest(&bytes);
    if let Ok(Manifest::Index { .. }) = Manifest::parse(&bytes) {
        return Err(ImageError::BadManifest {
            image: reference.into(),
            why: "skopeo returned an index".into(),
        }
        .into());
    }
    let through = Through { source: &source, name: &name, reference };
    let found = pipeline::resolve(&through, reference, name.clone(), Top { bytes, digest }, wanted).await?;
    Ok((source, found))
}

/// An image opened through skopeo, as [`pipeline::resolve`] reads it.
struct Through<'a> {
    source: &'a ProxySource,
    name: &'a ImageRef,
    reference: &'a str,
}

impl Fetch for Through<'_> {
    type Error = ProxyError;

    /// skopeo serves no index (it chose the platform), so there is no
    /// entry to read.
    async fn manifest(&self, _desc: &Descriptor) -> Result<Vec<u8>, ProxyError> {
        Err(self.refused("skopeo returned an index".into()))
    }

    /// The config as stored, or the one skopeo rebuilt for a manifest it
    /// converted; either must be the manifest's, and no larger than `cap`:
    /// a manifest announcing a larger one is refused before anything is
    /// read (skopeo hands GetFullConfig's answer over whole, so that one is
    /// measured after).
    async fn config(&self, desc: &Descriptor, cap: u64) -> Result<Vec<u8>, ProxyError> {
        let too_big = || self.refused(format!("its config is larger than {cap} bytes"));
        if desc.size > cap {
            return Err(too_big());
        }
        let mut config_bytes = Vec::new();
        let exact = self.source.blob_to_vec(self.name, desc, &mut config_bytes).await;
        if exact.is_err() || sha256_digest(&config_bytes) != desc.digest {
            // A converted manifest names a rebuilt config that only
            // GetFullConfig produces.
            config_bytes =
                self.source.proxy.fetch_config_raw(&self.source.img).await.map_err(ProxyError::Skopeo)?;
        }
        if config_bytes.len() as u64 > cap {
            return Err(too_big());
        }
        if sha256_digest(&config_bytes) != desc.digest {
            return Err(self.refused("the config skopeo returned does not match its manifest".into()));
        }
        Ok(config_bytes)
    }

    fn refused(&self, why: String) -> ProxyError {
        ImageError::BadManifest { image: self.reference.to_string(), why }.into()
    }
}

impl Classify for ProxyError {
    fn kind(&self) -> Kind {
        match self {
            ProxyError::NoSkopeo(_)
            | ProxyError::BadReference(_)
            | ProxyError::Reference(_)
            | ProxyError::BadDigest { .. }
            | ProxyError::Registries(_) => Kind::BadInput,
            ProxyError::Skopeo(_) | ProxyError::Read(_) => Kind::Failed,
            ProxyError::Image(e) => e.kind(),
            ProxyError::Local(e) => e.kind(),
        }
    }
}

impl ProxySource {
    async fn blob_to_vec(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        out: &mut Vec<u8>,
    ) -> Result<(), ProxyError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        let fill = async {
            while let Some(Ok(chunk)) = rx.recv().await {
                out.extend_from_slice(&chunk);
            }
        };
        let (r, ()) = tokio::join!(
            async {
                let r = self.blob_into(image, desc, &tx, &|_| {}).await;
                drop(tx);
                r
            },
            fill
        );
        r
    }

    /// Shut skopeo down.
    pub async fn finish(self) {
        let _ = self.proxy.close_image(&self.img).await;
        let _ = self.proxy.finalize().await;
    }
}

impl BlobSource for ProxySource {
    type Error = ProxyError;

    /// skopeo checks the digest and size, and says so when the stream ends.
    async fn blob_into(
        &self,
        _image: &ImageRef,
        desc: &Descriptor,
        tx: &Chunks,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), ProxyError> {
        let d = Digest::from_str(&desc.digest)
            .map_err(|source| ProxyError::BadDigest { digest: desc.digest.clone(), source })?;
        let (mut reader, driver) =
            self.proxy.get_blob(&self.img, &d, desc.size).await.map_err(ProxyError::Skopeo)?;
        let copy = async move {
            loop {
                let mut buf = bytes::BytesMut::zeroed(128 << 10);
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                buf.truncate(n);
                on_bytes(n as u64);
                if tx.send(Ok(buf.freeze())).await.is_err() {
                    return Ok(());
                }
            }
        };
        // The reader ends only once the driver has run, and the driver only
        // finishes once everything was read: poll both.
        let (copied, finished) = tokio::join!(copy, driver);
        finished.map_err(ProxyError::Skopeo)?;
        copied.map_err(ProxyError::Read)
    }
}

/// The skopeo reference to open and the name the image is stored under:
/// `oci:`, `oci-archive:` and `docker-archive:` references are named as
/// mtbx's own reader names them ([`local::name`]); `docker://REF` and plain
/// references (resolved through registries.conf) by the reference.
pub fn resolve(reference: &str, regs: &Registries) -> Result<(String, ImageRef), ProxyError> {
    let bad = ProxyError::BadReference;
    if let Some(r) = local::parse(reference) {
        return Ok((reference.to_string(), local::name(&r?)?));
    }
    for other in ["dir:", "containers-storage:", "docker-daemon:", "ostree:", "sif:"] {
        if reference.starts_with(other) {
            return Err(bad(format!(
                "{other} references are not supported; use docker://, oci:, oci-archive: or docker-archive:"
            )));
        }
    }
    let (image, _) = regs.resolve(reference.strip_prefix("docker://").unwrap_or(reference))?;
    Ok((format!("docker://{image}"), image))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(r: &str) -> (String, String) {
        let regs = Registries::default();
        let (t, i) = resolve(r, &regs).unwrap();
        (t, i.to_string())
    }

    #[test]
    fn local_references_are_named_as_podman_names_them() {
        assert_eq!(named("oci:/srv/images/Rich_Layout:1").1, "localhost/rich-layout:1");
        assert_eq!(named("oci-archive:/tmp/img.tar:2").1, "localhost/img:2");
        let (t, i) = named("docker://quay.io/x/y:1");
        assert_eq!((t.as_str(), i.as_str()), ("docker://quay.io/x/y:1", "quay.io/x/y:1"));
        assert!(resolve("dir:/x", &Registries::default()).is_err());
    }
}
