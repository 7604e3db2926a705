//! containers-registries.conf(5): short-name resolution, aliases, insecure
//! and blocked registries, location rewrites and mirrors, read from the same
//! files podman and skopeo read, so a name means the same image to all three.
//!
//! Files: `$CONTAINERS_REGISTRIES_CONF` alone when set (or `--registries-conf`);
//! otherwise the user's `~/.config/containers/registries.conf` if it exists,
//! else `/etc/containers/registries.conf`, then the drop-ins in
//! `/etc/containers/registries.conf.d/*.conf` and the user's
//! `registries.conf.d`, in name order, each overriding what came before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Classify, Kind};
use crate::image::reference::{self, ImageRef, Parsed, DOCKER_HUB};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfFile {
    unqualified_search_registries: Option<Vec<String>>,
    short_name_mode: Option<String>,
    #[serde(default)]
    registry: Vec<RegistryConf>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RegistryConf {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror: Vec<MirrorConf>,
}

#[derive(Debug, Clone, Deserialize)]
struct MirrorConf {
    location: String,
    #[serde(default)]
    insecure: bool,
}

/// One `[[registry]]` table after merging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// What references it applies to (`example.com/ns`, `*.example.com`).
    pub prefix: String,
    /// Where those references are really fetched from.
    pub location: String,
    /// Plain http and unverified TLS allowed.
    pub insecure: bool,
    /// Pulls refused.
    pub blocked: bool,
    /// Tried before `location`, in order: (location, insecure).
    pub mirrors: Vec<(String, bool)>,
}

/// The merged configuration.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// unqualified-search-registries.
    pub search: Vec<String>,
    /// `[[registry]]` tables.
    pub registries: Vec<Registry>,
    /// `[aliases]`: short name -> qualified name.
    pub aliases: BTreeMap<String, String>,
    /// The files read, for messages.
    pub sources: Vec<PathBuf>,
}

/// How a typed name became a qualified reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// It named its registry.
    Qualified,
    /// An `[aliases]` entry.
    Alias,
    /// The only unqualified-search registry.
    SearchRegistry,
    /// No registries.conf at all: Docker's convention.
    DockerDefault,
}

/// A place to fetch an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The reference rewritten for this place.
    pub image: ImageRef,
    /// Plain http allowed.
    pub insecure: bool,
}

/// Failures; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    /// Bad reference syntax.
    #[error(transparent)]
    Reference(#[from] reference::RefError),
    /// A file named explicitly (`--registries-conf`,
    /// `CONTAINERS_REGISTRIES_CONF`) that cannot be read: podman refuses
    /// it too, rather than quietly using no configuration.
    #[error("cannot read registries.conf {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file that is not valid registries.conf.
    #[error("cannot parse {}: {}{why}", path.display(), line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line of the mistake, when the parser knows it.
        line: Option<usize>,
        /// What is wrong, as one line (toml's own message spans several,
        /// with a drawing of the spot).
        why: String,
    },
    /// A short name with several candidate registries and no alias.
    #[error("short name '{name}' is ambiguous: it could be {}; give the full name (short-name mode is enforcing without a terminal)", candidates.join(" or "))]
    Ambiguous {
        /// The name typed.
        name: String,
        /// The fully qualified choices.
        candidates: Vec<String>,
    },
    /// A short name and nowhere to search.
    #[error("short name '{0}' did not resolve: no alias and no unqualified-search-registries in registries.conf; give the full name, e.g. docker.io/library/{0}")]
    NoSearchRegistries(String),
    /// The registry is blocked in registries.conf.
    #[error("registry {0} is blocked in registries.conf")]
    Blocked(String),
}

impl Registries {
    /// Load from the standard locations (see the module documentation), or
    /// from `explicit` alone.
    pub fn load(explicit: Option<&Path>) -> Result<Registries, RegistriesError> {
        let env = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(path) = explicit.map(Path::to_path_buf).or(env) {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| RegistriesError::Read { path: path.clone(), source })?;
            let mut out = Registries::default();
            out.merge(parse(&text, &path)?);
            out.sources.push(path);
            return Ok(out);
        }
        let user_dir = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("containers"));
        let mut files = Vec::new();
        let user_main = user_dir.as_ref().map(|d| d.join("registries.conf"));
        match user_main {
            Some(f) if f.exists() => files.push(f),
            _ => files.push(PathBuf::from("/etc/containers/registries.conf")),
        }
        let mut dirs = vec![PathBuf::from("/etc/containers/registries.conf.d")];
        dirs.extend(user_dir.map(|d| d.join("registries.conf.d")));
        for dir in dirs {
            let mut dropins: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            dropins.retain(|p| p.extension().is_some_and(|e| e == "conf"));
            dropins.sort();
            files.extend(dropins);
        }
        Registries::from_files(&files)
    }

    /// Merge these files in order; missing files are skipped.
    pub fn from_files(files: &[PathBuf]) -> Result<Registries, RegistriesError> {
        let mut out = Registries::default();
        for path in files {
            let Ok(text) = std::fs::read_to_string(path) else { continue };
            out.merge(parse(&text, path)?);
            out.sources.push(path.clone());
        }
        Ok(out)
    }

    /// Parse registries.conf text, for tests and callers with text in hand.
    pub fn parse_str(text: &str) -> Result<Registries, RegistriesError> {
        let mut out = Registries::default();
        out.merge(parse(text, Path::new("<text>"))?);
        out.sources.push("<text>".into());
        Ok(out)
    }

    fn merge(&mut self, conf: ConfFile) {
        let _ = conf.short_name_mode; // mtbx always behaves as enforcing without a TTY.
        if let Some(search) = conf.unqualified_search_registries {
            self.search = search;
        }
        for r in conf.registry {
            let location = r.location.clone().unwrap_or_default();
            let prefix = r.prefix.clone().unwrap_or_else(|| location.clone());
            let reg = Registry {
                prefix: prefix.clone(),
                location: if location.is_empty() { prefix.clone() } else { location },
                insecure: r.insecure,
                blocked: r.blocked,
                mirrors: r.mirror.iter().map(|m| (m.location.clone(), m.insecure)).collect(),
            };
            self.registries.retain(|x| x.prefix != prefix);
            self.registries.push(reg);
        }
        self.aliases.extend(conf.aliases);
    }

    /// Turn what a user typed into a qualified reference.
    pub fn resolve(&self, input: &str) -> Result<(ImageRef, Resolution), RegistriesError> {
        let (path, tag, digest) = match reference::parse(input)? {
            Parsed::Qualified(r) => return Ok((r, Resolution::Qualified)),
            Parsed::Short { path, tag, digest } => (path, tag, digest),
        };
        let qualify = |full: String, how| -> Result<(ImageRef, Resolution), RegistriesError> {
            let mut r = match reference::parse(&full)? {
                Parsed::Qualified(r) => r,
                Parsed::Short { .. } => return Err(RegistriesError::NoSearchRegistries(path.clone())),
            };
            if tag.is_some() || digest.is_some() {
                r.tag = tag.clone();
                r.digest = digest.clone();
            }
            Ok((r, how))
        };
        if let Some(target) = self.aliases.get(&path) {
            return qualify(target.clone(), Resolution::Alias);
        }
        match self.search.as_slice() {
            [] if self.sources.is_empty() => {
                qualify(format!("{DOCKER_HUB}/{path}"), Resolution::DockerDefault)
            }
            [] => Err(RegistriesError::NoSearchRegistries(path)),
            [only] => qualify(format!("{only}/{path}"), Resolution::SearchRegistry),
            many => {
                let candidates = many
                    .iter()
                    .map(|reg| match reference::parse(&format!("{reg}/{path}")) {
                        Ok(Parsed::Qualified(r)) => r.name(),
                        _ => format!("{reg}/{path}"),
                    })
                    .collect();
                Err(RegistriesError::Ambiguous { name: path, candidates })
            }
        }
    }

    /// The `[[registry]]` table that applies: the longest matching prefix.
    pub fn find(&self, image: &ImageRef) -> Option<&Registry> {
        let full = image.name();
        self.registries.iter().filter(|r| prefix_matches(&r.prefix, &full)).max_by_key(|r| r.prefix.len())
    }

    /// Where to fetch `image` from, in order: mirrors, then the (possibly
    /// rewritten) location. An explicit `tls_verify` wins over
    /// registries.conf either way, as with podman's `--tls-verify`.
    pub fn endpoints(
        &self,
        image: &ImageRef,
        tls_verify: Option<bool>,
    ) -> Result<Vec<Endpoint>, RegistriesError> {
        let insecure_if = |insecure: bool| match tls_verify {
            Some(verify) => !verify,
            None => insecure,
        };
        let Some(reg) = self.find(image) else {
            return Ok(vec![Endpoint { image: image.clone(), insecure: insecure_if(false) }]);
        };
        if reg.blocked {
            return Err(RegistriesError::Blocked(reg.prefix.clone()));
        }
        let rewrite = |location: &str| -> ImageRef {
            let full = image.name();
            // A wildcard prefix names hosts, not a path to rewrite.
            let new = if reg.prefix.starts_with("*.") {
                full
            } else {
                format!("{location}{}", &full[reg.prefix.len().min(full.len())..])
            };
            match reference::parse(&new) {
                Ok(Parsed::Qualified(mut r)) => {
                    r.tag = image.tag.clone();
                    r.digest = image.digest.clone();
                    r
                }
                _ => image.clone(),
            }
        };
        let mut out: Vec<Endpoint> = reg
            .mirrors
            .iter()
            .map(|(loc, insecure)| Endpoint { image: rewrite(loc), insecure: insecure_if(*insecure) })
            .collect();
        out.push(Endpoint { image: rewrite(&reg.location), insecure: insecure_if(reg.insecure) });
        Ok(out)
    }
}

/// One file's text, its syntax errors as one line with the line number.
fn parse(text: &str, path: &Path) -> Result<ConfFile, RegistriesError> {
    toml::from_str(text).map_err(|e| RegistriesError::Parse {
        path: path.to_path_buf(),
        // A mistake found at the end of the text (an unclosed array) is
        // on the last line, not on the empty one after the final newline.
        line: e.span().map(|s| text[..s.start.min(text.trim_end().len())].matches('\n').count() + 1),
        why: crate::text::one_line(e.message(), crate::text::SHOWN_CHARS),
    })
}

/// A prefix matches at a path boundary (`quay.io/a` matches `quay.io/a/b`,
/// not `quay.io/ab`); `*.example.com` matches any subdomain's images.
fn prefix_matches(prefix: &str, full: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = full.split('/').next().unwrap_or("");
        return host.ends_with(&format!(".{domain}"));
    }
    full == prefix || (full.starts_with(prefix) && full.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// The user's input (a reference, registries.conf, flags) is wrong.
impl Classify for RegistriesError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]
short-name-mode = "enforcing"

[aliases]
"fedora-toolbox" = "registry.fedoraproject.org/fedora-toolbox"
"ubuntu-toolbox" = "quay.io/toolbx/ubuntu-toolbox"

[[registry]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
prefix = "example.com/internal"
location = "mirror.internal:5000/ns"

[[registry.mirror]]
location = "fast.internal/ns"

[[registry]]
location = "evil.example.org"
blocked = true
"#;

    #[test]
    fn aliases_decide_short_names() {
        let r = Registries::parse_str(CONF).unwrap();
        let (img, how) = r.resolve("fedora-toolbox:42").unwrap();
        assert_eq!(img.to_string(), "registry.fedoraproject.org/fedora-toolbox:42");
        assert_eq!(how, Resolution::Alias);
        let (img, _) = r.resolve("ubuntu-toolbox").unwrap();
        assert_eq!(img.to_string(), "quay.io/toolbx/ubuntu-toolbox:latest");
    }

    #[test]
    fn an_ambiguous_short_name_lists_the_choices() {
        let r = Registries::parse_str(CONF).unwrap();
        let e = r.resolve("fedora").unwrap_err().to_string();
        assert!(e.contains("registry.fedoraproject.org/fedora or docker.io/library/fedora"), "{e}");
    }

    #[test]
    fn one_search_registry_or_none() {
        let r = Registries::parse_str("unqualified-search-registries = [\"docker.io\"]").unwrap();
        let (img, how) = r.resolve("fedora").unwrap();
        assert_eq!(
            (img.to_string(), how),
            ("docker.io/library/fedora:latest".into(), Resolution::SearchRegistry)
        );
        let r = Registries::parse_str("").unwrap();
        assert!(matches!(r.resolve("fedora"), Err(RegistriesError::NoSearchRegistries(_))));
        // No configuration at all: Docker's shorthand.
        let (img, how) = Registries::default().resolve("fedora").unwrap();
        assert_eq!(
            (img.to_string(), how),
            ("docker.io/library/fedora:latest".into(), Resolution::DockerDefault)
        );
    }

    #[test]
    fn insecure_blocked_rewritten_and_mirrored() {
        let r = Registries::parse_str(CONF).unwrap();
        let (img, _) = r.resolve("127.0.0.1:5000/multi:1").unwrap();
        let ep = r.endpoints(&img, None).unwrap();
        assert_eq!(ep.len(), 1);
        assert!(ep[0].insecure);
        assert!(!r.endpoints(&img, Some(true)).unwrap()[0].insecure, "--tls-verify=true wins");

        let (img, _) = r.resolve("example.com/internal/tool:2").unwrap();
        let ep = r.endpoints(&img, None).unwrap();
        let names: Vec<String> = ep.iter().map(|e| e.image.to_string()).collect();
        assert_eq!(names, ["fast.internal/ns/tool:2", "mirror.internal:5000/ns/tool:2"]);

        let (img, _) = r.resolve("evil.example.org/x").unwrap();
        assert!(matches!(r.endpoints(&img, None), Err(RegistriesError::Blocked(_))));

        let (img, _) = r.resolve("quay.io/a/b").unwrap();
        let ep = r.endpoints(&img, Some(false)).unwrap();
        assert!(ep[0].insecure);
        assert!(!r.endpoints(&img, None).unwrap()[0].insecure);
    }

    #[test]
    fn prefixes_match_at_path_boundaries() {
        assert!(prefix_matches("quay.io/a", "quay.io/a/b"));
        assert!(!prefix_matches("quay.io/a", "quay.io/ab"));
        assert!(prefix_matches("*.example.com", "reg.example.com/x"));
        assert!(!prefix_matches("*.example.com", "example.com/x"));
    }

    #[test]
    fn syntax_errors_are_one_line_with_the_line_number() {
        let e = Registries::parse_str("[[registry]]\nlocation = \n").unwrap_err().to_string();
        assert!(e.starts_with("cannot parse <text>: line 2: "), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error() {
        let e = Registries::load(Some(Path::new("/nonexistent/registries.conf"))).unwrap_err();
        assert!(matches!(e, RegistriesError::Read { .. }), "{e}");
    }

    #[test]
    fn bad_toml_names_the_file() {
        let e = Registries::parse_str("unqualified-search-registries = 3").unwrap_err();
        assert!(e.to_string().starts_with("cannot parse <text>:"), "{e}");
    }
}
