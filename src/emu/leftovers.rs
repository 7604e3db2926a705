//! What a `run --rootfs` made in the tree (mount points it lacked) and
//! beside it (an overlay's scratch directory), and taking it away again:
//! after the run, after a refusal, and, when mtbx was killed before it
//! could, at the next run on the same tree.
//!
//! Two rules make the removal safe while the tree's own programs have had
//! their way with it:
//!
//! - Nothing is removed through a path: each entry is found from the
//!   tree's root by openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS
//!   (a link a program planted, `home -> ~/o`, stops the walk) and removed
//!   with unlinkat on its parent's descriptor.
//! - Only what mtbx made goes: the entry must still be the inode it
//!   created (device and inode number), and empty (rmdir, or a file of
//!   length 0); anything a program put there stays.
//!
//! The record is a journal in mtbx's own state directory
//! (`$XDG_STATE_HOME/mtbx/rootfs`, else `~/.local/state/mtbx/rootfs`), one
//! file per run, held under an exclusive flock(2) for the run's whole
//! life. The kernel drops the lock when the run dies however it dies, so
//! a journal whose lock can be taken belongs to a dead run: the next run
//! on the same tree removes what it lists, then the journal.

use std::io::{BufRead, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

/// One thing a run made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Made {
    /// A directory or an empty file in the tree: its path relative to
    /// the tree's root (no link on the way when it was made), and its
    /// identity then.
    InTree {
        /// Relative to the tree's root.
        rel: PathBuf,
        /// A directory (else an empty file).
        dir: bool,
        /// Its device.
        dev: u64,
        /// Its inode number.
        ino: u64,
    },
    /// A scratch directory of mtbx's own outside the tree (an overlay's
    /// upper and work directories), removed whole.
    Scratch(PathBuf),
}

/// The first line of a journal: which tree it is about.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    tree: PathBuf,
    dev: u64,
    ino: u64,
    /// The directories made for the journal, deepest last.
    #[serde(default)]
    made_dirs: Vec<PathBuf>,
}

/// A run's journal: open, locked, appended to as things are made.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
    /// The directories made for it and mtbx's own two, deepest last:
    /// removed again when empty, so that a run leaves no trace in the home.
    made_dirs: Vec<PathBuf>,
}

/// mtbx's directory of journals for a user whose home is `home`.
pub fn journal_dir(home: &Path) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".local/state"));
    state.join("mtbx/rootfs")
}

/// The identity of the tree's root.
fn identity(root: BorrowedFd<'_>) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(root)?;
    Ok((st.st_dev, st.st_ino))
}

impl Journal {
    /// A new journal in `dir` for the tree at `tree` (root `root`),
    /// locked for as long as it is open.
    pub fn create(dir: &Path, tree: &Path, root: BorrowedFd<'_>) -> std::io::Result<Journal> {
        // The directories this run makes, and mtbx's own two (`mtbx/rootfs`,
        // whoever made them: runs on other trees may have, at the same
        // moment), are removed again when empty.
        let made_dirs: Vec<PathBuf> = {
            let mut dirs: Vec<PathBuf> = dir
                .ancestors()
                .take_while(|a| a.symlink_metadata().is_err())
                .map(Path::to_path_buf)
                .collect();
            for own in [Some(dir), dir.parent()].into_iter().flatten() {
                if !dirs.iter().any(|d| d == own) {
                    dirs.push(own.to_path_buf());
                }
            }
            dirs.sort_by_key(|d| d.components().count());
            dirs
        };
        crate::fsutil::mkdir_all(dir, 0o700)?;
        let mut name = [0u8; 8];
        crate::fsutil::random_bytes(&mut name)?;
        let path = dir.join(format!("{}.journal", hex::encode(name)));
        let file =
            std::fs::OpenOptions::new().create_new(true).read(true).append(true).mode(0o600).open(&path)?;
        if !crate::sys::files::try_flock(&file, true)? {
            return Err(std::io::Error::other("a new journal is locked by someone else"));
        }
        let (dev, ino) = identity(root)?;
        let header = Header { tree: tree.to_path_buf(), dev, ino, made_dirs: made_dirs.clone() };
        let mut j = Journal { path, file, made_dirs };
        j.line(&serde_json::to_vec(&header).map_err(std::io::Error::other)?)?;
        Ok(j)
    }

    fn line(&mut self, json: &[u8]) -> std::io::Result<()> {
        let mut l = json.to_vec();
        l.push(b'\n');
        self.file.write_all(&l)
    }

    /// Record `made` before anything else happens to it.
    pub fn record(&mut self, made: &Made) -> std::io::Result<()> {
        self.line(&serde_json::to_vec(made).map_err(std::io::Error::other)?)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything recorded has been removed: the journal goes (its lock
    /// with it).
    pub fn finish(self) {
        let _ = std::fs::remove_file(&self.path);
        remove_dirs(&self.made_dirs);
    }
}

/// The directories made for a journal, deepest first, each only while
/// empty (another run's journal keeps them).
fn remove_dirs(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// Remove what `made` lists, last made first, by the rules of this
/// module; the tree's root is `root`. Errors are ignored: what cannot be
/// removed safely stays.
pub fn remove(root: BorrowedFd<'_>, made: &[Made]) {
    for m in made.iter().rev() {
        match m {
            Made::InTree { rel, dir, dev, ino } => {
                let _ = remove_in_tree(root, rel, *dir, (*dev, *ino));
            }
            Made::Scratch(p) => remove_scratch(p),
        }
    }
}

/// One entry of the tree, if it is still what was made, and empty.
fn remove_in_tree(root: BorrowedFd<'_>, rel: &Path, dir: bool, id: (u64, u64)) -> std::io::Result<()> {
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Ok(());
    };
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Ok(()); // only plain relative paths are ever recorded
    }
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let pfd = rustix::fs::openat2(
        root,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        how,
    )?;
    let st = rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if (st.st_dev, st.st_ino) != id {
        return Ok(());
    }
    let kind = st.st_mode & libc::S_IFMT;
    if dir && kind == libc::S_IFDIR {
        rustix::fs::unlinkat(&pfd, name, AtFlags::REMOVEDIR)?;
    } else if !dir && kind == libc::S_IFREG && st.st_size == 0 {
        rustix::fs::unlinkat(&pfd, name, AtFlags::empty())?;
    }
    Ok(())
}

/// A scratch directory of mtbx's (`mtbx-layer-*`, the user's own);
/// overlayfs leaves its work directory without permissions, given back
/// first.
fn remove_scratch(p: &Path) {
    let ours = p.file_name().is_some_and(|n| n.as_bytes().starts_with(b"mtbx-layer-"));
    let owned = std::fs::symlink_metadata(p).is_ok_and(|m| {
        m.is_dir() && std::os::unix::fs::MetadataExt::uid(&m) == rustix::process::geteuid().as_raw()
    });
    if ours && owned {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(p.join("work/work"), std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::remove_dir_all(p);
    }
}

/// Remove what dead runs on the tree `root` left (their journals' lock
/// is free), and their journals; journals of live runs, and of other
/// trees, are left alone. How many journals were finished.
pub fn sweep(dir: &Path, root: BorrowedFd<'_>) -> usize {
    let Ok(me) = identity(root) else { return 0 };
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut done = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "journal") {
            continue;
        }
        let Ok(file) = crate::sys::files::open_regular(&path, false) else { continue };
        if !crate::sys::files::try_flock(&file, true).unwrap_or(false) {
            continue; // a live run's
        }
        let mut lines = std::io::BufReader::new(&file).split(b'\n');
        let header: Option<Header> =
            lines.next().and_then(|l| l.ok()).and_then(|l| serde_json::from_slice(&l).ok());
        let Some(header) = header else {
            let _ = std::fs::remove_file(&path); // torn before its header: nothing was made
            continue;
        };
        if (header.dev, header.ino) != me {
            // Another tree's: left for its next run, unless that tree is
            // gone (or another is at its path), when nothing is to be done.
            let there = std::fs::metadata(&header.tree).map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino())
            });
            if there.is_err() || there.is_ok_and(|id| id != (header.dev, header.ino)) {
                let _ = std::fs::remove_file(&path);
                remove_dirs(&header.made_dirs);
            }
            continue;
        }
        // A torn last line is what was being recorded when the run died:
        // not made yet, or made and not recorded; it is skipped.
        let made: Vec<Made> =
            lines.map_while(Result::ok).filter_map(|l| serde_json::from_slice(&l).ok()).collect();
        tracing::debug!("removing what a killed run left in {}: {made:?}", header.tree.display());
        remove(root, &made);
        let _ = std::fs::remove_file(&path);
        remove_dirs(&header.made_dirs);
        done += 1;
    }
    done
}

/// How many runs other than the one whose journal is `own` are using the
/// tree `root` now: journals in `dir` of the same tree whose lock is held.
/// What a run made may be what another run mounts on: it is left for the
/// last one to end.
pub fn live_runs(dir: &Path, root: BorrowedFd<'_>, own: &Path) -> usize {
    let Ok(me) = identity(root) else { return 0 };
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut live = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path == own || path.extension().is_none_or(|x| x != "journal") {
            continue;
        }
        let Ok(file) = crate::sys::files::open_regular(&path, false) else { continue };
        let header: Option<Header> = std::io::BufReader::new(&file)
            .split(b'\n')
            .next()
            .and_then(|l| l.ok())
            .and_then(|l| serde_json::from_slice(&l).ok());
        if header.is_some_and(|h| (h.dev, h.ino) == me)
            && !crate::sys::files::try_flock(&file, false).unwrap_or(true)
        {
            live += 1;
        }
    }
    live
}

/// What `fd`'s entry `name` in `dir_fd` is, to record it once made.
pub fn made_at(dir_fd: BorrowedFd<'_>, name: &Path, rel: PathBuf, dir: bool) -> std::io::Result<Made> {
    let st = rustix::fs::statat(dir_fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(Made::InTree { rel, dir, dev: st.st_dev, ino: st.st_ino })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn removal_never_follows_a_planted_link_nor_takes_what_is_not_its_own() {
        let base = tempfile::tempdir().unwrap();
        let tree = base.path().join("tree");
        let outside = base.path().join("o");
        std::fs::create_dir_all(tree.join("home/me")).unwrap();
        std::fs::create_dir_all(outside.join("me")).unwrap();
        std::fs::create_dir_all(tree.join("proc")).unwrap();
        std::fs::create_dir_all(tree.join("sys")).unwrap();
        let root = rustix::fs::open(&tree, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let home = rustix::fs::open(tree.join("home"), OFlags::PATH, Mode::empty()).unwrap();
        let me = made_at(home.as_fd(), Path::new("me"), "home/me".into(), true).unwrap();
        let proc = made_at(root.as_fd(), Path::new("proc"), "proc".into(), true).unwrap();
        let sys = made_at(root.as_fd(), Path::new("sys"), "sys".into(), true).unwrap();
        // A program moves /home away and plants a link to a directory
        // outside with the same name in it; /proc is replaced by another
        // (the old one kept, so the inode differs); /sys gets a file.
        std::fs::rename(tree.join("home"), tree.join("h")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("home")).unwrap();
        std::fs::rename(tree.join("proc"), tree.join("p")).unwrap();
        std::fs::create_dir(tree.join("proc")).unwrap();
        std::fs::write(tree.join("sys/kept"), b"").unwrap();
        remove(root.as_fd(), &[me, proc, sys]);
        assert!(outside.join("me").is_dir(), "the link was not followed");
        assert!(tree.join("h/me").is_dir(), "moved: not at its path any more");
        assert!(tree.join("proc").is_dir(), "not the directory mtbx made");
        assert!(tree.join("sys/kept").is_file(), "not empty");
    }

    #[test]
    fn a_dead_runs_journal_is_swept_and_a_live_ones_left() {
        let base = tempfile::tempdir().unwrap();
        let tree = base.path().join("tree");
        let jdir = base.path().join("state/journals");
        std::fs::create_dir_all(&tree).unwrap();
        let root = rustix::fs::open(&tree, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut live = Journal::create(&jdir, &tree, root.as_fd()).unwrap();
        std::fs::create_dir(tree.join("dev")).unwrap();
        let dev = made_at(root.as_fd(), Path::new("dev"), "dev".into(), true).unwrap();
        live.record(&dev).unwrap();
        // A second description of the same file: the live run's lock holds.
        assert_eq!(sweep(&jdir, root.as_fd()), 0);
        assert_eq!(live_runs(&jdir, root.as_fd(), Path::new("")), 1);
        assert_eq!(live_runs(&jdir, root.as_fd(), live.path()), 0, "not counting itself");
        assert!(tree.join("dev").is_dir());
        // The run dies (its descriptor closes) with a torn last line.
        live.file.write_all(b"{\"InTree\":{\"rel\":\"pro").unwrap();
        drop(live);
        assert_eq!(sweep(&jdir, root.as_fd()), 1);
        assert!(!tree.join("dev").exists());
        assert!(!base.path().join("state").exists(), "the journal's directories went with it");
        std::fs::create_dir_all(&jdir).unwrap();
        // A dead run's journal of a tree that is gone is dropped by any
        // sweep; one of a tree that is still there is left for it.
        let gone = base.path().join("gone");
        let other = base.path().join("other");
        std::fs::create_dir(&gone).unwrap();
        std::fs::create_dir(&other).unwrap();
        for t in [&gone, &other] {
            let fd = rustix::fs::open(t, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
            drop(Journal::create(&jdir, t, fd.as_fd()).unwrap());
        }
        std::fs::remove_dir(&gone).unwrap();
        assert_eq!(sweep(&jdir, root.as_fd()), 0);
        assert_eq!(std::fs::read_dir(&jdir).unwrap().count(), 1, "the other tree's stays");
        for e in std::fs::read_dir(&jdir).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        // A run that finishes takes the directories it made with it, and
        // mtbx's own two when empty; others stay.
        let j = Journal::create(&jdir.join("deeper"), &tree, root.as_fd()).unwrap();
        j.finish();
        assert!(!jdir.exists() && base.path().join("state").is_dir());
    }
}
