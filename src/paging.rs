//! `page` / `page_size` query parameters, parsed once for every listing, and the one shape of
//! a page in every answer.

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QuerySelect, Select};
use serde::Serialize;

use crate::error::AppError;

/// One page of a listing: `total` counts the matches on every page.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "{T}Page")]
pub struct Page<T> {
    pub total: u64,
    pub page: u64,
    pub page_size: u64,
    pub items: Vec<T>,
}

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 200;
/// Keeps OFFSET far inside i64, which the database drivers require.
pub const MAX_PAGE: i64 = 1_000_000;

/// A validated page request (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: u64,
    pub page_size: u64,
}

impl Paging {
    pub fn parse(page: Option<i64>, page_size: Option<i64>) -> Result<Self, AppError> {
        let page = match page {
            None => 1,
            Some(p) if (1..=MAX_PAGE).contains(&p) => p as u64,
            Some(_) => {
                return Err(AppError::Validation(format!(
                    "page: between 1 and {MAX_PAGE}"
                )));
            }
        };
        let page_size = match page_size {
            None => DEFAULT_PAGE_SIZE,
            Some(s) if (1..=MAX_PAGE_SIZE as i64).contains(&s) => s as u64,
            Some(_) => {
                return Err(AppError::Validation(format!(
                    "page_size: between 1 and {MAX_PAGE_SIZE}"
                )));
            }
        };
        Ok(Self { page, page_size })
    }

    /// Rows to skip before this page.
    pub fn offset(self) -> u64 {
        (self.page - 1).saturating_mul(self.page_size)
    }

    /// This page of `select` (ordered by the caller), and how many rows match in all.
    pub async fn fetch<E, C>(self, db: &C, select: Select<E>) -> Result<(u64, Vec<E::Model>), DbErr>
    where
        E: EntityTrait,
        E::Model: Sync,
        C: ConnectionTrait,
    {
        let total = select.clone().count(db).await?;
        let rows = select
            .limit(self.page_size)
            .offset(self.offset())
            .all(db)
            .await?;
        Ok((total, rows))
    }

    /// `items` as this page of `total` matches.
    pub fn page<T>(self, total: u64, items: Vec<T>) -> Page<T> {
        Page {
            total,
            page: self.page,
            page_size: self.page_size,
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(
            Paging::parse(None, None).unwrap(),
            Paging {
                page: 1,
                page_size: DEFAULT_PAGE_SIZE
            }
        );
        assert!(Paging::parse(Some(0), None).is_err());
        assert!(Paging::parse(Some(MAX_PAGE + 1), None).is_err());
        assert!(Paging::parse(None, Some(0)).is_err());
        assert!(Paging::parse(None, Some(MAX_PAGE_SIZE as i64 + 1)).is_err());
        assert_eq!(Paging::parse(Some(3), Some(10)).unwrap().page, 3);
    }
}
