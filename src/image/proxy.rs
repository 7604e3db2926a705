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
use crate::image::manifest::{sha256_digest, Descriptor, ImageConfig, Manifest};
use crate::image::platform::Wanted;
use crate::image::reference::{self, ImageRef, Parsed};
use crate::image::registries_conf::{Registries, RegistriesError};
use crate::image::registry::Options;
use crate::image::resolved::{check_config, ImageError, Inspection};
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
    let manifest_digest = sha256_digest(&bytes);
    let bad = |why: String| ImageError::BadManifest { image: reference.to_string(), why };
    let malformed = |source| ImageError::Malformed { image: reference.to_string(), source };
    let Manifest::Image { media_type, config: config_desc, layers } =
        Manifest::parse(&bytes).map_err(malformed)?
    else {
        return Err(bad("skopeo returned an index".into()).into());
    };
    check_config(reference, &config_desc)?;
    let mut config_bytes = Vec::new();
    let exact = source.blob_to_vec(&name, &config_desc, &mut config_bytes).await;
    if exact.is_err() || sha256_digest(&config_bytes) != config_desc.digest {
        // A converted manifest names a rebuilt config that only
        // GetFullConfig produces.
        config_bytes = source.proxy.fetch_config_raw(&source.img).await.map_err(skopeo)?;
    }
    if sha256_digest(&config_bytes) != config_desc.digest {
        return Err(bad("the config skopeo returned does not match its manifest".into()).into());
    }
    let config = ImageConfig::parse(&config_bytes).map_err(malformed)?;
    // skopeo falls back to whatever a single-platform image is: refuse.
    if !wanted.matches_config(&config.architecture, &config.os, config.variant.as_deref()) {
        return Err(ImageError::SingleArchMismatch {
            image: reference.to_string(),
            have: config.platform().display(),
            wanted: wanted.display(),
        }
        .into());
    }
    let found = Inspection {
        image: name,
        top_bytes: bytes.clone(),
        top_digest: manifest_digest.clone(),
        index: None,
        manifest_digest,
        manifest_bytes: bytes,
        media_type,
        config_desc,
        layers,
        config_bytes,
        config,
        tags: None,
    };
    Ok((source, found))
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

/// The first RepoTags entry of a docker-archive's manifest.json, as podman
/// names an image loaded from one (the archive is read as a stream).
fn archive_repo_tag(path: &std::path::Path) -> Option<String> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).ok()?);
    for entry in ar.entries().ok()? {
        let mut entry = entry.ok()?;
        if entry.path().ok()?.as_os_str() != "manifest.json" || entry.size() > 1 << 20 {
            continue;
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).ok()?;
        let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
        return doc[0]["RepoTags"][0].as_str().map(String::from);
    }
    None
}

/// The skopeo reference to open and the name the image is stored under.
/// `oci:DIR[:TAG]` and `oci-archive:FILE[:TAG]` are named
/// `localhost/<base name>:<TAG>`; `docker-archive:FILE[:REF]` by REF, else
/// by the tag recorded in the archive, else after the file;
/// `docker://REF` and plain references (resolved through registries.conf)
/// by the reference.
pub fn resolve(reference: &str, regs: &Registries) -> Result<(String, ImageRef), ProxyError> {
    let bad = ProxyError::BadReference;
    let local = |path: &str, tag: Option<&str>| -> Result<ImageRef, ProxyError> {
        let base = std::path::Path::new(path)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = base.strip_suffix(".tar").unwrap_or(&base).to_ascii_lowercase();
        let repo: String = base
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
            .collect();
        if repo.is_empty() {
            return Err(bad(format!("cannot name an image after {path:?}")));
        }
        Ok(ImageRef {
            registry: "localhost".into(),
            repository: repo,
            tag: Some(tag.unwrap_or("latest").into()),
            digest: None,
        })
    };
    // PATH:TAG, where the tag is what follows the last ':' if it has no '/'.
    let split = |rest: &str| -> (String, Option<String>) {
        match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') && !p.is_empty() => (p.to_string(), Some(t.to_string())),
            _ => (rest.to_string(), None),
        }
    };
    if let Some(rest) = reference.strip_prefix("oci:").or_else(|| reference.strip_prefix("oci-archive:")) {
        let (path, tag) = split(rest);
        return Ok((reference.to_string(), local(&path, tag.as_deref())?));
    }
    if let Some(rest) = reference.strip_prefix("docker-archive:") {
        // FILE or FILE:REPO:TAG; the reference part contains a '/' or a ':'.
        let (path, name) = match rest.split_once(':') {
            Some((p, r)) => (p, Some(r)),
            None => (rest, None),
        };
        // Names in docker archives follow Docker's normalization.
        let docker_named = |r: &str| match reference::parse(r) {
            Ok(Parsed::Qualified(i)) => Ok(i),
            Ok(Parsed::Short { path: p, tag, digest }) => Ok(ImageRef {
                registry: reference::DOCKER_HUB.into(),
                repository: if p.contains('/') { p } else { format!("library/{p}") },
                tag,
                digest,
            }),
            Err(e) => Err(ProxyError::Reference(e)),
        };
        let image = match name {
            Some(r) => docker_named(r)?,
            None => match archive_repo_tag(std::path::Path::new(path)) {
                Some(t) => docker_named(&t)?,
                None => local(path, None)?,
            },
        };
        return Ok((reference.to_string(), image));
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
        assert_eq!(named("oci:/srv/images/Rich_Layout:1").1, "localhost/rich_layout:1");
        assert_eq!(named("oci:/srv/images/x").1, "localhost/x:latest");
        assert_eq!(named("oci-archive:/tmp/img.tar:2").1, "localhost/img:2");
        assert_eq!(named("docker-archive:/nonexistent/a.tar:me/app:3").1, "docker.io/me/app:3");
        assert_eq!(named("docker-archive:/nonexistent/a.tar:app").1, "docker.io/library/app:latest");
        assert_eq!(named("docker-archive:/nonexistent/a.tar").1, "localhost/a:latest");
        let (t, i) = named("docker://quay.io/x/y:1");
        assert_eq!((t.as_str(), i.as_str()), ("docker://quay.io/x/y:1", "quay.io/x/y:1"));
        assert!(resolve("dir:/x", &Registries::default()).is_err());
    }
}
