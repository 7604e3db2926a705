//! `mtbx inspect` against the in-process fixture registry (token auth,
//! faults) serving the project's own OCI layouts: platform selection,
//! single-arch and contradicting images, output formats, auth, retries and
//! exit codes. No network beyond 127.0.0.1.

use std::process::Output;
use std::sync::atomic::Ordering;

use common::registry::{fixtures_root, tags, Auth, FixtureRegistry};
use common::{mtbx, text};
use serde_json::Value;

fn run(reg: &FixtureRegistry, image: &str, extra: &[&str]) -> Output {
    let r = format!("{}/{image}", reg.addr);
    let mut c = mtbx(&["inspect", "--tls-verify=false", &r]);
    c.args(extra);
    // Keep the developer's own auth files and registries.conf out of it.
    c.env("HOME", "/nonexistent").env_remove("XDG_RUNTIME_DIR").env_remove("REGISTRY_AUTH_FILE");
    c.env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
    c.output().unwrap()
}

fn ok_json(out: &Output) -> Value {
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fail(out: &Output, code: i32, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(out.stdout.is_empty(), "nothing on stdout after an error");
}

fn blob(name: &str, digest: &str) -> Vec<u8> {
    std::fs::read(fixtures_root().join(name).join("blobs/sha256").join(&digest[7..])).unwrap()
}

fn tag_digest(name: &str, tag: &str) -> String {
    tags(&fixtures_root().join(name)).into_iter().find(|(t, _)| t == tag).unwrap().1
}

/// The index entry of `name:1` for arch/variant, and its manifest.
fn entry(name: &str, arch: &str, variant: Option<&str>) -> (String, Value) {
    let index: Value = serde_json::from_slice(&blob(name, &tag_digest(name, "1"))).unwrap();
    let e = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["platform"]["architecture"] == arch && e["platform"]["variant"].as_str() == variant)
        .unwrap();
    let d = e["digest"].as_str().unwrap().to_string();
    let m = serde_json::from_slice(&blob(name, &d)).unwrap();
    (d, m)
}

#[test]
fn every_platform_of_an_oci_index() {
    let reg = FixtureRegistry::fixtures(Auth::Token(None));
    let cases = [
        ("amd64", "amd64", None),
        ("aarch64", "arm64", Some("v8")),
        ("armhf", "arm", Some("v7")),
        ("arm/v6", "arm", Some("v6")),
        ("ppc64el", "ppc64le", None),
        ("s390x", "s390x", None),
        ("i686", "386", None),
        ("riscv64", "riscv64", None),
    ];
    for (typed, arch, variant) in cases {
        let j = ok_json(&run(&reg, "multi:1", &["--arch", typed, "--format", "json"]));
        let (digest, manifest) = entry("multi", arch, variant);
        assert_eq!(j["Name"], format!("{}/multi", reg.addr));
        assert_eq!(j["Digest"], tag_digest("multi", "1"), "Digest is the index's, as skopeo reports it");
        assert_eq!(j["IndexDigest"], j["Digest"]);
        assert_eq!(j["ManifestDigest"], digest);
        assert_eq!(j["Architecture"], arch);
        assert_eq!(j["Variant"].as_str(), variant);
        assert_eq!(j["Os"], "linux");
        let layers: Vec<&str> =
            manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap()).collect();
        assert_eq!(j["Layers"], serde_json::json!(layers));
        let size: u64 =
            manifest["layers"].as_array().unwrap().iter().map(|l| l["size"].as_u64().unwrap()).sum();
        assert_eq!(j["CompressedSize"], size);
        assert_eq!(j["LayersData"][0]["Size"], manifest["layers"][0]["size"]);
        assert_eq!(j["Labels"]["org.mtbx.fixture"], "multi");
        assert!(j["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("FIXTURE_PLATFORM=linux/")));
        assert_eq!(j["Platforms"].as_array().unwrap().len(), 9, "8 platforms and the attestation entry");
        assert_eq!(j["RepoTags"], serde_json::json!([]), "tags cost a request; only with --tags");
    }
}

#[test]
fn docker_manifest_list_arm64_without_variant_means_v8() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let j = ok_json(&run(&reg, "dockerlist:1", &["--arch", "arm64", "--format", "json"]));
    assert_eq!(j["Architecture"], "arm64");
    assert_eq!(j["MediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(j["Platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]));
}

#[test]
fn arm_falls_back_to_older_variants_only() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let j = ok_json(&run(&reg, "armold:1", &["--arch", "arm", "--format", "json"]));
    assert_eq!(j["Variant"], "v6", "a v7 machine runs the v6 image");
    let j = ok_json(&run(&reg, "armold:1", &["--arch", "arm", "--variant", "v5", "--format", "json"]));
    assert_eq!(j["Variant"], "v5");
    fail(
        &run(&reg, "armold:1", &["--arch", "arm64"]),
        3,
        "has no linux/arm64/v8 image; it offers linux/arm/v5, linux/arm/v6",
    );
}

#[test]
fn single_arch_images_are_checked_not_substituted() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let j = ok_json(&run(&reg, "single:1", &["--arch", "amd64", "--format", "json"]));
    assert_eq!(j["Digest"], tag_digest("single", "1"));
    assert_eq!(j["IndexDigest"], Value::Null);
    assert_eq!(j["ManifestDigest"], j["Digest"]);
    fail(
        &run(&reg, "single:1", &["--arch", "arm64"]),
        3,
        &format!("image {}/single:1 is linux/amd64 only; asked for linux/arm64/v8", reg.addr),
    );
}

#[test]
fn an_index_entry_contradicted_by_its_config_is_refused() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    fail(
        &run(&reg, "liar:1", &["--arch", "arm64"]),
        1,
        "index entry says linux/arm64/v8 but its config says linux/amd64",
    );
    ok_json(&run(&reg, "liar:1", &["--arch", "amd64", "--format", "json"]));
}

#[test]
fn toolbox_tags_select_their_architecture() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let j = ok_json(&run(&reg, "fedora-toolbox:42-aarch64", &["--format", "json"]));
    assert_eq!(j["Architecture"], "arm64");
    let j = ok_json(&run(&reg, "fedora-toolbox:42-aarch64", &["--arch", "arm64", "--format", "json"]));
    assert_eq!(j["Architecture"], "arm64");
    fail(
        &run(&reg, "fedora-toolbox:42-aarch64", &["--arch", "ppc64le"]),
        2,
        "the tag '42-aarch64' selects arm64/v8, but --arch asks for ppc64le",
    );
    let j = ok_json(&run(&reg, "fedora-toolbox:42", &["--arch", "arm64", "--format", "json"]));
    assert_eq!(j["Platforms"], serde_json::json!(["linux/amd64", "linux/arm64/v8"]));
}

#[test]
fn raw_config_platforms_tags_and_the_readable_summary() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let out = run(&reg, "multi:1", &["--raw"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, blob("multi", &tag_digest("multi", "1")), "--raw is the bytes as served");

    let out = run(&reg, "multi:1", &["--arch", "s390x", "--config"]);
    let (_, m) = entry("multi", "s390x", None);
    assert_eq!(out.stdout, blob("multi", m["config"]["digest"].as_str().unwrap()));

    let out = run(&reg, "multi:1", &["--platforms"]);
    let listed = text(&out.stdout);
    assert_eq!(listed.lines().next(), Some("linux/amd64"));
    assert!(listed.contains("linux/arm/v6\n"));

    let j = ok_json(&run(&reg, "multi:1", &["--tags", "--format", "json"]));
    assert_eq!(j["RepoTags"], serde_json::json!(["1"]));

    let out = run(&reg, "multi:1", &["--arch", "arm64"]);
    let s = text(&out.stdout);
    assert!(s.contains("Platform:      linux/arm64/v8 (manifest sha256:"), "{s}");
    assert!(s.contains("Layers:        2 ("), "{s}");
}

#[test]
fn no_matching_platform_lists_what_is_offered() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    fail(
        &run(&reg, "multi:1", &["--arch", "mips64le"]),
        3,
        "has no linux/mips64le image; it offers linux/amd64, linux/arm64/v8, linux/arm/v7",
    );
    fail(&run(&reg, "multi:1", &["--arch", "vax"]), 2, "unknown architecture 'vax'");
    fail(&run(&reg, "multi:nope", &[]), 3, "not found");
    fail(&run(&reg, "nothere:1", &[]), 3, "not found");
}

#[test]
fn token_auth_with_credentials_from_flag_or_auth_files() {
    let reg = FixtureRegistry::fixtures(Auth::Token(Some(("alice".into(), "s3cret".into()))));
    let out = run(&reg, "multi:1", &[]);
    fail(&out, 4, "requires authentication");
    assert!(text(&out.stderr).contains("podman login"));

    ok_json(&run(&reg, "multi:1", &["--creds", "alice:s3cret", "--format", "json"]));
    fail(&run(&reg, "multi:1", &["--creds", "alice:wrong"]), 4, "credentials from --creds were refused");

    let dir = tempfile::tempdir().unwrap();
    let authfile = dir.path().join("auth.json");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    std::fs::write(&authfile, serde_json::json!({"auths": {reg.addr.clone(): {"auth": b64}}}).to_string())
        .unwrap();
    ok_json(&run(&reg, "multi:1", &["--authfile", authfile.to_str().unwrap(), "--format", "json"]));

    let r = format!("{}/multi:1", reg.addr);
    let out = mtbx(&["inspect", "--tls-verify=false", &r, "--format", "json"])
        .env("HOME", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", &authfile)
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
        .output()
        .unwrap();
    ok_json(&out);
}

#[test]
fn anonymous_token_and_basic_auth() {
    let reg = FixtureRegistry::fixtures(Auth::Token(None));
    ok_json(&run(&reg, "single:1", &["--format", "json"]));
    let reg = FixtureRegistry::fixtures(Auth::Basic("bob".into(), "pw".into()));
    fail(&run(&reg, "single:1", &[]), 4, "requires authentication");
    ok_json(&run(&reg, "single:1", &["--creds", "bob:pw", "--format", "json"]));
}

#[test]
fn transient_failures_are_retried() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    reg.faults.fail.store(2, Ordering::SeqCst);
    ok_json(&run(&reg, "multi:1", &["--format", "json"]));
    reg.faults.rate_limit.store(2, Ordering::SeqCst);
    ok_json(&run(&reg, "multi:1", &["--format", "json"]));
    reg.faults.drop.store(2, Ordering::SeqCst);
    ok_json(&run(&reg, "multi:1", &["--format", "json"]));
    reg.faults.fail.store(100, Ordering::SeqCst);
    fail(&run(&reg, "multi:1", &[]), 5, "HTTP 503 after 4 attempts");
}

/// Both transports: open registries (mtbx's own requests) and registries
/// that want a token (oci-client's).
#[test]
fn corrupt_and_oversized_manifests_are_refused() {
    for auth in [Auth::None, Auth::Token(None)] {
        let reg = FixtureRegistry::fixtures(auth.clone());
        reg.faults.corrupt_manifests.store(true, Ordering::SeqCst);
        fail(&run(&reg, "multi:1", &[]), 1, "igest");
        let reg = FixtureRegistry::fixtures(auth);
        reg.faults.huge_manifests.store(true, Ordering::SeqCst);
        fail(&run(&reg, "multi:1", &[]), 1, "exceeds the 4194304-byte limit");
    }
}

#[test]
fn faults_behind_token_auth_are_retried_too() {
    let reg = FixtureRegistry::fixtures(Auth::Token(None));
    reg.faults.fail.store(2, Ordering::SeqCst);
    ok_json(&run(&reg, "multi:1", &["--format", "json"]));
    reg.faults.drop.store(2, Ordering::SeqCst);
    ok_json(&run(&reg, "multi:1", &["--format", "json"]));
}

/// An open registry costs one probe and then one request per document:
/// no probe before every request.
#[test]
fn an_open_registry_is_probed_once() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    ok_json(&run(&reg, "multi:1", &["--arch", "arm64", "--format", "json"]));
    let log = reg.log.lock().unwrap().clone();
    assert_eq!(log.iter().filter(|l| l.as_str() == "GET /v2/").count(), 1, "{log:?}");
    assert_eq!(log.len(), 4, "probe, index, manifest, config: {log:?}");
}

#[test]
fn an_unreachable_registry_names_its_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = mtbx(&["inspect", "--tls-verify=false", &format!("127.0.0.1:{port}/x:1")])
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
        .output()
        .unwrap();
    fail(&out, 5, &format!("cannot reach registry 127.0.0.1:{port}"));
}

#[test]
fn short_names_through_registries_conf() {
    let reg = FixtureRegistry::fixtures(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let conf = |body: &str| {
        let p = dir.path().join("registries.conf");
        std::fs::write(&p, body).unwrap();
        p
    };
    let insecure = format!("[[registry]]\nlocation = \"{}\"\ninsecure = true\n", reg.addr);
    let inspect = |conf: &std::path::Path, image: &str| {
        mtbx(&["inspect", image, "--format", "json", "--registries-conf", conf.to_str().unwrap()])
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    };
    // One search registry, made insecure by registries.conf (no --tls-verify).
    let p = conf(&format!("unqualified-search-registries = [\"{}\"]\n{insecure}", reg.addr));
    let j = ok_json(&inspect(&p, "multi:1"));
    assert_eq!(j["Name"], format!("{}/multi", reg.addr));
    // Two: ambiguous, unless an alias decides.
    let p = conf(&format!("unqualified-search-registries = [\"{}\", \"quay.io\"]\n{insecure}", reg.addr));
    fail(&inspect(&p, "multi:1"), 2, &format!("could be {}/multi or quay.io/multi", reg.addr));
    let p = conf(&format!(
        "unqualified-search-registries = [\"{0}\", \"quay.io\"]\n[aliases]\n\"multi\" = \"{0}/multi\"\n{insecure}",
        reg.addr
    ));
    ok_json(&inspect(&p, "multi:1"));
    // Blocked.
    let p = conf(&format!("[[registry]]\nlocation = \"{}\"\nblocked = true\n", reg.addr));
    fail(&inspect(&p, &format!("{}/multi:1", reg.addr)), 2, "is blocked in registries.conf");
    assert!(reg.log.lock().unwrap().iter().all(|l| !l.contains("quay.io")));
}

#[test]
fn mirrors_are_tried_first_and_skipped_when_they_lack_the_image() {
    let primary = FixtureRegistry::fixtures(Auth::None);
    let empty = tempfile::tempdir().unwrap();
    let mirror = FixtureRegistry::start(empty.path(), Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{0}\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"{1}\"\ninsecure = true\n",
            primary.addr, mirror.addr
        ),
    )
    .unwrap();
    let out = mtbx(&["inspect", &format!("{}/multi:1", primary.addr), "--format", "json"])
        .args(["--registries-conf", conf.to_str().unwrap()])
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let j = ok_json(&out);
    assert_eq!(j["Name"], format!("{}/multi", primary.addr));
    assert!(
        mirror.log.lock().unwrap().iter().any(|l| l.contains("/v2/multi/manifests/1")),
        "mirror asked first"
    );
}

#[test]
fn tags_through_the_token_transport() {
    let reg = FixtureRegistry::fixtures(Auth::Token(None));
    let j = ok_json(&run(&reg, "fedora-toolbox:42", &["--tags", "--arch", "arm64", "--format", "json"]));
    assert_eq!(j["RepoTags"], serde_json::json!(["42", "42-x86_64", "42-aarch64"]));
}

#[test]
fn by_digest_and_by_tag_plus_digest() {
    for auth in [Auth::None, Auth::Token(None)] {
        let reg = FixtureRegistry::fixtures(auth);
        let (digest, _) = entry("multi", "ppc64le", None);
        // A per-arch manifest by digest is a single-platform image.
        let j = ok_json(&run(&reg, &format!("multi@{digest}"), &["--arch", "ppc64le", "--format", "json"]));
        assert_eq!(j["Digest"], digest);
        assert_eq!(j["Architecture"], "ppc64le");
        // Tag and digest: the digest decides.
        let index = tag_digest("multi", "1");
        let j = ok_json(&run(
            &reg,
            &format!("multi:nosuchtag@{index}"),
            &["--arch", "s390x", "--format", "json"],
        ));
        assert_eq!(j["Digest"], index);
        assert_eq!(j["Architecture"], "s390x");
        // A digest the registry does not have.
        let missing = format!("sha256:{}", "0".repeat(64));
        fail(&run(&reg, &format!("multi@{missing}"), &[]), 3, "not found");
    }
}

/// Indexes inside an index (the spec allows it) resolve by one rule
/// whatever the source (`image::resolve`): the same image, platforms and
/// index digest from the registry, an `oci:` layout and an `oci-archive:`
/// of the very same files. The outer index names two inner ones without
/// platforms; s390x is only in the second, so the second is searched when
/// the first has nothing (containers/image would stop at the first). A
/// platform none of them has lists everything seen. (A docker-archive
/// cannot carry an index: its manifest.json names one config and its
/// layers per image.)
#[test]
fn a_nested_index_resolves_alike_from_a_registry_a_layout_and_an_archive() {
    use common::local::{tar_dir, write_layout};
    let (up, built, outer_digest) = common::images::nested_index();
    let d = tempfile::tempdir().unwrap();
    write_layout(&d.path().join("nested"), &up, "1");
    tar_dir(&d.path().join("nested"), &d.path().join("nested.tar"));
    let reg = FixtureRegistry::start(d.path(), Auth::None);

    let sources = [
        format!("{}/nested:1", reg.addr),
        format!("oci:{}:1", d.path().join("nested").display()),
        format!("oci-archive:{}:1", d.path().join("nested.tar").display()),
    ];
    let inspect = |image: &str, arch: &str| {
        let mut c = mtbx(&["inspect", "--tls-verify=false", "--format", "json", "--arch", arch, image]);
        c.env("HOME", "/nonexistent").env_remove("XDG_RUNTIME_DIR").env_remove("REGISTRY_AUTH_FILE");
        c.env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
        c.output().unwrap()
    };
    for source in &sources {
        let j = ok_json(&inspect(source, "arm64"));
        assert_eq!(j["ManifestDigest"], built[1].manifest_digest.as_str(), "{source}");
        assert_eq!(j["IndexDigest"], outer_digest.as_str(), "{source}");
        assert_eq!(j["Platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]), "{source}");
        let j = ok_json(&inspect(source, "s390x"));
        assert_eq!(j["ManifestDigest"], built[2].manifest_digest.as_str(), "{source}");
        assert_eq!(j["Architecture"], "s390x", "{source}");
        assert_eq!(j["Platforms"], serde_json::json!(["linux/s390x"]), "{source}");
        let out = inspect(source, "riscv64");
        fail(&out, 3, "linux/riscv64");
        let err = text(&out.stderr);
        for p in ["linux/amd64", "linux/arm64", "linux/s390x"] {
            assert!(err.contains(p), "{source}: {p} in {err}");
        }
    }
}
