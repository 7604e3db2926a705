//! tar-split metadata (github.com/vbatts/tar-split), which podman needs to
//! rebuild a layer's exact tar for `podman save` and `podman push`: without
//! it the rebuilt tar's digest would not match the image's diff_id.
//!
//! The file is gzip'd JSON lines. A "segment" (type 2) holds raw tar bytes
//! (headers, padding, the end-of-archive blocks); a "file" (type 1) names an
//! entry whose content is read back from the layer directory, with its size
//! and the CRC-64 (ISO polynomial, big-endian) of that content.

use std::io::Write;

use base64::Engine;
use flate2::write::GzEncoder;
use serde::Serialize;

const SEGMENT: u8 = 2;
const FILE: u8 = 1;

/// Writes a tar-split stream entry by entry.
pub struct TarSplitWriter<W: Write> {
    out: GzEncoder<W>,
    position: u64,
    line: Vec<u8>,
    /// An empty segment not written yet (see [`TarSplitWriter::segment`]).
    empty_pending: bool,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_raw: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    size: u64,
    payload: Option<String>,
    position: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl<W: Write> TarSplitWriter<W> {
    /// Start a stream into `out`.
    pub fn new(out: W) -> Self {
        TarSplitWriter {
            out: GzEncoder::new(out, flate2::Compression::fast()),
            position: 0,
            line: Vec::new(),
            empty_pending: false,
        }
    }

    /// Raw tar bytes, as they were in the stream. An empty segment is
    /// held back: at the very end of a stream only the tar-split of
    /// podman 4 writes one ([`TarSplitWriter::finish_with`]).
    pub fn segment(&mut self, raw: &[u8]) -> std::io::Result<()> {
        if raw.is_empty() {
            self.flush_pending()?;
            self.empty_pending = true;
            return Ok(());
        }
        self.flush_pending()?;
        self.emit_segment(raw)
    }

    fn emit_segment(&mut self, raw: &[u8]) -> std::io::Result<()> {
        let payload = Some(base64::engine::general_purpose::STANDARD.encode(raw));
        self.emit(Entry { kind: SEGMENT, name: None, name_raw: None, size: 0, payload, position: 0 })
    }

    fn flush_pending(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.empty_pending) {
            self.emit_segment(&[])?;
        }
        Ok(())
    }

    /// An entry whose content (`size` bytes with checksum `crc`) lives in
    /// the layer. Names that are not UTF-8 go in `name_raw`.
    pub fn file(&mut self, name: &[u8], size: u64, crc: Option<u64>) -> std::io::Result<()> {
        let (name, name_raw) = match std::str::from_utf8(name) {
            Ok(s) => (Some(s), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(name))),
        };
        let payload = crc.map(|c| base64::engine::general_purpose::STANDARD.encode(c.to_be_bytes()));
        self.flush_pending()?;
        self.emit(Entry { kind: FILE, name, name_raw, size, payload, position: 0 })
    }

    fn emit(&mut self, mut e: Entry<'_>) -> std::io::Result<()> {
        e.position = self.position;
        self.position += 1;
        self.line.clear();
        serde_json::to_writer(&mut self.line, &e).map_err(std::io::Error::other)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    /// End the gzip stream and hand back the writer, with a final empty
    /// segment where the stream ended in one.
    pub fn finish(self) -> std::io::Result<W> {
        self.finish_with(true)
    }

    /// End the stream; a final empty segment is written only when
    /// `empty_end` says so. tar-split's own writers differ there: the one
    /// in podman 4 ends every stream with an empty segment, podman 5's
    /// leaves it out (docs/podman.md).
    pub fn finish_with(mut self, empty_end: bool) -> std::io::Result<W> {
        if empty_end {
            self.flush_pending()?;
        }
        self.out.finish()
    }
}

/// CRC-64 with the ISO polynomial, as Go's hash/crc64 computes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Crc64(u64);

const fn make_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut j = 0;
        while j < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xD800_0000_0000_0000 } else { crc >> 1 };
            j += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static TABLE: [u64; 256] = make_table();

impl Crc64 {
    /// Add bytes.
    pub fn update(&mut self, data: &[u8]) {
        let mut crc = !self.0;
        for &b in data {
            crc = TABLE[((crc as u8) ^ b) as usize] ^ (crc >> 8);
        }
        self.0 = !crc;
    }

    /// The checksum so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn crc_matches_what_podman_stored() {
        // podman's tar-split for fixtures/oci/multi's layer 1: the 20-byte
        // file etc/mtbx-fixture-1 ("linux/amd64 layer 1\n") has "Ld7m+cCzFSo=".
        let mut c = Crc64::default();
        c.update(b"linux/amd64 layer 1\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(c.value().to_be_bytes());
        assert_eq!(b64, "Ld7m+cCzFSo=");
    }

    #[test]
    fn a_final_empty_segment_is_written_only_when_asked() {
        let lines = |empty_end: bool| {
            let mut w = TarSplitWriter::new(Vec::new());
            w.segment(b"").unwrap();
            w.file(b"a", 0, None).unwrap();
            w.segment(b"end").unwrap();
            w.segment(b"").unwrap();
            let gz = w.finish_with(empty_end).unwrap();
            let mut text = String::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
            text.lines().map(str::to_string).collect::<Vec<_>>()
        };
        let podman4 = lines(true);
        assert_eq!(podman4.len(), 4, "an empty segment inside the stream is always kept: {podman4:?}");
        assert_eq!(podman4[0], r#"{"type":2,"payload":"","position":0}"#);
        assert_eq!(podman4[3], r#"{"type":2,"payload":"","position":3}"#);
        assert_eq!(lines(false), podman4[..3], "podman 5 ends without it");
    }

    #[test]
    fn lines_have_go_field_names_and_positions() {
        let mut w = TarSplitWriter::new(Vec::new());
        w.segment(b"hdr").unwrap();
        w.file(b"etc/", 0, None).unwrap();
        w.file(b"a\xff", 3, Some(1)).unwrap();
        let gz = w.finish().unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"type":2,"payload":"aGRy","position":0}"#);
        assert_eq!(lines[1], r#"{"type":1,"name":"etc/","payload":null,"position":1}"#);
        assert_eq!(
            lines[2],
            r#"{"type":1,"name_raw":"Yf8=","size":3,"payload":"AAAAAAAAAAE=","position":2}"#
        );
    }
}
