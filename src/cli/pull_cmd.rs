//! `mtbx pull IMAGE [--arch A]`: an image of any platform into podman's
//! own storage, so `podman images` and `podman run` see it.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::exit;
use super::image_args::ImageArgs;
use super::output::{self, Format};
use crate::image::resolved::human_size;
use crate::pull::{self, Observer, PlannedLayer};
use crate::storage::{Owner, StorageConfig, Store};

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    image: ImageArgs,
    /// Print only the image id.
    #[arg(short, long)]
    quiet: bool,
    /// Where to read the image: mtbx's own registry client and file
    /// reader, or skopeo's image proxy (needs skopeo; a cross-check).
    #[arg(long, value_enum, default_value_t)]
    source: Source,
    /// Output format of the result.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum Source {
    #[default]
    Registry,
    Proxy,
}

#[derive(Serialize)]
struct PullReport {
    id: String,
    name: String,
    platform: String,
    layers: usize,
    downloaded_layers: usize,
    downloaded_bytes: u64,
    storage_driver: &'static str,
    graph_root: String,
}

/// `assumeyes` is the global `-y`.
pub fn run(args: PullArgs, assumeyes: bool) -> Result<i32> {
    // Rootless: do the work as root of a user namespace mapped like
    // podman's, so layer files get the owners podman expects.
    if matches!(crate::storage::config::current_owner(), Owner::Rootless { .. })
        && crate::sys::userns::rootless_uid().is_none()
    {
        return Ok(crate::sys::userns::reexec()?);
    }
    let (req, regs) = args.image.resolve(false)?;
    let store = Arc::new(Store::open(StorageConfig::for_current_user()?)?);
    let opts = args.image.options();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let spin = if args.quiet {
        ProgressBar::hidden()
    } else {
        output::spinner(format!("resolving {}", args.image.image))
    };
    let kind = match args.source {
        Source::Registry => pull::SourceKind::Registry,
        Source::Proxy => pull::SourceKind::Proxy,
    };
    let prepared = rt.block_on(pull::prepare(&req, &regs, &opts, store.clone(), kind));
    spin.finish_and_clear();
    let prepared = prepared?;
    let plan = prepared.plan().clone();
    let size = plan.download_size();
    if plan.missing() > 0
        && !assumeyes
        && !args.quiet
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
    {
        eprint!("Download {} ({}, {})? [y/N]: ", plan.name, plan.platform, human_size(size));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            eprintln!("mtbx: pull cancelled; nothing was downloaded");
            return Ok(exit::FAILED);
        }
    }
    let bars = Arc::new(Bars::new(&plan.layers, size, args.quiet));
    let result = rt.block_on(prepared.run(bars.clone()));
    rt.shutdown_background();
    bars.finish();
    let id = result?;
    if args.quiet {
        println!("{id}");
        return Ok(exit::OK);
    }
    let report = PullReport {
        id: id.clone(),
        name: plan.name.clone(),
        platform: plan.platform.clone(),
        layers: plan.layers.len(),
        downloaded_layers: plan.missing(),
        downloaded_bytes: size,
        storage_driver: store.config().driver.name(),
        graph_root: store.config().graph_root.display().to_string(),
    };
    match args.format {
        Format::Json => output::print_json(&report)?,
        Format::Table => {
            let reused = plan.layers.len() - plan.missing();
            eprintln!(
                "Stored {} ({}): {} layers, {} downloaded ({}), {} already present",
                plan.name,
                plan.platform,
                plan.layers.len(),
                plan.missing(),
                human_size(size),
                reused
            );
            println!("{id}");
        }
    }
    Ok(exit::OK)
}

/// Per-layer bars and a total bar with throughput, on stderr when it is a
/// terminal.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    layers: Vec<ProgressBar>,
}

impl Bars {
    fn new(layers: &[PlannedLayer], total: u64, quiet: bool) -> Bars {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let multi = MultiProgress::with_draw_target(target);
        let style = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let layers = layers
            .iter()
            .map(|l| {
                let pb = ProgressBar::new(l.desc.size).with_style(style.clone());
                let short = l.desc.digest.trim_start_matches("sha256:").chars().take(12).collect::<String>();
                pb.set_prefix(short);
                pb
            })
            .collect();
        let total_style = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("#> ");
        let total = multi.add(ProgressBar::new(total).with_style(total_style));
        total.set_prefix("total");
        Bars { multi, total, layers }
    }

    fn finish(&self) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Observer for Bars {
    fn layer_started(&self, index: usize, _layer: &PlannedLayer) {
        self.multi.insert_before(&self.total, self.layers[index].clone());
    }

    fn layer_bytes(&self, index: usize, n: u64) {
        self.layers[index].inc(n);
        self.total.inc(n);
    }

    fn layer_done(&self, index: usize) {
        self.layers[index].finish();
    }
}
