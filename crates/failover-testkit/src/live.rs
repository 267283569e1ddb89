//! What a live run of the scenario suite needs from the environment, checked before any
//! test starts (by `cargo xtask test-live`, and again by the suite itself).
//!
//! Only std: `xtask` uses this module to stop early, naming every missing variable, before
//! it compiles anything.

/// Selects the suite's mode: `live` runs against real Bedrock, OpenAI, ElastiCache and
/// DynamoDB; anything else (or unset) is the offline mode.
pub const MODE_ENV: &str = "FAILOVER_TEST_MODE";

/// Set to `1` to skip the live run (the seed's switch).
pub const SKIP_ENV: &str = "SKIP_AWS_INTEGRATION_TESTS";

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
        purpose: "AWS credentials (the SDK's chain: static keys, a profile, web identity or \
                  a container role)",
        alternatives: &[
            &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            &["AWS_PROFILE"],
            &["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"],
            &["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"],
            &["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
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
/// unset.
pub fn missing(lookup: impl Fn(&str) -> Option<String>) -> Vec<Missing> {
    let set = |name: &str| lookup(name).is_some_and(|value| !value.trim().is_empty());
    REQUIREMENTS
        .iter()
        .filter(|requirement| {
            !requirement
                .alternatives
                .iter()
                .any(|names| names.iter().all(|name| set(name)))
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
    missing(|name| std::env::var(name).ok())
}

/// The message naming every missing requirement, one per line.
pub fn missing_message(missing: &[Missing]) -> String {
    let mut message = String::from("the live run needs these environment variables:\n");
    for item in missing {
        message.push_str(&format!("  missing: {item}\n"));
    }
    message.push_str(
        "set them (see the README, \"Live tests\"), or set SKIP_AWS_INTEGRATION_TESTS=1 to skip",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn an_empty_environment_misses_everything_by_name() {
        let missing = missing(env(&[]));
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
        let missing = missing(env(&[
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("OPENAI_API_KEY", "sk-x"),
            ("ELASTICACHE_ENDPOINT", "rediss://cache:6379"),
            ("FAILOVER_DYNAMODB_TABLE", "usage"),
        ]));
        // The key id alone is not a credential.
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].purpose.starts_with("AWS credentials"));
    }

    #[test]
    fn empty_values_count_as_unset_and_skip_accepts_the_usual_spellings() {
        assert_eq!(missing(env(&[("OPENAI_API_KEY", " ")])).len(), 5);
        assert!(skip_requested(env(&[(SKIP_ENV, "1")])));
        assert!(skip_requested(env(&[(SKIP_ENV, "TRUE")])));
        assert!(!skip_requested(env(&[(SKIP_ENV, "0")])));
        assert!(!skip_requested(env(&[])));
    }
}
