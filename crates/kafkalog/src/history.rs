//! One aggregate's history on a topic, for time travel. Kafka cannot look a key up: the
//! aggregate's partition (murmur2 of its key) is scanned from its start up to the requested
//! offset, a bounded scan. A log of deltas can only be folded from its very first record, so
//! the scan refuses, naming the lowest offset from which the partition is still complete, as
//! soon as it finds that compaction removed a record below the requested offset: never a
//! wrong answer.

use eventlog::RawEvent;

use crate::murmur2::partition_of;
use crate::record::decode;
use crate::source::scan_partition;
use crate::{Error, KafkaLog, Result};

/// What a scan found for one aggregate.
#[derive(Debug, Clone)]
pub struct History {
    pub partition: u32,
    /// The aggregate's events at offsets `<= through`, in partition order.
    pub events: Vec<RawEvent>,
    /// Records of the partition scanned.
    pub scanned: u64,
}

/// The events of `aggregate_id` at offsets up to `through` (inclusive) of its partition;
/// [`Error::Compacted`] when any record of the partition below that offset is gone.
pub async fn aggregate_history(log: &KafkaLog, aggregate_id: &fold::AggregateId, through: i64) -> Result<History> {
    let partitions = log.partitions()?;
    let key = aggregate_id.to_string();
    let id = aggregate_id.kind();
    let partition = partition_of(key.as_bytes(), partitions);
    let (low, high) = log.watermark(partition)?;
    let end = (through + 1).min(high);
    let mut history = History { partition, events: Vec::new(), scanned: 0 };
    // Gaps: the partition is complete from the offset after the last missing one.
    let mut expected = 0i64;
    let mut complete_from = low;
    if end > low {
        scan_partition(log, partition, end, |offset, k, v| {
            history.scanned += 1;
            if offset != expected {
                complete_from = offset;
            }
            expected = offset + 1;
            if k == Some(key.as_bytes()) {
                history.events.push(decode(partition, offset, id, k, v)?.event);
            }
            Ok(true)
        })
        .await?;
    }
    if complete_from > 0 {
        return Err(Error::Compacted { partition, offset: through, complete_from });
    }
    Ok(history)
}
