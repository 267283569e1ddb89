//! `failover demo` in memory mode: the built binary, run as a subprocess with neither
//! `REDIS_URL` nor `DYNAMODB_ENDPOINT`, succeeds and reports each scenario as the seed
//! expects it.

use std::process::{Command, Output};

fn demo(env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_failover"));
    command
        .arg("demo")
        .env_remove("REDIS_URL")
        .env_remove("DYNAMODB_ENDPOINT")
        .env_remove("FAILOVER_DYNAMODB_TABLE");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the failover binary runs")
}

/// The cells of the table row whose first cell is `scenario`.
fn row<'a>(stdout: &'a str, scenario: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .map(|line| {
            line.split(['│', '┆'])
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&scenario))
        .unwrap_or_else(|| panic!("no table row for {scenario:?} in:\n{stdout}"))
}

#[test]
fn the_demo_in_memory_mode_succeeds_with_every_scenario_as_expected() {
    let output = demo(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stdout.contains("cache: memory"), "{stdout}");
    assert!(stdout.contains("usage: memory"), "{stdout}");
    assert!(
        stdout.contains("BedrockProvider (AWS SDK) -> Bedrock stand-in at http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("OpenAiProvider -> OpenAI stand-in at http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");

    // scenario, provider, cached, requests bedrock/openai, bedrock breaker, openai breaker
    let expected = [
        (
            "1. Normal operation",
            "bedrock",
            "false",
            "1/0",
            "CLOSED (0 fail)",
            "CLOSED (0 fail)",
        ),
        (
            "2. Bedrock failure",
            "openai",
            "false",
            "1/1",
            "CLOSED (1 fail)",
            "CLOSED (0 fail)",
        ),
        (
            "3. Circuit breaker open",
            "openai",
            "false",
            "0/1",
            "FORCED_OPEN (1 fail)",
            "CLOSED (0 fail)",
        ),
        (
            "4. Cache hit",
            "bedrock",
            "true",
            "0/0",
            "FORCED_OPEN (1 fail)",
            "CLOSED (0 fail)",
        ),
        (
            "5. All providers fail",
            "error",
            "-",
            "0/3",
            "FORCED_OPEN (1 fail)",
            "OPEN (3 fail)",
        ),
    ];
    for (scenario, provider, cached, requests, bedrock, openai) in expected {
        let cells = row(&stdout, scenario);
        assert_eq!(cells.len(), 11, "{cells:?}");
        assert_eq!(
            (cells[2], cells[3], cells[7], cells[8], cells[9], cells[10]),
            (provider, cached, requests, bedrock, openai, "ok"),
            "{scenario}: {cells:?}"
        );
    }
    assert_eq!(
        row(&stdout, "4. Cache hit")[5],
        "0",
        "a cache hit costs nothing"
    );

    assert!(
        stdout.contains(
            "bedrock (anthropic.claude-3-5-sonnet-20240620-v1:0): skipped, circuit breaker \
             forced open by an operator (open until reset); openai (gpt-4): unavailable"
        ),
        "the all-fail error names every attempt:\n{stdout}"
    );
    assert!(
        stdout.contains("4. Cache hit: the cache answered"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(in memory): 7 provider calls (3 succeeded, 4 failed)"),
        "{stdout}"
    );
    assert!(stdout.contains("health after reset: Healthy"), "{stdout}");
}

#[test]
fn an_unreachable_redis_fails_the_demo_before_any_scenario() {
    let port = failover_testenv::services::free_port().expect("a free port");
    let url = format!("redis://127.0.0.1:{port}");
    let output = demo(&[("REDIS_URL", url.as_str())]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "stdout:\n{stdout}");
    assert!(
        stderr.contains(&format!("the Redis at {url} does not answer")),
        "{stderr}"
    );
    assert!(!stdout.contains("1. Normal operation"), "{stdout}");
}

#[test]
fn the_help_names_the_backends_variables() {
    let output = Command::new(env!("CARGO_BIN_EXE_failover"))
        .args(["demo", "--help"])
        .output()
        .expect("the failover binary runs");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    for variable in ["REDIS_URL", "DYNAMODB_ENDPOINT", "FAILOVER_DYNAMODB_TABLE"] {
        assert!(help.contains(variable), "{variable} in:\n{help}");
    }
}

/// The value of the exposition's sample `series` (a name and its labels, as rendered).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

#[test]
fn the_demo_prints_the_prometheus_exposition_of_its_scenarios() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_failover"));
    let output = command
        .args(["demo", "--metrics"])
        .env_remove("REDIS_URL")
        .env_remove("DYNAMODB_ENDPOINT")
        .output()
        .expect("the failover binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let (_, exposition) = stdout
        .split_once("== metrics (Prometheus exposition) ==")
        .unwrap_or_else(|| panic!("no exposition in:\n{stdout}"));
    let bedrock = "failover_provider=\"bedrock\",gen_ai_provider_name=\"aws.bedrock\",\
                   gen_ai_request_model=\"anthropic.claude-3-5-sonnet-20240620-v1:0\"";
    let openai = "failover_provider=\"openai\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"gpt-4\"";
    let attempts =
        |labels: &str, rest: &str| format!("failover_provider_attempts{{{labels},{rest}}}");
    // 1: Bedrock answers; 2: Bedrock's 503, OpenAI answers; 3: Bedrock skipped, OpenAI
    // answers; 4: the cache answers; 5: Bedrock skipped and OpenAI failing, three times,
    // until OpenAI's breaker opens.
    let expected = [
        (attempts(bedrock, "failover_outcome=\"success\""), 1.0),
        (
            attempts(
                bedrock,
                "failover_outcome=\"failure\",error_type=\"unavailable\"",
            ),
            1.0,
        ),
        (
            attempts(bedrock, "failover_outcome=\"skipped_breaker_open\""),
            4.0,
        ),
        (attempts(openai, "failover_outcome=\"success\""), 2.0),
        (
            attempts(
                openai,
                "failover_outcome=\"failure\",error_type=\"unavailable\"",
            ),
            3.0,
        ),
        (format!("failover_fallbacks{{{openai}}}"), 2.0),
        ("failover_cache_hits".to_owned(), 1.0),
        (
            "failover_requests{failover_outcome=\"cached\",failover_stream=\"false\",\
             gen_ai_request_model=\"gpt-4\"}"
                .to_owned(),
            1.0,
        ),
        (
            "failover_requests{failover_outcome=\"success\",failover_stream=\"false\",\
             gen_ai_request_model=\"gpt-4\"}"
                .to_owned(),
            3.0,
        ),
        (
            "failover_requests{failover_outcome=\"all_failed\",failover_stream=\"false\",\
             gen_ai_request_model=\"gpt-4\"}"
                .to_owned(),
            3.0,
        ),
    ];
    for (series, value) in expected {
        assert_eq!(
            sample(exposition, &series),
            Some(value),
            "{series} in:\n{exposition}"
        );
    }
    // Tokens and cost of the two answers each provider gave are there, and positive.
    for labels in [bedrock, openai] {
        let cost = sample(exposition, &format!("failover_cost_nano_usd{{{labels}}}"));
        assert!(
            cost.is_some_and(|nanos| nanos > 0.0),
            "{labels}:\n{exposition}"
        );
    }
    assert!(
        exposition.contains("# TYPE gen_ai_client_operation_duration histogram"),
        "{exposition}"
    );
}
