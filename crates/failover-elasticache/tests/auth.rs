//! AUTH: a password-protected server (`requirepass`) and an ACL user; credentials from the
//! config or the URL, never shown by `Debug`.

mod common;

use std::time::Duration;

use failover_cache::{Cache, CacheErrorKind};
use failover_elasticache::ElastiCacheCache;
use failover_testenv::require_service;
use failover_testenv::services::redis as redis_service;
use failover_testkit::suites::cache::{World, sample_completion};

failover_testenv::service_test_main! {
    service: "redis-server",
    available: failover_testenv::services::find_binary("redis-server", std::env::var_os("PATH").as_deref()).ok_or("`redis-server` was not found on PATH"),
    tests: [
        a_password_protected_server_needs_the_password,
        an_acl_user_from_the_url_or_the_config,
    ],
}

async fn a_password_protected_server_needs_the_password() {
    let server = require_service!(redis_service::spawn_owned_with_args(&[
        "--requirepass",
        "s3cret-pass"
    ]));
    let key = World::new().key("a", "q");

    let anonymous = common::cache(&server.url());
    let error = anonymous.get(&key).await.unwrap_err();
    assert_eq!(error.kind, CacheErrorKind::Unavailable, "{error}");
    assert!(!error.message.contains("s3cret-pass"));

    let config = common::config(&server.url()).with_credentials(None, Some("s3cret-pass".into()));
    let cache = ElastiCacheCache::new(config.clone()).unwrap();
    cache
        .put(&key, sample_completion("x"), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(cache.get(&key).await.unwrap().is_some());
    assert!(!format!("{config:?}{cache:?}").contains("s3cret-pass"));

    let wrong = common::config(&server.url()).with_credentials(None, Some("wrong-pass".into()));
    let error = ElastiCacheCache::new(wrong)
        .unwrap()
        .get(&key)
        .await
        .unwrap_err();
    assert!(!error.message.contains("wrong-pass"), "{error}");
}

async fn an_acl_user_from_the_url_or_the_config() {
    // redis-server joins the words after `--user` into one config line.
    let server = require_service!(redis_service::spawn_owned_with_args(&[
        "--user",
        "default",
        "off",
        "--user",
        "app",
        "on",
        ">app-pass",
        "~*",
        "&*",
        "+@all",
    ]));
    let key = World::new().key("a", "q");
    let port = server.port();

    let from_url = ElastiCacheCache::new(common::config(&format!(
        "redis://app:app-pass@127.0.0.1:{port}"
    )))
    .unwrap();
    from_url
        .put(&key, sample_completion("x"), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!format!("{from_url:?}").contains("app-pass"));

    let from_config = ElastiCacheCache::new(
        common::config(&server.url()).with_credentials(Some("app".into()), Some("app-pass".into())),
    )
    .unwrap();
    assert!(from_config.ping().await.is_ok());

    let nobody = common::cache(&server.url());
    assert!(nobody.get(&key).await.is_err(), "the default user is off");
}
