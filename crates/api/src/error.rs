//! Errors as JSON responses: `{"error": "message", ...details}`, 4xx for bad input, never a
//! 500 for it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The `Retry-After` of every 503, in seconds: about the time a restarting server or a
/// replaced connection takes to come back.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// An error response: a status and a JSON body `{"error": message, ...details}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The human-readable message, the body's `error` field.
    pub message: String,
    /// Extra fields merged into the body (an object, or null for none).
    pub details: serde_json::Value,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), details: serde_json::Value::Null }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the request is well formed but the state does not allow an answer.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 503: the service cannot answer now (no active version, database unreachable).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// Adds structured details (a JSON object) to the body.
    pub fn with(mut self, details: serde_json::Value) -> ApiError {
        self.details = details;
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let (Some(obj), serde_json::Value::Object(extra)) = (body.as_object_mut(), self.details) {
            obj.extend(extra);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // The database is away (or the service not ready): a client or load balancer may
            // try again shortly, and nothing is wrong with its request.
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"reproject admin\""),
            );
        }
        response
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> ApiError {
        use tokio_postgres::error::SqlState;
        // read.only_active_family(): a read that names no family where several are served.
        if let Some(db) = e.as_db_error().filter(|db| db.code().code() == "RPJ01") {
            return ApiError::bad_request(db.message().to_owned());
        }
        let missing = [SqlState::UNDEFINED_FUNCTION, SqlState::UNDEFINED_TABLE, SqlState::INVALID_SCHEMA_NAME];
        if e.code().is_some_and(|c| missing.contains(c)) {
            tracing::warn!(error = %e, "read model or log schema missing");
            return ApiError::unavailable(format!("this database has no read model or log yet: {e}"));
        }
        // A database failure is the service's problem, not the client's: 503 so that a load
        // balancer retries elsewhere (`Retry-After`). A lost connection is replaced on the
        // pool's next use: a WARN, the outage is the infrastructure's; anything else needs a
        // human.
        if eventlog::is_transient(&e) {
            // The pool logs the outage once; each request meeting it is only a 503.
            let reason = eventlog::reconnect::reason(&e);
            tracing::debug!(%reason, "database unreachable");
            return ApiError::unavailable(format!("database unavailable: {reason}"));
        }
        tracing::error!(error = %e, "database error");
        ApiError::unavailable(format!("database unavailable: {e}"))
    }
}

impl From<eventlog::Error> for ApiError {
    fn from(e: eventlog::Error) -> ApiError {
        match e {
            eventlog::Error::Db(e) => e.into(),
            eventlog::Error::Missing => ApiError::unavailable(e.to_string()),
            other => {
                tracing::error!(error = %other, "event log error");
                ApiError::unavailable(other.to_string())
            }
        }
    }
}

impl From<readmodel::Error> for ApiError {
    fn from(e: readmodel::Error) -> ApiError {
        match &e {
            readmodel::Error::UnknownVersion(version) => {
                ApiError::not_found(e.to_string()).with(json!({ "version": version }))
            }
            readmodel::Error::Lagging { version, active, lag_events, lagging, partitions } => {
                ApiError::conflict(e.to_string()).with(json!({
                    "version": version,
                    "active": active,
                    "lag_events": lag_events,
                    "lagging_partitions": lagging,
                    "partitions": partitions,
                }))
            }
            readmodel::Error::LockTimeout { version, waited_ms } => {
                ApiError::unavailable(e.to_string()).with(json!({ "version": version, "lock_timeout_ms": waited_ms }))
            }
            readmodel::Error::TableGone { version, table } => {
                ApiError::conflict(e.to_string()).with(json!({ "version": version, "table": table }))
            }
            readmodel::Error::WrongState { version, state, expected } => ApiError::conflict(e.to_string())
                .with(json!({ "version": version, "state": state, "expected": expected })),
            readmodel::Error::Db(_) | readmodel::Error::Log(_) => {
                tracing::error!(error = %e, "read model error");
                ApiError::unavailable(e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "read model error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}
