//! `mtbx images`: the images in podman's storage with the architecture
//! each is for (what `podman images` leaves out).

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::exit;
use super::output::{self, Format, Table};
use crate::image::resolved::human_size;
use crate::storage::{StorageConfig, Store};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Serialize)]
struct ImageRow {
    id: String,
    names: Vec<String>,
    platform: String,
    architecture: String,
    created: Option<String>,
    size: u64,
    digest: Option<String>,
}

pub fn run(args: ImagesArgs) -> Result<i32> {
    let store = Store::open(StorageConfig::for_current_user()?)?;
    let images = store.images()?;
    let rows: Vec<ImageRow> = images
        .into_iter()
        .map(|i| {
            let config = i.parsed_config();
            let platform = config.platform();
            ImageRow {
                id: i.record.id.clone(),
                names: i.record.names.clone(),
                platform: platform.display(),
                architecture: platform.arch(),
                created: i.record.created.clone(),
                size: i.size,
                digest: i.record.digest.clone(),
            }
        })
        .collect();
    if args.format == Format::Json {
        output::print_json(&rows)?;
        return Ok(exit::OK);
    }
    let mut t = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "ARCH", "CREATED", "SIZE"]);
    for r in &rows {
        let names: Vec<(String, String)> = if r.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            r.names.iter().map(|n| split_name(n)).collect()
        };
        for (repo, tag) in names {
            t.row(vec![
                repo,
                tag,
                r.id.chars().take(12).collect(),
                r.architecture.clone(),
                r.created.as_deref().map(|c| c.chars().take(10).collect()).unwrap_or_else(|| "-".into()),
                human_size(r.size),
            ]);
        }
    }
    print!("{}", t.render(output::color_stdout()));
    Ok(exit::OK)
}

/// `repo:tag` or `repo@digest` into its two columns.
fn split_name(name: &str) -> (String, String) {
    if let Some((repo, digest)) = name.split_once('@') {
        return (repo.to_string(), digest.chars().take(19).collect());
    }
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (name.to_string(), "<none>".into()),
    }
}
