//! The real distribution registry (Debian's docker-registry) on 127.0.0.1
//! with a free port and storage in a temporary directory, and pushing
//! images into it with oci-client's push API (no skopeo needed).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::skip;

pub struct RealRegistry {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
    store: std::path::PathBuf,
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Blobs and manifests to push: digest -> bytes, and the manifests in
/// push order (children before the index that lists them) with their
/// media types; the last one is the tagged top.
#[derive(Default, Clone)]
pub struct Upload {
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub manifests: Vec<(String, Vec<u8>, String)>,
}

impl RealRegistry {
    /// Start a registry, or skip the test (returning None) when
    /// docker-registry is not installed.
    pub fn start(test: &str) -> Option<RealRegistry> {
        if Command::new("docker-registry").arg("--version").output().is_err() {
            skip(test, "docker-registry not installed (apt-get install docker-registry)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        Some(Self::serve(dir, store, "127.0.0.1", ""))
    }

    /// A second registry serving the same storage over TLS with `cert` and
    /// `key` (PEM files), as `localhost:PORT`: what is pushed to `self` is
    /// pulled from it.
    pub fn tls_twin(&self, cert: &std::path::Path, key: &std::path::Path) -> RealRegistry {
        let tls = format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display());
        Self::serve(tempfile::tempdir().unwrap(), self.store.clone(), "localhost", &tls)
    }

    fn serve(dir: tempfile::TempDir, store: std::path::PathBuf, host: &str, extra_http: &str) -> RealRegistry {
        let port = free_port();
        let addr = format!("{host}:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: mtbx-test\n{extra_http}",
                store.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reg = RealRegistry { child, addr, _dir: dir, store };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        reg
    }

    /// Push blobs, then manifests by digest, then tag the last manifest.
    pub fn push(&self, repo: &str, tag: &str, up: &Upload) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = oci_client::Client::try_from(oci_client::client::ClientConfig {
                protocol: oci_client::client::ClientProtocol::Http,
                ..Default::default()
            })
            .unwrap();
            let base = oci_client::Reference::with_tag(self.addr.clone(), repo.into(), tag.into());
            client
                .auth(
                    &base,
                    &oci_client::secrets::RegistryAuth::Anonymous,
                    oci_client::RegistryOperation::Push,
                )
                .await
                .unwrap();
            for (digest, bytes) in &up.blobs {
                client.push_blob(&base, bytes.clone(), digest).await.unwrap();
            }
            for (digest, bytes, media) in &up.manifests {
                let r = oci_client::Reference::with_digest(self.addr.clone(), repo.into(), digest.clone());
                client.push_manifest_raw(&r, bytes.clone(), media.parse().unwrap()).await.unwrap();
            }
            let (_, bytes, media) = up.manifests.last().expect("a manifest");
            client.push_manifest_raw(&base, bytes.clone(), media.parse().unwrap()).await.unwrap();
        });
    }

    /// Push an OCI layout directory's tags under `repo`.
    pub fn push_layout(&self, dir: &std::path::Path, repo: &str) {
        let read = |d: &str| std::fs::read(dir.join("blobs/sha256").join(&d[7..])).unwrap();
        for (tag, digest) in super::registry::tags(dir) {
            let mut up = Upload::default();
            collect(&read, &digest, &mut up);
            self.push(repo, &tag, &up);
        }
    }
}

fn collect(read: &dyn Fn(&str) -> Vec<u8>, digest: &str, up: &mut Upload) {
    let bytes = read(digest);
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    if let Some(entries) = m["manifests"].as_array() {
        for e in entries {
            collect(read, e["digest"].as_str().unwrap(), up);
        }
    } else {
        let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_string()];
        blobs.extend(
            m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()),
        );
        for b in blobs {
            let data = read(&b);
            up.blobs.insert(b, data);
        }
    }
    up.manifests.push((digest.to_string(), bytes, m["mediaType"].as_str().unwrap().to_string()));
}
