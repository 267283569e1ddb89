//! A caller's own mistake (an invalid request) is refused as it is: it never counts against
//! a provider's breaker and never fails over to another provider.

mod common;

use common::{BEDROCK, OPENAI, World};
use failover_breaker::BreakerState;
use failover_provider::{CompletionRequest, ErrorKind};
use failover_testkit::{ScriptedProvider, Step};

fn question(n: usize) -> CompletionRequest {
    common::request(&format!("question {n}"))
}

#[tokio::test]
async fn caller_faults_do_not_count_against_the_breaker_and_do_not_fail_over() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).otherwise(Step::fail(ErrorKind::InvalidRequest)),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    for n in 0..5 {
        let error = world
            .adapter
            .generate_completion(question(n))
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            failover_core::FailoverError::Refused {
                kind: ErrorKind::InvalidRequest,
                ..
            }
        ));
    }
    let snapshot = world.adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(snapshot.failures, 0);
    assert_eq!(world.openai.call_count(), 0);
}
