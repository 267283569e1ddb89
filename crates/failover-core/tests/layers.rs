//! The layer seam: request and provider layers run in the documented order around the
//! built-in steps, can reject (a request before anything is touched, a provider so the walk
//! fails over), and hear how every request and every call ended — failures, breaker skips,
//! cancellations and streams included. Synchronised on events, never on sleeps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use failover_breaker::{Breaker, BreakerConfig, BreakerSnapshot, CircuitBreaker, Permit, Rejected};
use failover_cache::MemoryCache;
use failover_core::layers::{
    Admission, CallInfo, CallOutcome, ProviderLayer, Rejection, RequestInfo, RequestLayer,
    RequestOutcome, Ticket,
};
use failover_core::{AdapterBuilder, FailoverAdapter, FailoverError};
use failover_provider::{
    AttemptOutcome, CompletionRequest, ErrorKind, FinishReason, ProviderRequest, StreamChunk,
    TokenUsage,
};
use failover_testkit::{ErrorSpec, ScriptedProvider, Step, StreamStep};
use failover_usage::{MemoryUsageSink, UsageOutcome};
use futures::StreamExt;

const BEDROCK: &str = "bedrock";
const OPENAI: &str = "openai";

/// What the layers saw, in order.
#[derive(Debug, Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }

    fn contains(&self, event: &str) -> bool {
        self.0.lock().unwrap().iter().any(|seen| seen == event)
    }

    /// Every event so far, leaving the log empty.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// How a [`Recorder`] decides in its `before_*`.
#[derive(Debug, Clone)]
enum Decide {
    Admit,
    /// Rejects every request (as a request layer) or calls to this provider (as a
    /// provider layer).
    Reject {
        provider: Option<&'static str>,
        rejection: Rejection,
    },
    /// Never decides: only the request's deadline ends the wait.
    Never,
}

/// A layer that logs every hook, hands itself a ticket and checks it gets it back.
#[derive(Debug)]
struct Recorder {
    name: &'static str,
    log: Arc<Log>,
    decide: Decide,
}

impl Recorder {
    fn new(name: &'static str, log: &Arc<Log>) -> Arc<Self> {
        Self::deciding(name, log, Decide::Admit)
    }

    fn deciding(name: &'static str, log: &Arc<Log>, decide: Decide) -> Arc<Self> {
        Arc::new(Self {
            name,
            log: Arc::clone(log),
            decide,
        })
    }

    fn admission<'a>(&self, provider: Option<&str>, ticket: String) -> Admission<'a> {
        match &self.decide {
            Decide::Reject {
                provider: only,
                rejection,
            } if only.is_none() || *only == provider => Admission::reject(rejection.clone()),
            Decide::Never => Admission::deferred(std::future::pending()),
            Decide::Admit | Decide::Reject { .. } => Admission::admit_with(Ticket::new(ticket)),
        }
    }

    /// The ticket this layer gives for `key`, and whether `ticket` is it.
    fn ticket_for(&self, key: &str) -> String {
        format!("{}:{key}", self.name)
    }

    fn check(&self, ticket: Ticket, key: &str) -> &'static str {
        if ticket.take::<String>() == Some(self.ticket_for(key)) {
            ""
        } else {
            " (WRONG TICKET)"
        }
    }
}

impl RequestLayer for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    fn before_request<'a>(
        &'a self,
        info: RequestInfo<'a>,
        _request: &'a CompletionRequest,
    ) -> Admission<'a> {
        self.log.push(format!("{} before", self.name));
        self.admission(None, self.ticket_for(info.request_id().as_str()))
    }

    fn after_request(&self, info: RequestInfo<'_>, ticket: Ticket, outcome: &RequestOutcome<'_>) {
        let ticket = self.check(ticket, info.request_id().as_str());
        self.log.push(format!(
            "{} after {}{ticket}",
            self.name,
            describe_request(outcome)
        ));
    }
}

impl ProviderLayer for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    fn before_call<'a>(
        &'a self,
        call: CallInfo<'a>,
        request: &'a ProviderRequest,
    ) -> Admission<'a> {
        assert_eq!(request.model, call.model());
        self.log
            .push(format!("{} before {}", self.name, call.provider()));
        self.admission(Some(call.provider()), self.ticket_for(call.provider()))
    }

    fn after_call(&self, call: CallInfo<'_>, ticket: Ticket, outcome: &CallOutcome<'_>) {
        let ticket = self.check(ticket, call.provider());
        self.log.push(format!(
            "{} after {}: {}{ticket}",
            self.name,
            call.provider(),
            describe_call(outcome)
        ));
    }
}

fn describe_request(outcome: &RequestOutcome<'_>) -> String {
    match outcome {
        RequestOutcome::Completed(completion) if completion.cached => "completed from cache".into(),
        RequestOutcome::Completed(completion) => format!("completed by {}", completion.provider),
        RequestOutcome::Streamed(summary) if summary.cached => "streamed from cache".into(),
        RequestOutcome::Streamed(summary) => format!("streamed by {}", summary.provider),
        RequestOutcome::Failed(FailoverError::Rejected { layer, .. }) => {
            format!("failed: rejected by {layer}")
        }
        RequestOutcome::Failed(FailoverError::DeadlineExceeded { .. }) => {
            "failed: deadline exceeded".into()
        }
        RequestOutcome::Failed(FailoverError::StreamInterrupted { kind, .. }) => {
            format!("failed: stream interrupted: {kind}")
        }
        RequestOutcome::Failed(error) => format!("failed: {error}"),
        RequestOutcome::Cancelled => "cancelled".into(),
        _ => "unknown outcome".into(),
    }
}

fn describe_call(outcome: &CallOutcome<'_>) -> String {
    match outcome {
        CallOutcome::Succeeded(_) => "succeeded".into(),
        CallOutcome::Failed { error, .. } => format!("failed: {}", error.kind()),
        CallOutcome::Cancelled(_) => "cancelled".into(),
        CallOutcome::Rejected { layer, .. } => format!("rejected by {layer}"),
        CallOutcome::BreakerOpen => "breaker open".into(),
        CallOutcome::Abandoned => "abandoned".into(),
        _ => "unknown outcome".into(),
    }
}

/// A breaker that counts how often it is asked, to prove it was not.
#[derive(Debug)]
struct CountingBreaker {
    inner: CircuitBreaker,
    asked: AtomicU64,
}

impl CountingBreaker {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: CircuitBreaker::new(BreakerConfig::default()),
            asked: AtomicU64::new(0),
        })
    }

    fn asked(&self) -> u64 {
        self.asked.load(Ordering::SeqCst)
    }
}

impl Breaker for CountingBreaker {
    fn try_acquire(&self) -> Result<Permit, Rejected> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.inner.try_acquire()
    }
    fn force_open(&self) {
        self.inner.force_open()
    }
    fn force_close(&self) {
        self.inner.force_close()
    }
    fn reset(&self) {
        self.inner.reset()
    }
    fn snapshot(&self) -> BreakerSnapshot {
        self.inner.snapshot()
    }
}

/// An adapter over `bedrock` then `openai` (counting breakers, a memory cache, a memory
/// sink) with the layers `layers` adds, and everything the tests look at.
struct World {
    adapter: FailoverAdapter,
    bedrock: Arc<ScriptedProvider>,
    openai: Arc<ScriptedProvider>,
    bedrock_breaker: Arc<CountingBreaker>,
    openai_breaker: Arc<CountingBreaker>,
    sink: Arc<MemoryUsageSink>,
    log: Arc<Log>,
}

impl World {
    fn new(
        bedrock: ScriptedProvider,
        openai: ScriptedProvider,
        layers: impl FnOnce(AdapterBuilder, &Arc<Log>) -> AdapterBuilder,
    ) -> Self {
        let (bedrock, openai) = (Arc::new(bedrock), Arc::new(openai));
        let (bedrock_breaker, openai_breaker) = (CountingBreaker::new(), CountingBreaker::new());
        let sink = Arc::new(MemoryUsageSink::default());
        let log = Arc::new(Log::default());
        let builder = FailoverAdapter::builder()
            .provider_with_breaker(bedrock.clone(), bedrock_breaker.clone())
            .provider_with_breaker(openai.clone(), openai_breaker.clone())
            .cache(Arc::new(MemoryCache::new()))
            .usage_sink(sink.clone());
        let adapter = layers(builder, &log).build().expect("the adapter builds");
        Self {
            adapter,
            bedrock,
            openai,
            bedrock_breaker,
            openai_breaker,
            sink,
            log,
        }
    }

    fn events(&self) -> Vec<String> {
        self.log.take()
    }
}

/// Two request layers and two provider layers, each pair registered outer then inner.
fn two_of_each(builder: AdapterBuilder, log: &Arc<Log>) -> AdapterBuilder {
    builder
        .request_layer(Recorder::new("outer-request", log))
        .request_layer(Recorder::new("inner-request", log))
        .provider_layer(Recorder::new("outer-call", log))
        .provider_layer(Recorder::new("inner-call", log))
}

fn request(prompt: &str) -> CompletionRequest {
    CompletionRequest::prompt("t", "a", "gpt-4", prompt)
}

fn events(list: &[&str]) -> Vec<String> {
    list.iter().map(|event| (*event).to_owned()).collect()
}

#[tokio::test]
async fn layers_nest_in_registration_order_around_the_built_in_steps() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::fail(ErrorKind::Unavailable)),
        ScriptedProvider::always(OPENAI, "4"),
        two_of_each,
    );
    let completion = world
        .adapter
        .generate_completion(request("2+2?"))
        .await
        .unwrap();
    assert_eq!(completion.provider, OPENAI);
    assert_eq!(
        world.events(),
        events(&[
            "outer-request before",
            "inner-request before",
            "outer-call before bedrock",
            "inner-call before bedrock",
            "inner-call after bedrock: failed: unavailable",
            "outer-call after bedrock: failed: unavailable",
            "outer-call before openai",
            "inner-call before openai",
            "inner-call after openai: succeeded",
            "outer-call after openai: succeeded",
            "inner-request after completed by openai",
            "outer-request after completed by openai",
        ])
    );

    // A cache hit passes through the request layers (they sit outside the cache) and
    // reaches no provider layer.
    let again = world
        .adapter
        .generate_completion(request("2+2?"))
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(
        world.events(),
        events(&[
            "outer-request before",
            "inner-request before",
            "inner-request after completed from cache",
            "outer-request after completed from cache",
        ])
    );
}

/// Logs what the ledger and the breaker already know when `after_call` runs.
#[derive(Debug)]
struct Witness {
    log: Arc<Log>,
    sink: Arc<MemoryUsageSink>,
    breaker: Arc<CountingBreaker>,
}

impl ProviderLayer for Witness {
    fn name(&self) -> &str {
        "witness"
    }

    fn after_call(&self, call: CallInfo<'_>, _ticket: Ticket, outcome: &CallOutcome<'_>) {
        let records = self.sink.records();
        let snapshot = self.breaker.snapshot();
        let cost_matches = match outcome {
            CallOutcome::Succeeded(spent) | CallOutcome::Failed { spent, .. } => {
                records.last().map(|record| record.cost) == Some(spent.cost)
            }
            _ => false,
        };
        self.log.push(format!(
            "{}: {} records, breaker {} failures {} successes, cost as recorded: {cost_matches}",
            call.provider(),
            records.len(),
            snapshot.failures,
            snapshot.successes,
        ));
    }
}

#[tokio::test]
async fn provider_layers_observe_a_call_the_breaker_and_the_ledger_already_know() {
    let sink = Arc::new(MemoryUsageSink::default());
    let breaker = CountingBreaker::new();
    let log = Arc::new(Log::default());
    let adapter = FailoverAdapter::builder()
        .provider_with_breaker(
            Arc::new(
                ScriptedProvider::new(BEDROCK)
                    .then(Step::fail(ErrorKind::Throttled))
                    .then(Step::reply("fine").with_usage(100, 20)),
            ),
            breaker.clone(),
        )
        .usage_sink(sink.clone())
        .provider_layer(Arc::new(Witness {
            log: log.clone(),
            sink: sink.clone(),
            breaker: breaker.clone(),
        }))
        .build()
        .unwrap();
    adapter
        .generate_completion(request("first"))
        .await
        .unwrap_err();
    let completion = adapter
        .generate_completion(request("second"))
        .await
        .unwrap();
    assert!(completion.estimated_cost > failover_provider::Usd::ZERO);
    assert_eq!(
        log.take(),
        events(&[
            "bedrock: 1 records, breaker 1 failures 0 successes, cost as recorded: true",
            "bedrock: 2 records, breaker 1 failures 1 successes, cost as recorded: true",
        ])
    );
}

#[tokio::test]
async fn a_request_layer_rejection_stops_the_request_before_anything_is_touched() {
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "unused"),
        ScriptedProvider::always(OPENAI, "unused"),
        |builder, log| {
            builder
                .request_layer(Recorder::new("metrics", log))
                .request_layer(Recorder::deciding(
                    "budget",
                    log,
                    Decide::Reject {
                        provider: None,
                        rejection: Rejection::new("tenant t is over its budget")
                            .with_retry_after(Duration::from_secs(60)),
                    },
                ))
                .request_layer(Recorder::new("never-asked", log))
                .provider_layer(Recorder::new("call", log))
        },
    );
    for streamed in [false, true] {
        let error = if streamed {
            world
                .adapter
                .stream_completion(request("please"))
                .await
                .err()
                .unwrap()
        } else {
            world
                .adapter
                .generate_completion(request("please"))
                .await
                .unwrap_err()
        };
        let FailoverError::Rejected {
            layer,
            reason,
            retry_after,
            ..
        } = &error
        else {
            panic!("{error}")
        };
        assert_eq!(
            (layer.as_str(), reason.as_str(), *retry_after),
            (
                "budget",
                "tenant t is over its budget",
                Some(Duration::from_secs(60))
            )
        );
        assert!(error.attempts().is_empty());
        assert_eq!(
            world.events(),
            events(&[
                "metrics before",
                "budget before",
                "metrics after failed: rejected by budget",
            ])
        );
    }
    assert_eq!(
        (world.bedrock.call_count(), world.openai.call_count()),
        (0, 0)
    );
    assert_eq!(
        (world.bedrock_breaker.asked(), world.openai_breaker.asked()),
        (0, 0),
        "no breaker was asked"
    );
    assert!(world.sink.records().is_empty());
    let cache = world.adapter.health().cache.unwrap();
    assert_eq!(
        (cache.hits, cache.misses),
        (0, 0),
        "the cache was not touched"
    );
}

#[tokio::test]
async fn a_provider_layer_rejection_skips_that_provider_and_the_walk_fails_over() {
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "unused"),
        ScriptedProvider::always(OPENAI, "from openai"),
        |builder, log| {
            builder
                .provider_layer(Recorder::new("metrics", log))
                .provider_layer(Recorder::deciding(
                    "rate-limit",
                    log,
                    Decide::Reject {
                        provider: Some(BEDROCK),
                        rejection: Rejection::new("10 calls a minute"),
                    },
                ))
                .provider_layer(Recorder::new("spans", log))
        },
    );
    let completion = world
        .adapter
        .generate_completion(request("hello"))
        .await
        .unwrap();
    assert_eq!(
        (completion.provider.as_str(), completion.content.as_str()),
        (OPENAI, "from openai")
    );
    assert_eq!(
        completion.attempts[0].outcome,
        AttemptOutcome::SkippedRejected {
            layer: "rate-limit".into(),
            reason: "10 calls a minute".into()
        }
    );
    assert_eq!(completion.attempts[1].outcome, AttemptOutcome::Succeeded);
    assert_eq!(
        world.events(),
        events(&[
            "metrics before bedrock",
            "rate-limit before bedrock",
            "metrics after bedrock: rejected by rate-limit",
            "metrics before openai",
            "rate-limit before openai",
            "spans before openai",
            "spans after openai: succeeded",
            "rate-limit after openai: succeeded",
            "metrics after openai: succeeded",
        ])
    );
    assert_eq!(world.bedrock.call_count(), 0);
    assert_eq!(
        world.bedrock_breaker.asked(),
        0,
        "a layer's rejection takes no breaker permit"
    );
    let records = world.sink.records();
    assert_eq!(
        records.len(),
        1,
        "no usage record for a provider not called"
    );
    assert_eq!(records[0].provider, OPENAI);
    assert!(records[0].fallback_used);
}

#[tokio::test]
async fn a_rejection_standing_for_an_open_breaker_is_recorded_as_one() {
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "unused"),
        ScriptedProvider::always(OPENAI, "answer"),
        |builder, log| {
            builder.provider_layer(Recorder::deciding(
                "shared-breaker",
                log,
                Decide::Reject {
                    provider: Some(BEDROCK),
                    rejection: Rejection::breaker_open("open on another replica"),
                },
            ))
        },
    );
    let completion = world
        .adapter
        .generate_completion(request("hello"))
        .await
        .unwrap();
    assert!(matches!(
        completion.attempts[0].outcome,
        AttemptOutcome::SkippedBreakerOpen { .. }
    ));
    assert_eq!(completion.provider, OPENAI);
}

#[tokio::test]
async fn provider_layers_hear_of_an_open_breaker() {
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "unused"),
        ScriptedProvider::always(OPENAI, "answer"),
        two_of_each,
    );
    world.adapter.breaker(BEDROCK).unwrap().force_open();
    world
        .adapter
        .generate_completion(request("hello"))
        .await
        .unwrap();
    let events = world.events();
    assert_eq!(
        events[2..5],
        [
            "outer-call before bedrock",
            "inner-call before bedrock",
            "inner-call after bedrock: breaker open",
        ]
    );
    assert_eq!(events[5], "outer-call after bedrock: breaker open");
}

#[tokio::test]
async fn a_refused_request_is_a_failed_call_and_a_failed_request_to_the_layers() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::fail(ErrorKind::InvalidRequest)),
        ScriptedProvider::always(OPENAI, "unused"),
        two_of_each,
    );
    let error = world
        .adapter
        .generate_completion(request("hello"))
        .await
        .unwrap_err();
    assert!(matches!(error, FailoverError::Refused { .. }), "{error}");
    let events = world.events();
    assert_eq!(
        events[4..],
        [
            "inner-call after bedrock: failed: invalid_request".to_owned(),
            "outer-call after bedrock: failed: invalid_request".to_owned(),
            format!("inner-request after failed: {error}"),
            format!("outer-request after failed: {error}"),
        ]
    );
}

#[tokio::test]
async fn a_dropped_request_is_cancelled_for_its_call_then_for_the_request() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::reply("late").after(Duration::from_secs(3600))),
        ScriptedProvider::always(OPENAI, "unused"),
        two_of_each,
    );
    let mut call = Box::pin(world.adapter.generate_completion(request("slow")));
    // Drive the request until bedrock has been called (it then waits an hour).
    while world.bedrock.call_count() == 0 {
        assert!(matches!(futures::poll!(call.as_mut()), Poll::Pending));
        tokio::task::yield_now().await;
    }
    drop(call);
    assert_eq!(
        world.events(),
        events(&[
            "outer-request before",
            "inner-request before",
            "outer-call before bedrock",
            "inner-call before bedrock",
            "inner-call after bedrock: cancelled",
            "outer-call after bedrock: cancelled",
            "inner-request after cancelled",
            "outer-request after cancelled",
        ])
    );
    let records = world.sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, UsageOutcome::Cancelled);
}

#[tokio::test]
async fn a_request_dropped_while_a_layer_decides_abandons_the_call() {
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "unused"),
        ScriptedProvider::always(OPENAI, "unused"),
        |builder, log| {
            builder
                .request_layer(Recorder::new("request", log))
                .provider_layer(Recorder::new("outer", log))
                .provider_layer(Recorder::deciding("stuck", log, Decide::Never))
        },
    );
    let mut call = Box::pin(world.adapter.generate_completion(request("hello")));
    while !world.log.contains("stuck before bedrock") {
        assert!(matches!(futures::poll!(call.as_mut()), Poll::Pending));
        tokio::task::yield_now().await;
    }
    drop(call);
    assert_eq!(
        world.events(),
        events(&[
            "request before",
            "outer before bedrock",
            "stuck before bedrock",
            "outer after bedrock: abandoned",
            "request after cancelled",
        ])
    );
    assert_eq!(
        (world.bedrock.call_count(), world.bedrock_breaker.asked()),
        (0, 0)
    );
    assert!(world.sink.records().is_empty());
}

// The two tests below run on a paused clock of their own: the deadline is read from the
// real clock when the request is made, and a paused clock already advanced by an earlier
// request would find it passed at once.

#[tokio::test(start_paused = true)]
async fn a_request_layer_that_does_not_decide_is_bounded_by_the_deadline() {
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "unused"),
        ScriptedProvider::always(OPENAI, "unused"),
        |builder, log| {
            builder
                .request_layer(Recorder::new("outer", log))
                .request_layer(Recorder::deciding("stuck", log, Decide::Never))
        },
    );
    let error = world
        .adapter
        .generate_completion(request("hello").timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, FailoverError::DeadlineExceeded { .. }),
        "{error}"
    );
    // The layers outside the stuck one are told; no provider is called.
    assert_eq!(
        world.events(),
        events(&[
            "outer before",
            "stuck before",
            "outer after failed: deadline exceeded",
        ])
    );
    assert_eq!(world.bedrock.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_provider_layer_that_does_not_decide_is_bounded_by_the_deadline() {
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "unused"),
        ScriptedProvider::always(OPENAI, "unused"),
        |builder, log| {
            builder
                .provider_layer(Recorder::new("outer", log))
                .provider_layer(Recorder::deciding("stuck", log, Decide::Never))
        },
    );
    let error = world
        .adapter
        .generate_completion(request("hello").timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, FailoverError::DeadlineExceeded { .. }),
        "{error}"
    );
    // The walk ends; the layers outside the stuck one hear the call was abandoned.
    assert_eq!(
        world.events(),
        events(&[
            "outer before bedrock",
            "stuck before bedrock",
            "outer after bedrock: abandoned",
        ])
    );
    assert_eq!(
        (world.bedrock.call_count(), world.bedrock_breaker.asked()),
        (0, 0)
    );
}

#[test]
fn requests_with_layers_can_be_spawned() {
    fn send<T: Send>(value: T) -> T {
        value
    }
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "unused"),
        ScriptedProvider::always(OPENAI, "unused"),
        two_of_each,
    );
    drop(send(world.adapter.generate_completion(request("x"))));
    drop(send(world.adapter.stream_completion(request("x"))));
}

fn delta(text: &str) -> StreamStep {
    StreamStep::Delta(text.to_owned())
}

#[tokio::test]
async fn a_stream_goes_through_the_same_layers_and_its_call_ends_with_the_stream() {
    let world = World::new(
        // Cut before any content: fails over before the commit point.
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![])),
        ScriptedProvider::always(OPENAI, "whole answer"),
        two_of_each,
    );
    let stream = world
        .adapter
        .stream_completion(request("stream it"))
        .await
        .unwrap();
    // Committed to openai; its call is still open until the stream ends.
    assert_eq!(
        world.events(),
        events(&[
            "outer-request before",
            "inner-request before",
            "outer-call before bedrock",
            "inner-call before bedrock",
            "inner-call after bedrock: failed: stream_cut",
            "outer-call after bedrock: failed: stream_cut",
            "outer-call before openai",
            "inner-call before openai",
        ])
    );
    let items: Vec<_> = stream.collect().await;
    assert!(matches!(items.last(), Some(Ok(StreamChunk::Done(_)))));
    assert_eq!(
        world.events(),
        events(&[
            "inner-call after openai: succeeded",
            "outer-call after openai: succeeded",
            "inner-request after streamed by openai",
            "outer-request after streamed by openai",
        ])
    );

    // The cached answer replayed to a stream: the request layers only.
    let replayed: Vec<_> = world
        .adapter
        .stream_completion(request("stream it"))
        .await
        .unwrap()
        .collect()
        .await;
    let Some(Ok(StreamChunk::Done(summary))) = replayed.last() else {
        panic!("{replayed:?}")
    };
    assert!(summary.cached);
    assert_eq!(
        world.events(),
        events(&[
            "outer-request before",
            "inner-request before",
            "inner-request after streamed from cache",
            "outer-request after streamed from cache",
        ])
    );
}

#[tokio::test]
async fn a_stream_interrupted_after_its_first_chunk_is_a_failed_call_and_request() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![
            delta("partial "),
            StreamStep::Fail(ErrorSpec::new(ErrorKind::ModelError)),
        ])),
        ScriptedProvider::always(OPENAI, "never spliced in"),
        two_of_each,
    );
    let items: Vec<_> = world
        .adapter
        .stream_completion(request("interrupted"))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(matches!(
        items.last(),
        Some(Err(FailoverError::StreamInterrupted { .. }))
    ));
    assert_eq!(
        world.events()[4..],
        events(&[
            "inner-call after bedrock: failed: model_error",
            "outer-call after bedrock: failed: model_error",
            "inner-request after failed: stream interrupted: model_error",
            "outer-request after failed: stream interrupted: model_error",
        ])
    );
    assert_eq!(world.openai.call_count(), 0);
}

#[tokio::test]
async fn a_dropped_stream_is_cancelled_for_its_call_then_for_the_request() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![
            delta("first "),
            StreamStep::Pause(Duration::from_secs(3600)),
            StreamStep::Finish {
                usage: Some(TokenUsage::new(5, 5)),
                finish_reason: FinishReason::Stop,
            },
        ])),
        ScriptedProvider::always(OPENAI, "unused"),
        two_of_each,
    );
    let mut stream = world
        .adapter
        .stream_completion(request("dropped"))
        .await
        .unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamChunk::Delta { .. }))
    ));
    drop(stream);
    assert_eq!(
        world.events()[4..],
        events(&[
            "inner-call after bedrock: cancelled",
            "outer-call after bedrock: cancelled",
            "inner-request after cancelled",
            "outer-request after cancelled",
        ])
    );
    let records = world.sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, UsageOutcome::Cancelled);
}
