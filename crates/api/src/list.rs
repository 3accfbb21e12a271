//! Pagination as Kuma does it: `?size=&offset=` in, `{total, items, next}` out.

use axum::http::{HeaderMap, Uri, header};
use meshplane_core::ValidationError;
use serde::Deserialize;

use crate::ApiError;

pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    pub size: Option<String>,
    pub offset: Option<String>,
}

impl PageParams {
    pub fn parse(&self) -> Result<(usize, usize), ApiError> {
        let mut errs = ValidationError::new();
        let size = match self.size.as_deref() {
            None | Some("") => DEFAULT_PAGE,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    errs.add("size", format!("must be a number between 1 and {MAX_PAGE}"));
                    0
                }
            },
        };
        let offset = match self.offset.as_deref() {
            None | Some("") => 0,
            Some(s) => s.parse::<usize>().unwrap_or_else(|_| {
                errs.add("offset", "must be a non-negative number");
                0
            }),
        };
        errs.into_result().map_err(ApiError::invalid)?;
        Ok((size, offset))
    }
}

/// The URL of the next page, or `None` when this page is the last.
pub fn next_url(
    headers: &HeaderMap,
    uri: &Uri,
    offset: usize,
    size: usize,
    total: usize,
) -> Option<String> {
    if offset + size >= total {
        return None;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    Some(format!(
        "http://{host}{}?offset={}&size={size}",
        uri.path(),
        offset + size
    ))
}
