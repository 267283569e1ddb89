//! What `cargo xtask test` prepares before it runs the tests: the server binaries the tests
//! spawn on free ports of their own (`redis-server` and `redis-cli` from Debian, the
//! `openssl` CLI for the TLS test's private CA, `moto_server` from PyPI). It finds each on
//! `PATH`, else installs it — Debian packages with `apt-get` (as root, or through
//! `sudo -n`), moto into a virtualenv under `target/` (never into the system Python) — and
//! says exactly what it could not do. It starts no server: each test binary starts its own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use failover_testenv::moto::MOTO_BINARY;
use failover_testenv::services::find_binary;

/// Debian packages and the binaries that tell they are installed.
const DEBIAN: [(&str, &[&str]); 2] = [
    ("redis-server", &["redis-server", "redis-cli"]),
    ("openssl", &["openssl"]),
];

/// The moto release the tests are checked against (5.x: transactions, TTL, GSIs).
const MOTO_REQUIREMENT: &str = "moto[server]>=5.1,<6";

/// Makes sure every binary the tests spawn is on the returned `PATH` (the process's own,
/// with the moto virtualenv's `bin` in front when moto came from there).
pub(crate) fn prepare(workspace: &Path) -> Result<OsString, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = DEBIAN
        .iter()
        .filter(|(_, binaries)| {
            binaries
                .iter()
                .any(|binary| find_binary(binary, Some(&path)).is_none())
        })
        .map(|(package, _)| *package)
        .collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    for (_, binaries) in DEBIAN {
        for binary in binaries {
            if find_binary(binary, Some(&path)).is_none() {
                return Err(format!("`{binary}` is still not on PATH after apt-get"));
            }
        }
    }
    if find_binary(MOTO_BINARY, Some(&path)).is_some() {
        return Ok(path);
    }
    let venv_bin = moto_venv(&workspace.join("target").join("xtask-venv"))?;
    let mut dirs = vec![venv_bin];
    dirs.extend(std::env::split_paths(&path));
    std::env::join_paths(dirs).map_err(|e| format!("cannot extend PATH: {e}"))
}

/// Runs `apt-get install -y` for `packages`, as root or through `sudo -n`.
fn apt_install(packages: &[&str]) -> Result<(), String> {
    let elevate: &[&str] = if is_root() {
        &[]
    } else if find_binary("sudo", std::env::var_os("PATH").as_deref()).is_some() {
        &["sudo", "-n"]
    } else {
        return Err(format!(
            "{} missing, and neither root nor sudo is available to install {}",
            packages.join(", "),
            packages.join(" ")
        ));
    };
    eprintln!("xtask: installing {} (Debian)", packages.join(", "));
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut all: Vec<&str> = elevate.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        let status = Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run {}: {e}", all.join(" ")))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{} failed ({status})", all.join(" ")))
        }
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt(&install)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A virtualenv at `venv` with moto installed (made, or completed, when needed); returns
/// its `bin` directory.
fn moto_venv(venv: &Path) -> Result<PathBuf, String> {
    let bin = venv.join("bin");
    if bin.join(MOTO_BINARY).is_file() {
        return Ok(bin);
    }
    let python = find_binary("python3", std::env::var_os("PATH").as_deref())
        .ok_or("`moto_server` is missing and python3 is not on PATH to install it")?;
    if !bin.join("python").is_file() {
        eprintln!(
            "xtask: creating a virtualenv for moto at {}",
            venv.display()
        );
        let made = Command::new(&python)
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .map_err(|e| format!("cannot run python3 -m venv: {e}"))?;
        if !made.success() {
            // Debian ships the venv module separately.
            apt_install(&["python3-venv"])?;
            let _ = std::fs::remove_dir_all(venv);
            let again = Command::new(&python)
                .args(["-m", "venv"])
                .arg(venv)
                .status()
                .map_err(|e| format!("cannot run python3 -m venv: {e}"))?;
            if !again.success() {
                return Err(format!(
                    "python3 -m venv {} failed ({again})",
                    venv.display()
                ));
            }
        }
    }
    eprintln!(
        "xtask: installing {MOTO_REQUIREMENT} into {}",
        venv.display()
    );
    let installed = Command::new(bin.join("python"))
        .args(["-m", "pip", "install", "--quiet", MOTO_REQUIREMENT])
        .status()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !installed.success() || !bin.join(MOTO_BINARY).is_file() {
        return Err(format!(
            "pip install {MOTO_REQUIREMENT} into {} failed ({installed})",
            venv.display()
        ));
    }
    Ok(bin)
}
