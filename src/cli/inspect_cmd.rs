//! `mtbx inspect IMAGE [--arch A]`: skopeo inspect --override-arch, done
//! natively and strictly (a single-arch image of another architecture is an
//! error, not a silent substitute).

use std::io::Write;

use anyhow::Result;
use clap::Args;

use super::exit;
use super::image_args::ImageArgs;
use super::output::{self, Format};
use crate::image::inspect;
use crate::image::resolved::human_size;

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    image: ImageArgs,
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
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(args: InspectArgs) -> Result<i32> {
    let (req, regs) = args.image.resolve(args.tags)?;
    let opts = args.image.options();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let spin = output::spinner(format!("inspecting {}", crate::text::escaped(&args.image.image)));
    let result = rt.block_on(inspect::inspect(&req, &regs, &opts));
    tracing::debug!("inspect done");
    // Nothing left to do on the runtime: do not wait for its blocking
    // threads (a DNS lookup thread lingers) to be torn down.
    rt.shutdown_background();
    tracing::debug!("runtime down");
    spin.finish_and_clear();
    let found = result?;
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
            Format::Table => {
                platforms.iter().try_for_each(|p| writeln!(out, "{}", crate::text::escaped(p)))?
            }
        }
        return Ok(exit::OK);
    }
    let report = found.report();
    if args.format == Format::Json {
        output::print_json(&report)?;
        return Ok(exit::OK);
    }
    // Every value may come from the image (tags, platform fields, labels):
    // escaped, so that no escape sequence of theirs reaches the terminal.
    let field = |out: &mut dyn Write, k: &str, v: &str| {
        writeln!(out, "{:<15}{}", format!("{k}:"), crate::text::escaped(v))
    };
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
