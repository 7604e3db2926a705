//! Arguments every command that fetches an image takes (inspect, pull):
//! which platform, and how to reach and authenticate to the registry.

use std::path::PathBuf;

use clap::Args;

use crate::emu::arch::{Arch, UnknownArch};
use crate::image::inspect::Request;
use crate::image::registries_conf::{Registries, RegistriesError};
use crate::image::registry::Options;

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Image reference: registry/repo[:tag][@digest], a short name that
    /// registries.conf resolves, or an image in files: oci:DIR[:TAG],
    /// oci-archive:FILE[:TAG], docker-archive:FILE[:REF].
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Architecture to select (any name `mtbx arch list` shows); default:
    /// the tag's architecture for toolbox images, else this host's.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Variant to select instead of the architecture's default (v6, v7, v8).
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,
    /// OS to select (default: linux).
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How to reach and authenticate to a registry.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Verify TLS and require https (`--tls-verify=false` allows http).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Credentials USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// Auth file to use instead of the default ones.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// registries.conf to use instead of the system's and user's files.
    #[arg(long, value_name = "FILE")]
    pub registries_conf: Option<PathBuf>,
}

impl RegistryArgs {
    /// The same settings as command-line arguments, for a `mtbx pull`
    /// started on the user's behalf.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(v) = self.tls_verify {
            a.push(format!("--tls-verify={v}"));
        }
        if let Some(c) = &self.creds {
            a.extend(["--creds".into(), c.clone()]);
        }
        if let Some(f) = &self.authfile {
            a.extend(["--authfile".into(), f.display().to_string()]);
        }
        if let Some(f) = &self.registries_conf {
            a.extend(["--registries-conf".into(), f.display().to_string()]);
        }
        a
    }
}

impl ImageArgs {
    /// The request and the registries.conf it is resolved with: what both
    /// inspect and pull start from. Either failing is bad input.
    pub fn resolve(&self, tags: bool) -> anyhow::Result<(Request, Registries)> {
        let req = self.request(tags)?;
        let regs = self.registries()?;
        Ok((req, regs))
    }

    /// The inspect request these arguments describe.
    pub fn request(&self, tags: bool) -> Result<Request, UnknownArch> {
        let arch = self.arch.as_deref().map(Arch::parse).transpose()?;
        Ok(Request {
            image: self.image.clone(),
            arch,
            variant: self.variant.clone(),
            os: self.os.clone(),
            tags,
        })
    }

    /// Registry options.
    pub fn options(&self) -> Options {
        let r = &self.registry;
        Options { tls_verify: r.tls_verify, creds: r.creds.clone(), authfile: r.authfile.clone() }
    }

    /// registries.conf, from --registries-conf or the usual files.
    pub fn registries(&self) -> Result<Registries, RegistriesError> {
        Registries::load(self.registry.registries_conf.as_deref())
    }
}
