//! Static-ELF validation of emulator binaries.
//!
//! A QEMU interpreter registered with the F flag is opened on the host but
//! executed inside containers of another distribution and architecture:
//! there is no host libc and no host dynamic loader in there. So an
//! interpreter is usable only if it is an ELF for the host's own machine that
//! needs nothing at run time: no PT_INTERP and no DT_NEEDED. Debian's
//! `qemu-*-static` are static-pie (ET_DYN with PT_DYNAMIC, but no loader and
//! no libraries), and those are as good as classic static ET_EXEC files.

use std::fmt;
use std::path::{Path, PathBuf};

use goblin::elf::header::{ET_DYN, ET_EXEC};
use goblin::elf::Elf;
use serde::Serialize;

use crate::emu::arch::{Arch, Class, Endian, ARCHES};

/// How a usable interpreter is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Linkage {
    /// ET_EXEC with no interpreter.
    Static,
    /// ET_DYN with no interpreter and no needed libraries.
    StaticPie,
}

impl fmt::Display for Linkage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Linkage::Static => "static",
            Linkage::StaticPie => "static-pie",
        })
    }
}

/// Why a file cannot serve as an interpreter; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No ELF magic at all.
    #[error("{} is not an ELF executable; give the path of a static qemu binary", path.display())]
    NotElf {
        /// The file.
        path: PathBuf,
    },
    /// ELF magic but a header or table that does not parse.
    #[error("{} is a truncated or malformed ELF file ({reason}); reinstall it", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// goblin's account.
        reason: String,
    },
    /// ELF magic but headers goblin cannot parse.
    #[error("{} is a truncated or malformed ELF file; reinstall it", path.display())]
    Unparsable {
        /// The file.
        path: PathBuf,
        /// goblin's account.
        #[source]
        source: goblin::error::Error,
    },
    /// An ELF that is not an executable (a relocatable object or core).
    #[error("{} is an ELF file but not an executable (e_type {e_type})", path.display())]
    NotExecutable {
        /// The file.
        path: PathBuf,
        /// Its e_type.
        e_type: u16,
    },
    /// Built for another machine than the one it must run on.
    #[error("{} is built for {found}, but this machine is {host}; install the qemu build for this machine", path.display())]
    WrongMachine {
        /// The file.
        path: PathBuf,
        /// What the file is for.
        found: String,
        /// What the host is.
        host: String,
    },
    /// Needs a dynamic loader or shared libraries.
    #[error(
        "{} is dynamically linked ({}); it cannot run inside a container of another distribution: install the static build (Debian/Ubuntu: qemu-user-static; Fedora: qemu-user-static)",
        path.display(), describe_dynamic(interpreter.as_deref(), needed)
    )]
    Dynamic {
        /// The file.
        path: PathBuf,
        /// Its PT_INTERP, when it has one.
        interpreter: Option<String>,
        /// Its DT_NEEDED entries.
        needed: Vec<String>,
    },
}

fn describe_dynamic(interp: Option<&str>, needed: &[String]) -> String {
    let mut parts = Vec::new();
    if let Some(i) = interp {
        parts.push(format!("loader {i}"));
    }
    if !needed.is_empty() {
        parts.push(format!("needs {}", needed.join(", ")));
    }
    parts.join("; ")
}

/// What the check found out about a usable static executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticElf {
    /// The file checked.
    pub path: PathBuf,
    /// static or static-pie.
    pub linkage: Linkage,
    /// The platform it runs on.
    pub machine: String,
}

/// The ELF identity of a parsed header as a table row, if it is one.
fn identify(header: &goblin::elf::Header) -> Option<&'static Arch> {
    let class = if header.e_ident[4] == 2 { Class::Elf64 } else { Class::Elf32 };
    let endian = if header.e_ident[5] == 2 { Endian::Big } else { Endian::Little };
    ARCHES.iter().find(|a| {
        a.default_variant
            && a.elf.machine == header.e_machine
            && a.elf.class == class
            && a.elf.endian == endian
    })
}

/// The architecture an ELF file is for, from its first bytes (64 are
/// enough): how a root file system's architecture is told from its
/// programs. None for anything else (a script, a truncated header, a
/// machine the table lacks).
pub fn arch_of(head: &[u8]) -> Option<&'static Arch> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let header = Elf::parse_header(head).ok()?;
    matches!(header.e_type, ET_EXEC | ET_DYN).then(|| identify(&header)).flatten()
}

/// Check that the file at `path` is a static executable for `host`.
///
/// Reads only the ELF header, the program headers and the dynamic section
/// (QEMU binaries are over 10 MB; their headers are a few kilobytes). Only
/// a file that turns out dynamic is parsed whole, to name its libraries.
pub fn check_static(path: &Path, host: &Arch) -> Result<StaticElf, ElfError> {
    use std::os::unix::fs::FileExt;
    let read_err = |source| ElfError::Read { path: path.into(), source };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    // Read exactly `n` bytes at `off`, or report the file as truncated.
    let read_at = |off: u64, n: u64| -> Result<Vec<u8>, ElfError> {
        let malformed = || ElfError::Malformed {
            path: path.into(),
            reason: format!("{n} bytes at offset {off} lie past the end of the file"),
        };
        if off.checked_add(n).is_none_or(|end| end > len) || n > 1 << 24 {
            return Err(malformed());
        }
        let mut buf = vec![0u8; n as usize];
        file.read_exact_at(&mut buf, off).map_err(read_err)?;
        Ok(buf)
    };
    let head = read_at(0, len.min(64))?;
    if head.len() < 4 || &head[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf { path: path.into() });
    }
    let header =
        Elf::parse_header(&head).map_err(|source| ElfError::Unparsable { path: path.into(), source })?;
    let ctx = goblin::container::Ctx::new(
        if header.e_ident[4] == 2 {
            goblin::container::Container::Big
        } else {
            goblin::container::Container::Little
        },
        if header.e_ident[5] == 2 {
            goblin::container::Endian::Big
        } else {
            goblin::container::Endian::Little
        },
    );
    let phdr_bytes = read_at(header.e_phoff, header.e_phnum as u64 * header.e_phentsize as u64)?;
    let phdrs = goblin::elf::ProgramHeader::parse(&phdr_bytes, 0, header.e_phnum as usize, ctx)
        .map_err(|source| ElfError::Unparsable { path: path.into(), source })?;
    let mut dynamic = false;
    for ph in &phdrs {
        match ph.p_type {
            goblin::elf::program_header::PT_INTERP => dynamic = true,
            goblin::elf::program_header::PT_DYNAMIC => {
                let bytes = read_at(ph.p_offset, ph.p_filesz)?;
                dynamic |= has_needed(&bytes, ctx);
            }
            _ => {}
        }
    }
    if dynamic {
        // The error path: parse it all to say what it needs.
        let bytes = std::fs::read(path).map_err(read_err)?;
        return check_static_bytes(path, &bytes, host);
    }
    verdict(path, &header, None, Vec::new(), host)
}

/// Whether a dynamic section holds a DT_NEEDED entry before DT_NULL.
fn has_needed(bytes: &[u8], ctx: goblin::container::Ctx) -> bool {
    let word = if ctx.is_big() { 8 } else { 4 };
    let little = ctx.is_little_endian();
    let get = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for (i, &x) in b.iter().enumerate() {
            let shift = if little { i } else { b.len() - 1 - i };
            v |= (x as u64) << (8 * shift);
        }
        v
    };
    for entry in bytes.chunks_exact(2 * word) {
        match get(&entry[..word]) {
            0 => return false, // DT_NULL
            t if t == goblin::elf::dynamic::DT_NEEDED => return true,
            _ => {}
        }
    }
    false
}

/// The decision shared by both readers, from the header and what the file
/// needs at run time.
fn verdict(
    path: &Path,
    header: &goblin::elf::Header,
    interpreter: Option<String>,
    needed: Vec<String>,
    host: &Arch,
) -> Result<StaticElf, ElfError> {
    let e_type = header.e_type;
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(ElfError::NotExecutable { path: path.into(), e_type });
    }
    let found = identify(header);
    if !found.is_some_and(|a| a.is_native_on(host)) {
        let found = match found {
            Some(a) => a.platform(),
            None => format!("ELF machine {}", header.e_machine),
        };
        return Err(ElfError::WrongMachine { path: path.into(), found, host: host.platform() });
    }
    if interpreter.is_some() || !needed.is_empty() {
        return Err(ElfError::Dynamic { path: path.into(), interpreter, needed });
    }
    let linkage = if e_type == ET_EXEC { Linkage::Static } else { Linkage::StaticPie };
    Ok(StaticElf { path: path.into(), linkage, machine: host.platform() })
}

/// [`check_static`] on bytes already in memory; `path` names them in errors.
pub fn check_static_bytes(path: &Path, bytes: &[u8], host: &Arch) -> Result<StaticElf, ElfError> {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf { path: path.into() });
    }
    let elf = Elf::parse(bytes).map_err(|source| ElfError::Unparsable { path: path.into(), source })?;
    let interpreter = elf.interpreter.map(str::to_string);
    let needed: Vec<String> = elf.libraries.iter().map(|s| s.to_string()).collect();
    verdict(path, &elf.header, interpreter, needed, host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emu::testprog;

    fn host() -> &'static Arch {
        Arch::host()
    }

    #[test]
    fn generated_program_for_the_host_is_static() {
        let bytes = testprog::program(host());
        let info = check_static_bytes(Path::new("prog"), &bytes, host()).unwrap();
        assert_eq!(info.linkage, Linkage::Static);
    }

    #[test]
    fn foreign_program_is_the_wrong_machine() {
        let arm = Arch::parse("arm64").unwrap();
        let bytes = testprog::program(arm);
        let err = check_static_bytes(Path::new("prog"), &bytes, host()).unwrap_err();
        assert!(matches!(err, ElfError::WrongMachine { .. }), "{err}");
        assert!(err.to_string().contains("arm64/v8"), "{err}");
    }

    #[test]
    fn non_elf_and_truncated_elf_are_refused() {
        let err = check_static_bytes(Path::new("x"), b"#!/bin/sh\n", host()).unwrap_err();
        assert!(matches!(err, ElfError::NotElf { .. }), "{err}");
        let bytes = testprog::program(host());
        for cut in [4, 20, 40, 70] {
            let err = check_static_bytes(Path::new("x"), &bytes[..cut], host()).unwrap_err();
            assert!(
                matches!(err, ElfError::Malformed { .. } | ElfError::Unparsable { .. }),
                "cut {cut}: {err}"
            );
            assert!(err.to_string().contains("truncated or malformed"), "cut {cut}: {err}");
        }
    }

    #[test]
    fn the_architecture_of_a_program_is_read_from_its_header() {
        for name in ["arm64", "amd64", "ppc64le", "s390x", "arm/v7", "riscv64"] {
            let arch = Arch::parse(name).unwrap();
            let bytes = testprog::program(arch);
            let found = arch_of(&bytes[..64]).unwrap_or_else(|| panic!("{name}: not recognised"));
            assert_eq!(found.elf, arch.elf, "{name}");
        }
        assert!(arch_of(b"#!/bin/sh\n").is_none());
        assert!(arch_of(&testprog::program(host())[..10]).is_none());
    }

    #[test]
    fn messages_are_one_line() {
        let err = ElfError::Dynamic {
            path: "/usr/bin/qemu-aarch64".into(),
            interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
            needed: vec!["libglib-2.0.so.0".into(), "libc.so.6".into()],
        };
        let msg = err.to_string();
        assert!(!msg.contains('\n'));
        assert!(msg.contains("libglib-2.0.so.0, libc.so.6"), "{msg}");
        assert!(msg.contains("qemu-user-static"), "{msg}");
    }
}
