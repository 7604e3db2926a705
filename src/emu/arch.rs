//! The architecture table: one typed row per OCI platform that QEMU user mode
//! can emulate on Linux.
//!
//! Every other module asks this table instead of matching on strings: the
//! registry client needs OCI names, binfmt_misc needs magic and mask, the ELF
//! check needs e_machine, the emulation check needs a tiny program, and users
//! type whatever name their distribution taught them. Keeping all of that in
//! one row per platform means a new architecture is one edit, and a test can
//! hold every row against QEMU's own `qemu-binfmt-conf.sh` table.

use std::fmt;

use serde::Serialize;

/// ELF class (EI_CLASS) of an architecture's binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// ELFCLASS32
    Elf32,
    /// ELFCLASS64
    Elf64,
}

/// Byte order (EI_DATA) of an architecture's binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    /// ELFDATA2LSB
    Little,
    /// ELFDATA2MSB
    Big,
}

/// How the kernel recognises a binary of one QEMU target: the binfmt_misc
/// magic and mask over the first bytes of the ELF header.
///
/// Several OCI platforms (arm/v5, arm/v6, arm/v7) share one QEMU target and
/// so one binfmt_misc entry; they share one `QemuTarget` value too.
#[derive(Debug, PartialEq, Eq)]
pub struct QemuTarget {
    /// QEMU's name for the target: `qemu-<name>` is the interpreter and the
    /// binfmt_misc entry name, as qemu-binfmt-conf.sh and Debian use it.
    pub name: &'static str,
    /// binfmt_misc magic, byte for byte as in qemu-binfmt-conf.sh.
    pub magic: &'static [u8],
    /// binfmt_misc mask, the same length as `magic`.
    pub mask: &'static [u8],
    /// Instruction set, for the generated emulation check program.
    pub isa: Isa,
}

/// Instruction set families the emulation check program is written for;
/// byte order and word size come from the row's [`ElfId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// x86-64
    X86_64,
    /// i386 and later 32-bit x86
    I386,
    /// AArch64 (A64)
    Aarch64,
    /// 32-bit ARM (A32), ARMv5 and later
    Arm,
    /// 64-bit Power (both byte orders)
    Ppc64,
    /// z/Architecture
    S390x,
    /// RISC-V RV64
    Riscv64,
    /// MIPS, o32 or n64 (both byte orders)
    Mips,
    /// LoongArch64
    LoongArch64,
}

/// The ELF identity of an architecture: what a binary built for it says in
/// its header, and what the test program generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ElfId {
    /// e_machine
    pub machine: u16,
    /// EI_CLASS
    pub class: Class,
    /// EI_DATA
    pub endian: Endian,
    /// e_flags the generated test program carries (ABI bits QEMU reads).
    pub flags: u32,
}

/// One OCI platform that mtbx can run under emulation or natively.
#[derive(Debug, PartialEq, Eq)]
pub struct Arch {
    /// OCI / GOARCH architecture name (`arm64`, `ppc64le`, ...).
    pub oci: &'static str,
    /// OCI variant, when the platform has one (`v7` for arm/v7).
    pub variant: Option<&'static str>,
    /// Whether this row is what the bare architecture name means when no
    /// variant is given (arm means arm/v7, arm64 means arm64/v8).
    pub default_variant: bool,
    /// What `uname -m` prints inside a container of this platform; the first
    /// is the usual one, the rest are other answers an emulator may give
    /// (qemu-arm reports armv7l whatever the binary's variant).
    pub uname: &'static [&'static str],
    /// Other names people type for this platform.
    pub aliases: &'static [&'static str],
    /// The QEMU target that emulates it.
    pub qemu: &'static QemuTarget,
    /// ELF identity of its binaries.
    pub elf: ElfId,
    /// Linux system call numbers the test program uses.
    pub syscalls: Syscalls,
}

/// The three Linux system call numbers the emulation check program needs;
/// they differ per ABI, which is why they live in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscalls {
    /// uname(2), or newuname where the ABI has both.
    pub uname: u32,
    /// write(2)
    pub write: u32,
    /// exit(2)
    pub exit: u32,
}

const EM_386: u16 = 3;
const EM_MIPS: u16 = 8;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;
const EM_LOONGARCH: u16 = 258;

/// Syscall numbers of the asm-generic table (arm64, riscv64, loong64).
const GENERIC: Syscalls = Syscalls { uname: 160, write: 64, exit: 93 };
/// Syscall numbers of the classic i386-derived tables (i386, arm, ppc, s390).
const CLASSIC: Syscalls = Syscalls { uname: 122, write: 4, exit: 1 };

/// The ELF header prefix every target's magic begins with.
macro_rules! elf_ident {
    ($class:expr, $data:expr) => {
        [0x7f, b'E', b'L', b'F', $class, $data, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]
    };
}

/// Magic of a little-endian target: ident, e_type 2, e_machine.
macro_rules! le_magic {
    ($class:expr, $m0:expr, $m1:expr) => {{
        const I: [u8; 16] = elf_ident!($class, 1);
        [
            I[0], I[1], I[2], I[3], I[4], I[5], I[6], I[7], I[8], I[9], I[10], I[11], I[12], I[13], I[14],
            I[15], 0x02, 0x00, $m0, $m1,
        ]
    }};
}

/// Magic of a big-endian target: ident, e_type 2, e_machine.
macro_rules! be_magic {
    ($class:expr, $m0:expr, $m1:expr) => {{
        const I: [u8; 16] = elf_ident!($class, 2);
        [
            I[0], I[1], I[2], I[3], I[4], I[5], I[6], I[7], I[8], I[9], I[10], I[11], I[12], I[13], I[14],
            I[15], 0x00, 0x02, $m0, $m1,
        ]
    }};
}

/// The 20-byte masks of qemu-binfmt-conf.sh differ in four places only;
/// everything else must match exactly.
/// - `osabi`: byte 7 (EI_OSABI), ignored (0x00) or only its low bits (0xfc);
/// - `abiversion`: byte 8 (EI_ABIVERSION);
/// - `x86`: x86 entries also ignore the low bit of EI_DATA and EI_VERSION;
/// - `machine_hi`: the high byte of a little-endian e_machine (0x00 for
///   ppc64le, whose entry ignores it).
///
/// The low bit of e_type is always ignored so that ET_DYN (PIE) matches.
const fn mask(endian: Endian, osabi: u8, abiversion: u8, x86: bool, machine_hi: u8) -> [u8; 20] {
    let mut m = [0xff; 20];
    if x86 {
        m[5] = 0xfe;
        m[6] = 0xfe;
    }
    m[7] = osabi;
    m[8] = abiversion;
    match endian {
        Endian::Little => {
            m[16] = 0xfe;
            m[19] = machine_hi;
        }
        Endian::Big => m[17] = 0xfe,
    }
    m
}

const MASK_LE: [u8; 20] = mask(Endian::Little, 0x00, 0xff, false, 0xff);
const MASK_X86: [u8; 20] = mask(Endian::Little, 0x00, 0xff, true, 0xff);
const MASK_PPC64LE: [u8; 20] = mask(Endian::Little, 0xfc, 0xff, false, 0x00);
const MASK_BE_ABI: [u8; 20] = mask(Endian::Big, 0xfc, 0xff, false, 0xff);
const MASK_MIPS64EL: [u8; 20] = mask(Endian::Little, 0x00, 0xfe, false, 0xff);
const MASK_MIPS64: [u8; 20] = mask(Endian::Big, 0x00, 0xfe, false, 0xff);
const MASK_LOONGARCH: [u8; 20] = mask(Endian::Little, 0xfc, 0x00, false, 0xff);

/// QEMU's little-endian entry stops at byte 36, the big-endian one at 39:
/// each ends at the e_flags byte that holds the n32 bit.
const fn mips32<const N: usize>(be: bool) -> ([u8; N], [u8; N]) {
    let mut magic = [0u8; N];
    let mut mask = [0u8; N];
    let (head, base) = if be {
        (elf_ident!(1, 2), self::mask(Endian::Big, 0x00, 0xfe, false, 0xff))
    } else {
        (elf_ident!(1, 1), self::mask(Endian::Little, 0x00, 0xfe, false, 0xff))
    };
    let mut i = 0;
    while i < 20 {
        magic[i] = if i < 16 { head[i] } else { 0 };
        mask[i] = base[i];
        i += 1;
    }
    // e_type ET_EXEC and e_machine EM_MIPS, then the n32 bit of e_flags.
    if be {
        magic[17] = 0x02;
        magic[19] = EM_MIPS as u8;
        mask[39] = 0x20;
    } else {
        magic[16] = 0x02;
        magic[18] = EM_MIPS as u8;
        mask[36] = 0x20;
    }
    (magic, mask)
}

const MIPSEL: ([u8; 37], [u8; 37]) = mips32(false);
const MIPS: ([u8; 40], [u8; 40]) = mips32(true);

macro_rules! target {
    ($name:ident, $qemu:expr, $isa:ident, $magic:expr, $mask:expr) => {
        static $name: QemuTarget = QemuTarget { name: $qemu, magic: &$magic, mask: &$mask, isa: Isa::$isa };
    };
}

target!(Q_X86_64, "x86_64", X86_64, le_magic!(2, EM_X86_64 as u8, 0), MASK_X86);
target!(Q_I386, "i386", I386, le_magic!(1, EM_386 as u8, 0), MASK_X86);
target!(Q_AARCH64, "aarch64", Aarch64, le_magic!(2, EM_AARCH64 as u8, 0), MASK_LE);
target!(Q_ARM, "arm", Arm, le_magic!(1, EM_ARM as u8, 0), MASK_LE);
target!(Q_PPC64LE, "ppc64le", Ppc64, le_magic!(2, EM_PPC64 as u8, 0), MASK_PPC64LE);
target!(Q_PPC64, "ppc64", Ppc64, be_magic!(2, 0, EM_PPC64 as u8), MASK_BE_ABI);
target!(Q_S390X, "s390x", S390x, be_magic!(2, 0, EM_S390 as u8), MASK_BE_ABI);
target!(Q_RISCV64, "riscv64", Riscv64, le_magic!(2, EM_RISCV as u8, 0), MASK_LE);
target!(Q_MIPS64EL, "mips64el", Mips, le_magic!(2, EM_MIPS as u8, 0), MASK_MIPS64EL);
target!(Q_MIPS64, "mips64", Mips, be_magic!(2, 0, EM_MIPS as u8), MASK_MIPS64);
target!(Q_MIPSEL, "mipsel", Mips, MIPSEL.0, MIPSEL.1);
target!(Q_MIPS, "mips", Mips, MIPS.0, MIPS.1);
target!(
    Q_LOONGARCH64,
    "loongarch64",
    LoongArch64,
    le_magic!(2, (EM_LOONGARCH & 0xff) as u8, (EM_LOONGARCH >> 8) as u8),
    MASK_LOONGARCH
);

const fn elf(machine: u16, class: Class, endian: Endian, flags: u32) -> ElfId {
    ElfId { machine, class, endian, flags }
}

use Class::{Elf32, Elf64};
use Endian::{Big, Little};

/// Every platform mtbx knows, in the order `mtbx arch list` shows them.
pub static ARCHES: &[Arch] = &[
    Arch {
        oci: "amd64",
        variant: None,
        default_variant: true,
        uname: &["x86_64"],
        aliases: &["x86_64", "x86-64", "x64", "amd64v1"],
        qemu: &Q_X86_64,
        elf: elf(EM_X86_64, Elf64, Little, 0),
        syscalls: Syscalls { uname: 63, write: 1, exit: 60 },
    },
    Arch {
        oci: "386",
        variant: None,
        default_variant: true,
        uname: &["i686", "i586", "i486", "i386"],
        aliases: &["i386", "i486", "i586", "i686", "x86", "ia32"],
        qemu: &Q_I386,
        elf: elf(EM_386, Elf32, Little, 0),
        syscalls: CLASSIC,
    },
    Arch {
        oci: "arm64",
        variant: Some("v8"),
        default_variant: true,
        uname: &["aarch64"],
        aliases: &["aarch64", "arm64v8", "armv8", "armv8a"],
        qemu: &Q_AARCH64,
        elf: elf(EM_AARCH64, Elf64, Little, 0),
        syscalls: GENERIC,
    },
    Arch {
        oci: "arm",
        variant: Some("v7"),
        default_variant: true,
        uname: &["armv7l", "armv8l", "armv6l", "armv5tel"],
        aliases: &["armhf", "armv7", "armv7l", "armv7hl", "arm32v7", "armv7a", "armv7hf"],
        qemu: &Q_ARM,
        // EABI version 5 with the hard-float bit, as Debian armhf binaries.
        elf: elf(EM_ARM, Elf32, Little, 0x0500_0400),
        syscalls: CLASSIC,
    },
    Arch {
        oci: "arm",
        variant: Some("v6"),
        default_variant: false,
        uname: &["armv6l", "armv7l", "armv8l"],
        aliases: &["armv6", "armv6l", "armv6hl", "arm32v6", "armv6hf"],
        qemu: &Q_ARM,
        elf: elf(EM_ARM, Elf32, Little, 0x0500_0400),
        syscalls: CLASSIC,
    },
    Arch {
        oci: "arm",
        variant: Some("v5"),
        default_variant: false,
        uname: &["armv5tel", "armv5l", "armv6l", "armv7l", "armv8l"],
        aliases: &["armel", "armv5", "armv5l", "armv5tel", "arm32v5"],
        qemu: &Q_ARM,
        // EABI version 5, soft float, as Debian armel binaries.
        elf: elf(EM_ARM, Elf32, Little, 0x0500_0200),
        syscalls: CLASSIC,
    },
    Arch {
        oci: "ppc64le",
        variant: None,
        default_variant: true,
        uname: &["ppc64le"],
        aliases: &["ppc64el", "powerpc64le", "ppc64le"],
        qemu: &Q_PPC64LE,
        // ELFv2 ABI: the entry point is code, not a function descriptor.
        elf: elf(EM_PPC64, Elf64, Little, 2),
        syscalls: CLASSIC,
    },
    Arch {
        oci: "ppc64",
        variant: None,
        default_variant: true,
        uname: &["ppc64"],
        aliases: &["powerpc64", "ppc64be"],
        qemu: &Q_PPC64,
        elf: elf(EM_PPC64, Elf64, Big, 2),
        syscalls: CLASSIC,
    },
    Arch {
        oci: "s390x",
        variant: None,
        default_variant: true,
        uname: &["s390x"],
        aliases: &["s390x-linux", "zarch", "systemz"],
        qemu: &Q_S390X,
        elf: elf(EM_S390, Elf64, Big, 0),
        syscalls: CLASSIC,
    },
    Arch {
        oci: "riscv64",
        variant: None,
        default_variant: true,
        uname: &["riscv64"],
        aliases: &["riscv", "rv64", "rv64gc", "riscv64gc"],
        qemu: &Q_RISCV64,
        elf: elf(EM_RISCV, Elf64, Little, 0),
        syscalls: GENERIC,
    },
    Arch {
        oci: "mips64le",
        variant: None,
        default_variant: true,
        uname: &["mips64"],
        aliases: &["mips64el", "mips64le"],
        qemu: &Q_MIPS64EL,
        elf: elf(EM_MIPS, Elf64, Little, 0),
        syscalls: Syscalls { uname: 5061, write: 5001, exit: 5058 },
    },
    Arch {
        oci: "mips64",
        variant: None,
        default_variant: true,
        uname: &["mips64"],
        aliases: &["mips64be", "mips64eb"],
        qemu: &Q_MIPS64,
        elf: elf(EM_MIPS, Elf64, Big, 0),
        syscalls: Syscalls { uname: 5061, write: 5001, exit: 5058 },
    },
    Arch {
        oci: "mipsle",
        variant: None,
        default_variant: true,
        uname: &["mips"],
        aliases: &["mipsel", "mips32el", "mipsle"],
        qemu: &Q_MIPSEL,
        // o32 ABI (EF_MIPS_ABI_O32); the n32 bit stays clear.
        elf: elf(EM_MIPS, Elf32, Little, 0x1000),
        syscalls: Syscalls { uname: 4122, write: 4004, exit: 4001 },
    },
    Arch {
        oci: "mips",
        variant: None,
        default_variant: true,
        uname: &["mips"],
        aliases: &["mipsbe", "mipseb", "mips32"],
        qemu: &Q_MIPS,
        elf: elf(EM_MIPS, Elf32, Big, 0x1000),
        syscalls: Syscalls { uname: 4122, write: 4004, exit: 4001 },
    },
    Arch {
        oci: "loong64",
        variant: None,
        default_variant: true,
        uname: &["loongarch64"],
        aliases: &["loongarch64", "la64", "loong64"],
        qemu: &Q_LOONGARCH64,
        // LP64D soft ABI bits as the toolchains write them.
        elf: elf(EM_LOONGARCH, Elf64, Little, 0x43),
        syscalls: GENERIC,
    },
];

impl crate::error::Classify for UnknownArch {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::BadInput
    }
}

/// An architecture name that is in no row of the table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown architecture {}; valid names: {valid}", crate::text::quoted(.given))]
pub struct UnknownArch {
    /// What the user typed.
    pub given: String,
    /// Every accepted name, for the error line.
    pub valid: String,
}

impl Arch {
    /// The platform as OCI spells it: `arm64/v8`, `ppc64le`.
    pub fn platform(&self) -> String {
        match self.variant {
            Some(v) => format!("{}/{}", self.oci, v),
            None => self.oci.to_string(),
        }
    }

    /// The name shown to people and used in image tags and container names:
    /// the OCI name, with the variant only where it is not the default
    /// (`arm64`, `arm`, `arm-v6`): short, and safe in a tag.
    pub fn short_name(&self) -> String {
        match (self.variant, self.default_variant) {
            (Some(v), false) => format!("{}-{}", self.oci, v),
            _ => self.oci.to_string(),
        }
    }

    /// Name of the binfmt_misc entry mtbx registers (`qemu-aarch64`).
    pub fn binfmt_name(&self) -> String {
        format!("qemu-{}", self.qemu.name)
    }

    /// File names the static interpreter goes by, most specific first.
    pub fn qemu_binaries(&self) -> [String; 2] {
        [format!("qemu-{}-static", self.qemu.name), format!("qemu-{}", self.qemu.name)]
    }

    /// Look a platform up by anything a user types: OCI name with or without
    /// variant (`arm/v7`, `arm64`), `uname -m` names, distribution names
    /// (`armhf`, `ppc64el`), container-image prefixes (`arm64v8`). Matching
    /// ignores case and accepts `-` or `_` in place of `/`.
    pub fn parse(name: &str) -> Result<&'static Arch, UnknownArch> {
        let norm = name.trim().to_ascii_lowercase().replace('_', "-");
        let norm = norm.as_str();
        // "linux/arm64" as an OCI platform string.
        let norm = norm.strip_prefix("linux/").unwrap_or(norm);
        // OCI names and aliases first, then `uname -m` names: "mips64" is
        // the OCI name of big-endian mips64 and what mips64le's uname says.
        let by_name = |n: &str| {
            ARCHES.iter().find(|a| {
                let platform = a.platform();
                n == platform
                    || n == platform.replace('/', "-")
                    || (a.default_variant && n == a.oci)
                    || a.aliases.contains(&n)
            })
        };
        let alt = norm.replace('-', "_");
        let found = by_name(norm)
            .or_else(|| by_name(&alt))
            .or_else(|| ARCHES.iter().find(|a| a.default_variant && a.uname.first() == Some(&norm)));
        found.ok_or_else(|| UnknownArch { given: name.to_string(), valid: valid_names() })
    }

    /// Find the row for an OCI (architecture, variant) pair as a registry
    /// index states it. A missing variant means the default one; a variant
    /// that names no row gives None.
    pub fn from_oci(arch: &str, variant: Option<&str>) -> Option<&'static Arch> {
        ARCHES.iter().find(|a| {
            a.oci == arch
                && match variant {
                    None | Some("") => a.default_variant,
                    Some(v) => a.variant == Some(v),
                }
        })
    }

    /// The platform the running machine is, from the compile target of mtbx
    /// itself (mtbx is a native static binary, so that is the host).
    pub fn host() -> &'static Arch {
        let uname = match std::env::consts::ARCH {
            "x86" => "i686",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "mips64" if cfg!(target_endian = "little") => "mips64el",
            "mips" if cfg!(target_endian = "little") => "mipsel",
            "loongarch64" => "loongarch64",
            other => other,
        };
        Arch::parse(uname).expect("the architecture mtbx was built for is in the table")
    }

    /// Whether binaries of this platform run on `host` without emulation:
    /// the same ELF machine, class and byte order (386 on amd64 is not
    /// counted: its kernel support is optional, so it goes through QEMU).
    pub fn is_native_on(&self, host: &Arch) -> bool {
        self.elf.machine == host.elf.machine
            && self.elf.class == host.elf.class
            && self.elf.endian == host.elf.endian
    }

    /// Whether this row's binaries would be handed to `magic`/`mask` by the
    /// kernel: the binfmt_misc comparison applied to this row's ELF header,
    /// for both ET_EXEC and ET_DYN. Used to tell which architecture an
    /// existing entry serves, whatever its name.
    pub fn matched_by(&self, offset: usize, magic: &[u8], mask: Option<&[u8]>) -> bool {
        let mut header = [0u8; 64];
        header[..self.qemu.magic.len()].copy_from_slice(self.qemu.magic);
        // Put the e_flags the generated program carries (bytes 36..40 for
        // ELF32; 48..52 for ELF64) where the header would hold them.
        let flags_at = if self.elf.class == Class::Elf32 { 36 } else { 48 };
        let flags = match self.elf.endian {
            Endian::Little => self.elf.flags.to_le_bytes(),
            Endian::Big => self.elf.flags.to_be_bytes(),
        };
        header[flags_at..flags_at + 4].copy_from_slice(&flags);
        let type_at = if self.elf.endian == Endian::Little { 16 } else { 17 };
        [2u8, 3u8].iter().all(|&e_type| {
            header[type_at] = e_type;
            binfmt_matches(&header, offset, magic, mask)
        })
    }
}

/// The comparison the kernel's binfmt_misc does for a magic entry.
pub fn binfmt_matches(header: &[u8], offset: usize, magic: &[u8], mask: Option<&[u8]>) -> bool {
    if offset + magic.len() > header.len() {
        return false;
    }
    magic.iter().enumerate().all(|(i, &m)| {
        let k = mask.map_or(0xff, |mask| mask.get(i).copied().unwrap_or(0xff));
        (header[offset + i] ^ m) & k == 0
    })
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.platform())
    }
}

impl Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Arch", 8)?;
        st.serialize_field("platform", &self.platform())?;
        st.serialize_field("architecture", self.oci)?;
        st.serialize_field("variant", &self.variant)?;
        st.serialize_field("uname", &self.uname[0])?;
        st.serialize_field("aliases", self.aliases)?;
        st.serialize_field("qemu", self.qemu.name)?;
        st.serialize_field("binfmt_name", &self.binfmt_name())?;
        st.serialize_field("elf", &self.elf)?;
        st.end()
    }
}

/// Every name `Arch::parse` accepts for the error message, platforms first.
pub fn valid_names() -> String {
    names().join(", ")
}

/// Every name `Arch::parse` accepts, platforms first, each once: for
/// error messages and shell completion.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = ARCHES.iter().map(Arch::platform).collect();
    for a in ARCHES {
        if a.default_variant && a.variant.is_some() {
            names.push(a.oci.to_string());
        }
        for alias in a.aliases {
            if !names.iter().any(|n| n == alias) {
                names.push(alias.to_string());
            }
        }
    }
    names
}

/// The rows that share one QEMU target, once each: the set of binfmt_misc
/// entries mtbx can register.
pub fn qemu_targets() -> impl Iterator<Item = &'static Arch> {
    ARCHES.iter().filter(|a| a.default_variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_and_platform_resolves_to_its_row() {
        for a in ARCHES {
            assert_eq!(Arch::parse(&a.platform()).unwrap(), a, "{}", a.platform());
            for alias in a.aliases {
                assert_eq!(Arch::parse(alias).unwrap(), a, "alias {alias}");
                assert_eq!(Arch::parse(&alias.to_uppercase()).unwrap(), a, "alias {alias}");
            }
            if a.default_variant {
                assert_eq!(Arch::parse(a.oci).unwrap(), a);
                // mips64 is both an OCI name and mips64le's uname: the
                // OCI name wins, but a uname always finds a row that says it.
                assert_eq!(Arch::parse(a.uname[0]).unwrap().uname[0], a.uname[0]);
            }
        }
    }

    #[test]
    fn names_people_type() {
        let cases = [
            ("aarch64", "arm64/v8"),
            ("arm64", "arm64/v8"),
            ("arm64v8", "arm64/v8"),
            ("armv8", "arm64/v8"),
            ("x86_64", "amd64"),
            ("x86-64", "amd64"),
            ("armhf", "arm/v7"),
            ("armv7l", "arm/v7"),
            ("armv7hl", "arm/v7"),
            ("arm", "arm/v7"),
            ("arm/v6", "arm/v6"),
            ("arm-v6", "arm/v6"),
            ("linux/arm/v6", "arm/v6"),
            ("armel", "arm/v5"),
            ("ppc64el", "ppc64le"),
            ("i686", "386"),
            ("i386", "386"),
            ("loongarch64", "loong64"),
            ("mipsel", "mipsle"),
            ("mips64el", "mips64le"),
            ("mips64", "mips64"),
        ];
        for (typed, platform) in cases {
            assert_eq!(Arch::parse(typed).unwrap().platform(), platform, "{typed}");
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = Arch::parse("vax").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("unknown architecture 'vax'; valid names: "), "{msg}");
        for needed in ["amd64", "arm64/v8", "arm/v7", "ppc64le", "s390x", "riscv64", "aarch64"] {
            assert!(msg.contains(needed), "{needed} missing from {msg}");
        }
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn no_alias_names_two_rows() {
        let mut seen = std::collections::HashMap::new();
        for a in ARCHES {
            for alias in a.aliases {
                if let Some(prev) = seen.insert(*alias, a.platform()) {
                    panic!("alias {alias} names both {prev} and {}", a.platform());
                }
            }
        }
    }

    #[test]
    fn the_required_platforms_are_present() {
        for p in [
            "amd64", "386", "arm64/v8", "arm/v7", "arm/v6", "ppc64le", "ppc64", "s390x", "riscv64",
            "mips64le", "mipsle", "loong64",
        ] {
            assert!(ARCHES.iter().any(|a| a.platform() == p), "{p} missing");
        }
    }

    #[test]
    fn magic_and_mask_agree_with_the_elf_identity() {
        for a in ARCHES {
            let (magic, mask) = (a.qemu.magic, a.qemu.mask);
            assert_eq!(magic.len(), mask.len(), "{a}");
            assert!(magic.len() >= 20, "{a}");
            assert_eq!(&magic[..4], b"\x7fELF", "{a}");
            let class = if a.elf.class == Class::Elf32 { 1 } else { 2 };
            let data = if a.elf.endian == Endian::Little { 1 } else { 2 };
            assert_eq!((magic[4], magic[5]), (class, data), "{a}");
            let machine = match a.elf.endian {
                Endian::Little => u16::from_le_bytes([magic[18], magic[19]]),
                Endian::Big => u16::from_be_bytes([magic[18], magic[19]]),
            };
            assert_eq!(machine, a.elf.machine, "{a}");
            assert!(a.matched_by(0, magic, Some(mask)), "{a} does not match its own entry");
            // The kernel stores (and shows) the magic masked; x86's has bits
            // its mask drops. The masked form must still match.
            let masked: Vec<u8> = magic.iter().zip(mask).map(|(m, k)| m & k).collect();
            assert!(a.matched_by(0, &masked, Some(mask)), "{a} does not match its masked entry");
        }
    }

    #[test]
    fn each_row_is_matched_by_its_own_target_only() {
        for a in ARCHES {
            for b in qemu_targets() {
                let hit = a.matched_by(0, b.qemu.magic, Some(b.qemu.mask));
                assert_eq!(hit, std::ptr::eq(a.qemu, b.qemu), "{a} vs entry {}", b.binfmt_name());
            }
        }
    }

    #[test]
    fn the_host_is_in_the_table() {
        let host = Arch::host();
        assert!(host.is_native_on(host));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(host.oci, "amd64");
        for a in ARCHES.iter().filter(|a| !std::ptr::eq(*a, host)) {
            if a.qemu.name != host.qemu.name {
                assert!(!a.is_native_on(host), "{a}");
            }
        }
    }

    #[test]
    fn oci_pairs_resolve_with_default_variants() {
        assert_eq!(Arch::from_oci("arm64", None).unwrap().platform(), "arm64/v8");
        assert_eq!(Arch::from_oci("arm", None).unwrap().platform(), "arm/v7");
        assert_eq!(Arch::from_oci("arm", Some("v6")).unwrap().platform(), "arm/v6");
        assert_eq!(Arch::from_oci("amd64", None).unwrap().platform(), "amd64");
        assert!(Arch::from_oci("arm", Some("v9")).is_none());
        assert!(Arch::from_oci("sparc", None).is_none());
    }

    #[test]
    fn short_names_are_tag_safe() {
        for a in ARCHES {
            let s = a.short_name();
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{s}");
        }
        assert_eq!(Arch::parse("arm64").unwrap().short_name(), "arm64");
        assert_eq!(Arch::parse("arm/v6").unwrap().short_name(), "arm-v6");
    }
}
