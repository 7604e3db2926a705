//! Tiny static ELF programs, one per architecture, that prove emulation
//! really works: each calls uname(2), writes the `machine` field to stdout
//! and exits 0.
//!
//! They are generated from a few hand-encoded instructions rather than
//! shipped as binaries or built with cross compilers, so the check needs no
//! download, no toolchain and no distribution package for the target: only
//! the QEMU interpreter it is checking. What they print is what `uname -m`
//! will print in a container of that architecture.

use crate::arch::{Arch, Class, Endian, Isa, Syscalls};

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
    let code = code(arch);
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
fn code(arch: &Arch) -> Vec<u8> {
    let s = arch.syscalls;
    let field = BUF + MACHINE;
    let mut w = Writer::new(arch.elf.endian);
    match arch.qemu.isa {
        Isa::X86_64 => x86_64(&mut w, s, field),
        Isa::I386 => i386(&mut w, s, field),
        Isa::Aarch64 => aarch64(&mut w, s, field),
        Isa::Arm => arm(&mut w, s, field),
        Isa::Ppc64 => ppc(&mut w, s, field),
        Isa::S390x => s390x(&mut w, s, field),
        Isa::Riscv64 => riscv64(&mut w, s, field),
        Isa::Mips => mips(&mut w, s, field),
        Isa::LoongArch64 => loongarch64(&mut w, s, field),
    }
    w.out
}

fn x86_64(w: &mut Writer, s: Syscalls, field: u32) {
    let mov = |w: &mut Writer, op: u8, v: u32| {
        w.bytes(&[op]);
        w.out.extend_from_slice(&v.to_le_bytes());
    };
    const EAX: u8 = 0xb8;
    const EDX: u8 = 0xba;
    const ESI: u8 = 0xbe;
    const EDI: u8 = 0xbf;
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    mov(w, EAX, s.uname);
    mov(w, EDI, BUF);
    w.bytes(&SYSCALL);
    mov(w, EAX, s.write);
    mov(w, EDI, 1);
    mov(w, ESI, field);
    mov(w, EDX, FIELD_LEN);
    w.bytes(&SYSCALL);
    mov(w, EAX, s.exit);
    w.bytes(&[0x31, 0xff]); // xor edi, edi
    w.bytes(&SYSCALL);
}

fn i386(w: &mut Writer, s: Syscalls, field: u32) {
    let mov = |w: &mut Writer, op: u8, v: u32| {
        w.bytes(&[op]);
        w.out.extend_from_slice(&v.to_le_bytes());
    };
    const EAX: u8 = 0xb8;
    const ECX: u8 = 0xb9;
    const EDX: u8 = 0xba;
    const EBX: u8 = 0xbb;
    const INT80: [u8; 2] = [0xcd, 0x80];
    mov(w, EAX, s.uname);
    mov(w, EBX, BUF);
    w.bytes(&INT80);
    mov(w, EAX, s.write);
    mov(w, EBX, 1);
    mov(w, ECX, field);
    mov(w, EDX, FIELD_LEN);
    w.bytes(&INT80);
    mov(w, EAX, s.exit);
    w.bytes(&[0x31, 0xdb]); // xor ebx, ebx
    w.bytes(&INT80);
}

fn aarch64(w: &mut Writer, s: Syscalls, field: u32) {
    // movz/movk xd, #imm16, lsl #(16*hw)
    let li = |w: &mut Writer, rd: u32, v: u32| {
        w.u32(0xd280_0000 | (v & 0xffff) << 5 | rd);
        if v >> 16 != 0 {
            w.u32(0xf2a0_0000 | (v >> 16) << 5 | rd);
        }
    };
    const SVC0: u32 = 0xd400_0001;
    li(w, 0, BUF);
    li(w, 8, s.uname);
    w.u32(SVC0);
    li(w, 0, 1);
    li(w, 1, field);
    li(w, 2, FIELD_LEN);
    li(w, 8, s.write);
    w.u32(SVC0);
    li(w, 0, 0);
    li(w, 8, s.exit);
    w.u32(SVC0);
}

fn arm(w: &mut Writer, s: Syscalls, field: u32) {
    // ARMv5-compatible A32: small constants by `mov rd, #imm8`, addresses
    // from a literal pool with `ldr rd, [pc, #off]` (no movw before v6T2).
    let mov = |w: &mut Writer, rd: u32, imm8: u32| {
        assert!(imm8 < 256);
        w.u32(0xe3a0_0000 | rd << 12 | imm8);
    };
    const SVC0: u32 = 0xef00_0000;
    // Instruction indices of the two literal loads and the pool.
    const POOL: u32 = 11;
    let ldr = |w: &mut Writer, rd: u32, at: u32, lit: u32| {
        // pc reads as the instruction's address + 8.
        let off = (POOL + lit) * 4 - (at * 4 + 8);
        w.u32(0xe59f_0000 | rd << 12 | off);
    };
    ldr(w, 0, 0, 0); // 0: r0 = BUF
    mov(w, 7, s.uname); // 1
    w.u32(SVC0); // 2
    mov(w, 0, 1); // 3
    ldr(w, 1, 4, 1); // 4: r1 = field
    mov(w, 2, FIELD_LEN); // 5
    mov(w, 7, s.write); // 6
    w.u32(SVC0); // 7
    mov(w, 0, 0); // 8
    mov(w, 7, s.exit); // 9
    w.u32(SVC0); // 10
    w.u32(BUF); // 11: pool
    w.u32(field); // 12
}

fn ppc(w: &mut Writer, s: Syscalls, field: u32) {
    let li = |w: &mut Writer, rd: u32, v: u32| {
        if v < 0x8000 {
            w.u32(0x3800_0000 | rd << 21 | v); // addi rd, 0, v
        } else {
            w.u32(0x3c00_0000 | rd << 21 | v >> 16); // addis rd, 0, hi
            w.u32(0x6000_0000 | rd << 21 | rd << 16 | (v & 0xffff)); // ori
        }
    };
    const SC: u32 = 0x4400_0002;
    li(w, 3, BUF);
    li(w, 0, s.uname);
    w.u32(SC);
    li(w, 3, 1);
    li(w, 4, field);
    li(w, 5, FIELD_LEN);
    li(w, 0, s.write);
    w.u32(SC);
    li(w, 3, 0);
    li(w, 0, s.exit);
    w.u32(SC);
}

fn s390x(w: &mut Writer, s: Syscalls, field: u32) {
    // lgfi r, imm32 (RIL-a, C0 r1 1); svc n takes the syscall number as
    // its immediate when it is below 256.
    let lgfi = |w: &mut Writer, r: u8, v: u32| {
        w.bytes(&[0xc0, r << 4 | 1]);
        w.out.extend_from_slice(&v.to_be_bytes());
    };
    let svc = |w: &mut Writer, n: u32| {
        assert!(n < 256);
        w.bytes(&[0x0a, n as u8]);
    };
    lgfi(w, 2, BUF);
    svc(w, s.uname);
    lgfi(w, 2, 1);
    lgfi(w, 3, field);
    lgfi(w, 4, FIELD_LEN);
    svc(w, s.write);
    lgfi(w, 2, 0);
    svc(w, s.exit);
}

fn riscv64(w: &mut Writer, s: Syscalls, field: u32) {
    let li = |w: &mut Writer, rd: u32, v: u32| {
        let v = v as i32;
        let lo = (v << 20) >> 20; // sign-extended low 12 bits
        let hi = v.wrapping_sub(lo) as u32;
        if hi != 0 {
            w.u32(hi | rd << 7 | 0x37); // lui rd, hi
            w.u32((lo as u32 & 0xfff) << 20 | rd << 15 | rd << 7 | 0x13); // addi rd, rd, lo
        } else {
            w.u32((lo as u32 & 0xfff) << 20 | rd << 7 | 0x13); // addi rd, x0, lo
        }
    };
    const ECALL: u32 = 0x0000_0073;
    const A0: u32 = 10;
    const A1: u32 = 11;
    const A2: u32 = 12;
    const A7: u32 = 17;
    li(w, A0, BUF);
    li(w, A7, s.uname);
    w.u32(ECALL);
    li(w, A0, 1);
    li(w, A1, field);
    li(w, A2, FIELD_LEN);
    li(w, A7, s.write);
    w.u32(ECALL);
    li(w, A0, 0);
    li(w, A7, s.exit);
    w.u32(ECALL);
}

fn mips(w: &mut Writer, s: Syscalls, field: u32) {
    let li = |w: &mut Writer, rt: u32, v: u32| {
        if v < 0x8000 {
            w.u32(0x2400_0000 | rt << 16 | v); // addiu rt, zero, v
        } else {
            w.u32(0x3c00_0000 | rt << 16 | v >> 16); // lui rt, hi
            w.u32(0x3400_0000 | rt << 21 | rt << 16 | (v & 0xffff)); // ori
        }
    };
    const SYSCALL: u32 = 0x0000_000c;
    const V0: u32 = 2;
    const A0: u32 = 4;
    const A1: u32 = 5;
    const A2: u32 = 6;
    li(w, A0, BUF);
    li(w, V0, s.uname);
    w.u32(SYSCALL);
    li(w, A0, 1);
    li(w, A1, field);
    li(w, A2, FIELD_LEN);
    li(w, V0, s.write);
    w.u32(SYSCALL);
    li(w, A0, 0);
    li(w, V0, s.exit);
    w.u32(SYSCALL);
}

fn loongarch64(w: &mut Writer, s: Syscalls, field: u32) {
    let li = |w: &mut Writer, rd: u32, v: u32| {
        if v >> 12 != 0 {
            w.u32(0x1400_0000 | (v >> 12) << 5 | rd); // lu12i.w rd, hi20
            w.u32(0x0380_0000 | (v & 0xfff) << 10 | rd << 5 | rd); // ori rd, rd, lo12
        } else {
            w.u32(0x0380_0000 | (v & 0xfff) << 10 | rd); // ori rd, zero, v
        }
    };
    const SYSCALL0: u32 = 0x002b_0000;
    const A0: u32 = 4;
    const A1: u32 = 5;
    const A2: u32 = 6;
    const A7: u32 = 11;
    li(w, A0, BUF);
    li(w, A7, s.uname);
    w.u32(SYSCALL0);
    li(w, A0, 1);
    li(w, A1, field);
    li(w, A2, FIELD_LEN);
    li(w, A7, s.write);
    w.u32(SYSCALL0);
    li(w, A0, 0);
    li(w, A7, s.exit);
    w.u32(SYSCALL0);
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
    use crate::arch::ARCHES;

    #[test]
    fn every_program_matches_its_binfmt_entry_and_parses_as_elf() {
        for a in ARCHES {
            let p = program(a);
            assert!(
                crate::arch::binfmt_matches(&p, 0, a.qemu.magic, Some(a.qemu.mask)),
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
    fn output_is_trimmed_at_the_first_nul() {
        assert_eq!(parse_output(b"aarch64\0\0\0garbage"), "aarch64");
        assert_eq!(parse_output(b"x86_64"), "x86_64");
    }
}
