//! The advisory locks of the projectors: a version's lock (held exclusively by its one writer,
//! shared by the processes of a replay's bulk phase), the registration lock, and the bulk
//! phase's per-partition locks. The tail and the replay both take them from here.

use fold::Projection;
use tokio_postgres::Client;

use crate::error::Error;
use crate::Result;

/// The advisory lock key of a version: held exclusively by its one writer (the live projector,
/// or a replay's catch-up), shared by the processes of a replay's bulk phase.
pub(crate) fn version_key<P: Projection>(projection: &P) -> String {
    format!("reproject:{}", projection.name())
}

/// Takes the per-version advisory lock that keeps one writer per version, waiting up to 30s
/// (a killed predecessor's session may take a moment to be reaped).
pub async fn lock_version<P: Projection>(client: &Client, projection: &P) -> Result<()> {
    lock_version_as(client, projection, "pg_advisory_lock").await
}

/// Takes the version's lock in shared mode (a replay's bulk phase), waiting up to 30 s for an
/// exclusive holder.
pub async fn lock_version_shared<P: Projection>(client: &Client, projection: &P) -> Result<()> {
    lock_version_as(client, projection, "pg_advisory_lock_shared").await
}

async fn lock_version_as<P: Projection>(client: &Client, projection: &P, function: &str) -> Result<()> {
    client.batch_execute("SET lock_timeout = '30s'").await?;
    let taken = client.execute(&format!("SELECT {function}(hashtext($1))"), &[&version_key(projection)]).await;
    client.batch_execute("SET lock_timeout = 0").await?;
    match taken {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            Err(Error::Locked(projection.name().to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Gives up the version's shared lock (taken for a replay's bulk phase), before the replay
/// waits for the version's lock exclusively.
pub(crate) async fn unlock_version_shared<P: Projection>(client: &Client, projection: &P) -> Result<()> {
    client.execute("SELECT pg_advisory_unlock_shared(hashtext($1))", &[&version_key(projection)]).await?;
    Ok(())
}

/// After the bulk phase: gives up the shared lock and tries to take the version exclusively,
/// to pass the barrier and catch up. False when another replay process of the version still
/// holds it (that process finishes the build; this one is done).
pub async fn take_over<P: Projection>(client: &Client, projection: &P) -> Result<bool> {
    let key = version_key(projection);
    client.execute("SELECT pg_advisory_unlock_shared(hashtext($1))", &[&key]).await?;
    let taken: bool = client.query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key]).await?.get(0);
    Ok(taken)
}

/// Takes the lock that serialises the registration of versions (registration creates the
/// version's table: two processes starting at once must not race on CREATE TABLE).
pub(crate) async fn lock_registration(client: &Client) -> Result<()> {
    client.execute("SELECT pg_advisory_lock(hashtext('reproject:register'))", &[]).await?;
    Ok(())
}

/// Releases the lock of [`lock_registration`].
pub(crate) async fn unlock_registration(client: &Client) -> Result<()> {
    client.execute("SELECT pg_advisory_unlock(hashtext('reproject:register'))", &[]).await?;
    Ok(())
}

/// The advisory lock of one partition of a version's bulk phase: held by the session that folds
/// it, so a partition is folded by one worker of one process at a time, and a process killed
/// mid-partition loses only that partition's work (its session ends, the lock with it, and
/// another process takes the partition; nothing of it was committed).
pub const PARTITION_LOCK: &str = "SELECT pg_try_advisory_lock(hashtext($1), $2)";
pub const PARTITION_UNLOCK: &str = "SELECT pg_advisory_unlock(hashtext($1), $2)";

/// The key of the partition locks of `version`'s bulk phase (with the partition as the second
/// key): one per process and partition, whichever log the replay reads.
pub fn bulk_lock_key(version: &str) -> String {
    format!("reproject:bulk:{version}")
}

/// The key of the partition locks of `projection`'s bulk phase ([`bulk_lock_key`]).
pub(crate) fn partition_key<P: Projection>(projection: &P) -> String {
    bulk_lock_key(projection.name())
}
