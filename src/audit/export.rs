//! The audit log as CSV (the `csv` crate writes it): every row the filters select, newest
//! first, read a chunk at a time so a long log streams in flat memory; UTF-8 with a BOM so
//! Excel reads accents. The `meta` column is the stored JSON text, as hashed.

use chrono::SecondsFormat;
use futures_util::Stream;
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, DatabaseConnection, QueryOrder, QuerySelect};

use super::chain::{AuditLog, AuditRow};
use super::entity::Column;
use super::query::{AuditQuery, actor_of};
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::state::AppState;

/// Rows read per query while streaming the CSV.
const EXPORT_CHUNK: u64 = 500;

const CSV_HEADER: [&str; 9] = [
    "seq",
    "at",
    "action",
    "actor_type",
    "actor_id",
    "entity_type",
    "entity_id",
    "ip",
    "meta",
];

/// A CSV writer as the export writes: CRLF line ends, fields quoted only when they hold the
/// delimiter, a quote or a line break.
fn writer_with(delimiter: u8) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new())
}

#[cfg(test)]
fn writer() -> csv::Writer<Vec<u8>> {
    writer_with(b',')
}

/// How the rows of a chunk become CSV records (the portal's office format reads names, so it
/// may query the database).
pub type RenderRows = std::sync::Arc<
    dyn Fn(
            DatabaseConnection,
            Vec<AuditRow>,
        ) -> futures_util::future::BoxFuture<'static, Result<Vec<Vec<String>>, AppError>>
        + Send
        + Sync,
>;

/// A CSV layout: its header, its delimiter and how rows are written.
#[derive(Clone)]
pub struct CsvFormat {
    pub header: Vec<String>,
    pub delimiter: u8,
    pub render: RenderRows,
}

impl CsvFormat {
    /// The API's layout: the stored fields, RFC 3339 UTC times, `,`.
    pub fn machine() -> Self {
        Self {
            header: CSV_HEADER.iter().map(|h| (*h).to_owned()).collect(),
            delimiter: b',',
            render: std::sync::Arc::new(|_, rows| {
                Box::pin(async move { Ok(rows.iter().map(|r| row_fields(r).to_vec()).collect()) })
            }),
        }
    }
}

fn row_fields(row: &AuditRow) -> [String; 9] {
    let (actor_type, actor_id) = actor_of(row);
    [
        row.seq.to_string(),
        row.timestamp.to_rfc3339_opts(SecondsFormat::Micros, true),
        row.action.clone(),
        actor_type.to_owned(),
        actor_id.map(|a| a.to_string()).unwrap_or_default(),
        row.entity_type.clone().unwrap_or_default(),
        row.entity_id.clone().unwrap_or_default(),
        row.ip.clone().unwrap_or_default(),
        row.meta_json.clone(),
    ]
}

fn csv_error(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(format!("audit CSV: {e}"))
}

/// Where the CSV stream is.
enum Export {
    Start,
    /// Rows with a `seq` below this one are still to come.
    Below(i64),
    Done,
}

async fn next_chunk(
    db: &DatabaseConnection,
    cond: &Condition,
    format: &CsvFormat,
    at: Export,
) -> Result<Option<(Vec<u8>, Export)>, AppError> {
    let mut out = writer_with(format.delimiter);
    let mut select = AuditLog::find().filter(cond.clone());
    let mut bom = false;
    match at {
        Export::Done => return Ok(None),
        Export::Start => {
            bom = true;
            out.write_record(&format.header).map_err(csv_error)?;
        }
        Export::Below(seq) => select = select.filter(Column::Seq.lt(seq)),
    }
    let rows = select
        .order_by_desc(Column::Seq)
        .limit(EXPORT_CHUNK)
        .all(db)
        .await?;
    let next = match rows.last() {
        Some(last) if rows.len() as u64 == EXPORT_CHUNK => Export::Below(last.seq),
        _ => Export::Done,
    };
    for record in (format.render)(db.clone(), rows).await? {
        out.write_record(record).map_err(csv_error)?;
    }
    let mut bytes = out.into_inner().map_err(csv_error)?;
    if bom {
        // The BOM, so Excel reads the file as UTF-8.
        bytes.splice(0..0, "\u{feff}".bytes());
    }
    Ok(Some((bytes, next)))
}

/// The CSV of every row these filters select, as a stream of chunks (ADMIN/DEV); the filters
/// are checked before the first chunk.
pub fn csv_chunks(
    state: &AppState,
    admin: &AuthUser,
    q: &AuditQuery,
    format: CsvFormat,
) -> Result<impl Stream<Item = Result<Vec<u8>, AppError>> + use<>, AppError> {
    admin.require_admin()?;
    let cond = q.condition(admin.org, state.settings.timezone)?;
    let db = state.db.clone();
    Ok(futures_util::stream::unfold(
        (db, cond, format, Some(Export::Start)),
        |(db, cond, format, at)| async move {
            let at = at?;
            match next_chunk(&db, &cond, &format, at).await {
                Ok(Some((bytes, next))) => Some((Ok(bytes), (db, cond, format, Some(next)))),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "audit CSV export failed");
                    Some((Err(e), (db, cond, format, None)))
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One field as the export writes it.
    fn csv_field(out: &mut String, value: &str) {
        let mut w = writer();
        w.write_record([value]).unwrap();
        let line = String::from_utf8(w.into_inner().unwrap()).unwrap();
        out.push_str(line.strip_suffix("\r\n").unwrap());
    }

    #[test]
    fn csv_quoting() {
        let mut s = String::new();
        csv_field(&mut s, "plain");
        s.push('|');
        csv_field(&mut s, "a,b");
        s.push('|');
        csv_field(&mut s, "say \"hi\"");
        s.push('|');
        csv_field(&mut s, "two\nlines");
        assert_eq!(s, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"");
    }

    #[test]
    fn the_header_and_an_empty_field_are_written_as_before() {
        let mut w = writer();
        w.write_record(CSV_HEADER).unwrap();
        w.write_record(["1", "", "x", "system", "", "", "", "", "{}"])
            .unwrap();
        assert_eq!(
            String::from_utf8(w.into_inner().unwrap()).unwrap(),
            "seq,at,action,actor_type,actor_id,entity_type,entity_id,ip,meta\r\n1,,x,system,,,,,{}\r\n"
        );
    }
}
