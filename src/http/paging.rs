//! `page` / `page_size` query parameters, parsed once for every listing.

use super::AppError;

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
