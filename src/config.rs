//! The one place environment variables are read: parsed and validated at start, with errors
//! that name the variable. Defaults are documented in README.md ("Configuration").

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use crate::enrich::TagFilter;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {var} is required: {hint}")]
    Missing { var: &'static str, hint: &'static str },
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid { var: &'static str, value: String, reason: String },
}

/// A request rate for one downstream API, per running environment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

/// How long each kind of cache entry stays fresh, and how long stale data may still be served.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheTimes {
    pub fresh: Duration,
    /// For accounts Organizations says do not exist.
    pub negative: Duration,
    /// For an account whose security contact we were not allowed to read.
    pub unknown_contact: Duration,
    /// After `fresh`, how long an entry may still enrich findings while a refresh fails.
    pub stale_grace: Duration,
    pub memory: Duration,
    pub memory_capacity: u64,
}

/// How the enricher reaches the management account's contact data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRole {
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnricherConfig {
    pub cache_table: String,
    pub contact_role: Option<ContactRole>,
    pub tag_filter: TagFilter,
    pub cache: CacheTimes,
    pub organizations_rate: Rate,
    pub account_rate: Rate,
    pub sts_rate: Rate,
    /// This environment's share of BatchUpdateFindings' per-account-and-region quota.
    pub securityhub_rate: Rate,
    pub lookup_concurrency: usize,
    /// The longest a batch waits for lookups before enriching partially.
    pub lookup_budget: Duration,
    /// Stop starting work this long before the invocation's deadline.
    pub deadline_margin: Duration,
}

/// Reads variables through `lookup` so tests need not touch the process environment.
pub struct Vars<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    pub fn required(&self, var: &'static str, hint: &'static str) -> Result<String, ConfigError> {
        self.get(var).ok_or(ConfigError::Missing { var, hint })
    }

    pub fn optional(&self, var: &'static str) -> Option<String> {
        self.get(var)
    }

    pub fn parsed<T: FromStr>(
        &self,
        var: &'static str,
        default: T,
        valid: impl Fn(&T) -> bool,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(value) => match value.parse::<T>() {
                Ok(parsed) if valid(&parsed) => Ok(parsed),
                Ok(_) => Err(ConfigError::Invalid { var, value, reason: "out of range".into() }),
                Err(e) => Err(ConfigError::Invalid { var, value, reason: e.to_string() }),
            },
        }
    }

    pub fn seconds(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parsed(var, default, |s| *s > 0).map(Duration::from_secs)
    }

    pub fn rate(&self, rps_var: &'static str, burst_var: &'static str, default: Rate) -> Result<Rate, ConfigError> {
        Ok(Rate {
            per_second: self.parsed(rps_var, default.per_second, |r: &f64| r.is_finite() && *r > 0.0)?,
            burst: self.parsed(burst_var, default.burst, |b| *b > 0)?,
        })
    }
}

pub fn env_vars() -> Vars<impl Fn(&str) -> Option<String>> {
    Vars(|name: &str| std::env::var(name).ok())
}

/// Variables the enricher reads; the template test checks the template sets exactly these.
pub const ENRICHER_VARS: &[&str] = &[
    "CACHE_TABLE",
    "CONTACT_ROLE_ARN",
    "CONTACT_ROLE_SESSION_NAME",
    "CONTACT_ROLE_EXTERNAL_ID",
    "TAG_KEYS",
    "CACHE_TTL_SECONDS",
    "NEGATIVE_CACHE_TTL_SECONDS",
    "UNKNOWN_CONTACT_TTL_SECONDS",
    "STALE_GRACE_SECONDS",
    "MEMORY_CACHE_SECONDS",
    "MEMORY_CACHE_CAPACITY",
    "ORGANIZATIONS_RPS",
    "ORGANIZATIONS_BURST",
    "ACCOUNT_RPS",
    "ACCOUNT_BURST",
    "STS_RPS",
    "STS_BURST",
    "SECURITYHUB_RPS",
    "SECURITYHUB_BURST",
    "CONCURRENT_ENVIRONMENTS",
    "LOOKUP_CONCURRENCY",
    "LOOKUP_BUDGET_SECONDS",
    "DEADLINE_MARGIN_MS",
    "JOBS_TABLE",
    "INVESTIGATE_SEVERITIES",
    "INVESTIGATE_ACTION",
    "INVESTIGATION_LOOKBACK_HOURS",
];

/// Variables the investigator reads.
pub const INVESTIGATOR_VARS: &[&str] = &[
    "JOBS_TABLE",
    "CACHE_TABLE",
    "TAG_KEYS",
    "DETECTIVE_GRAPH_ARN",
    "DETECTIVE_RPS",
    "DETECTIVE_BURST",
    "INVESTIGATION_MAX_ATTEMPTS",
    "SECURITYHUB_RPS",
    "SECURITYHUB_BURST",
    "DEADLINE_MARGIN_MS",
];

/// BatchUpdateFindings' quota per account and region; each environment takes its share.
pub const SECURITYHUB_QUOTA: Rate = Rate { per_second: 10.0, burst: 30 };

impl EnricherConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&env_vars())
    }

    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError> {
        let cache_table =
            vars.required("CACHE_TABLE", "the DynamoDB table (partition key AccountId, S) caching account metadata")?;
        let contact_role = match vars.optional("CONTACT_ROLE_ARN") {
            None => None,
            Some(role_arn) => {
                if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
                    return Err(ConfigError::Invalid {
                        var: "CONTACT_ROLE_ARN",
                        value: role_arn,
                        reason: "expected an IAM role ARN (arn:aws:iam::<account>:role/<name>)".into(),
                    });
                }
                Some(ContactRole {
                    role_arn,
                    session_name: vars
                        .optional("CONTACT_ROLE_SESSION_NAME")
                        .unwrap_or_else(|| "securityhub-enricher".to_owned()),
                    external_id: vars.optional("CONTACT_ROLE_EXTERNAL_ID"),
                })
            }
        };
        let tag_filter = match vars.optional("TAG_KEYS") {
            None => TagFilter::All,
            Some(list) => {
                let keys: BTreeSet<String> =
                    list.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect();
                if keys.is_empty() {
                    return Err(ConfigError::Invalid {
                        var: "TAG_KEYS",
                        value: list,
                        reason: "expected a comma-separated list of tag keys".into(),
                    });
                }
                TagFilter::Only(keys)
            }
        };
        let cache = CacheTimes {
            fresh: vars.seconds("CACHE_TTL_SECONDS", 24 * 3600)?,
            negative: vars.seconds("NEGATIVE_CACHE_TTL_SECONDS", 3600)?,
            unknown_contact: vars.seconds("UNKNOWN_CONTACT_TTL_SECONDS", 900)?,
            stale_grace: vars.seconds("STALE_GRACE_SECONDS", 7 * 24 * 3600)?,
            memory: vars.seconds("MEMORY_CACHE_SECONDS", 300)?,
            memory_capacity: vars.parsed("MEMORY_CACHE_CAPACITY", 20_000, |n| *n > 0)?,
        };
        let environments: u32 = vars.parsed("CONCURRENT_ENVIRONMENTS", 1, |n| *n > 0)?;
        let share = Rate {
            per_second: SECURITYHUB_QUOTA.per_second / f64::from(environments),
            burst: (SECURITYHUB_QUOTA.burst / environments).max(1),
        };
        Ok(EnricherConfig {
            cache_table,
            contact_role,
            tag_filter,
            cache,
            organizations_rate: vars.rate(
                "ORGANIZATIONS_RPS",
                "ORGANIZATIONS_BURST",
                Rate { per_second: 1.0, burst: 5 },
            )?,
            account_rate: vars.rate("ACCOUNT_RPS", "ACCOUNT_BURST", Rate { per_second: 5.0, burst: 10 })?,
            sts_rate: vars.rate("STS_RPS", "STS_BURST", Rate { per_second: 1.0, burst: 2 })?,
            securityhub_rate: vars.rate("SECURITYHUB_RPS", "SECURITYHUB_BURST", share)?,
            lookup_concurrency: vars.parsed("LOOKUP_CONCURRENCY", 8, |n| (1..=256).contains(n))?,
            lookup_budget: vars.seconds("LOOKUP_BUDGET_SECONDS", 20)?,
            deadline_margin: Duration::from_millis(vars.parsed("DEADLINE_MARGIN_MS", 3000, |_| true)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> Vars<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Vars(move |name: &str| map.get(name).cloned())
    }

    #[test]
    fn cache_table_is_required_and_named_in_the_error() {
        let err = EnricherConfig::from_vars(&vars(&[])).unwrap_err();
        assert!(err.to_string().contains("CACHE_TABLE"), "{err}");
    }

    #[test]
    fn defaults_are_safe() {
        let config = EnricherConfig::from_vars(&vars(&[("CACHE_TABLE", "t")])).unwrap();
        assert_eq!(config.tag_filter, TagFilter::All);
        assert_eq!(config.contact_role, None);
        assert_eq!(config.securityhub_rate, SECURITYHUB_QUOTA);
        assert_eq!(config.cache.fresh, Duration::from_secs(86_400));
    }

    #[test]
    fn quota_is_shared_between_environments() {
        let config =
            EnricherConfig::from_vars(&vars(&[("CACHE_TABLE", "t"), ("CONCURRENT_ENVIRONMENTS", "4")])).unwrap();
        assert_eq!(config.securityhub_rate, Rate { per_second: 2.5, burst: 7 });
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("ORGANIZATIONS_RPS", "fast"),
            ("ORGANIZATIONS_RPS", "0"),
            ("CACHE_TTL_SECONDS", "-1"),
            ("TAG_KEYS", " , "),
            ("CONTACT_ROLE_ARN", "not-an-arn"),
            ("LOOKUP_CONCURRENCY", "0"),
        ] {
            let err = EnricherConfig::from_vars(&vars(&[("CACHE_TABLE", "t"), (var, value)])).unwrap_err();
            assert!(err.to_string().contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn tag_allowlist_and_contact_role_are_read() {
        let config = EnricherConfig::from_vars(&vars(&[
            ("CACHE_TABLE", "t"),
            ("TAG_KEYS", "Owner, CostCenter"),
            ("CONTACT_ROLE_ARN", "arn:aws:iam::111122223333:role/contacts"),
            ("CONTACT_ROLE_EXTERNAL_ID", "x-1"),
        ]))
        .unwrap();
        assert_eq!(config.tag_filter, TagFilter::Only(BTreeSet::from(["CostCenter".into(), "Owner".into()])));
        let role = config.contact_role.unwrap();
        assert_eq!(role.session_name, "securityhub-enricher");
        assert_eq!(role.external_id.as_deref(), Some("x-1"));
    }
}
