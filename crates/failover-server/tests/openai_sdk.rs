//! The gateway through the official `openai` Python SDK, an independent client: each case
//! of `tests/sdk/sdk_cases.py` runs against a fresh gateway whose stand-ins this driver has
//! scripted for it.
//!
//! The SDK's Python is `FAILOVER_SDK_PYTHON` (`cargo xtask test` makes a virtualenv with
//! the pinned `openai` and sets it). Without it the cases are reported as ignored — or, under
//! `FAILOVER_REQUIRE_SERVICES=1` (CI), fail — never passed.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use failover_breaker::BreakerConfig;
use failover_provider::ToolCall;
use failover_server::Limits;
use failover_standin::{Fault, Reply, Vendor};
use failover_testenv::harness::AsyncTest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const PYTHON_ENV: &str = "FAILOVER_SDK_PYTHON";

fn python() -> Result<PathBuf, String> {
    let python = std::env::var_os(PYTHON_ENV)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{PYTHON_ENV} is not set (`cargo xtask test` sets it)"))?;
    let imported = std::process::Command::new(&python)
        .args(["-c", "import openai"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|error| format!("cannot run {}: {error}", python.display()))?;
    if !imported.success() {
        return Err(format!("{} cannot import openai", python.display()));
    }
    Ok(python)
}

fn case_command(gateway: &TestGateway, case: &str) -> tokio::process::Command {
    let python = python().expect("checked before any case runs");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/sdk_cases.py");
    let mut command = tokio::process::Command::new(python);
    command
        .arg(script)
        .arg(case)
        .env("FAILOVER_BASE_URL", gateway.url("/v1"))
        .env("FAILOVER_API_KEY", ACME_KEY)
        .env("FAILOVER_LIMITED_KEY", GLOBEX_KEY)
        .env("FAILOVER_MODEL", "gpt-4")
        .kill_on_drop(true);
    command
}

/// Runs one case of the script against `gateway`; fails with the script's output.
async fn run_case(gateway: &TestGateway, case: &str) {
    let output = case_command(gateway, case)
        .output()
        .await
        .expect("the SDK's python runs");
    assert_success(case, &output);
}

fn assert_success(case: &str, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "case {case} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Both providers fail once, and one request sees it: with quick breakers, both open.
async fn open_every_breaker(gateway: &TestGateway) {
    fail_both_once(gateway).await;
    let failed = gateway
        .chat(ACME_KEY, ask("gpt-4", "trip the breakers"))
        .await;
    assert_eq!(failed.status(), 502);
}

async fn fail_both_once(gateway: &TestGateway) {
    for vendor in [Vendor::Bedrock, Vendor::OpenAi] {
        gateway.standins.inject(vendor, Fault::Unavailable, 1).await;
    }
}

fn weather_call() -> Reply {
    Reply::tool_calls(vec![ToolCall::new(
        "call_1",
        "get_weather",
        r#"{"city":"Paris"}"#,
    )])
}

async fn unscripted(case: &'static str) {
    run_case(&TestGateway::start().await, case).await;
}

async fn json_mode() {
    let gateway = TestGateway::start().await;
    gateway
        .standins
        .reply(Vendor::Bedrock, Reply::text(r#"{"answer": 4}"#), 1)
        .await;
    run_case(&gateway, "json_mode").await;
}

async fn tools() {
    let gateway = TestGateway::start().await;
    gateway
        .standins
        .reply(Vendor::Bedrock, weather_call(), 1)
        .await;
    gateway
        .standins
        .reply(Vendor::Bedrock, Reply::text("It is sunny in Paris."), 1)
        .await;
    run_case(&gateway, "tools").await;
}

async fn tools_stream() {
    let gateway = TestGateway::start().await;
    gateway
        .standins
        .reply(Vendor::Bedrock, weather_call(), 1)
        .await;
    run_case(&gateway, "tools_stream").await;
}

async fn error_413() {
    let limits = Limits {
        body_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let gateway = TestGateway::with(limits, BreakerConfig::default()).await;
    run_case(&gateway, "error_413").await;
}

async fn error_502() {
    let gateway = TestGateway::start().await;
    fail_both_once(&gateway).await;
    run_case(&gateway, "error_502").await;
}

async fn error_503() {
    let gateway =
        TestGateway::with(Limits::default(), quick_breaker(Duration::from_secs(30))).await;
    open_every_breaker(&gateway).await;
    run_case(&gateway, "error_503").await;
}

async fn retry_503() {
    // Open for a second: the SDK's retry after `Retry-After: 1` finds the breakers probing.
    let gateway = TestGateway::with(Limits::default(), quick_breaker(Duration::from_secs(1))).await;
    let mut child = case_command(&gateway, "retry_503")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the SDK's python runs");
    // The breakers open only once the interpreter is up, so its start-up cannot use up
    // the open period before the first request.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    assert_eq!(line.trim(), "ready", "the case did not say it was ready");
    open_every_breaker(&gateway).await;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    drop(stdin);
    let mut output = child.wait_with_output().await.unwrap();
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).await.unwrap();
    output.stdout = rest;
    assert_success("retry_503", &output);
}

async fn midstream_error() {
    let gateway = TestGateway::start().await;
    gateway
        .standins
        .inject(Vendor::Bedrock, Fault::CutStream, 1)
        .await;
    run_case(&gateway, "midstream_error").await;
}

fn main() -> std::process::ExitCode {
    let mut tests = Vec::new();
    for case in [
        "plain",
        "plain_cached",
        "stream",
        "error_400",
        "error_401",
        "error_403",
        "error_404",
    ] {
        tests.push(AsyncTest::new(format!("sdk_{case}"), move || {
            unscripted(case)
        }));
    }
    tests.push(AsyncTest::new("sdk_json_mode", json_mode));
    tests.push(AsyncTest::new("sdk_tools", tools));
    tests.push(AsyncTest::new("sdk_tools_stream", tools_stream));
    tests.push(AsyncTest::new("sdk_error_413", error_413));
    tests.push(AsyncTest::new("sdk_error_502", error_502));
    tests.push(AsyncTest::new("sdk_error_503", error_503));
    tests.push(AsyncTest::new("sdk_retry_503", retry_503));
    tests.push(AsyncTest::new("sdk_midstream_error", midstream_error));
    failover_testenv::harness::run("the openai Python SDK", python().map(|_| ()), tests)
}
