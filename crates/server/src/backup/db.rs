//! One connection to either backend, and what backup and restore ask of it: the schema as the
//! live database describes it (no table list is written down here), typed rows out, rows in.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Column, Connection, Row, TypeInfo, ValueRef};
use uuid::Uuid;

use super::format::{ColumnType, Value};

/// sqlx's bookkeeping: recorded as the schema version, never copied.
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";
/// The server's migrations are numbered below this; the notification service's from 1001.
const SERVER_MIGRATIONS_BELOW: i64 = 1000;

/// Binds `$value` (of column type `$ty`) to `$query`; a NULL is bound with the column's type,
/// which PostgreSQL needs to accept it.
macro_rules! bind_value {
    ($query:expr, $value:expr, $ty:expr) => {
        match $value {
            Value::Null => match $ty {
                ColumnType::Int => $query.bind(None::<i64>),
                ColumnType::Float => $query.bind(None::<f64>),
                ColumnType::Bool => $query.bind(None::<bool>),
                ColumnType::Text => $query.bind(None::<String>),
                ColumnType::Bytes => $query.bind(None::<Vec<u8>>),
                ColumnType::Uuid => $query.bind(None::<Uuid>),
                ColumnType::Timestamp => $query.bind(None::<DateTime<Utc>>),
                ColumnType::Json => $query.bind(None::<sqlx::types::Json<serde_json::Value>>),
            },
            Value::Int(v) => $query.bind(v),
            Value::Float(v) => $query.bind(v),
            Value::Bool(v) => $query.bind(v),
            Value::Text(v) => $query.bind(v),
            Value::Bytes(v) => $query.bind(v),
            Value::Uuid(v) => $query.bind(v),
            Value::Timestamp(v) => $query.bind(v),
            Value::Json(v) => $query.bind(sqlx::types::Json(v)),
        }
    };
}

pub enum Db {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// A table's columns in their declared order, with the store's type of each.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<(String, ColumnType)>,
}

pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Db {
    pub async fn connect(url: &str, create: bool) -> anyhow::Result<Db> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("DATABASE_URL")?
                .create_if_missing(create)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            Ok(Db::Sqlite(
                SqliteConnection::connect_with(&options)
                    .await
                    .context("cannot open the SQLite database")?,
            ))
        } else {
            let options = PgConnectOptions::from_str(url).context("DATABASE_URL")?;
            Ok(Db::Postgres(
                PgConnection::connect_with(&options)
                    .await
                    .context("cannot connect to PostgreSQL")?,
            ))
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn execute(&mut self, sql: &str) -> anyhow::Result<()> {
        let statement = AssertSqlSafe(sql.to_owned());
        match self {
            Db::Sqlite(c) => sqlx::raw_sql(statement).execute(c).await.map(drop),
            Db::Postgres(c) => sqlx::raw_sql(statement).execute(c).await.map(drop),
        }
        .with_context(|| format!("{sql} failed"))
    }

    async fn strings(&mut self, sql: &str) -> anyhow::Result<Vec<String>> {
        let sql = AssertSqlSafe(sql.to_owned());
        Ok(match self {
            Db::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
            Db::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
        })
    }

    /// Every table of the store's schema except sqlx's own, by name.
    pub async fn tables(&mut self) -> anyhow::Result<Vec<String>> {
        let names = match self {
            Db::Sqlite(_) => {
                self.strings(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                )
                .await?
            }
            Db::Postgres(_) => {
                // Plain and partitioned tables, not the partitions of one (`messages` is
                // partitioned since migration 0018): its rows are read and written through
                // the parent, once, whichever partition holds them.
                self.strings(
                    "SELECT c.relname::text FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
                     AND NOT c.relispartition ORDER BY c.relname",
                )
                .await?
            }
        };
        Ok(names
            .into_iter()
            .filter(|name| name != MIGRATIONS_TABLE)
            .collect())
    }

    /// The highest server migration applied, 0 on a database never migrated.
    pub async fn schema_version(&mut self) -> anyhow::Result<i64> {
        let exists = match self {
            Db::Sqlite(_) => !self
                .strings("SELECT name FROM sqlite_master WHERE name = '_sqlx_migrations'")
                .await?
                .is_empty(),
            Db::Postgres(_) => !self
                .strings(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
                )
                .await?
                .is_empty(),
        };
        if !exists {
            return Ok(0);
        }
        let sql = format!(
            "SELECT COALESCE(MAX(version), 0) FROM {MIGRATIONS_TABLE} \
             WHERE success AND version < {SERVER_MIGRATIONS_BELOW}"
        );
        let sql = AssertSqlSafe(sql);
        Ok(match self {
            Db::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
            Db::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
        })
    }

    pub async fn table_schema(&mut self, table: &str) -> anyhow::Result<TableSchema> {
        let columns = match self {
            Db::Sqlite(c) => {
                let sql = format!("PRAGMA table_info({})", quote(table));
                let rows: Vec<SqliteRow> = sqlx::query(AssertSqlSafe(sql)).fetch_all(c).await?;
                rows.iter()
                    .map(|row| {
                        let name: String = row.try_get("name")?;
                        let declared: String = row.try_get("type")?;
                        Ok((name, sqlite_type(&declared)))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
            }
            Db::Postgres(c) => {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 \
                     ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(c)
                .await?;
                rows.into_iter()
                    .map(|(name, data_type)| {
                        let ty = postgres_type(&data_type).with_context(|| {
                            format!("{table}.{name}: type {data_type} is not supported")
                        })?;
                        Ok((name, ty))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
            }
        };
        if columns.is_empty() {
            bail!("table {table} does not exist");
        }
        Ok(TableSchema {
            name: table.to_owned(),
            columns,
        })
    }

    /// `tables` ordered so that every table comes after those its foreign keys reference.
    pub async fn in_foreign_key_order(&mut self, tables: &[String]) -> anyhow::Result<Vec<String>> {
        let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for table in tables {
            let referenced = match self {
                Db::Sqlite(c) => {
                    let sql = format!("SELECT \"table\" FROM pragma_foreign_key_list({})", {
                        format!("'{}'", table.replace('\'', "''"))
                    });
                    sqlx::query_scalar::<_, String>(AssertSqlSafe(sql))
                        .fetch_all(c)
                        .await?
                }
                Db::Postgres(c) => {
                    sqlx::query_scalar::<_, String>(
                        "SELECT p.relname::text FROM pg_constraint k \
                         JOIN pg_class c ON c.oid = k.conrelid \
                         JOIN pg_class p ON p.oid = k.confrelid \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE k.contype = 'f' AND n.nspname = current_schema() \
                         AND c.relname = $1",
                    )
                    .bind(table)
                    .fetch_all(c)
                    .await?
                }
            };
            let set = referenced
                .into_iter()
                .filter(|p| p != table && tables.contains(p))
                .collect();
            parents.insert(table.clone(), set);
        }
        let mut ordered: Vec<String> = Vec::with_capacity(tables.len());
        while ordered.len() < tables.len() {
            let ready: Vec<String> = tables
                .iter()
                .filter(|t| !ordered.contains(t))
                .filter(|t| parents[*t].iter().all(|p| ordered.contains(p)))
                .cloned()
                .collect();
            if ready.is_empty() {
                bail!("the foreign keys between tables form a cycle");
            }
            ordered.extend(ready);
        }
        Ok(ordered)
    }

    /// Whether `table` holds any row.
    pub async fn has_rows(&mut self, table: &str) -> anyhow::Result<bool> {
        let sql = AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM {} LIMIT 1) t",
            quote(table)
        ));
        let count: i64 = match self {
            Db::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
            Db::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
        };
        Ok(count > 0)
    }

    /// Calls `each` with every row of `table`, streamed (never the whole table in memory).
    pub async fn for_each_row(
        &mut self,
        table: &TableSchema,
        mut each: impl FnMut(Vec<Value>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let columns: Vec<String> = table.columns.iter().map(|(c, _)| quote(c)).collect();
        let sql = format!("SELECT {} FROM {}", columns.join(", "), quote(&table.name));
        let sql = AssertSqlSafe(sql);
        match self {
            Db::Sqlite(c) => {
                let mut rows = sqlx::query(sql).fetch(c);
                while let Some(row) = rows.try_next().await? {
                    each(sqlite_values(&row)?)?;
                }
            }
            Db::Postgres(c) => {
                let mut rows = sqlx::query(sql).fetch(c);
                while let Some(row) = rows.try_next().await? {
                    each(postgres_values(&row)?)?;
                }
            }
        }
        Ok(())
    }

    /// Inserts one row (`values` already coerced to the columns' types).
    pub async fn insert(
        &mut self,
        table: &TableSchema,
        columns: &[usize],
        values: Vec<Value>,
    ) -> anyhow::Result<()> {
        let names: Vec<String> = columns
            .iter()
            .map(|&i| quote(&table.columns[i].0))
            .collect();
        let marks: Vec<String> = (1..=columns.len())
            .map(|n| match self {
                Db::Sqlite(_) => "?".to_owned(),
                Db::Postgres(_) => format!("${n}"),
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&table.name),
            names.join(", "),
            marks.join(", ")
        );
        let sql = AssertSqlSafe(sql);
        let types = columns.iter().map(|&i| table.columns[i].1);
        match self {
            Db::Sqlite(c) => {
                let mut query = sqlx::query(sql);
                for (value, ty) in values.into_iter().zip(types) {
                    query = bind_value!(query, value, ty);
                }
                query.execute(c).await?;
            }
            Db::Postgres(c) => {
                let mut query = sqlx::query(sql);
                for (value, ty) in values.into_iter().zip(types) {
                    query = bind_value!(query, value, ty);
                }
                query.execute(c).await?;
            }
        }
        Ok(())
    }

    /// Moves every PostgreSQL sequence behind a serial or identity column past the column's
    /// highest value, so the next generated id does not collide with a restored one. (SQLite
    /// tracks AUTOINCREMENT through explicit inserts by itself.)
    pub async fn reset_sequences(&mut self) -> anyhow::Result<()> {
        let Db::Postgres(c) = self else {
            return Ok(());
        };
        let serials: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text, \
             pg_get_serial_sequence(quote_ident(table_name), column_name)::text \
             FROM information_schema.columns WHERE table_schema = current_schema() \
             AND (column_default LIKE 'nextval(%' OR is_identity = 'YES')",
        )
        .fetch_all(&mut *c)
        .await?;
        for (table, column, sequence) in serials {
            let Some(sequence) = sequence else { continue };
            let sql = format!(
                "SELECT setval($1::regclass, COALESCE((SELECT MAX({}) FROM {}), 0) + 1, false)",
                quote(&column),
                quote(&table)
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(sequence)
                .execute(&mut *c)
                .await?;
        }
        Ok(())
    }
}

/// SQLite's type affinity rules, reduced to the column types its store uses.
fn sqlite_type(declared: &str) -> ColumnType {
    let declared = declared.to_ascii_uppercase();
    if declared.contains("INT") {
        ColumnType::Int
    } else if declared.contains("CHAR") || declared.contains("CLOB") || declared.contains("TEXT") {
        ColumnType::Text
    } else if declared.contains("BLOB") || declared.is_empty() {
        ColumnType::Bytes
    } else if declared.contains("REAL") || declared.contains("FLOA") || declared.contains("DOUB") {
        ColumnType::Float
    } else if declared.contains("BOOL") {
        // NUMERIC affinity; sqlx stores `bool` as 0/1.
        ColumnType::Int
    } else {
        // Any other NUMERIC affinity: the server declares none; text keeps any value intact.
        ColumnType::Text
    }
}

fn postgres_type(data_type: &str) -> Option<ColumnType> {
    Some(match data_type {
        "smallint" | "integer" | "bigint" => ColumnType::Int,
        "real" | "double precision" => ColumnType::Float,
        "boolean" => ColumnType::Bool,
        "text" | "character varying" | "character" | "name" => ColumnType::Text,
        "bytea" => ColumnType::Bytes,
        "uuid" => ColumnType::Uuid,
        "timestamp with time zone" | "timestamp without time zone" => ColumnType::Timestamp,
        "json" | "jsonb" => ColumnType::Json,
        _ => return None,
    })
}

/// SQLite values by their storage class (SQLite is dynamically typed: the value decides).
fn sqlite_values(row: &SqliteRow) -> anyhow::Result<Vec<Value>> {
    (0..row.columns().len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(Value::Null);
            }
            let class = raw.type_info().name().to_owned();
            Ok(match class.as_str() {
                "INTEGER" => Value::Int(row.try_get_unchecked(i)?),
                "REAL" => Value::Float(row.try_get_unchecked(i)?),
                "TEXT" => Value::Text(row.try_get_unchecked(i)?),
                "BLOB" => Value::Bytes(row.try_get_unchecked(i)?),
                other => bail!("column {i}: unexpected SQLite storage class {other}"),
            })
        })
        .collect()
}

fn postgres_values(row: &PgRow) -> anyhow::Result<Vec<Value>> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let name = column.type_info().name().to_owned();
            let value = match name.as_str() {
                "INT2" => row
                    .try_get::<Option<i16>, _>(i)?
                    .map(|v| Value::Int(v.into())),
                "INT4" => row
                    .try_get::<Option<i32>, _>(i)?
                    .map(|v| Value::Int(v.into())),
                "INT8" => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
                "FLOAT4" => row
                    .try_get::<Option<f32>, _>(i)?
                    .map(|v| Value::Float(v.into())),
                "FLOAT8" => row.try_get::<Option<f64>, _>(i)?.map(Value::Float),
                "BOOL" => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
                    row.try_get::<Option<String>, _>(i)?.map(Value::Text)
                }
                "BYTEA" => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
                "UUID" => row.try_get::<Option<Uuid>, _>(i)?.map(Value::Uuid),
                "TIMESTAMPTZ" => row
                    .try_get::<Option<DateTime<Utc>>, _>(i)?
                    .map(Value::Timestamp),
                "TIMESTAMP" => row
                    .try_get::<Option<NaiveDateTime>, _>(i)?
                    .map(|t| Value::Timestamp(t.and_utc())),
                "JSON" | "JSONB" => row
                    .try_get::<Option<serde_json::Value>, _>(i)?
                    .map(Value::Json),
                other => bail!("column {}: type {other} is not supported", column.name()),
            };
            Ok(value.unwrap_or(Value::Null))
        })
        .collect()
}
