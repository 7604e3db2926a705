//! Tiny static ELF programs, one per architecture, that prove emulation
//! really works: each calls uname(2), writes the `machine` field to stdout
//! and exits 0.
//!
//! They are generated from a few hand-encoded instructions rather than
//! shipped as binaries or built with cross compilers, so the check needs no
//! download, no toolchain and no distribution package for the target: only
//! the QEMU interpreter it is checking. What they print is what `uname -m`
//! will print in a container of that architecture.

use crate::emu::arch::{Arch, Class, Endian, Isa, Syscalls};

/// Load address of the single PT_LOAD segment.
pub const BASE: u32 = 0x0040_0000;
/// Address of the `struct utsname` buffer, one page above the code.
const BUF: u32 = BASE + 0x1000;
/// Offset of `machine` in `struct utsname` (five 65-byte fields before it).
const MACHINE: u32 = 4 * 65;
/// Bytes of `machine` written to stdout; NULs after the name are trimmed by
/// the reader.
const FIELD_LEN: u32 = 65;
/// Room the segment reserves in memory beyond the file: the utsname buffer.
const MEM_EXTRA: u32 = 0x1000 + 6 * 65;

/// The complete ELF file of the check program for `arch`.
pub fn program(arch: &Arch) -> Vec<u8> {
    elf(arch, code(arch, false))
}

/// A program that needs more than QEMU's default CPU model of a target
/// gives, or than an older named model gives: the check program with one
/// instruction of a newer feature first. Under a CPU model without the
/// feature it dies of SIGILL before printing anything; with it, it prints
/// what [`program`] prints. `arch check --cpu` runs it to show that the
/// model is in effect, and the tests use it to prove that a container's
/// programs (through sudo and `env -i` too) run under the model asked for.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The feature, as people name it.
    pub feature: &'static str,
    /// The ELF file.
    pub program: Vec<u8>,
}

/// The feature probe for `arch`, for the instruction sets that have one:
/// 64-bit Power (ISA 3.1's `brh`: POWER10 has it, qemu 7.2's default
/// POWER9 does not), AArch64 (SVE's `rdvl`: the default `max` has it,
/// `cortex-a53` does not) and x86-64 (x86-64-v2's `popcnt`, whose absence
/// makes RHEL 9 and UBI fail with "CPU does not support x86-64-v2": the
/// `qemu64` model lacks it, `Nehalem` and `max` have it). (z/Architecture
/// has none: qemu 7.2 decodes z15's `ncrk` even under `z900-base`.)
pub fn probe(arch: &Arch) -> Option<Probe> {
    let feature = match arch.qemu.isa {
        Isa::Ppc64 => "ISA 3.1 (brh)",
        Isa::Aarch64 => "SVE (rdvl)",
        Isa::X86_64 => "x86-64-v2 (popcnt)",
        _ => return None,
    };
    Some(Probe { feature, program: elf(arch, code(arch, true)) })
}

fn elf(arch: &Arch, code: Vec<u8>) -> Vec<u8> {
    let (ehsize, phsize) = match arch.elf.class {
        Class::Elf32 => (52u32, 32u32),
        Class::Elf64 => (64, 56),
    };
    let entry = BASE + ehsize + phsize;
    let filesz = ehsize + phsize + code.len() as u32;
    assert!(filesz < 0x1000, "program must fit below its buffer");
    let mut w = Writer::new(arch.elf.endian);

    // e_ident
    w.bytes(b"\x7fELF");
    w.bytes(&[
        if arch.elf.class == Class::Elf32 { 1 } else { 2 },
        if arch.elf.endian == Endian::Little { 1 } else { 2 },
        1, // EV_CURRENT
        0, // ELFOSABI_SYSV
    ]);
    w.bytes(&[0; 8]);
    w.u16(2); // ET_EXEC
    w.u16(arch.elf.machine);
    w.u32(1); // e_version
    let class = arch.elf.class;
    w.addr(class, entry as u64);
    w.addr(class, ehsize as u64); // e_phoff
    w.addr(class, 0); // e_shoff
    w.u32(arch.elf.flags);
    w.u16(ehsize as u16);
    w.u16(phsize as u16);
    w.u16(1); // e_phnum
    w.u16(0); // e_shentsize
    w.u16(0); // e_shnum
    w.u16(0); // e_shstrndx

    // One PT_LOAD, read-write-execute, covering the file and the buffer.
    const PT_LOAD: u32 = 1;
    const PF_RWX: u32 = 7;
    let memsz = (filesz + MEM_EXTRA) as u64;
    match class {
        Class::Elf32 => {
            w.u32(PT_LOAD);
            w.u32(0); // p_offset
            w.u32(BASE); // p_vaddr
            w.u32(BASE); // p_paddr
            w.u32(filesz);
            w.u32(memsz as u32);
            w.u32(PF_RWX);
            w.u32(0x1000); // p_align
        }
        Class::Elf64 => {
            w.u32(PT_LOAD);
            w.u32(PF_RWX);
            w.u64(0);
            w.u64(BASE as u64);
            w.u64(BASE as u64);
            w.u64(filesz as u64);
            w.u64(memsz);
            w.u64(0x1000);
        }
    }
    debug_assert_eq!(w.out.len() as u32, ehsize + phsize);
    w.out.extend_from_slice(&code);
    w.out
}

/// What the program printed, as `uname -m` would print it.
pub fn parse_output(stdout: &[u8]) -> String {
    let end = stdout.iter().position(|&b| b == 0).unwrap_or(stdout.len());
    String::from_utf8_lossy(&stdout[..end]).trim().to_string()
}

/// The instructions: uname(BUF); write(1, BUF + MACHINE, FIELD_LEN); exit(0).
/// One program for every architecture; only the encodings differ.
fn code(arch: &Arch, probe: bool) -> Vec<u8> {
    let enc: &dyn Encoder = match arch.qemu.isa {
        Isa::X86_64 => &X86_64,
        Isa::I386 => &I386,
        Isa::Aarch64 => &Aarch64,
        Isa::Arm => &Arm,
        Isa::Ppc64 => &Ppc,
        Isa::S390x => &S390x,
        Isa::Riscv64 => &Riscv64,
        Isa::Mips => &Mips,
        Isa::LoongArch64 => &LoongArch64,
    };
    let s: Syscalls = arch.syscalls;
    let [a0, a1, a2] = enc.args();
    let mut w = Writer::new(arch.elf.endian);
    if probe {
        match arch.qemu.isa {
            Isa::Ppc64 => w.u32(0x7c00_01b6 | 3 << 21 | 3 << 16), // brh r3, r3
            Isa::Aarch64 => w.u32(0x04bf_5020),                   // rdvl x0, #1
            Isa::X86_64 => w.bytes(&[0xf3, 0x0f, 0xb8, 0xc0]),    // popcnt eax, eax
            _ => {}
        }
    }
    enc.li(&mut w, a0, BUF);
    enc.syscall(&mut w, s.uname);
    enc.li(&mut w, a0, 1);
    enc.li(&mut w, a1, BUF + MACHINE);
    enc.li(&mut w, a2, FIELD_LEN);
    enc.syscall(&mut w, s.write);
    enc.li(&mut w, a0, 0);
    enc.syscall(&mut w, s.exit);
    w.out
}

/// The two things the program needs from an instruction set: put a 32-bit
/// constant in a register, and make a system call.
trait Encoder {
    /// Registers of the first three system call arguments.
    fn args(&self) -> [u32; 3];
    /// Load `v` (below 2^31) into register `reg`.
    fn li(&self, w: &mut Writer, reg: u32, v: u32);
    /// Invoke system call `nr`.
    fn syscall(&self, w: &mut Writer, nr: u32);
}

struct X86_64;
struct I386;
struct Aarch64;
struct Arm;
struct Ppc;
struct S390x;
struct Riscv64;
struct Mips;
struct LoongArch64;

/// `mov r32, imm32` (B8+r), the same on i386 and x86-64 (zero-extends).
fn x86_mov(w: &mut Writer, reg: u32, v: u32) {
    w.bytes(&[0xb8 + reg as u8]);
    w.out.extend_from_slice(&v.to_le_bytes());
}

const EAX: u32 = 0;

impl Encoder for X86_64 {
    fn args(&self) -> [u32; 3] {
        [7, 6, 2] // edi, esi, edx
    }
    fn li(&self, w: &mut Writer, reg: u32, v: u32) {
        x86_mov(w, reg, v);
    }
    fn syscall(&self, w: &mut Writer, nr: u32) {
        x86_mov(w, EAX, nr);
        w.bytes(&[0x0f, 0x05]); // syscall
    }
}

impl Encoder for I386 {
    fn args(&self) -> [u32; 3] {
        [3, 1, 2] // ebx, ecx, edx
    }
    fn li(&self, w: &mut Writer, reg: u32, v: u32) {
        x86_mov(w, reg, v);
    }
    fn syscall(&self, w: &mut Writer, nr: u32) {
        x86_mov(w, EAX, nr);
        w.bytes(&[0xcd, 0x80]); // int 0x80
    }
}

impl Encoder for Aarch64 {
    fn args(&self) -> [u32; 3] {
        [0, 1, 2]
    }
    fn li(&self, w: &mut Writer, rd: u32, v: u32) {
        w.u32(0xd280_0000 | (v & 0xffff) << 5 | rd); // movz xd, #lo
        if v >> 16 != 0 {
            w.u32(0xf2a0_0000 | (v >> 16) << 5 | rd); // movk xd, #hi, lsl 16
        }
    }
    fn syscall(&self, w: &mut Writer, nr: u32) {
        self.li(w, 8, nr);
        w.u32(0xd400_0001); // svc #0
    }
}

impl Encoder for Arm {
    fn args(&self) -> [u32; 3] {
        [0, 1, 2]
    }
    /// ARMv5-compatible A32 (no movw before v6T2): `mov` the low byte, then
    /// `orr` each other non-zero byte as a rotated 8-bit immediate.
    fn li(&self, w: &mut Writer, rd: u32, v: u32) {
        w.u32(0xe3a0_0000 | rd << 12 | (v & 0xff)); // mov rd, #b0
        for (byte, rot) in [(1, 12), (2, 8), (3, 4)] {
            let b = (v >> (8 * byte)) & 0xff;
            if b != 0 {
                w.u32(0xe380_0000 | rd << 16 | rd << 12 | rot << 8 | b); // orr rd, rd, #b ror 2*rot
            }
        }
    }
    fn syscall(&self, w: &mut Writer, nr: u32) {
        self.li(w, 7, nr); // EABI: number in r7
        w.u32(0xef00_0000); // svc 0
    }
}

impl Encoder for Ppc {
    fn args(&self) -> [u32; 3] {
        [3, 4, 5]
    }
    fn li(&self, w: &mut Writer, rd: u32, v: u32) {
        if v < 0x8000 {
            w.u32(0x3800_0000 | rd << 21 | v); // li rd, v
        } else {
            w.u32(0x3c00_0000 | rd << 21 | v >> 16); // lis rd, hi
            w.u32(0x6000_0000 | rd << 21 | rd << 16 | (v & 0xffff)); // ori rd, rd, lo
        }
    }
    fn syscall(&self, w: &mut Writer, nr: u32) {
        self.li(w, 0, nr);
        w.u32(0x4400_0002); // sc
    }
}

impl Encoder for S390x {
    fn args(&self) -> [u32; 3] {
        [2, 3, 4]
    }
    fn li(&self, w: &mut Writer, r: u32, v: u32) {
        w.bytes(&[0xc0, (r as u8) << 4 | 1]); // lgfi r, imm32
        w.out.extend_from_slice(&v.to_be_bytes());
    }
    fn syscall(&self, w: &mut Writer, nr: u32) {
        assert!(nr < 256, "svc takes numbers below 256 as its immediate");
        w.bytes(&[0x0a, nr as u8]); // svc nr
    }
}

impl Encoder for Riscv64 {
    fn args(&self) -> [u32; 3] {
        [10, 11, 12] // a0, a1, a2
    }
    fn li(&self, w: &mut Writer, rd: u32, v: u32) {
        let v = v as i32;
        let lo = (v << 20) >> 20; // sign-extended low 12 bits
        let hi = v.wrapping_sub(lo) as u32;
        let src = if hi != 0 {
            w.u32(hi | rd << 7 | 0x37); // lui rd, hi
            rd
        } else {
            0
        };
        w.u32((lo as u32 & 0xfff) << 20 | src << 15 | rd << 7 | 0x13); // addi rd, src, lo
    }
    fn syscall(&self, w: &mut Writer, nr: u32) {
        self.li(w, 17, nr); // a7
        w.u32(0x0000_0073); // ecall
    }
}

impl Encoder for Mips {
    fn args(&self) -> [u32; 3] {
        [4, 5, 6] // a0, a1, a2
    }
    fn li(&self, w: &mut Writer, rt: u32, v: u32) {
        if v < 0x8000 {
            w.u32(0x2400_0000 | rt << 16 | v); // addiu rt, zero, v
        } else {
            w.u32(0x3c00_0000 | rt << 16 | v >> 16); // lui rt, hi
            w.u32(0x3400_0000 | rt << 21 | rt << 16 | (v & 0xffff)); // ori rt, rt, lo
        }
    }
    fn syscall(&self, w: &mut Writer, nr: u32) {
        self.li(w, 2, nr); // v0
        w.u32(0x0000_000c); // syscall
    }
}

impl Encoder for LoongArch64 {
    fn args(&self) -> [u32; 3] {
        [4, 5, 6] // a0, a1, a2
    }
    fn li(&self, w: &mut Writer, rd: u32, v: u32) {
        let src = if v >> 12 != 0 {
            w.u32(0x1400_0000 | (v >> 12) << 5 | rd); // lu12i.w rd, hi20
            rd
        } else {
            0
        };
        w.u32(0x0380_0000 | (v & 0xfff) << 10 | src << 5 | rd); // ori rd, src, lo12
    }
    fn syscall(&self, w: &mut Writer, nr: u32) {
        self.li(w, 11, nr); // a7
        w.u32(0x002b_0000); // syscall 0
    }
}

/// Byte sink in the target's byte order.
struct Writer {
    endian: Endian,
    out: Vec<u8>,
}

impl Writer {
    fn new(endian: Endian) -> Self {
        Writer { endian, out: Vec::with_capacity(256) }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
    fn u16(&mut self, v: u16) {
        let b = match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        self.bytes(&b);
    }
    fn u32(&mut self, v: u32) {
        let b = match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        self.bytes(&b);
    }
    fn u64(&mut self, v: u64) {
        let b = match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        self.bytes(&b);
    }
    fn addr(&mut self, class: Class, v: u64) {
        match class {
            Class::Elf32 => self.u32(v as u32),
            Class::Elf64 => self.u64(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emu::arch::{Arch, ARCHES};

    #[test]
    fn every_program_matches_its_binfmt_entry_and_parses_as_elf() {
        for a in ARCHES {
            let p = program(a);
            assert!(
                crate::emu::arch::binfmt_matches(&p, 0, a.qemu.magic, Some(a.qemu.mask)),
                "{a}: generated header does not match its binfmt entry"
            );
            let elf = goblin::elf::Elf::parse(&p).unwrap_or_else(|e| panic!("{a}: {e}"));
            assert_eq!(elf.header.e_machine, a.elf.machine);
            assert!(elf.interpreter.is_none());
            assert!(elf.libraries.is_empty());
            assert_eq!(elf.program_headers.len(), 1);
        }
    }

    #[test]
    fn a_probe_is_the_check_program_with_one_instruction_more() {
        for a in ARCHES {
            let Some(p) = probe(a) else { continue };
            let plain = program(a);
            assert_eq!(p.program.len(), plain.len() + 4, "{a}");
            let elf = goblin::elf::Elf::parse(&p.program).unwrap_or_else(|e| panic!("{a}: {e}"));
            assert_eq!(elf.header.e_machine, a.elf.machine);
        }
        assert!(probe(Arch::parse("ppc64le").unwrap()).is_some());
        assert!(probe(Arch::parse("riscv64").unwrap()).is_none());
    }

    #[test]
    fn output_is_trimmed_at_the_first_nul() {
        assert_eq!(parse_output(b"aarch64\0\0\0garbage"), "aarch64");
        assert_eq!(parse_output(b"x86_64"), "x86_64");
    }
}
