//! `failover.redis.duration`: one sample per Redis command the cache sends, labelled with
//! the command (`failover.store.operation`) and whether it answered
//! (`failover.store.result`).
//!
//! A cache registers its histogram handles once, in [`ElastiCacheCache::new`], with the
//! recorder installed then: a `GET` on the hit path then costs a clock read and one handle
//! call, with no key built, no allocation and no registry lookup.
//!
//! [`ElastiCacheCache::new`]: crate::ElastiCacheCache::new

use std::future::Future;
use std::time::Instant;

use failover_telemetry::names::{label, metric, value};
use metrics::Histogram;
use redis::RedisResult;

/// A Redis command the cache sends. Commands are built from it ([`Command::cmd`]), so the
/// label always names the command actually sent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Command {
    Get = 0,
    Set = 1,
    Del = 2,
    Ping = 3,
    Scan = 4,
    Unlink = 5,
}

impl Command {
    const ALL: [Command; 6] = [
        Command::Get,
        Command::Set,
        Command::Del,
        Command::Ping,
        Command::Scan,
        Command::Unlink,
    ];

    /// The command's name, upper-case as Redis spells it.
    const fn name(self) -> &'static str {
        match self {
            Command::Get => "GET",
            Command::Set => "SET",
            Command::Del => "DEL",
            Command::Ping => "PING",
            Command::Scan => "SCAN",
            Command::Unlink => "UNLINK",
        }
    }

    /// A new command of this kind, to add arguments to.
    pub(crate) fn cmd(self) -> redis::Cmd {
        redis::cmd(self.name())
    }
}

/// The cache's `failover.redis.duration` handles, by [`Command`], then `[error, ok]`.
#[derive(Debug)]
pub(crate) struct RedisMetrics {
    calls: [[Histogram; 2]; 6],
}

impl RedisMetrics {
    /// Registers the handles with the recorder installed now.
    pub(crate) fn new() -> Self {
        let call = |command: Command, result: &'static str| {
            metrics::histogram!(
                metric::REDIS_DURATION,
                label::STORE_OPERATION => command.name(),
                label::STORE_RESULT => result,
            )
        };
        Self {
            calls: Command::ALL.map(|c| [call(c, value::ERROR), call(c, value::OK)]),
        }
    }

    /// Runs one Redis call and records its duration: `ok` when Redis answered, `error`
    /// when the call failed — or was cut short: a call dropped before it finished (its time
    /// budget ran out) is an `error` sample lasting until the cut, since a dashboard must
    /// see a black-holed server.
    pub(crate) async fn time<T>(
        &self,
        command: Command,
        call: impl Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let mut sample = Sample {
            metrics: self,
            command,
            started: Instant::now(),
            ok: false,
        };
        let result = call.await;
        sample.ok = result.is_ok();
        result
    }
}

/// Records its call when dropped: at the end of [`RedisMetrics::time`], or when the call's
/// future is dropped part-way.
struct Sample<'a> {
    metrics: &'a RedisMetrics,
    command: Command,
    started: Instant,
    ok: bool,
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        self.metrics.calls[self.command as usize][usize::from(self.ok)]
            .record(self.started.elapsed().as_secs_f64());
    }
}
