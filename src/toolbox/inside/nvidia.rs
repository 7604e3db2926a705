//! init-container's NVIDIA step: the CDI spec the host saved
//! ([`crate::toolbox::cdi`]) applied as Toolbx applies it. The runtime
//! would run the spec's `nvidia-cdi-hook` as an OCI hook; a toolbox is
//! created once and started many times, with a driver that may change
//! between starts, so, as in Toolbx, init-container does the hooks' work
//! itself at every start: bind mounts of the host's files (through
//! /run/host), device nodes the container lacks, the links
//! `create-symlinks` makes and the linker cache `update-ldcache` updates.
//! Other hooks and other stages are the runtime's and are skipped.

use std::path::{Path, PathBuf};

use super::InitError;
use crate::toolbox::cdi::{self, LoadError, Spec};

/// Toolbx's name of the linker configuration it writes.
const LD_CONF: &str = "toolbx-nvidia.conf";

/// The spec's file as this container sees the host's: through /run/host,
/// which holds every runtime directory (the container's own /run does
/// not).
pub(super) fn spec_file(uid: u32) -> PathBuf {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    let host = cdi::runtime_dir(uid, xdg.as_deref()).join(cdi::FILE_NAME);
    Path::new("/run/host").join(host.strip_prefix("/").unwrap_or(&host))
}

/// Load and apply the spec at `file` to the tree at `root`; native
/// containers only: the driver's libraries are the host's architecture,
/// which a foreign container's programs cannot load.
pub(super) fn apply_file(root: &Path, file: &Path, native: bool) -> Result<(), InitError> {
    tracing::debug!("Loading Container Device Interface for NVIDIA from file {}", file.display());
    let spec = match Spec::load(file) {
        Ok(spec) => spec,
        Err(LoadError::Missing) => return Ok(()),
        Err(e) => {
            tracing::debug!(
                "Loading Container Device Interface for NVIDIA failed: {}",
                crate::error::chain(&e)
            );
            return Err(InitError("failed to load Container Device Interface for NVIDIA".into()));
        }
    };
    if !native {
        super::say(
            super::WARNING_PREFIX,
            "NVIDIA's driver is of the host's architecture: not applied in this container's",
        );
        return Ok(());
    }
    apply(root, &spec)
}

/// Apply a spec's edits in Toolbx's order: every mount, then every
/// device node, then every hook.
pub(super) fn apply(root: &Path, spec: &Spec) -> Result<(), InitError> {
    let fail = |msg: &str| InitError(format!("{msg} in Container Device Interface for NVIDIA"));
    for edits in spec.edits() {
        for m in &edits.mounts {
            if !m.valid() {
                return Err(fail("invalid mount"));
            }
            match m.kind.as_deref().unwrap_or("bind") {
                "bind" => {}
                other => {
                    tracing::debug!(
                        "Applying Container Device Interface for NVIDIA: unknown mount type {other}"
                    );
                    continue;
                }
            }
            let source = root.join("run/host").join(m.host_path.trim_start_matches('/'));
            let target = root.join(m.container_path.trim_start_matches('/'));
            bind(&source, &target, &m.options).map_err(|e| {
                tracing::debug!("binding {} to {}: {e}", m.container_path, source.display());
                InitError("failed to apply mount from Container Device Interface for NVIDIA".into())
            })?;
        }
    }
    for edits in spec.edits() {
        for n in &edits.device_nodes {
            if n.path.is_empty() || !n.path.starts_with('/') {
                return Err(fail("invalid device node"));
            }
            let target = root.join(n.path.trim_start_matches('/'));
            if target.exists() {
                continue;
            }
            let host = n.host_path.as_deref().unwrap_or(&n.path);
            let source = root.join("run/host").join(host.trim_start_matches('/'));
            bind(&source, &target, &[]).map_err(|e| {
                tracing::debug!("binding {} to {}: {e}", n.path, source.display());
                InitError("failed to apply device node from Container Device Interface for NVIDIA".into())
            })?;
        }
    }
    for edits in spec.edits() {
        for h in &edits.hooks {
            if !h.valid() {
                return Err(fail("invalid hook"));
            }
            if h.hook_name != cdi::CREATE_CONTAINER {
                tracing::debug!(
                    "Applying Container Device Interface for NVIDIA: unknown hook name {}",
                    h.hook_name
                );
                continue;
            }
            match h.nvidia() {
                Some(("create-symlinks", args)) => create_symlinks(root, args).map_err(|e| {
                    tracing::debug!("Applying Container Device Interface for NVIDIA: {e}");
                    InitError("failed to create symlinks for Container Device Interface for NVIDIA".into())
                })?,
                Some(("update-ldcache", args)) => update_ldcache(root, args).map_err(|e| {
                    tracing::debug!("Applying Container Device Interface for NVIDIA: {e}");
                    InitError("failed to update ldcache for Container Device Interface for NVIDIA".into())
                })?,
                _ => tracing::debug!(
                    "Applying Container Device Interface for NVIDIA: unknown hook {:?}",
                    h.args
                ),
            }
        }
    }
    Ok(())
}

/// `--link TARGET::LINK`, each LINK absolute; a link already there is
/// kept (a restart finds its own).
fn create_symlinks(root: &Path, args: &[String]) -> Result<(), String> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg != "--link" {
            continue;
        }
        let value = it.next().ok_or("missing --link argument")?;
        let parts: Vec<&str> = value.split("::").collect();
        let [target, link] = parts[..] else {
            return Err(format!("invalid --link argument: {value} not in '<target>::<link>' format"));
        };
        if !link.starts_with('/') {
            return Err(format!("invalid --link argument: link {link} is not an absolute path"));
        }
        let link = root.join(link.trim_start_matches('/'));
        if let Some(dir) = link.parent() {
            crate::fsutil::mkdir_all(dir, 0o755)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        match std::os::unix::fs::symlink(target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot link {}: {e}", link.display())),
        }
    }
    Ok(())
}

/// `--folder DIR`...: written to /etc/ld.so.conf.d in Toolbx's words
/// (or given to ldconfig where there is no such directory), then
/// ldconfig; with `-N` where the image has no cache, as Toolbx runs it,
/// so an image without one is left without.
fn update_ldcache(root: &Path, args: &[String]) -> Result<(), String> {
    let mut folders: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--folder" {
            if let Some(f) = it.next() {
                if !folders.contains(&f.as_str()) {
                    folders.push(f);
                }
            }
        }
    }
    let mut ldconfig_args: Vec<&str> = Vec::new();
    if !root.join("etc/ld.so.cache").exists() {
        ldconfig_args.push("-N");
    }
    let conf_d = root.join("etc/ld.so.conf.d");
    if conf_d.is_dir() {
        if !folders.is_empty() {
            let mut text = String::from("# Written by Toolbx\n# https://containertoolbx.org/\n\n");
            for f in &folders {
                text.push_str(f);
                text.push('\n');
            }
            crate::fsutil::write_atomic(&conf_d.join(LD_CONF), text.as_bytes(), 0o644)
                .map_err(|e| format!("cannot write {LD_CONF}: {e}"))?;
        }
    } else {
        ldconfig_args.extend(&folders);
    }
    let mut ldconfig = std::process::Command::new("ldconfig");
    ldconfig.args(&ldconfig_args);
    if root != Path::new("/") {
        ldconfig.arg("-r").arg(root);
    }
    let status = ldconfig.status().map_err(|e| format!("cannot run ldconfig: {e}"))?;
    if !status.success() {
        return Err(format!("ldconfig failed ({status})"));
    }
    Ok(())
}

/// A bind mount as mount(8)'s `--rbind -o OPTIONS` makes it: the
/// target made to match the source, then the flags of `ro`, `nosuid`,
/// `nodev`, `noexec` applied by a remount. A source the host lacks is
/// no error: the spec describes a driver that may have changed since.
fn bind(source: &Path, target: &Path, options: &[String]) -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    let meta = match std::fs::metadata(source) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        crate::fsutil::mkdir_all(target, 0o755)?;
    } else {
        if let Some(p) = target.parent() {
            crate::fsutil::mkdir_all(p, 0o755)?;
        }
        if std::fs::symlink_metadata(target).is_err() {
            std::fs::OpenOptions::new().create(true).append(true).open(target)?;
        }
    }
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)?;
    let mut flags = MsFlags::empty();
    for o in options {
        flags |= match o.as_str() {
            "ro" => MsFlags::MS_RDONLY,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            _ => MsFlags::empty(),
        };
    }
    if !flags.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None::<&str>,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        Spec::parse(json.as_bytes()).unwrap()
    }

    fn hooks(args: &[&str]) -> Spec {
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        spec(&format!(
            r#"{{"containerEdits":{{"hooks":[{{"hookName":"createContainer","path":"/usr/bin/nvidia-cdi-hook","args":[{}]}}]}}}}"#,
            args.join(",")
        ))
    }

    #[test]
    fn links_are_made_once_with_their_parents_and_kept_on_restart() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let s = hooks(&[
            "nvidia-cdi-hook",
            "create-symlinks",
            "--link",
            "/usr/bin/toolbox::/run/toolbox.1",
            "--link",
            "../bin/toolbox::/usr/new/dir/toolbox.2",
        ]);
        apply(r, &s).unwrap();
        apply(r, &s).unwrap();
        assert_eq!(std::fs::read_link(r.join("run/toolbox.1")).unwrap(), Path::new("/usr/bin/toolbox"));
        assert_eq!(std::fs::read_link(r.join("usr/new/dir/toolbox.2")).unwrap(), Path::new("../bin/toolbox"));
    }

    #[test]
    fn toolbxs_refusals_word_for_word() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let err = |s: Spec| apply(r, &s).unwrap_err().0;
        let symlinks = "failed to create symlinks for Container Device Interface for NVIDIA";
        assert_eq!(err(hooks(&["nvidia-cdi-hook", "create-symlinks", "--link"])), symlinks);
        assert_eq!(err(hooks(&["nvidia-cdi-hook", "create-symlinks", "--link", "a::relative"])), symlinks);
        assert_eq!(err(hooks(&["nvidia-cdi-hook", "create-symlinks", "--link", "foo"])), symlinks);
        assert_eq!(err(hooks(&["nvidia-cdi-hook", "create-symlinks", "--link", "foo::bar::baz"])), symlinks);
        let invalid_hook = "invalid hook in Container Device Interface for NVIDIA";
        let named = |name: &str, path: &str| {
            spec(&format!(
                r#"{{"containerEdits":{{"hooks":[{{"hookName":"{name}","path":"{path}","args":["nvidia-cdi-hook","create-symlinks","--link","a::/b"]}}]}}}}"#
            ))
        };
        assert_eq!(err(named("invalid", "/usr/bin/nvidia-cdi-hook")), invalid_hook);
        assert_eq!(err(named("createContainer", "")), invalid_hook);
        apply(r, &named("createRuntime", "/usr/bin/nvidia-cdi-hook")).unwrap();
        assert!(std::fs::symlink_metadata(r.join("b")).is_err(), "another stage is the runtime's");
        let mounts = |h: &str, c: &str| {
            spec(&format!(
                r#"{{"containerEdits":{{"mounts":[{{"hostPath":"{h}","containerPath":"{c}"}}]}}}}"#
            ))
        };
        let invalid_mount = "invalid mount in Container Device Interface for NVIDIA";
        assert_eq!(err(mounts("", "/tmp")), invalid_mount);
        assert_eq!(err(mounts("/tmp", "")), invalid_mount);
        apply(r, &mounts("/non/existent/path", "/non/existent/path")).unwrap();
        assert!(!r.join("non").exists(), "a source the host lacks is skipped, nothing made");
        // Unknown tools and subcommands are skipped.
        apply(r, &hooks(&["unknown", "create-symlinks", "--link", "toolbox::/usr/bin/toolbox.1"])).unwrap();
        apply(r, &hooks(&["nvidia-cdi-hook", "unknown"])).unwrap();
        assert!(!r.join("usr/bin/toolbox.1").exists());
    }

    #[test]
    fn a_missing_file_is_nothing_to_do_and_a_bad_one_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cdi-nvidia.json");
        apply_file(dir.path(), &file, true).unwrap();
        std::fs::write(&file, "").unwrap();
        let load = "failed to load Container Device Interface for NVIDIA";
        assert_eq!(apply_file(dir.path(), &file, true).unwrap_err().0, load);
        std::fs::write(&file, "This is not JSON\n").unwrap();
        assert_eq!(apply_file(dir.path(), &file, true).unwrap_err().0, load);
    }

    #[test]
    fn the_linker_configuration_in_toolbxs_words_without_repeats() {
        if std::process::Command::new("ldconfig").arg("--version").output().is_err()
            || crate::sys::getuid() != 0
        {
            eprintln!("SKIPPED: needs ldconfig on PATH and root (ldconfig -r chroots)");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc/ld.so.conf.d")).unwrap();
        std::fs::write(r.join("etc/ld.so.conf"), "include /etc/ld.so.conf.d/*.conf\n").unwrap();
        apply(r, &hooks(&["nvidia-cdi-hook", "update-ldcache"])).unwrap();
        assert!(!r.join("etc/ld.so.conf.d").join(LD_CONF).exists(), "no folder, no file");
        assert!(!r.join("etc/ld.so.cache").exists(), "-N: no cache where the image had none");
        std::fs::write(r.join("etc/ld.so.cache"), "").unwrap();
        let s = hooks(&[
            "nvidia-cdi-hook",
            "update-ldcache",
            "--folder",
            "/usr/lib",
            "--folder",
            "/usr/lib64",
            "--folder",
            "/usr/lib",
        ]);
        apply(r, &s).unwrap();
        assert!(std::fs::metadata(r.join("etc/ld.so.cache")).unwrap().len() > 0, "a cache there is rebuilt");
        assert_eq!(
            std::fs::read_to_string(r.join("etc/ld.so.conf.d").join(LD_CONF)).unwrap(),
            "# Written by Toolbx\n# https://containertoolbx.org/\n\n/usr/lib\n/usr/lib64\n"
        );
    }
}
