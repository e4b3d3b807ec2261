//! How fresh a read must be, turned into what Milvus understands: a
//! consistency level and a guarantee timestamp.
//!
//! Milvus makes a read wait until its query nodes have applied every write
//! up to the guarantee timestamp. Strong asks for "now", which costs a wait
//! for the next time tick (about 200 ms) on every read, even when nothing
//! was written. Session asks only for the writes the reader cares about: the
//! latest this gateway made to the collection ([`WriteClock`]), and the one
//! a caller names with a write token (Milvus's timestamp of an insert or
//! delete, from any gateway of the same Milvus). When those are already
//! visible, the read does not wait at all.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use imgsearch_proto::limits::SESSION_WRITE_MEMORY;
use milvus::proto::common::ConsistencyLevel as Level;

use crate::error::GatewayError;

/// The freshness a caller asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    Strong,
    #[default]
    Session,
    Bounded,
    Eventually,
}

/// A read's freshness: the level, and the caller's write token (0 for none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freshness {
    pub consistency: Consistency,
    pub write_token: u64,
}

/// How far ahead of this gateway's clock a write token may be. A token is a
/// Milvus hybrid timestamp; one from the future would make every read wait
/// until the query nodes' clock reaches it, so only clock skew is allowed.
pub const MAX_TOKEN_AHEAD_MS: u64 = 10_000;

/// Bits of a Milvus hybrid timestamp below the physical milliseconds.
const LOGICAL_BITS: u32 = 18;

impl Freshness {
    /// Every write acknowledged before the read, by anyone.
    pub const STRONG: Freshness = Freshness {
        consistency: Consistency::Strong,
        write_token: 0,
    };

    /// Refuses what cannot be honoured: a token with a level that ignores it,
    /// or a token that is not a timestamp Milvus could have issued yet.
    pub fn check(&self) -> Result<(), GatewayError> {
        if self.write_token == 0 {
            return Ok(());
        }
        if matches!(
            self.consistency,
            Consistency::Bounded | Consistency::Eventually
        ) {
            return Err(GatewayError::InvalidArgument(format!(
                "a write_token asks to see that write, which {:?} consistency does not \
                 promise; use SESSION (the default) or STRONG",
                self.consistency
            )));
        }
        let now_ms = now_ms();
        let token_ms = physical_ms(self.write_token);
        if token_ms > now_ms + MAX_TOKEN_AHEAD_MS {
            return Err(GatewayError::InvalidArgument(format!(
                "write_token {} is not a write of this Milvus: it lies {} s in the future \
                 (tokens come from InsertAck.write_token or DeleteResponse.write_token)",
                self.write_token,
                (token_ms - now_ms) / 1000
            )));
        }
        Ok(())
    }
}

/// The latest write timestamp this gateway made to each collection, for
/// the collections written within [`SESSION_WRITE_MEMORY`]: a gateway that
/// outlives many collections (made and dropped by others) keeps no entry
/// for each one it ever wrote to.
#[derive(Clone, Default)]
pub struct WriteClock {
    latest: Arc<Mutex<HashMap<String, u64>>>,
}

/// The physical milliseconds of a Milvus hybrid timestamp.
fn physical_ms(timestamp: u64) -> u64 {
    timestamp >> LOGICAL_BITS
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl WriteClock {
    pub fn record(&self, collection: &str, timestamp: u64) {
        let mut latest = self.latest.lock().expect("write clock lock");
        if !latest.contains_key(collection) {
            // A new entry is the only way the map grows: drop the ones
            // every read already sees before adding it.
            let memory = SESSION_WRITE_MEMORY.as_millis() as u64;
            let horizon = now_ms().saturating_sub(memory);
            latest.retain(|_, t| physical_ms(*t) >= horizon);
        }
        let t = latest.entry(collection.to_string()).or_default();
        *t = (*t).max(timestamp);
    }

    /// Forgets a dropped collection's writes.
    pub fn forget(&self, collection: &str) {
        self.latest
            .lock()
            .expect("write clock lock")
            .remove(collection);
    }

    pub fn latest(&self, collection: &str) -> u64 {
        let latest = self.latest.lock().expect("write clock lock");
        latest.get(collection).copied().unwrap_or(0)
    }

    /// Milvus's consistency level and guarantee timestamp for a read of
    /// `collection`.
    pub fn read_at(&self, collection: &str, f: Freshness) -> (Level, u64) {
        match f.consistency {
            // Milvus replaces the timestamp with "now" (Strong), "now minus
            // the graceful time" (Bounded) or "anything" (Eventually).
            Consistency::Strong => (Level::Strong, 0),
            Consistency::Bounded => (Level::Bounded, 0),
            Consistency::Eventually => (Level::Eventually, 1),
            // 1, the smallest timestamp, when nothing is to be waited for.
            Consistency::Session => (
                Level::Session,
                self.latest(collection).max(f.write_token).max(1),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_at(ms: u64) -> u64 {
        ms << LOGICAL_BITS
    }

    #[test]
    fn a_session_read_waits_for_the_later_of_its_token_and_this_gateways_writes() {
        let clock = WriteClock::default();
        let f = |write_token| Freshness {
            consistency: Consistency::Session,
            write_token,
        };
        assert_eq!(clock.read_at("c", f(0)), (Level::Session, 1));
        clock.record("c", 500);
        clock.record("c", 400);
        assert_eq!(clock.read_at("c", f(0)), (Level::Session, 500));
        assert_eq!(clock.read_at("c", f(900)), (Level::Session, 900));
        assert_eq!(clock.read_at("other", f(0)), (Level::Session, 1));
    }

    #[test]
    fn tokens_from_the_future_or_with_bounded_reads_are_refused() {
        let fresh = Freshness {
            consistency: Consistency::Session,
            write_token: token_at(now_ms()),
        };
        assert!(fresh.check().is_ok());
        let ahead = Freshness {
            write_token: token_at(now_ms() + 3_600_000),
            ..fresh
        };
        assert!(ahead.check().unwrap_err().to_string().contains("future"));
        let bounded = Freshness {
            consistency: Consistency::Bounded,
            ..fresh
        };
        assert!(bounded.check().unwrap_err().to_string().contains("SESSION"));
    }

    #[test]
    fn writes_every_read_already_sees_are_forgotten_when_another_collection_is_written() {
        let clock = WriteClock::default();
        let memory = SESSION_WRITE_MEMORY.as_millis() as u64;
        clock.record("old", token_at(now_ms() - memory - 1_000));
        clock.record("recent", token_at(now_ms() - 1_000));
        clock.record("new", token_at(now_ms()));
        assert_eq!(clock.latest("old"), 0);
        assert!(clock.latest("recent") > 0 && clock.latest("new") > 0);
        assert_eq!(clock.latest.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_dropped_collection_is_forgotten() {
        let clock = WriteClock::default();
        clock.record("c", token_at(now_ms()));
        clock.forget("c");
        assert_eq!(clock.latest("c"), 0);
        assert!(clock.latest.lock().unwrap().is_empty());
    }
}
