//! The tar side of applying a layer: headers with their PAX and GNU
//! extensions folded in, entry contents, and every byte that is not
//! content handed to tar-split exactly as it was.
//!
//! The tar is read block by block here rather than through a tar library's
//! entry iterator, because tar-split needs the raw bytes between file
//! contents (headers, PAX and GNU long-name records, padding, the end
//! blocks) exactly as they were; the `tar` crate only decodes header fields.
//! Nothing here touches the file system: that is [`super::applier`]'s.

use std::io::{Read, Write};

use super::{io_err, show, ApplyError, MAX_ENTRY};
use crate::storage::tarsplit::{Crc64, TarSplitWriter};

const BLOCK: usize = 512;
const MAX_PAX: u64 = 1 << 20;
const MAX_NAME: u64 = 64 << 10;

/// Owner, mode, time and xattrs of an entry.
pub(super) struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One entry's header, PAX and GNU records applied.
pub(super) struct Entry {
    /// The name as the tar has it (not normalized).
    pub name: Vec<u8>,
    /// The type flag.
    pub kind: u8,
    /// Content bytes that follow the header; 0 for entries that have none
    /// whatever their size field says (links, directories, devices).
    pub size: u64,
    /// The header's size field for those: tar-split records it as it was.
    recorded_size: u64,
    pub link: Option<Vec<u8>>,
    /// Device major and minor.
    pub dev: (u32, u32),
    pub meta: Meta,
}

/// Fields of a header after PAX and GNU extensions.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, i64)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// An entry's content. Whatever the applier leaves unread is skipped
/// afterwards, so the checksum tar-split records always covers all of it.
pub(super) struct Body<'a> {
    input: &'a mut dyn Read,
    left: u64,
    crc: Crc64,
}

impl Body<'_> {
    /// Copy the rest of the content to `out` through `buf`.
    pub fn copy_to(&mut self, out: &mut impl Write, buf: &mut [u8], name: &[u8]) -> Result<(), ApplyError> {
        copy_exact(self.input, out, &mut self.left, &mut self.crc, buf, name)
    }

    fn skip_rest(&mut self) -> Result<(), ApplyError> {
        let mut buf = [0u8; 8192];
        copy_exact(self.input, &mut std::io::sink(), &mut self.left, &mut self.crc, &mut buf, b"")
    }
}

/// A layer's tar, entry by entry, with tar-split written on the way.
pub(super) struct TarStream<'a, R, W: Write> {
    input: &'a mut R,
    split: &'a mut TarSplitWriter<W>,
    /// Raw bytes read since the last tar-split record.
    raw: Vec<u8>,
}

impl<'a, R: Read, W: Write> TarStream<'a, R, W> {
    pub fn new(input: &'a mut R, split: &'a mut TarSplitWriter<W>) -> Self {
        TarStream { input, split, raw: Vec::with_capacity(4 * BLOCK) }
    }

    /// The next entry's header; None at the end-of-archive block or where
    /// the stream simply stops at a block boundary (accepted, as Go's
    /// archive/tar accepts it).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ApplyError> {
        let mut pending = Pending::default();
        let mut block = [0u8; BLOCK];
        loop {
            if !read_block(self.input, &mut block)? {
                return Ok(None);
            }
            self.raw.extend_from_slice(&block);
            if block.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            let hdr = tar::Header::from_byte_slice(&block);
            check_sum(&block)?;
            let kind = hdr.entry_type().as_byte();
            let hsize = numeric(&block[124..136], "size")?;
            if matches!(kind, b'x' | b'g' | b'L' | b'K') {
                let cap = if matches!(kind, b'x' | b'g') { MAX_PAX } else { MAX_NAME };
                if hsize > cap {
                    return Err(ApplyError::TooLarge {
                        name: show(&hdr.path_bytes()),
                        size: hsize,
                        limit: cap,
                    });
                }
                let start = self.raw.len();
                read_padded(self.input, hsize, &mut self.raw)?;
                let data = &self.raw[start..start + hsize as usize];
                match kind {
                    b'x' => parse_pax(data, &mut pending)?,
                    b'L' => pending.path = Some(cut_nul(data)),
                    b'K' => pending.link = Some(cut_nul(data)),
                    _ => {} // global PAX headers change nothing podman uses
                }
                continue;
            }
            let p = pending;
            let name = p.path.unwrap_or_else(|| hdr.path_bytes().into_owned());
            let header_only = matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
            let size = if header_only { 0 } else { p.size.unwrap_or(hsize) };
            if size > MAX_ENTRY {
                return Err(ApplyError::TooLarge { name: show(&name), size, limit: MAX_ENTRY });
            }
            self.split.segment(&self.raw).map_err(|e| io_err(&name, e))?;
            self.raw.clear();
            let meta = Meta {
                mode: numeric(&block[100..108], "mode")? as u32 & 0o7777,
                uid: id32(p.uid.map_or_else(|| numeric(&block[108..116], "uid"), Ok)?, &name)?,
                gid: id32(p.gid.map_or_else(|| numeric(&block[116..124], "gid"), Ok)?, &name)?,
                mtime: match p.mtime {
                    Some(t) => t,
                    None => (numeric(&block[136..148], "mtime")? as i64, 0),
                },
                xattrs: p.xattrs,
            };
            let link = p.link.or_else(|| hdr.link_name_bytes().map(|l| l.into_owned()));
            let dev = (
                numeric(&block[329..337], "devmajor")? as u32,
                numeric(&block[337..345], "devminor")? as u32,
            );
            let recorded_size = if header_only { hsize } else { size };
            return Ok(Some(Entry { name, kind, size, recorded_size, link, dev, meta }));
        }
    }

    /// Hand `entry`'s content to `f`, then skip what it left, record the
    /// entry in tar-split and read the padding that follows.
    pub fn with_body(
        &mut self,
        entry: &Entry,
        f: impl FnOnce(&mut Body<'_>) -> Result<(), ApplyError>,
    ) -> Result<(), ApplyError> {
        let mut body = Body { input: &mut *self.input, left: entry.size, crc: Crc64::default() };
        f(&mut body)?;
        body.skip_rest()?;
        let crc = body.crc;
        let size = entry.recorded_size;
        self.split
            .file(&entry.name, size, (size > 0).then(|| crc.value()))
            .map_err(|e| io_err(&entry.name, e))?;
        pad(self.input, entry.size, &mut self.raw)
    }

    /// The end-of-archive blocks and whatever trails them belong to the
    /// stream's digest and to tar-split: as tar-split lays them out, the
    /// second zero block joins the first, the rest follows in segments of
    /// at most 1 MiB, and an empty segment ends the stream. Reads `input`
    /// to its very end.
    pub fn finish(mut self) -> Result<(), ApplyError> {
        let mut block = [0u8; BLOCK];
        if !self.raw.is_empty() && read_block(self.input, &mut block)? {
            self.raw.extend_from_slice(&block);
        }
        if !self.raw.is_empty() {
            self.split.segment(&self.raw).map_err(|e| io_err(b"", e))?;
        }
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let mut filled = 0;
            while filled < chunk.len() {
                let n = read_some(self.input, &mut chunk[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            self.split.segment(&chunk[..filled]).map_err(|e| io_err(b"", e))?;
            if filled < chunk.len() {
                return Ok(());
            }
        }
    }
}

fn cut_nul(b: &[u8]) -> Vec<u8> {
    b.split(|&c| c == 0).next().unwrap_or_default().to_vec()
}

/// A numeric header field as Go's archive/tar reads it: octal text
/// (blank or NUL-only means 0), or base-256 when the top bit is set.
fn numeric(field: &[u8], what: &str) -> Result<u64, ApplyError> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err(ApplyError::Corrupt(format!("negative {what} field")));
        }
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| ApplyError::Corrupt(format!("{what} field overflows")))?;
        }
        return Ok(v);
    }
    let text = field.split(|&b| b == 0).next().unwrap_or_default();
    let text =
        std::str::from_utf8(text).map_err(|_| ApplyError::Corrupt(format!("bad {what} field")))?.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| ApplyError::Corrupt(format!("bad {what} field {text:?}")))
}

fn id32(v: u64, name: &[u8]) -> Result<u32, ApplyError> {
    u32::try_from(v).map_err(|_| ApplyError::Corrupt(format!("entry {:?} has owner id {v}", show(name))))
}

fn check_sum(block: &[u8; BLOCK]) -> Result<(), ApplyError> {
    let field = &block[148..156];
    let text: String = field.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
    let stored = u32::from_str_radix(text.trim(), 8)
        .map_err(|_| ApplyError::Corrupt("a header has no valid checksum".into()))?;
    let unsigned: u32 =
        block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u32 }).sum();
    let signed: i32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as i8 as i32 })
        .sum();
    if stored == unsigned || stored as i32 == signed {
        Ok(())
    } else {
        Err(ApplyError::Corrupt("a header's checksum does not match".into()))
    }
}

fn parse_pax(data: &[u8], p: &mut Pending) -> Result<(), ApplyError> {
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.map_err(ApplyError::BadPax)?;
        let key = ext.key_bytes();
        let val = ext.value_bytes();
        let num = || {
            std::str::from_utf8(val)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApplyError::Corrupt(format!("bad PAX value for {}", show(key))))
        };
        match key {
            b"path" => p.path = Some(val.to_vec()),
            b"linkpath" => p.link = Some(val.to_vec()),
            b"size" => p.size = Some(num()?),
            b"uid" => p.uid = Some(num()?),
            b"gid" => p.gid = Some(num()?),
            b"mtime" => {
                let s = std::str::from_utf8(val).unwrap_or("0");
                let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
                let secs = secs.parse::<i64>().unwrap_or(0);
                let nanos = format!("{frac:0<9}")[..9].parse::<i64>().unwrap_or(0);
                p.mtime = Some((secs, nanos));
            }
            k if k.starts_with(b"SCHILY.xattr.") => {
                p.xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), val.to_vec()))
            }
            _ => {}
        }
    }
    Ok(())
}

fn read_some(input: &mut (impl Read + ?Sized), buf: &mut [u8]) -> Result<usize, ApplyError> {
    loop {
        match input.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ApplyError::Read(e)),
        }
    }
}

/// Fill a block; false at a clean end of stream.
fn read_block<R: Read>(input: &mut R, block: &mut [u8; BLOCK]) -> Result<bool, ApplyError> {
    let mut got = 0;
    while got < BLOCK {
        let n = read_some(input, &mut block[got..])?;
        if n == 0 {
            return if got == 0 { Ok(false) } else { Err(ApplyError::Corrupt("truncated header".into())) };
        }
        got += n;
    }
    Ok(true)
}

fn read_exact_into<R: Read>(input: &mut R, n: u64, out: &mut Vec<u8>) -> Result<(), ApplyError> {
    let start = out.len();
    out.resize(start + n as usize, 0);
    input.read_exact(&mut out[start..]).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ApplyError::Corrupt("the stream ends inside an entry".into()),
        _ => ApplyError::Read(e),
    })
}

fn read_padded<R: Read>(input: &mut R, size: u64, out: &mut Vec<u8>) -> Result<(), ApplyError> {
    read_exact_into(input, size.div_ceil(BLOCK as u64) * BLOCK as u64, out)
}

/// The padding after `size` bytes of content, into the next raw segment.
fn pad<R: Read>(input: &mut R, size: u64, raw: &mut Vec<u8>) -> Result<(), ApplyError> {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 {
        return Ok(());
    }
    read_exact_into(input, (BLOCK - rem) as u64, raw)
}

fn copy_exact(
    input: &mut dyn Read,
    out: &mut impl Write,
    left: &mut u64,
    crc: &mut Crc64,
    buf: &mut [u8],
    name: &[u8],
) -> Result<(), ApplyError> {
    while *left > 0 {
        let want = buf.len().min(*left as usize);
        let n = read_some(input, &mut buf[..want])?;
        if n == 0 {
            return Err(ApplyError::Corrupt(format!("the stream ends inside {:?}", show(name))));
        }
        crc.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io_err(name, e))?;
        *left -= n as u64;
    }
    Ok(())
}
