//! Image references as people type them, parsed the way podman and skopeo
//! read them (the distribution/reference grammar).
//!
//! A reference is *qualified* when its first path component names a
//! registry (it contains `.` or `:`, or is `localhost`); otherwise it is a
//! *short name* that registries.conf must resolve (module
//! [`crate::image::registries_conf`]). Keeping the two apart is what lets mtbx refuse an
//! ambiguous short name instead of silently pulling from the wrong registry.

use std::fmt;

use crate::error::{Classify, Kind};
use crate::text::quoted;

/// The registry Docker's shorthands mean.
pub const DOCKER_HUB: &str = "docker.io";

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host, with port if any (`registry.fedoraproject.org`,
    /// `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path within the registry (`fedora-toolbox`,
    /// `library/fedora`).
    pub repository: String,
    /// Tag, if given.
    pub tag: Option<String>,
    /// Digest (`sha256:<hex>`), if given; it wins over the tag when both are.
    pub digest: Option<String>,
}

/// A reference that is either qualified or still a short name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Names its registry.
    Qualified(ImageRef),
    /// A short name: repository path without registry, plus tag/digest.
    Short {
        /// The path as typed (`fedora`, `toolbx/ubuntu-toolbox`).
        path: String,
        /// Tag, if given.
        tag: Option<String>,
        /// Digest, if given.
        digest: Option<String>,
    },
}

/// The longest name (registry and repository, without tag or digest)
/// the distribution spec lets clients assume a registry takes.
pub const MAX_NAME_LEN: usize = 255;

/// A reference that does not follow the grammar.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {}: {why}", quoted(.given))]
pub struct RefError {
    /// What was given.
    pub given: String,
    /// What is wrong with it.
    pub why: String,
}

impl ImageRef {
    /// What a tag-less, digest-less reference means: `latest`.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The oci-client form, by digest when there is one.
    pub fn to_oci(&self) -> oci_client::Reference {
        match &self.digest {
            Some(d) => {
                oci_client::Reference::with_digest(self.registry.clone(), self.repository.clone(), d.clone())
            }
            None => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                self.tag_or_latest().to_string(),
            ),
        }
    }
}

impl fmt::Display for ImageRef {
    /// `registry/repository[:tag][@digest]`, with `:latest` when neither is
    /// given, as skopeo prints names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => write!(f, ":{t}@{d}"),
            (Some(t), None) => write!(f, ":{t}"),
            (None, Some(d)) => write!(f, "@{d}"),
            (None, None) => write!(f, ":latest"),
        }
    }
}

/// Parse what a user typed. A `docker://` prefix is accepted and dropped.
pub fn parse(input: &str) -> Result<Parsed, RefError> {
    let err = |why: &str| RefError { given: input.to_string(), why: why.to_string() };
    let s = input.trim();
    let s = s.strip_prefix("docker://").unwrap_or(s);
    if s.is_empty() {
        return Err(err("empty"));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(parse_digest(d).map_err(|w| err(&w))?)),
        None => (s, None),
    };
    // A tag follows the last ':' that comes after the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (&rest[..at], Some(rest[at + 1..].to_string()))
        }
        None => (rest, None),
    };
    if let Some(t) = &tag {
        if !valid_tag(t) {
            return Err(err("a tag is 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"));
        }
    }
    let (first, remainder) = match name.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    let is_registry = remainder.is_some() && (first.contains(['.', ':']) || first == "localhost");
    if is_registry {
        let registry = match first {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            other => other.to_string(),
        };
        let mut repository = remainder.unwrap_or_default().to_string();
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        check_length(&format!("{registry}/{repository}")).map_err(|w| err(&w))?;
        check_path(&repository).map_err(|w| err(&w))?;
        if registry.chars().any(|c| c.is_ascii_uppercase() || c.is_whitespace() || c == '/') {
            return Err(err("the registry host has invalid characters"));
        }
        Ok(Parsed::Qualified(ImageRef { registry, repository, tag, digest }))
    } else {
        check_length(name).map_err(|w| err(&w))?;
        check_path(name).map_err(|w| err(&w))?;
        Ok(Parsed::Short { path: name.to_string(), tag, digest })
    }
}

/// Checked before any request: a longer name cannot exist on a registry.
fn check_length(name: &str) -> Result<(), String> {
    match name.chars().count() {
        n if n > MAX_NAME_LEN => {
            Err(format!("the name is {n} characters, longer than {MAX_NAME_LEN} characters"))
        }
        _ => Ok(()),
    }
}

fn parse_digest(d: &str) -> Result<String, String> {
    let Some((algo, hex)) = d.split_once(':') else {
        return Err("a digest is algorithm:hex, e.g. sha256:...".into());
    };
    let ok = match algo {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => return Err(format!("unsupported digest algorithm {} (sha256 or sha512)", quoted(algo))),
    };
    if !ok || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("{} is not a valid {algo} digest", quoted(d)));
    }
    Ok(d.to_string())
}

/// Whether `t` is a valid tag.
pub fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Repository path components: lowercase alphanumerics joined by `.`, `_`,
/// `__` or runs of `-`.
fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("no repository name".into());
    }
    for comp in path.split('/') {
        let ok = !comp.is_empty()
            && comp.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && comp.as_bytes()[0].is_ascii_alphanumeric()
            && comp.as_bytes()[comp.len() - 1].is_ascii_alphanumeric()
            && !comp.contains("..")
            && !comp.contains("___");
        if !ok {
            return Err(format!(
                "repository component {} must be lowercase letters and digits, separated by '.', '_' or '-'",
                quoted(comp)
            ));
        }
    }
    Ok(())
}

/// The user's input (a reference, registries.conf, flags) is wrong.
impl Classify for RefError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> ImageRef {
        match parse(s).unwrap() {
            Parsed::Qualified(r) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn qualified_references() {
        let r = q("registry.fedoraproject.org/fedora-toolbox:42");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("registry.fedoraproject.org", "fedora-toolbox", Some("42"))
        );
        assert_eq!(r.to_string(), "registry.fedoraproject.org/fedora-toolbox:42");
        let r = q("127.0.0.1:5000/multi/arch");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "multi/arch", None)
        );
        assert_eq!(r.to_string(), "127.0.0.1:5000/multi/arch:latest");
        let r = q("localhost/x:1");
        assert_eq!(r.registry, "localhost");
        let r = q("docker://quay.io/toolbx/ubuntu-toolbox:24.04");
        assert_eq!(r.name(), "quay.io/toolbx/ubuntu-toolbox");
    }

    #[test]
    fn docker_hub_shorthands_inside_docker_io() {
        assert_eq!(q("docker.io/fedora").to_string(), "docker.io/library/fedora:latest");
        assert_eq!(q("index.docker.io/library/busybox:1").to_string(), "docker.io/library/busybox:1");
        assert_eq!(q("docker.io/someone/tool").repository, "someone/tool");
    }

    #[test]
    fn digests_and_tag_plus_digest() {
        let r = q(&format!("quay.io/a/b@{D}"));
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (None, Some(D)));
        assert_eq!(r.to_string(), format!("quay.io/a/b@{D}"));
        let r = q(&format!("quay.io/a/b:1.0@{D}"));
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (Some("1.0"), Some(D)));
        assert_eq!(r.to_oci().digest(), Some(D));
    }

    #[test]
    fn short_names_stay_short() {
        assert_eq!(
            parse("fedora").unwrap(),
            Parsed::Short { path: "fedora".into(), tag: None, digest: None }
        );
        assert_eq!(
            parse("toolbx/ubuntu-toolbox:24.04").unwrap(),
            Parsed::Short { path: "toolbx/ubuntu-toolbox".into(), tag: Some("24.04".into()), digest: None }
        );
        // "fedora:42" is a short name with a tag, not a registry with a port.
        assert!(matches!(parse("fedora:42").unwrap(), Parsed::Short { .. }));
    }

    #[test]
    fn names_longer_than_the_protocol_allows_are_refused() {
        let name = format!("quay.io/{}", "a".repeat(MAX_NAME_LEN - 8));
        assert!(parse(&format!("{name}:1")).is_ok(), "255 characters is fine");
        let e = parse(&format!("{name}b:1")).unwrap_err();
        assert!(e.why.contains("longer than 255 characters"), "{e}");
        assert!(parse(&"a".repeat(MAX_NAME_LEN + 1)).is_err(), "short names too");
    }

    #[test]
    fn bad_references_say_why() {
        for bad in
            ["", "Fedora", "quay.io/A/b", "x:", "x:-1", "quay.io/a//b", "a@sha256:12", "a@md5:00", "x:a b"]
        {
            let e = parse(bad).unwrap_err();
            assert!(e.to_string().starts_with(&format!("invalid image reference '{bad}'")), "{e}");
        }
    }
}
