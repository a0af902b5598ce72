//! Backup and restore (`nebula backup`, `nebula restore`): one portable archive for both
//! backends, so a server moves from SQLite to PostgreSQL (or back) with two commands.
//!
//! The table list, column types and foreign-key order come from the live schema, never from a
//! list kept here, so tables added by later migrations are backed up without a change.

mod db;
mod dump;
pub mod format;
mod restore;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use db::{Db, TableSchema};
pub use dump::backup;
pub use restore::{read_rows, restore};

/// The operator commands of this module.
#[derive(Debug, Parser)]
#[command(name = "nebula", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a consistent snapshot of the database (and of an fs:// media store) to a file,
    /// while the server runs.
    Backup {
        /// The archive to write (a tar file; replaced atomically).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Load a backup into an empty database of either backend.
    Restore {
        /// The archive `nebula backup` wrote.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, clap::Args)]
struct Target {
    /// As for the server: `sqlite://path/to/file.db` or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://nebula.db")]
    database_url: String,
    /// As for the server: `fs://dir` (its files are in the backup) or `s3://bucket`.
    #[arg(long, env = "MEDIA_STORE", default_value = "fs://./media")]
    media_store: String,
}

/// Runs `nebula backup|restore …` when those are the arguments, else `None` (the server).
pub async fn run_if_requested() -> Option<ExitCode> {
    let first = std::env::args().nth(1)?;
    if first != "backup" && first != "restore" {
        return None;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backup { out, target } => {
            backup(&target.database_url, &target.media_store, &out)
                .await
                .map(|m| {
                    let rows: u64 = m.tables.iter().map(|t| t.rows).sum();
                    format!(
                        "backed up {rows} rows of {} tables and {} media files (schema {}) to {}",
                        m.tables.len(),
                        m.media.len(),
                        m.schema_version,
                        out.display()
                    )
                })
        }
        Command::Restore { from, target } => {
            restore(&target.database_url, &target.media_store, &from)
                .await
                .map(|m| {
                    let rows: u64 = m.tables.iter().map(|t| t.rows).sum();
                    format!(
                        "restored {rows} rows of {} tables and {} media files (schema {}, from {} taken {})",
                        m.tables.len(),
                        m.media.len(),
                        m.schema_version,
                        m.source_backend,
                        m.created_at
                    )
                })
        }
    };
    Some(match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("nebula: {err:#}");
            ExitCode::FAILURE
        }
    })
}
