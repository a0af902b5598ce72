//! Backup and restore (`nebula backup`, `nebula restore`): one portable archive for both
//! backends, so a server moves from SQLite to PostgreSQL (or back) with two commands.
//!
//! The table list, column types and foreign-key order come from the live schema, never from a
//! list kept here, so tables added by later migrations are backed up without a change.

mod db;
mod dump;
pub mod format;
pub mod remote;
mod restore;

use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand};

pub use db::{Db, TableSchema};
pub use dump::{Snapshot, backup};
pub use restore::{read_rows, restore};

use crate::media::S3Settings;
use remote::{Bucket, Location};

/// The operator commands of this module.
#[derive(Debug, Parser)]
#[command(name = "nebula", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a consistent snapshot of the database (and of an fs:// media store) to a file or
    /// to S3-compatible object storage, while the server runs.
    Backup {
        /// The archive to write: a local tar file (replaced atomically), an object
        /// `s3://bucket/path/name.tar`, or a prefix `s3://bucket/path` under which a new
        /// `nebula-<UTC time>.tar` is created.
        #[arg(long)]
        out: String,
        /// After a successful backup to an `s3://` prefix, delete all but the newest N
        /// `nebula-….tar` backups under it.
        #[arg(long, env = "BACKUP_KEEP", value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// Load a backup into an empty database of either backend.
    Restore {
        /// The archive `nebula backup` wrote: a local file, an object `s3://bucket/…/x.tar`,
        /// or a prefix `s3://bucket/path` (its newest `nebula-….tar`).
        #[arg(long)]
        from: String,
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
    /// As for the server's media store: the S3 endpoint for `s3://` backups (unset: AWS).
    #[arg(long, env = "S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    #[arg(long, env = "S3_ACCESS_KEY_ID", hide_env_values = true)]
    s3_access_key_id: Option<String>,
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
}

impl Target {
    fn s3(&self) -> S3Settings {
        S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
        }
    }
}

/// Runs `nebula backup|restore …` when those are the arguments, else `None` (the server).
pub async fn run_if_requested() -> Option<ExitCode> {
    let first = std::env::args().nth(1)?;
    if first != "backup" && first != "restore" {
        return None;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backup { out, keep, target } => run_backup(&out, keep, &target).await,
        Command::Restore { from, target } => run_restore(&from, &target).await,
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

async fn run_backup(out: &str, keep: Option<u32>, target: &Target) -> anyhow::Result<String> {
    let (manifest, written, pruned) = match Location::parse(out)? {
        Location::File(path) => {
            if keep.is_some() {
                bail!("--keep (BACKUP_KEEP) needs --out s3://bucket/prefix");
            }
            let manifest = backup(&target.database_url, &target.media_store, &path).await?;
            (manifest, path.display().to_string(), Vec::new())
        }
        Location::S3 { bucket, key } => {
            if keep.is_some() && key.ends_with(".tar") {
                bail!(
                    "--keep (BACKUP_KEEP) needs a prefix, not one object: --out s3://{bucket}/prefix"
                );
            }
            let store = Bucket::open(&target.s3(), &bucket)?;
            // The table files are spooled locally (the database is read in one short
            // transaction); the archive itself goes straight to the bucket.
            let snapshot = Snapshot::take(
                &target.database_url,
                &target.media_store,
                &std::env::temp_dir(),
            )
            .await?;
            let object = Bucket::new_key(&key, crate::store::now());
            let manifest = store.upload(snapshot, &object).await?;
            let pruned = match keep {
                Some(keep) => store.prune(&key, keep as usize).await?,
                None => Vec::new(),
            };
            (manifest, format!("s3://{bucket}/{object}"), pruned)
        }
    };
    let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
    let mut summary = format!(
        "backed up {rows} rows of {} tables and {} media files (schema {}) to {written}",
        manifest.tables.len(),
        manifest.media.len(),
        manifest.schema_version,
    );
    if !pruned.is_empty() {
        summary.push_str(&format!(
            "\ndeleted {} older backups: {}",
            pruned.len(),
            pruned.join(", ")
        ));
    }
    Ok(summary)
}

async fn run_restore(from: &str, target: &Target) -> anyhow::Result<String> {
    let (manifest, source) = match Location::parse(from)? {
        Location::File(path) => (
            restore(&target.database_url, &target.media_store, &path).await?,
            path.display().to_string(),
        ),
        Location::S3 { bucket, key } => {
            let store = Bucket::open(&target.s3(), &bucket)?;
            let object = store.resolve(&key).await?;
            let local = store.download(&object).await?;
            let manifest = restore(&target.database_url, &target.media_store, local.path()).await?;
            (manifest, format!("s3://{bucket}/{object}"))
        }
    };
    let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
    Ok(format!(
        "restored {rows} rows of {} tables and {} media files (schema {}, from {} taken {}) from {source}",
        manifest.tables.len(),
        manifest.media.len(),
        manifest.schema_version,
        manifest.source_backend,
        manifest.created_at
    ))
}
