//! What `list` shows, mtbx's way (from the store, with architectures)
//! and Toolbx's (podman's labels), and completion's names.

use super::*;

impl Toolbox {
    /// What `list` shows: mtbx's containers, and the images that are
    /// toolbox images or that those containers use.
    pub fn listing(&self) -> Result<Listing, OpsError> {
        let containers: Vec<ContainerRow> = self
            .containers()?
            .into_iter()
            .map(|c| ContainerRow {
                name: c.name().to_string(),
                arch: c.label(LABEL_ARCH).unwrap_or("-").to_string(),
                cpu: c.label(LABEL_CPU).filter(|m| !m.is_empty()).map(str::to_string),
                image: c.image.clone(),
                status: c.state.clone(),
                created: c.created,
                auto_stop: c.label(LABEL_AUTO_STOP) == Some("true"),
                // A label edited by hand is shown as nothing, not an error.
                options: c
                    .labels
                    .as_ref()
                    .and_then(|l| BoxOptions::from_labels(l).ok())
                    .unwrap_or_default()
                    .shown(),
            })
            .collect();
        let store = Store::open(StorageConfig::for_current_user()?)?;
        let mut images = Vec::new();
        for i in store.images()? {
            let config = i.parsed_config();
            let toolbox_label = config
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .is_some_and(|l| l.get(LABEL_TOOLBOX).is_some_and(|v| v == "true"));
            let used = i.record.names.iter().any(|n| containers.iter().any(|c| &c.image == n));
            if !(toolbox_label || used) {
                continue;
            }
            // One row per name, as Toolbx lists images; `<none>` for none.
            let names =
                if i.record.names.is_empty() { vec!["<none>".to_string()] } else { i.record.names.clone() };
            for name in names {
                images.push(ImageRow {
                    name,
                    id: i.record.id.clone(),
                    arch: config.platform().arch(),
                    size: i.size,
                    created: i.record.created.clone(),
                });
            }
        }
        Ok(Listing { containers, images })
    }

    /// The containers Toolbx lists: those with its label (or its old
    /// one), mtbx's among them, sorted by name.
    pub fn toolbx_containers(&self) -> Result<Vec<ContainerInfo>, OpsError> {
        Ok(self.podman.all_containers()?.into_iter().filter(|c| is_toolbx(c.labels.as_ref())).collect())
    }

    /// The images Toolbx lists: those with its label, one row per name
    /// (`<none>` for none), sorted by name.
    pub fn toolbx_images(&self) -> Result<Vec<ToolbxImage>, OpsError> {
        let mut seen = std::collections::BTreeSet::new();
        let mut rows = Vec::new();
        for i in self.podman.images()? {
            if !seen.insert(i.id.clone()) || !is_toolbx(i.labels.as_ref()) {
                continue;
            }
            match i.names.filter(|n| !n.is_empty()) {
                None => {
                    rows.push(ToolbxImage { id: i.id.clone(), name: "<none>".into(), created: i.created })
                }
                Some(names) => rows.extend(names.into_iter().map(|name| ToolbxImage {
                    id: i.id.clone(),
                    name,
                    created: i.created,
                })),
            }
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// Every image name in the store (for completion).
    pub fn image_names(&self) -> Result<Vec<String>, OpsError> {
        Ok(self.podman.images()?.into_iter().flat_map(|i| i.names.unwrap_or_default()).collect())
    }
}

/// One container in `list`.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerRow {
    /// Name.
    pub name: String,
    /// Platform (`arm64/v8`).
    pub arch: String,
    /// The QEMU CPU model its programs run under; None: QEMU's default.
    pub cpu: Option<String>,
    /// Image name.
    pub image: String,
    /// podman's state.
    pub status: String,
    /// Unix seconds.
    pub created: i64,
    /// Made with `create --auto-stop`.
    pub auto_stop: bool,
    /// Its own home, volumes, variables and devices.
    #[serde(flatten)]
    pub options: crate::toolbox::options::Shown,
}

/// One image in `list`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    /// Its first name.
    pub name: String,
    /// Its id.
    pub id: String,
    /// Its architecture.
    pub arch: String,
    /// Bytes on disk.
    pub size: u64,
    /// Creation time, RFC 3339.
    pub created: Option<String>,
}

/// What `list` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// mtbx's containers.
    pub containers: Vec<ContainerRow>,
    /// Toolbox images and those the containers use.
    pub images: Vec<ImageRow>,
}

/// One image in Toolbx's `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolbxImage {
    /// Its id.
    pub id: String,
    /// One of its names, or `<none>`.
    pub name: String,
    /// Creation time, unix seconds.
    pub created: i64,
}

/// Whether these labels are Toolbx's (or its old name's).
pub fn is_toolbx(labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| {
        l.get(LABEL_TOOLBOX).is_some_and(|v| v == "true")
            || l.get(LABEL_TOOLBOX_OLD).is_some_and(|v| v == "true")
    })
}
