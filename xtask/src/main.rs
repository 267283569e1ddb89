//! `cargo xtask`: a thin orchestrator over cargo for the checks CI and developers run.

mod services;

use std::path::Path;
use std::process::{Command, ExitCode};

use failover_testenv::live;
use failover_testenv::services::REQUIRE_SERVICES_ENV;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test       every test of the workspace with the servers they need: finds or installs
             redis-server, redis-cli and openssl (Debian) and moto_server (PyPI, in a
             virtualenv under target/), installs the openai Python SDK into that
             virtualenv, then runs `cargo test --workspace` with
             FAILOVER_REQUIRE_SERVICES=1, so a test that cannot reach its server fails,
             and FAILOVER_SDK_PYTHON set to the virtualenv's python; then `test-python`.
             Extra arguments after -- go to cargo test (e.g. -- --no-fail-fast)
  test-python
             the Python package's suite alone: installs maturin 1.16, pytest and
             pytest-asyncio into the virtualenv, builds bindings/python into it
             (`maturin develop`), runs pytest with FAILOVER_REQUIRE_SERVICES=1.
             Extra arguments after -- go to pytest (e.g. -- -k caching)
  ci         cargo fmt --check, clippy (-D warnings), then `test`, as CI runs them
  bench      run every criterion bench (pass extra criterion arguments after --)
  test-live  the scenario suite and the providers' live tests against real Bedrock, OpenAI,
             ElastiCache and DynamoDB (costs money; see the README, \"Tests: offline and live\").
             Needs AWS_REGION, AWS credentials, OPENAI_API_KEY, ELASTICACHE_ENDPOINT and
             FAILOVER_DYNAMODB_TABLE; SKIP_AWS_INTEGRATION_TESTS=1 skips it. Extra arguments
             after -- go to the suite (e.g. a filter: -- caching::)";

fn cargo_command(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

fn run(mut command: Command, shown: &str) -> Result<(), String> {
    eprintln!("xtask: {shown}");
    let status = command
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn cargo(args: &[&str]) -> Result<(), String> {
    run(cargo_command(args), &format!("cargo {}", args.join(" ")))
}

/// `cargo test --workspace` (and `extra`) with every service binary on `PATH`, services
/// required, and the Python that has the `openai` SDK named; then the Python package's
/// suite ([`python_suite`]).
fn test(extra: &[String]) -> Result<(), String> {
    let workspace = workspace()?;
    let prepared = services::prepare(workspace)?;
    let mut command = cargo_command(&["test", "--workspace"]);
    command.args(extra);
    command
        .env("PATH", &prepared.path)
        .env(REQUIRE_SERVICES_ENV, "1")
        .env(services::SDK_PYTHON_ENV, &prepared.sdk_python);
    run(
        command,
        &format!(
            "{REQUIRE_SERVICES_ENV}=1 {}={} cargo test --workspace {}",
            services::SDK_PYTHON_ENV,
            prepared.sdk_python.display(),
            extra.join(" ")
        ),
    )?;
    python_suite(workspace, &prepared, &[])
}

fn workspace() -> Result<&'static Path, String> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| "xtask is not inside the workspace".to_owned())
}

fn test_python(extra: &[String]) -> Result<(), String> {
    let workspace = workspace()?;
    let prepared = services::prepare(workspace)?;
    python_suite(workspace, &prepared, extra)
}

/// The Python package's suite: `maturin develop` of bindings/python into the virtualenv,
/// then pytest, with the servers' binaries on `PATH` and services required.
fn python_suite(
    workspace: &Path,
    prepared: &services::Prepared,
    extra: &[String],
) -> Result<(), String> {
    let python = &prepared.sdk_python;
    let maturin = services::python_suite_tools(python)?;
    let venv = python
        .parent()
        .and_then(Path::parent)
        .ok_or("the virtualenv's python is not in <venv>/bin")?;
    let bindings = workspace.join("bindings").join("python");
    let mut develop = Command::new(&maturin);
    develop
        .arg("develop")
        .arg("--manifest-path")
        .arg(bindings.join("Cargo.toml"))
        .env("VIRTUAL_ENV", venv)
        .env("PATH", &prepared.path);
    run(develop, "maturin develop (bindings/python)")?;
    let mut pytest = Command::new(python);
    pytest
        .args(["-m", "pytest", "tests", "-p", "no:cacheprovider"])
        .args(extra)
        .current_dir(&bindings)
        .env("PATH", &prepared.path)
        .env(REQUIRE_SERVICES_ENV, "1")
        // No __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run(
        pytest,
        &format!(
            "{REQUIRE_SERVICES_ENV}=1 {} -m pytest tests (bindings/python) {}",
            python.display(),
            extra.join(" ")
        ),
    )
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    test(&[])
}

fn bench(extra: &[String]) -> Result<(), String> {
    let mut args = vec!["bench", "--workspace", "--bench", "*"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    cargo(&args)
}

/// What `test-live` decided before running anything.
#[derive(Debug, PartialEq, Eq)]
enum LivePlan {
    /// `SKIP_AWS_INTEGRATION_TESTS=1`.
    Skip,
    /// Variables are missing: the message names them.
    Missing(String),
    /// Everything is set.
    Run,
}

fn live_plan(lookup: impl Fn(&str) -> Option<String> + Copy, shared_aws_files: bool) -> LivePlan {
    if live::skip_requested(lookup) {
        return LivePlan::Skip;
    }
    let missing = live::missing(lookup, shared_aws_files);
    if missing.is_empty() {
        LivePlan::Run
    } else {
        LivePlan::Missing(live::missing_message(&missing))
    }
}

fn test_live(extra: &[String]) -> Result<(), String> {
    match live_plan(
        |name| std::env::var(name).ok(),
        live::shared_aws_files_exist(),
    ) {
        LivePlan::Skip => {
            println!(
                "xtask: {}=1 — live tests skipped; nothing was sent to AWS or OpenAI",
                live::SKIP_ENV
            );
            return Ok(());
        }
        LivePlan::Missing(message) => return Err(message),
        LivePlan::Run => {}
    }
    // The suite prints its cost estimate before its first test and fails when no live test
    // ran; the providers' own live tests are `#[ignore]`d in normal runs.
    let mut suite = cargo_command(&["test", "-p", "failover-scenarios", "--test", "suite"]);
    suite.env(live::MODE_ENV, "live");
    suite.arg("--");
    // One test at a time: real Bedrock throttles bursts (the user may say otherwise).
    if !extra.iter().any(|arg| arg.starts_with("--test-threads")) {
        suite.args(["--test-threads", "1"]);
    }
    suite.args(extra);
    run(
        suite,
        &format!(
            "{}=live cargo test -p failover-scenarios --test suite",
            live::MODE_ENV
        ),
    )?;
    cargo(&[
        "test",
        "-p",
        "failover-bedrock",
        "-p",
        "failover-openai",
        "--test",
        "live",
        "--",
        "--ignored",
    ])
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = || {
        args.get(1..)
            .map(|rest| rest.strip_prefix(&["--".to_owned()]).unwrap_or(rest))
            .unwrap_or(&[])
    };
    let result = match args.first().map(String::as_str) {
        Some("test") => test(rest()),
        Some("test-python") => test_python(rest()),
        Some("ci") => ci(),
        Some("bench") => bench(rest()),
        Some("test-live") => test_live(rest()),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use failover_testenv::live::lookup_in as env;

    #[test]
    fn skip_wins_over_missing_variables() {
        assert_eq!(
            live_plan(env(&[("SKIP_AWS_INTEGRATION_TESTS", "1")]), false),
            LivePlan::Skip
        );
    }

    #[test]
    fn without_credentials_every_missing_variable_is_named() {
        let LivePlan::Missing(message) = live_plan(env(&[("AWS_REGION", "us-east-1")]), false)
        else {
            panic!("expected missing variables")
        };
        assert!(!message.contains("AWS_REGION or"), "{message}");
        for name in [
            "AWS_ACCESS_KEY_ID",
            "OPENAI_API_KEY",
            "ELASTICACHE_ENDPOINT",
            "FAILOVER_DYNAMODB_TABLE",
        ] {
            assert!(message.contains(name), "{name}: {message}");
        }
    }

    #[test]
    fn a_complete_environment_runs() {
        assert_eq!(
            live_plan(
                env(&[
                    ("AWS_REGION", "us-east-1"),
                    ("AWS_PROFILE", "dev"),
                    ("OPENAI_API_KEY", "sk-x"),
                    ("ELASTICACHE_ENDPOINT", "rediss://cache:6379"),
                    ("FAILOVER_DYNAMODB_TABLE", "usage"),
                ]),
                false
            ),
            LivePlan::Run
        );
    }
}
