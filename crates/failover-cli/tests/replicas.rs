//! Three `failover serve` processes behind one `redis-server`, sharing breakers and
//! budgets (`[shared]`), in front of one OpenAI stand-in that counts what reaches it.
//!
//! Under failover-testenv's service harness: without `redis-server` the tests are reported
//! as ignored (failed under `FAILOVER_REQUIRE_SERVICES=1`), never as passed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use failover_server::KeyHash;
use failover_standin::{Fault, StandIns, Vendor};
use failover_testenv::require_service;
use failover_testenv::services::redis;
use serde_json::{Value, json};

failover_testenv::service_test_main! {
    service: "redis-server (owned by each test) and a redis cluster",
    available: redis::spawn_owned()
        .map(|server| server.stop())
        .and_then(|()| redis::shared_cluster().map(drop)),
    tests: [
        replica_trip_is_seen_by_every_replica,
        replica_half_open_admits_exactly_the_configured_probes,
        replica_killed_holding_a_probe_lease_and_reservations_sticks_nothing,
        replica_budget_overspend_is_bounded,
        replica_redis_restart_keeps_answering_and_resyncs,
        replica_identical_requests_share_one_provider_call,
        replica_force_open_and_reset_are_seen_by_every_replica_within_a_second,
        replica_rate_limit_is_shared_and_answers_429_with_retry_after,
        replica_cluster_trip_is_seen_by_every_replica,
        replica_cluster_budget_overspend_is_bounded,
    ],
}

const KEY: &str = "sk-replicas-acme";
const OTHER_KEY: &str = "sk-replicas-beta";
const ADMIN_KEY: &str = "sk-replicas-admin";

/// One `failover serve` process; killed on drop.
struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn start(config: &std::path::Path, env: &[(&str, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_failover"))
            .args(["serve", "--config"])
            .arg(config)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("OPENAI_API_KEY", "sk-standin")
            .env("FAILOVER_LOG", "warn")
            .env_remove("FAILOVER_SHARED_REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the failover binary runs");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut log = String::new();
        let base = loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("failover serve exited before listening:\n{log}");
            }
            log.push_str(&line);
            if let Some(rest) = line.trim().strip_prefix("failover serve: listening on ") {
                break rest.to_owned();
            }
        };
        // Keep draining its log so the pipe never fills.
        std::thread::spawn(move || for _ in stderr.lines() {});
        Self { child, base }
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn ask(&self, client: &reqwest::Client, key: &str) -> u16 {
        client
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(key)
            .json(&json!({
                "model": "gpt-4",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "What is 2+2?"}],
            }))
            .send()
            .await
            .map(|response| response.status().as_u16())
            .unwrap_or(0)
    }

    async fn breaker(&self, client: &reqwest::Client) -> Value {
        let health: Value = client
            .get(format!("{}/health", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        health["providers"][0].clone()
    }
}

/// The configuration every replica of a test shares.
struct Setup {
    breaker: &'static str,
    limits: &'static str,
    probe_lease_ms: u64,
    /// The `[cache]` backend.
    cache: &'static str,
    /// More `[shared]` settings.
    shared: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            breaker: "",
            limits: "",
            probe_lease_ms: 30_000,
            cache: "none",
            shared: "",
        }
    }
}

/// Where the replicas' shared state lives: one node, or a cluster through its seeds.
struct Target {
    urls: Vec<String>,
    cluster: bool,
}

impl Target {
    fn node(url: String) -> Self {
        Self {
            urls: vec![url],
            cluster: false,
        }
    }

    fn cluster(cluster: &redis::RedisCluster) -> Self {
        Self {
            urls: cluster.urls(),
            cluster: true,
        }
    }
}

fn config(
    dir: &std::path::Path,
    target: &Target,
    standins: &StandIns,
    setup: &Setup,
) -> std::path::PathBuf {
    let prefix = format!("lf-replicas-{}", fastrand_suffix());
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_key_hash = "{admin}"

[[keys]]
name = "acme"
hash = "{acme}"
tenant = "acme"

[[keys]]
name = "beta"
hash = "{beta}"
tenant = "beta"

[providers]
order = ["openai"]

[providers.openai]
base_url = "{openai}"
max_attempts = 1

[breaker]
window_size = 100
minimum_calls = 100
jitter = 0.0
half_open_max_probes = 2
half_open_successes_to_close = 2
{breaker}

[cache]
backend = "{cache}"

[shared]
redis_urls = {urls:?}
cluster = {cluster}
key_prefix = "{prefix}"
probe_lease_ms = {lease}
operation_timeout_ms = 200
{shared}

{limits}
"#,
        acme = KeyHash::of(KEY),
        admin = KeyHash::of(ADMIN_KEY),
        urls = target.urls,
        cluster = target.cluster,
        beta = KeyHash::of(OTHER_KEY),
        openai = standins.openai_base_url(),
        breaker = setup.breaker,
        lease = setup.probe_lease_ms,
        limits = setup.limits,
        cache = setup.cache,
        shared = setup.shared,
    );
    let path = dir.join(format!("replica-{prefix}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn fastrand_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn scratch() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("failover-replicas-{}", fastrand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a test works with: the stand-ins every replica calls, three replicas of one
/// configuration (its file kept, to read the key prefix back), a client.
struct World {
    standins: StandIns,
    replicas: Vec<Replica>,
    client: reqwest::Client,
    config: std::path::PathBuf,
}

impl World {
    async fn start(target: &Target, setup: &Setup, env: &[(&str, String)]) -> Self {
        let standins = StandIns::start().await;
        let config = config(&scratch(), target, &standins, setup);
        let replicas = (0..3).map(|_| Replica::start(&config, env)).collect();
        Self {
            standins,
            replicas,
            client: reqwest::Client::new(),
            config,
        }
    }
}

/// Polls `check` every 10 ms until it holds or `within` passes; the time it took.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `redis-cli` (an independent client) reading one hash field of a tenant's spend.
fn spend_field(target: &Target, config: &std::path::Path, field: &str) -> i64 {
    let text = std::fs::read_to_string(config).unwrap();
    let prefix = text
        .lines()
        .find_map(|l| l.strip_prefix("key_prefix = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let day = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        / 86_400_000;
    let output = Command::new("redis-cli")
        .args(if target.cluster { &["-c"][..] } else { &[][..] })
        .args(["-u", &target.urls[0], "--no-raw", "HGET"])
        .arg(format!("{{{prefix}:tenant:acme}}:spend"))
        .arg(format!("{field}:{day}"))
        .output()
        .expect("redis-cli runs");
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().trim_matches('"').parse().unwrap_or(0)
}

async fn replica_trip_is_seen_by_every_replica() {
    let server = require_service!(redis::spawn_owned());
    trip_is_seen_by_every_replica(Target::node(server.url())).await;
}

async fn replica_cluster_trip_is_seen_by_every_replica() {
    let cluster = require_service!(redis::shared_cluster());
    trip_is_seen_by_every_replica(Target::cluster(&cluster)).await;
}

async fn trip_is_seen_by_every_replica(target: Target) {
    let World {
        standins,
        replicas,
        client,
        ..
    } = World::start(
        &target,
        &Setup {
            breaker: "consecutive_failures = 3\nopen_ms = 60000",
            ..Setup::default()
        },
        &[],
    )
    .await;
    standins.inject(Vendor::OpenAi, Fault::Unavailable, 3).await;

    // Two failures on replica 1 and one on replica 2: no replica alone saw three.
    for replica in [&replicas[0], &replicas[0], &replicas[1]] {
        assert_ne!(replica.ask(&client, KEY).await, 200);
    }
    assert_eq!(standins.calls(Vendor::OpenAi).await, 3);
    let lag = eventually(
        Duration::from_secs(1),
        "replica 3 sees the trip",
        || async { replicas[2].breaker(&client).await["state"] == "OPEN" },
    )
    .await;
    eprintln!("replica 3 saw the trip after {lag:?}");
    for _ in 0..10 {
        assert_eq!(replicas[2].ask(&client, KEY).await, 503);
    }
    assert_eq!(
        standins.calls(Vendor::OpenAi).await,
        3,
        "no request from replica 3 reached the failing provider"
    );
}

async fn trip_and_wait_for_probes(
    replicas: &[Replica],
    standins: &StandIns,
    client: &reqwest::Client,
) {
    standins.inject(Vendor::OpenAi, Fault::Unavailable, 3).await;
    for _ in 0..3 {
        assert_ne!(replicas[0].ask(client, KEY).await, 200);
    }
    // The trip is the third outcome's script reply, which the replica reads in the
    // background: wait for its view to say so.
    let started = Instant::now();
    let open_for = loop {
        let breaker = replicas[0].breaker(client).await;
        if let (Some(ms), true) = (breaker["open_for_ms"].as_u64(), breaker["state"] == "OPEN") {
            break ms;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "replica 1 sees its trip: {breaker}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The open period is the event to wait for; the record's end is on Redis's clock.
    tokio::time::sleep(Duration::from_millis(open_for + 50)).await;
}

async fn replica_half_open_admits_exactly_the_configured_probes() {
    let server = require_service!(redis::spawn_owned());
    let target = Target::node(server.url());
    let World {
        standins,
        replicas,
        client,
        ..
    } = World::start(
        &target,
        &Setup {
            breaker: "consecutive_failures = 3\nopen_ms = 1000",
            ..Setup::default()
        },
        &[],
    )
    .await;
    trip_and_wait_for_probes(&replicas, &standins, &client).await;
    let before = standins.calls(Vendor::OpenAi).await;
    // Probes answer slowly (5 s), so all 64 requests arrive while they are in flight, even
    // on a loaded machine.
    standins
        .inject(Vendor::OpenAi, Fault::Slow(Duration::from_secs(5)), 64)
        .await;
    let statuses =
        futures::future::join_all((0..64).map(|i| replicas[i % 3].ask(&client, KEY))).await;
    let reached = standins.calls(Vendor::OpenAi).await - before;
    let answered = statuses.iter().filter(|s| **s == 200).count();
    eprintln!(
        "64 concurrent requests in HALF_OPEN over 3 replicas: {reached} reached the provider, {answered} answered"
    );
    assert_eq!(
        reached, 2,
        "exactly half_open_max_probes probes: {statuses:?}"
    );
    assert_eq!(answered, 2, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    eventually(
        Duration::from_secs(1),
        "the two probe successes close it",
        || async { replicas[1].breaker(&client).await["state"] == "CLOSED" },
    )
    .await;
}

async fn replica_killed_holding_a_probe_lease_and_reservations_sticks_nothing() {
    let server = require_service!(redis::spawn_owned());
    let target = Target::node(server.url());
    let World {
        standins,
        mut replicas,
        client,
        config,
    } = World::start(&target, &Setup {
            breaker: "consecutive_failures = 3\nopen_ms = 500",
            limits: "[shared.limits]\nreservation_lease_secs = 2\n[shared.limits.default]\nusd_per_day = \"1000\"\n",
            probe_lease_ms: 1500,
            ..Setup::default()
        }, &[]).await;
    trip_and_wait_for_probes(&replicas, &standins, &client).await;
    let before = standins.calls(Vendor::OpenAi).await;
    standins
        .inject(Vendor::OpenAi, Fault::Slow(Duration::from_secs(60)), 2)
        .await;
    // Replica 1 takes both probe leases (and reserves two estimates), then dies.
    let victim_base = replicas[0].base.clone();
    let hung: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            let base = victim_base.clone();
            tokio::spawn(async move {
                let _ = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .json(&json!({"model": "gpt-4", "max_tokens": 50,
                        "messages": [{"role": "user", "content": "What is 2+2?"}]}))
                    .send()
                    .await;
            })
        })
        .collect();
    eventually(
        Duration::from_secs(5),
        "both probes reach the provider",
        || async { standins.calls(Vendor::OpenAi).await == before + 2 },
    )
    .await;
    let reserved = spend_field(&target, &config, "rd");
    assert!(reserved > 0, "the two requests hold reservations");
    replicas[0].kill();
    for task in hung {
        let _ = task.await;
    }
    // Both slots are still leased to the dead replica: refused at once.
    assert_eq!(replicas[1].ask(&client, KEY).await, 503);
    // The leases expire; probes from the living replicas get a verdict (the stand-in
    // answers again) and the breaker closes.
    let took = eventually(
        Duration::from_secs(10),
        "a probe after the dead replica's lease expired",
        || async { replicas[1].ask(&client, KEY).await == 200 },
    )
    .await;
    eprintln!("a probe was admitted {took:?} after the kill (lease 1.5 s)");
    eventually(Duration::from_secs(10), "the breaker closes", || async {
        replicas[2].ask(&client, KEY).await == 200
            && replicas[2].breaker(&client).await["state"] == "CLOSED"
    })
    .await;
    // The dead replica's reservations come back when their lease runs out (2 s).
    eventually(
        Duration::from_secs(10),
        "the dead replica's reservations return",
        || async {
            replicas[1].ask(&client, KEY).await == 200 && spend_field(&target, &config, "rd") == 0
        },
    )
    .await;
    assert!(
        spend_field(&target, &config, "d") > 0,
        "the living requests' spend is kept"
    );
}

async fn replica_budget_overspend_is_bounded() {
    let server = require_service!(redis::spawn_owned());
    budget_overspend_is_bounded(Target::node(server.url())).await;
}

async fn replica_cluster_budget_overspend_is_bounded() {
    let cluster = require_service!(redis::shared_cluster());
    budget_overspend_is_bounded(Target::cluster(&cluster)).await;
}

async fn budget_overspend_is_bounded(target: Target) {
    // gpt-4 on OpenAI: one request's estimate (4 input tokens, 50 output) is a few
    // thousandths of a dollar; the budget admits a few dozen of them.
    let World {
        standins,
        replicas,
        client,
        config,
    } = World::start(
        &target,
        &Setup {
            breaker: "consecutive_failures = 1000",
            limits: "[shared.limits.default]\nusd_per_day = \"0.05\"\n",
            ..Setup::default()
        },
        &[],
    )
    .await;
    let statuses =
        futures::future::join_all((0..200).map(|i| replicas[i % 3].ask(&client, KEY))).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 402).count();
    assert_eq!(ok + refused, 200, "{statuses:?}");
    assert!(refused > 0 && ok > 0, "{statuses:?}");
    eventually(Duration::from_secs(5), "every request settled", || async {
        spend_field(&target, &config, "rd") == 0
    })
    .await;
    let spent = spend_field(&target, &config, "d");
    let limit = 50_000_000; // $0.05 in nano-USD
    eprintln!(
        "budget $0.05/day, 200 concurrent requests over 3 replicas: {ok} answered, {refused} refused (402), \
         spent {spent} nano-USD, overspend {} nano-USD",
        (spent - limit).max(0)
    );
    assert_eq!(
        standins.calls(Vendor::OpenAi).await,
        ok,
        "every admitted request called once"
    );
    assert!(
        spent <= limit,
        "reservations keep the spend within the budget: {spent} > {limit}"
    );
}

async fn replica_redis_restart_keeps_answering_and_resyncs() {
    let server = require_service!(redis::spawn_owned());
    let target = Target::node(server.url());
    // Only acme has a budget: it fails closed; beta's rate limit fails open.
    let World {
        standins,
        replicas,
        client,
        ..
    } = World::start(&target, &Setup {
            breaker: "consecutive_failures = 3\nopen_ms = 60000",
            // Only acme has a budget: it fails closed; beta's rate limit fails open.
            limits: "[shared.limits.default]\nrequests_per_minute = 100000\n[shared.limits.tenants.acme]\nusd_per_day = \"1000\"\n",
            ..Setup::default()
        }, &[]).await;
    for replica in &replicas {
        assert_eq!(replica.ask(&client, KEY).await, 200);
        assert_eq!(replica.ask(&client, OTHER_KEY).await, 200);
    }
    server.stop();
    for replica in &replicas {
        assert_eq!(
            replica.ask(&client, OTHER_KEY).await,
            200,
            "answered with local breakers"
        );
        assert_eq!(
            replica.ask(&client, KEY).await,
            503,
            "a budget fails closed"
        );
    }
    // A provider failing while Redis is away is still cut off, by the local breakers.
    standins.inject(Vendor::OpenAi, Fault::Unavailable, 3).await;
    for _ in 0..3 {
        assert_ne!(replicas[0].ask(&client, OTHER_KEY).await, 200);
    }
    assert_eq!(replicas[0].breaker(&client).await["state"], "OPEN");
    server.restart().unwrap();
    // Re-synced: the replicas adopt the (empty, CLOSED) shared record and budgets work again.
    for replica in &replicas {
        eventually(Duration::from_secs(5), "the replica re-syncs", || async {
            replica.breaker(&client).await["state"] == "CLOSED"
                && replica.ask(&client, KEY).await == 200
        })
        .await;
    }
}

async fn replica_identical_requests_share_one_provider_call() {
    let server = require_service!(redis::spawn_owned());
    let target = Target::node(server.url());
    // One cache for the three replicas: the same endpoint and the same secrets.
    let env = [
        ("ELASTICACHE_ENDPOINT", target.urls[0].clone()),
        ("FAILOVER_CACHE_ENCRYPTION_KEY", "ab".repeat(32)),
        (
            "FAILOVER_CACHE_KEY",
            "replicas-test-cache-key-secret-0123456789".to_owned(),
        ),
    ];
    let World {
        standins,
        replicas,
        client,
        ..
    } = World::start(
        &target,
        &Setup {
            cache: "elasticache",
            shared: "coalesce = true",
            ..Setup::default()
        },
        &env,
    )
    .await;
    // The provider answers slowly, so every request arrives while the first is in flight.
    standins
        .inject(
            Vendor::OpenAi,
            Fault::Slow(Duration::from_millis(1500)),
            100,
        )
        .await;
    let statuses =
        futures::future::join_all((0..9).map(|i| replicas[i % 3].ask(&client, KEY))).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        standins.calls(Vendor::OpenAi).await,
        1,
        "nine identical requests over three replicas, one provider call"
    );
}

async fn admin(replica: &Replica, client: &reqwest::Client, action: &str) {
    let response = client
        .post(format!("{}/admin/breakers/openai/{action}", replica.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{action}");
}

async fn replica_force_open_and_reset_are_seen_by_every_replica_within_a_second() {
    let server = require_service!(redis::spawn_owned());
    let target = Target::node(server.url());
    let World {
        standins,
        replicas,
        client,
        ..
    } = World::start(&target, &Setup::default(), &[]).await;
    admin(&replicas[0], &client, "force-open").await;
    for replica in &replicas {
        let took = eventually(Duration::from_secs(1), "FORCED_OPEN everywhere", || async {
            replica.breaker(&client).await["state"] == "FORCED_OPEN"
        })
        .await;
        eprintln!("force-open seen by {} after {took:?}", replica.base);
        assert_eq!(replica.ask(&client, KEY).await, 503);
    }
    assert_eq!(standins.calls(Vendor::OpenAi).await, 0);
    admin(&replicas[1], &client, "reset").await;
    for replica in &replicas {
        eventually(Duration::from_secs(1), "CLOSED everywhere", || async {
            replica.breaker(&client).await["state"] == "CLOSED"
        })
        .await;
        assert_eq!(replica.ask(&client, KEY).await, 200);
    }
}

async fn replica_rate_limit_is_shared_and_answers_429_with_retry_after() {
    let server = require_service!(redis::spawn_owned());
    let target = Target::node(server.url());
    let World {
        standins,
        replicas,
        client,
        ..
    } = World::start(
        &target,
        &Setup {
            limits: "[shared.limits.default]\nrequests_per_minute = 6\n",
            ..Setup::default()
        },
        &[],
    )
    .await;
    // Sequential, round robin: the limit counts requests of every replica.
    for i in 0..6 {
        assert_eq!(replicas[i % 3].ask(&client, KEY).await, 200, "request {i}");
    }
    for replica in &replicas {
        let response = client
            .post(format!("{}/v1/chat/completions", replica.base))
            .bearer_auth(KEY)
            .json(&json!({"model": "gpt-4", "max_tokens": 50,
                "messages": [{"role": "user", "content": "What is 2+2?"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 429);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("requests_per_minute"), "{message}");
    }
    // Another tenant has its own count.
    assert_eq!(replicas[0].ask(&client, OTHER_KEY).await, 200);
    assert_eq!(standins.calls(Vendor::OpenAi).await, 7);
}
