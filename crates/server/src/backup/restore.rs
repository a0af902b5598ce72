//! `nebula restore`: an archive from either backend into an empty database of either backend.
//!
//! Nothing is written until the whole archive checked out (every checksum, size and row
//! count); the rows then go in one transaction, in the target's foreign-key order.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail, ensure};

use super::db::Db;
use super::dump::HashingReader;
use super::format::{FORMAT, FORMAT_VERSION, MANIFEST, Manifest, Value, coerce};
use crate::media::StoreLocation;

/// Where an entry's bytes are in the archive, and what they hash to.
struct Located {
    offset: u64,
    size: u64,
    sha256: String,
    newlines: u64,
}

/// Restores `from` into `database_url`, which must hold no rows. Returns the manifest.
pub async fn restore(
    database_url: &str,
    media_store: &str,
    from: &Path,
) -> anyhow::Result<Manifest> {
    let (manifest, located) = verify(from)?;
    let latest = latest_migration(database_url);
    if manifest.schema_version > latest {
        bail!(
            "the backup's schema version {} is newer than this nebula's ({latest}): \
             restore it with a newer nebula",
            manifest.schema_version
        );
    }
    if manifest.schema_version != 0 && !known_migration(database_url, manifest.schema_version) {
        bail!(
            "the backup's schema version {} is not a migration this nebula knows",
            manifest.schema_version
        );
    }
    let media_dir = match StoreLocation::parse(media_store) {
        Ok(StoreLocation::Fs(dir)) => Some(dir),
        Ok(StoreLocation::S3 { .. }) if manifest.media.is_empty() => None,
        Ok(StoreLocation::S3 { .. }) => {
            bail!("the backup holds media files, which restore writes to an fs:// MEDIA_STORE only")
        }
        Err(reason) => bail!("MEDIA_STORE: {reason}"),
    };

    let mut db = Db::connect(database_url, true).await?;
    let current = db.schema_version().await?;
    if current > manifest.schema_version {
        bail!(
            "the database is already at schema version {current}, newer than the backup's ({}): \
             restore into a new, empty database",
            manifest.schema_version
        );
    }
    refuse_rows(&mut db).await?;
    migrate_to(&mut db, manifest.schema_version).await?;

    let names: Vec<String> = manifest.tables.iter().map(|t| t.name.clone()).collect();
    let existing = db.tables().await?;
    for name in &names {
        ensure!(
            existing.contains(name),
            "the backup's table {name} is not in this database's schema"
        );
    }
    let order = db.in_foreign_key_order(&names).await?;

    match db {
        Db::Sqlite(_) => db.execute("BEGIN IMMEDIATE").await?,
        Db::Postgres(_) => db.execute("BEGIN").await?,
    }
    // Again inside the transaction: nothing may have slipped in since the first look.
    refuse_rows(&mut db).await?;
    let mut archive = File::open(from)?;
    for name in &order {
        let Some(table) = manifest.tables.iter().find(|t| &t.name == name) else {
            continue;
        };
        let target = db.table_schema(name).await?;
        let columns: Vec<usize> = table
            .columns
            .iter()
            .map(|column| {
                target
                    .columns
                    .iter()
                    .position(|(c, _)| c == column)
                    .with_context(|| format!("column {name}.{column} is not in this schema"))
            })
            .collect::<anyhow::Result<_>>()?;
        let place = &located[&table.file.path];
        archive.seek(SeekFrom::Start(place.offset))?;
        let reader = BufReader::new((&mut archive).take(place.size));
        let mut rows = 0u64;
        // Lines are read whole before each insert: the archive is a plain file, and one row's
        // blocking read is short next to its insert.
        for line in reader.lines() {
            let line = line?;
            rows += 1;
            let raw: Vec<serde_json::Value> = serde_json::from_str(&line)
                .with_context(|| format!("{}: row {rows} is not a JSON array", table.file.path))?;
            ensure!(
                raw.len() == columns.len(),
                "{}: row {rows} has {} values for {} columns",
                table.file.path,
                raw.len(),
                columns.len()
            );
            let values = raw
                .into_iter()
                .zip(&columns)
                .map(|(json, &i)| coerce(Value::from_json(json)?, target.columns[i].1))
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("{}: row {rows}", table.file.path))?;
            db.insert(&target, &columns, values)
                .await
                .with_context(|| format!("cannot insert row {rows} of {name}"))?;
        }
        ensure!(
            rows == table.rows,
            "{name}: {rows} rows, the manifest says {}",
            table.rows
        );
    }
    db.reset_sequences().await?;
    if let Some(dir) = media_dir {
        restore_media(&manifest, &located, &mut archive, &dir)?;
    }
    db.execute("COMMIT").await?;
    Ok(manifest)
}

/// Each table's rows, by table name.
pub type Rows = BTreeMap<String, Vec<Vec<Value>>>;

/// Every row of a verified archive, by table (in the archive's encoding, not yet coerced to
/// any database's types): for tests and inspection; whole tables in memory.
pub fn read_rows(from: &Path) -> anyhow::Result<(Manifest, Rows)> {
    let (manifest, located) = verify(from)?;
    let mut archive = File::open(from)?;
    let mut tables = BTreeMap::new();
    for table in &manifest.tables {
        let place = &located[&table.file.path];
        archive.seek(SeekFrom::Start(place.offset))?;
        let mut rows = Vec::new();
        for line in BufReader::new((&mut archive).take(place.size)).lines() {
            let raw: Vec<serde_json::Value> = serde_json::from_str(&line?)?;
            rows.push(
                raw.into_iter()
                    .map(Value::from_json)
                    .collect::<anyhow::Result<Vec<_>>>()?,
            );
        }
        tables.insert(table.name.clone(), rows);
    }
    Ok((manifest, tables))
}

/// Reads the archive once: every entry hashed and located, checked against the manifest.
fn verify(from: &Path) -> anyhow::Result<(Manifest, BTreeMap<String, Located>)> {
    let file = File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut located = BTreeMap::new();
    let mut manifest = None;
    for entry in archive.entries().context("not a tar archive")? {
        let mut entry = entry.context("a damaged tar archive")?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path == MANIFEST {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            manifest = Some(
                serde_json::from_slice::<Manifest>(&bytes).context("manifest.json is damaged")?,
            );
            continue;
        }
        let offset = entry.raw_file_position();
        let size = entry.size();
        let mut reader = HashingReader::new(&mut entry);
        std::io::copy(&mut reader, &mut std::io::sink())?;
        let newlines = reader.newlines;
        located.insert(
            path,
            Located {
                offset,
                size,
                sha256: reader.hex(),
                newlines,
            },
        );
    }
    let manifest = manifest.context("the archive has no manifest.json: not a nebula backup")?;
    ensure!(
        manifest.format == FORMAT && manifest.format_version == FORMAT_VERSION,
        "unsupported backup format {} version {} (this nebula reads {FORMAT} {FORMAT_VERSION})",
        manifest.format,
        manifest.format_version
    );
    let listed = manifest
        .tables
        .iter()
        .map(|t| &t.file)
        .chain(&manifest.media);
    let mut count = 0;
    for entry in listed {
        count += 1;
        let found = located
            .get(&entry.path)
            .with_context(|| format!("{} is missing from the archive", entry.path))?;
        ensure!(
            found.size == entry.size && found.sha256 == entry.sha256,
            "checksum mismatch: {} is damaged (sha256 {}, the manifest says {})",
            entry.path,
            found.sha256,
            entry.sha256
        );
    }
    ensure!(
        count == located.len(),
        "the archive holds files its manifest does not list"
    );
    for table in &manifest.tables {
        let rows = located[&table.file.path].newlines;
        ensure!(
            rows == table.rows,
            "{}: {rows} rows, the manifest says {}",
            table.file.path,
            table.rows
        );
    }
    Ok((manifest, located))
}

async fn refuse_rows(db: &mut Db) -> anyhow::Result<()> {
    let mut filled = Vec::new();
    for table in db.tables().await? {
        if db.has_rows(&table).await? {
            filled.push(table);
        }
    }
    if !filled.is_empty() {
        bail!(
            "the database is not empty ({} hold rows): restore only into an empty database",
            filled.join(", ")
        );
    }
    Ok(())
}

fn migrator(database_url: &str) -> sqlx::migrate::Migrator {
    let mut migrator = if database_url.starts_with("sqlite:") {
        sqlx::migrate!("migrations/sqlite")
    } else {
        sqlx::migrate!("migrations/postgres")
    };
    // As the server does: the notification service's migrations may share the table.
    migrator.set_ignore_missing(true);
    migrator
}

fn latest_migration(database_url: &str) -> i64 {
    migrator(database_url)
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

fn known_migration(database_url: &str, version: i64) -> bool {
    migrator(database_url).iter().any(|m| m.version == version)
}

/// The schema exactly as the backup's: later migrations run when the server next starts, and
/// upgrade the restored rows like any other database's.
async fn migrate_to(db: &mut Db, version: i64) -> anyhow::Result<()> {
    match db {
        Db::Sqlite(c) => migrator("sqlite:").run_to(version, &mut *c).await,
        Db::Postgres(c) => migrator("postgres:").run_to(version, &mut *c).await,
    }
    .context("migrating the empty database failed")
}

fn restore_media(
    manifest: &Manifest,
    located: &BTreeMap<String, Located>,
    archive: &mut File,
    dir: &Path,
) -> anyhow::Result<()> {
    for entry in &manifest.media {
        let relative = entry
            .path
            .strip_prefix("media/")
            .context("a media entry outside media/")?;
        let relative = PathBuf::from(relative);
        ensure!(
            relative
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "unsafe media path {}",
            entry.path
        );
        let target = dir.join(&relative);
        if let Ok(existing) = File::open(&target) {
            let mut reader = HashingReader::new(existing);
            std::io::copy(&mut reader, &mut std::io::sink())?;
            ensure!(
                reader.hex() == entry.sha256,
                "{} exists with other content: restore into an empty media store",
                target.display()
            );
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let place = &located[&entry.path];
        archive.seek(SeekFrom::Start(place.offset))?;
        let partial = tempfile::NamedTempFile::new_in(target.parent().unwrap_or(dir))?;
        std::io::copy(
            &mut (&mut *archive).take(place.size),
            &mut partial.as_file(),
        )?;
        partial.as_file().sync_all()?;
        partial
            .persist(&target)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(())
}
