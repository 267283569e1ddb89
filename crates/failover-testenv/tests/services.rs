//! Service discovery against a real `redis-server` spawned from `PATH`: under the service
//! harness, so a machine without the binary reports these tests as ignored, not passed.

use std::time::Duration;

use failover_testenv::require_service;
use failover_testenv::services::{DiscoveryEnv, Origin, discover, find_binary, redis};

failover_testenv::service_test_main! {
    service: "redis-server",
    available: find_binary("redis-server", std::env::var_os("PATH").as_deref())
        .ok_or("`redis-server` was not found on PATH"),
    tests: [
        without_a_url_a_redis_server_is_spawned_on_a_free_port,
        an_owned_server_stops_and_restarts_on_the_same_port,
    ],
}

async fn without_a_url_a_redis_server_is_spawned_on_a_free_port() {
    let env = DiscoveryEnv {
        url: None,
        path: std::env::var_os("PATH"),
        docker_host: None,
    };
    let service = require_service!(discover(&redis::SPEC, &env));
    assert_eq!(service.origin(), Origin::Spawned);
    let server = service.server().expect("spawned handle").clone();
    assert!(server.port() != 6379, "never the default port");
    assert_eq!(
        service.url(),
        format!("redis://127.0.0.1:{}", server.port())
    );
    assert!(server.answers(), "it answers PING");
    drop(service);
    let addr = server.addr();
    drop(server);
    assert!(
        !redis::redis_ping(addr, Duration::from_millis(200)),
        "dropping the last handle kills it"
    );
}

async fn an_owned_server_stops_and_restarts_on_the_same_port() {
    let server = require_service!(redis::spawn_owned());
    let port = server.port();
    assert!(server.answers());
    server.stop();
    assert!(!server.answers(), "stopped");
    server.restart().unwrap();
    assert_eq!(server.port(), port);
    assert!(server.answers(), "answers again on the same port");
}
