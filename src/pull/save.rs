//! `save`: one platform of an image, from wherever mtbx reads images (a
//! registry, an OCI layout, an archive), written as an OCI archive: the
//! `oci-layout` file, an index.json naming the one manifest by the
//! `org.opencontainers.image.ref.name` annotation, and the blobs. Manifest
//! and config are the exact bytes the source served, so the digests (and
//! the image id) are the source's.
//!
//! Blobs stream from the source through a small bounded channel into the
//! tar on a blocking thread, hashed on the way: memory does not grow with
//! the image. The archive is a temporary file next to the target, renamed
//! into place only when every blob was the size and digest its descriptor
//! says; a failure, or dropping the future (Ctrl-C, SIGTERM), removes it.
//! The temporary file is flock(2)ed while it is written, so that one left
//! by a save that was killed outright (SIGKILL) is known for a dead one's
//! and removed by the next save to the same file. The archive's mode is
//! what the umask gives a new file (0666 less the umask), as for any file
//! a program creates.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{open_source, PullError, Source, SourceKind};
use crate::error::{Classify, Kind};
use crate::image::inspect;
use crate::image::local::REF_NAME;
use crate::image::manifest::{Descriptor, OCI_INDEX};
use crate::image::registries_conf::Registries;
use crate::image::registry::Options;
use crate::image::source::BlobSource;

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The output's directory is not there, or the output is one.
    #[error("cannot write {}: {why}", crate::text::quoted_path(.path))]
    BadOutput {
        /// The output path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Writing the archive failed.
    #[error("cannot write {}", crate::text::quoted_path(.path))]
    Write {
        /// The archive being written.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blob that is not what its descriptor says.
    #[error("blob {digest}: {what} is {got}, but the image says {want}; nothing was written")]
    Mismatch {
        /// The blob.
        digest: String,
        /// Which value.
        what: &'static str,
        /// Expected.
        want: String,
        /// Seen.
        got: String,
    },
    /// Interrupted (Ctrl-C): the temporary file is gone.
    #[error("interrupted; nothing was written")]
    Interrupted,
    /// The source stopped in the middle of a blob.
    #[error("blob {0}: the source stopped sending; nothing was written")]
    Cut(String),
}

impl Classify for SaveError {
    fn kind(&self) -> Kind {
        match self {
            SaveError::BadOutput { .. } => Kind::BadInput,
            SaveError::Write { .. }
            | SaveError::Mismatch { .. }
            | SaveError::Cut(_)
            | SaveError::Interrupted => Kind::Failed,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Saved {
    /// The archive.
    pub path: PathBuf,
    /// The image's name in the source.
    pub image: String,
    /// The tag index.json names it by.
    pub tag: String,
    /// The platform saved.
    pub platform: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// Bytes of blobs written.
    pub blob_bytes: u64,
}

/// What the writer thread is handed, in archive order.
enum Job {
    /// A small file, whole.
    File(String, Vec<u8>),
    /// A blob, arriving in chunks.
    Blob(Descriptor, tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>),
}

/// Save the image `req` names, for its platform, as an OCI archive at
/// `out`. `on_bytes` hears of every chunk of blob written.
pub async fn save(
    req: &inspect::Request,
    regs: &Registries,
    opts: &Options,
    out: &Path,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<Saved, PullError> {
    let bad = |why: &str| SaveError::BadOutput { path: out.to_path_buf(), why: why.into() };
    if out.is_dir() {
        return Err(bad("it is a directory; name the archive file").into());
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(bad("its directory does not exist").into());
    }
    let (source, found, _) = open_source(req, regs, opts, SourceKind::Registry).await?;
    let file_name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{file_name}.");
    remove_dead_parts(&dir, &prefix);
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(|e| SaveError::Write { path: dir.clone(), source: e })?;
    // Held until the file is renamed or removed (the descriptor goes to
    // the writer and is closed then): the mark of a live save.
    crate::sys::files::try_flock(tmp.as_file(), true)
        .map_err(|e| SaveError::Write { path: tmp.path().to_path_buf(), source: e })?;
    // The path stays here: dropped with this future (an error, Ctrl-C), it
    // removes the file, whatever the writer thread is doing.
    let (file, tmp_path) = tmp.into_parts();
    // The lock lives on this second descriptor until the rename.
    let lock = file.try_clone().map_err(|e| SaveError::Write { path: tmp_path.to_path_buf(), source: e })?;
    let tag = found.image.tag.clone().unwrap_or_else(|| "latest".into());
    let manifest = Descriptor {
        media_type: found.media_type.clone(),
        digest: found.manifest_digest.clone(),
        size: found.manifest_bytes.len() as u64,
        annotations: Some([(REF_NAME.to_string(), tag.clone())].into()),
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [manifest],
    }))
    .expect("an index serializes");

    let (jobs, jobs_rx) = tokio::sync::mpsc::channel::<Job>(1);
    let shown = tmp_path.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || write_archive(file, &shown, jobs_rx));
    let feed = async {
        let send = |job| async { jobs.send(job).await.is_ok() };
        if !send(Job::File("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())).await {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        for layer in &found.layers {
            if !seen.insert(layer.digest.clone()) {
                continue;
            }
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            if !send(Job::Blob(layer.clone(), rx)).await {
                return Ok(());
            }
            let sent = blob(&source, &found.image, layer, &tx, on_bytes).await;
            if sent.is_err() {
                let _ = tx.send(Err(std::io::Error::other("the source failed"))).await;
            }
            drop(tx);
            sent?;
        }
        for (desc, bytes) in [(&found.config_desc, &found.config_bytes), (&manifest, &found.manifest_bytes)] {
            if !send(Job::File(blob_path(&desc.digest)?, bytes.clone())).await {
                return Ok(());
            }
        }
        send(Job::File("index.json".into(), index)).await;
        Ok::<_, PullError>(())
    };
    let fed = feed.await;
    drop(jobs);
    let written = crate::error::joined(writer).await;
    fed?;
    let blob_bytes = written?;
    tmp_path.persist(out).map_err(|e| SaveError::Write { path: out.to_path_buf(), source: e.error })?;
    drop(lock);
    if let Source::Proxy(p) = source {
        p.finish().await;
    }
    Ok(Saved {
        path: out.to_path_buf(),
        image: found.image.to_string(),
        tag,
        platform: found.config.platform().display(),
        manifest_digest: found.manifest_digest.clone(),
        blob_bytes,
    })
}

async fn blob(
    source: &Source,
    image: &crate::image::reference::ImageRef,
    desc: &Descriptor,
    tx: &crate::image::source::Chunks,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(), PullError> {
    source.blob_into(image, desc, tx, on_bytes).await
}

/// Remove the temporary files (`<prefix>*.part`) of saves to the same
/// file that were killed before they could: those whose lock is free.
fn remove_dead_parts(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(prefix) && name.ends_with(".part")) {
            continue;
        }
        let path = e.path();
        let Ok(f) = crate::sys::files::open_regular(&path, false) else { continue };
        if crate::sys::files::try_flock(&f, true).unwrap_or(false) {
            tracing::debug!("removing {}, left by a save that was killed", path.display());
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// `blobs/sha256/<hex>`, from a digest the source already checked the form of.
fn blob_path(digest: &str) -> Result<String, SaveError> {
    match digest.split_once(':') {
        Some((alg @ ("sha256" | "sha512"), hex)) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("blobs/{alg}/{hex}"))
        }
        _ => Err(SaveError::Mismatch {
            digest: digest.to_string(),
            what: "the digest",
            want: "sha256:<hex>".into(),
            got: digest.to_string(),
        }),
    }
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// The writer thread: each job into the tar, blobs checked as they pass;
/// then the end of the archive and an fsync. Bytes of blobs written.
fn write_archive(
    file: std::fs::File,
    path: &Path,
    mut jobs: tokio::sync::mpsc::Receiver<Job>,
) -> Result<u64, SaveError> {
    let io = |e: std::io::Error| SaveError::Write { path: path.to_path_buf(), source: e };
    let mut tar = tar::Builder::new(BufWriter::with_capacity(256 << 10, file));
    let mut dirs = std::collections::HashSet::new();
    let mut total = 0;
    let mut mkdirs = |tar: &mut tar::Builder<_>, name: &str| -> Result<(), SaveError> {
        let mut at = String::new();
        for part in name.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, d)| d) {
            at.push_str(part);
            at.push('/');
            if dirs.insert(at.clone()) {
                let mut h = header(0, 0o755, tar::EntryType::Directory);
                tar.append_data(&mut h, &at, std::io::empty()).map_err(io)?;
            }
        }
        Ok(())
    };
    while let Some(job) = jobs.blocking_recv() {
        match job {
            Job::File(name, bytes) => {
                mkdirs(&mut tar, &name)?;
                let mut h = header(bytes.len() as u64, 0o644, tar::EntryType::Regular);
                tar.append_data(&mut h, &name, &bytes[..]).map_err(io)?;
            }
            Job::Blob(desc, rx) => {
                let name = blob_path(&desc.digest)?;
                mkdirs(&mut tar, &name)?;
                let mut chunks = Chunked { rx, cur: bytes::Bytes::new(), failed: false };
                let mut hashing = Hashed { inner: (&mut chunks).take(desc.size), hash: Sha256::new(), n: 0 };
                let mut h = header(desc.size, 0o644, tar::EntryType::Regular);
                let appended = tar.append_data(&mut h, &name, &mut hashing);
                let (n, digest) = (hashing.n, format!("sha256:{:x}", hashing.hash.finalize()));
                if chunks.failed {
                    return Err(SaveError::Cut(desc.digest.clone()));
                }
                appended.map_err(io)?;
                let mismatch = |what, want: String, got: String| SaveError::Mismatch {
                    digest: desc.digest.clone(),
                    what,
                    want,
                    got,
                };
                if n != desc.size {
                    return Err(mismatch("the size", desc.size.to_string(), n.to_string()));
                }
                let mut more = [0u8; 1];
                if chunks.read(&mut more).map_err(io)? != 0 {
                    return Err(mismatch("the size", desc.size.to_string(), "larger".into()));
                }
                if chunks.failed {
                    return Err(SaveError::Cut(desc.digest.clone()));
                }
                if desc.digest.starts_with("sha256:") && digest != desc.digest {
                    return Err(mismatch("the digest", desc.digest.clone(), digest));
                }
                total += n;
            }
        }
    }
    let mut out = tar.into_inner().map_err(io)?;
    out.flush().map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    // A temporary file is private; the archive is an ordinary new file,
    // with the mode the umask gives one.
    let mode = 0o666 & !crate::fsutil::umask();
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(total)
}

/// The chunks of one blob as a blocking reader; an error sent down the
/// channel (the source failed) ends it with `failed` set.
struct Chunked {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
    failed: bool,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// sha256 and length of what passes.
struct Hashed<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}
