//! A version's rows in Redis: the batch write (one script: rows, position, version guard,
//! fencing token), and the reads verify and the tests need.

use std::collections::HashMap;
use std::time::Duration;

use eventlog::{Position, RawEvent};
use fold::{AggregateId, IdKind, Projection, Row};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};

use crate::layout::{
    held_field, parse_position, position_text, raw_from_json, raw_json, row_from_fields, state_fields, Layout,
};
use crate::{Error, Result};

const WRITE: &str = include_str!("write.lua");
const FENCE: &str = include_str!("fence.lua");

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Applied: rows written, rows skipped by the version guard (the stored one was as new).
    Applied { written: u64, skipped: u64 },
    /// Refused whole, nothing changed: the partition's stored token is greater than the caller's.
    Fenced { stored: i64 },
}

/// One version's store in Redis, over one multiplexed connection.
#[derive(Clone)]
pub struct RedisStore {
    con: MultiplexedConnection,
    layout: Layout,
    id: IdKind,
    write: Script,
    fence: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("layout", &self.layout).field("id", &self.id).finish()
    }
}

/// Connects to `url` (no response timeout: a bulk partition is one long script call).
pub async fn connect(url: &str) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let config =
        AsyncConnectionConfig::new().set_connection_timeout(Some(Duration::from_secs(5))).set_response_timeout(None);
    Ok(client.get_multiplexed_async_connection_with_config(&config).await?)
}

impl RedisStore {
    /// The store of the version laid out by `layout`, in a log of `id` stream ids.
    pub async fn open(url: &str, layout: Layout, id: IdKind) -> Result<RedisStore> {
        Ok(RedisStore { con: connect(url).await?, layout, id, write: Script::new(WRITE), fence: Script::new(FENCE) })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Writes `rows` and moves `partition`'s position to `position` (if given), in one atomic
    /// script call, as the holder of fencing token `token`.
    pub async fn write_batch<P: Projection>(
        &mut self,
        projection: &P,
        partition: u32,
        token: i64,
        position: Option<Position>,
        rows: &[Row<P::State>],
    ) -> Result<Written> {
        self.write_with_held(projection, partition, token, position, rows, &[], &[]).await
    }

    /// [`RedisStore::write_batch`], also adding the events `held` (read before their
    /// predecessor) to the partition's held events and removing `released` (`(id, version)` of
    /// held events applied since), in the same script call.
    #[allow(clippy::too_many_arguments)]
    pub async fn write_with_held<P: Projection>(
        &mut self,
        projection: &P,
        partition: u32,
        token: i64,
        position: Option<Position>,
        rows: &[Row<P::State>],
        held: &[RawEvent],
        released: &[(AggregateId, i32)],
    ) -> Result<Written> {
        let mut call = self.write.prepare_invoke();
        call.key(self.layout.positions()).key(self.layout.fence(partition)).key(self.layout.held(partition));
        call.arg(token).arg(partition).arg(position.map(position_text).unwrap_or_default());
        call.arg(held.len()).arg(released.len());
        for e in held {
            call.arg(held_field(&e.aggregate_id, e.version)).arg(raw_json(e).to_string());
        }
        for (id, version) in released {
            call.arg(held_field(id, *version));
        }
        for row in rows {
            call.key(self.layout.row(&row.aggregate_id));
            let fields = state_fields(projection, row);
            call.arg(row.aggregate_version).arg(row.applied_seq).arg(fields.len());
            for (name, value) in fields {
                call.arg(name).arg(value);
            }
        }
        let out: Vec<i64> = call.invoke_async(&mut self.con).await?;
        match out.as_slice() {
            [1, written, skipped] => Ok(Written::Applied { written: *written as u64, skipped: *skipped as u64 }),
            [0, stored] => Ok(Written::Fenced { stored: *stored }),
            other => Err(Error::BadData(format!("the write script answered {other:?}"))),
        }
    }

    /// The events held in `partition`, as stored with the batches.
    pub async fn held(&mut self, partition: u32) -> Result<Vec<RawEvent>> {
        let stored: HashMap<String, String> =
            redis::cmd("HGETALL").arg(self.layout.held(partition)).query_async(&mut self.con).await?;
        stored
            .values()
            .map(|json| {
                serde_json::from_str(json)
                    .ok()
                    .and_then(|j| raw_from_json(&j, self.id))
                    .ok_or_else(|| Error::BadData(format!("held event {json}")))
            })
            .collect()
    }

    /// Raises `partition`'s fencing token to `token` (see `fence.lua`); `Err(Fenced)` when a
    /// greater one is stored.
    pub async fn raise_fence(&mut self, partition: u32, token: i64) -> Result<()> {
        let out: Vec<i64> = self
            .fence
            .prepare_invoke()
            .key(self.layout.fence(partition))
            .arg(token)
            .invoke_async(&mut self.con)
            .await?;
        match out.as_slice() {
            [1, _] => Ok(()),
            [0, stored] => Err(Error::Fenced { partition, token, stored: *stored }),
            other => Err(Error::BadData(format!("the fence script answered {other:?}"))),
        }
    }

    /// The stored position of every partition `0..partitions` (the start where none is stored).
    pub async fn positions(&mut self, partitions: u32) -> Result<Vec<Position>> {
        let stored: HashMap<u32, String> =
            redis::cmd("HGETALL").arg(self.layout.positions()).query_async(&mut self.con).await?;
        (0..partitions).map(|p| stored.get(&p).map_or(Ok(Position::START), |t| parse_position(t))).collect()
    }

    /// A field of the version's meta hash.
    pub async fn meta(&mut self, field: &str) -> Result<Option<String>> {
        Ok(redis::cmd("HGET").arg(self.layout.meta()).arg(field).query_async(&mut self.con).await?)
    }

    /// Sets a field of the meta hash unless it is set; returns the stored value.
    pub async fn meta_set_once(&mut self, field: &str, value: &str) -> Result<String> {
        let _: i64 =
            redis::cmd("HSETNX").arg(self.layout.meta()).arg(field).arg(value).query_async(&mut self.con).await?;
        self.meta(field).await?.ok_or_else(|| Error::BadData(format!("meta field {field} vanished")))
    }

    /// One aggregate's row.
    pub async fn row<P: Projection>(&mut self, projection: &P, id: &AggregateId) -> Result<Option<Row<P::State>>> {
        let fields: HashMap<String, String> =
            redis::cmd("HGETALL").arg(self.layout.row(id)).query_async(&mut self.con).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        row_from_fields(projection, id.clone(), &fields, self.id).map(Some)
    }

    /// Every row of the version (SCAN over its row keys, then HGETALL in pipelines of 1,000).
    pub async fn load_all_rows<P: Projection>(&mut self, projection: &P) -> Result<Vec<Row<P::State>>> {
        let prefix = self.layout.row_prefix();
        let keys = self.row_keys().await?;
        let mut rows = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1_000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("HGETALL").arg(key);
            }
            let all: Vec<HashMap<String, String>> = pipe.query_async(&mut self.con).await?;
            for (key, fields) in chunk.iter().zip(all) {
                if fields.is_empty() {
                    continue;
                }
                let id = self.id.parse(&key[prefix.len()..]).map_err(|e| Error::BadData(format!("key {key}: {e}")))?;
                rows.push(row_from_fields(projection, id, &fields, self.id)?);
            }
        }
        rows.sort_by(|a, b| a.aggregate_id.cmp(&b.aggregate_id));
        Ok(rows)
    }

    /// The keys of every row of the version.
    pub async fn row_keys(&mut self) -> Result<Vec<String>> {
        let pattern = format!("{}*", self.layout.row_prefix());
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut self.con)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Sets one field of one row as it is (no guard, no script): for tests that damage a row.
    pub async fn set_field(&mut self, id: &AggregateId, field: &str, value: &str) -> Result<()> {
        let _: i64 =
            redis::cmd("HSET").arg(self.layout.row(id)).arg(field).arg(value).query_async(&mut self.con).await?;
        Ok(())
    }

    /// The server's `used_memory` (INFO memory), in bytes.
    pub async fn used_memory(&mut self) -> Result<u64> {
        used_memory(&mut self.con).await
    }

    /// Deletes every key of the version (rows, positions, fences, meta).
    pub async fn drop_version(&mut self) -> Result<u64> {
        let mut keys = self.row_keys().await?;
        keys.push(self.layout.positions());
        let partitions: u32 = self.meta("partitions").await?.and_then(|p| p.parse().ok()).unwrap_or(0);
        keys.extend((0..partitions).map(|p| self.layout.held(p)));
        keys.push(self.layout.meta());
        let mut deleted = 0u64;
        for chunk in keys.chunks(1_000) {
            let n: u64 = redis::cmd("UNLINK").arg(chunk).query_async(&mut self.con).await?;
            deleted += n;
        }
        Ok(deleted)
    }

    /// The connection, for commands this type does not wrap.
    pub fn connection(&mut self) -> &mut MultiplexedConnection {
        &mut self.con
    }
}

/// `used_memory` from `INFO memory`.
pub async fn used_memory(con: &mut MultiplexedConnection) -> Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(con).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::BadData("INFO memory has no used_memory".into()))
}

/// Checks that `url` is a Redis URL a client can use (without connecting).
pub fn check_url(url: &str) -> Result<()> {
    redis::Client::open(url).map(|_| ()).map_err(Error::from)
}
