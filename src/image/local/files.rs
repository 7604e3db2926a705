//! The files of a local image: a directory (an `oci:` layout) or a tar
//! archive read in place. An archive is scanned once for its entries'
//! offsets (headers only, bodies skipped by offset); a file of it is then
//! read by positional reads, so nothing is extracted to disk and no blob is
//! held in memory.
//!
//! Names come from the archive (and from its manifest.json), so they are
//! hostile input: they are normalized inside the archive's root, a `..`
//! that would leave it is an error, symbolic links are followed only to
//! other entries of the same archive (a few hops at most), and only
//! regular entries are read.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::LocalError;

/// Entries an archive may have: an image has a few per layer, and the index
/// of names is held in memory.
pub const MAX_ENTRIES: usize = 100_000;

/// Symbolic links followed to reach one file (docker save links layers).
const MAX_LINK_HOPS: usize = 8;

/// The longest GNU long name or link read.
const MAX_NAME: u64 = 64 << 10;

/// The largest PAX record block read.
const MAX_PAX: u64 = 1 << 20;

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(i) = v.iter().position(|b| *b == 0) {
        v.truncate(i);
    }
    v
}

/// One entry of an archive.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A regular file: where its body starts, and its size.
    File {
        /// Where the body starts in the archive.
        offset: u64,
        /// Its size.
        size: u64,
    },
    /// A symbolic or hard link to another entry, as a normalized name.
    Link(String),
}

/// A directory or a tar archive holding an image's files.
#[derive(Debug, Clone)]
pub enum Files {
    /// A directory (`oci:`): its path, for messages, and the directory
    /// itself, which every file is opened beneath.
    Dir(PathBuf, Arc<OwnedFd>),
    /// A tar archive (`oci-archive:`, `docker-archive:`).
    Tar {
        /// The archive's path, for messages.
        path: PathBuf,
        /// The archive, shared by every reader.
        file: Arc<File>,
        /// Its entries by normalized name.
        entries: Arc<HashMap<String, Entry>>,
    },
}

/// A name made relative to the archive's root: `./a//b/../c` is `a/c`.
/// `None` when it would leave the root.
pub fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

impl Files {
    /// A directory whose files are read by name, beneath it: a link
    /// that leads out of it is refused (a layout is one tree; a link out
    /// would read, with mtbx's rights, a file its owner may not read).
    pub fn dir(path: &Path) -> Result<Files, LocalError> {
        use rustix::fs::{Mode, OFlags};
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(LocalError::NotADirectory(path.to_path_buf())),
            Err(e) => return Err(LocalError::open(path, e)),
        }
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| LocalError::open(path, e.into()))?;
        Ok(Files::Dir(path.to_path_buf(), Arc::new(fd)))
    }

    /// Scan the tar archive at `path`: every entry's name and where its
    /// body is. Only headers are read (bodies are skipped by offset), with
    /// GNU long names and PAX records capped: a hostile header cannot make
    /// mtbx allocate what it claims. (The tar crate's iterator reads those
    /// records whole, whatever their size, hence this loop.)
    pub fn tar(path: &Path) -> Result<Files, LocalError> {
        let file = crate::sys::files::open_regular(path, true).map_err(|e| {
            if crate::sys::files::is_not_regular(&e) {
                LocalError::NotAnArchive { path: path.to_path_buf(), why: e.to_string() }
            } else {
                LocalError::open(path, e)
            }
        })?;
        let meta = file.metadata().map_err(|e| LocalError::open(path, e))?;
        let bad = |why: String| LocalError::NotAnArchive { path: path.to_path_buf(), why };
        let read_err = |e: std::io::Error| LocalError::Read {
            path: path.to_path_buf(),
            name: "a header".into(),
            source: e,
        };
        let len = meta.len();
        let mut entries = HashMap::new();
        let (mut long_name, mut long_link, mut pax_path, mut pax_link) = (None, None, None, None);
        let mut pos = 0u64;
        let mut count = 0usize;
        // A record's body, read whole up to `cap`.
        let record = |at: u64, size: u64, cap: u64| -> Result<Vec<u8>, LocalError> {
            if size > cap {
                return Err(bad(format!("a header record of {size} bytes (more than {cap})")));
            }
            let mut buf = vec![0u8; size as usize];
            file.read_exact_at(&mut buf, at).map_err(read_err)?;
            Ok(buf)
        };
        loop {
            if pos == len {
                break; // no end-of-archive blocks: GNU tar reads that too
            }
            let mut block = [0u8; 512];
            file.read_exact_at(&mut block, pos).map_err(|_| bad("it ends inside a header".into()))?;
            if block.iter().all(|b| *b == 0) {
                break;
            }
            let header = tar::Header::from_byte_slice(&block);
            let sum: u64 = block
                .iter()
                .enumerate()
                .map(|(i, b)| if (148..156).contains(&i) { 32 } else { u64::from(*b) })
                .sum();
            if header.cksum().ok().map(u64::from) != Some(sum) {
                return Err(bad(format!("no valid tar header at byte {pos}")));
            }
            let size = header.entry_size().map_err(|e| bad(e.to_string()))?;
            let body = pos + 512;
            let next = size.div_ceil(512).checked_mul(512).and_then(|n| n.checked_add(body));
            let next = match next {
                Some(n) if n <= len => n,
                _ => return Err(bad(format!("it is cut off: an entry at byte {pos} runs past its end"))),
            };
            let kind = header.entry_type();
            match kind {
                tar::EntryType::GNULongName => long_name = Some(trim_nul(record(body, size, MAX_NAME)?)),
                tar::EntryType::GNULongLink => long_link = Some(trim_nul(record(body, size, MAX_NAME)?)),
                tar::EntryType::XHeader => {
                    let data = record(body, size, MAX_PAX)?;
                    for ext in tar::PaxExtensions::new(&data) {
                        let ext = ext.map_err(|e| bad(format!("a malformed PAX record: {e}")))?;
                        match ext.key_bytes() {
                            b"path" => pax_path = Some(ext.value_bytes().to_vec()),
                            b"linkpath" => pax_link = Some(ext.value_bytes().to_vec()),
                            _ => {}
                        }
                    }
                }
                tar::EntryType::XGlobalHeader => {}
                _ => {
                    count += 1;
                    if count > MAX_ENTRIES {
                        return Err(bad(format!("it has more than {MAX_ENTRIES} entries")));
                    }
                    let raw = pax_path
                        .take()
                        .or(long_name.take())
                        .unwrap_or_else(|| header.path_bytes().into_owned());
                    let link = pax_link
                        .take()
                        .or(long_link.take())
                        .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
                    let name = normalize(&String::from_utf8_lossy(&raw));
                    let entry = if kind.is_file() || kind == tar::EntryType::Continuous {
                        Some(Entry::File { offset: body, size })
                    } else if kind.is_symlink() || kind.is_hard_link() {
                        // A symbolic link is relative to its directory (an
                        // absolute one to the root); a hard link to the root.
                        name.as_ref().zip(link).and_then(|(n, l)| {
                            let l = String::from_utf8_lossy(&l).into_owned();
                            let dir = n.rsplit_once('/').map_or("", |(d, _)| d);
                            let target = if kind.is_symlink() && !l.starts_with('/') {
                                format!("{dir}/{l}")
                            } else {
                                l
                            };
                            normalize(&target).map(Entry::Link)
                        })
                    } else {
                        None
                    };
                    // A name that leaves the root can never be asked for.
                    if let (Some(name), Some(entry)) = (name, entry) {
                        entries.insert(name, entry);
                    }
                }
            }
            pos = next;
        }
        Ok(Files::Tar { path: path.to_path_buf(), file: Arc::new(file), entries: Arc::new(entries) })
    }

    /// Where these files are, for messages.
    pub fn path(&self) -> &Path {
        match self {
            Files::Dir(p, _) | Files::Tar { path: p, .. } => p,
        }
    }

    /// Open the file `name` (relative to the root): a reader and its size.
    pub fn open(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64), LocalError> {
        let Some(mut name) = normalize(name) else {
            return Err(LocalError::Escapes { path: self.path().to_path_buf(), name: name.to_string() });
        };
        match self {
            Files::Dir(dir, fd) => {
                let how = rustix::fs::ResolveFlags::BENEATH;
                let f = match crate::sys::files::open_regular_at(fd.as_fd(), Path::new(&name), how) {
                    Ok(f) => f,
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                        return Err(LocalError::Escapes { path: dir.clone(), name })
                    }
                    Err(e) if crate::sys::files::is_not_regular(&e) => {
                        return Err(LocalError::Read { path: dir.clone(), name, source: e })
                    }
                    Err(e) => return Err(LocalError::open(&dir.join(&name), e)),
                };
                let m = f.metadata().map_err(|e| LocalError::open(&dir.join(&name), e))?;
                Ok((Box::new(f), m.len()))
            }
            Files::Tar { path, file, entries } => {
                for _ in 0..=MAX_LINK_HOPS {
                    match entries.get(&name) {
                        Some(Entry::File { offset, size }) => {
                            let section = Section { file: file.clone(), pos: *offset, end: offset + size };
                            return Ok((Box::new(section), *size));
                        }
                        Some(Entry::Link(t)) => name = t.clone(),
                        None => return Err(LocalError::Missing { path: path.clone(), name }),
                    }
                }
                Err(LocalError::NotAnArchive {
                    path: path.clone(),
                    why: format!("{name} is a chain of more than {MAX_LINK_HOPS} links"),
                })
            }
        }
    }

    /// Read the whole file `name`, refusing one larger than `cap` (index,
    /// manifest and config files are small; a huge one is hostile).
    pub fn read_small(&self, name: &str, cap: u64) -> Result<Vec<u8>, LocalError> {
        let (reader, size) = self.open(name)?;
        if size > cap {
            return Err(LocalError::TooLarge {
                path: self.path().to_path_buf(),
                name: name.into(),
                size,
                cap,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        reader.take(cap + 1).read_to_end(&mut out).map_err(|e| LocalError::Read {
            path: self.path().to_path_buf(),
            name: name.into(),
            source: e,
        })?;
        if out.len() as u64 != size {
            return Err(LocalError::NotAnArchive {
                path: self.path().to_path_buf(),
                why: format!("{name} is {} bytes, not the {size} it said", out.len()),
            });
        }
        Ok(out)
    }
}

/// One entry's body inside the archive, read by offset: any number of
/// them read at once from the one file.
struct Section {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the archive ends inside an entry",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_root() {
        assert_eq!(normalize("./a//b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize("/blobs/sha256/x").as_deref(), Some("blobs/sha256/x"));
        assert_eq!(normalize("../etc/passwd"), None);
        assert_eq!(normalize("a/../../b"), None);
    }

    fn archive(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> tempfile::NamedTempFile {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, name, *data).unwrap();
        }
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b.into_inner().unwrap()).unwrap();
        f
    }

    #[test]
    fn archives_are_read_in_place_and_links_stay_inside() {
        use tar::EntryType as T;
        let f = archive(&[
            ("./x.tar", T::Regular, "", b"layer"),
            ("d/layer.tar", T::Symlink, "../x.tar", b""),
            ("out", T::Symlink, "../../etc/passwd", b""),
            ("loop", T::Symlink, "loop", b""),
        ]);
        let files = Files::tar(f.path()).unwrap();
        let read = |n: &str| {
            let (mut r, size) = files.open(n)?;
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            assert_eq!(s.len() as u64, size);
            Ok::<_, LocalError>(s)
        };
        assert_eq!(read("x.tar").unwrap(), "layer");
        assert_eq!(read("d/layer.tar").unwrap(), "layer");
        assert!(matches!(read("out"), Err(LocalError::Missing { .. })));
        assert!(matches!(read("../x.tar"), Err(LocalError::Escapes { .. })));
        assert!(matches!(read("loop"), Err(LocalError::NotAnArchive { .. })));
        assert!(matches!(files.read_small("x.tar", 2), Err(LocalError::TooLarge { .. })));
    }

    #[test]
    fn long_names_and_pax_paths_are_read_and_huge_records_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}/file", "d".repeat(150));
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"gn"[..]).unwrap();
        b.append_pax_extensions([("path", &b"pax/named"[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_path("short").unwrap();
        h.set_cksum();
        b.append(&h, &b"pax"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &bytes).unwrap();
        let files = Files::tar(f.path()).unwrap();
        assert_eq!(files.read_small(&long, 10).unwrap(), b"gn");
        assert_eq!(files.read_small("pax/named", 10).unwrap(), b"pax");
        // Cut in the middle of a body: said so.
        std::fs::write(f.path(), &bytes[..bytes.len() - 1024 - 100]).unwrap();
        assert!(
            matches!(Files::tar(f.path()), Err(LocalError::NotAnArchive { why, .. }) if why.contains("cut off"))
        );
        // A PAX record claiming 2 MiB (and having it) is not read.
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(2 << 20);
        h.set_path("pax").unwrap();
        h.set_cksum();
        let mut huge = h.as_bytes().to_vec();
        huge.resize(512 + (2 << 20), b'x');
        std::fs::write(f.path(), &huge).unwrap();
        assert!(
            matches!(Files::tar(f.path()), Err(LocalError::NotAnArchive { why, .. }) if why.contains("header record"))
        );
        // Not a tar at all.
        std::fs::write(f.path(), vec![b'j'; 4096]).unwrap();
        assert!(
            matches!(Files::tar(f.path()), Err(LocalError::NotAnArchive { why, .. }) if why.contains("no valid tar header"))
        );
    }
}
