//! QEMU CPU models: which ones an interpreter knows, and the shim that
//! makes every program of a binfmt_misc instance run under one.
//!
//! binfmt_misc cannot pass arguments to an interpreter, and QEMU's only
//! other way to choose a model, the `QEMU_CPU` variable, does not survive
//! `sudo` (env_reset) or `env -i`. But the kernel passes the registered
//! interpreter *string* as argv[0], and with flag F it opens the file
//! only once, at registration. So the entry's interpreter is a path that
//! spells the model and the real QEMU, `<base>/.mtbx-cpu/<model>/<qemu
//! path>`, and is a link to mtbx itself when the entry is written. mtbx's
//! `main` recognises such an argv[0] before anything else ([`shim_main`])
//! and becomes `qemu -cpu MODEL -0 ARGV0 -- PROGRAM ARGS...`. Every exec
//! in the instance goes through the kernel, so children of children get
//! the model too. docs/binfmt_misc.md has the kernel facts and the
//! alternatives that were weighed.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::emu::arch::Arch;
use crate::emu::binfmt::{Flags, Registration};

/// The path component that marks a shim's interpreter path.
pub const MARK: &str = ".mtbx-cpu";

/// How long `qemu -cpu help` may take (it answers in milliseconds).
const HELP_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest model name accepted; QEMU's are far shorter.
const MAX_MODEL: usize = 64;

/// How many names an error lists before it says how many more there are.
const LISTED: usize = 24;

/// Why a CPU model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// The model is not one the interpreter lists.
    #[error("unknown CPU model '{model}' for {platform}; {qemu} knows {}", listing(.valid, .model, .qemu))]
    Unknown {
        /// What was asked for.
        model: String,
        /// The platform.
        platform: String,
        /// The interpreter's file name, for the hint.
        qemu: String,
        /// The models it lists.
        valid: Vec<String>,
    },
    /// A CPU model for the host's own architecture, which runs natively.
    #[error("{platform} runs natively here, without QEMU, so --cpu cannot apply to it; give --cpu only with a foreign --arch")]
    Native {
        /// The platform.
        platform: String,
    },
    /// A listed model that this QEMU still refuses to run (s390x lists
    /// models whose facilities its emulation lacks).
    #[error("CPU model '{model}' is listed by {qemu} but does not run here: {why}")]
    Unusable {
        /// The model.
        model: String,
        /// The interpreter's file name.
        qemu: String,
        /// What QEMU said.
        why: String,
    },
    /// The interpreter could not say which models it knows.
    #[error("cannot list the CPU models of {}: {why}", qemu.display())]
    Query {
        /// The interpreter.
        qemu: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// A shim's link could not be made.
    #[error("cannot prepare the CPU model shim in {}", dir.display())]
    Shim {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Classify for CpuError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            CpuError::Unknown { .. } | CpuError::Native { .. } | CpuError::Unusable { .. } => {
                crate::error::Kind::BadInput
            }
            CpuError::Query { .. } | CpuError::Shim { .. } => crate::error::Kind::Failed,
        }
    }
}

/// The valid names for an error line: those that look like what was
/// typed first (`power1` finds the power10 family), then the rest, cut
/// after [`LISTED`] with a count and where to see them all.
fn listing(valid: &[String], model: &str, qemu: &str) -> String {
    let typed = model.to_ascii_lowercase();
    let stem: String = typed.chars().take(3).collect();
    let (near, far): (Vec<&String>, Vec<&String>) = valid.iter().partition(|v| {
        let v = v.to_ascii_lowercase();
        !stem.is_empty()
            && (v.contains(&typed) || (v.len() >= 3 && typed.contains(&v)) || v.starts_with(&stem))
    });
    let ordered: Vec<&String> = near.into_iter().chain(far).collect();
    let shown: Vec<&str> = ordered.iter().take(LISTED).map(|s| s.as_str()).collect();
    let mut out = format!("{} models: {}", valid.len(), shown.join(", "));
    if valid.len() > LISTED {
        out.push_str(&format!(", and {} more (`{qemu} -cpu help` lists them)", valid.len() - LISTED));
    }
    out
}

/// The model names in the output of `qemu-<target> -cpu help`. Each
/// target prints its own format: `x86 NAME ...`, `PowerPC NAME ...`,
/// `s390 NAME ...`, `MIPS 'NAME'`, or the bare name, indented under
/// `Available CPUs:` (arm) or not (riscv64, loongarch64). Aliases are
/// listed like models and count as valid. The list ends at the first
/// blank line after it began: x86 and s390x go on with feature flags.
pub fn parse_models(help: &str) -> Vec<String> {
    const PREFIXES: &[&str] = &["x86", "PowerPC", "s390", "MIPS", "Sparc"];
    let mut out: Vec<String> = Vec::new();
    for line in help.lines() {
        let t = line.trim();
        if t.is_empty() {
            if out.is_empty() {
                continue;
            }
            break;
        }
        if t.ends_with(':') {
            if out.is_empty() {
                continue; // "Available CPUs:"
            }
            break;
        }
        let mut words = t.split_whitespace();
        let first = words.next().unwrap_or_default();
        let name = if PREFIXES.contains(&first) { words.next().unwrap_or_default() } else { first };
        let name = name.trim_matches('\'');
        if !name.is_empty() && valid_name(name) && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// Characters a model name may have: what QEMU's names use, and nothing
/// that a path component or a binfmt_misc line could misread.
fn valid_name(name: &str) -> bool {
    name.len() <= MAX_MODEL && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// Ask `qemu` which CPU models it emulates.
pub fn models(qemu: &Path) -> Result<Vec<String>, CpuError> {
    let fail = |why: String| CpuError::Query { qemu: qemu.to_path_buf(), why };
    let out = run_qemu(qemu, &["-cpu".as_ref(), "help".as_ref()]).map_err(fail)?;
    let found = parse_models(&String::from_utf8_lossy(&out.stdout));
    if found.is_empty() {
        return Err(fail(format!("`-cpu help` listed no models (exit status {})", out.status)));
    }
    Ok(found)
}

/// The model to use for `arch` under `qemu`: `model` as QEMU lists it
/// (an exact match, else the one name that differs only in case), or
/// the error that lists the valid ones. A native architecture is refused:
/// its programs never go through QEMU. The model must then run the check
/// program, with QEMU started directly (no binfmt_misc needed): a listed
/// model can still be one this QEMU cannot emulate.
pub fn resolve(arch: &Arch, qemu: &Path, model: &str) -> Result<String, CpuError> {
    if arch.is_native_on(Arch::host()) {
        return Err(CpuError::Native { platform: arch.platform() });
    }
    let valid = models(qemu)?;
    let model = pick(arch, qemu, model, valid)?;
    try_model(arch, qemu, &model)?;
    Ok(model)
}

/// `qemu args...` with its output captured, bounded in time (a QEMU that
/// hangs must not hang create).
fn run_qemu(qemu: &Path, args: &[&std::ffi::OsStr]) -> Result<std::process::Output, String> {
    let child = Command::new(qemu)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    crate::emu::sandbox::wait_output(child, qemu, HELP_TIMEOUT).map_err(|e| e.to_string())
}

/// Run the check program under `qemu -cpu model`.
fn try_model(arch: &Arch, qemu: &Path, model: &str) -> Result<(), CpuError> {
    let fail = |why: String| CpuError::Query { qemu: qemu.to_path_buf(), why };
    let wd = crate::emu::sandbox::Workdir::new().map_err(|e| fail(e.to_string()))?;
    let program = wd.path().join("check");
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&program, crate::emu::testprog::program(arch))?;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
    };
    write().map_err(|e| fail(format!("cannot write the check program: {e}")))?;
    let out = run_qemu(qemu, &["-cpu".as_ref(), model.as_ref(), program.as_os_str()]).map_err(fail)?;
    let uname = crate::emu::testprog::parse_output(&out.stdout);
    if out.status.success() && arch.uname.contains(&uname.as_str()) {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let why = said.lines().next().unwrap_or("").trim();
    let why = if why.is_empty() { format!("the check program ended with {}", out.status) } else { cut(why) };
    let qemu = qemu.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Err(CpuError::Unusable { model: model.to_string(), qemu, why })
}

/// A line of QEMU's kept to a readable length (s390x names every missing
/// facility).
fn cut(line: &str) -> String {
    const MAX: usize = 160;
    match line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

fn pick(arch: &Arch, qemu: &Path, model: &str, valid: Vec<String>) -> Result<String, CpuError> {
    if let Some(v) = valid.iter().find(|v| *v == model) {
        return Ok(v.clone());
    }
    let folded: Vec<&String> = valid.iter().filter(|v| v.eq_ignore_ascii_case(model)).collect();
    if let [one] = folded.as_slice() {
        return Ok((*one).clone());
    }
    let qemu_name = qemu.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Err(CpuError::Unknown { model: model.to_string(), platform: arch.platform(), qemu: qemu_name, valid })
}

/// The interpreter path of a shim for `model` and `qemu` under `base`:
/// `<base>/.mtbx-cpu/<model>/<qemu without its leading slash>`.
pub fn shim_path(base: &Path, model: &str, qemu: &Path) -> PathBuf {
    let rel = qemu.strip_prefix("/").unwrap_or(qemu);
    base.join(MARK).join(model).join(rel)
}

/// Make the shim link for `model` and `qemu` under `base`, pointing at
/// `mtbx`, and return the registration that uses it (named and matched as
/// the plain QEMU entry would be). `qemu` must be absolute: the shim execs
/// it from wherever the program runs. The link is needed only while the
/// entry is written (flag F opens it then); it is left in place, where it
/// tells anyone who looks which model the entry runs.
pub fn shim_registration(
    arch: &Arch,
    qemu: &Path,
    model: &str,
    mtbx: &Path,
    base: &Path,
    flags: Flags,
) -> Result<Registration, CpuError> {
    let link = shim_path(base, model, qemu);
    let dir = link.parent().unwrap_or(base).to_path_buf();
    let fail = |source| CpuError::Shim { dir: dir.clone(), source };
    if !qemu.is_absolute() || !valid_name(model) {
        return Err(fail(std::io::Error::other(format!(
            "the interpreter path must be absolute and the model a plain name ({}, {model})",
            qemu.display()
        ))));
    }
    std::fs::create_dir_all(&dir).map_err(fail)?;
    match std::fs::remove_file(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    std::os::unix::fs::symlink(mtbx, &link).map_err(fail)?;
    Ok(Registration::for_arch(arch, &link, flags))
}

/// The model and QEMU path an argv[0] of a shim spells, if it is one.
pub fn decode(argv0: &[u8]) -> Option<(&[u8], &[u8])> {
    let mark = b"/.mtbx-cpu/";
    let at = argv0.windows(mark.len()).position(|w| w == mark)?;
    let rest = &argv0[at + mark.len()..];
    let slash = rest.iter().position(|&b| b == b'/')?;
    let (model, qemu) = (&rest[..slash], &rest[slash..]);
    (!model.is_empty() && qemu.len() > 1).then_some((model, qemu))
}

/// The arguments QEMU gets from a shim: `qemu -cpu MODEL [-0 ARGV0] --
/// PROGRAM ARGS...`. `rest` is what the kernel passed after argv[0]: the
/// program's path, then (flag P) its original argv[0], then its arguments.
/// `--` ends QEMU's options, so a program path starting with `-` is not
/// taken for one. None when the kernel passed no program.
pub fn qemu_args(
    qemu: &[u8],
    model: &[u8],
    preserve_argv0: bool,
    mut rest: Vec<OsString>,
) -> Option<Vec<OsString>> {
    if rest.is_empty() || (preserve_argv0 && rest.len() < 2) {
        return None;
    }
    let program = rest.remove(0);
    let mut args: Vec<OsString> =
        vec![OsString::from_vec(qemu.to_vec()), "-cpu".into(), OsString::from_vec(model.to_vec())];
    if preserve_argv0 {
        args.push("-0".into());
        args.push(rest.remove(0));
    }
    args.push("--".into());
    args.push(program);
    args.extend(rest);
    Some(args)
}

/// The shim: when this process was started by binfmt_misc through a shim
/// entry, become QEMU with the model (never returns then, unless exec
/// fails: the exit code). None for every other start of mtbx. Called
/// first thing in `main`; it costs one comparison of argv[0] otherwise.
pub fn shim_main() -> Option<i32> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    let (model, qemu) = decode(argv0.as_bytes())?;
    let preserve = crate::sys::shim::preserve_argv0();
    let Some(qemu_argv) = qemu_args(qemu, model, preserve, args.collect()) else {
        eprintln!(
            "mtbx: error: {} is the CPU model shim binfmt_misc runs; it needs the program to run",
            argv0.to_string_lossy()
        );
        return Some(crate::error::Kind::BadInput.exit_code());
    };
    let program = qemu_argv.iter().skip_while(|a| *a != "--").nth(1).cloned().unwrap_or_default();
    let err = crate::sys::shim::exec_qemu(OsString::from_vec(qemu.to_vec()), qemu_argv);
    eprintln!(
        "mtbx: error: cannot run {} for {}: {err}",
        String::from_utf8_lossy(qemu),
        program.to_string_lossy()
    );
    Some(if err.kind() == std::io::ErrorKind::NotFound {
        crate::error::Kind::CommandNotFound.exit_code()
    } else {
        crate::error::Kind::CannotExec.exit_code()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_targets_format_is_read() {
        let ppc =
            "PowerPC 405              PVR 20011000\nPowerPC power10          (alias for power10_v2.0)\n";
        assert_eq!(parse_models(ppc), ["405", "power10"]);
        let x86 = "Available CPUs:\nx86 486                   (alias configured by machine type)\nx86 max  Enables all\n\nRecognized CPUID flags:\n  3dnow abm\n";
        assert_eq!(parse_models(x86), ["486", "max"]);
        let s390 = "s390 qemu            QEMU Virtual CPU version 2.5+       (migration-safe)\ns390 z15-base  IBM z15\n\nRecognized feature flags:\nmsa2                 Message-security-assist-extension 2 facility\n";
        assert_eq!(parse_models(s390), ["qemu", "z15-base"]);
        assert_eq!(parse_models("MIPS '4Kc'\nMIPS 'I6400'\n"), ["4Kc", "I6400"]);
        assert_eq!(
            parse_models("Available CPUs:\n  a64fx\n  cortex-a53\n  max\n"),
            ["a64fx", "cortex-a53", "max"]
        );
        assert_eq!(parse_models("any\nrv64\nsifive-u54\n"), ["any", "rv64", "sifive-u54"]);
        assert!(parse_models("").is_empty());
    }

    #[test]
    fn a_model_is_matched_exactly_or_by_case_and_otherwise_listed() {
        let ppc = Arch::parse("ppc64le").unwrap();
        let q = Path::new("/usr/bin/qemu-ppc64le-static");
        let valid: Vec<String> = ["power9", "power10", "power10_v2.0", "405"].map(String::from).to_vec();
        assert_eq!(pick(ppc, q, "power10", valid.clone()).unwrap(), "power10");
        assert_eq!(pick(ppc, q, "POWER10", valid.clone()).unwrap(), "power10");
        let e = pick(ppc, q, "power11", valid.clone()).unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown CPU model 'power11' for ppc64le; qemu-ppc64le-static knows 4 models: power9, power10, power10_v2.0, 405"
        );
        let many: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
        let e = pick(ppc, q, "x", many).unwrap_err().to_string();
        assert!(e.ends_with("and 76 more (`qemu-ppc64le-static -cpu help` lists them)"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn near_names_come_first() {
        let valid: Vec<String> = ["a", "b", "cortex-a53", "cortex-a72"].map(String::from).to_vec();
        assert!(listing(&valid, "cortex-a5", "q").starts_with("4 models: cortex-a53, cortex-a72, a, b"));
    }

    #[test]
    fn a_shim_path_round_trips() {
        let p = shim_path(Path::new("/run/mtbx"), "power10", Path::new("/run/mtbx-host/qemu-ppc64le"));
        assert_eq!(p, Path::new("/run/mtbx/.mtbx-cpu/power10/run/mtbx-host/qemu-ppc64le"));
        let (model, qemu) = decode(p.as_os_str().as_bytes()).unwrap();
        assert_eq!((model, qemu), (&b"power10"[..], &b"/run/mtbx-host/qemu-ppc64le"[..]));
        assert!(decode(b"/usr/bin/mtbx").is_none());
        assert!(decode(b"/x/.mtbx-cpu/power10").is_none());
        assert!(decode(b"/x/.mtbx-cpu//usr/bin/q").is_none());
    }

    #[test]
    fn qemu_gets_the_model_the_argv0_and_the_program_after_dashes() {
        let rest: Vec<OsString> = ["/bin/ls", "ls", "-l", "/"].map(OsString::from).to_vec();
        let a = qemu_args(b"/q", b"max", true, rest.clone()).unwrap();
        assert_eq!(a, ["/q", "-cpu", "max", "-0", "ls", "--", "/bin/ls", "-l", "/"].map(OsString::from));
        let a = qemu_args(b"/q", b"max", false, rest).unwrap();
        assert_eq!(a, ["/q", "-cpu", "max", "--", "/bin/ls", "ls", "-l", "/"].map(OsString::from));
        assert!(qemu_args(b"/q", b"max", true, vec!["/bin/ls".into()]).is_none());
        assert!(qemu_args(b"/q", b"max", false, vec![]).is_none());
    }
}
