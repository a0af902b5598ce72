//! `nebula backup`: one consistent snapshot of a running server's database, plus its media.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::db::Db;
use super::format::{FORMAT, FORMAT_VERSION, FileEntry, MANIFEST, Manifest, TableEntry};
use crate::media::StoreLocation;

/// Writes a backup of `database_url` (and of the media store, when it is a directory) to
/// `out`, atomically: the file appears complete or not at all.
pub async fn backup(database_url: &str, media_store: &str, out: &Path) -> anyhow::Result<Manifest> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let snapshot = Snapshot::take(database_url, media_store, &parent).await?;
    let partial = tempfile::Builder::new()
        .prefix(".nebula-backup-")
        .suffix(".tar.part")
        .tempfile_in(&parent)?;
    let mut file = BufWriter::new(partial.reopen()?);
    let manifest = snapshot.write_archive(&mut file)?;
    file.flush()?;
    partial.as_file().sync_all()?;
    partial
        .persist(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(manifest)
}

/// The database as of one instant, spooled to table files in a work directory, and where the
/// media files are: everything an archive is written from, with the database already released.
pub struct Snapshot {
    schema_version: i64,
    created_at: chrono::DateTime<chrono::Utc>,
    source_backend: String,
    tables: Vec<(PathBuf, TableEntry)>,
    media_dir: Option<PathBuf>,
    media_note: Option<String>,
    /// Holds the table files; removed when the snapshot is dropped.
    _work: tempfile::TempDir,
}

impl Snapshot {
    /// Reads every table in one transaction into files under a new directory in `work_in`.
    pub async fn take(
        database_url: &str,
        media_store: &str,
        work_in: &Path,
    ) -> anyhow::Result<Snapshot> {
        let work = tempfile::Builder::new()
            .prefix(".nebula-backup-")
            .tempdir_in(work_in)
            .with_context(|| format!("cannot create a work directory in {}", work_in.display()))?;
        let mut db = Db::connect(database_url, false).await?;
        // One snapshot for every read: a WAL reader sees the database as of its first read
        // while the server keeps writing; PostgreSQL's repeatable read does the same.
        match db {
            Db::Sqlite(_) => db.execute("BEGIN").await?,
            Db::Postgres(_) => {
                db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
            }
        }
        let schema_version = db.schema_version().await?;
        let created_at = crate::store::now();
        let tables = db.tables().await?;
        let tables = db.in_foreign_key_order(&tables).await?;
        let mut entries = Vec::with_capacity(tables.len());
        for (n, table) in tables.iter().enumerate() {
            let schema = db.table_schema(table).await?;
            let path = work.path().join(format!("{n}.jsonl"));
            let mut writer = HashingWriter::new(BufWriter::new(File::create(&path)?));
            let mut rows = 0u64;
            db.for_each_row(&schema, |values| {
                let json: Vec<serde_json::Value> = values
                    .iter()
                    .map(super::format::Value::to_json)
                    .collect::<anyhow::Result<_>>()
                    .with_context(|| format!("table {table}"))?;
                serde_json::to_writer(&mut writer, &json)?;
                writer.write_all(b"\n")?;
                rows += 1;
                Ok(())
            })
            .await
            .with_context(|| format!("cannot read table {table}"))?;
            let (size, sha256) = writer.finish()?;
            entries.push((
                path,
                TableEntry {
                    name: table.clone(),
                    columns: schema.columns.iter().map(|(c, _)| c.clone()).collect(),
                    rows,
                    file: FileEntry {
                        path: format!("tables/{table}.jsonl"),
                        size,
                        sha256,
                    },
                },
            ));
        }
        // Media files are written after the rows that name them were read, so every file a
        // snapshot's row refers to is on disk by then (a file newer than the snapshot is
        // harmless).
        let (media_dir, media_note) = match StoreLocation::parse(media_store) {
            Ok(StoreLocation::Fs(dir)) if dir.is_dir() => (Some(dir), None),
            Ok(StoreLocation::Fs(_)) => (None, None),
            Ok(StoreLocation::S3 { .. }) => (
                None,
                Some("media is in an S3 bucket: back the bucket up with its own tools".to_owned()),
            ),
            Err(reason) => anyhow::bail!("MEDIA_STORE: {reason}"),
        };
        db.execute("COMMIT").await?;
        Ok(Snapshot {
            schema_version,
            created_at,
            source_backend: db.kind().to_owned(),
            tables: entries,
            media_dir,
            media_note,
            _work: work,
        })
    }

    /// Writes the tar archive (tables, media files, manifest last) to `out`, front to back:
    /// `out` may be a file or a pipe to an upload (blocking writes; nothing is held whole).
    pub fn write_archive(self, out: impl Write) -> anyhow::Result<Manifest> {
        let mut archive = tar::Builder::new(out);
        let mtime = u64::try_from(self.created_at.timestamp()).unwrap_or(0);
        for (path, entry) in &self.tables {
            let file = File::open(path)?;
            append(&mut archive, &entry.file.path, entry.file.size, mtime, file)?;
        }
        let mut media = Vec::new();
        if let Some(dir) = &self.media_dir {
            for relative in media_files(dir)? {
                let Ok(file) = File::open(dir.join(&relative)) else {
                    continue; // removed since it was listed (an expired upload)
                };
                let size = file.metadata()?.len();
                let path = format!("media/{relative}");
                let mut reader = HashingReader::new(file.take(size));
                append(&mut archive, &path, size, mtime, &mut reader)?;
                media.push(FileEntry {
                    path,
                    size,
                    sha256: reader.hex(),
                });
            }
        }
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            schema_version: self.schema_version,
            source_backend: self.source_backend,
            created_at: self.created_at,
            tables: self.tables.into_iter().map(|(_, entry)| entry).collect(),
            media,
            media_note: self.media_note,
        };
        let json = serde_json::to_vec_pretty(&manifest)?;
        append(
            &mut archive,
            MANIFEST,
            json.len() as u64,
            mtime,
            json.as_slice(),
        )?;
        archive.into_inner()?.flush()?;
        Ok(manifest)
    }
}

fn append(
    archive: &mut tar::Builder<impl Write>,
    path: &str,
    size: u64,
    mtime: u64,
    data: impl Read,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    archive
        .append_data(&mut header, path, data)
        .with_context(|| format!("cannot add {path} to the archive"))
}

/// Every file under `dir`, as `/`-separated relative paths, sorted; object_store's staging
/// files (`name#N`, an upload still being written) are left out.
fn media_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(dir.join(&relative)) else {
            continue;
        };
        for entry in listing {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = relative.join(&name);
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && !name.contains('#') {
                let parts: Vec<String> = path
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                found.push(parts.join("/"));
            }
        }
    }
    found.sort();
    Ok(found)
}

pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(mut self) -> anyhow::Result<(u64, String)> {
        self.inner.flush()?;
        Ok((self.size, hex(&self.hasher.finalize())))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes what passes through it (and counts newlines, for the rows of a table file).
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    pub newlines: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            newlines: 0,
        }
    }

    pub fn hex(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.newlines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(n)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
