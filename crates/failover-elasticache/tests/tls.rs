//! `rediss://`: a TLS-enabled `redis-server` with a certificate from a private CA generated
//! for this test with the `openssl` CLI. Trusting that CA works; the platform's roots do
//! not know it, so without it the handshake is refused — an error, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use failover_cache::{Cache, CacheErrorKind};
use failover_elasticache::ElastiCacheCache;
use failover_testenv::require_service;
use failover_testenv::services::redis as redis_service;
use failover_testenv::services::{Unavailable, find_binary, free_port};
use failover_testkit::suites::cache::{World, sample_completion};

failover_testenv::service_test_main! {
    service: "redis-server and openssl",
    available: failover_testenv::services::find_binary("redis-server", std::env::var_os("PATH").as_deref()).ok_or("`redis-server` was not found on PATH").and_then(|_| failover_testenv::services::find_binary("openssl", std::env::var_os("PATH").as_deref()).ok_or("`openssl` was not found on PATH")),
    tests: [
        rediss_with_a_trusted_private_ca_works_and_an_unknown_ca_is_refused,
    ],
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a server certificate for 127.0.0.1, signed by it.
fn make_certs(dir: &Path) -> Result<(), Unavailable> {
    let unavailable = |reason: String| Unavailable {
        service: "openssl (TLS test certificates)",
        reasons: vec![reason],
    };
    let openssl = find_binary("openssl", std::env::var_os("PATH").as_deref())
        .ok_or_else(|| unavailable("`openssl` was not found on PATH".into()))?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=failover test CA",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    ];
    for args in steps {
        let output = Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| unavailable(format!("cannot run openssl: {e}")))?;
        if !output.status.success() {
            return Err(unavailable(format!(
                "openssl {} failed: {}",
                args[0],
                String::from_utf8_lossy(&output.stderr)
            )));
        }
    }
    Ok(())
}

async fn rediss_with_a_trusted_private_ca_works_and_an_unknown_ca_is_refused() {
    // The application's choice of crypto backend; the crate never installs one.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let scratch = Scratch(std::env::temp_dir().join(format!(
        "failover-elasticache-tls-{}-{:016x}",
        std::process::id(),
        common::random_u64()
    )));
    std::fs::create_dir_all(&scratch.0).unwrap();
    require_service!(make_certs(&scratch.0));
    let file = |name: &str| scratch.0.join(name).display().to_string();
    let tls_port = free_port().unwrap().to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let _server = require_service!(redis_service::spawn_owned_with_args(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]));
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let ca_pem = std::fs::read(scratch.0.join("ca.crt")).unwrap();
    let entry = World::new().key("a", "q");

    let cache = ElastiCacheCache::new(
        common::config(&url)
            .with_tls_root_cert(ca_pem)
            .with_operation_timeout(Duration::from_secs(2))
            .with_connect_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    cache
        .put(
            &entry,
            sample_completion("over TLS"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        cache.get(&entry).await.unwrap().unwrap().content,
        "over TLS"
    );

    // The platform's roots do not know the test CA: refused, as an error.
    let untrusted = ElastiCacheCache::new(common::config(&url)).unwrap();
    let error = untrusted.get(&entry).await.unwrap_err();
    assert_eq!(error.kind, CacheErrorKind::Unavailable, "{error}");

    // Plain text against the TLS port is no connection either.
    let plain =
        ElastiCacheCache::new(common::config(&format!("redis://127.0.0.1:{tls_port}"))).unwrap();
    assert!(plain.get(&entry).await.is_err());
}
