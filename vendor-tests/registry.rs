//! mtbx against the real distribution registry (Debian's docker-registry)
//! and skopeo, on the same images.
//!
//! A registry is started on 127.0.0.1 with a free port and filesystem
//! storage in a temporary directory; the project's OCI fixtures are pushed
//! into it with oci-client's push API (no skopeo needed for that). Then
//! `mtbx inspect` must report what was pushed, and, where skopeo is
//! installed, agree with `skopeo inspect --override-arch` on Digest,
//! Architecture, Os, Layers and sizes.

use std::process::Command;

use common::real_registry::RealRegistry;
use common::registry::{fixtures_root, tags};
use common::{mtbx, skip, text};
use serde_json::Value;

/// A real registry with every fixture layout pushed under its own name.
fn registry_with_fixtures(test: &str) -> Option<RealRegistry> {
    let reg = RealRegistry::start(test)?;
    for layout in std::fs::read_dir(fixtures_root()).unwrap() {
        let dir = layout.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        reg.push_layout(&dir, &name);
    }
    Some(reg)
}

fn mtbx_inspect(addr: &str, image: &str, arch: &str) -> std::process::Output {
    mtbx(&["inspect", "--tls-verify=false", "--format", "json", "--arch", arch, &format!("{addr}/{image}")])
        .env("HOME", "/nonexistent")
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
        .output()
        .unwrap()
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo").args(args).env("HOME", "/nonexistent").output().unwrap()
}

#[test]
fn inspect_reports_what_was_pushed_to_the_real_registry() {
    let Some(reg) = registry_with_fixtures("inspect_reports_what_was_pushed_to_the_real_registry") else {
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
    let Some(reg) = registry_with_fixtures(test) else { return };
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

/// A registry with a certificate of its own CA is trusted through
/// certs.d, as podman and skopeo trust it: `mtbx inspect` refuses it
/// without the CA and reads it with the CA in the user's
/// `~/.config/containers/certs.d/HOST:PORT/`, verification on.
#[test]
fn a_registrys_own_ca_is_trusted_through_certs_d() {
    let test = "a_registrys_own_ca_is_trusted_through_certs_d";
    if Command::new("openssl").arg("version").output().is_err() {
        return skip(test, "openssl not installed");
    }
    let Some(reg) = registry_with_fixtures(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
    };
    // A CA of the test's own, and the registry's certificate signed by it.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=mtbx test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "domain.key",
        "-out",
        "domain.csr",
    ]);
    std::fs::write(p("ext"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "domain.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "domain.crt",
    ]);
    let (cert, key, ca) = (p("domain.crt"), p("domain.key"), p("ca.crt"));
    let tls = reg.tls_twin(&cert, &key);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let inspect = || {
        mtbx(&["inspect", "--format", "json", "--arch", "arm64", &format!("{}/multi:1", tls.addr)])
            .env("HOME", &home)
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .output()
            .unwrap()
    };
    let out = inspect();
    assert_eq!(out.status.code(), Some(5), "an unknown CA is refused: {}", text(&out.stderr));
    let certs = home.join(".config/containers/certs.d").join(&tls.addr);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let out = inspect();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Architecture"], "arm64");

    // A self-signed certificate as `openssl req -x509` makes it (marked a
    // CA, which webpki refuses as a server's own), put in certs.d as it
    // is: trusted, as podman trusts it (Toolbx's tests use one).
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-days",
        "2",
        "-subj",
        "/",
        "-addext",
        "subjectAltName=DNS:localhost",
        "-keyout",
        "self.key",
        "-out",
        "self.crt",
    ]);
    let tls = reg.tls_twin(&p("self.crt"), &p("self.key"));
    let inspect = || {
        mtbx(&["inspect", "--format", "json", "--arch", "arm64", &format!("{}/multi:1", tls.addr)])
            .env("HOME", &home)
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .output()
            .unwrap()
    };
    assert_eq!(inspect().status.code(), Some(5), "not trusted before it is in certs.d");
    let certs = home.join(".config/containers/certs.d").join(&tls.addr);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(p("self.crt"), certs.join("domain.crt")).unwrap();
    let out = inspect();
    assert!(out.status.success(), "{}", text(&out.stderr));
}
