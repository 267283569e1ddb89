//! DynamoDB endpoints for tests: `DYNAMODB_ENDPOINT` when set, else `moto_server` (PyPI
//! `moto[server]`) spawned on a free port of 127.0.0.1, else an [`Unavailable`] that
//! [`require_service!`](crate::require_service) turns into a visible skip (a failure under
//! `FAILOVER_REQUIRE_SERVICES=1`).
//!
//! Built on [`services`](crate::services): the same free-port spawn, readiness probe,
//! kill-on-drop, watchdog and skip reporting as Redis. moto is started through
//! `sh -c 'exec moto_server … >/dev/null 2>&1'` because it logs every request to stderr,
//! and [`LocalServer`] pipes stderr without draining it after start: a chatty server would
//! block once the pipe fills.
//!
//! Isolation: one moto serves many tests; each test creates its own table with
//! [`unique_table_name`] (never `/moto-api/reset`, tests run in parallel). A test that
//! kills the endpoint owns a private server ([`spawn_owned`]). moto keeps everything in
//! memory: a restarted moto is empty.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::services::{LocalServer, ServiceSpec, Unavailable, docker_engine, find_binary};

/// The env var with the URL of an existing DynamoDB endpoint.
pub const DYNAMODB_ENDPOINT_ENV: &str = "DYNAMODB_ENDPOINT";

/// The moto binary looked up on `PATH`.
pub const MOTO_BINARY: &str = "moto_server";

/// How to start and probe moto (the spawned binary is `sh`, which `exec`s moto with its
/// output discarded).
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "dynamodb (moto_server)",
    env_var: DYNAMODB_ENDPOINT_ENV,
    binary: "sh",
    args: moto_args,
    probe: moto_probe,
    url: moto_url,
    image: "motoserver/moto",
};

fn moto_args(port: u16, _dir: &Path) -> Vec<OsString> {
    vec![
        OsString::from("-c"),
        OsString::from(format!(
            "exec {MOTO_BINARY} -H 127.0.0.1 -p {port} >/dev/null 2>&1"
        )),
    ]
}

fn moto_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Whether an HTTP server at `addr` answers (moto answers `GET /moto-api/`).
pub fn moto_probe(addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if n >= 8 && buf.starts_with(b"HTTP/1."))
}

/// A DynamoDB endpoint for tests.
#[derive(Debug, Clone)]
pub struct DynamoDbEndpoint {
    url: String,
    server: Option<Arc<LocalServer>>,
}

impl DynamoDbEndpoint {
    /// The endpoint URL (`http://127.0.0.1:PORT` for a spawned moto).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this process spawned it.
    pub fn spawned(&self) -> bool {
        self.server.is_some()
    }
}

fn spawn_moto(service: &'static str) -> Result<LocalServer, Unavailable> {
    let unavailable = |reasons: Vec<String>| Unavailable { service, reasons };
    let path = std::env::var_os("PATH");
    if find_binary(MOTO_BINARY, path.as_deref()).is_none() {
        return Err(unavailable(vec![format!(
            "`{MOTO_BINARY}` was not found on PATH (`python3 -m pip install \"moto[server]\"`)"
        )]));
    }
    let sh = find_binary("sh", path.as_deref())
        .ok_or_else(|| unavailable(vec!["`sh` was not found on PATH".into()]))?;
    LocalServer::spawn(SPEC, sh).map_err(|e| unavailable(vec![e]))
}

/// Discovers an endpoint: `DYNAMODB_ENDPOINT` (used as is), else a new `moto_server` on a
/// free port (killed when the last handle drops), else every reason.
pub fn discover() -> Result<DynamoDbEndpoint, Unavailable> {
    if let Some(url) = std::env::var(DYNAMODB_ENDPOINT_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        return Ok(DynamoDbEndpoint {
            url: url.trim().to_owned(),
            server: None,
        });
    }
    let mut reasons = vec![format!("{DYNAMODB_ENDPOINT_ENV} is not set")];
    match spawn_moto(SPEC.name) {
        Ok(server) => {
            return Ok(DynamoDbEndpoint {
                url: server.url(),
                server: Some(Arc::new(server)),
            });
        }
        Err(unavailable) => reasons.extend(unavailable.reasons),
    }
    match docker_engine(std::env::var("DOCKER_HOST").ok().as_deref()) {
        Ok(at) => reasons.push(format!(
            "a Docker engine answers at {at}, but this testkit has no testcontainers backend \
             (it would run `{}`)",
            SPEC.image
        )),
        Err(why) => reasons.push(why),
    }
    Err(Unavailable {
        service: SPEC.name,
        reasons,
    })
}

/// One endpoint for the whole test binary (discovered once; a spawned moto lives until
/// the binary exits, then its watchdog kills it). Tests sharing it use their own tables.
pub fn shared() -> Result<DynamoDbEndpoint, Unavailable> {
    static SHARED: OnceLock<Result<DynamoDbEndpoint, Unavailable>> = OnceLock::new();
    SHARED.get_or_init(discover).clone()
}

/// A moto this test owns and may stop and restart on the same port. Needs the binary
/// even when `DYNAMODB_ENDPOINT` is set (an external endpoint cannot be restarted).
pub fn spawn_owned() -> Result<MotoServer, Unavailable> {
    spawn_moto("dynamodb (owned, restartable moto_server)").map(crate::services::OwnedServer::new)
}

/// A `moto_server` owned by one test: stop it, start it again on the same port (its
/// tables are gone then).
pub type MotoServer = crate::services::OwnedServer;

/// A table name unique to this call: `{prefix}-{time}-{pid}-{counter}` (DynamoDB names
/// allow `[a-zA-Z0-9_.-]`, 3–255 characters).
pub fn unique_table_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "{clean}-{nanos:x}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_unique_and_valid() {
        let a = unique_table_name("usage test/1");
        let b = unique_table_name("usage test/1");
        assert_ne!(a, b);
        assert!(a.starts_with("usage-test-1-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
    }

    #[test]
    fn an_owned_moto_stops_and_restarts_on_the_same_port() {
        let moto = crate::require_service!(spawn_owned());
        let port = moto.port();
        assert!(moto.answers());
        assert!(moto.url().starts_with("http://127.0.0.1:"));
        moto.stop();
        assert!(!moto.answers(), "stopped");
        moto.restart().unwrap();
        assert_eq!(moto.port(), port);
        assert!(moto.answers(), "restarted on the same port");
    }
}
