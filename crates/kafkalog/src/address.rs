//! A Kafka topic's address, admin and metadata.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, Result};

/// How long a metadata or watermark request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A topic on a Kafka cluster: `kafka://HOST:PORT[,HOST:PORT...]/TOPIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaLog {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topic: String,
}

impl KafkaLog {
    /// Parses `kafka://HOST:PORT/TOPIC`.
    pub fn parse(address: &str) -> Result<KafkaLog> {
        let bad = || Error::BadAddress(address.to_owned());
        let rest = address.strip_prefix("kafka://").ok_or_else(bad)?;
        let (brokers, topic) = rest.split_once('/').ok_or_else(bad)?;
        let topic_ok = !topic.is_empty()
            && topic.len() <= 249
            && topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        let brokers_ok = !brokers.is_empty()
            && brokers
                .split(',')
                .all(|b| b.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()));
        if !topic_ok || !brokers_ok {
            return Err(bad());
        }
        Ok(KafkaLog { brokers: brokers.to_owned(), topic: topic.to_owned() })
    }

    /// The same cluster, another topic.
    pub fn with_topic(&self, topic: &str) -> KafkaLog {
        KafkaLog { brokers: self.brokers.clone(), topic: topic.to_owned() }
    }

    /// A client configuration for this cluster (librdkafka's log noise kept to warnings).
    pub(crate) fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("log_level", "4");
        config
    }

    /// A consumer that is only assigned partitions, never subscribed (librdkafka needs a
    /// `group.id` all the same; it never joins the group).
    pub(crate) fn consumer(&self) -> Result<BaseConsumer> {
        Ok(self.assign_only().create()?)
    }

    /// The configuration of every consumer here: assigned partitions only, nothing committed to
    /// Kafka (positions live in PostgreSQL), from the earliest record when a position is gone.
    pub(crate) fn assign_only(&self) -> ClientConfig {
        let mut config = self.config();
        config
            .set("group.id", "reproject-assign-only")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "10");
        config
    }

    /// Creates the topic with `partitions` partitions; `compact` sets `cleanup.policy=compact`
    /// (otherwise no policy is set: the local broker's explicit `delete` policy would delete
    /// historical events by their timestamp). An existing topic with that many partitions is
    /// fine; with another count, an error.
    pub async fn create(&self, partitions: u32, compact: bool) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config().create()?;
        let mut topic = NewTopic::new(&self.topic, partitions as i32, TopicReplication::Fixed(1));
        if compact {
            topic = topic.set("cleanup.policy", "compact");
        }
        let results =
            admin.create_topics([&topic], &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT))).await?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    let existing = self.partitions()?;
                    if existing != partitions {
                        return Err(Error::Broker(format!(
                            "topic {} exists with {existing} partitions, not {partitions}",
                            self.topic
                        )));
                    }
                }
                Err((name, code)) => return Err(Error::Broker(format!("creating topic {name}: {code}"))),
            }
        }
        Ok(())
    }

    /// Deletes the topic (missing is fine).
    pub async fn delete(&self) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config().create()?;
        let results = admin.delete_topics(&[&self.topic], &AdminOptions::new()).await?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => return Err(Error::Broker(format!("deleting topic {name}: {code}"))),
            }
        }
        Ok(())
    }

    /// The topic's partition count; [`Error::NoTopic`] when it does not exist.
    pub fn partitions(&self) -> Result<u32> {
        let consumer = self.consumer()?;
        let metadata = consumer.fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)?;
        let topic = metadata.topics().iter().find(|t| t.name() == self.topic);
        match topic {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as u32),
            _ => Err(Error::NoTopic { brokers: self.brokers.clone(), topic: self.topic.clone() }),
        }
    }

    /// `(low, high)` watermarks of partition `p`: the first offset still in it and the next
    /// offset to be written.
    pub fn watermark(&self, p: u32) -> Result<(i64, i64)> {
        Ok(self.consumer()?.fetch_watermarks(&self.topic, p as i32, REQUEST_TIMEOUT)?)
    }

    /// `(low, high)` watermarks of every partition.
    pub fn watermarks(&self) -> Result<Vec<(i64, i64)>> {
        let consumer = self.consumer()?;
        watermarks(&consumer, &self.topic, self.partitions()?)
    }
}

/// `(low, high)` of each of `partitions` partitions, through `consumer`.
pub(crate) fn watermarks(consumer: &BaseConsumer, topic: &str, partitions: u32) -> Result<Vec<(i64, i64)>> {
    (0..partitions).map(|p| Ok(consumer.fetch_watermarks(topic, p as i32, REQUEST_TIMEOUT)?)).collect()
}

impl std::fmt::Display for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kafka://{}/{}", self.brokers, self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_bad_ones_are_named() {
        let log = KafkaLog::parse("kafka://127.0.0.1:9092/events").unwrap();
        assert_eq!(log.brokers, "127.0.0.1:9092");
        assert_eq!(log.topic, "events");
        assert_eq!(log.to_string(), "kafka://127.0.0.1:9092/events");
        assert_eq!(KafkaLog::parse("kafka://a:1,b:2/t").unwrap().brokers, "a:1,b:2");
        for bad in ["kafka://host/topic", "http://h:1/t", "kafka://h:1/", "kafka://h:1/a b", "kafka://h:x/t"] {
            let e = KafkaLog::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("kafka://HOST:PORT/TOPIC"), "{e}");
        }
    }
}
