//! `failover serve` as a process: `--standins` answers, SIGTERM drains it and it exits
//! cleanly; `--check` validates a configuration.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn failover() -> Command {
    Command::new(env!("CARGO_BIN_EXE_failover"))
}

#[tokio::test]
async fn serve_standins_answers_and_drains_on_sigterm() {
    let mut child = failover()
        .args(["serve", "--standins", "--listen", "127.0.0.1:0"])
        .env("FAILOVER_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let key = line.trim().strip_prefix("key: ").unwrap().to_owned();

    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": "gpt-4", "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("drained (every request in flight finished)"),
        "{stderr}"
    );
}

#[test]
fn serve_check_accepts_the_example_configuration() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/gateway.toml");
    let output = failover()
        .args(["serve", "--check", "--config", example])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("providers, in failover order: bedrock → openai"),
        "{stdout}"
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
}

#[test]
fn serve_check_names_what_is_wrong() {
    let dir = std::env::temp_dir().join(format!("failover-serve-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.toml");
    std::fs::write(
        &file,
        "[[keys]]\nname = \"a\"\nhash = \"sk-in-clear\"\ntenant = \"t\"\n",
    )
    .unwrap();
    let output = failover()
        .args(["serve", "--check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("broken.toml") && stderr.contains("blake3:"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hash_key_prints_the_hash_the_configuration_takes() {
    let mut child = failover()
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sk-example-change-me\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "blake3:ad30014f587abb891daf94dab216ad08da8731a807d02ea8f84468453d0192d4"
    );
}
