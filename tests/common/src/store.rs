//! A rootful overlay image store of a test's own, which mtbx is pointed
//! at through CONTAINERS_STORAGE_CONF; read back through its JSON records.

use std::path::PathBuf;

use serde_json::Value;

use super::skip;

/// The store, in a temporary directory (graph and run root beside the
/// storage.conf naming them).
pub struct Store {
    pub dir: tempfile::TempDir,
}

impl Store {
    /// A new store, or None with a skip line when not root.
    pub fn new(test: &str) -> Option<Store> {
        if !super::is_root() {
            skip(test, "needs root: a rootful image store");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        Some(Store { dir })
    }

    /// The storage.conf, for CONTAINERS_STORAGE_CONF.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("storage.conf")
    }

    /// A JSON list the store keeps (`overlay-layers/layers.json`); empty
    /// when there is none yet.
    pub fn records(&self, file: &str) -> Vec<Value> {
        std::fs::read(self.dir.path().join("graph").join(file))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// How many pulls left staging directories behind.
    pub fn staging_left(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("graph/overlay/mtbx-staging")).map(|d| d.count()).unwrap_or(0)
    }
}
