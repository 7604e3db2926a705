//! `mtbx inspect IMAGE [--arch A]`: skopeo inspect --override-arch, done
//! natively and strictly (a single-arch image of another architecture is an
//! error, not a silent substitute).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::exit;
use super::output::{self, Format};
use crate::arch::Arch;
use crate::inspect::{self, human_size, Request};
use crate::registries::Registries;
use crate::registry::{ErrorKind, Options};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image reference: registry/repo[:tag][@digest], or a short name that
    /// registries.conf resolves.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Architecture to select (any name `mtbx arch list` shows); default:
    /// the tag's architecture for toolbox images, else this host's.
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// Variant to select instead of the architecture's default (v6, v7, v8).
    #[arg(long, value_name = "VARIANT")]
    variant: Option<String>,
    /// OS to select (default: linux).
    #[arg(long, value_name = "OS")]
    os: Option<String>,
    /// Print the manifest exactly as the registry served it.
    #[arg(long, conflicts_with_all = ["config", "platforms"])]
    raw: bool,
    /// Print the selected image's config exactly as served.
    #[arg(long, conflicts_with = "platforms")]
    config: bool,
    /// Print only the platforms the image offers.
    #[arg(long)]
    platforms: bool,
    /// Also list the repository's tags (a request per page of tags).
    #[arg(long)]
    tags: bool,
    /// Verify TLS and require https (`--tls-verify=false` allows http).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// Credentials USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<String>,
    /// Auth file to use instead of the default ones.
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// registries.conf to use instead of the system's and user's files.
    #[arg(long, value_name = "FILE")]
    registries_conf: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// The exit code for an error kind (see README).
pub fn code_for(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::BadInput => exit::USAGE,
        ErrorKind::NotFound => exit::NOT_FOUND,
        ErrorKind::Auth => exit::AUTH,
        ErrorKind::Network => exit::NETWORK,
        ErrorKind::BadResponse => exit::FAILED,
    }
}

pub fn run(args: InspectArgs) -> Result<i32> {
    // Before the runtime and the spinner start threads.
    crate::registry::prefer_system_ca_bundle();
    let arch = match &args.arch {
        Some(a) => match Arch::parse(a) {
            Ok(a) => Some(a),
            Err(e) => return Ok(fail(&e.to_string(), ErrorKind::BadInput)),
        },
        None => None,
    };
    let regs = match Registries::load(args.registries_conf.as_deref()) {
        Ok(r) => r,
        Err(e) => return Ok(fail(&e.to_string(), ErrorKind::BadInput)),
    };
    let req = Request {
        image: args.image.clone(),
        arch,
        variant: args.variant.clone(),
        os: args.os.clone(),
        tags: args.tags,
    };
    let opts =
        Options { tls_verify: args.tls_verify, creds: args.creds.clone(), authfile: args.authfile.clone() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let spin = output::spinner(format!("inspecting {}", args.image));
    let result = rt.block_on(inspect::inspect(&req, &regs, &opts));
    tracing::debug!("inspect done");
    // Nothing left to do on the runtime: do not wait for its blocking
    // threads (a DNS lookup thread lingers) to be torn down.
    rt.shutdown_background();
    tracing::debug!("runtime down");
    spin.finish_and_clear();
    let found = match result {
        Ok(f) => f,
        Err(e) => return Ok(fail(&e.to_string(), e.kind())),
    };
    let mut out = std::io::stdout().lock();
    if args.raw {
        out.write_all(&found.top_bytes)?;
        return Ok(exit::OK);
    }
    if args.config {
        out.write_all(&found.config_bytes)?;
        return Ok(exit::OK);
    }
    if args.platforms {
        let platforms = found.platforms();
        match args.format {
            Format::Json => output::print_json(&platforms)?,
            Format::Table => platforms.iter().try_for_each(|p| writeln!(out, "{p}"))?,
        }
        return Ok(exit::OK);
    }
    let report = found.report();
    if args.format == Format::Json {
        output::print_json(&report)?;
        return Ok(exit::OK);
    }
    let field = |out: &mut dyn Write, k: &str, v: &str| writeln!(out, "{:<15}{v}", format!("{k}:"));
    field(&mut out, "Name", &found.image.to_string())?;
    field(&mut out, "Digest", &report.digest)?;
    let selected = if report.index_digest.is_some() {
        format!("{} (manifest {})", report.platform, report.manifest_digest)
    } else {
        format!("{} (single-platform image)", report.platform)
    };
    field(&mut out, "Platform", &selected)?;
    field(&mut out, "Platforms", &report.platforms.join(", "))?;
    field(&mut out, "Created", report.created.as_deref().unwrap_or("-"))?;
    field(
        &mut out,
        "Layers",
        &format!("{} ({} compressed)", report.layers.len(), human_size(report.compressed_size)),
    )?;
    if let Some(labels) = report.labels.as_ref().filter(|l| !l.is_empty()) {
        let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        field(&mut out, "Labels", &text.join(", "))?;
    }
    if let Some(tags) = &found.tags {
        field(&mut out, "Tags", &tags.join(", "))?;
    }
    Ok(exit::OK)
}

fn fail(msg: &str, kind: ErrorKind) -> i32 {
    super::report_error(&anyhow::anyhow!("{msg}"));
    code_for(kind)
}
