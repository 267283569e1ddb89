//! What `cargo xtask test` prepares before it runs the tests: the server binaries the tests
//! spawn on free ports of their own (`redis-server` and `redis-cli` from Debian, the
//! `openssl` CLI for the TLS test's private CA, `moto_server` from PyPI), and the official
//! `openai` Python SDK that the gateway's SDK tests drive it with. It finds each binary on
//! `PATH`, else installs it — Debian packages with `apt-get` (as root, or through
//! `sudo -n`), Python packages into a virtualenv under `target/` (never into the system
//! Python) — and says exactly what it could not do. It starts no server: each test binary
//! starts its own.

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

/// The oldest `openai` release (major, minor) the SDK tests are checked against: 3.x is the
/// current major (its HTTP client is `httpx2`, which the tests reach only through
/// `openai.DefaultHttpxClient`).
const OPENAI_OLDEST: (u32, u32) = (3, 50);

/// The first `openai` major the tests are not checked against: a new major may change the
/// exception classes or the retry rules they assert.
const OPENAI_BELOW_MAJOR: u32 = 4;

/// What the Python binding's suite needs in the virtualenv: maturin (to build the
/// extension into it), pytest and pytest-asyncio, and boto3 (it reads the usage table back;
/// moto brings it along, but moto may come from elsewhere on `PATH`).
const PYTHON_SUITE_REQUIREMENTS: [&str; 4] = [
    "maturin>=1.16,<1.17",
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "boto3>=1.34",
];

/// The variable that tells the SDK tests which Python has `openai` installed.
pub(crate) const SDK_PYTHON_ENV: &str = "FAILOVER_SDK_PYTHON";

/// What the test run needs from [`prepare`].
pub(crate) struct Prepared {
    /// The process's own `PATH`, with the virtualenv's `bin` in front when moto came from
    /// there.
    pub(crate) path: OsString,
    /// The virtualenv's `python` (absolute), with `openai` installed: [`SDK_PYTHON_ENV`].
    pub(crate) sdk_python: PathBuf,
}

/// Makes sure every binary the tests spawn is on the returned `PATH`, and that the
/// virtualenv at `target/xtask-venv` has the `openai` SDK.
pub(crate) fn prepare(workspace: &Path) -> Result<Prepared, String> {
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
    // Absolute, because the tests run with their own crate as working directory; not
    // canonical, because the venv's `python` is a symlink to the base interpreter and
    // only the link's own path finds the venv's packages.
    let venv = std::path::absolute(workspace.join("target").join("xtask-venv"))
        .map_err(|e| format!("cannot make the virtualenv path absolute: {e}"))?;
    let sdk_python = openai_venv(&venv)?;
    if find_binary(MOTO_BINARY, Some(&path)).is_some() {
        return Ok(Prepared { path, sdk_python });
    }
    let venv_bin = moto_venv(&venv)?;
    let mut dirs = vec![venv_bin];
    dirs.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(dirs).map_err(|e| format!("cannot extend PATH: {e}"))?;
    Ok(Prepared { path, sdk_python })
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

/// The virtualenv at `venv` (made when it is not there); returns its `python`.
fn venv_python(venv: &Path) -> Result<PathBuf, String> {
    let venv_python = venv.join("bin").join("python");
    if venv_python.is_file() {
        return Ok(venv_python);
    }
    let python = find_binary("python3", std::env::var_os("PATH").as_deref())
        .ok_or("python3 is not on PATH to make the virtualenv for moto and the openai SDK")?;
    eprintln!("xtask: creating a virtualenv at {}", venv.display());
    let make = || {
        Command::new(&python)
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .map_err(|e| format!("cannot run python3 -m venv: {e}"))
    };
    let made = make()?;
    if !made.success() {
        // Debian ships the venv module separately.
        apt_install(&["python3-venv"])?;
        let _ = std::fs::remove_dir_all(venv);
        let again = make()?;
        if !again.success() {
            return Err(format!(
                "python3 -m venv {} failed ({again})",
                venv.display()
            ));
        }
    }
    if !venv_python.is_file() {
        return Err(format!(
            "python3 -m venv {} made no bin/python",
            venv.display()
        ));
    }
    Ok(venv_python)
}

/// Runs `pip install requirement` with the virtualenv's `python`.
fn pip_install(python: &Path, requirement: &str) -> Result<(), String> {
    eprintln!("xtask: installing {requirement} with {}", python.display());
    let installed = Command::new(python)
        .args(["-m", "pip", "install", "--quiet", requirement])
        .status()
        .map_err(|e| format!("cannot run {} -m pip: {e}", python.display()))?;
    if installed.success() {
        Ok(())
    } else {
        Err(format!(
            "pip install {requirement} with {} failed ({installed})",
            python.display()
        ))
    }
}

/// The virtualenv at `venv` with an `openai` release the tests are checked against
/// (installed when the one there is missing or out of range); returns its `python`.
fn openai_venv(venv: &Path) -> Result<PathBuf, String> {
    let python = venv_python(venv)?;
    let (major, minor) = OPENAI_OLDEST;
    let requirement = format!("openai>={major}.{minor},<{OPENAI_BELOW_MAJOR}");
    // Importing is the check, not `pip install` every run: it is what the tests do, it
    // takes about a second, and pip would ask the index each time.
    let check = format!(
        "import openai, sys; v = tuple(int(p) for p in openai.__version__.split('.')[:2]); \
         sys.exit(0 if ({major}, {minor}) <= v < ({OPENAI_BELOW_MAJOR}, 0) else 1)"
    );
    let in_range = || {
        Command::new(&python)
            .args(["-c", &check])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if in_range() {
        return Ok(python);
    }
    pip_install(&python, &requirement)?;
    if !in_range() {
        return Err(format!(
            "{} still cannot import {requirement} after pip install (openai {major}.x needs Python 3.10 or newer)",
            python.display()
        ));
    }
    Ok(python)
}

/// The virtualenv at `venv` with moto installed (installed when needed); returns its `bin`
/// directory.
fn moto_venv(venv: &Path) -> Result<PathBuf, String> {
    let bin = venv.join("bin");
    if bin.join(MOTO_BINARY).is_file() {
        return Ok(bin);
    }
    pip_install(&venv_python(venv)?, MOTO_REQUIREMENT)?;
    if !bin.join(MOTO_BINARY).is_file() {
        return Err(format!(
            "pip install {MOTO_REQUIREMENT} into {} made no {MOTO_BINARY}",
            venv.display()
        ));
    }
    Ok(bin)
}

/// The virtualenv's `python` with maturin 1.16.x, pytest, pytest-asyncio and boto3
/// (installed when one is missing); returns the path of its `maturin`.
pub(crate) fn python_suite_tools(python: &Path) -> Result<PathBuf, String> {
    let bin = python
        .parent()
        .ok_or_else(|| format!("{} has no directory", python.display()))?;
    let maturin = bin.join("maturin");
    let ready = || {
        let maturin_ok = Command::new(&maturin)
            .arg("--version")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).starts_with("maturin 1.16."));
        let pytest_ok = Command::new(python)
            .args(["-c", "import pytest, pytest_asyncio, boto3"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        maturin_ok && pytest_ok
    };
    if ready() {
        return Ok(maturin);
    }
    for requirement in PYTHON_SUITE_REQUIREMENTS {
        pip_install(python, requirement)?;
    }
    if !ready() {
        return Err(format!(
            "{} still lacks maturin 1.16, pytest, pytest-asyncio or boto3 after pip install",
            python.display()
        ));
    }
    Ok(maturin)
}
