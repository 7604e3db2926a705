//! The files of a local image: a directory (an `oci:` layout) or a tar
//! archive read in place. An archive is scanned once for its entries'
//! offsets (headers only, bodies skipped with seeks); a file of it is then
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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::LocalError;

/// Entries an archive may have: an image has a few per layer, and the index
/// of names is held in memory.
pub const MAX_ENTRIES: usize = 100_000;

/// Symbolic links followed to reach one file (docker save links layers).
const MAX_LINK_HOPS: usize = 8;

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
    /// A directory (`oci:`).
    Dir(PathBuf),
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
    /// A directory whose files are read by name.
    pub fn dir(path: &Path) -> Result<Files, LocalError> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(Files::Dir(path.to_path_buf())),
            Ok(_) => Err(LocalError::NotADirectory(path.to_path_buf())),
            Err(e) => Err(LocalError::open(path, e)),
        }
    }

    /// Scan the tar archive at `path`: every entry's name and where its
    /// body is. Bodies are skipped with seeks, not read.
    pub fn tar(path: &Path) -> Result<Files, LocalError> {
        let file = File::open(path).map_err(|e| LocalError::open(path, e))?;
        if file.metadata().map_err(|e| LocalError::open(path, e))?.is_dir() {
            return Err(LocalError::NotAnArchive {
                path: path.to_path_buf(),
                why: "it is a directory".into(),
            });
        }
        let bad = |why: String| LocalError::NotAnArchive { path: path.to_path_buf(), why };
        let scan = file.try_clone().map_err(|e| LocalError::open(path, e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(scan));
        let mut entries = HashMap::new();
        let iter = archive.entries_with_seek().map_err(|e| bad(e.to_string()))?;
        for (n, entry) in iter.enumerate() {
            if n >= MAX_ENTRIES {
                return Err(bad(format!("it has more than {MAX_ENTRIES} entries")));
            }
            let entry = entry.map_err(|e| bad(e.to_string()))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            // A name that leaves the root can never be asked for: leave it out.
            let Some(name) = normalize(&raw) else { continue };
            let kind = entry.header().entry_type();
            let link = || -> Option<String> {
                let target = String::from_utf8_lossy(&entry.link_name_bytes()?).into_owned();
                if kind.is_symlink() {
                    // Relative to the link's directory; absolute is the root.
                    let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                    normalize(&if target.starts_with('/') { target } else { format!("{dir}/{target}") })
                } else {
                    normalize(&target)
                }
            };
            let e = if kind.is_file() || kind == tar::EntryType::Continuous {
                Entry::File { offset: entry.raw_file_position(), size: entry.size() }
            } else if kind.is_symlink() || kind.is_hard_link() {
                match link() {
                    Some(t) => Entry::Link(t),
                    None => continue,
                }
            } else {
                continue;
            };
            entries.insert(name, e);
        }
        Ok(Files::Tar { path: path.to_path_buf(), file: Arc::new(file), entries: Arc::new(entries) })
    }

    /// Where these files are, for messages.
    pub fn path(&self) -> &Path {
        match self {
            Files::Dir(p) | Files::Tar { path: p, .. } => p,
        }
    }

    /// Open the file `name` (relative to the root): a reader and its size.
    pub fn open(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64), LocalError> {
        let Some(mut name) = normalize(name) else {
            return Err(LocalError::Escapes { path: self.path().to_path_buf(), name: name.to_string() });
        };
        match self {
            Files::Dir(dir) => {
                let p = dir.join(&name);
                let f = File::open(&p).map_err(|e| LocalError::open(&p, e))?;
                let m = f.metadata().map_err(|e| LocalError::open(&p, e))?;
                if !m.is_file() {
                    return Err(LocalError::Missing { path: dir.clone(), name });
                }
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
}
