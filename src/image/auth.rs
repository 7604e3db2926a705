//! Registry credentials from the files podman, skopeo and docker write
//! (containers-auth.json(5)), so `podman login` is all a user needs.
//!
//! Search order: `--authfile`, `$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`,
//! `${DOCKER_CONFIG:-~/.docker}/config.json`; the first file with an entry
//! for the image wins. Within a file the most specific key wins
//! (`reg/ns/repo`, `reg/ns`, `reg`), then keys normalised docker-style
//! (`https://index.docker.io/v1/` for docker.io).

use std::path::{Path, PathBuf};

use base64::Engine;

use crate::image::reference::ImageRef;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
    /// Where they came from, for messages (`--creds` or a file path).
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {})", self.username, self.source)
    }
}

/// Errors reading credentials that the user must fix.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `--creds` without a colon.
    #[error("--creds must be USER:PASSWORD")]
    BadCreds,
    /// An auth file named explicitly that cannot be read.
    #[error("cannot read auth file {}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An auth file named explicitly that is not JSON.
    #[error("cannot use auth file {}", path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
}

/// Parse `--creds USER:PASSWORD`.
pub fn parse_creds(s: &str) -> Result<Credentials, AuthError> {
    let (u, p) = s.split_once(':').ok_or(AuthError::BadCreds)?;
    if u.is_empty() {
        return Err(AuthError::BadCreds);
    }
    Ok(Credentials { username: u.into(), password: p.into(), source: "--creds".into() })
}

/// The auth files to search, in order; `explicit` (from `--authfile`) or
/// `$REGISTRY_AUTH_FILE` replaces the runtime-dir file.
pub fn auth_files(explicit: Option<&Path>) -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = env("HOME");
    let mut files = Vec::new();
    if let Some(p) = explicit.map(Path::to_path_buf).or_else(|| env("REGISTRY_AUTH_FILE")) {
        files.push(p);
    } else if let Some(run) = env("XDG_RUNTIME_DIR") {
        files.push(run.join("containers/auth.json"));
    }
    if let Some(cfg) = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        files.push(cfg.join("containers/auth.json"));
    }
    if let Some(d) = env("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker"))) {
        files.push(d.join("config.json"));
    }
    files
}

/// Find credentials for `image` in `files` (see the module docs). An
/// explicitly named file that is broken is an error; other broken or
/// missing files are skipped.
pub fn lookup(
    image: &ImageRef,
    files: &[PathBuf],
    explicit: Option<&Path>,
) -> Result<Option<Credentials>, AuthError> {
    for path in files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(source) if explicit == Some(path.as_path()) => {
                return Err(AuthError::Unreadable { path: path.clone(), source })
            }
            Err(_) => continue,
        };
        let doc: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(source) if explicit == Some(path.as_path()) => {
                return Err(AuthError::NotJson { path: path.clone(), source })
            }
            Err(e) => {
                tracing::warn!("ignoring unreadable auth file {}: {e}", path.display());
                continue;
            }
        };
        if let Some(c) = find_in(&doc, image, path) {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn find_in(doc: &serde_json::Value, image: &ImageRef, path: &Path) -> Option<Credentials> {
    let auths = doc.get("auths")?.as_object()?;
    let decode = |entry: &serde_json::Value| -> Option<Credentials> {
        let b64 = entry.get("auth")?.as_str()?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (u, p) = raw.split_once(':')?;
        Some(Credentials {
            username: u.into(),
            password: p.trim_end_matches('\0').into(),
            source: path.display().to_string(),
        })
    };
    // Most specific key first: registry/ns/repo, registry/ns, registry.
    let mut key = image.name();
    loop {
        if let Some(c) = auths.get(&key).and_then(decode) {
            return Some(c);
        }
        match key.rfind('/') {
            Some(i) => key.truncate(i),
            None => break,
        }
    }
    let wanted = normalize(&image.registry);
    auths.iter().find(|(k, _)| normalize(k) == wanted).and_then(|(_, v)| decode(v))
}

/// `https://index.docker.io/v1/` -> `index.docker.io`; docker.io's other
/// names -> `index.docker.io`.
fn normalize(key: &str) -> String {
    let k = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::reference::{parse, Parsed};

    fn img(s: &str) -> ImageRef {
        match parse(s).unwrap() {
            Parsed::Qualified(r) => r,
            _ => unreachable!(),
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn most_specific_key_then_normalised_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.json");
        let doc = serde_json::json!({"auths": {
            "quay.io": {"auth": b64("all:quay")},
            "quay.io/team": {"auth": b64("team:secret")},
            "https://index.docker.io/v1/": {"auth": b64("hub:pw\0")},
            "http://127.0.0.1:5000": {"auth": b64("local:pw")},
        }});
        std::fs::write(&f, doc.to_string()).unwrap();
        let files = vec![f.clone()];
        let get = |s: &str| lookup(&img(s), &files, None).unwrap().map(|c| (c.username, c.password));
        assert_eq!(get("quay.io/team/tool:1"), Some(("team".into(), "secret".into())));
        assert_eq!(get("quay.io/other/tool"), Some(("all".into(), "quay".into())));
        assert_eq!(get("docker.io/library/fedora"), Some(("hub".into(), "pw".into())));
        assert_eq!(get("127.0.0.1:5000/x"), Some(("local".into(), "pw".into())));
        assert_eq!(get("ghcr.io/x/y"), None);
    }

    #[test]
    fn first_file_with_an_entry_wins_and_broken_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        let c = dir.path().join("c.json");
        std::fs::write(&a, "{ not json").unwrap();
        std::fs::write(&b, serde_json::json!({"auths": {"quay.io": {"auth": b64("b:1")}}}).to_string())
            .unwrap();
        std::fs::write(&c, serde_json::json!({"auths": {"quay.io": {"auth": b64("c:1")}}}).to_string())
            .unwrap();
        let files = vec![dir.path().join("missing.json"), a.clone(), b, c];
        let got = lookup(&img("quay.io/x"), &files, None).unwrap().unwrap();
        assert_eq!(got.username, "b");
        // Named explicitly, a broken file is an error, not a silent skip.
        assert!(lookup(&img("quay.io/x"), &files, Some(&a)).is_err());
    }

    #[test]
    fn creds_flag() {
        let c = parse_creds("alice:s3:cret").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "s3:cret"));
        assert!(parse_creds("nocolon").is_err());
        assert!(parse_creds(":pw").is_err());
    }
}
