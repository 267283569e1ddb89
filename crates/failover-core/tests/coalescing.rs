//! Coalescing with scripted providers and paused time: a failed leader releases its
//! followers into a new flight (one of them leads, the rest wait), an interrupted stream leader releases them while its caller still holds the
//! stream. (Coalescing on the real clients is in the scenario suite.)

mod common;

use std::time::Duration;

use common::{BEDROCK, OPENAI, World};
use failover_provider::{CompletionRequest, ErrorKind, StreamChunk};
use failover_testkit::{ErrorSpec, ScriptedProvider, Step, StreamStep};
use futures::StreamExt;

fn request(tenant: &str) -> CompletionRequest {
    CompletionRequest::prompt(tenant, "agent", "gpt-4", "the same question")
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
async fn a_failed_leader_re_forms_the_flight_instead_of_a_stampede() {
    const FOLLOWERS: usize = 8;
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .then(Step::fail(ErrorKind::InvalidRequest).after(Duration::from_millis(100)))
            .otherwise(Step::reply("second try").after(Duration::from_millis(100))),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let leader = world.adapter.generate_completion(request("t"));
    let followers = futures::future::join_all((0..FOLLOWERS).map(|_| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        world.adapter.generate_completion(request("t")).await
    }));
    let (leader, followers) = tokio::join!(leader, followers);
    assert!(leader.is_err());
    for follower in followers {
        assert_eq!(follower.unwrap().content, "second try");
    }
    // One follower led the second try; the others waited for it, not for the provider.
    assert_eq!(world.bedrock.call_count(), 2);
    assert_eq!(
        world.adapter.health().cache.unwrap().coalesced,
        u64::try_from(FOLLOWERS - 1).unwrap()
    );
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
