//! A set of toolboxes described in one TOML file (`mtbx assemble`),
//! distrobox's `assemble` with architectures. Each table is a box; its
//! keys are `mtbx create`'s flags, so a box is created by create's own
//! parser and checks and can say nothing create could not. What a box
//! was made from is recorded in a label (the table, as JSON), so a later
//! run knows, key by key, whether the container still matches its table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::engine::ContainerInfo;

/// The label that holds the table a container was assembled from.
pub const LABEL_ASSEMBLE: &str = "io.github.mtbx.assemble";

/// The most a file may be, and the most boxes it may hold: a file for a
/// set of boxes, not a data set.
const MAX_FILE: u64 = 1 << 20;
const MAX_BOXES: usize = 256;

/// One box of the file. The keys are create's flags; lists are repeated
/// flags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BoxDef {
    /// `--image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `--distro`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    /// `--release`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// `--arch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// `--cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// `--auto-stop`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_stop: bool,
    /// `--home`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// `--volume`, each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// `--env`, each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `--device`, each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// `--packages`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// `--init-hook`, each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_hooks: Vec<String>,
}

impl BoxDef {
    /// create's command line for this box named `name`.
    pub fn create_argv(&self, name: &str) -> Vec<String> {
        let mut a: Vec<String> = vec!["mtbx".into(), "create".into(), name.into()];
        let mut one = |flag: &str, v: &Option<String>| {
            if let Some(v) = v {
                a.push(format!("--{flag}={v}"));
            }
        };
        one("image", &self.image);
        one("distro", &self.distro);
        one("release", &self.release);
        one("arch", &self.arch);
        one("cpu", &self.cpu);
        one("home", &self.home);
        if self.auto_stop {
            a.push("--auto-stop".into());
        }
        for (flag, values) in [
            ("volume", &self.volumes),
            ("env", &self.env),
            ("device", &self.devices),
            ("packages", &self.packages),
            ("init-hook", &self.init_hooks),
        ] {
            a.extend(values.iter().map(|v| format!("--{flag}={v}")));
        }
        a
    }

    /// The keys whose values differ between `self` and `other`.
    pub fn differences(&self, other: &BoxDef) -> Vec<&'static str> {
        let (a, b) =
            (serde_json::to_value(self).unwrap_or_default(), serde_json::to_value(other).unwrap_or_default());
        let keys = [
            "image",
            "distro",
            "release",
            "arch",
            "cpu",
            "auto-stop",
            "home",
            "volumes",
            "env",
            "devices",
            "packages",
            "init-hooks",
        ];
        keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).collect()
    }

    /// The label create records for this box.
    pub fn label(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a file is refused.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// It cannot be read.
    #[error("cannot read {}: {source}", crate::text::quoted_path(.path))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not a file of boxes.
    #[error("{} is not a file of boxes: {why}", crate::text::quoted_path(.path))]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        why: String,
    },
}

impl crate::error::Classify for AssembleError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::BadInput
    }
}

/// The boxes of a file's text, by name, in the file's order of names.
pub fn parse(text: &str, path: &std::path::Path) -> Result<BTreeMap<String, BoxDef>, AssembleError> {
    let bad = |why: String| AssembleError::Parse { path: path.to_path_buf(), why };
    let boxes: BTreeMap<String, BoxDef> = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
    if boxes.is_empty() {
        return Err(bad("it has no box (a table such as [arm-dev] with arch = \"arm64\")".into()));
    }
    if boxes.len() > MAX_BOXES {
        return Err(bad(format!("more than {MAX_BOXES} boxes")));
    }
    for name in boxes.keys() {
        crate::toolbox::check_name(name).map_err(|e| bad(e.to_string()))?;
    }
    Ok(boxes)
}

/// The file's text: a regular file, at most [`MAX_FILE`] bytes.
pub fn read(path: &std::path::Path) -> Result<String, AssembleError> {
    use std::io::Read;
    let read_err = |source| AssembleError::Read { path: path.to_path_buf(), source };
    let file = crate::sys::files::open_regular(path, true).map_err(read_err)?;
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text).map_err(read_err)?;
    if text.len() as u64 > MAX_FILE {
        return Err(AssembleError::Parse {
            path: path.to_path_buf(),
            why: format!("larger than {MAX_FILE} bytes"),
        });
    }
    Ok(text)
}

/// The table a container was assembled from, when it was.
pub fn recorded(c: &ContainerInfo) -> Option<BoxDef> {
    c.label(LABEL_ASSEMBLE).and_then(|l| serde_json::from_str(l).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[arm-dev]
arch = "arm64"
distro = "debian"
release = "12"
packages = ["build-essential", "gdb"]
volumes = ["/srv/data:/data:ro"]

[native]
image = "localhost/debian-toolbox:12"
env = ["EDITOR=vi"]
init-hooks = ["echo hi > /etc/motd"]
"#;

    #[test]
    fn a_file_of_boxes_becomes_creates_command_lines() {
        let boxes = parse(FILE, std::path::Path::new("boxes.toml")).unwrap();
        assert_eq!(boxes.keys().collect::<Vec<_>>(), ["arm-dev", "native"]);
        assert_eq!(
            boxes["arm-dev"].create_argv("arm-dev"),
            [
                "mtbx",
                "create",
                "arm-dev",
                "--distro=debian",
                "--release=12",
                "--arch=arm64",
                "--volume=/srv/data:/data:ro",
                "--packages=build-essential",
                "--packages=gdb"
            ]
        );
        assert_eq!(
            boxes["native"].create_argv("native"),
            [
                "mtbx",
                "create",
                "native",
                "--image=localhost/debian-toolbox:12",
                "--env=EDITOR=vi",
                "--init-hook=echo hi > /etc/motd"
            ]
        );
    }

    #[test]
    fn the_recorded_table_tells_which_keys_differ() {
        let boxes = parse(FILE, std::path::Path::new("boxes.toml")).unwrap();
        let old = boxes["arm-dev"].clone();
        let recorded: BoxDef = serde_json::from_str(&old.label()).unwrap();
        assert_eq!(recorded, old, "the label reads back as the table");
        let new = BoxDef { arch: Some("ppc64le".into()), packages: vec!["gdb".into()], ..old.clone() };
        assert_eq!(old.differences(&new), ["arch", "packages"]);
        assert!(old.differences(&old).is_empty());
    }

    #[test]
    fn what_is_not_a_file_of_boxes_is_refused_in_one_line() {
        let p = std::path::Path::new("boxes.toml");
        for (text, why) in [
            ("", "no box"),
            ("[a]\nimage = 3\n", "invalid type"),
            ("[a]\nflavour = \"x\"\n", "unknown field"),
            ("[\"bad name\"]\narch = \"arm64\"\n", "bad name"),
            ("arch = \"arm64\"\n", "invalid type"),
        ] {
            let e = parse(text, p).unwrap_err().to_string();
            assert!(
                e.starts_with("'boxes.toml' is not a file of boxes: ") && !e.contains('\n'),
                "{text:?}: {e}"
            );
            assert!(e.contains(why) || why == "bad name", "{text:?}: {e}");
        }
    }
}
