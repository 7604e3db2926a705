//! `pull`: an image of the chosen platform from its registry straight into
//! podman's containers-storage.
//!
//! Each missing layer streams through one pass: network chunks -> sha256
//! of the blob -> gzip or zstd decoding -> sha256 of the tar (the diff_id)
//! -> [`crate::storage::apply`] into a staging directory, with the
//! tar-split written alongside. Nothing is buffered whole; a digest that
//! does not match fails the layer and its staging directory is removed.
//! Layers download in parallel (overlay) and are committed base first; a
//! layer the store already has is not downloaded again.
//!
//! Names: a pull of the host's own platform keeps the reference's name, as
//! podman does. Any other platform is stored under a name that carries it
//! (`repo:42-arm64`, see docs/podman.md, "Names"), so it never takes the name
//! of the native image of the same reference.

pub mod save;

use std::io::{BufReader, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::emu::arch::Arch;
use crate::error::{Classify, Kind};
use crate::image::compression::Compression;
use crate::image::inspect::{self, InspectError};
use crate::image::local::{self, LocalError, LocalSource};
use crate::image::manifest::Descriptor;
use crate::image::platform;
use crate::image::proxy::{self, ProxyError, ProxySource};
use crate::image::reference::ImageRef;
use crate::image::registries_conf::Registries;
use crate::image::registry::{Client, Options, RegistryError};
use crate::image::resolved::Inspection;
use crate::image::source::{BlobSource, Chunks};
use crate::storage::apply::{self, ApplyError, ApplyOptions, Whiteouts};
use crate::storage::limits::Expansion;
use crate::storage::records::{now_rfc3339, LayerRecord};
use crate::storage::tarsplit::TarSplitWriter;
use crate::storage::{layer_id, Driver, NewImage, Staging, StagingSlot, StorageError, Store};

/// Layers downloaded at once (overlay; vfs layers build on each other and
/// go one at a time).
pub const PARALLEL_LAYERS: usize = 3;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Resolving the image failed.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// Downloading failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// skopeo's proxy source failed.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// An image in files (oci:, oci-archive:, docker-archive:) failed.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// The store could not be written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An archive could not be written (`save`).
    #[error(transparent)]
    Save(#[from] save::SaveError),
    /// A layer's content was refused.
    #[error("layer {layer}")]
    Apply {
        /// The blob digest.
        layer: String,
        /// Why.
        #[source]
        source: ApplyError,
    },
    /// A digest or size that does not match what the image promises.
    #[error("layer {layer}: {what} is {got}, but the image says {want}; the registry served corrupt data")]
    Mismatch {
        /// The blob digest.
        layer: String,
        /// Which value.
        what: &'static str,
        /// Expected.
        want: String,
        /// Seen.
        got: String,
    },
    /// The image itself is malformed.
    #[error("{0}")]
    BadImage(String),
}

impl Classify for PullError {
    fn kind(&self) -> Kind {
        match self {
            PullError::Inspect(e) => e.kind(),
            PullError::Registry(e) => e.kind(),
            PullError::Proxy(e) => e.kind(),
            PullError::Local(e) => e.kind(),
            PullError::Save(e) => e.kind(),
            PullError::Storage(StorageError::Config(_)) => Kind::BadInput,
            PullError::Storage(_) => Kind::Failed,
            PullError::Apply { .. } | PullError::Mismatch { .. } | PullError::BadImage(_) => Kind::Failed,
        }
    }
}

/// One layer of the plan.
#[derive(Debug, Clone)]
pub struct PlannedLayer {
    /// The blob.
    pub desc: Descriptor,
    /// Its uncompressed digest, from the config.
    pub diff_id: String,
    /// Its id in the store.
    pub id: String,
    /// The layer below.
    pub parent: Option<String>,
    /// Already in the store: nothing to download.
    pub present: bool,
}

/// What a pull will do, known before any layer is downloaded.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The resolved reference.
    pub image: ImageRef,
    /// The name the image gets in the store.
    pub name: String,
    /// The image id (config digest hex).
    pub image_id: String,
    /// The platform pulled (`linux/arm64`).
    pub platform: String,
    /// Whether it is the host's own platform.
    pub native: bool,
    /// Its layers, base first.
    pub layers: Vec<PlannedLayer>,
}

impl Plan {
    /// Bytes to download.
    pub fn download_size(&self) -> u64 {
        self.layers.iter().filter(|l| !l.present).map(|l| l.desc.size).sum()
    }

    /// Layers to download.
    pub fn missing(&self) -> usize {
        self.layers.iter().filter(|l| !l.present).count()
    }
}

/// Told about progress; the CLI draws bars with it.
pub trait Observer: Send + Sync {
    /// A layer starts downloading.
    fn layer_started(&self, _index: usize, _layer: &PlannedLayer) {}
    /// Bytes of a layer arrived.
    fn layer_bytes(&self, _index: usize, _n: u64) {}
    /// A layer is in the store.
    fn layer_done(&self, _index: usize) {}
}

/// Where an image comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SourceKind {
    /// mtbx's own registry client, or its own reader of oci:,
    /// oci-archive: and docker-archive: references (the default; needs
    /// nothing else).
    #[default]
    Registry,
    /// skopeo's image proxy, for oci:, oci-archive: and docker-archive:
    /// references too (needs skopeo).
    Proxy,
}

/// An opened source of blobs.
pub(crate) enum Source {
    Registry(Client),
    Proxy(ProxySource),
    Local(LocalSource),
}

impl BlobSource for Source {
    type Error = PullError;

    async fn blob_into(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        tx: &Chunks,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), PullError> {
        match self {
            Source::Registry(c) => Ok(c.blob_into(image, desc, tx, on_bytes).await?),
            Source::Proxy(p) => Ok(p.blob_into(image, desc, tx, on_bytes).await?),
            Source::Local(l) => Ok(l.blob_into(image, desc, tx, on_bytes).await?),
        }
    }
}

/// A resolved pull, ready to run.
pub struct Prepared {
    source: Source,
    found: Inspection,
    plan: Plan,
    store: Arc<Store>,
}

/// Resolve the image and plan the pull against `store`.
pub async fn prepare(
    req: &inspect::Request,
    regs: &Registries,
    opts: &Options,
    store: Arc<Store>,
    kind: SourceKind,
) -> Result<Prepared, PullError> {
    let (source, found, arch) = open_source(req, regs, opts, kind).await?;
    let diff_ids = found.config.rootfs.as_ref().map(|r| r.diff_ids.clone()).unwrap_or_default();
    if diff_ids.len() != found.layers.len() || found.layers.is_empty() {
        return Err(PullError::BadImage(format!(
            "{}: the manifest lists {} layers but the config {} diff_ids; the image is malformed",
            found.image,
            found.layers.len(),
            diff_ids.len()
        )));
    }
    let existing: std::collections::HashSet<String> = {
        let s = store.clone();
        crate::error::joined(tokio::task::spawn_blocking(move || s.layers()))
            .await?
            .into_iter()
            .filter(|l| !l.incomplete())
            .map(|l| l.id)
            .collect()
    };
    let mut layers = Vec::new();
    let mut parent: Option<String> = None;
    for (desc, diff_id) in found.layers.iter().zip(&diff_ids) {
        let id = layer_id(parent.as_deref(), diff_id);
        layers.push(PlannedLayer {
            desc: desc.clone(),
            diff_id: diff_id.clone(),
            present: existing.contains(&id),
            id: id.clone(),
            parent: parent.clone(),
        });
        parent = Some(id);
    }
    let native = std::ptr::eq(arch, Arch::host()) && req.variant.is_none();
    let plan = Plan {
        name: store_name(&found.image, arch, native, &found.manifest_digest),
        image: found.image.clone(),
        image_id: found.config_desc.digest.trim_start_matches("sha256:").to_string(),
        platform: found.config.platform().display(),
        native,
        layers,
    };
    Ok(Prepared { source, found, plan, store })
}

/// Open the image `req` names where it is (a registry, files, or through
/// skopeo's proxy) and resolve it for the platform asked for; the
/// architecture chosen too.
pub(crate) async fn open_source(
    req: &inspect::Request,
    regs: &Registries,
    opts: &Options,
    kind: SourceKind,
) -> Result<(Source, Inspection, &'static Arch), PullError> {
    Ok(match (kind, local::parse(&req.image)) {
        (SourceKind::Registry, Some(r)) => {
            let r = r?;
            let name = local::name(&r)?;
            let arch = platform::choose_arch(&name, req.arch).map_err(InspectError::from)?;
            let wanted = req.wanted(arch);
            // Reading files blocks: not on the runtime's thread.
            let (l, found) =
                crate::error::joined(tokio::task::spawn_blocking(move || local::open(&r, name, &wanted)))
                    .await?;
            (Source::Local(l), found, arch)
        }
        (SourceKind::Registry, None) => {
            let (client, found) = inspect::locate(req, regs, opts).await?;
            let arch = platform::choose_arch(&found.image, req.arch).map_err(InspectError::from)?;
            (Source::Registry(client), found, arch)
        }
        (SourceKind::Proxy, _) => {
            let (reference, name) = proxy::resolve(&req.image, regs)?;
            let arch = platform::choose_arch(&name, req.arch).map_err(InspectError::from)?;
            let (p, found) = proxy::open(&reference, name, &req.wanted(arch), opts).await?;
            (Source::Proxy(p), found, arch)
        }
    })
}

/// The name an image is stored under: the reference's own for the host's
/// platform or a tag that already names its architecture; otherwise the tag
/// with the architecture appended (`:42-arm64`); for a reference by digest
/// only, the platform's own manifest digest.
pub fn store_name(image: &ImageRef, arch: &Arch, native: bool, manifest_digest: &str) -> String {
    let base = image.name();
    let tagged_arch = platform::arch_from_tag(image).is_some();
    match (&image.tag, &image.digest) {
        (Some(t), _) if native || tagged_arch => format!("{base}:{t}"),
        (Some(t), _) => format!("{base}:{t}-{}", arch.short_name()),
        (None, Some(d)) if native => format!("{base}@{d}"),
        (None, Some(_)) => format!("{base}@{manifest_digest}"),
        (None, None) if native => format!("{base}:latest"),
        (None, None) => format!("{base}:latest-{}", arch.short_name()),
    }
}

impl Prepared {
    /// What will happen.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Download what is missing and record the image; returns its id.
    pub async fn run(self, observer: Arc<dyn Observer>) -> Result<String, PullError> {
        let Prepared { source, found, plan, store } = self;
        let style = Arc::new(crate::storage::style::PodmanStyle::probe());
        let config = store.config();
        let rootless = matches!(config.owner, crate::storage::Owner::Rootless { .. });
        let opts = ApplyOptions {
            whiteouts: match config.driver {
                Driver::Overlay => Whiteouts::Overlay {
                    opaque_xattr: if rootless { "user.overlay.opaque" } else { "trusted.overlay.opaque" },
                },
                Driver::Vfs => Whiteouts::Vfs,
            },
            rootless,
            expansion: Expansion::from_env().map_err(StorageError::from)?,
            compressed_size: 0,
        };
        if let Some(w) = store.space_warning(plan.download_size()) {
            tracing::warn!("{w}");
        }
        // vfs layers build on each other; skopeo's proxy serves one blob at a time.
        let parallel = match (config.driver, &source) {
            (Driver::Vfs, _) | (_, Source::Proxy(_)) => 1,
            _ => PARALLEL_LAYERS,
        };
        let missing: Vec<(usize, PlannedLayer)> =
            plan.layers.iter().cloned().enumerate().filter(|(_, l)| !l.present).collect();
        let src = &source;
        let image = &found.image;
        let mut fetches = futures_util::stream::iter(missing.into_iter().map(|(index, layer)| {
            let dest = Dest { store: store.clone(), style: style.clone() };
            let observer = observer.clone();
            async move {
                observer.layer_started(index, &layer);
                let done = fetch_layer(src, image, &layer, index, dest, opts, observer).await?;
                Ok::<_, PullError>((index, done))
            }
        }))
        .buffered(parallel);
        let mut failed = None;
        while let Some(result) = fetches.next().await {
            let committed = async {
                let (index, (staging, record)) = result?;
                let s = store.clone();
                crate::error::joined(tokio::task::spawn_blocking(move || s.commit_layer(staging, record)))
                    .await?;
                observer.layer_done(index);
                Ok::<_, PullError>(())
            };
            if let Err(e) = committed.await {
                failed = Some(e);
                break;
            }
        }
        drop(fetches);
        if let Some(e) = failed {
            // Layers still extracting on other threads own staging
            // directories: they stop at the end of their cancelled
            // downloads and remove them, and the process must not exit first.
            let s = store.clone();
            let _ = tokio::task::spawn_blocking(move || s.wait_for_staging()).await;
            return Err(e);
        }
        let mut big_data = vec![(found.config_desc.digest.clone(), found.config_bytes.clone())];
        if found.index.is_some() {
            big_data.push((format!("manifest-{}", found.top_digest), found.top_bytes.clone()));
        }
        big_data.push((format!("manifest-{}", found.manifest_digest), found.manifest_bytes.clone()));
        big_data.push(("manifest".into(), found.manifest_bytes.clone()));
        let new = NewImage {
            id: plan.image_id.clone(),
            top_layer: plan.layers.last().expect("checked non-empty").id.clone(),
            name: plan.name.clone(),
            digest: found.top_digest.clone(),
            created: found.config.created.clone(),
            big_data,
            metadata: style.unsigned_metadata(&found.manifest_digest),
        };
        let s = store.clone();
        crate::error::joined(tokio::task::spawn_blocking(move || s.commit_image(new))).await?;
        if let Source::Proxy(p) = source {
            p.finish().await;
        }
        Ok(plan.image_id)
    }
}

/// Download one layer into a staging directory: the network side here,
/// decoding and extraction on a blocking thread, joined by a small bounded
/// channel (memory stays flat whatever the layer's size).
/// Where layers go: the store, written as the local podman writes it.
#[derive(Clone)]
struct Dest {
    store: Arc<Store>,
    style: Arc<crate::storage::style::PodmanStyle>,
}

async fn fetch_layer(
    source: &Source,
    image: &ImageRef,
    layer: &PlannedLayer,
    index: usize,
    dest: Dest,
    opts: ApplyOptions,
    observer: Arc<dyn Observer>,
) -> Result<(Staging, LayerRecord), PullError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    let l = layer.clone();
    // Counted from here, so a failed pull waits for this extraction too.
    let slot = dest.store.reserve_staging();
    let extractor = tokio::task::spawn_blocking(move || extract(rx, &l, &dest, opts, slot));
    let download = source.blob_into(image, &layer.desc, &tx, &|n| observer.layer_bytes(index, n)).await;
    if download.is_err() {
        let _ = tx.send(Err(std::io::Error::other("download failed"))).await;
    }
    drop(tx);
    let extracted = crate::error::joined(extractor).await;
    download?;
    extracted
}

/// The blocking half of a layer: stream, check, decode, apply.
fn extract(
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    layer: &PlannedLayer,
    dest: &Dest,
    opts: ApplyOptions,
    slot: StagingSlot,
) -> Result<(Staging, LayerRecord), PullError> {
    let staging = dest.store.stage(layer.parent.as_deref(), slot)?;
    let opts = ApplyOptions { compressed_size: layer.desc.size, ..opts };
    let storage_err = |what: &str, path: &std::path::Path, e: std::io::Error| {
        PullError::Storage(StorageError::Io { what: what.into(), path: path.to_path_buf(), source: e })
    };
    let root_path = staging.root();
    let root = std::fs::File::open(&root_path)
        .map_err(|e| storage_err("cannot open the staging directory", &root_path, e))?;
    let ts_path = staging.tar_split_path();
    let ts_file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&ts_path)
            .map_err(|e| storage_err("cannot create the tar-split file", &ts_path, e))?
    };
    let mut split = TarSplitWriter::new(std::io::BufWriter::with_capacity(64 << 10, ts_file));
    // The download task's chunks as a blocking reader (this runs on a
    // blocking thread, in the runtime's context).
    let mut rx = rx;
    let chunks = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut blob = Hashing::new(SyncIoBridge::new(StreamReader::new(chunks)));
    let apply_err = |e: ApplyError| PullError::Apply { layer: layer.desc.digest.clone(), source: e };
    let decoded = (|| {
        // The magic number may span network chunks (a registry that drips
        // sends a byte at a time): read all four bytes before looking.
        let mut magic = Vec::with_capacity(4);
        (&mut blob).take(4).read_to_end(&mut magic).map_err(ApplyError::Read)?;
        let compression = Compression::sniff(&magic);
        let buffered = BufReader::with_capacity(128 << 10, std::io::Cursor::new(magic).chain(&mut blob));
        let decoder = compression.decode(buffered).map_err(ApplyError::Read)?;
        let mut diff = Hashing::new(decoder);
        let stats = apply::apply(&mut diff, root.as_fd(), opts, &mut split)?;
        let (digest, size) = diff.finish();
        Ok((stats, compression, digest, size))
    })();
    let (stats, compression, diff_digest, diff_size) = match decoded {
        Ok(v) => v,
        // A stream that does not decode may simply be damaged in transit:
        // read the rest and, if the blob's digest is wrong, say that.
        Err(e @ (ApplyError::Read(_) | ApplyError::Corrupt(_) | ApplyError::BadPax(_))) => {
            if std::io::copy(&mut blob, &mut std::io::sink()).is_ok() {
                let (digest, _) = blob.finish();
                if digest != layer.desc.digest {
                    return Err(PullError::Mismatch {
                        layer: layer.desc.digest.clone(),
                        what: "the blob's digest",
                        want: layer.desc.digest.clone(),
                        got: digest,
                    });
                }
            }
            return Err(apply_err(e));
        }
        Err(e) => return Err(apply_err(e)),
    };
    // Whatever follows the compressed stream still belongs to the blob.
    std::io::copy(&mut blob, &mut std::io::sink()).map_err(|e| apply_err(ApplyError::Read(e)))?;
    let (blob_digest, blob_size) = blob.finish();
    let mismatch = |what, want: String, got: String| PullError::Mismatch {
        layer: layer.desc.digest.clone(),
        what,
        want,
        got,
    };
    if blob_size != layer.desc.size {
        return Err(mismatch("the blob's size", layer.desc.size.to_string(), blob_size.to_string()));
    }
    if blob_digest != layer.desc.digest {
        return Err(mismatch("the blob's digest", layer.desc.digest.clone(), blob_digest));
    }
    if diff_digest != layer.diff_id {
        return Err(mismatch("the uncompressed digest (diff_id)", layer.diff_id.clone(), diff_digest));
    }
    let mut out = split
        .finish_with(dest.style.empty_end_segment())
        .map_err(|e| storage_err("cannot write the tar-split file", &ts_path, e))?;
    out.flush().map_err(|e| storage_err("cannot write the tar-split file", &ts_path, e))?;
    if stats.skipped_devices > 0 {
        tracing::warn!(
            "layer {}: {} device nodes skipped (they cannot be created in a user namespace; podman skips them too)",
            layer.desc.digest,
            stats.skipped_devices
        );
    }
    let record = LayerRecord {
        id: layer.id.clone(),
        parent: layer.parent.clone(),
        created: Some(now_rfc3339()),
        compressed_digest: Some(layer.desc.digest.clone()),
        compressed_size: layer.desc.size as i64,
        diff_digest: Some(diff_digest),
        diff_size: diff_size as i64,
        compression: compression.storage_code(),
        uidset: stats.uids.into_iter().collect(),
        gidset: stats.gids.into_iter().collect(),
        ..LayerRecord::default()
    };
    Ok((staging, record))
}

/// sha256 and length of everything read through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing { inner, hash: Sha256::new(), n: 0 }
    }

    fn finish(self) -> (String, u64) {
        (format!("sha256:{:x}", self.hash.finalize()), self.n)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::reference::{parse, Parsed};

    fn r(s: &str) -> ImageRef {
        match parse(s).unwrap() {
            Parsed::Qualified(i) => i,
            Parsed::Short { .. } => panic!("qualified"),
        }
    }

    #[test]
    fn names_carry_the_arch_unless_native_or_in_the_tag() {
        let arm64 = Arch::parse("arm64").unwrap();
        let host = Arch::host();
        let fedora = r("registry.fedoraproject.org/fedora-toolbox:42");
        assert_eq!(
            store_name(&fedora, host, true, "sha256:m"),
            "registry.fedoraproject.org/fedora-toolbox:42"
        );
        assert_eq!(
            store_name(&fedora, arm64, false, "sha256:m"),
            "registry.fedoraproject.org/fedora-toolbox:42-arm64"
        );
        let tagged = r("registry.fedoraproject.org/fedora-toolbox:42-aarch64");
        assert_eq!(
            store_name(&tagged, arm64, false, "sha256:m"),
            "registry.fedoraproject.org/fedora-toolbox:42-aarch64"
        );
        let armv6 = Arch::parse("arm/v6").unwrap();
        assert_eq!(store_name(&r("example.com/x"), armv6, false, "sha256:m"), "example.com/x:latest-arm-v6");
        let by_digest =
            r("example.com/x@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(store_name(&by_digest, arm64, false, "sha256:m"), "example.com/x@sha256:m");
        assert_eq!(
            store_name(&by_digest, host, true, "sha256:m"),
            "example.com/x@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
    }
}
