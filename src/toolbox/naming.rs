//! Toolbx's rules for which image and container a command means: the
//! distributions it knows (one row each), the default distribution and
//! release taken from the host's os-release, release syntax per
//! distribution, toolbox.conf's defaults, and the container name made from
//! an image. `toolbox` mode follows them exactly, so a Toolbx user's
//! scripts find the same containers; a new distribution is one row of
//! [`DISTROS`].

use std::path::{Path, PathBuf};

use crate::emu::arch::Arch;

/// A distribution with toolbox images.
#[derive(Debug)]
pub struct Distro {
    /// `--distro` value, and os-release's ID.
    pub name: &'static str,
    /// The prefix of its containers' names (`fedora-toolbox`).
    pub container_prefix: &'static str,
    /// The last path component of its images (`fedora-toolbox`).
    pub image_basename: &'static str,
    /// Whether `--distro` other than the host's needs `--release`.
    pub release_required: bool,
    /// The registry path in front of the basename, given the release.
    registry: fn(&str) -> String,
    /// Check a release and put it in canonical form, or a hint.
    parse_release: fn(&str) -> Result<String, &'static str>,
    /// The release when the host is this distribution.
    host_release: fn(&OsRelease) -> Option<String>,
}

impl Distro {
    /// Check `release` for this distribution: the canonical release, or
    /// the hint Toolbx gives.
    pub fn parse_release(&self, release: &str) -> Result<String, &'static str> {
        (self.parse_release)(release)
    }

    /// The fully qualified image of a release (`basename:release` under
    /// the distribution's registry).
    pub fn image(&self, release: &str) -> String {
        format!("{}/{}:{release}", (self.registry)(release), self.image_basename)
    }
}

fn version_id(os: &OsRelease) -> Option<String> {
    os.version_id.clone()
}

/// The distributions, by `--distro` name. Debian is mtbx's addition (the
/// toolbx-images project builds it); the rest are Toolbx's own.
pub const DISTROS: &[Distro] = &[
    Distro {
        name: "arch",
        container_prefix: "arch-toolbox",
        image_basename: "arch-toolbox",
        release_required: false,
        registry: |_| "quay.io/toolbx".into(),
        parse_release: |r| match r {
            "latest" | "rolling" | "" => Ok("latest".into()),
            _ => Err("The release must be 'latest'."),
        },
        host_release: |_| Some("latest".into()),
    },
    Distro {
        name: "debian",
        container_prefix: "debian-toolbox",
        image_basename: "debian-toolbox",
        release_required: true,
        registry: |_| "quay.io/toolbx-images".into(),
        parse_release: |r| match r.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n.to_string()),
            _ => match r {
                "testing" | "unstable" => Ok(r.into()),
                _ => Err("The release must be a positive integer, 'testing' or 'unstable'."),
            },
        },
        host_release: version_id,
    },
    Distro {
        name: "fedora",
        container_prefix: "fedora-toolbox",
        image_basename: "fedora-toolbox",
        release_required: true,
        registry: |_| "registry.fedoraproject.org".into(),
        parse_release: parse_release_fedora,
        host_release: version_id,
    },
    Distro {
        name: "rhel",
        container_prefix: "rhel-toolbox",
        image_basename: "toolbox",
        release_required: true,
        registry: |r| format!("registry.access.redhat.com/ubi{}", r.split('.').next().unwrap_or(r)),
        parse_release: parse_release_rhel,
        host_release: version_id,
    },
    Distro {
        name: "ubuntu",
        container_prefix: "ubuntu-toolbox",
        image_basename: "ubuntu-toolbox",
        release_required: true,
        registry: |_| "quay.io/toolbx".into(),
        parse_release: parse_release_ubuntu,
        host_release: version_id,
    },
];

/// A distribution by name.
pub fn distro(name: &str) -> Option<&'static Distro> {
    DISTROS.iter().find(|d| d.name == name)
}

fn parse_release_fedora(release: &str) -> Result<String, &'static str> {
    let n = release.strip_prefix(['f', 'F']).unwrap_or(release);
    match n.parse::<i64>() {
        Ok(v) if v > 0 => Ok(n.to_string()),
        _ => Err("The release must be a positive integer."),
    }
}

fn parse_release_rhel(release: &str) -> Result<String, &'static str> {
    const FORMAT: &str = "The release must be in the '<major>.<minor>' format.";
    if !release.contains('.') {
        return Err(FORMAT);
    }
    match release.parse::<f32>() {
        Ok(v) if v > 0.0 => Ok(release.to_string()),
        Ok(_) => Err("The release must be a positive number."),
        Err(_) => Err(FORMAT),
    }
}

fn parse_release_ubuntu(release: &str) -> Result<String, &'static str> {
    const FORMAT: &str = "The release must be in the 'YY.MM' format.";
    let parts: Vec<&str> = release.split('.').collect();
    let [year, month] = parts[..] else { return Err(FORMAT) };
    let y: i64 = year.parse().map_err(|_| FORMAT)?;
    if y < 4 {
        return Err("The release year must be 4 or more.");
    }
    if year.chars().count() > 2 {
        return Err("The release year cannot have more than two digits.");
    }
    if y < 10 && year.chars().count() == 2 {
        return Err("The release year cannot have a leading zero.");
    }
    let m: i64 = month.parse().map_err(|_| FORMAT)?;
    if !(1..=12).contains(&m) {
        return Err("The release month must be between 01 and 12.");
    }
    if month.chars().count() != 2 {
        return Err("The release month must have two digits.");
    }
    Ok(release.to_string())
}

/// The fields of os-release that decide the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// ID (`fedora`).
    pub id: Option<String>,
    /// VERSION_ID (`42`).
    pub version_id: Option<String>,
}

impl OsRelease {
    /// Parse os-release(5) text.
    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
            match k.trim() {
                "ID" => os.id = Some(v),
                "VERSION_ID" => os.version_id = Some(v),
                _ => {}
            }
        }
        os
    }

    /// The host's: /etc/os-release, else /usr/lib/os-release.
    pub fn host() -> OsRelease {
        ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|t| OsRelease::parse(&t))
            .unwrap_or_default()
    }
}

/// Toolbx's fallback where the host is no distribution it knows.
const FALLBACK_DISTRO: &str = "fedora";
const FALLBACK_RELEASE: &str = "44";

/// The default distribution and release: the host's when it is a known
/// distribution, Fedora's fallback otherwise.
pub fn host_defaults(os: &OsRelease) -> (&'static Distro, String) {
    let known = os.id.as_deref().and_then(distro);
    match known.and_then(|d| (d.host_release)(os).map(|r| (d, r))) {
        Some(found) => found,
        None => (distro(FALLBACK_DISTRO).expect("fedora is a row"), FALLBACK_RELEASE.to_string()),
    }
}

/// toolbox.conf's `[general]` keys, plus mtbx's `arch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct General {
    /// Default distribution.
    pub distro: Option<String>,
    /// Default release.
    pub release: Option<String>,
    /// Default image.
    pub image: Option<String>,
    /// Default architecture (mtbx's own key).
    pub arch: Option<String>,
    /// QEMU CPU model for containers of `arch` (mtbx's own key).
    pub cpu: Option<String>,
    /// A directory under which each container mtbx creates gets a home of
    /// its own, named as the container (mtbx's own key; `~/` is the home).
    pub home_prefix: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    general: General,
}

/// A toolbox.conf that cannot be used; one line naming file and line.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl crate::error::Classify for ConfigError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::BadInput
    }
}

/// The toolbox.conf files, system first: a later one overrides.
pub fn config_paths() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/etc/containers/toolbox.conf")];
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    if let Some(dir) = user {
        v.push(dir.join("containers/toolbox.conf"));
    }
    v
}

/// Read and merge toolbox.conf files (missing ones are skipped).
pub fn load_config(paths: &[PathBuf]) -> Result<General, ConfigError> {
    let mut merged = General::default();
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ConfigError { path: path.clone(), line: None, message: e.to_string() }),
        };
        let parsed: ConfigFile = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let message = e.message().lines().next().unwrap_or("invalid TOML").to_string();
            ConfigError { path: path.clone(), line, message }
        })?;
        let g = parsed.general;
        merged.distro = g.distro.or(merged.distro);
        merged.release = g.release.or(merged.release);
        merged.image = g.image.or(merged.image);
        merged.arch = g.arch.or(merged.arch);
        merged.cpu = g.cpu.or(merged.cpu);
        merged.home_prefix = g.home_prefix.or(merged.home_prefix);
        if merged.cpu.is_some() && merged.arch.is_none() {
            return Err(ConfigError {
                path: path.clone(),
                line: None,
                message: "`cpu` needs `arch` beside it: a CPU model belongs to one architecture".into(),
            });
        }
    }
    Ok(merged)
}

/// The `cpu` of a toolbox.conf for a container of `arch`: the model when
/// the file's `arch` is that architecture, None otherwise (an `arch` the
/// table does not know is the file's error, named as such).
pub fn cpu_for_arch(conf: &General, arch: &'static Arch) -> Result<Option<String>, ConfigError> {
    let (Some(cpu), Some(conf_arch)) = (&conf.cpu, &conf.arch) else { return Ok(None) };
    let parsed = Arch::parse(conf_arch).map_err(|e| ConfigError {
        path: PathBuf::from("toolbox.conf"),
        line: None,
        message: format!("arch: {e}"),
    })?;
    Ok(std::ptr::eq(parsed, arch).then(|| cpu.clone()))
}

/// toolbox.conf's `home_prefix` as a directory: `~/` is `home`, and
/// anything else must be absolute.
pub fn home_prefix(prefix: &str, home: &Path) -> Result<PathBuf, ConfigError> {
    let dir = match prefix.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(prefix),
    };
    if !dir.is_absolute() {
        return Err(ConfigError {
            path: PathBuf::from("toolbox.conf"),
            line: None,
            message: format!(
                "home_prefix {}: give an absolute path or one under ~/",
                crate::text::quoted(prefix)
            ),
        });
    }
    Ok(dir)
}

/// Why a container or image name could not be resolved; the CLI words
/// each as Toolbx does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A user-given name podman would refuse.
    #[error("invalid container name {}: use letters, digits, '_', '.' and '-', starting with a letter or digit", crate::text::quoted(.0))]
    ContainerNameInvalid(String),
    /// The name made from the image is not a valid name.
    #[error("container name {} generated from image is invalid: name one", crate::text::quoted(.0))]
    ContainerNameFromImageInvalid(String),
    /// `--distro` is not known.
    #[error("distribution {0} is unsupported")]
    DistroUnsupported(String),
    /// A distribution other than the host's needs a release.
    #[error("distribution {0} needs a release")]
    DistroWithoutRelease(String),
    /// A release that the distribution's syntax refuses.
    #[error("{0}")]
    Release(&'static str),
}

impl crate::error::Classify for ResolveError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::BadInput
    }
}

/// What a command resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The container name.
    pub container: String,
    /// The image, as the user or the defaults name it (maybe unqualified).
    pub image: String,
    /// The release.
    pub release: String,
}

/// The defaults a resolution starts from: the host's, and toolbox.conf.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// The default distribution.
    pub distro: &'static Distro,
    /// The default release.
    pub release: String,
    /// toolbox.conf.
    pub config: General,
}

impl Defaults {
    /// The host's defaults and these toolbox.conf values.
    pub fn new(os: &OsRelease, config: General) -> Defaults {
        let (distro, release) = host_defaults(os);
        Defaults { distro, release, config }
    }

    /// The host's os-release and the toolbox.conf files, read once per
    /// command: every choice of container and image starts here.
    pub fn load() -> Result<Defaults, ConfigError> {
        Ok(Defaults::new(&OsRelease::host(), load_config(&config_paths())?))
    }

    /// The default container's name (what `toolbox enter` enters).
    pub fn default_container(&self) -> Option<String> {
        resolve(None, None, None, None, self).ok().map(|r| r.container)
    }
}

/// Toolbx's resolution of a container name, distribution, image and
/// release given on the command line, over the defaults.
pub fn resolve(
    container: Option<&str>,
    distro_cli: Option<&str>,
    image_cli: Option<&str>,
    release_cli: Option<&str>,
    d: &Defaults,
) -> Result<Resolved, ResolveError> {
    let conf = &d.config;
    let from_config = distro_cli.is_none() && conf.distro.is_some();
    let name = distro_cli.or(conf.distro.as_deref()).unwrap_or(d.distro.name);
    let distro = distro(name).ok_or_else(|| ResolveError::DistroUnsupported(name.to_string()))?;
    let mut release = release_cli.unwrap_or("").to_string();
    if std::ptr::eq(distro, d.distro) {
        if release_cli.is_none() {
            release = conf.release.clone().unwrap_or_else(|| d.release.clone());
        }
    } else if distro.release_required {
        match (release_cli, &conf.release) {
            (None, None) => return Err(ResolveError::DistroWithoutRelease(name.to_string())),
            (None, Some(r)) => release = r.clone(),
            _ => {}
        }
    } else if from_config && release_cli.is_none() {
        if let Some(r) = &conf.release {
            release = r.clone();
        }
    }
    let release = distro.parse_release(&release).map_err(ResolveError::Release)?;
    let release_or_default = || conf.release.clone().unwrap_or_else(|| d.release.clone());
    let (image, release) = match image_cli {
        None => match &conf.image {
            Some(i) if distro_cli.is_none() && release_cli.is_none() => {
                let tag = image_tag(i);
                (i.clone(), tag.map(str::to_string).unwrap_or_else(release_or_default))
            }
            _ => (format!("{}:{release}", distro.image_basename), release),
        },
        Some(i) => (i.to_string(), image_tag(i).map(str::to_string).unwrap_or_else(release_or_default)),
    };
    let container = match container {
        Some(c) => {
            if !valid_container_name(c) {
                return Err(ResolveError::ContainerNameInvalid(c.to_string()));
            }
            c.to_string()
        }
        None => {
            let mut c = container_prefix_for_image(&image).to_string();
            if let Some(tag) = image_tag(&image) {
                c = format!("{c}-{tag}");
            }
            if !valid_container_name(&c) {
                return Err(ResolveError::ContainerNameFromImageInvalid(c));
            }
            c
        }
    };
    Ok(Resolved { container, image, release })
}

/// podman's rule for container names, as Toolbx spells it in messages.
pub const CONTAINER_NAME_REGEXP: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]*";

/// Whether podman takes this container name.
pub fn valid_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn container_prefix_for_image(image: &str) -> &str {
    let base = image_basename(image);
    DISTROS.iter().find(|d| d.image_basename == base).map(|d| d.container_prefix).unwrap_or(base)
}

/// Whether the reference starts with a registry (a first component with a
/// dot or a colon, or `localhost`).
pub fn image_has_domain(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains(['.', ':']) || first == "localhost",
        None => false,
    }
}

fn image_path(image: &str) -> &str {
    if image_has_domain(image) {
        &image[image.find('/').unwrap_or(0)..]
    } else {
        image
    }
}

/// The last path component, without the tag, as Go's filepath.Base
/// gives it to Toolbx (`.` for nothing, `/` for only slashes), so names
/// made from odd references match Toolbx's.
pub fn image_basename(image: &str) -> &str {
    let rest = image_path(image);
    let path = rest.split_once(':').map_or(rest, |(p, _)| p);
    if path.is_empty() {
        return ".";
    }
    match path.trim_end_matches('/') {
        "" => "/",
        p => p.rsplit('/').next().unwrap_or(p),
    }
}

/// The tag, if there is one.
pub fn image_tag(image: &str) -> Option<&str> {
    image_path(image).split_once(':').map(|(_, t)| t)
}

/// Whether a reference may be an image id (6 to 64 hex digits).
pub fn image_can_be_id(image: &str) -> bool {
    (6..=64).contains(&image.len()) && image.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The fully qualified name of an image of a known distribution
/// (`fedora-toolbox:42` -> `registry.fedoraproject.org/fedora-toolbox:42`);
/// None for an unqualified image no distribution has.
pub fn fully_qualified(image: &str, release: &str) -> Option<String> {
    if image_has_domain(image) {
        return Some(image.to_string());
    }
    let base = image_basename(image);
    let d = DISTROS.iter().find(|d| d.image_basename == base)?;
    Some(format!("{}/{image}", (d.registry)(release)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fedora42() -> Defaults {
        Defaults::new(
            &OsRelease { id: Some("fedora".into()), version_id: Some("42".into()) },
            General::default(),
        )
    }

    fn r(
        c: Option<&str>,
        d: Option<&str>,
        i: Option<&str>,
        rel: Option<&str>,
    ) -> Result<Resolved, ResolveError> {
        resolve(c, d, i, rel, &fedora42())
    }

    #[test]
    fn defaults_follow_the_host() {
        let res = r(None, None, None, None).unwrap();
        assert_eq!(
            res,
            Resolved {
                container: "fedora-toolbox-42".into(),
                image: "fedora-toolbox:42".into(),
                release: "42".into()
            }
        );
        let unknown =
            Defaults::new(&OsRelease { id: Some("gentoo".into()), version_id: None }, General::default());
        assert_eq!((unknown.distro.name, unknown.release.as_str()), ("fedora", "44"));
        let debian = Defaults::new(
            &OsRelease { id: Some("debian".into()), version_id: Some("12".into()) },
            General::default(),
        );
        assert_eq!(debian.default_container().unwrap(), "debian-toolbox-12");
    }

    #[test]
    fn distros_and_releases_as_toolbx() {
        assert_eq!(r(None, Some("fedora"), None, Some("f34")).unwrap().container, "fedora-toolbox-34");
        assert_eq!(r(None, Some("arch"), None, None).unwrap().container, "arch-toolbox-latest");
        assert_eq!(r(None, Some("arch"), None, Some("rolling")).unwrap().image, "arch-toolbox:latest");
        assert_eq!(r(None, Some("rhel"), None, Some("8.10")).unwrap().container, "rhel-toolbox-8.10");
        assert_eq!(
            fully_qualified("toolbox:8.10", "8.10").unwrap(),
            "registry.access.redhat.com/ubi8/toolbox:8.10"
        );
        assert_eq!(r(None, Some("ubuntu"), None, Some("16.04")).unwrap().container, "ubuntu-toolbox-16.04");
        assert_eq!(r(None, Some("foo"), None, None), Err(ResolveError::DistroUnsupported("foo".into())));
        assert_eq!(
            r(None, Some("ubuntu"), None, None),
            Err(ResolveError::DistroWithoutRelease("ubuntu".into()))
        );
        for (d, rel, hint) in [
            ("fedora", "foo", "The release must be a positive integer."),
            ("fedora", "-3", "The release must be a positive integer."),
            ("arch", "foo", "The release must be 'latest'."),
            ("rhel", "8", "The release must be in the '<major>.<minor>' format."),
            ("rhel", "-2.1", "The release must be a positive number."),
            ("ubuntu", "20", "The release must be in the 'YY.MM' format."),
            ("ubuntu", "3.10", "The release year must be 4 or more."),
            ("ubuntu", "202.4", "The release year cannot have more than two digits."),
            ("ubuntu", "08.04", "The release year cannot have a leading zero."),
            ("ubuntu", "20.13", "The release month must be between 01 and 12."),
            ("ubuntu", "20.4", "The release month must have two digits."),
        ] {
            assert_eq!(r(None, Some(d), None, Some(rel)), Err(ResolveError::Release(hint)), "{d} {rel}");
        }
    }

    #[test]
    fn names_from_images() {
        assert_eq!(r(None, None, Some("fedora-toolbox:34"), None).unwrap().container, "fedora-toolbox-34");
        assert_eq!(r(None, None, Some("quay.io/x/busybox"), None).unwrap().container, "busybox");
        assert_eq!(r(None, None, Some("localhost:5000/a/b:1"), None).unwrap().container, "b-1");
        assert_eq!(
            r(None, None, Some("quay.io/toolbx/ubuntu-toolbox:20.04"), None).unwrap().release,
            "20.04"
        );
        assert_eq!(
            r(None, None, Some("foo.org/"), None),
            Err(ResolveError::ContainerNameFromImageInvalid("/".into()))
        );
        assert_eq!(
            r(None, None, Some("ßpeci@l"), None),
            Err(ResolveError::ContainerNameFromImageInvalid("ßpeci@l".into()))
        );
        assert_eq!(
            r(Some("ßpeci@l.N@m€"), None, None, None),
            Err(ResolveError::ContainerNameInvalid("ßpeci@l.N@m€".into()))
        );
        assert!(image_can_be_id("1a2b3c") && !image_can_be_id("fedora") && !image_can_be_id("abc"));
    }

    #[test]
    fn toolbox_conf_gives_defaults_and_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys.conf");
        let user = dir.path().join("user.conf");
        std::fs::write(&sys, "[general]\ndistro = \"ubuntu\"\nrelease = \"20.04\"\n").unwrap();
        std::fs::write(&user, "[general]\narch = \"arm64\"\ncpu = \"cortex-a53\"\n").unwrap();
        let g = load_config(&[sys.clone(), user.clone(), dir.path().join("missing")]).unwrap();
        assert_eq!(g.arch.as_deref(), Some("arm64"));
        let arm64 = Arch::parse("aarch64").unwrap();
        assert_eq!(cpu_for_arch(&g, arm64).unwrap().as_deref(), Some("cortex-a53"));
        assert_eq!(cpu_for_arch(&g, Arch::parse("ppc64le").unwrap()).unwrap(), None, "another arch");
        let lone = dir.path().join("lone.conf");
        std::fs::write(&lone, "[general]\ncpu = \"max\"\n").unwrap();
        assert!(load_config(&[lone]).unwrap_err().to_string().contains("`cpu` needs `arch`"));
        let d = Defaults::new(&OsRelease { id: Some("fedora".into()), version_id: Some("42".into()) }, g);
        assert_eq!(d.default_container().unwrap(), "ubuntu-toolbox-20.04");
        std::fs::write(&user, "[general]\nrelease = \n").unwrap();
        let e = load_config(std::slice::from_ref(&user)).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with(&format!("{}:2: ", user.display())) && !text.contains('\n'), "{text}");
        std::fs::write(&user, "[general]\nfoo = 1\n").unwrap();
        assert!(load_config(&[user]).unwrap_err().to_string().contains("unknown field"));
    }

    #[test]
    fn home_prefix_is_absolute_or_under_the_home() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("toolbox.conf");
        std::fs::write(&conf, "[general]\nhome_prefix = \"~/boxes\"\n").unwrap();
        let g = load_config(&[conf]).unwrap();
        let home = Path::new("/home/ann");
        assert_eq!(
            home_prefix(g.home_prefix.as_deref().unwrap(), home).unwrap(),
            Path::new("/home/ann/boxes")
        );
        assert_eq!(home_prefix("/srv/boxes", home).unwrap(), Path::new("/srv/boxes"));
        let e = home_prefix("boxes", home).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }
}
