//! `mtbx assemble FILE` ([`crate::toolbox::assemble`]): missing boxes are
//! created, differing ones recreated (after a question, or with -y), the
//! others left alone; `--rm` removes the file's boxes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Parser};

use super::exit;
use crate::toolbox::assemble::{self, BoxDef, LABEL_ASSEMBLE};
use crate::toolbox::ops::{ContainerInfo, Toolbox};

#[derive(Debug, Args)]
pub struct AssembleArgs {
    /// The TOML file; each table is a box, named by its table.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Remove the file's boxes instead.
    #[arg(long)]
    rm: bool,
    /// Registry flags for the images the boxes are created from.
    #[command(flatten)]
    registry: super::image_args::RegistryArgs,
}

/// What became of one box.
enum Outcome {
    Created,
    Recreated(Vec<&'static str>),
    Unchanged,
    Skipped(Vec<&'static str>),
    Removed,
    Absent,
}

pub fn assemble(args: AssembleArgs, assumeyes: bool) -> anyhow::Result<i32> {
    let boxes = assemble::parse(&assemble::read(&args.file)?, &args.file)?;
    let tb = Toolbox::new()?;
    let existing: BTreeMap<String, ContainerInfo> =
        tb.containers()?.into_iter().map(|c| (c.name().to_string(), c)).collect();
    let yes = assumeyes;
    let mut failed = false;
    for (name, def) in &boxes {
        let shown = crate::text::escaped(name);
        let outcome = if args.rm {
            match existing.get(name) {
                Some(_) => {
                    tb.remove(name, true)?;
                    Outcome::Removed
                }
                None => Outcome::Absent,
            }
        } else {
            match existing.get(name) {
                None => {
                    create(name, def, &args.registry, yes)?;
                    Outcome::Created
                }
                Some(c) => {
                    let recorded = assemble::recorded(c);
                    let differs = match &recorded {
                        Some(r) if r == def => Vec::new(),
                        Some(r) => r.differences(def),
                        None => vec!["not made by assemble"],
                    };
                    if differs.is_empty() {
                        Outcome::Unchanged
                    } else if yes || ask_recreate(&shown, &differs) {
                        tb.remove(name, true)?;
                        create(name, def, &args.registry, yes)?;
                        Outcome::Recreated(differs)
                    } else {
                        failed = true;
                        Outcome::Skipped(differs)
                    }
                }
            }
        };
        match outcome {
            Outcome::Created => println!("{shown}: created"),
            Outcome::Recreated(d) => println!("{shown}: recreated ({})", d.join(", ")),
            Outcome::Unchanged => println!("{shown}: as described"),
            Outcome::Skipped(d) => {
                println!("{shown}: differs ({}), left as it is: pass -y to recreate", d.join(", "))
            }
            Outcome::Removed => println!("{shown}: removed"),
            Outcome::Absent => println!("{shown}: not there"),
        }
    }
    Ok(if failed { exit::FAILED } else { exit::OK })
}

/// Create one box through create's own parser and command, with the
/// table recorded.
fn create(
    name: &str,
    def: &BoxDef,
    registry: &super::image_args::RegistryArgs,
    yes: bool,
) -> anyhow::Result<()> {
    let mut argv = def.create_argv(name);
    argv.extend(registry.to_args());
    let cli = super::Cli::try_parse_from(&argv).map_err(|e| {
        crate::error::BadInput(format!(
            "box {}: {}",
            crate::text::escaped(name),
            e.render().to_string().lines().next().unwrap_or("invalid").trim_start_matches("error: ")
        ))
    })?;
    let super::Command::Create(args) = cli.command else { unreachable!("the arguments start with create") };
    super::containers_cmd::create_labelled(args, yes, vec![(LABEL_ASSEMBLE.to_string(), def.label())])?;
    Ok(())
}

fn ask_recreate(name: &str, differs: &[&str]) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{name} differs from its description ({}): recreate it? [y/N]: ", differs.join(", "));
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}
