//! The records of layers.json and images.json, with the field names
//! containers/storage uses. Fields mtbx does not know (newer podman
//! versions add some) are kept as they are and written back unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// One layer of layers.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The layer id (see [`super::layer_id`]).
    pub id: String,
    /// Names (pulled layers have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The layer below, absent for a base layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// When it was stored, RFC 3339 with nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The blob digest it was pulled from: later pulls reuse the layer by it.
    #[serde(rename = "compressed-diff-digest", default, skip_serializing_if = "Option::is_none")]
    pub compressed_digest: Option<String>,
    /// The blob's size.
    #[serde(rename = "compressed-size", default, skip_serializing_if = "is_zero")]
    pub compressed_size: i64,
    /// The uncompressed tar's digest (the image config's diff_id).
    #[serde(rename = "diff-digest", default, skip_serializing_if = "Option::is_none")]
    pub diff_digest: Option<String>,
    /// The uncompressed tar's length.
    #[serde(rename = "diff-size", default, skip_serializing_if = "is_zero")]
    pub diff_size: i64,
    /// The blob's compression: 0 none, 2 gzip, 4 zstd (containers/storage's
    /// archive.Compression numbers).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compression: i32,
    /// Every uid that owns a file in the layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uidset: Vec<u32>,
    /// Every gid that owns a file in the layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gidset: Vec<u32>,
    /// Flags; `incomplete: true` while a layer is being written.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub flags: Map<String, Value>,
    /// Fields mtbx does not interpret, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LayerRecord {
    /// Whether a writer died before finishing this layer.
    pub fn incomplete(&self) -> bool {
        self.flags.get("incomplete").and_then(Value::as_bool).unwrap_or(false)
    }
}

/// One image of images.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id: the config digest's hex.
    pub id: String,
    /// The manifest digest it was pulled by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Its names (references); unique across the store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Every name it ever had, newest first.
    #[serde(rename = "names-history", default, skip_serializing_if = "Vec::is_empty")]
    pub names_history: Vec<String>,
    /// The top layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Free-form metadata (containers/image keeps signature sizes here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// Keys of the image's big data items.
    #[serde(rename = "big-data-names", default, skip_serializing_if = "Vec::is_empty")]
    pub big_data_names: Vec<String>,
    /// Their sizes.
    #[serde(rename = "big-data-sizes", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub big_data_sizes: BTreeMap<String, i64>,
    /// Their digests.
    #[serde(rename = "big-data-digests", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub big_data_digests: BTreeMap<String, String>,
    /// The image's creation time, from its config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Flags.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub flags: Map<String, Value>,
    /// Fields mtbx does not interpret, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Read a JSON array of records; a missing or empty file is an empty list.
pub fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Vec<T>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Vec::new()),
        // The caller names the file.
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Write a JSON array of records atomically, 0600 as containers/storage does.
pub fn save<T: Serialize>(path: &Path, records: &[T]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(records).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(path, &bytes, 0o600)
}

/// containers/storage's timestamp format (Go's RFC3339Nano, UTC).
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Format unix time as RFC 3339 UTC with trailing zeros of the fraction cut.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut s = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_layer_record_round_trips_with_unknown_fields() {
        let text = r#"{"id":"bf63","parent":"aa","created":"2026-11-25T14:35:54.89905567Z","compressed-diff-digest":"sha256:0e","compressed-size":127,"diff-digest":"sha256:bf","diff-size":2560,"compression":2,"uidset":[0],"gidset":[0],"future-field":{"x":1}}"#;
        let r: LayerRecord = serde_json::from_str(text).unwrap();
        assert_eq!(r.diff_size, 2560);
        assert!(!r.incomplete());
        let back: Value = serde_json::to_value(&r).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn timestamps_match_go() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_700_154, 899_055_670), "2026-11-26T13:35:54.89905567Z");
        assert_eq!(rfc3339(951_782_400, 500_000_000), "2000-02-29T00:00:00.5Z");
    }
}
