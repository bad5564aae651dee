//! The HTTP read API: current state from the active projection version (resolved per
//! request), time travel folded from the log, the cutover endpoint, the registry, and
//! Prometheus metrics.
//!
//! Invariant: the API never writes, except `POST /cutover`, which moves the active pointer
//! through `readmodel::cutover` and needs the admin token (`auth`).

mod admin;
mod auth;
mod error;
mod finality;
mod http;
mod pool;
mod read;
mod routes;
mod telemetry;
mod time_travel;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use auth::{AdminToken, TokenError, MIN_TOKEN_BYTES};
pub use error::ApiError;
pub use http::HttpLimits;
pub use pool::{Conn, Pool};
pub use routes::{router, router_with};
pub use telemetry::{ActiveGauge, ACTIVE_INFO, LAG_EVENTS, REQUESTS, REQUEST_SECONDS};

/// Shared state of the service.
pub struct AppState {
    /// Connections to the database holding the log and the read model.
    pub pool: Pool,
    /// The `reproject_active_projection_info` gauge (reporting only, never used to serve).
    pub active: ActiveGauge,
    /// Which `global_seq` offsets are final (time travel), kept by a background sampler.
    pub finality: finality::Finality,
    /// The token `POST /cutover` requires; `None` disables the endpoint.
    pub admin_token: Option<AdminToken>,
    /// The projections this build can fold (time travel), in the catalog's order.
    pub projections: Catalog,
    /// The family `GET /aggregate/{id}` serves without `?family=`; `None`: the one family with
    /// an active version (a request naming none where several are active is a 400 naming them).
    pub default_family: Option<String>,
    /// The type of the log's stream ids, read once (a log never changes it): how the API parses
    /// the `{id}` of a path.
    ids: tokio::sync::OnceCell<fold::IdKind>,
}

/// The projections a service knows, by trait object: time travel folds one aggregate at a
/// time with them, so a dynamic call per request costs nothing that matters.
pub type Catalog = Vec<&'static dyn fold::AnyProjection>;

impl AppState {
    /// The projection named `version`.
    pub fn projection(&self, version: &str) -> Option<&'static dyn fold::AnyProjection> {
        self.projections.iter().copied().find(|p| p.name() == version)
    }

    /// The family served when a request names none, if the service was given one.
    pub fn default_family(&self) -> Option<&str> {
        self.default_family.as_deref()
    }

    /// The type of the log's stream ids (read from the log on first use).
    pub async fn id_kind(&self) -> Result<fold::IdKind, ApiError> {
        let kind = self
            .ids
            .get_or_try_init(|| async {
                let conn = self.pool.get().await?;
                eventlog::id_kind(&conn).await.map_err(ApiError::from)
            })
            .await?;
        Ok(*kind)
    }

    /// Parses the `{id}` of a path as a stream id of the log's type.
    pub async fn parse_id(&self, text: &str) -> Result<fold::AggregateId, ApiError> {
        let kind = self.id_kind().await?;
        kind.parse(text).map_err(|e| ApiError::bad_request(format!("aggregate id {e}")))
    }
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The PostgreSQL holding `log` and `read`.
    pub database_url: String,
    /// Where to listen (port 0: any free port; the bound address goes to `ready`).
    pub listen: SocketAddr,
    /// Connections to PostgreSQL (each pipelines many concurrent requests).
    pub pool_size: usize,
    /// The token `POST /cutover` requires; `None` disables the endpoint (and then `listen`
    /// must be a loopback address).
    pub admin_token: Option<AdminToken>,
    /// Timeouts, connection cap and size limits of the HTTP layer.
    pub limits: HttpLimits,
    /// The projections the service can fold for time travel (see [`AppState::projections`]).
    pub projections: Catalog,
    /// The family served when a request names none (see [`AppState::default_family`]).
    pub default_family: Option<String>,
}

impl ApiConfig {
    /// A config with no admin token and the default limits.
    pub fn new(
        database_url: impl Into<String>,
        listen: SocketAddr,
        pool_size: usize,
        projections: Catalog,
    ) -> ApiConfig {
        ApiConfig {
            database_url: database_url.into(),
            listen,
            pool_size,
            admin_token: None,
            limits: HttpLimits::default(),
            projections,
            default_family: None,
        }
    }
}

/// Errors of serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to the database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error(
        "refusing to listen on {0} without an admin token: give --admin-token-file FILE or REPROJECT_ADMIN_TOKEN, \
         or listen on a loopback address"
    )]
    Unprotected(SocketAddr),
}

/// Connects the pool (`pool_size` connections, at least one) and builds the shared state.
/// Starts the finality sampler, which stops when the state is dropped.
pub async fn state(
    database_url: &str,
    pool_size: usize,
    admin_token: Option<AdminToken>,
    projections: Catalog,
) -> Result<Arc<AppState>, Error> {
    state_with(database_url, pool_size, admin_token, projections, None).await
}

/// [`state`] with the family served when a request names none.
pub async fn state_with(
    database_url: &str,
    pool_size: usize,
    admin_token: Option<AdminToken>,
    projections: Catalog,
    default_family: Option<String>,
) -> Result<Arc<AppState>, Error> {
    let pool = Pool::connect(database_url, pool_size).await?;
    Ok(state_on(pool, database_url, admin_token, projections, default_family))
}

/// The shared state over a connected `pool`; starts the finality sampler.
fn state_on(
    pool: Pool,
    database_url: &str,
    admin_token: Option<AdminToken>,
    projections: Catalog,
    default_family: Option<String>,
) -> Arc<AppState> {
    let state = Arc::new(AppState {
        pool,
        active: ActiveGauge::default(),
        finality: finality::Finality::default(),
        admin_token,
        projections,
        default_family,
        ids: tokio::sync::OnceCell::new(),
    });
    tokio::spawn(finality::run(Arc::downgrade(&state), database_url.to_owned()));
    state
}

/// Whether serving on `listen` with this token is allowed: a non-loopback address needs a
/// token (reads are open to anyone who can reach the port; the write must not be).
pub fn check_exposure(listen: SocketAddr, admin_token: Option<&AdminToken>) -> Result<(), Error> {
    if admin_token.is_none() && !listen.ip().is_loopback() {
        return Err(Error::Unprotected(listen));
    }
    Ok(())
}

/// Serves until `shutdown` resolves, then stops accepting and drains requests in flight (see
/// [`HttpLimits`]). Calls `ready` with the bound address once listening (useful with port 0).
pub async fn serve(
    config: &ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    check_exposure(config.listen, config.admin_token.as_ref())?;
    // A statement outliving its request would hold up the requests pipelined behind it.
    let pool = Pool::connect_with(&config.database_url, config.pool_size, Some(config.limits.request_timeout)).await?;
    let state = state_on(
        pool,
        &config.database_url,
        config.admin_token.clone(),
        config.projections.clone(),
        config.default_family.clone(),
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!(%addr, pool = config.pool_size, cutover = config.admin_token.is_some(), "api listening");
    ready(addr);
    http::serve(listener, router_with(state, &config.limits), config.limits.clone(), shutdown).await
}

/// A router with only `GET /metrics`, for processes that are not the API (the projectors), so
/// their counters and histograms can be scraped too. Installs the process's recorder.
pub fn metrics_router() -> axum::Router {
    telemetry::handle();
    axum::Router::new().route("/metrics", axum::routing::get(telemetry::render))
}

/// Serves [`metrics_router`] on `addr` in the background; returns the bound address.
pub async fn spawn_metrics_server(addr: SocketAddr) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })?;
    let bound = listener.local_addr().map_err(Error::Serve)?;
    // Built (and the recorder installed) before this returns: a series the caller registers
    // next, once (a counter at 0), must not go to no recorder while the task has not run yet.
    let router = metrics_router();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}
