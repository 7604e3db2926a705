//! `mtbx arch list` and `mtbx arch check`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;

use super::exit;
use super::output::{self, color_stdout, paint, Format, Style, Table};
use crate::emu::arch::{Arch, ARCHES};
use crate::emu::binfmt::BinfmtFs;
use crate::emu::check::{self, Context, Method};
use crate::emu::host::{self, Capabilities, HostBinfmt};

#[derive(Debug, Subcommand)]
pub enum ArchCommand {
    /// Every known architecture, its names, and what this host has for it.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Prove that architectures run here by executing a tiny program of each.
    ///
    /// Uses a private binfmt_misc in a new user namespace (no root needed,
    /// host registrations untouched); falls back to a host entry on kernels
    /// before 6.7. Exits 0 only if every check passed.
    Check {
        /// Architectures to check (any name `arch list` shows), or `all`.
        #[arg(required = true, value_name = "ARCH")]
        arches: Vec<String>,
        /// Use this QEMU interpreter instead of searching (one ARCH only).
        #[arg(long, value_name = "PATH")]
        qemu: Option<PathBuf>,
        /// Run under this QEMU CPU model, as `create --cpu` would (one
        /// foreign ARCH only; `qemu-<target> -cpu help` lists the models),
        /// and show whether the model has the architecture's probe feature.
        #[arg(long, value_name = "MODEL")]
        cpu: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub fn run(cmd: ArchCommand) -> Result<i32> {
    match cmd {
        ArchCommand::List { format } => list(format),
        ArchCommand::Check { arches, qemu, cpu, format } => check(&arches, qemu, cpu, format),
    }
}

#[derive(Serialize)]
struct InterpreterInfo {
    path: PathBuf,
    linkage: String,
}

#[derive(Serialize)]
struct EntryInfo {
    name: String,
    flags: String,
    enabled: bool,
    interpreter: String,
}

#[derive(Serialize)]
struct ArchRow {
    #[serde(flatten)]
    arch: &'static Arch,
    native: bool,
    interpreter: Option<InterpreterInfo>,
    interpreter_problem: Option<String>,
    host_entry: Option<EntryInfo>,
    sandbox: bool,
}

#[derive(Serialize)]
struct ListReport {
    host: String,
    kernel: String,
    kernel_userns_binfmt: bool,
    sandbox_available: bool,
    sandbox_problem: Option<String>,
    host_binfmt_mounted: bool,
    arches: Vec<ArchRow>,
}

fn list(format: Format) -> Result<i32> {
    let host_arch = Arch::host();
    let caps = Capabilities::probe();
    let host_binfmt = HostBinfmt::read(&BinfmtFs::default());
    if let Some(err) = &host_binfmt.error {
        output::warn(&format!("cannot read the host's binfmt_misc: {err}"));
    }
    let rows: Vec<ArchRow> = ARCHES
        .iter()
        .map(|a| {
            let native = a.is_native_on(host_arch);
            let (interpreter, problem) = if native {
                (None, None)
            } else {
                let search = host::find_interpreter(a, None);
                match search.usable() {
                    Some(s) => {
                        (Some(InterpreterInfo { path: s.path.clone(), linkage: s.linkage.to_string() }), None)
                    }
                    None => (None, Some(search.problem(a))),
                }
            };
            let host_entry = host_binfmt.entries.iter().find(|e| e.serves(a)).map(|e| EntryInfo {
                name: e.name.clone(),
                flags: e.flags.to_string(),
                enabled: e.enabled,
                interpreter: e.interpreter.clone(),
            });
            let sandbox = !native && interpreter.is_some() && caps.sandbox.is_ok();
            ArchRow { arch: a, native, interpreter, interpreter_problem: problem, host_entry, sandbox }
        })
        .collect();
    let report = ListReport {
        host: host_arch.platform(),
        kernel: caps.kernel.clone(),
        kernel_userns_binfmt: caps.kernel_userns_binfmt,
        sandbox_available: caps.sandbox.is_ok(),
        sandbox_problem: caps.sandbox.as_ref().err().map(ToString::to_string),
        host_binfmt_mounted: host_binfmt.mounted,
        arches: rows,
    };
    if format == Format::Json {
        output::print_json(&report)?;
        return Ok(exit::OK);
    }
    let mut t = Table::new(&["PLATFORM", "UNAME", "QEMU", "HOST BINFMT", "SANDBOX", "ALIASES"]);
    for r in &report.arches {
        let qemu = match (&r.interpreter, r.native) {
            (_, true) => "native".to_string(),
            (Some(i), _) => i.path.display().to_string(),
            (None, _) if r.interpreter_problem.as_deref().is_some_and(|p| p.contains("dynamically")) => {
                "dynamic only".to_string()
            }
            (None, _) => "missing".to_string(),
        };
        let entry = match &r.host_entry {
            Some(e) if e.enabled => format!("{} ({})", e.name, e.flags),
            Some(e) => format!("{} (disabled)", e.name),
            None => "-".to_string(),
        };
        let sandbox = if r.native {
            "-"
        } else if r.sandbox {
            "yes"
        } else {
            "no"
        };
        t.row(vec![
            r.arch.platform(),
            r.arch.uname[0].to_string(),
            qemu,
            entry,
            sandbox.to_string(),
            r.arch.aliases.join(","),
        ]);
    }
    print!("{}", t.render(color_stdout()));
    let sandbox_note = match &report.sandbox_problem {
        None => "available".to_string(),
        Some(p) => format!("unavailable ({p})"),
    };
    println!(
        "\nhost {} | kernel {} | per-user-namespace binfmt_misc: {}",
        report.host, report.kernel, sandbox_note
    );
    Ok(exit::OK)
}

#[derive(Serialize)]
struct CheckRow {
    platform: String,
    passed: bool,
    uname: Option<String>,
    method: Option<Method>,
    interpreter: Option<PathBuf>,
    cpu: Option<String>,
    probe: Option<check::ProbeResult>,
    error: Option<String>,
}

fn check(names: &[String], qemu: Option<PathBuf>, cpu: Option<String>, format: Format) -> Result<i32> {
    let mut unique: Vec<&'static Arch> = Vec::new();
    for n in names {
        let named: Vec<&'static Arch> =
            if n == "all" { ARCHES.iter().collect() } else { vec![Arch::parse(n)?] };
        for a in named {
            if !unique.iter().any(|u| std::ptr::eq(*u, a)) {
                unique.push(a);
            }
        }
    }
    if qemu.is_some() && unique.len() != 1 {
        return Err(
            crate::error::BadInput("--qemu names one interpreter, so give exactly one ARCH".into()).into()
        );
    }
    let cpu = match cpu {
        None => None,
        Some(model) => Some(cpu_choice(&unique, qemu.as_deref(), &model)?),
    };
    let ctx = Context { host_binfmt: HostBinfmt::read(&BinfmtFs::default()), interpreter: qemu };
    let mut rows = Vec::new();
    for a in unique {
        let spin = output::spinner(format!("checking {}", a.platform()));
        let res = check::check_with_cpu(a, &ctx, cpu.as_ref());
        spin.finish_and_clear();
        rows.push(match res {
            Ok(p) => CheckRow {
                platform: p.platform,
                passed: true,
                uname: Some(p.uname),
                method: Some(p.method),
                interpreter: p.interpreter,
                cpu: p.cpu,
                probe: p.probe,
                error: None,
            },
            Err(e) => CheckRow {
                platform: a.platform(),
                passed: false,
                uname: None,
                method: None,
                interpreter: None,
                cpu: None,
                probe: None,
                error: Some(e.to_string()),
            },
        });
    }
    let all_passed = rows.iter().all(|r| r.passed);
    if format == Format::Json {
        output::print_json(&rows)?;
    } else {
        let color = color_stdout();
        let with_cpu = cpu.is_some();
        let mut head = vec!["PLATFORM", "RESULT", "UNAME -M", "RUNS VIA"];
        if with_cpu {
            head.extend(["CPU MODEL", "PROBE"]);
        }
        let mut t = Table::new(&head);
        for r in &rows {
            let result =
                if r.passed { paint("ok", Style::Green, color) } else { paint("FAILED", Style::Red, color) };
            let via = match (&r.method, &r.interpreter) {
                (Some(Method::Native), _) => "native".to_string(),
                (Some(Method::Sandbox), Some(i)) => format!("sandboxed binfmt_misc, {}", i.display()),
                (Some(Method::Sandbox), None) => "sandboxed binfmt_misc".to_string(),
                (Some(Method::HostEntry(e)), _) => format!("host binfmt_misc entry {e}"),
                (None, _) => "-".to_string(),
            };
            let mut row = vec![r.platform.clone(), result, r.uname.clone().unwrap_or("-".into()), via];
            if with_cpu {
                row.push(r.cpu.clone().unwrap_or("-".into()));
                row.push(match &r.probe {
                    Some(p) if p.available => format!("{}: yes", p.feature),
                    Some(p) => format!("{}: no (SIGILL)", p.feature),
                    None => "-".into(),
                });
            }
            t.row(row);
        }
        print!("{}", t.render(color));
    }
    for r in rows.iter().filter(|r| !r.passed) {
        super::report_error(&anyhow::anyhow!("{}", r.error.as_deref().unwrap_or("failed")), false);
    }
    Ok(if all_passed { exit::OK } else { exit::FAILED })
}

/// Why `arch check --cpu` cannot set up its shim.
#[derive(Debug, thiserror::Error)]
pub enum ArchCmdError {
    /// No usable interpreter for the architecture (the search says why).
    #[error("{0}")]
    NoInterpreter(String),
    /// This binary cannot be found to serve as the shim.
    #[error("cannot find the mtbx binary")]
    SelfPath(#[source] std::io::Error),
}

impl crate::error::Classify for ArchCmdError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Failed
    }
}

/// `--cpu` is for one foreign architecture, whose interpreter must know
/// the model: checked before anything runs, so a wrong model is bad
/// input (exit 2), not a failed check.
fn cpu_choice(
    arches: &[&'static Arch],
    qemu: Option<&std::path::Path>,
    model: &str,
) -> Result<check::CpuChoice> {
    let [arch] = arches else {
        return Err(crate::error::BadInput(
            "--cpu names a model of one architecture, so give exactly one ARCH".into(),
        )
        .into());
    };
    if arch.is_native_on(Arch::host()) {
        return Err(crate::emu::cpu::CpuError::Native { platform: arch.platform() }.into());
    }
    let search = host::find_interpreter(arch, qemu);
    let Some(interp) = search.usable() else {
        return Err(ArchCmdError::NoInterpreter(search.problem(arch)).into());
    };
    let model = crate::emu::cpu::resolve(arch, &interp.path, model)?;
    let shim = std::env::current_exe().map_err(ArchCmdError::SelfPath)?;
    Ok(check::CpuChoice { model, shim })
}
