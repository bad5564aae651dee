//! The route table, and JSON answers for paths and methods that match no route.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::http::{bound_request, HttpLimits};
use crate::{admin, auth, read, telemetry, time_travel, AppState};

/// The service's routes over `state`, with the default [`HttpLimits`]. Installs the metrics
/// recorder if this process has none.
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, &HttpLimits::default())
}

/// The service's routes over `state`, with `limits` on request bodies, targets and headers.
pub fn router_with(state: Arc<AppState>, limits: &HttpLimits) -> Router {
    telemetry::handle();
    // The pool's reconnections (see `Pool::get`), at 0 until the first.
    metrics::counter!(eventlog::reconnect::RECONNECTS, "process" => "api").increment(0);
    let bounds = Arc::new(limits.clone());
    // The admin check is a route layer: it runs before the body is read.
    let cutover =
        post(admin::cutover).route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_admin));
    Router::new()
        .route("/aggregate/{id}", get(read::current))
        .route("/aggregate/{id}/as-of", get(time_travel::as_of))
        .route("/cutover", cutover)
        .route("/projections", get(admin::projections))
        .route("/metrics", get(admin::metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn(move |req, next| bound_request(bounds.clone(), req, next)))
        .layer(axum::middleware::from_fn(telemetry::track))
        .with_state(state)
}

async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}
