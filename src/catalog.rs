//! The projections a binary knows: what the `reproject` binary registers for the bank, and what
//! an adopter's binary registers for its own read models, through the same entry point
//! ([`crate::main`]).
//!
//! Every driver is generic over [`Projection`]; a name from a flag or the registry becomes a
//! type here, once per command: each registered projection is stored behind [`Entry`], whose
//! methods are the generic drivers instantiated for it (one monomorphic copy each, no dynamic
//! call per event).

use std::future::Future;
use std::pin::Pin;

use fold::{AggregateId, AnyProjection, Projection};

use crate::cli::project::ProjectorArgs;

/// A boxed future, for the object-safe methods of [`Entry`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the CLI does with one registered projection, whatever its type: each method is a
/// generic driver instantiated for it.
pub trait Entry: Send + Sync {
    /// The projection behind a trait object (names, columns, one-aggregate folds).
    fn any(&self) -> &'static dyn AnyProjection;

    /// `reproject projector`: a live tail or a replay of the event store into this version.
    fn projector<'a>(
        &'a self,
        args: &'a ProjectorArgs,
        url: String,
        adaptive: Option<projector::AdaptiveConfig>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'a, anyhow::Result<String>>;

    /// `reproject --topic ... projector`: the same from a Kafka topic.
    #[cfg(feature = "kafka")]
    fn topic_projector<'a>(
        &'a self,
        args: &'a ProjectorArgs,
        url: String,
        topic: kafkalog::KafkaLog,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'a, anyhow::Result<String>>;

    /// `reproject projector --mode replay --store redis...`: the bulk replay of the event store
    /// into Redis.
    fn redis_replay(&self, run: RedisRun) -> BoxFuture<'_, redisstore::Result<redisstore::RedisReplayReport>>;

    /// Stores this fold's snapshot at a consistent cut (a tail boundary), a start for a
    /// rebuild into a fresh store.
    fn cut_snapshot(
        &self,
        url: String,
        cut: i64,
    ) -> BoxFuture<'_, redisstore::Result<redisstore::snapshot::CutSnapshotReport>>;

    /// Compares this version's rows in Redis with a fold of the log up to their positions.
    fn redis_verify<'a>(
        &'a self,
        client: &'a tokio_postgres::Client,
        redis_url: String,
    ) -> BoxFuture<'a, redisstore::Result<projector::LogVerifyReport>>;

    /// Compares this version's table with a fold of the log up to its positions.
    fn verify_against_log<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
    ) -> BoxFuture<'a, projector::Result<projector::LogVerifyReport>>;

    /// Re-folds one aggregate and writes its row back.
    fn repair<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
        aggregate_id: &'a AggregateId,
    ) -> BoxFuture<'a, projector::Result<projector::RepairReport>>;

    /// Stores snapshots of this fold every `every` versions, `workers` partitions at once.
    fn snapshot(
        &self,
        url: String,
        every: i32,
        workers: u32,
    ) -> BoxFuture<'_, projector::Result<projector::SnapshotReport>>;
}

/// A replay into Redis, as the flags give it (the projection is the entry's).
#[derive(Debug, Clone)]
pub struct RedisRun {
    pub database_url: String,
    pub redis_url: String,
    pub workers: usize,
    pub until: Option<i64>,
    pub held_limit: Option<usize>,
    pub from_snapshot: Option<i64>,
    /// After the bulk phase, catch up from the stored positions to the head.
    pub catch_up: bool,
    pub batch: usize,
}

/// A registered projection: its value, leaked once so that the API can hold `'static`
/// references to it (a catalog is built once per process).
struct Registered<P: Projection>(&'static P);

impl<P: Projection> Entry for Registered<P> {
    fn any(&self) -> &'static dyn AnyProjection {
        self.0
    }

    fn projector<'a>(
        &'a self,
        args: &'a ProjectorArgs,
        url: String,
        adaptive: Option<projector::AdaptiveConfig>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(crate::cli::project::run_projector(self.0.clone(), args, url, adaptive, stop))
    }

    #[cfg(feature = "kafka")]
    fn topic_projector<'a>(
        &'a self,
        args: &'a ProjectorArgs,
        url: String,
        topic: kafkalog::KafkaLog,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(crate::cli::project::run_topic_projector(self.0.clone(), args, url, topic, stop))
    }

    fn redis_replay(&self, run: RedisRun) -> BoxFuture<'_, redisstore::Result<redisstore::RedisReplayReport>> {
        let config = redisstore::RedisReplayConfig {
            workers: run.workers,
            until: run.until,
            held_limit: run.held_limit,
            from_snapshot: run.from_snapshot,
            ..redisstore::RedisReplayConfig::new(&run.database_url, &run.redis_url, self.0.clone())
        };
        let tail = redisstore::RedisTailConfig {
            database_url: run.database_url.clone(),
            redis_url: run.redis_url.clone(),
            projection: self.0.clone(),
            batch: run.batch,
            until: run.until,
        };
        Box::pin(async move {
            let mut report = redisstore::replay(&config).await?;
            if run.catch_up {
                report.catch_up = Some(redisstore::catch_up(&tail).await?);
            }
            Ok(report)
        })
    }

    fn cut_snapshot(
        &self,
        url: String,
        cut: i64,
    ) -> BoxFuture<'_, redisstore::Result<redisstore::snapshot::CutSnapshotReport>> {
        Box::pin(async move { redisstore::snapshot::take(&url, self.0, cut).await })
    }

    fn redis_verify<'a>(
        &'a self,
        client: &'a tokio_postgres::Client,
        redis_url: String,
    ) -> BoxFuture<'a, redisstore::Result<projector::LogVerifyReport>> {
        Box::pin(async move {
            let id = eventlog::id_kind(client).await?;
            let mut store = redisstore::RedisStore::open(&redis_url, redisstore::Layout::of(self.0)?, id).await?;
            redisstore::verify(client, &mut store, self.0).await
        })
    }

    fn verify_against_log<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
    ) -> BoxFuture<'a, projector::Result<projector::LogVerifyReport>> {
        Box::pin(projector::verify_against_log(client, self.0))
    }

    fn repair<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
        aggregate_id: &'a AggregateId,
    ) -> BoxFuture<'a, projector::Result<projector::RepairReport>> {
        Box::pin(projector::repair(client, self.0, aggregate_id))
    }

    fn snapshot(
        &self,
        url: String,
        every: i32,
        workers: u32,
    ) -> BoxFuture<'_, projector::Result<projector::SnapshotReport>> {
        let config = projector::SnapshotConfig {
            every,
            workers,
            progress: true,
            ..projector::SnapshotConfig::new(&url, self.0.clone())
        };
        Box::pin(async move { projector::build_snapshots(&config).await })
    }
}

/// The projections a binary serves, builds and checks, by version name.
///
/// ```no_run
/// # #[derive(Debug, Clone, Copy)] struct OrdersV1;
/// # impl reproject::Projection for OrdersV1 {
/// #     type Event = (); type State = S;
/// #     fn family(&self) -> &'static str { "orders" }
/// #     fn name(&self) -> &'static str { "orders_v1" }
/// #     fn decode(&self, t: &str, _: &reproject::Payload<'_>) -> Result<(), reproject::DecodeError> { Ok(()) }
/// #     fn apply(&self, _: Option<S>, _: &reproject::Envelope<()>) -> Result<S, reproject::ApplyError> { Ok(S { n: 0 }) }
/// # }
/// # #[derive(Debug, Clone, PartialEq, reproject::RowCodec)] struct S { n: i64 }
/// fn main() -> std::process::ExitCode {
///     reproject::main(reproject::Catalog::new().with(OrdersV1))
/// }
/// ```
#[derive(Default)]
pub struct Catalog {
    entries: Vec<Box<dyn Entry>>,
    default_family: Option<String>,
    lab: bool,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Registers `projection` (its version name must be new to the catalog).
    ///
    /// # Panics
    /// If a projection with the same version name is already registered: two folds under one
    /// name would make every registry lookup ambiguous.
    pub fn with<P: Projection>(mut self, projection: P) -> Catalog {
        let name = Projection::name(&projection);
        assert!(self.get(name).is_none(), "projection version {name} is registered twice");
        self.entries.push(Box::new(Registered(Box::leak(Box::new(projection)))));
        self
    }

    /// The family `GET /aggregate/{id}` serves when a request names none (default: the one
    /// family with an active version).
    pub fn default_family(mut self, family: &str) -> Catalog {
        self.default_family = Some(family.to_owned());
        self
    }

    /// Also offers the lab's commands (`demo`, `seed`, `produce`, `bench`, `lab`): the bank's
    /// generator, producer and benchmarks. The `reproject` binary's catalog has them.
    pub fn with_lab(mut self) -> Catalog {
        self.lab = true;
        self
    }

    /// Whether the lab's commands are offered.
    pub fn has_lab(&self) -> bool {
        self.lab
    }

    /// The registered projection named `version`.
    pub fn get(&self, version: &str) -> Option<&dyn Entry> {
        self.entries.iter().find(|e| e.any().name() == version).map(|e| e.as_ref())
    }

    /// The registered projection named `version`, or an error naming the registered ones.
    pub fn find(&self, version: &str) -> anyhow::Result<&dyn Entry> {
        self.get(version).ok_or_else(|| {
            anyhow::anyhow!("unknown projection version {version:?} (known: {})", self.names().join(", "))
        })
    }

    /// Every registered version name, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.any().name()).collect()
    }

    /// The projections behind trait objects, for the API.
    pub fn projections(&self) -> api::Catalog {
        self.entries.iter().map(|e| e.any()).collect()
    }

    /// The family served when a request names none, if set.
    pub fn default_family_name(&self) -> Option<&str> {
        self.default_family.as_deref()
    }
}

/// The `reproject` binary's catalog: the bank's accounts (v3, v4) and activity read models,
/// `accounts` served by default, with the lab's commands.
pub fn bank() -> Catalog {
    Catalog::new()
        .with(lab::bank::V3)
        .with(lab::bank::V4)
        .with(lab::activity::ActivityV1)
        .default_family("accounts")
        .with_lab()
}
