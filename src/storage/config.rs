//! Where podman keeps its images: containers-storage.conf(5) read the way
//! containers/storage reads it, so mtbx writes the very store `podman
//! images` lists, for root and for rootless users alike.
//!
//! Files: `$CONTAINERS_STORAGE_CONF` alone when set (for a rootless user
//! it counts as the system file, as podman 4 treats it); otherwise, for root,
//! /etc/containers/storage.conf, else /usr/share/containers/storage.conf;
//! for a rootless user, `$XDG_CONFIG_HOME/containers/storage.conf` (or
//! ~/.config/...) when it exists, else the system file, whose graphroot and
//! runroot do not apply to rootless users (only `rootless_storage_path`
//! does). `$STORAGE_DRIVER` overrides the driver, as it does for podman.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::StorageError;
use crate::error::{Classify, Kind};

/// A storage.conf that cannot be used: the user's to fix, so each says
/// which file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or not storage.conf's shape. One line, where an editor
    /// goes to it: toml's own message spans several.
    #[error("{}:{line}:{column}: not valid storage.conf: {what}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        /// What is wrong, on one line.
        what: String,
        /// The parser's own account (boxed: it is large, and every
        /// storage result carries room for it).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A relative graphroot or runroot would put the store under whatever
    /// directory mtbx runs in; podman refuses it too.
    #[error("{}: {key} = \"{value}\" is not an absolute path; give the full path, as podman requires", path.display())]
    Relative {
        /// The file.
        path: PathBuf,
        /// graphroot or runroot.
        key: &'static str,
        /// What it says.
        value: String,
    },
    /// An environment variable mtbx reads holds something it cannot use.
    #[error("{var}={value:?} is not valid: give a whole number such as 100, or off")]
    Env {
        /// The variable.
        var: &'static str,
        /// What it holds.
        value: String,
    },
    /// A graph driver mtbx does not write.
    #[error(
        "storage driver \"{0}\" is not supported by mtbx (overlay and vfs are); \
         set driver = \"overlay\" in storage.conf or pull with podman"
    )]
    Driver(String),
}

impl Classify for ConfigError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

/// The graph drivers mtbx writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Each layer holds only its diff; podman mounts them with overlayfs.
    Overlay,
    /// Each layer is a full copy of its parent with its diff applied.
    Vfs,
}

impl Driver {
    /// The name in storage.conf and in the store's directory names.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::Vfs => "vfs",
        }
    }

    fn parse(name: &str) -> Result<Driver, StorageError> {
        match name {
            "overlay" | "overlay2" => Ok(Driver::Overlay),
            "vfs" => Ok(Driver::Vfs),
            other => Err(ConfigError::Driver(other.to_string()).into()),
        }
    }
}

/// Who the store belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The system store, written as real root.
    Root,
    /// A rootless user's store: files are owned by ids of the user's
    /// namespace (0 = the user, 1.. = the /etc/subuid range).
    Rootless {
        /// The user's real uid.
        uid: u32,
        /// Their home directory.
        home: PathBuf,
    },
}

/// The resolved storage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Where layers and images live.
    pub graph_root: PathBuf,
    /// Where podman keeps transient state (reported; mtbx writes nothing there).
    pub run_root: PathBuf,
    /// The driver.
    pub driver: Driver,
    /// Whose store it is.
    pub owner: Owner,
    /// The file the settings came from, if any.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfFile {
    #[serde(default)]
    storage: StorageTable,
}

#[derive(Debug, Default, Deserialize)]
struct StorageTable {
    driver: Option<String>,
    graphroot: Option<String>,
    runroot: Option<String>,
    rootless_storage_path: Option<String>,
}

impl StorageConfig {
    /// The settings for `owner`, from the files podman reads and the
    /// process environment.
    pub fn load(owner: Owner) -> Result<StorageConfig, StorageError> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let explicit = env("CONTAINERS_STORAGE_CONF");
        let user_file = match &owner {
            Owner::Rootless { home, .. } => {
                let base = env("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
                Some(base.join("containers/storage.conf")).filter(|p| p.exists())
            }
            Owner::Root => None,
        };
        let system = ["/etc/containers/storage.conf", "/usr/share/containers/storage.conf"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        // For a rootless user only their own ~/.config file may set graphroot
        // and runroot; CONTAINERS_STORAGE_CONF stands in for the system file
        // (podman 4 then reads only rootless_storage_path and driver).
        let is_root = matches!(owner, Owner::Root);
        let (source, table, own_file) = match (explicit, user_file, system) {
            (Some(p), _, _) => (Some(p.clone()), read(&p)?, is_root),
            (None, Some(p), _) => (Some(p.clone()), read(&p)?, true),
            (None, None, Some(p)) => (Some(p.clone()), read(&p)?, is_root),
            (None, None, None) => (None, StorageTable::default(), false),
        };
        Self::resolve(owner, source, table, own_file, env("XDG_DATA_HOME"), env("XDG_RUNTIME_DIR"))
    }

    fn resolve(
        owner: Owner,
        source: Option<PathBuf>,
        table: StorageTable,
        own_file: bool,
        xdg_data: Option<PathBuf>,
        xdg_runtime: Option<PathBuf>,
    ) -> Result<StorageConfig, StorageError> {
        let (graph_root, run_root) = match &owner {
            Owner::Root => (
                table.graphroot.clone().map(PathBuf::from).unwrap_or("/var/lib/containers/storage".into()),
                table.runroot.clone().map(PathBuf::from).unwrap_or("/run/containers/storage".into()),
            ),
            Owner::Rootless { uid, home } => {
                let default_graph = || {
                    xdg_data.clone().unwrap_or_else(|| home.join(".local/share")).join("containers/storage")
                };
                let graph = match (own_file, &table.graphroot, &table.rootless_storage_path) {
                    (true, Some(g), _) => PathBuf::from(g),
                    (_, _, Some(p)) => PathBuf::from(
                        p.replace("$HOME", &home.to_string_lossy())
                            .replace("$UID", &uid.to_string())
                            .replace("$USER", &std::env::var("USER").unwrap_or_default()),
                    ),
                    _ => default_graph(),
                };
                let run = match (own_file, &table.runroot) {
                    (true, Some(r)) => PathBuf::from(r),
                    _ => xdg_runtime
                        .filter(|d| d.is_dir())
                        .map(|d| d.join("containers"))
                        .unwrap_or_else(|| PathBuf::from(format!("/tmp/containers-user-{uid}/containers"))),
                };
                (graph, run)
            }
        };
        let configured = std::env::var("STORAGE_DRIVER").ok().filter(|d| !d.is_empty()).or(table.driver);
        let driver = match configured {
            Some(name) => Driver::parse(&name)?,
            None => prior_driver(&graph_root).unwrap_or(default_driver(&owner)),
        };
        Ok(StorageConfig { graph_root, run_root, driver, owner, source })
    }

    /// The store of the user running mtbx (before any user namespace).
    pub fn for_current_user() -> Result<StorageConfig, StorageError> {
        Self::load(current_owner())
    }
}

/// Root, or the rootless user this process runs as (or acts for, inside
/// the user namespace mtbx makes for rootless pulls).
pub fn current_owner() -> Owner {
    let uid = crate::sys::userns::rootless_uid().unwrap_or_else(|| nix::unistd::getuid().as_raw());
    if uid == 0 {
        return Owner::Root;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
    Owner::Rootless { uid, home }
}

/// A driver that already has a store in `graph_root` wins, as in
/// containers/storage: the one holding layers, else any whose layer
/// directory podman already created (its first run creates them).
fn prior_driver(graph_root: &Path) -> Option<Driver> {
    let drivers = [Driver::Overlay, Driver::Vfs];
    let layers = |d: &Driver| graph_root.join(format!("{}-layers", d.name()));
    drivers
        .iter()
        .find(|d| layers(d).join("layers.json").exists())
        .or_else(|| drivers.iter().find(|d| layers(d).is_dir()))
        .copied()
}

/// What podman picks on a fresh store without a configured driver:
/// overlay for root; vfs for rootless users (podman 4, as Debian 12 and
/// Ubuntu 24.04 ship it; set `driver` in storage.conf to choose).
fn default_driver(owner: &Owner) -> Driver {
    match owner {
        Owner::Root => Driver::Overlay,
        Owner::Rootless { .. } => Driver::Vfs,
    }
}

fn read(path: &Path) -> Result<StorageTable, StorageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let conf: ConfFile = toml::from_str(&text).map_err(|source| {
        let at = source.span().map_or(0, |s| s.start).min(text.len());
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        let what =
            source.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        ConfigError::Syntax { path: path.to_path_buf(), line, column, what, source: Box::new(source) }
    })?;
    for (key, value) in [("graphroot", &conf.storage.graphroot), ("runroot", &conf.storage.runroot)] {
        if let Some(v) = value.as_deref().filter(|v| !Path::new(v).is_absolute()) {
            return Err(ConfigError::Relative { path: path.to_path_buf(), key, value: v.to_string() }.into());
        }
    }
    Ok(conf.storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> StorageTable {
        toml::from_str::<ConfFile>(text).unwrap().storage
    }

    #[test]
    fn root_defaults_and_file_values() {
        let c =
            StorageConfig::resolve(Owner::Root, None, StorageTable::default(), false, None, None).unwrap();
        assert_eq!(c.graph_root, PathBuf::from("/var/lib/containers/storage"));
        assert_eq!(c.run_root, PathBuf::from("/run/containers/storage"));
        let t = table("[storage]\ndriver = \"vfs\"\ngraphroot = \"/g\"\nrunroot = \"/r\"\n");
        let c = StorageConfig::resolve(Owner::Root, None, t, true, None, None).unwrap();
        assert_eq!((c.graph_root, c.run_root, c.driver), ("/g".into(), "/r".into(), Driver::Vfs));
    }

    #[test]
    fn rootless_ignores_system_graphroot_but_honours_rootless_storage_path() {
        let owner = Owner::Rootless { uid: 1001, home: "/home/u".into() };
        let t = table("[storage]\ngraphroot = \"/var/lib/x\"\n");
        let c = StorageConfig::resolve(owner.clone(), None, t, false, None, None).unwrap();
        assert_eq!(c.graph_root, PathBuf::from("/home/u/.local/share/containers/storage"));
        assert_eq!(c.run_root, PathBuf::from("/tmp/containers-user-1001/containers"));
        let t = table("[storage]\nrootless_storage_path = \"$HOME/store-$UID\"\n");
        let c = StorageConfig::resolve(owner.clone(), None, t, false, Some("/x".into()), None).unwrap();
        assert_eq!(c.graph_root, PathBuf::from("/home/u/store-1001"));
        let c = StorageConfig::resolve(owner, None, StorageTable::default(), false, Some("/x".into()), None)
            .unwrap();
        assert_eq!(c.graph_root, PathBuf::from("/x/containers/storage"));
    }

    #[test]
    fn syntax_errors_are_one_line_naming_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("storage.conf");
        std::fs::write(&p, "[storage]\ndriver = \"overlay\"\ngraphroot = /var/lib/x\n").unwrap();
        let e = read(&p).unwrap_err();
        let msg = e.to_string();
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(msg.starts_with(&format!("{}:3:13: not valid storage.conf: ", p.display())), "{msg}");
        assert_eq!(crate::cli::errors::kind_of(&anyhow::Error::new(e)), Kind::BadInput);
        // A value of the wrong type is placed as well.
        std::fs::write(&p, "[storage]\ndriver = 1\n").unwrap();
        let msg = read(&p).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("{}:2:10: ", p.display())) && msg.lines().count() == 1, "{msg}");
    }

    #[test]
    fn relative_roots_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("storage.conf");
        for (text, key) in [
            ("[storage]\ngraphroot = \"graph\"\nrunroot = \"/run/x\"\n", "graphroot"),
            ("[storage]\ngraphroot = \"/g\"\nrunroot = \"./run\"\n", "runroot"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = read(&p).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with(&p.display().to_string()) && msg.contains(key), "{msg}");
            assert_eq!(crate::cli::errors::kind_of(&anyhow::Error::new(e)), Kind::BadInput);
        }
    }

    #[test]
    fn unsupported_driver_is_a_clear_error() {
        let t = table("[storage]\ndriver = \"btrfs\"\n");
        let e = StorageConfig::resolve(Owner::Root, None, t, true, None, None).unwrap_err();
        assert!(e.to_string().contains("\"btrfs\" is not supported"), "{e}");
    }
}
