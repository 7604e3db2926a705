//! mtbx against the real distribution registry (Debian's docker-registry)
//! and skopeo, on the same images.
//!
//! A registry is started on 127.0.0.1 with a free port and filesystem
//! storage in a temporary directory; the project's OCI fixtures are pushed
//! into it with oci-client's push API (no skopeo needed for that). Then
//! `mtbx inspect` must report what was pushed, and, where skopeo is
//! installed, agree with `skopeo inspect --override-arch` on Digest,
//! Architecture, Os, Layers and sizes.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::registry::{fixtures_root, tags};
use common::{mtbx, skip, text};
use serde_json::Value;

struct RealRegistry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RealRegistry {
    fn start(test: &str) -> Option<RealRegistry> {
        if Command::new("docker-registry").arg("--version").output().is_err() {
            skip(test, "docker-registry not installed (apt-get install docker-registry)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: mtbx-test\n",
                dir.path().join("store").display()
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
        let reg = RealRegistry { child, addr, _dir: dir };
        let start = Instant::now();
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        reg.push_fixtures();
        Some(reg)
    }

    /// Push every fixture layout, blobs first, then manifests by digest,
    /// then each tag.
    fn push_fixtures(&self) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = oci_client::Client::try_from(oci_client::client::ClientConfig {
                protocol: oci_client::client::ClientProtocol::Http,
                ..Default::default()
            })
            .unwrap();
            for layout in std::fs::read_dir(fixtures_root()).unwrap() {
                let dir = layout.unwrap().path();
                let name = dir.file_name().unwrap().to_string_lossy().into_owned();
                let base = oci_client::Reference::with_tag(self.addr.clone(), name.clone(), "1".into());
                client
                    .auth(
                        &base,
                        &oci_client::secrets::RegistryAuth::Anonymous,
                        oci_client::RegistryOperation::Push,
                    )
                    .await
                    .unwrap();
                for (tag, digest) in tags(&dir) {
                    push_manifest(&client, &dir, &self.addr, &name, &digest).await;
                    let bytes = std::fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap();
                    let media: Value = serde_json::from_slice(&bytes).unwrap();
                    let r = oci_client::Reference::with_tag(self.addr.clone(), name.clone(), tag);
                    client
                        .push_manifest_raw(&r, bytes, media["mediaType"].as_str().unwrap().parse().unwrap())
                        .await
                        .unwrap();
                }
            }
        });
    }
}

fn push_manifest<'a>(
    client: &'a oci_client::Client,
    dir: &'a std::path::Path,
    addr: &'a str,
    name: &'a str,
    digest: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
    Box::pin(async move {
        let read = |d: &str| std::fs::read(dir.join("blobs/sha256").join(&d[7..])).unwrap();
        let bytes = read(digest);
        let m: Value = serde_json::from_slice(&bytes).unwrap();
        let r = oci_client::Reference::with_digest(addr.into(), name.into(), digest.into());
        if let Some(entries) = m["manifests"].as_array() {
            for e in entries {
                push_manifest(client, dir, addr, name, e["digest"].as_str().unwrap()).await;
            }
        } else {
            let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_string()];
            blobs.extend(
                m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()),
            );
            for b in blobs {
                client.push_blob(&r, read(&b), &b).await.unwrap();
            }
        }
        client.push_manifest_raw(&r, bytes, m["mediaType"].as_str().unwrap().parse().unwrap()).await.unwrap();
    })
}

fn mtbx_inspect(addr: &str, image: &str, arch: &str) -> std::process::Output {
    mtbx(&["inspect", "--tls-verify=false", "--format", "json", "--arch", arch, &format!("{addr}/{image}")])
        .env("HOME", "/nonexistent")
        .env("CONTAINERS_REGISTRIES_CONF", "/nonexistent")
        .output()
        .unwrap()
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo").args(args).env("HOME", "/nonexistent").output().unwrap()
}

#[test]
fn inspect_reports_what_was_pushed_to_the_real_registry() {
    let Some(reg) = RealRegistry::start("inspect_reports_what_was_pushed_to_the_real_registry") else {
        return;
    };
    let want_index = tags(&fixtures_root().join("multi"))[0].1.clone();
    for arch in ["amd64", "arm64", "arm", "ppc64le", "s390x", "386", "riscv64"] {
        let out = mtbx_inspect(&reg.addr, "multi:1", arch);
        assert!(out.status.success(), "{arch}: {}", text(&out.stderr));
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["Digest"], want_index, "the registry serves the pushed bytes unchanged");
        assert_eq!(j["Architecture"], arch);
    }
    // The registry's own 404s and Accept rules come through as mtbx errors.
    let out = mtbx_inspect(&reg.addr, "multi:nope", "arm64");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = mtbx_inspect(&reg.addr, "single:1", "arm64");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = mtbx_inspect(&reg.addr, "fedora-toolbox:42-aarch64", "arm64");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn mtbx_and_skopeo_agree() {
    let test = "mtbx_and_skopeo_agree";
    if Command::new("skopeo").arg("--version").output().is_err() {
        return skip(test, "skopeo not installed (apt-get install skopeo)");
    }
    let Some(reg) = RealRegistry::start(test) else { return };
    let cases: &[(&str, &[&str])] = &[
        ("multi:1", &["amd64", "arm64", "arm", "ppc64le", "s390x", "386", "riscv64"]),
        ("dockerlist:1", &["amd64", "arm64"]),
        ("fedora-toolbox:42", &["amd64", "arm64"]),
        ("single:1", &["amd64"]),
        ("armold:1", &["arm"]),
    ];
    let mut compared = 0;
    for (image, arches) in cases {
        for arch in *arches {
            let ours = mtbx_inspect(&reg.addr, image, arch);
            assert!(ours.status.success(), "{image} {arch}: {}", text(&ours.stderr));
            let ours: Value = serde_json::from_slice(&ours.stdout).unwrap();
            let reference = format!("docker://{}/{image}", reg.addr);
            let mut args = vec!["inspect", "--tls-verify=false", "--no-tags", "--override-arch", arch];
            // skopeo does not fall back across ARM variants: name the one mtbx chose.
            let variant = ours["Variant"].as_str().unwrap_or_default().to_string();
            if *arch == "arm" {
                args.extend(["--override-variant", &variant]);
            }
            args.push(&reference);
            let theirs = skopeo(&args);
            assert!(theirs.status.success(), "skopeo {image} {arch}: {}", text(&theirs.stderr));
            let theirs: Value = serde_json::from_slice(&theirs.stdout).unwrap();
            for field in ["Name", "Digest", "Architecture", "Os", "Layers", "Created", "Labels", "Env"] {
                assert_eq!(ours[field], theirs[field], "{image} --arch {arch}: {field}");
            }
            // Sizes: skopeo's raw manifest of the selected instance.
            let by_digest = format!(
                "docker://{}/{}@{}",
                reg.addr,
                image.split(':').next().unwrap(),
                ours["ManifestDigest"].as_str().unwrap()
            );
            let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &by_digest]);
            assert!(raw.status.success(), "{}", text(&raw.stderr));
            let raw: Value = serde_json::from_slice(&raw.stdout).unwrap();
            let sizes: Vec<u64> =
                raw["layers"].as_array().unwrap().iter().map(|l| l["size"].as_u64().unwrap()).collect();
            let ours_sizes: Vec<u64> =
                ours["LayersData"].as_array().unwrap().iter().map(|l| l["Size"].as_u64().unwrap()).collect();
            assert_eq!(ours_sizes, sizes, "{image} --arch {arch}: layer sizes");
            assert_eq!(ours["CompressedSize"].as_u64().unwrap(), sizes.iter().sum::<u64>());
            compared += 1;
        }
    }
    assert_eq!(compared, cases.iter().map(|(_, a)| a.len()).sum::<usize>());

    // Where they differ on purpose: skopeo silently hands back amd64 for a
    // single-arch amd64 image asked for as arm64; mtbx refuses.
    let theirs = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--override-arch",
        "arm64",
        &format!("docker://{}/single:1", reg.addr),
    ]);
    let theirs: Value = serde_json::from_slice(&theirs.stdout).unwrap();
    assert_eq!(theirs["Architecture"], "amd64");
    let ours = mtbx_inspect(&reg.addr, "single:1", "arm64");
    assert_eq!(ours.status.code(), Some(3));
}
