//! podman's containers-storage, written natively: layers and images that
//! `podman images`, `podman run`, `podman save` and `podman rmi` take as
//! their own.
//!
//! A layer is extracted into a private staging directory under the graph
//! root's tmp/ without holding any lock, so extraction runs in parallel and
//! never blocks podman. Committing it is short and locked: the record goes
//! into layers.json flagged incomplete, the directory is renamed into
//! place, the driver's bookkeeping (overlay's link, lower and l/ symlink)
//! and the tar-split file are written, then the flag is dropped. A crash at
//! any point leaves either a staging directory (removed by the next mtbx
//! run) or an incomplete record (removed by podman or mtbx on their next
//! write), never a layer that looks whole and is not.
//!
//! Layout and record formats: see docs/containers-storage.md and containers/storage
//! (layers.go, images.go, drivers/overlay, drivers/vfs).

pub mod apply;
pub mod config;
mod copy;
pub mod limits;
pub mod lockfile;
pub mod records;
pub mod style;
pub mod tarsplit;

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use base64::Engine;
use sha2::{Digest, Sha256};

pub use config::{Driver, Owner, StorageConfig};
use lockfile::LockFile;
use records::{ImageRecord, LayerRecord};

use crate::error::{Classify, Kind};
use crate::fsutil::{mkdir_all, write_atomic};

/// Storage failures; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// storage.conf trouble: the user's to fix.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A file operation on the store failed.
    #[error("{what} ({}): {source}", path.display())]
    Io {
        /// What was being done.
        what: String,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store holds something mtbx cannot use.
    #[error("the image store at {} is not usable: {why}", path.display())]
    Broken {
        /// The graph root.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl Classify for StorageError {
    fn kind(&self) -> Kind {
        match self {
            StorageError::Config(e) => e.kind(),
            StorageError::Io { .. } | StorageError::Broken { .. } => Kind::Failed,
        }
    }
}

fn io(what: impl Into<String>, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    let what = what.into();
    move |source| StorageError::Io { what, path: path.to_path_buf(), source }
}

/// The id containers/storage gives a layer: the base layer's diff_id hex;
/// above it, sha256 of `"<parent id>+<diff_id hex>"`. (Not the OCI ChainID.)
pub fn layer_id(parent: Option<&str>, diff_id: &str) -> String {
    let hex = diff_id.strip_prefix("sha256:").unwrap_or(diff_id);
    match parent {
        None => hex.to_string(),
        Some(p) => format!("{:x}", Sha256::digest(format!("{p}+{hex}").as_bytes())),
    }
}

/// The file name of a big data item: keys of only [a-z0-9.] are their own
/// name, others are "=" + base64(key), as containers/storage names them.
pub fn big_data_file_name(key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.') {
        key.to_string()
    } else {
        format!("={}", base64::engine::general_purpose::STANDARD.encode(key))
    }
}

/// An open store.
pub struct Store {
    config: StorageConfig,
    storage_lock: LockFile,
    layers_lock: LockFile,
    images_lock: LockFile,
    in_flight: Arc<InFlight>,
}

/// A layer being extracted, not yet part of the store. Dropping it
/// removes it.
pub struct Staging {
    dir: PathBuf,
    driver: Driver,
    committed: bool,
    /// Released only after the directory is gone (fields drop after
    /// [`Drop::drop`] ran).
    _slot: StagingSlot,
}

/// How many staging directories of this process are not yet committed or
/// removed, counting those whose extraction is scheduled but has not
/// started: a failed pull waits for zero before it returns, or a layer
/// still being extracted on another thread would outlive the process
/// with its directory.
#[derive(Debug, Default)]
struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

/// A claim on one staging directory, taken where its extraction is
/// scheduled and handed to [`Store::stage`].
#[derive(Debug)]
pub struct StagingSlot {
    in_flight: Arc<InFlight>,
}

impl Drop for StagingSlot {
    fn drop(&mut self) {
        let mut n = self.in_flight.count.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        if *n == 0 {
            self.in_flight.idle.notify_all();
        }
    }
}

impl Staging {
    /// The directory the layer's tar is applied to.
    pub fn root(&self) -> PathBuf {
        match self.driver {
            Driver::Overlay => self.dir.join("layer/diff"),
            Driver::Vfs => self.dir.join("layer"),
        }
    }

    /// Where the tar-split data goes.
    pub fn tar_split_path(&self) -> PathBuf {
        self.dir.join("tar-split.gz")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_tree(&self.dir);
        }
    }
}

/// An image to record.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// The config digest's hex.
    pub id: String,
    /// The top layer's id.
    pub top_layer: String,
    /// The name to give it (taken from any other image that has it).
    pub name: String,
    /// The manifest digest it was pulled by (the index's, if there was one).
    pub digest: String,
    /// Its creation time, from the config.
    pub created: Option<String>,
    /// Big data: the config under `"sha256:<hex>"`, the manifests.
    pub big_data: Vec<(String, Vec<u8>)>,
    /// The metadata string.
    pub metadata: String,
}

/// What `images` reports about one image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The record.
    pub record: ImageRecord,
    /// Its config, when the big data item is there.
    pub config: Option<Vec<u8>>,
    /// The sum of its layers' diff sizes.
    pub size: u64,
}

impl ImageInfo {
    /// Its config, parsed; an unreadable one reads as empty (no platform).
    pub fn parsed_config(&self) -> crate::image::manifest::ImageConfig {
        self.config
            .as_deref()
            .and_then(|c| crate::image::manifest::ImageConfig::parse(c).ok())
            .unwrap_or_default()
    }
}

impl Store {
    /// Open the store `config` describes, creating its directories (0700)
    /// and lock files, and removing staging directories of dead mtbx runs.
    pub fn open(config: StorageConfig) -> Result<Store, StorageError> {
        let g = config.graph_root.clone();
        let d = config.driver.name();
        for dir in [
            g.clone(),
            g.join(d),
            g.join(format!("{d}-layers")),
            g.join(format!("{d}-images")),
            g.join(d).join("mtbx-staging"),
        ] {
            mkdir_all(&dir, 0o700).map_err(io("cannot create the image store", &dir))?;
        }
        match config.driver {
            // overlay/l is 0755 in containers/storage.
            Driver::Overlay => mkdir_all(&g.join("overlay/l"), 0o755),
            Driver::Vfs => mkdir_all(&g.join("vfs/dir"), 0o700),
        }
        .map_err(io("cannot create the image store", &g))?;
        let open = |p: PathBuf| LockFile::open(&p).map_err(io("cannot open a lock file", &p));
        let store = Store {
            storage_lock: open(g.join("storage.lock"))?,
            layers_lock: open(g.join(format!("{d}-layers/layers.lock")))?,
            images_lock: open(g.join(format!("{d}-images/images.lock")))?,
            config,
            in_flight: Arc::default(),
        };
        store.sweep_staging();
        Ok(store)
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    fn graph(&self) -> &Path {
        &self.config.graph_root
    }

    fn layers_json(&self) -> PathBuf {
        self.graph().join(format!("{}-layers/layers.json", self.config.driver.name()))
    }

    fn images_json(&self) -> PathBuf {
        self.graph().join(format!("{}-images/images.json", self.config.driver.name()))
    }

    fn layer_dir(&self, id: &str) -> PathBuf {
        match self.config.driver {
            Driver::Overlay => self.graph().join("overlay").join(id),
            Driver::Vfs => self.graph().join("vfs/dir").join(id),
        }
    }

    fn tar_split_of(&self, id: &str) -> PathBuf {
        self.graph().join(format!("{}-layers/{id}.tar-split.gz", self.config.driver.name()))
    }

    fn image_dir(&self, id: &str) -> PathBuf {
        self.graph().join(format!("{}-images/{id}", self.config.driver.name()))
    }

    /// All layer records (complete or not), under a shared lock.
    pub fn layers(&self) -> Result<Vec<LayerRecord>, StorageError> {
        let _s = self.storage_lock.read().map_err(io("cannot lock the store", self.storage_lock.path()))?;
        let _l = self.layers_lock.read().map_err(io("cannot lock the layers", self.layers_lock.path()))?;
        self.load_layers()
    }

    fn load_layers(&self) -> Result<Vec<LayerRecord>, StorageError> {
        let p = self.layers_json();
        records::load(&p).map_err(io("cannot read the layer list", &p))
    }

    fn load_images(&self) -> Result<Vec<ImageRecord>, StorageError> {
        let p = self.images_json();
        records::load(&p).map_err(io("cannot read the image list", &p))
    }

    /// Every image, with its config and size.
    pub fn images(&self) -> Result<Vec<ImageInfo>, StorageError> {
        let _s = self.storage_lock.read().map_err(io("cannot lock the store", self.storage_lock.path()))?;
        let _l = self.layers_lock.read().map_err(io("cannot lock the layers", self.layers_lock.path()))?;
        let _i = self.images_lock.read().map_err(io("cannot lock the images", self.images_lock.path()))?;
        let layers: BTreeMap<String, LayerRecord> =
            self.load_layers()?.into_iter().map(|l| (l.id.clone(), l)).collect();
        let mut out = Vec::new();
        for record in self.load_images()? {
            let key = format!("sha256:{}", record.id);
            let config = std::fs::read(self.image_dir(&record.id).join(big_data_file_name(&key))).ok();
            let mut size = 0u64;
            let mut cur = record.layer.clone();
            while let Some(id) = cur {
                let Some(l) = layers.get(&id) else { break };
                size += l.diff_size.max(0) as u64;
                cur = l.parent.clone();
            }
            out.push(ImageInfo { record, config, size });
        }
        Ok(out)
    }

    /// A warning when a download of `compressed` bytes may not fit in the
    /// free space of the graph root's file system.
    pub fn space_warning(&self, compressed: u64) -> Option<String> {
        limits::space_warning(self.graph(), compressed)
    }

    /// Claim a staging directory before its extraction is scheduled, so
    /// [`Store::wait_for_staging`] counts it from then on.
    pub fn reserve_staging(&self) -> StagingSlot {
        *self.in_flight.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        StagingSlot { in_flight: self.in_flight.clone() }
    }

    /// Block until every staging directory claimed on this store is
    /// committed or removed.
    pub fn wait_for_staging(&self) {
        let mut n = self.in_flight.count.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            n = self.in_flight.idle.wait(n).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A fresh staging directory for a layer whose parent is `parent`.
    /// vfs layers start as a copy of the parent's tree.
    pub fn stage(&self, parent: Option<&str>, slot: StagingSlot) -> Result<Staging, StorageError> {
        let mut rnd = [0u8; 8];
        let root = self.staging_root();
        crate::fsutil::random_bytes(&mut rnd).map_err(io("cannot name a staging directory", &root))?;
        let dir = root.join(format!("{}-{}", std::process::id(), hex::encode(rnd)));
        let staging = Staging { dir, driver: self.config.driver, committed: false, _slot: slot };
        mkdir_all(&staging.dir, 0o700).map_err(io("cannot create a staging directory", &staging.dir))?;
        if self.config.driver == Driver::Overlay {
            let layer = staging.dir.join("layer");
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&layer)
                .map_err(io("cannot create a staging directory", &layer))?;
        }
        let root = staging.root();
        // containers/storage gives a base layer's root 0555 and a child its
        // parent's root mode. overlay ignores the tar's "./" entry, so its
        // roots are all 0555 (and a parent may still be downloading); a vfs
        // parent is committed before its child is staged.
        let parent_root = parent.filter(|_| self.config.driver == Driver::Vfs).map(|p| self.layer_dir(p));
        let mode = match &parent_root {
            Some(p) => {
                std::fs::metadata(p).map_err(io("cannot read the parent layer", p))?.permissions().mode()
                    & 0o7777
            }
            None => 0o555,
        };
        match (self.config.driver, &parent_root) {
            (Driver::Vfs, Some(src)) => {
                copy::copy_tree(src, &root)?;
            }
            _ => {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&root)
                    .map_err(io("cannot create a staging directory", &root))?;
            }
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(mode))
            .map_err(io("cannot set permissions", &root))?;
        Ok(staging)
    }

    /// Make a staged layer part of the store under `record.id`. When a
    /// complete layer with that id appeared meanwhile (another pull), the
    /// staged copy is dropped and the existing one kept.
    pub fn commit_layer(&self, mut staging: Staging, mut record: LayerRecord) -> Result<(), StorageError> {
        let _s = self.storage_lock.read().map_err(io("cannot lock the store", self.storage_lock.path()))?;
        let held = self.layers_lock.write().map_err(io("cannot lock the layers", self.layers_lock.path()))?;
        let mut layers = self.load_layers()?;
        self.drop_incomplete(&mut layers)?;
        if layers.iter().any(|l| l.id == record.id) {
            tracing::debug!("layer {} is already in the store", record.id);
            self.save_layers(&layers)?;
            held.touch().map_err(io("cannot update the lock", self.layers_lock.path()))?;
            return Ok(());
        }
        if let Some(p) = &record.parent {
            if !layers.iter().any(|l| &l.id == p) {
                return Err(StorageError::Broken {
                    path: self.graph().to_path_buf(),
                    why: format!(
                        "parent layer {p} of {} vanished (removed by someone else?); pull again",
                        record.id
                    ),
                });
            }
        }
        // 1. The record, flagged incomplete: from here a crash is cleaned up.
        record.flags.insert("incomplete".into(), true.into());
        layers.push(record.clone());
        self.save_layers(&layers)?;
        held.touch().map_err(io("cannot update the lock", self.layers_lock.path()))?;
        // 2. The directory and the driver's bookkeeping.
        let dest = self.layer_dir(&record.id);
        if dest.exists() {
            remove_tree(&dest).map_err(io("cannot remove a stale layer directory", &dest))?;
        }
        let src = staging.dir.join("layer");
        std::fs::rename(&src, &dest).map_err(io("cannot move the layer into place", &dest))?;
        if self.config.driver == Driver::Overlay {
            self.overlay_bookkeeping(&record)?;
        }
        // The driver directory may be a mount of its own (podman bind-mounts
        // overlay/ onto itself), so the tar-split file is copied across.
        let ts = self.tar_split_of(&record.id);
        let ts_tmp = ts.with_extension("mtbx-tmp");
        std::fs::copy(staging.tar_split_path(), &ts_tmp)
            .and_then(|_| std::fs::rename(&ts_tmp, &ts))
            .map_err(io("cannot store the tar-split data", &ts))?;
        // 3. Complete.
        record.flags.remove("incomplete");
        *layers.last_mut().expect("pushed above") = record;
        self.save_layers(&layers)?;
        held.touch().map_err(io("cannot update the lock", self.layers_lock.path()))?;
        staging.committed = true;
        let _ = remove_tree(&staging.dir);
        Ok(())
    }

    fn overlay_bookkeeping(&self, record: &LayerRecord) -> Result<(), StorageError> {
        let dir = self.layer_dir(&record.id);
        for sub in ["work", "merged"] {
            mkdir_all(&dir.join(sub), 0o700).map_err(io("cannot create the layer", &dir))?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("cannot set permissions", &dir))?;
        let link = new_link_name().map_err(io("cannot name the layer link", &dir))?;
        write_atomic(&dir.join("link"), link.as_bytes(), 0o644)
            .map_err(io("cannot write the layer link", &dir))?;
        match &record.parent {
            None => mkdir_all(&dir.join("empty"), 0o700).map_err(io("cannot create the layer", &dir))?,
            Some(p) => {
                let pdir = self.layer_dir(p);
                let plink = std::fs::read_to_string(pdir.join("link"))
                    .map_err(io("cannot read the parent's link", &pdir))?;
                let mut lower = format!("l/{}", plink.trim());
                if let Ok(plower) = std::fs::read_to_string(pdir.join("lower")) {
                    lower.push(':');
                    lower.push_str(plower.trim());
                }
                write_atomic(&dir.join("lower"), lower.as_bytes(), 0o644)
                    .map_err(io("cannot write the layer's lower", &dir))?;
            }
        }
        let l = self.graph().join("overlay/l").join(&link);
        std::os::unix::fs::symlink(format!("../{}/diff", record.id), &l)
            .map_err(io("cannot create the layer link", &l))?;
        Ok(())
    }

    /// Remove layers a writer died in the middle of (they are flagged
    /// incomplete; every writer holds the layers lock while they exist).
    fn drop_incomplete(&self, layers: &mut Vec<LayerRecord>) -> Result<(), StorageError> {
        let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(layers).into_iter().partition(|l| l.incomplete());
        *layers = live;
        for l in dead {
            tracing::info!("removing layer {}, left incomplete by an interrupted pull", l.id);
            let dir = self.layer_dir(&l.id);
            if self.config.driver == Driver::Overlay {
                if let Ok(link) = std::fs::read_to_string(dir.join("link")) {
                    let _ = std::fs::remove_file(self.graph().join("overlay/l").join(link.trim()));
                }
            }
            remove_tree(&dir).map_err(io("cannot remove an incomplete layer", &dir))?;
            let _ = std::fs::remove_file(self.tar_split_of(&l.id));
        }
        Ok(())
    }

    fn save_layers(&self, layers: &[LayerRecord]) -> Result<(), StorageError> {
        let p = self.layers_json();
        records::save(&p, layers).map_err(io("cannot write the layer list", &p))
    }

    /// Record an image whose layers are all committed, or give an existing
    /// image with the same id the name. The name is taken from any other
    /// image that has it (which keeps it in its names-history).
    pub fn commit_image(&self, img: NewImage) -> Result<(), StorageError> {
        let _s = self.storage_lock.read().map_err(io("cannot lock the store", self.storage_lock.path()))?;
        let _l = self.layers_lock.read().map_err(io("cannot lock the layers", self.layers_lock.path()))?;
        let held = self.images_lock.write().map_err(io("cannot lock the images", self.images_lock.path()))?;
        if !self.load_layers()?.iter().any(|l| l.id == img.top_layer && !l.incomplete()) {
            return Err(StorageError::Broken {
                path: self.graph().to_path_buf(),
                why: format!("top layer {} of image {} is missing; pull again", img.top_layer, img.id),
            });
        }
        let mut images = self.load_images()?;
        for other in images.iter_mut().filter(|i| i.id != img.id) {
            other.names.retain(|n| *n != img.name);
        }
        let dir = self.image_dir(&img.id);
        mkdir_all(&dir, 0o700).map_err(io("cannot create the image directory", &dir))?;
        let pos = match images.iter().position(|i| i.id == img.id) {
            Some(p) => p,
            None => {
                images.push(ImageRecord {
                    id: img.id.clone(),
                    digest: Some(img.digest.clone()),
                    layer: Some(img.top_layer.clone()),
                    metadata: Some(img.metadata.clone()),
                    created: img.created.clone(),
                    ..ImageRecord::default()
                });
                images.len() - 1
            }
        };
        let rec = &mut images[pos];
        for (key, bytes) in &img.big_data {
            let path = dir.join(big_data_file_name(key));
            write_atomic(&path, bytes, 0o600).map_err(io("cannot write image data", &path))?;
            if !rec.big_data_names.contains(key) {
                rec.big_data_names.push(key.clone());
            }
            rec.big_data_sizes.insert(key.clone(), bytes.len() as i64);
            rec.big_data_digests.insert(key.clone(), crate::image::manifest::sha256_digest(bytes));
        }
        rec.names.retain(|n| *n != img.name);
        rec.names.insert(0, img.name.clone());
        rec.names_history.retain(|n| *n != img.name);
        rec.names_history.insert(0, img.name.clone());
        let p = self.images_json();
        records::save(&p, &images).map_err(io("cannot write the image list", &p))?;
        held.touch().map_err(io("cannot update the lock", self.images_lock.path()))?;
        Ok(())
    }

    /// Staging directories live inside the driver's directory: a layer is
    /// moved into place by rename, which cannot cross the bind mount podman
    /// puts on overlay/.
    fn staging_root(&self) -> PathBuf {
        self.graph().join(self.config.driver.name()).join("mtbx-staging")
    }

    /// Remove the staging directories of mtbx runs that died.
    fn sweep_staging(&self) {
        let Ok(entries) = std::fs::read_dir(self.staging_root()) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|p| !crate::fsutil::pid_alive(p)) {
                tracing::debug!("removing stale staging directory {name}");
                let _ = remove_tree(&e.path());
            }
        }
    }
}

/// containers/storage's overlay link names: 26 characters of base32.
fn new_link_name() -> std::io::Result<String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rnd = [0u8; 26];
    crate::fsutil::random_bytes(&mut rnd)?;
    Ok(rnd.iter().map(|b| ALPHABET[(b & 31) as usize] as char).collect())
}

/// Remove a tree that may hold read-only directories (layer roots are
/// 0555): make directories writable on the way down.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return std::fs::remove_file(path),
        Ok(_) => {}
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("cannot remove /"))?;
    let dir = std::fs::File::open(parent)?;
    let cname = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(name))
        .map_err(std::io::Error::other)?;
    apply::remove_at(&dir, &cname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ids_as_podman_computes_them() {
        // From podman's own pull of fixtures/oci/multi (docs/containers-storage.md, "Identifiers").
        let base = layer_id(None, "sha256:bf632f8fe3e9d6513317f72b65c525d47421e34b303c2134ab040556b97107ad");
        assert_eq!(base, "bf632f8fe3e9d6513317f72b65c525d47421e34b303c2134ab040556b97107ad");
        let next =
            layer_id(Some(&base), "sha256:674d81b73e699940a034ddacfca2a00ee6324b8af2d647e5c982a13d4d1bf9e1");
        assert_eq!(next, "808f7930b29c09f2b0cdbf2597bc2bca7baff4693813f3018f58f828e385b9e6");
    }

    #[test]
    fn big_data_names_as_podman_writes_them() {
        assert_eq!(big_data_file_name("manifest"), "manifest");
        assert_eq!(
            big_data_file_name("manifest-sha256:7f034e0f6a0c42db08fcd94bc87af97388ebf8b010737f4da3f89d07f788f7f7"),
            "=bWFuaWZlc3Qtc2hhMjU2OjdmMDM0ZTBmNmEwYzQyZGIwOGZjZDk0YmM4N2FmOTczODhlYmY4YjAxMDczN2Y0ZGEzZjg5ZDA3Zjc4OGY3Zjc="
        );
    }

    #[test]
    fn errors_keep_their_causes_and_say_their_kind() {
        use crate::cli::errors::kind_of;
        use std::error::Error;
        let config = StorageError::from(config::ConfigError::Read {
            path: "/etc/containers/storage.conf".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        });
        assert!(config.source().and_then(|s| s.downcast_ref::<std::io::Error>()).is_some());
        assert_eq!(kind_of(&anyhow::Error::new(config)), Kind::BadInput);
        let io = StorageError::Io { what: "x".into(), path: "/x".into(), source: std::io::Error::other("y") };
        assert_eq!(kind_of(&anyhow::Error::new(io)), Kind::Failed);
        // A damaged layers.json: the JSON parser's error is the cause.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("layers.json");
        std::fs::write(&p, b"[{").unwrap();
        let e = records::load::<LayerRecord>(&p).unwrap_err();
        assert!(e.get_ref().and_then(|i| i.downcast_ref::<serde_json::Error>()).is_some(), "{e:?}");
    }

    #[test]
    fn link_names_are_base32() {
        let l = new_link_name().unwrap();
        assert_eq!(l.len(), 26);
        assert!(l.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
    }
}
