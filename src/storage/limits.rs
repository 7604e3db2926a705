//! Disk-space limits on layers: a layer can expand without bound (a 2 MB
//! gzip of 2 GiB of zeros), and a pull that fills the file system of the
//! image store also breaks every other program writing there. podman
//! stops only at ENOSPC; mtbx stops a layer that expands past a multiple
//! of its compressed size, or that would leave the file system with less
//! than a small reserve, and warns before a pull that looks too big for
//! the free space.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use super::config::ConfigError;

/// The environment variable that sets how far a layer may expand.
pub const EXPANSION_VAR: &str = "MTBX_MAX_LAYER_EXPANSION";
/// A layer may be this many times its compressed size by default: well
/// past what real layers reach (text and binaries compress 2-10x), far
/// below a compression bomb (1000x).
pub const DEFAULT_EXPANSION: u64 = 100;
/// How much a layer usually expands, for the warning before a pull.
const TYPICAL_EXPANSION: u64 = 3;
/// Free space is looked at again after a quarter of the reserve has been
/// read, so the layer stops before the reserve is used up, but at most
/// this often (a big disk) ...
const CHECK_EVERY_MAX: u64 = 8 << 20;
/// ... and at least this seldom (a tiny one).
const CHECK_EVERY_MIN: u64 = 16 << 10;
const MIB: u64 = 1 << 20;

/// How far layers may expand: at most `ratio` times their compressed
/// size, but never limited below `ratio` MiB, so small layers that compress
/// very well (a few files of zeros) still pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expansion {
    ratio: Option<u64>,
}

impl Expansion {
    /// No limit.
    pub const UNLIMITED: Expansion = Expansion { ratio: None };

    /// From [`EXPANSION_VAR`]: a ratio (`100` or `100x`), or `off` (or 0)
    /// for no limit; unset or empty means [`DEFAULT_EXPANSION`].
    pub fn from_env() -> Result<Expansion, ConfigError> {
        match std::env::var(EXPANSION_VAR) {
            Ok(v) => Self::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(Expansion { ratio: Some(DEFAULT_EXPANSION) }),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(ConfigError::Env { var: EXPANSION_VAR, value: v.to_string_lossy().into_owned() })
            }
        }
    }

    fn parse(v: &str) -> Result<Expansion, ConfigError> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(Expansion { ratio: Some(DEFAULT_EXPANSION) });
        }
        if t.eq_ignore_ascii_case("off") {
            return Ok(Expansion::UNLIMITED);
        }
        match t.strip_suffix(['x', 'X']).unwrap_or(t).parse::<u64>() {
            Ok(0) => Ok(Expansion::UNLIMITED),
            Ok(r) => Ok(Expansion { ratio: Some(r) }),
            Err(_) => Err(ConfigError::Env { var: EXPANSION_VAR, value: v.to_string() }),
        }
    }

    /// The most uncompressed bytes a layer of `compressed` bytes may have.
    pub fn max_bytes(self, compressed: u64) -> Option<u64> {
        self.ratio.map(|r| r.saturating_mul(compressed).max(r.saturating_mul(MIB)))
    }
}

/// Why a layer was stopped.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The layer expanded past its limit.
    #[error(
        "the layer expands past {} uncompressed ({ratio}x its compressed size): refusing it as a \
         likely compression bomb; set {EXPANSION_VAR} to a larger ratio (or off) if it is genuine",
        human(*limit)
    )]
    Expansion {
        /// The limit in bytes.
        limit: u64,
        /// The ratio it came from.
        ratio: u64,
    },
    /// The file system is almost full.
    #[error(
        "no space left for the layer: the image store's file system is down to {} free, under the {} \
         kept in reserve; free some space and pull again",
        human(*free),
        human(*reserve)
    )]
    Space {
        /// Bytes free (for unprivileged users).
        free: u64,
        /// The reserve.
        reserve: u64,
    },
}

/// Free and total bytes of the file system holding `fd`.
fn space(fd: impl AsFd) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::fstatvfs(fd)?;
    Ok((s.f_bavail.saturating_mul(s.f_frsize), s.f_blocks.saturating_mul(s.f_frsize)))
}

/// What stays free: 1% of the file system, at most 64 MiB (a big disk
/// need not keep gigabytes back, a small one cannot).
fn reserve(total: u64) -> u64 {
    (total / 100).min(64 * MIB)
}

/// A warning when `download` compressed bytes, expanded as layers usually
/// expand, would not fit in the free space of the file system at `path`.
pub fn space_warning(path: &Path, download: u64) -> Option<String> {
    let dir = std::fs::File::open(path).ok()?;
    let (free, total) = space(&dir).ok()?;
    let need = download.saturating_mul(TYPICAL_EXPANSION);
    (free.saturating_sub(reserve(total)) < need).then(|| {
        format!(
            "{} has {} free; this pull downloads {}, which usually expands to about {}: it may run out of space",
            path.display(),
            human(free),
            human(download),
            human(need)
        )
    })
}

/// A layer's tar stream, stopped with a [`LimitError`] (as the io::Error's
/// inner error) once it passes `max_bytes` or the file system holding
/// `fs` runs low.
pub(crate) struct Guarded<'f, R, F: AsFd> {
    inner: R,
    fs: &'f F,
    read: u64,
    max_bytes: Option<u64>,
    expansion: Expansion,
    next_check: u64,
}

impl<'f, R: Read, F: AsFd> Guarded<'f, R, F> {
    pub fn new(inner: R, fs: &'f F, max_bytes: Option<u64>, expansion: Expansion) -> Self {
        Guarded { inner, fs, read: 0, max_bytes, expansion, next_check: 0 }
    }

    fn check_space(&mut self) -> std::io::Result<()> {
        // A file system that cannot say (statvfs unsupported) is not
        // stopped: ENOSPC still will.
        let Ok((free, total)) = space(self.fs) else {
            self.next_check = self.read + CHECK_EVERY_MAX;
            return Ok(());
        };
        let reserve = reserve(total);
        self.next_check = self.read + (reserve / 4).clamp(CHECK_EVERY_MIN, CHECK_EVERY_MAX);
        if free < reserve {
            return Err(std::io::Error::other(LimitError::Space { free, reserve }));
        }
        Ok(())
    }
}

impl<R: Read, F: AsFd> Read for Guarded<'_, R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read >= self.next_check {
            self.check_space()?;
        }
        // Never more between two checks than the interval allows.
        let room = usize::try_from(self.next_check - self.read).unwrap_or(usize::MAX).max(1);
        let want = buf.len().min(room);
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if let Some(limit) = self.max_bytes.filter(|&l| self.read > l) {
            let ratio = self.expansion.ratio.unwrap_or(0);
            return Err(std::io::Error::other(LimitError::Expansion { limit, ratio }));
        }
        Ok(n)
    }
}

/// Bytes for people: MiB below a GiB, GiB above.
fn human(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_from_its_variable() {
        assert_eq!(Expansion::parse("").unwrap().max_bytes(1), Some(DEFAULT_EXPANSION * MIB));
        assert_eq!(Expansion::parse("20x").unwrap().max_bytes(10 * MIB), Some(200 * MIB));
        assert_eq!(Expansion::parse("20").unwrap().max_bytes(1000), Some(20 * MIB), "never below 20 MiB");
        assert_eq!(Expansion::parse("off").unwrap(), Expansion::UNLIMITED);
        assert_eq!(Expansion::parse("0").unwrap().max_bytes(5), None);
        let e = Expansion::parse("lots").unwrap_err();
        assert!(e.to_string().contains(EXPANSION_VAR), "{e}");
    }

    #[test]
    fn a_stream_past_its_limit_stops_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let fs = std::fs::File::open(dir.path()).unwrap();
        let zeros = std::io::repeat(0).take(10 * MIB);
        let mut g = Guarded::new(zeros, &fs, Some(3 * MIB), Expansion { ratio: Some(2) });
        let e = std::io::copy(&mut g, &mut std::io::sink()).unwrap_err();
        assert!(
            matches!(e.get_ref().and_then(|i| i.downcast_ref()), Some(LimitError::Expansion { .. })),
            "{e}"
        );
        assert!(g.read <= 3 * MIB + (64 << 10), "stopped at the limit, not at the end: {}", g.read);
    }
}
