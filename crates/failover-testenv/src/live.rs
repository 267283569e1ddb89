//! What a live run of the scenario suite needs from the environment, checked before any
//! test starts (by `cargo xtask test-live`, and again by the suite itself).
//!
//! Only std: `xtask` uses this module to stop early, naming every missing variable, before
//! it builds the suite.

/// Selects the suite's mode: `live` runs against real Bedrock, OpenAI, ElastiCache and
/// DynamoDB; anything else (or unset) is the offline mode.
pub const MODE_ENV: &str = "FAILOVER_TEST_MODE";

/// Set to `1` to skip the live run (the seed's switch).
pub const SKIP_ENV: &str = "SKIP_AWS_INTEGRATION_TESTS";

/// Set to `chain` to accept whatever the AWS SDK's credential chain finds (an EC2 instance
/// role through IMDS, SSO): sources no variable shows.
pub const TRUST_CHAIN_ENV: &str = "FAILOVER_AWS_CREDENTIALS";

/// Variables that send a service's traffic somewhere else than its public endpoint; a live
/// run names each one that is set, so a run against a local endpoint never passes for one
/// against the real service.
pub const ENDPOINT_OVERRIDES: [(&str, &str); 4] = [
    ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "Bedrock"),
    ("AWS_ENDPOINT_URL", "AWS services"),
    ("OPENAI_BASE_URL", "OpenAI"),
    ("DYNAMODB_ENDPOINT", "DynamoDB"),
];

/// One line per endpoint override `lookup` finds set.
pub fn endpoint_overrides(lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    ENDPOINT_OVERRIDES
        .iter()
        .filter_map(|(name, service)| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .map(|value| format!("{service} goes to {value} ({name} is set)"))
        })
        .collect()
}

/// One thing the live run needs, satisfied when any of its alternatives is fully set.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    /// What it is for, for the message.
    pub purpose: &'static str,
    /// Sets of variables; setting every variable of one set satisfies the requirement.
    pub alternatives: &'static [&'static [&'static str]],
}

/// Everything a live run needs.
pub const REQUIREMENTS: [Requirement; 5] = [
    Requirement {
        purpose: "the AWS region of Bedrock and DynamoDB",
        alternatives: &[&["AWS_REGION"], &["AWS_DEFAULT_REGION"]],
    },
    Requirement {
        purpose: "AWS credentials (the SDK's chain: static keys, a profile — or the default \
                  one in ~/.aws —, web identity, a container role; on EC2 or with SSO set \
                  FAILOVER_AWS_CREDENTIALS=chain to trust the chain as it is)",
        alternatives: &[
            &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            &["AWS_PROFILE"],
            &["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"],
            &["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"],
            &["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
            &[TRUST_CHAIN_ENV],
        ],
    },
    Requirement {
        purpose: "the OpenAI API key",
        alternatives: &[&["OPENAI_API_KEY"]],
    },
    Requirement {
        purpose: "the ElastiCache (Redis) endpoint, e.g. rediss://host:6379",
        alternatives: &[&["ELASTICACHE_ENDPOINT"]],
    },
    Requirement {
        purpose: "the DynamoDB usage table (see docs/operations.md to create it)",
        alternatives: &[&["FAILOVER_DYNAMODB_TABLE"]],
    },
];

/// A requirement nothing satisfies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What it is for.
    pub purpose: &'static str,
    /// The variables that would satisfy it, e.g. `AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
    /// or AWS_PROFILE`.
    pub set_one_of: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} — {}", self.set_one_of, self.purpose)
    }
}

/// The requirements `lookup` (an env reader) leaves unsatisfied. Empty values count as
/// unset; [`TRUST_CHAIN_ENV`] counts only when it says `chain`. `shared_aws_files`: whether
/// `~/.aws/credentials` or `~/.aws/config` exists (their default profile is in the chain).
pub fn missing(lookup: impl Fn(&str) -> Option<String>, shared_aws_files: bool) -> Vec<Missing> {
    let set = |name: &str| {
        lookup(name).is_some_and(|value| {
            let value = value.trim();
            if name == TRUST_CHAIN_ENV {
                value.eq_ignore_ascii_case("chain")
            } else {
                !value.is_empty()
            }
        })
    };
    REQUIREMENTS
        .iter()
        .filter(|requirement| {
            let is_credentials = requirement
                .alternatives
                .contains(&[TRUST_CHAIN_ENV].as_slice());
            let satisfied = (is_credentials && shared_aws_files)
                || requirement
                    .alternatives
                    .iter()
                    .any(|names| names.iter().all(|name| set(name)));
            !satisfied
        })
        .map(|requirement| Missing {
            purpose: requirement.purpose,
            set_one_of: requirement
                .alternatives
                .iter()
                .map(|names| names.join(" + "))
                .collect::<Vec<_>>()
                .join(" or "),
        })
        .collect()
}

/// The requirements the process environment leaves unsatisfied.
pub fn missing_from_process() -> Vec<Missing> {
    missing(|name| std::env::var(name).ok(), shared_aws_files_exist())
}

/// Whether the AWS shared credentials or config file exists (`AWS_SHARED_CREDENTIALS_FILE` /
/// `AWS_CONFIG_FILE`, else under `~/.aws`).
pub fn shared_aws_files_exist() -> bool {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |env: &str, default: &str| {
        std::env::var_os(env)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|home| home.join(".aws").join(default)))
    };
    [
        file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        file("AWS_CONFIG_FILE", "config"),
    ]
    .into_iter()
    .flatten()
    .any(|path| path.is_file())
}

/// The message naming every missing requirement, one per line.
pub fn missing_message(missing: &[Missing]) -> String {
    let mut message = String::from("the live run needs these environment variables:\n");
    for item in missing {
        message.push_str(&format!("  missing: {item}\n"));
    }
    message.push_str(
        "set them (see the README, \"Tests: offline and live\"), or set SKIP_AWS_INTEGRATION_TESTS=1 to skip",
    );
    message
}

/// Whether `SKIP_AWS_INTEGRATION_TESTS` asks to skip (`1`, `true`, `yes`).
pub fn skip_requested(lookup: impl Fn(&str) -> Option<String>) -> bool {
    lookup(SKIP_ENV).is_some_and(|value| {
        matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes"
        )
    })
}

/// Whether the process runs the suite live (`FAILOVER_TEST_MODE=live`).
pub fn live_mode_requested() -> bool {
    std::env::var(MODE_ENV).is_ok_and(|mode| mode.trim().eq_ignore_ascii_case("live"))
}

/// An environment reader over fixed `(name, value)` pairs, for checking the functions above
/// without touching the process environment (setting variables is `unsafe` in Rust 2024).
pub fn lookup_in(
    pairs: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> + Copy {
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::lookup_in as env;

    #[test]
    fn an_empty_environment_misses_everything_by_name() {
        let missing = missing(env(&[]), false);
        assert_eq!(missing.len(), 5);
        let message = missing_message(&missing);
        for name in [
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "OPENAI_API_KEY",
            "ELASTICACHE_ENDPOINT",
            "FAILOVER_DYNAMODB_TABLE",
        ] {
            assert!(message.contains(name), "{name} in {message}");
        }
    }

    #[test]
    fn one_complete_alternative_satisfies_a_requirement() {
        let environment = env(&[
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("OPENAI_API_KEY", "sk-x"),
            ("ELASTICACHE_ENDPOINT", "rediss://cache:6379"),
            ("FAILOVER_DYNAMODB_TABLE", "usage"),
        ]);
        // The key id alone is not a credential.
        let missing_now = missing(environment, false);
        assert_eq!(missing_now.len(), 1, "{missing_now:?}");
        assert!(missing_now[0].purpose.starts_with("AWS credentials"));
        // A shared credentials file is.
        assert!(missing(environment, true).is_empty());
    }

    #[test]
    fn the_credential_chain_is_trusted_only_when_asked_by_name() {
        let chain = missing(env(&[(TRUST_CHAIN_ENV, "chain")]), false);
        assert!(
            chain
                .iter()
                .all(|m| !m.purpose.starts_with("AWS credentials"))
        );
        let other = missing(env(&[(TRUST_CHAIN_ENV, "yes")]), false);
        assert!(
            other
                .iter()
                .any(|m| m.purpose.starts_with("AWS credentials"))
        );
    }

    #[test]
    fn endpoint_overrides_are_named() {
        let lines = endpoint_overrides(env(&[
            ("DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"),
            ("OPENAI_BASE_URL", " "),
        ]));
        assert_eq!(
            lines,
            vec!["DynamoDB goes to http://127.0.0.1:8000 (DYNAMODB_ENDPOINT is set)"]
        );
    }

    #[test]
    fn empty_values_count_as_unset_and_skip_accepts_the_usual_spellings() {
        assert_eq!(missing(env(&[("OPENAI_API_KEY", " ")]), false).len(), 5);
        assert!(skip_requested(env(&[(SKIP_ENV, "1")])));
        assert!(skip_requested(env(&[(SKIP_ENV, "TRUE")])));
        assert!(!skip_requested(env(&[(SKIP_ENV, "0")])));
        assert!(!skip_requested(env(&[])));
    }
}
