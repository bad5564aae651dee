//! The route table, and JSON answers for paths and methods that match no route.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::{admin, read, telemetry, time_travel, AppState};

/// The service's routes over `state`. Installs the metrics recorder if this process has none.
pub fn router(state: Arc<AppState>) -> Router {
    telemetry::handle();
    Router::new()
        .route("/aggregate/{id}", get(read::current))
        .route("/aggregate/{id}/as-of", get(time_travel::as_of))
        .route("/cutover", post(admin::cutover))
        .route("/projections", get(admin::projections))
        .route("/metrics", get(admin::metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn(telemetry::track))
        .with_state(state)
}

async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

/// Parses an aggregate id from the path: a positive 64-bit integer.
pub(crate) fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("aggregate id must be a positive integer, got {text:?}")))
}
