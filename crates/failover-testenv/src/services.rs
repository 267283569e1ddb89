//! Service discovery for tests that need a real server (Redis now; DynamoDB next).
//!
//! Order, per service ([`ServiceSpec`]):
//!
//! 1. **An env URL** (`REDIS_URL`): used as is, never probed and never replaced — a
//!    misconfigured URL fails the tests loudly instead of silently testing something else.
//! 2. **Spawn a local binary** (`redis-server` from `PATH`) on a free port of 127.0.0.1,
//!    wait until it answers, and kill it when the handle drops (a watchdog also kills it
//!    when the test process exits, for servers kept in a `static`).
//! 3. **testcontainers** when a Docker engine answers: the engine is *detected* by
//!    connecting to `DOCKER_HOST` / `/var/run/docker.sock` and asking `GET /_ping`, not
//!    by the socket file existing. The container path itself is **not implemented** (the
//!    `testcontainers-modules` dependency was left out to keep builds light); when an
//!    engine answers, the skip reason says exactly that.
//! 4. **Unavailable**: an [`Unavailable`] carrying every reason. A test binary that needs
//!    a service runs under the [service harness](crate::harness), which reports each of
//!    its tests as *ignored* with those reasons — or as *failed* under
//!    `FAILOVER_REQUIRE_SERVICES=1` — never as passed.
//!
//! See the crate README, "Services and skips", for why a skip is reported the way it is.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The env var that turns every skip into a failure (CI sets it).
pub const REQUIRE_SERVICES_ENV: &str = "FAILOVER_REQUIRE_SERVICES";

/// How long a spawned server may take to answer its first probe.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to find, start and probe one kind of service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Short name for messages (`"redis"`).
    pub name: &'static str,
    /// The env var holding a URL of an existing server (`"REDIS_URL"`).
    pub env_var: &'static str,
    /// The binary to spawn, looked up on `PATH` (`"redis-server"`).
    pub binary: &'static str,
    /// Arguments that start the binary on `port` of 127.0.0.1, writing files (if any) under
    /// `dir`.
    pub args: fn(port: u16, dir: &Path) -> Vec<OsString>,
    /// Whether the server at `addr` answers a protocol-level request within `timeout`.
    pub probe: fn(addr: SocketAddr, timeout: Duration) -> bool,
    /// The URL of a server at `addr`.
    pub url: fn(addr: SocketAddr) -> String,
    /// The container image the testcontainers path would run (documentation only for now).
    pub image: &'static str,
}

/// Where a service came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The spec's env var.
    Env,
    /// A local binary this process spawned.
    Spawned,
}

/// A reachable service.
#[derive(Debug, Clone)]
pub struct Service {
    url: String,
    origin: Origin,
    server: Option<Arc<LocalServer>>,
}

impl Service {
    /// The URL to connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where it came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The spawned process, when this process spawned it.
    pub fn server(&self) -> Option<&Arc<LocalServer>> {
        self.server.as_ref()
    }
}

/// Why no server could be found: one reason per discovery step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// The service.
    pub service: &'static str,
    /// What each step found.
    pub reasons: Vec<String>,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no {} server: {}", self.service, self.reasons.join("; "))
    }
}

impl std::error::Error for Unavailable {}

/// The inputs of discovery, read from the process environment by
/// [`DiscoveryEnv::from_process`] or written out by a test (setting env vars is `unsafe`
/// in Rust 2024, so tests pass their own).
#[derive(Debug, Clone, Default)]
pub struct DiscoveryEnv {
    /// The value of the spec's env var.
    pub url: Option<String>,
    /// The `PATH` to search for the binary.
    pub path: Option<OsString>,
    /// `DOCKER_HOST`, if set.
    pub docker_host: Option<String>,
}

impl DiscoveryEnv {
    /// Reads the spec's env var, `PATH` and `DOCKER_HOST`.
    pub fn from_process(spec: &ServiceSpec) -> Self {
        Self {
            url: std::env::var(spec.env_var)
                .ok()
                .filter(|v| !v.trim().is_empty()),
            path: std::env::var_os("PATH"),
            docker_host: std::env::var("DOCKER_HOST").ok().filter(|v| !v.is_empty()),
        }
    }
}

/// Runs discovery for `spec` (see the module docs for the order).
pub fn discover(spec: &ServiceSpec, env: &DiscoveryEnv) -> Result<Service, Unavailable> {
    if let Some(url) = &env.url {
        return Ok(Service {
            url: url.trim().to_owned(),
            origin: Origin::Env,
            server: None,
        });
    }
    let mut reasons = vec![format!("{} is not set", spec.env_var)];
    match find_binary(spec.binary, env.path.as_deref()) {
        Some(binary) => match LocalServer::spawn(*spec, binary) {
            Ok(server) => {
                return Ok(Service {
                    url: server.url(),
                    origin: Origin::Spawned,
                    server: Some(Arc::new(server)),
                });
            }
            Err(error) => reasons.push(error),
        },
        None => reasons.push(format!("`{}` was not found on PATH", spec.binary)),
    }
    match docker_engine(env.docker_host.as_deref()) {
        Ok(at) => reasons.push(format!(
            "a Docker engine answers at {at}, but this testkit has no testcontainers backend \
             (it would run `{}`; see the failover-testkit README)",
            spec.image
        )),
        Err(why) => reasons.push(why),
    }
    Err(Unavailable {
        service: spec.name,
        reasons,
    })
}

/// Whether `FAILOVER_REQUIRE_SERVICES` asks for every service (`1`, `true`, `yes`).
pub fn services_required() -> bool {
    std::env::var(REQUIRE_SERVICES_ENV)
        .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// Unwraps a discovered service inside a test body, or fails the test.
///
/// Under the [service harness](crate::harness) the binary's service was found before any
/// test ran, so a discovery that fails here (a second, owned server that cannot start) is a
/// real failure: the macro panics with every reason. It never ends a test early as if it
/// had passed.
#[macro_export]
macro_rules! require_service {
    ($discovery:expr) => {
        match $discovery {
            ::core::result::Result::Ok(service) => service,
            ::core::result::Result::Err(unavailable) => {
                ::core::panic!("a service the test needs is unavailable: {unavailable}")
            }
        }
    };
}

/// Looks `binary` up in the directories of `path`.
pub fn find_binary(binary: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A free TCP port on 127.0.0.1 (bound, read, released: another process could take it
/// before the server binds, so spawning retries on a failed start).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Detects a Docker engine by asking it `GET /_ping`. `Ok(where)` when it answers 200;
/// `Err(reason)` otherwise. Only local engines are probed (a unix socket, or a TCP
/// `DOCKER_HOST` on a loopback address).
pub fn docker_engine(docker_host: Option<&str>) -> Result<String, String> {
    let host = docker_host.unwrap_or("unix:///var/run/docker.sock");
    let request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let timeout = Duration::from_millis(500);
    let answer = if let Some(path) = host.strip_prefix("unix://") {
        let mut stream = std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| format!("no Docker engine at {host} ({e})"))?;
        let _ = stream.set_read_timeout(Some(timeout));
        let _ = stream.set_write_timeout(Some(timeout));
        http_exchange(&mut stream, request)
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        let addr: SocketAddr = addr
            .trim_end_matches('/')
            .parse()
            .map_err(|_| format!("DOCKER_HOST {host} is not an IP:port; not probed"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "DOCKER_HOST {host} is not a loopback address; not probed"
            ));
        }
        let mut stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("no Docker engine at {host} ({e})"))?;
        let _ = stream.set_read_timeout(Some(timeout));
        let _ = stream.set_write_timeout(Some(timeout));
        http_exchange(&mut stream, request)
    } else {
        return Err(format!(
            "DOCKER_HOST {host} has an unsupported scheme; not probed"
        ));
    };
    match answer {
        Ok(text) if text.starts_with("HTTP/1.") && text.contains(" 200") => Ok(host.to_owned()),
        Ok(text) => Err(format!(
            "{host} accepted a connection but did not answer /_ping with 200 ({:?})",
            text.lines().next().unwrap_or("")
        )),
        Err(e) => Err(format!("{host} did not answer /_ping ({e})")),
    }
}

fn http_exchange(stream: &mut (impl Read + Write), request: &[u8]) -> std::io::Result<String> {
    stream.write_all(request)?;
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A server process this test process spawned on a fixed port of 127.0.0.1.
///
/// [`stop`](LocalServer::stop) kills it; [`start`](LocalServer::start) starts it again on
/// the same port (for restart tests). Dropping the handle kills the process; a small
/// watchdog (`sh`) also kills it once the test process is gone, so a server kept in a
/// `static` does not outlive the test binary by more than a second.
#[derive(Debug)]
pub struct LocalServer {
    spec: ServiceSpec,
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    extra_args: Vec<OsString>,
    child: Mutex<Option<Child>>,
}

impl LocalServer {
    /// Spawns `binary` for `spec` on a free port and waits until it answers. Retries with
    /// another port when the start fails (a port taken in the meantime).
    pub fn spawn(spec: ServiceSpec, binary: PathBuf) -> Result<Self, String> {
        Self::spawn_with_args(spec, binary, Vec::new())
    }

    /// Like [`LocalServer::spawn`], appending `extra_args` to the spec's arguments (e.g.
    /// `--requirepass` for an authentication test).
    pub fn spawn_with_args(
        spec: ServiceSpec,
        binary: PathBuf,
        extra_args: Vec<OsString>,
    ) -> Result<Self, String> {
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            // Its own directory (cluster state files, dumps if any), removed on drop.
            let dir = std::env::temp_dir().join(format!(
                "failover-testkit-{}-{}-{port}",
                spec.name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect::<String>(),
                std::process::id()
            ));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let server = Self {
                spec,
                binary: binary.clone(),
                dir: dir.clone(),
                port,
                extra_args: extra_args.clone(),
                child: Mutex::new(None),
            };
            match server.start() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL.
    pub fn url(&self) -> String {
        (self.spec.url)(self.addr())
    }

    /// Whether it answers a probe now.
    pub fn answers(&self) -> bool {
        (self.spec.probe)(self.addr(), Duration::from_millis(500))
    }

    /// Kills the process and waits for it to exit. A no-op when it is not running.
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut running) = child.take() {
            let _ = running.kill();
            let _ = running.wait();
        }
    }

    /// Starts the process on its port (again) and waits until it answers.
    pub fn start(&self) -> Result<(), String> {
        self.stop();
        let mut child = Command::new(&self.binary)
            .args((self.spec.args)(self.port, &self.dir))
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        watchdog(child.id(), &self.dir);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // Servers log to stdout (redis-server) or stderr: keep both for the reason.
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stdout.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                let stderr: String = stderr
                    .lines()
                    .filter(|l| l.contains('#') || l.to_lowercase().contains("error"))
                    .collect::<Vec<_>>()
                    .join(" | ");
                return Err(format!(
                    "{} exited at start on port {} ({status}): {}",
                    self.binary.display(),
                    self.port,
                    stderr.trim()
                ));
            }
            if (self.spec.probe)(self.addr(), Duration::from_millis(200)) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not answer on port {} within {STARTUP_TIMEOUT:?}",
                    self.binary.display(),
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Drain the server's output so a full pipe never blocks it.
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let _ = std::thread::Builder::new()
                .name("server-output".into())
                .spawn(move || {
                    let mut pipe = pipe;
                    let _ = std::io::copy(&mut pipe, &mut std::io::sink());
                });
        }
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Once this process is gone, kills `server_pid` and removes `dir`; exits by itself
/// (touching nothing) when the server stops first.
fn watchdog(server_pid: u32, dir: &Path) {
    let script = "while kill -0 \"$0\" 2>/dev/null && kill -0 \"$1\" 2>/dev/null; do sleep 1; \
                  done; if ! kill -0 \"$0\" 2>/dev/null; then kill -9 \"$1\" 2>/dev/null; \
                  rm -rf \"$2\"; fi";
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(std::process::id().to_string())
        .arg(server_pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A listener on 127.0.0.1 that accepts every connection and never answers: the shape of
/// a black-holed endpoint (a security group dropping replies, a hung server). Stops
/// accepting and closes everything on drop.
#[derive(Debug)]
pub struct BlackHole {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BlackHole {
    /// Starts one on a free port.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let accepted = accepted.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("black-hole".into())
                .spawn(move || {
                    let mut held = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                held.push(stream);
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })?
        };
        Ok(Self {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (proof that a client did connect and then waited).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A server owned by one test (a `redis-server`, a `moto_server`): it can be killed, as a
/// crash would, and started again on the same port, empty.
#[derive(Debug)]
pub struct OwnedServer {
    server: LocalServer,
}

impl OwnedServer {
    pub(crate) fn new(server: LocalServer) -> Self {
        Self { server }
    }

    /// Its URL (`redis://127.0.0.1:PORT`, `http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Whether it answers its protocol's probe now.
    pub fn answers(&self) -> bool {
        self.server.answers()
    }

    /// Kills it (no graceful shutdown) and waits for the exit.
    pub fn stop(&self) {
        self.server.stop();
    }

    /// Starts it again on the same port, empty, and waits until it answers.
    pub fn restart(&self) -> Result<(), String> {
        self.server.start()
    }
}

pub mod redis {
    //! Redis: `REDIS_URL`, else `redis-server` on a free port, else a visible skip.

    use super::*;

    /// The env var with the URL of an existing Redis.
    pub const REDIS_URL_ENV: &str = "REDIS_URL";

    /// How to find, start and probe Redis.
    pub const SPEC: ServiceSpec = ServiceSpec {
        name: "redis",
        env_var: REDIS_URL_ENV,
        binary: "redis-server",
        args: redis_args,
        probe: redis_ping,
        url: redis_url,
        image: "redis:7",
    };

    fn redis_args(port: u16, dir: &Path) -> Vec<OsString> {
        [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
            "--dir",
        ]
        .iter()
        .map(OsString::from)
        .chain([dir.as_os_str().to_owned()])
        .collect()
    }

    fn redis_url(addr: SocketAddr) -> String {
        format!("redis://{addr}")
    }

    /// Whether a Redis at `addr` answers `PING` (`+PONG`, or an auth error: it answers).
    pub fn redis_ping(addr: SocketAddr, timeout: Duration) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(timeout));
        let _ = stream.set_write_timeout(Some(timeout));
        if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"),
            _ => false,
        }
    }

    /// Discovers Redis from the process environment; spawns a new server each call when
    /// there is no `REDIS_URL`.
    pub fn discover() -> Result<Service, Unavailable> {
        super::discover(&SPEC, &DiscoveryEnv::from_process(&SPEC))
    }

    /// One Redis for the whole test binary (discovered once; a spawned server lives until
    /// the binary exits). Tests sharing it must use their own keys.
    pub fn shared() -> Result<Service, Unavailable> {
        static SHARED: OnceLock<Result<Service, Unavailable>> = OnceLock::new();
        SHARED.get_or_init(discover).clone()
    }

    /// A Redis this test owns and may stop and restart on the same port. Needs the
    /// binary even when `REDIS_URL` is set (an external server cannot be restarted).
    pub fn spawn_owned() -> Result<RedisServer, Unavailable> {
        spawn_owned_with_args(&[])
    }

    /// [`spawn_owned`] with extra `redis-server` arguments, e.g.
    /// `["--requirepass", "secret"]` or `["--user", "app on >pw ~* &* +@all"]`.
    pub fn spawn_owned_with_args(extra_args: &[&str]) -> Result<RedisServer, Unavailable> {
        let unavailable = |reason: String| Unavailable {
            service: "redis (owned, restartable)",
            reasons: vec![reason],
        };
        let binary =
            find_binary(SPEC.binary, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
                unavailable(format!(
                    "`{}` was not found on PATH (a restart test needs a server it can stop \
                     and start; {REDIS_URL_ENV} servers cannot be restarted by a test)",
                    SPEC.binary
                ))
            })?;
        LocalServer::spawn_with_args(
            SPEC,
            binary,
            extra_args.iter().map(OsString::from).collect(),
        )
        .map(super::OwnedServer::new)
        .map_err(unavailable)
    }

    /// How to start one node of a local Redis Cluster (same as [`SPEC`] plus cluster mode;
    /// each node keeps its cluster state in a file named after this process and its port).
    pub const CLUSTER_NODE_SPEC: ServiceSpec = ServiceSpec {
        args: cluster_node_args,
        ..SPEC
    };

    fn cluster_node_args(port: u16, dir: &Path) -> Vec<OsString> {
        let mut args = redis_args(port, dir);
        args.extend(
            [
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                cluster_state_file(port),
                "--cluster-node-timeout".to_owned(),
                "2000".to_owned(),
            ]
            .map(OsString::from),
        );
        args
    }

    fn cluster_state_file(_port: u16) -> String {
        // Relative to the node's own `--dir`.
        "nodes.conf".to_owned()
    }

    /// A local Redis Cluster of `primaries` nodes (no replicas), formed with
    /// `redis-cli --cluster create`. Killed on drop.
    #[derive(Debug)]
    pub struct RedisCluster {
        nodes: Vec<LocalServer>,
    }

    impl RedisCluster {
        /// `redis://127.0.0.1:PORT` of every node.
        pub fn urls(&self) -> Vec<String> {
            self.nodes.iter().map(LocalServer::url).collect()
        }
    }

    /// Spawns and forms a cluster of `primaries` (at least 3) nodes on free ports; waits
    /// until every node reports `cluster_state:ok`.
    pub fn spawn_cluster(primaries: usize) -> Result<RedisCluster, Unavailable> {
        let unavailable = |reason: String| Unavailable {
            service: "redis cluster",
            reasons: vec![reason],
        };
        let path = std::env::var_os("PATH");
        let server = find_binary(SPEC.binary, path.as_deref())
            .ok_or_else(|| unavailable("`redis-server` was not found on PATH".to_owned()))?;
        let cli = find_binary("redis-cli", path.as_deref())
            .ok_or_else(|| unavailable("`redis-cli` was not found on PATH".to_owned()))?;
        let mut nodes = Vec::new();
        for _ in 0..primaries.max(3) {
            nodes.push(LocalServer::spawn(CLUSTER_NODE_SPEC, server.clone()).map_err(unavailable)?);
        }
        let cluster = RedisCluster { nodes };
        let output = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(cluster.nodes.iter().map(|n| n.addr().to_string()))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| unavailable(format!("cannot run redis-cli: {e}")))?;
        if !output.status.success() {
            return Err(unavailable(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !cluster
            .nodes
            .iter()
            .all(|n| cluster_ok(n.addr(), Duration::from_millis(200)))
        {
            if Instant::now() > deadline {
                return Err(unavailable(
                    "the cluster did not reach cluster_state:ok in time".to_owned(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    fn cluster_ok(addr: SocketAddr, timeout: Duration) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(timeout));
        if stream
            .write_all(b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n")
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).contains("cluster_state:ok"),
            Err(_) => false,
        }
    }

    /// One cluster for the whole test binary (see [`shared`]).
    pub fn shared_cluster() -> Result<Arc<RedisCluster>, Unavailable> {
        static SHARED: OnceLock<Result<Arc<RedisCluster>, Unavailable>> = OnceLock::new();
        SHARED
            .get_or_init(|| spawn_cluster(3).map(Arc::new))
            .clone()
    }

    /// A `redis-server` owned by one test: stop it, start it again on the same port.
    pub type RedisServer = super::OwnedServer;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "failover-testkit-scratch-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn path(&self) -> OsString {
            self.0.clone().into_os_string()
        }

        fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn an_env_url_wins_and_is_used_as_is() {
        let empty = Scratch::new();
        let env = DiscoveryEnv {
            url: Some(" redis://127.0.0.1:1/3 ".into()),
            // Nothing on PATH and no Docker: the URL alone decides.
            path: Some(empty.path()),
            docker_host: Some("unix:///nonexistent/docker.sock".into()),
        };
        let service = discover(&redis::SPEC, &env).unwrap();
        assert_eq!(service.url(), "redis://127.0.0.1:1/3");
        assert_eq!(service.origin(), Origin::Env);
        assert!(service.server().is_none(), "nothing spawned");
    }

    #[test]
    fn nothing_found_gives_every_reason() {
        let empty = Scratch::new();
        let env = DiscoveryEnv {
            url: None,
            path: Some(empty.path()),
            docker_host: Some("unix:///nonexistent/docker.sock".into()),
        };
        let unavailable = discover(&redis::SPEC, &env).unwrap_err();
        let text = unavailable.to_string();
        assert!(text.starts_with("no redis server: "), "{text}");
        assert!(text.contains("REDIS_URL is not set"), "{text}");
        assert!(
            text.contains("`redis-server` was not found on PATH"),
            "{text}"
        );
        assert!(
            text.contains("no Docker engine at unix:///nonexistent/docker.sock"),
            "{text}"
        );
    }

    #[test]
    fn docker_detection_talks_to_the_engine_not_the_file() {
        // A socket file that exists but nobody serves: not an engine.
        let dir = Scratch::new();
        let dead = dir.join("dead.sock");
        let _ = std::fs::remove_file(&dead);
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        assert!(dead.exists());
        let reason = docker_engine(Some(&format!("unix://{}", dead.display()))).unwrap_err();
        assert!(reason.contains("no Docker engine"), "{reason}");

        // A fake engine that answers /_ping: detected.
        let live = dir.join("live.sock");
        let _ = std::fs::remove_file(&live);
        let listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let engine = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                .unwrap();
        });
        let host = format!("unix://{}", live.display());
        assert_eq!(docker_engine(Some(&host)), Ok(host.clone()));
        engine.join().unwrap();

        // Remote engines are never contacted.
        let remote = docker_engine(Some("tcp://10.1.2.3:2375")).unwrap_err();
        assert!(remote.contains("not probed"), "{remote}");
    }

    #[test]
    fn an_answering_engine_is_reported_as_the_missing_testcontainers_path() {
        let dir = Scratch::new();
        let sock = dir.join("engine.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let engine = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\n\r\nOK").unwrap();
        });
        let empty = Scratch::new();
        let env = DiscoveryEnv {
            url: None,
            path: Some(empty.path()),
            docker_host: Some(format!("unix://{}", sock.display())),
        };
        let text = discover(&redis::SPEC, &env).unwrap_err().to_string();
        engine.join().unwrap();
        assert!(
            text.contains("a Docker engine answers at unix://"),
            "{text}"
        );
        assert!(text.contains("no testcontainers backend"), "{text}");
    }

    #[test]
    fn a_black_hole_accepts_and_never_answers() {
        let hole = BlackHole::start().unwrap();
        let mut stream = TcpStream::connect_timeout(&hole.addr(), Duration::from_secs(1)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        let mut buf = [0u8; 16];
        let started = Instant::now();
        let read = stream.read(&mut buf);
        assert!(
            matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "no answer, no close: {read:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(150));
        let deadline = Instant::now() + Duration::from_secs(1);
        while hole.accepted() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(hole.accepted(), 1);
        assert!(!redis::redis_ping(hole.addr(), Duration::from_millis(100)));
    }
}
