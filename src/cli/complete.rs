//! Shell completion with live candidates: the shell asks the binary
//! itself (`MTBX_COMPLETE=SHELL mtbx ...`, clap_complete's dynamic engine)
//! for container names, image names, architectures with their aliases,
//! and distributions, so completion always matches the machine and the
//! command line. `mtbx completion SHELL` and `toolbox completion SHELL`
//! print the shell's registration code.

use std::ffi::OsString;

use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

use crate::toolbox::naming;
use crate::toolbox::ops::{OpsError, Toolbox};

/// The variable through which the shell asks for candidates.
pub const VAR: &str = "MTBX_COMPLETE";

/// Answer the shell when it is asking (then exit); return otherwise. Call
/// before parsing the command line.
pub fn answer_shell(factory: fn() -> clap::Command, name: &str) {
    clap_complete::CompleteEnv::with_factory(factory).var(VAR).bin(name.to_string()).complete();
}

/// Print the registration code for `shell` ("bash", "zsh", "fish", ...),
/// for the program called `name` found at `completer`.
pub fn registration(shell: &str, name: &str, completer: &std::path::Path) -> Option<String> {
    let shells = clap_complete::env::Shells::builtins();
    let s = shells.completer(shell)?;
    let mut out = Vec::new();
    s.write_registration(VAR, name, name, &completer.to_string_lossy(), &mut out).ok()?;
    String::from_utf8(out).ok()
}

/// The shells `registration` knows.
pub fn shells() -> Vec<&'static str> {
    clap_complete::env::Shells::builtins().names().collect()
}

/// Candidates from the toolbox operations, none when podman is missing
/// or fails (completion never prints an error).
fn from_ops(f: impl FnOnce(&Toolbox) -> Result<Vec<String>, OpsError>) -> Vec<CompletionCandidate> {
    let Ok(tb) = Toolbox::new() else { return Vec::new() };
    f(&tb)
        .unwrap_or_default()
        .into_iter()
        .filter(|l| !l.is_empty() && !l.contains("<none>"))
        .map(|l| CompletionCandidate::new(OsString::from(l)))
        .collect()
}

/// Toolbox containers (mtbx's and Toolbx's).
pub fn containers() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        from_ops(|tb| Ok(tb.toolbx_containers()?.iter().map(|c| c.name().to_string()).collect()))
    })
}

/// Images in podman's store.
pub fn images() -> ArgValueCandidates {
    ArgValueCandidates::new(|| from_ops(Toolbox::image_names))
}

/// Every architecture name and alias.
pub fn arches() -> ArgValueCandidates {
    ArgValueCandidates::new(|| crate::emu::arch::names().into_iter().map(CompletionCandidate::new).collect())
}

/// The distributions with toolbox images.
pub fn distros() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        crate::toolbox::naming::DISTROS.iter().map(|d| CompletionCandidate::new(d.name)).collect()
    })
}

/// Releases: the tags of the toolbox images in the store, and the host's
/// default release.
pub fn releases() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        let mut tags: Vec<String> = from_ops(|tb| {
            Ok(tb
                .toolbx_images()?
                .into_iter()
                .filter_map(|i| naming::image_tag(&i.name).map(str::to_string))
                .collect())
        })
        .into_iter()
        .map(|c| c.get_value().to_string_lossy().into_owned())
        .collect();
        let (_, host) = crate::toolbox::naming::host_defaults(&crate::toolbox::naming::OsRelease::host());
        tags.push(host);
        tags.sort();
        tags.dedup();
        tags.into_iter().map(CompletionCandidate::new).collect()
    })
}
