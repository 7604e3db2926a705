//! Hostile files given to the surfaces that read them: OCI layouts and
//! archives built to cost exponential work, FIFOs where files should be,
//! names holding terminal escapes, and `save` interrupted. Each must end
//! promptly with one clean line (or a clean answer), and leave nothing
//! behind.

use std::path::PathBuf;
use std::process::Output;

use common::local::{tar_dir, PathWithout};
use common::{mtbx, text};
use serde_json::{json, Value};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI layout written blob by blob.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: PathBuf) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    /// Store `bytes` as a blob; its descriptor.
    fn blob(&self, media: &str, bytes: &[u8]) -> Value {
        let digest = common::fixtures::sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
        json!({"mediaType": media, "digest": digest, "size": bytes.len()})
    }

    /// An index of `entries`, stored; its descriptor.
    fn index(&self, entries: Vec<Value>) -> Value {
        let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        self.blob(OCI_INDEX, &serde_json::to_vec(&idx).unwrap())
    }

    /// index.json naming `top` by `tag`.
    fn tag(&self, mut top: Value, tag: &str) {
        top["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    }
}

/// mtbx with no skopeo on PATH and no registries.conf.
fn local_mtbx(no_skopeo: &PathWithout, args: &[&str]) -> Output {
    mtbx(args).env("PATH", no_skopeo.path()).env("CONTAINERS_REGISTRIES_CONF", "/dev/null").output().unwrap()
}

/// One line, `mtbx: error: ...`, containing `what`.
fn one_line_error(err: &str, what: &str) {
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("mtbx: error: ") && err.contains(what), "{what}: {err}");
}

/// Nested indexes whose entries all name the same child (five levels of
/// 40, the last offering only s390x; as deep as mtbx follows) cost 40^4 searches if each entry is
/// searched again; each index is searched once, so inspect answers at once
/// (no amd64 here: exit 3) after looking at a few hundred entries, from a
/// layout and from an archive of it. A layout whose distinct indexes list
/// too many entries in all is refused.
#[test]
fn nested_indexes_naming_one_child_are_searched_once() {
    let d = tempfile::tempdir().unwrap();
    let no_skopeo = PathWithout::new("skopeo");
    let l = Layout::new(d.path().join("deep"));
    let leaf = l.blob(OCI_MANIFEST, br#"{"schemaVersion":2}"#);
    let mut entries: Vec<Value> = (0..40)
        .map(|_| {
            let mut e = leaf.clone();
            e["platform"] = json!({"architecture": "s390x", "os": "linux"});
            e
        })
        .collect();
    for _ in 0..4 {
        let child = l.index(entries);
        entries = vec![child; 40];
    }
    l.tag(l.index(entries), "1");
    tar_dir(&l.dir, &d.path().join("deep.tar"));
    for image in [
        format!("oci:{}:1", l.dir.display()),
        format!("oci-archive:{}:1", d.path().join("deep.tar").display()),
    ] {
        let out = local_mtbx(&no_skopeo, &["--log-level", "debug", "inspect", "--arch", "amd64", &image]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{image}: {err}");
        let seen: usize = err
            .lines()
            .find_map(|l| l.split(" index entries looked at").next().filter(|_| l.contains("looked at")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count of entries: {err}"));
        assert!(seen <= 6 * 40, "{seen} entries looked at: {err}");
        assert!(err.contains("linux/s390x"), "{err}");
    }

    // 300 distinct indexes of 40 entries each: more than mtbx looks at.
    let wide = Layout::new(d.path().join("wide"));
    let tops: Vec<Value> = (0..300)
        .map(|i| {
            let entries: Vec<Value> = (0..40)
                .map(|_| {
                    let mut e = leaf.clone();
                    e["platform"] =
                        json!({"architecture": "s390x", "os": "linux", "os.version": i.to_string()});
                    e
                })
                .collect();
            wide.index(entries)
        })
        .collect();
    wide.tag(wide.index(tops), "1");
    let out =
        local_mtbx(&no_skopeo, &["inspect", "--arch", "amd64", &format!("oci:{}:1", wide.dir.display())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    one_line_error(&text(&out.stderr), "entries in all");
}
