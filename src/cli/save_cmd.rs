//! `mtbx save IMAGE --arch A -o FILE`: one platform of an image, from a
//! registry, an OCI layout or an archive, as an OCI archive file.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::exit;
use super::image_args::ImageArgs;
use super::output::{self, Format};
use crate::pull::save;

#[derive(Debug, Args)]
pub struct SaveArgs {
    #[command(flatten)]
    image: ImageArgs,
    /// The OCI archive to write (replaced only once it is complete; use it
    /// as oci-archive:FILE).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// Output format of the result.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(args: SaveArgs) -> Result<i32> {
    let (req, regs) = args.image.resolve(false)?;
    let opts = args.image.options();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Ctrl-C, SIGTERM and SIGHUP end a save alike: the future is dropped,
    // which removes its temporary file.
    let (mut term, mut hup) = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        Ok::<_, std::io::Error>((signal(SignalKind::terminate())?, signal(SignalKind::hangup())?))
    })?;
    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} writing {msg} {bytes:>10} {bytes_per_sec:>12}")
                .expect("valid template"),
        );
        b.set_message(crate::text::quoted_path(&args.output));
        b
    };
    let on_bytes = |n: u64| bar.inc(n);
    let result = rt.block_on(async {
        tokio::select! {
            r = save::save(&req, &regs, &opts, &args.output, &on_bytes) => r.map_err(anyhow::Error::from),
            // Dropping the save removes its temporary file.
            _ = tokio::signal::ctrl_c() => Err(save::SaveError::Interrupted.into()),
            _ = term.recv() => Err(save::SaveError::Interrupted.into()),
            _ = hup.recv() => Err(save::SaveError::Interrupted.into()),
        }
    });
    rt.shutdown_background();
    bar.finish_and_clear();
    let saved = result?;
    if args.quiet {
        return Ok(exit::OK);
    }
    match args.format {
        Format::Json => output::print_json(&saved)?,
        Format::Table => eprintln!(
            "Saved {} ({}, manifest {}) to {} as tag {}: oci-archive:{}",
            crate::text::escaped(&saved.image),
            crate::text::escaped(&saved.platform),
            saved.manifest_digest,
            crate::text::quoted_path(&saved.path),
            crate::text::quoted(&saved.tag),
            crate::text::escaped(&saved.path.to_string_lossy())
        ),
    }
    Ok(exit::OK)
}
