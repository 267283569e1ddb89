//! A replica's view of the shared record, and the script's reply that updates it.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use failover_breaker::{BreakerSnapshot, BreakerState, Transition};
use redis::Value;

use crate::SharedError;

/// What the script answered.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub(super) admitted: bool,
    pub(super) state: BreakerState,
    pub(super) generation: u64,
    /// The end of the open period, server milliseconds (meaningful only when OPEN).
    pub(super) open_until_ms: i64,
    /// The server's time of the reply, milliseconds.
    pub(super) now_ms: i64,
    pub(super) probe: bool,
    /// A read's counters.
    pub(super) record: Option<Record>,
}

/// The counters a read returns.
#[derive(Debug, Clone)]
pub(super) struct Record {
    successes: u64,
    failures: u64,
    consecutive: u32,
    trips: u32,
    last_error_kind: String,
    opened_ms: i64,
    needs_operator: String,
    /// (from, to, at ms), newest first.
    transitions: Vec<(BreakerState, BreakerState, i64)>,
}

fn state(name: &str) -> Result<BreakerState, SharedError> {
    Ok(match name {
        "closed" => BreakerState::Closed,
        "open" => BreakerState::Open,
        "half_open" => BreakerState::HalfOpen,
        "forced_open" => BreakerState::ForcedOpen,
        "forced_closed" => BreakerState::ForcedClosed,
        other => {
            return Err(SharedError::Protocol(format!(
                "unknown breaker state {other:?}"
            )));
        }
    })
}

fn text(value: &Value) -> Result<String, SharedError> {
    redis::from_redis_value_ref::<String>(value)
        .map_err(|e| SharedError::Protocol(format!("breaker reply: {e}")))
}

fn int(value: &Value) -> Result<i64, SharedError> {
    redis::from_redis_value_ref::<i64>(value)
        .map_err(|e| SharedError::Protocol(format!("breaker reply: {e}")))
}

impl Reply {
    pub(super) fn parse(value: Value) -> Result<Self, SharedError> {
        let Value::Array(items) = value else {
            return Err(SharedError::Protocol(format!(
                "breaker reply is not an array: {value:?}"
            )));
        };
        if items.len() < 6 {
            return Err(SharedError::Protocol(format!(
                "breaker reply too short: {items:?}"
            )));
        }
        let record = if items.len() >= 15 {
            let Value::Array(lines) = &items[14] else {
                return Err(SharedError::Protocol("transitions are not a list".into()));
            };
            let mut transitions = Vec::with_capacity(lines.len());
            for line in lines {
                let line = text(line)?;
                let mut parts = line.split(',');
                let (Some(from), Some(to), Some(at)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(SharedError::Protocol(format!("transition {line:?}")));
                };
                let at = at
                    .parse::<i64>()
                    .map_err(|_| SharedError::Protocol(format!("transition {line:?}")))?;
                transitions.push((state(from)?, state(to)?, at));
            }
            Some(Record {
                successes: int(&items[6])?.max(0) as u64,
                failures: int(&items[7])?.max(0) as u64,
                consecutive: int(&items[8])?.clamp(0, i64::from(u32::MAX)) as u32,
                trips: int(&items[9])?.clamp(0, i64::from(u32::MAX)) as u32,
                last_error_kind: text(&items[10])?,
                opened_ms: int(&items[11])?,
                needs_operator: text(&items[12])?,
                transitions,
            })
        } else {
            None
        };
        Ok(Self {
            admitted: int(&items[0])? == 1,
            state: state(&text(&items[1])?)?,
            generation: int(&items[2])?.max(0) as u64,
            open_until_ms: int(&items[3])?,
            now_ms: int(&items[4])?,
            probe: int(&items[5])? == 1,
            record,
        })
    }

    /// A server time as an instant on the local clock, given the local time of the reply;
    /// `None` for a negative time (the record's "never").
    fn at(&self, server_ms: i64, local_now: Instant) -> Option<Instant> {
        if server_ms < 0 {
            return None;
        }
        let delta = server_ms - self.now_ms;
        if delta >= 0 {
            local_now.checked_add(Duration::from_millis(delta as u64))
        } else {
            local_now.checked_sub(Duration::from_millis(delta.unsigned_abs()))
        }
    }

    /// The end of the open period on the local clock.
    pub(super) fn open_until_at(&self, local_now: Instant) -> Option<Instant> {
        self.at(self.open_until_ms, local_now)
    }
}

/// The replica's view of the shared record.
#[derive(Debug, Clone)]
pub(super) struct View {
    pub(super) state: BreakerState,
    pub(super) generation: u64,
    pub(super) open_until: Option<Instant>,
    /// The last read's counters, converted to the local clock.
    snapshot: Option<BreakerSnapshot>,
}

impl Default for View {
    fn default() -> Self {
        Self {
            state: BreakerState::Closed,
            generation: 0,
            open_until: None,
            snapshot: None,
        }
    }
}

impl View {
    pub(super) fn update(&mut self, reply: &Reply, local_now: Instant) {
        self.state = reply.state;
        self.generation = reply.generation;
        self.open_until = match reply.state {
            BreakerState::Open => reply.open_until_at(local_now),
            _ => None,
        };
        if let Some(record) = &reply.record {
            let failure_rate = match record.successes + record.failures {
                0 => 0.0,
                total => record.failures as f64 / total as f64,
            };
            let mut transitions: Vec<Transition> = record
                .transitions
                .iter()
                .map(|&(from, to, at)| Transition {
                    from,
                    to,
                    at: reply.at(at, local_now).unwrap_or(local_now),
                })
                .collect();
            transitions.reverse();
            self.snapshot = Some(BreakerSnapshot {
                state: reply.state,
                successes: record.successes,
                failures: record.failures,
                consecutive_failures: record.consecutive,
                failure_rate,
                rejected: 0,
                trips: record.trips,
                last_error_kind: intern(&record.last_error_kind),
                opened_at: reply.at(record.opened_ms, local_now),
                next_probe_at: self.open_until,
                recent_transitions: transitions,
                needs_operator: !record.needs_operator.is_empty(),
                needs_operator_kind: intern(&record.needs_operator),
                tenant_capped_failures: 0,
            });
        } else if let Some(snapshot) = &mut self.snapshot {
            snapshot.state = reply.state;
            snapshot.next_probe_at = self.open_until;
        }
    }

    pub(super) fn snapshot(&self, rejected: u64) -> BreakerSnapshot {
        let mut snapshot = self.snapshot.clone().unwrap_or(BreakerSnapshot {
            state: self.state,
            successes: 0,
            failures: 0,
            consecutive_failures: 0,
            failure_rate: 0.0,
            rejected: 0,
            trips: 0,
            last_error_kind: None,
            opened_at: None,
            next_probe_at: self.open_until,
            recent_transitions: Vec::new(),
            needs_operator: false,
            needs_operator_kind: None,
            tenant_capped_failures: 0,
        });
        snapshot.state = self.state;
        snapshot.next_probe_at = self.open_until;
        snapshot.rejected = rejected;
        snapshot
    }
}

/// Error kinds come back from Redis as strings, and the snapshot holds `&'static str`:
/// each distinct kind is leaked once. Kinds are the engine's own short names, a small
/// set; past [`MAX_KINDS`] (a record written by something else) they read as `other`.
const MAX_KINDS: usize = 256;

fn intern(kind: &str) -> Option<&'static str> {
    if kind.is_empty() {
        return None;
    }
    static KINDS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut kinds = KINDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(&known) = kinds.get(kind) {
        return Some(known);
    }
    if kinds.len() >= MAX_KINDS {
        return Some("other");
    }
    let leaked: &'static str = Box::leak(kind.to_owned().into_boxed_str());
    kinds.insert(leaked);
    Some(leaked)
}
