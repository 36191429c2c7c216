//! The one place environment variables are read: parsed and validated at start, with errors
//! that name the variable. Defaults are documented in README.md ("Configuration").

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use crate::core::cache_entry::CacheTimes;
use crate::core::enrich::{Rendering, TagFilter};
use crate::core::quotas;
use crate::core::rate::{Rate, share_of};
use crate::core::routing::{DEFAULT_OWNER_TAG_KEY, RoutingPolicy, RoutingRules};
use crate::core::select::Criteria;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {var} is required: {hint}")]
    Missing { var: &'static str, hint: &'static str },
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid { var: &'static str, value: String, reason: String },
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
    /// `TAG_KEYS`, `ROUTING_POLICY`, `OWNER_TAG_KEY`: how every path renders enrichment.
    pub rendering: Rendering,
    pub cache: CacheTimes,
    pub organizations_rate: Rate,
    pub account_rate: Rate,
    pub sts_rate: Rate,
    /// This environment's static share of BatchUpdateFindings' per-account-and-region quota:
    /// the rate under `QuotaSharing::Static`, the fallback under `QuotaSharing::Ledger`.
    pub securityhub_rate: Rate,
    /// What the enricher environments divide among themselves (the quota less the investigator's).
    pub securityhub_pool: Rate,
    pub quota_sharing: QuotaSharing,
    pub lookup_concurrency: usize,
    /// The longest a batch waits for lookups before enriching partially.
    pub lookup_budget: Duration,
    /// Stop starting work this long before the invocation's deadline.
    pub deadline_margin: Duration,
    /// Detective fan-out, when `JOBS_TABLE` is set.
    pub investigations: Option<InvestigationConfig>,
    /// `ENRICHED_EVENTS_BUS`: the bus (name or ARN) enriched-finding events go to; unset, none
    /// are published.
    pub events_bus: Option<String>,
    /// `REFRESH_INTERVAL_MINUTES`: from the end of one refresher pass over every finding to the
    /// start of the next.
    pub refresh_interval: Duration,
    /// `POSTURE_TOP_OWNERS`: the owners a pass's posture counts name (by open findings); the
    /// others are counted as `other` (`core::posture`).
    pub posture_top_owners: usize,
    /// `PENDING_WRITE_DELAY_SECONDS`: how long a finding may wait in the pending-writes store
    /// for later findings of its account while the quota is saturated; `None` (0): nothing waits.
    pub pending_delay: Option<Duration>,
}

/// How findings are rendered, the same for every function that writes them: `TAG_KEYS`,
/// `ROUTING_POLICY`, `OWNER_TAG_KEY`.
fn rendering<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Rendering, ConfigError> {
    Ok(Rendering { tag_filter: tag_filter(vars)?, routing: routing_rules(vars)? })
}

/// `ROUTING_POLICY` (a JSON document) and `OWNER_TAG_KEY`, validated at start.
fn routing_rules<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<RoutingRules, ConfigError> {
    let policy = match vars.optional("ROUTING_POLICY") {
        None => RoutingPolicy::default(),
        Some(document) => RoutingPolicy::parse(&document).map_err(|e| ConfigError::Invalid {
            var: "ROUTING_POLICY",
            value: document.chars().take(200).collect(),
            reason: format!(
                "{e} (expected {{\"rules\":[{{\"ou_path_prefix\":\"Root/...\",\"account_tags\":{{\"k\":\"v\"}},\"set\":{{\"owner\":\"...\",\"environment\":\"...\",\"criticality\":\"...\"}}}}]}})"
            ),
        })?,
    };
    let owner_tag_key = vars.optional("OWNER_TAG_KEY").unwrap_or_else(|| DEFAULT_OWNER_TAG_KEY.to_owned());
    if owner_tag_key.chars().count() > 128 {
        return Err(ConfigError::Invalid {
            var: "OWNER_TAG_KEY",
            value: owner_tag_key,
            reason: "an account tag key has at most 128 characters".into(),
        });
    }
    Ok(RoutingRules { policy, owner_tag_key })
}

/// `ENRICHED_EVENTS_BUS`: a bus name (1–256 of `[A-Za-z0-9._-/]`) or an event bus ARN.
fn events_bus<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Option<String>, ConfigError> {
    let Some(bus) = vars.optional("ENRICHED_EVENTS_BUS") else { return Ok(None) };
    let is_arn = bus.starts_with("arn:") && bus.contains(":events:") && bus.contains(":event-bus/");
    let is_name = bus.len() <= 256 && bus.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    if !(is_arn || is_name) {
        return Err(ConfigError::Invalid {
            var: "ENRICHED_EVENTS_BUS",
            value: bus,
            reason: "expected an event bus name or arn:aws:events:<region>:<account>:event-bus/<name>".into(),
        });
    }
    Ok(Some(bus))
}

/// How enricher environments divide BatchUpdateFindings' quota (`SECURITYHUB_QUOTA_SHARING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaSharing {
    /// Each environment sending updates takes pool ÷ live claims in a ledger item of the cache
    /// table (see `quota`).
    Ledger,
    /// Each environment keeps `SECURITYHUB_RPS` (default pool ÷ `CONCURRENT_ENVIRONMENTS`).
    Static,
}

impl FromStr for QuotaSharing {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "ledger" => Ok(QuotaSharing::Ledger),
            "static" => Ok(QuotaSharing::Static),
            _ => Err("expected ledger or static".into()),
        }
    }
}

/// What the enricher needs to queue investigations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvestigationConfig {
    pub jobs_table: String,
    pub criteria: Criteria,
    pub lookback_hours: i64,
}

fn investigation_config<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    jobs_table: String,
) -> Result<InvestigationConfig, ConfigError> {
    let defaults = Criteria::default();
    let severities = match vars.optional("INVESTIGATE_SEVERITIES") {
        None => defaults.severities,
        Some(list) => {
            let labels: BTreeSet<String> =
                list.split(',').map(|s| s.trim().to_uppercase()).filter(|s| !s.is_empty()).collect();
            let known = ["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"];
            if labels.is_empty() || labels.iter().any(|l| !known.contains(&l.as_str())) {
                return Err(ConfigError::Invalid {
                    var: "INVESTIGATE_SEVERITIES",
                    value: list,
                    reason: format!("expected a comma-separated list of {}", known.join(", ")),
                });
            }
            labels
        }
    };
    Ok(InvestigationConfig {
        jobs_table,
        criteria: Criteria { severities, action: vars.optional("INVESTIGATE_ACTION").unwrap_or(defaults.action) },
        lookback_hours: vars.parsed("INVESTIGATION_LOOKBACK_HOURS", 24, |h| (1..=24 * 30).contains(h))?,
    })
}

/// The investigator's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct InvestigatorConfig {
    pub jobs_table: String,
    pub cache_table: String,
    /// The enricher's rendering: a verdict's write keeps the findings current for every path.
    pub rendering: Rendering,
    /// `ENRICHED_EVENTS_BUS`: the findings a verdict is written to are published, as every
    /// path's are.
    pub events_bus: Option<String>,
    pub graph_arn: Option<String>,
    pub detective_rate: Rate,
    pub max_attempts: u32,
    pub securityhub_rate: Rate,
    pub deadline_margin: Duration,
}

impl InvestigatorConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&env_vars())
    }

    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError> {
        let graph_arn = vars.optional("DETECTIVE_GRAPH_ARN");
        if let Some(arn) = &graph_arn
            && !(arn.starts_with("arn:") && arn.contains(":detective:") && arn.contains(":graph:"))
        {
            return Err(ConfigError::Invalid {
                var: "DETECTIVE_GRAPH_ARN",
                value: arn.clone(),
                reason: "expected arn:aws:detective:<region>:<account>:graph:<id>".into(),
            });
        }
        Ok(InvestigatorConfig {
            jobs_table: vars
                .required("JOBS_TABLE", "the DynamoDB table (partition key JobId, S) of investigation jobs")?,
            cache_table: vars.required("CACHE_TABLE", "the enricher's account metadata cache table")?,
            rendering: rendering(vars)?,
            events_bus: events_bus(vars)?,
            graph_arn,
            detective_rate: vars.rate("DETECTIVE_RPS", "DETECTIVE_BURST", quotas::DETECTIVE_STARTS)?,
            max_attempts: vars.parsed("INVESTIGATION_MAX_ATTEMPTS", 3, |n| (1..=20).contains(n))?,
            securityhub_rate: vars.rate("SECURITYHUB_RPS", "SECURITYHUB_BURST", quotas::INVESTIGATOR_BATCH_UPDATE)?,
            deadline_margin: Duration::from_millis(vars.parsed("DEADLINE_MARGIN_MS", 3000, |_| true)?),
        })
    }
}

fn tag_filter<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<TagFilter, ConfigError> {
    Ok(match vars.optional("TAG_KEYS") {
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
    })
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

/// Variables from a map instead of the process environment: a deployed function's environment
/// as Lambda reports it (`enricher-admin --stack`), read by the same parsers.
pub fn map_vars(map: &std::collections::BTreeMap<String, String>) -> Vars<impl Fn(&str) -> Option<String> + '_> {
    Vars(move |name: &str| map.get(name).cloned())
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
    "SECURITYHUB_QUOTA_SHARING",
    "CONCURRENT_ENVIRONMENTS",
    "LOOKUP_CONCURRENCY",
    "LOOKUP_BUDGET_SECONDS",
    "DEADLINE_MARGIN_MS",
    "JOBS_TABLE",
    "INVESTIGATE_SEVERITIES",
    "INVESTIGATE_ACTION",
    "INVESTIGATION_LOOKBACK_HOURS",
    "ROUTING_POLICY",
    "OWNER_TAG_KEY",
    "ENRICHED_EVENTS_BUS",
    "REFRESH_INTERVAL_MINUTES",
    "POSTURE_TOP_OWNERS",
    "PENDING_WRITE_DELAY_SECONDS",
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
    "ROUTING_POLICY",
    "OWNER_TAG_KEY",
    "ENRICHED_EVENTS_BUS",
];

/// Variables the account-events function reads.
pub const ACCOUNT_EVENTS_VARS: &[&str] = &["CACHE_TABLE"];

/// The account-events function's configuration: the enricher's cache table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEventsConfig {
    pub cache_table: String,
}

impl AccountEventsConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&env_vars())
    }

    pub fn from_vars<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<Self, ConfigError> {
        Ok(AccountEventsConfig {
            cache_table: vars.required("CACHE_TABLE", "the enricher's account metadata cache table")?,
        })
    }
}

// The quotas and default shares are declared in `core::quotas`.
pub use crate::core::quotas::{
    BATCH_UPDATE_FINDINGS as SECURITYHUB_QUOTA, INVESTIGATOR_BATCH_UPDATE as INVESTIGATOR_SECURITYHUB_SHARE,
};

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
        let rendering = rendering(vars)?;
        let cache = CacheTimes {
            fresh: vars.seconds("CACHE_TTL_SECONDS", 24 * 3600)?,
            negative: vars.seconds("NEGATIVE_CACHE_TTL_SECONDS", 3600)?,
            unknown_contact: vars.seconds("UNKNOWN_CONTACT_TTL_SECONDS", 900)?,
            stale_grace: vars.seconds("STALE_GRACE_SECONDS", 7 * 24 * 3600)?,
            memory: vars.seconds("MEMORY_CACHE_SECONDS", 300)?,
            memory_capacity: vars.parsed("MEMORY_CACHE_CAPACITY", 20_000, |n| *n > 0)?,
        };
        let environments: u32 = vars.parsed("CONCURRENT_ENVIRONMENTS", 1, |n| *n > 0)?;
        let investigations = match vars.optional("JOBS_TABLE") {
            Some(table) => Some(investigation_config(vars, table)?),
            None => None,
        };
        // With investigations on, the investigator's default share comes off the top.
        let reserved =
            if investigations.is_some() { INVESTIGATOR_SECURITYHUB_SHARE } else { Rate { per_second: 0.0, burst: 0 } };
        let pool = Rate {
            per_second: SECURITYHUB_QUOTA.per_second - reserved.per_second,
            burst: SECURITYHUB_QUOTA.burst - reserved.burst,
        };
        let share = share_of(pool, environments);
        Ok(EnricherConfig {
            cache_table,
            contact_role,
            rendering,
            cache,
            organizations_rate: vars.rate(
                "ORGANIZATIONS_RPS",
                "ORGANIZATIONS_BURST",
                quotas::ORGANIZATIONS_PER_ENVIRONMENT,
            )?,
            account_rate: vars.rate("ACCOUNT_RPS", "ACCOUNT_BURST", quotas::ACCOUNT_PER_ENVIRONMENT)?,
            sts_rate: vars.rate("STS_RPS", "STS_BURST", quotas::STS_ASSUME_ROLE)?,
            securityhub_rate: vars.rate("SECURITYHUB_RPS", "SECURITYHUB_BURST", share)?,
            securityhub_pool: pool,
            quota_sharing: vars.parsed("SECURITYHUB_QUOTA_SHARING", QuotaSharing::Ledger, |_| true)?,
            lookup_concurrency: vars.parsed("LOOKUP_CONCURRENCY", 8, |n| (1..=256).contains(n))?,
            lookup_budget: vars.seconds("LOOKUP_BUDGET_SECONDS", 5)?,
            deadline_margin: Duration::from_millis(vars.parsed("DEADLINE_MARGIN_MS", 3000, |_| true)?),
            investigations,
            events_bus: events_bus(vars)?,
            refresh_interval: Duration::from_secs(
                60 * vars.parsed("REFRESH_INTERVAL_MINUTES", 15u64, |m| (1..=7 * 24 * 60).contains(m))?,
            ),
            posture_top_owners: vars
                .parsed("POSTURE_TOP_OWNERS", crate::core::posture::DEFAULT_TOP_OWNERS, |n| (1..=100).contains(n))?,
            // At most 15 minutes: a Lambda invocation's longest, so every environment's drain
            // and the refresher's every minute keep the bound.
            pending_delay: Some(vars.parsed("PENDING_WRITE_DELAY_SECONDS", 60u64, |s| *s <= 900)?)
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
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
        assert_eq!(config.rendering.tag_filter, TagFilter::All);
        assert_eq!(config.contact_role, None);
        assert_eq!(config.securityhub_rate, SECURITYHUB_QUOTA);
        assert_eq!(config.quota_sharing, QuotaSharing::Ledger);
        assert_eq!(config.securityhub_pool, SECURITYHUB_QUOTA);
        assert_eq!(config.cache.fresh, Duration::from_secs(86_400));
    }

    #[test]
    fn quota_is_shared_between_environments() {
        let config =
            EnricherConfig::from_vars(&vars(&[("CACHE_TABLE", "t"), ("CONCURRENT_ENVIRONMENTS", "4")])).unwrap();
        assert_eq!(config.securityhub_rate, Rate { per_second: 2.5, burst: 7 });
        let with_investigator = EnricherConfig::from_vars(&vars(&[
            ("CACHE_TABLE", "t"),
            ("CONCURRENT_ENVIRONMENTS", "3"),
            ("JOBS_TABLE", "j"),
        ]))
        .unwrap();
        assert_eq!(
            with_investigator.securityhub_rate,
            Rate { per_second: 3.0, burst: 9 },
            "(10 - 1) / 3, (30 - 3) / 3"
        );
        assert_eq!(with_investigator.securityhub_pool, Rate { per_second: 9.0, burst: 27 });
        let fixed =
            EnricherConfig::from_vars(&vars(&[("CACHE_TABLE", "t"), ("SECURITYHUB_QUOTA_SHARING", "static")])).unwrap();
        assert_eq!(fixed.quota_sharing, QuotaSharing::Static);
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
            ("SECURITYHUB_QUOTA_SHARING", "fair"),
            ("ROUTING_POLICY", "{\"rules\":[{\"set\":{}}]}"),
            ("ROUTING_POLICY", "not json"),
            ("ENRICHED_EVENTS_BUS", "bus with spaces"),
        ] {
            let err = EnricherConfig::from_vars(&vars(&[("CACHE_TABLE", "t"), (var, value)])).unwrap_err();
            assert!(err.to_string().contains(var), "{var}: {err}");
        }
    }

    /// Every variable each function reads is in its published list, and nothing else is read:
    /// the template test compares the template against these lists.
    #[test]
    fn the_published_variable_lists_are_exactly_what_is_read() {
        use std::sync::Mutex;
        let read = Mutex::new(BTreeSet::new());
        let vars = Vars(|name: &str| {
            read.lock().unwrap().insert(name.to_owned());
            match name {
                "CACHE_TABLE" | "JOBS_TABLE" => Some("t".to_owned()),
                "CONTACT_ROLE_ARN" => Some("arn:aws:iam::111122223333:role/r".to_owned()),
                _ => None,
            }
        });
        EnricherConfig::from_vars(&vars).unwrap();
        let enricher: BTreeSet<String> = ENRICHER_VARS.iter().map(|s| s.to_string()).collect();
        assert_eq!(std::mem::take(&mut *read.lock().unwrap()), enricher);
        InvestigatorConfig::from_vars(&vars).unwrap();
        let investigator: BTreeSet<String> = INVESTIGATOR_VARS.iter().map(|s| s.to_string()).collect();
        assert_eq!(std::mem::take(&mut *read.lock().unwrap()), investigator);
        AccountEventsConfig::from_vars(&vars).unwrap();
        let account_events: BTreeSet<String> = ACCOUNT_EVENTS_VARS.iter().map(|s| s.to_string()).collect();
        assert_eq!(std::mem::take(&mut *read.lock().unwrap()), account_events);
    }

    #[test]
    fn investigation_settings_are_validated() {
        let config = EnricherConfig::from_vars(&vars(&[
            ("CACHE_TABLE", "t"),
            ("JOBS_TABLE", "j"),
            ("INVESTIGATE_SEVERITIES", "high, critical"),
        ]))
        .unwrap();
        let inv = config.investigations.unwrap();
        assert_eq!(inv.criteria.severities, BTreeSet::from(["CRITICAL".into(), "HIGH".into()]));
        assert_eq!(inv.lookback_hours, 24);
        let err = EnricherConfig::from_vars(&vars(&[
            ("CACHE_TABLE", "t"),
            ("JOBS_TABLE", "j"),
            ("INVESTIGATE_SEVERITIES", "URGENT"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("INVESTIGATE_SEVERITIES"));
        let err = InvestigatorConfig::from_vars(&vars(&[("CACHE_TABLE", "t")])).unwrap_err();
        assert!(err.to_string().contains("JOBS_TABLE"));
        let err = InvestigatorConfig::from_vars(&vars(&[
            ("CACHE_TABLE", "t"),
            ("JOBS_TABLE", "j"),
            ("DETECTIVE_GRAPH_ARN", "g"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("DETECTIVE_GRAPH_ARN"));
    }

    #[test]
    fn routing_policy_owner_tag_and_bus_are_read() {
        let config = EnricherConfig::from_vars(&vars(&[
            ("CACHE_TABLE", "t"),
            ("ROUTING_POLICY", r#"{"rules":[{"ou_path_prefix":"Root/Workloads/Prod","account_tags":{"team":"payments"},"set":{"owner":"payments","criticality":"high"}}]}"#),
            ("OWNER_TAG_KEY", "Team"),
            ("ENRICHED_EVENTS_BUS", "arn:aws:events:us-east-1:111122223333:event-bus/findings"),
        ]))
        .unwrap();
        assert_eq!(config.rendering.routing.policy.rules.len(), 1);
        assert_eq!(config.rendering.routing.owner_tag_key, "Team");
        assert_eq!(config.events_bus.as_deref(), Some("arn:aws:events:us-east-1:111122223333:event-bus/findings"));
        let defaults = EnricherConfig::from_vars(&vars(&[("CACHE_TABLE", "t")])).unwrap();
        assert_eq!(defaults.rendering.routing, RoutingRules::default());
        assert_eq!(defaults.events_bus, None);
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
        assert_eq!(config.rendering.tag_filter, TagFilter::Only(BTreeSet::from(["CostCenter".into(), "Owner".into()])));
        let role = config.contact_role.unwrap();
        assert_eq!(role.session_name, "securityhub-enricher");
        assert_eq!(role.external_id.as_deref(), Some("x-1"));
    }
}
