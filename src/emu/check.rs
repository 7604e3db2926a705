//! The emulation check: proof that binaries of an architecture really run
//! here, by running the project's own tiny program for it and reading back
//! what `uname -m` says.
//!
//! The check prefers a private binfmt_misc instance in a fresh user
//! namespace, so it needs no root and never depends on, or changes, the
//! host's registrations. On kernels before 6.7 it falls back to an entry
//! the host already has, and says so.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::emu::arch::Arch;
use crate::emu::binfmt::{Flags, Registration};
use crate::emu::host::{self, HostBinfmt};
use crate::emu::sandbox::{self, SandboxError, Workdir};
use crate::emu::testprog;

/// How long one check program may run; QEMU starts in milliseconds, so
/// this only stops a hung emulator.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How the program was run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "entry")]
pub enum Method {
    /// The host CPU runs it without emulation.
    Native,
    /// Under QEMU, through a binfmt_misc instance of a fresh user namespace.
    Sandbox,
    /// Under QEMU, through the named entry of the host's binfmt_misc.
    HostEntry(String),
}

/// A passed check.
#[derive(Debug, Clone, Serialize)]
pub struct Passed {
    /// The platform checked.
    pub platform: String,
    /// How it ran.
    pub method: Method,
    /// What the program's uname(2) said.
    pub uname: String,
    /// The interpreter used, when emulated in the sandbox.
    pub interpreter: Option<PathBuf>,
    /// The QEMU CPU model, when one was asked for.
    pub cpu: Option<String>,
    /// Whether the model has the architecture's probe feature, when a
    /// model was asked for and the architecture has a probe.
    pub probe: Option<ProbeResult>,
}

/// What the feature probe ([`testprog::probe`]) found under a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    /// The feature.
    pub feature: String,
    /// Whether its instruction ran (false: the program died of SIGILL).
    pub available: bool,
}

/// A CPU model to run the check under, and the mtbx binary that serves as
/// the shim ([`crate::emu::cpu`]).
#[derive(Debug, Clone)]
pub struct CpuChoice {
    /// The model, as [`crate::emu::cpu::resolve`] returned it.
    pub model: String,
    /// The mtbx binary (the running one, for the command line).
    pub shim: PathBuf,
}

/// A failed check; the message says what is missing and how to get it.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No usable static interpreter and no host entry.
    #[error("{0}")]
    NoInterpreter(String),
    /// An interpreter, but neither a sandbox nor a host entry to use it.
    #[error("{platform}: cannot emulate: {sandbox}; and the host has no binfmt_misc entry for it (run `sudo mtbx binfmt register --arch {short}`)")]
    NoWayToRun {
        /// The platform.
        platform: String,
        /// Its short name, for the hint.
        short: String,
        /// Why the sandbox is unavailable.
        sandbox: String,
    },
    /// The sandbox failed while setting up.
    #[error("{platform}: {source}")]
    Sandbox {
        /// The platform.
        platform: String,
        /// The failure.
        source: SandboxError,
    },
    /// A CPU model needs the sandbox: a host entry runs QEMU's default.
    #[error("{platform}: --cpu needs a binfmt_misc instance of a user namespace's own (Linux >= 6.7), and here: {why}")]
    CpuNeedsSandbox {
        /// The platform.
        platform: String,
        /// Why the sandbox is unavailable.
        why: String,
    },
    /// The model is not usable.
    #[error(transparent)]
    Cpu(#[from] crate::emu::cpu::CpuError),
    /// The program ran but did not do what it should.
    #[error("{platform}: the test program {how}")]
    Failed {
        /// The platform.
        platform: String,
        /// What went wrong.
        how: String,
    },
}

/// Inputs shared by the checks of one command.
pub struct Context {
    /// The host's current registrations (read only).
    pub host_binfmt: HostBinfmt,
    /// An interpreter path the user gave, used instead of searching.
    pub interpreter: Option<PathBuf>,
}

/// Run the check for one platform.
pub fn check(arch: &Arch, ctx: &Context) -> Result<Passed, CheckError> {
    check_with_cpu(arch, ctx, None)
}

/// Run the check for one platform under a CPU model: in the sandbox, with
/// the model's shim registered instead of QEMU itself, then the feature
/// probe, when the architecture has one, through the same entry.
pub fn check_with_cpu(arch: &Arch, ctx: &Context, cpu: Option<&CpuChoice>) -> Result<Passed, CheckError> {
    let Some(cpu) = cpu else { return check_default(arch, ctx) };
    let platform = arch.platform();
    let failed = |source| CheckError::Sandbox { platform: platform.clone(), source };
    if arch.is_native_on(Arch::host()) {
        return Err(crate::emu::cpu::CpuError::Native { platform }.into());
    }
    let search = host::find_interpreter(arch, ctx.interpreter.as_deref());
    let Some(interp) = search.usable() else { return Err(CheckError::NoInterpreter(search.problem(arch))) };
    let qemu = std::fs::canonicalize(&interp.path).unwrap_or_else(|_| interp.path.clone());
    let model = crate::emu::cpu::resolve(arch, &qemu, &cpu.model)?;
    let wd = Workdir::new().map_err(failed)?;
    let reg = crate::emu::cpu::shim_registration(arch, &qemu, &model, &cpu.shim, wd.path(), Flags::SANDBOX)?;
    let program = write_program(wd.path(), arch).map_err(failed)?;
    let output = match sandbox::run(&wd, std::slice::from_ref(&reg), &program, None, &[], TIMEOUT) {
        Ok(out) => out,
        Err(e) if e.is_setup_failure() => {
            return Err(CheckError::CpuNeedsSandbox { platform, why: e.to_string() })
        }
        Err(e) => return Err(failed(e)),
    };
    let mut passed = verify(arch, Arch::host(), Method::Sandbox, Some(qemu), &output)?;
    passed.cpu = Some(model);
    if let Some(probe) = testprog::probe(arch) {
        let path = wd.path().join(format!("probe-{}", arch.short_name()));
        write_file(&path, &probe.program).map_err(failed)?;
        let out = sandbox::run(&wd, &[reg], &path, None, &[], TIMEOUT).map_err(failed)?;
        passed.probe = Some(probe_result(arch, probe.feature, &out)?);
    }
    Ok(passed)
}

/// Read a probe's outcome: it ran (the feature is there), or it died of
/// SIGILL (it is not); anything else is a failed check.
pub fn probe_result(arch: &Arch, feature: &str, out: &Output) -> Result<ProbeResult, CheckError> {
    use std::os::unix::process::ExitStatusExt;
    let uname = testprog::parse_output(&out.stdout);
    let available = if out.status.success() && arch.uname.contains(&uname.as_str()) {
        true
    } else if out.status.signal() == Some(libc::SIGILL) {
        false
    } else {
        return Err(CheckError::Failed {
            platform: arch.platform(),
            how: format!("probe for {feature} ended with {} and printed '{uname}'", out.status),
        });
    };
    Ok(ProbeResult { feature: feature.to_string(), available })
}

fn check_default(arch: &Arch, ctx: &Context) -> Result<Passed, CheckError> {
    let platform = arch.platform();
    let host = Arch::host();
    let failed = |source| CheckError::Sandbox { platform: platform.clone(), source };
    let wd = Workdir::new().map_err(failed)?;
    let program = write_program(wd.path(), arch).map_err(failed)?;

    let (method, interpreter, output) = if arch.is_native_on(host) {
        (Method::Native, None, run_plain(&program).map_err(failed)?)
    } else {
        let search = host::find_interpreter(arch, ctx.interpreter.as_deref());
        // Try the sandbox first; if the namespace itself cannot be set up
        // (old kernel, user namespaces off), use a host entry if there is one.
        let sandboxed = search.usable().map(|interp| {
            let reg = Registration::for_arch(arch, &interp.path, Flags::SANDBOX);
            (interp.path.clone(), sandbox::run(&wd, &[reg], &program, None, &[], TIMEOUT))
        });
        match (sandboxed, ctx.host_binfmt.entry_for(arch)) {
            (Some((path, Ok(out))), _) => (Method::Sandbox, Some(path), out),
            (Some((_, Err(e))), _) if !e.is_setup_failure() => return Err(failed(e)),
            (Some((_, Err(e))), None) => {
                return Err(CheckError::NoWayToRun {
                    platform: platform.clone(),
                    short: arch.short_name(),
                    sandbox: e.to_string(),
                })
            }
            (tried, Some(entry)) => {
                if let Some((_, Err(e))) = &tried {
                    tracing::info!("{platform}: sandbox unavailable ({e}); using host entry {}", entry.name);
                }
                (Method::HostEntry(entry.name.clone()), None, run_plain(&program).map_err(failed)?)
            }
            (None, None) => return Err(CheckError::NoInterpreter(search.problem(arch))),
        }
    };
    verify(arch, host, method, interpreter, &output)
}

fn verify(
    arch: &Arch,
    host: &Arch,
    method: Method,
    interpreter: Option<PathBuf>,
    output: &Output,
) -> Result<Passed, CheckError> {
    let platform = arch.platform();
    let uname = testprog::parse_output(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim().lines().last().unwrap_or("").to_string();
        return Err(CheckError::Failed {
            platform,
            how: format!(
                "ended with {}{}",
                output.status,
                if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
            ),
        });
    }
    // Natively, the kernel answers with the host's name (x86_64 for a 386
    // program on amd64); under QEMU, with the emulated CPU's.
    let expected: Vec<&str> = match method {
        Method::Native => arch.uname.iter().chain(host.uname).copied().collect(),
        _ => arch.uname.to_vec(),
    };
    if !expected.contains(&uname.as_str()) {
        return Err(CheckError::Failed {
            platform,
            how: format!("printed '{uname}', expected one of {}", expected.join(", ")),
        });
    }
    Ok(Passed { platform, method, uname, interpreter, cpu: None, probe: None })
}

/// Write the check program for `arch` into `dir`, executable.
pub fn write_program(dir: &Path, arch: &Arch) -> Result<PathBuf, SandboxError> {
    let path = dir.join(format!("check-{}", arch.short_name()));
    write_file(&path, &testprog::program(arch))?;
    Ok(path)
}

/// Write a new executable file.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SandboxError> {
    let io = |source| SandboxError::Io { what: format!("writing {}", path.display()), source };
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o755).open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    Ok(())
}

fn run_plain(program: &Path) -> Result<Output, SandboxError> {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = sandbox::spawn_retrying(&mut cmd)
        .map_err(|source| SandboxError::Io { what: format!("running {}", program.display()), source })?;
    sandbox::wait_output(child, program, TIMEOUT)
}
