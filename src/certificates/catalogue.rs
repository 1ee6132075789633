//! The catalogue as every role of the office sees it: search by name or CNPJ/CPF, filters by
//! status and expiry, and paging, all in SQL that SQLite and PostgreSQL answer the same way.

use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{Condition, DerivePartialModel, PaginatorTrait, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::document::{Cnpj, Cpf};
use super::entity::{Column, Entity as Certificates};
use super::pkcs12::CertificateInfo;
use crate::domain::OrgId;
use crate::error::AppError;
use crate::paging::{Page, Paging};

/// Folds text for searching: lower case, accents dropped ("JOSÉ" → "jose", "Ç" → "c"),
/// anything but letters and digits turned into single spaces.
pub fn search_key(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    // Compatibility decomposition also unfolds "º", ligatures and full-width forms.
    for c in text
        .to_lowercase()
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
    {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    out
}

/// The `name_search` column of a row: its display name, CN and responsible person, folded.
pub fn name_search(display: &str, info: Option<&CertificateInfo>) -> String {
    let mut text = display.to_owned();
    if let Some(info) = info {
        for extra in [&info.cn, &info.responsible_name].into_iter().flatten() {
            text.push(' ');
            text.push_str(extra);
        }
    }
    search_key(&text)
}

/// Which certificates a listing shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    /// Their file is in the folder (expired ones included).
    #[default]
    Available,
    /// What may be asked for now: in the folder, opened, not expired (the portal's
    /// "Disponíveis").
    Installable,
    /// Their file left the folder.
    Unavailable,
    /// Past their notAfter, available or not.
    Expired,
    /// Available, not expired, expiring within `within_days`.
    Expiring,
    /// Available, but its file could not be opened (wrong or missing password, corrupt file).
    Unreadable,
    All,
}

/// `GET /api/v1/certificados` query string, as sent.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub q: Option<String>,
    #[serde(default)]
    pub status: StatusFilter,
    pub within_days: Option<i64>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

pub const DEFAULT_WITHIN_DAYS: i64 = 30;
const MAX_QUERY_CHARS: usize = 200;
/// Fewer digits than this would match almost every CNPJ/CPF.
const MIN_DOCUMENT_DIGITS: usize = 3;
const MAX_WORDS: usize = 8;

/// A search, understood: words every match contains and, for a number, its digits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Search {
    words: Vec<String>,
    digits: Option<String>,
}

impl Search {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        if raw.chars().count() > MAX_QUERY_CHARS {
            return Err(AppError::Validation(format!(
                "q: at most {MAX_QUERY_CHARS} characters"
            )));
        }
        let words: Vec<String> = search_key(raw)
            .split(' ')
            .filter(|w| !w.is_empty())
            .take(MAX_WORDS)
            .map(str::to_owned)
            .collect();
        // "11.222.333/0001-81", "11222333000181" and "529.982" are numbers; "ACME 2026" is a name.
        let number: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && !".-/".contains(*c))
            .collect();
        let digits = (number.len() >= MIN_DOCUMENT_DIGITS
            && number.chars().all(|c| c.is_ascii_digit()))
        .then_some(number);
        Ok(Self { words, digits })
    }

    fn is_empty(&self) -> bool {
        self.words.is_empty() && self.digits.is_none()
    }

    fn condition(&self) -> Condition {
        // Rows written before `name_search` existed are matched on their lower-cased name.
        let mut folded = Condition::all();
        let mut legacy = Condition::all().add(Column::NameSearch.is_null());
        for w in &self.words {
            folded = folded.add(Column::NameSearch.contains(w));
            legacy =
                legacy.add(Expr::expr(Func::lower(Expr::col(Column::Name))).like(format!("%{w}%")));
        }
        let mut any = Condition::any();
        if !self.words.is_empty() {
            any = any.add(folded).add(legacy);
        }
        if let Some(d) = &self.digits {
            any = any
                .add(Column::Cnpj.contains(d))
                .add(Column::Cpf.contains(d));
        }
        any
    }
}

/// A listing request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub search: Search,
    pub status: StatusFilter,
    pub within: Duration,
    pub paging: Paging,
}

impl TryFrom<ListQuery> for Listing {
    type Error = AppError;

    fn try_from(q: ListQuery) -> Result<Self, AppError> {
        let within_days = q.within_days.unwrap_or(DEFAULT_WITHIN_DAYS);
        if !(1..=365).contains(&within_days) {
            return Err(AppError::Validation(
                "within_days: between 1 and 365".into(),
            ));
        }
        Ok(Self {
            search: Search::parse(q.q.as_deref().unwrap_or_default())?,
            status: q.status,
            within: Duration::days(within_days),
            paging: Paging::parse(q.page, q.page_size)?,
        })
    }
}

impl Listing {
    fn condition(&self, org: OrgId, now: DateTime<Utc>) -> Condition {
        let mut c = Condition::all().add(Column::OrgId.eq(org.0));
        c = match self.status {
            StatusFilter::Available => c.add(Column::IsAvailable.eq(true)),
            StatusFilter::Installable => c
                .add(Column::IsAvailable.eq(true))
                .add(Column::ParseError.is_null())
                .add(Column::NotAfter.gt(now)),
            StatusFilter::Unavailable => c.add(Column::IsAvailable.eq(false)),
            StatusFilter::Expired => c.add(Column::NotAfter.lt(now)),
            StatusFilter::Expiring => c
                .add(Column::IsAvailable.eq(true))
                .add(Column::NotAfter.gte(now))
                .add(Column::NotAfter.lte(now + self.within)),
            StatusFilter::Unreadable => c
                .add(Column::IsAvailable.eq(true))
                .add(Column::ParseError.is_not_null()),
            StatusFilter::All => c,
        };
        if !self.search.is_empty() {
            c = c.add(self.search.condition());
        }
        c
    }
}

/// What every role may see of a certificate: the columns below and nothing else, so a sealed
/// file, password or path cannot reach a response.
#[derive(Debug, Clone, DerivePartialModel)]
#[sea_orm(entity = "Certificates")]
struct Listed {
    id: Uuid,
    name: String,
    cn: Option<String>,
    cert_kind: Option<String>,
    cnpj: Option<String>,
    cpf: Option<String>,
    responsible_name: Option<String>,
    issuer: Option<String>,
    serial: Option<String>,
    not_before: Option<DateTimeUtc>,
    not_after: Option<DateTimeUtc>,
    sha1: Option<String>,
    key_algorithm: Option<String>,
    key_size: Option<i32>,
    is_available: bool,
    expiry_alert_days: Option<i32>,
    superseded_by: Option<Uuid>,
    parse_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CertificateView {
    pub id: Uuid,
    pub name: String,
    pub cn: Option<String>,
    pub cert_kind: Option<String>,
    pub cnpj: Option<String>,
    /// Check digits; `null` without a CNPJ. A bad number is shown and flagged.
    pub cnpj_valid: Option<bool>,
    pub cpf: Option<String>,
    pub cpf_valid: Option<bool>,
    pub responsible_name: Option<String>,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    pub sha1: Option<String>,
    pub key_algorithm: Option<String>,
    pub key_size: Option<i32>,
    pub is_available: bool,
    /// 30, 15, 7, or 0 once expired; set by the daily expiry check.
    pub expiry_alert_days: Option<i32>,
    /// The renewal that replaces this certificate.
    pub superseded_by: Option<Uuid>,
    /// Not superseded: the one to install for its CNPJ/CPF.
    pub is_default: bool,
    pub parse_error: Option<String>,
}

impl From<Listed> for CertificateView {
    fn from(c: Listed) -> Self {
        Self {
            cnpj_valid: c
                .cnpj
                .as_deref()
                .and_then(Cnpj::parse)
                .map(|n| n.is_valid()),
            cpf_valid: c.cpf.as_deref().and_then(Cpf::parse).map(|n| n.is_valid()),
            is_default: c.superseded_by.is_none(),
            id: c.id,
            name: c.name,
            cn: c.cn,
            cert_kind: c.cert_kind,
            cnpj: c.cnpj,
            cpf: c.cpf,
            responsible_name: c.responsible_name,
            issuer: c.issuer,
            serial: c.serial,
            not_before: c.not_before,
            not_after: c.not_after,
            sha1: c.sha1,
            key_algorithm: c.key_algorithm,
            key_size: c.key_size,
            is_available: c.is_available,
            expiry_alert_days: c.expiry_alert_days,
            superseded_by: c.superseded_by,
            parse_error: c.parse_error,
        }
    }
}

/// One page of the catalogue: certificates by name.
pub type CataloguePage = Page<CertificateView>;

/// One page of the office's catalogue.
pub async fn find_page<C: ConnectionTrait>(
    db: &C,
    org: OrgId,
    listing: &Listing,
    now: DateTime<Utc>,
) -> Result<CataloguePage, DbErr> {
    let select = Certificates::find().filter(listing.condition(org, now));
    let total = select.clone().count(db).await?;
    let items = select
        .order_by_asc(Column::Name)
        .order_by_asc(Column::Id)
        .limit(listing.paging.page_size)
        .offset(listing.paging.offset())
        .into_partial_model::<Listed>()
        .all(db)
        .await?
        .into_iter()
        .map(CertificateView::from)
        .collect();
    Ok(listing.paging.page(total, items))
}

/// One certificate of the office; `NotFound` for another office's.
pub async fn find_view<C: ConnectionTrait>(
    db: &C,
    org: OrgId,
    id: Uuid,
) -> Result<CertificateView, AppError> {
    Certificates::find_by_id(id)
        .filter(Column::OrgId.eq(org.0))
        .into_partial_model::<Listed>()
        .one(db)
        .await?
        .map(CertificateView::from)
        .ok_or_else(not_found)
}

pub fn not_found() -> AppError {
    AppError::NotFound("no such certificate in this office".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::web;

    #[test]
    fn search_keys_fold_case_accents_and_punctuation() {
        assert_eq!(search_key("JOSÉ DA SILVA"), "jose da silva");
        assert_eq!(search_key("Padaria Pão-Quente"), "padaria pao quente");
        assert_eq!(
            search_key("AÇÚCAR & CIA. LTDA:11222333000181"),
            "acucar cia ltda 11222333000181"
        );
        assert_eq!(search_key("  Ótica  Ñandú  "), "otica nandu");
        assert_eq!(search_key("1º ofício"), "1o oficio");
        assert_eq!(search_key("%_'\""), "");
    }

    #[test]
    fn names_carry_the_cn_and_the_responsible_person() {
        assert_eq!(name_search("EMPRESA X LTDA", None), "empresa x ltda");
        let pfx = include_bytes!("../../tests/fixtures/pfx/ecnpj-aes.pfx");
        let info = super::super::pkcs12::open(pfx, "1234").unwrap();
        assert_eq!(
            name_search("Empresa X", Some(&info)),
            "empresa x empresa x ltda 11222333000181 maria responsavel"
        );
    }

    #[test]
    fn numbers_search_documents_and_names_search_words() {
        let s = Search::parse("11.222.333/0001-81").unwrap();
        assert_eq!(s.digits.as_deref(), Some("11222333000181"));
        let s = Search::parse("11222333").unwrap();
        assert_eq!(s.digits.as_deref(), Some("11222333"));
        let s = Search::parse("José  Silva").unwrap();
        assert_eq!(s.words, ["jose", "silva"]);
        assert_eq!(s.digits, None);
        assert_eq!(Search::parse("ACME 2026").unwrap().digits, None);
        assert_eq!(Search::parse("12").unwrap().digits, None);
        assert!(Search::parse("").unwrap().is_empty());
        assert!(Search::parse(&"a".repeat(201)).is_err());
    }

    fn query(q: &str) -> Result<Listing, AppError> {
        let raw = web::Query::<ListQuery>::from_query(q)
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
        Listing::try_from(raw.into_inner())
    }

    #[test]
    fn listing_defaults_and_bounds() {
        let l = query("").unwrap();
        assert_eq!(
            (l.status, l.paging.page, l.paging.page_size),
            (StatusFilter::Available, 1, 50)
        );
        assert_eq!(l.within, Duration::days(30));
        let l = query("status=expiring&within_days=7&page=2&page_size=200").unwrap();
        assert_eq!(
            (l.status, l.paging.page, l.paging.page_size),
            (StatusFilter::Expiring, 2, 200)
        );
        for bad in [
            "page=1000001",
            "page=9223372036854775807",
            "page_size=0",
            "page_size=201",
            "page=0",
            "page=-1",
            "within_days=0",
            "within_days=366",
        ] {
            assert!(matches!(query(bad), Err(AppError::Validation(_))), "{bad}");
        }
        for bad in ["status=old", "page=x", "sort=name"] {
            assert!(matches!(query(bad), Err(AppError::BadRequest(_))), "{bad}");
        }
    }
}
