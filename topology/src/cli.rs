//! `sessionfleet topology ...`: check a file, show it (or one datacentre's chain), render the
//! ansible inventory. The binary parses arguments into [`TopologyCommand`] and prints what
//! [`run`] returns.

use std::path::PathBuf;

use crate::error::TopologyErrors;
use crate::model::Topology;
use crate::{inventory, show};

/// The `topology` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum TopologyCommand {
    /// Check a topology file: prints a one-line summary, or every mistake with file:line:column.
    Check {
        /// The topology file (TOML).
        file: PathBuf,
    },
    /// Show the fleet (datacentres, spokes, addresses, failover chains), or one datacentre.
    Show {
        /// The topology file (TOML).
        file: PathBuf,
        /// Show only this datacentre, with its expanded failover chain.
        #[arg(long, short = 'd', visible_alias = "datacenter")]
        datacentre: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the ansible inventory (INI) of the fleet.
    Inventory {
        /// The topology file (TOML).
        file: PathBuf,
    },
}

/// Why a `topology` subcommand could not produce its output.
#[derive(Debug, thiserror::Error)]
pub enum TopologyCliError {
    /// The file is unreadable or invalid; displays every mistake, one per line.
    #[error(transparent)]
    Invalid(#[from] TopologyErrors),
    /// `show --datacentre` named a datacentre the file does not have.
    #[error("{file}: no datacentre `{name}` (known: {known})")]
    UnknownDatacentre {
        /// The file shown.
        file: String,
        /// The name asked for.
        name: String,
        /// The file's datacentres, comma-separated.
        known: String,
    },
    /// Serialising to JSON failed (not expected for a valid topology).
    #[error("cannot render JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs `cmd` and returns the text to print (without a trailing newline).
pub fn run(cmd: &TopologyCommand) -> Result<String, TopologyCliError> {
    match cmd {
        TopologyCommand::Check { file } => Ok(show::summary(&Topology::load(file)?)),
        TopologyCommand::Show {
            file,
            datacentre: None,
            json,
        } => {
            let t = Topology::load(file)?;
            if *json {
                Ok(serde_json::to_string_pretty(&t)?)
            } else {
                Ok(show::overview(&t))
            }
        }
        TopologyCommand::Show {
            file,
            datacentre: Some(name),
            json,
        } => {
            let t = Topology::load(file)?;
            let Some(dc) = t.datacentre(name) else {
                let known: Vec<&str> = t.datacentres.iter().map(|d| d.name.as_str()).collect();
                return Err(TopologyCliError::UnknownDatacentre {
                    file: file.display().to_string(),
                    name: name.clone(),
                    known: known.join(", "),
                });
            };
            if *json {
                let view = show::DatacentreView {
                    datacentre: dc,
                    failover_chain: t.failover_chain(&dc.name),
                    links: t.link_settings_for(&dc.name),
                };
                Ok(serde_json::to_string_pretty(&view)?)
            } else {
                Ok(show::datacentre(&t, dc))
            }
        }
        TopologyCommand::Inventory { file } => Ok(inventory::render(
            &Topology::load(file)?,
            &file.display().to_string(),
        )),
    }
}
