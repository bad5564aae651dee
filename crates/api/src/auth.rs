//! The admin token that guards `POST /cutover`, the API's only write.
//!
//! Reads stay open; the one request that changes what every reader sees needs
//! `Authorization: Bearer <token>`. Without a configured token the endpoint is disabled (403
//! naming how to enable it); `reproject cutover` still works, through the database.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::AppState;

/// Shortest token accepted: 16 bytes, so that a guessable word is refused at start.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The admin token (its text never appears in `Debug` output or logs).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// Why a token was refused at start.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the admin token must be at least {MIN_TOKEN_BYTES} bytes (got {0})")]
    TooShort(usize),
    #[error("the admin token must be printable ASCII without spaces")]
    NotPrintable,
}

impl AdminToken {
    /// A token from its text (surrounding whitespace, e.g. a file's final newline, removed).
    pub fn new(text: &str) -> Result<AdminToken, TokenError> {
        let text = text.trim();
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable);
        }
        if text.len() < MIN_TOKEN_BYTES {
            return Err(TokenError::TooShort(text.len()));
        }
        Ok(AdminToken(text.to_owned()))
    }

    /// The token's text, to put in an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the token, in time that does not depend on where the two
    /// differ (only on the presented length), so that timing cannot find it byte by byte.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), presented)
    }
}

/// Compares two byte strings in time independent of their contents. Unequal lengths return
/// at once: a token's length is not its secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// The route layer of `POST /cutover`: runs before the body is read, so an unauthorised
/// client cannot make the server buffer anything.
pub(crate) async fn require_admin(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(token) = &state.admin_token else {
        // The command that works here is this binary's own (an application's binary has its
        // own name): the API runs in it.
        let bin = std::env::args_os()
            .next()
            .and_then(|a| std::path::Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "reproject".to_owned());
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "POST /cutover is disabled: this API was started without an admin token; start it with \
                 --admin-token-file FILE or REPROJECT_ADMIN_TOKEN to enable it, or run `{bin} cutover --projection V`"
            ),
        )
        .into_response();
    };
    let presented = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match presented.and_then(|v| v.strip_prefix(b"Bearer ")) {
        Some(p) if token.matches(p) => next.run(req).await,
        Some(_) => {
            tracing::warn!("cutover refused: wrong admin token");
            ApiError::new(StatusCode::UNAUTHORIZED, "wrong admin token").into_response()
        }
        None => ApiError::new(StatusCode::UNAUTHORIZED, "POST /cutover needs `Authorization: Bearer <admin token>`")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_and_refuse_short_ones() {
        let t = AdminToken::new("  0123456789abcdef\n").unwrap();
        assert!(t.matches(b"0123456789abcdef"));
        assert!(!t.matches(b"0123456789abcdeF"));
        assert!(!t.matches(b"0123456789abcde"));
        assert!(!t.matches(b""));
        assert!(matches!(AdminToken::new("short"), Err(TokenError::TooShort(5))));
        assert!(matches!(AdminToken::new("0123456789 abcdef"), Err(TokenError::NotPrintable)));
        assert_eq!(format!("{t:?}"), "AdminToken(***)");
    }
}
