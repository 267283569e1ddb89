//! Identical concurrent requests of one tenant that miss the cache cause one provider call,
//! and every caller gets its answer — never across tenants, and never a failure imposed on
//! the followers.

use std::time::Duration;

use failover_provider::{CompletionRequest, ErrorKind, StreamChunk};
use failover_scenarios::{BEDROCK, OPENAI, World};
use failover_testkit::{ErrorSpec, ScriptedProvider, Step, StreamStep};
use futures::StreamExt;

fn request(tenant: &str) -> CompletionRequest {
    CompletionRequest::prompt(tenant, "agent", "gpt-4", "the same question")
}

#[tokio::test(start_paused = true)]
async fn concurrent_identical_requests_share_one_provider_call() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .otherwise(Step::reply("shared answer").after(Duration::from_millis(200))),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let calls = (0..8).map(|_| world.adapter.generate_completion(request("tenant-a")));
    let results = futures::future::join_all(calls).await;
    assert_eq!(world.bedrock.call_count(), 1);
    let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert!(results.iter().all(|r| r.content == "shared answer"));
    assert_eq!(
        results.iter().filter(|r| !r.cached).count(),
        1,
        "one leader paid for the call"
    );
    assert_eq!(
        world.usage_records().len(),
        1,
        "one provider call, one usage record"
    );
    assert_eq!(world.adapter.health().cache.unwrap().coalesced, 7);
}

#[tokio::test(start_paused = true)]
async fn tenants_never_share_a_flight() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .otherwise(Step::reply("answer").after(Duration::from_millis(100))),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let (a, b) = tokio::join!(
        world.adapter.generate_completion(request("tenant-a")),
        world.adapter.generate_completion(request("tenant-b")),
    );
    assert!(!a.unwrap().cached && !b.unwrap().cached);
    assert_eq!(world.bedrock.call_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_leader_releases_its_followers_to_try_themselves() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .then(Step::fail(ErrorKind::InvalidRequest).after(Duration::from_millis(100)))
            .otherwise(Step::reply("second try")),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let (leader, follower) = tokio::join!(world.adapter.generate_completion(request("t")), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        world.adapter.generate_completion(request("t")).await
    });
    assert!(leader.is_err(), "the leader's own failure is its own");
    let follower = follower.unwrap();
    assert_eq!(follower.content, "second try");
    assert!(!follower.cached);
    assert_eq!(world.bedrock.call_count(), 2);
    assert_eq!(world.adapter.health().cache.unwrap().coalesced, 0);
}

#[tokio::test(start_paused = true)]
async fn a_stream_leader_answers_waiting_streams_and_plain_calls() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .otherwise(Step::reply("streamed once").after(Duration::from_millis(100))),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let stream_text = |world: &World| {
        let adapter = world.adapter.clone();
        async move {
            let chunks: Vec<_> = adapter
                .stream_completion(request("t"))
                .await
                .unwrap()
                .collect()
                .await;
            chunks
                .into_iter()
                .filter_map(|chunk| match chunk.unwrap() {
                    StreamChunk::Delta { text } => Some(text),
                    StreamChunk::Done(_) => None,
                })
                .collect::<String>()
        }
    };
    let (first, second, plain) = tokio::join!(stream_text(&world), stream_text(&world), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        world
            .adapter
            .generate_completion(request("t"))
            .await
            .unwrap()
    });
    assert_eq!(first, "streamed once");
    assert_eq!(second, "streamed once");
    assert_eq!(plain.content, "streamed once");
    assert_eq!(world.bedrock.call_count(), 1);
    assert_eq!(world.adapter.health().cache.unwrap().coalesced, 2);
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_stream_releases_its_followers_even_while_the_caller_holds_it() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .then(Step::Stream(vec![
                StreamStep::Delta("partial".into()),
                StreamStep::Pause(Duration::from_millis(100)),
                StreamStep::Fail(ErrorSpec::new(ErrorKind::ModelError)),
            ]))
            .otherwise(Step::reply("the follower's own answer")),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let mut leader = world.adapter.stream_completion(request("t")).await.unwrap();
    assert!(matches!(
        leader.next().await,
        Some(Ok(StreamChunk::Delta { .. }))
    ));
    let adapter = world.adapter.clone();
    let follower = tokio::spawn(async move { adapter.generate_completion(request("t")).await });
    assert!(matches!(leader.next().await, Some(Err(_))));
    // The leader's stream is still alive; the follower must not wait for it to be dropped.
    let answer = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer.content, "the follower's own answer");
    drop(leader);
}
