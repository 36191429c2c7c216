//! The variables the local stack's functions run with, in one place for the local-stack tests,
//! the demo and the load harness: the configuration is read by the product's own
//! `from_vars`, exactly as a deployment reads its environment, from a map built here.

use std::collections::BTreeMap;

use securityhub_enricher::config::{ConfigError, EnricherConfig, InvestigatorConfig, Vars};

/// The local stack's table names, as the tests and the demo create them.
pub const CACHE_TABLE: &str = "cache";
pub const JOBS_TABLE: &str = "jobs";

/// A function's variables: named ones, and (for the demo and the harness) whatever else the
/// process's environment sets, so that `ORGANIZATIONS_RPS=…` on the command line applies.
#[derive(Debug, Clone, Default)]
pub struct LocalSettings {
    vars: BTreeMap<String, String>,
    from_environment: bool,
}

impl LocalSettings {
    /// Only what is named here; every other variable takes the code's default.
    pub fn named() -> Self {
        LocalSettings::default()
    }

    /// A deployment's settings: only the cache table named, every other variable from the
    /// process's environment or else the code's default.
    pub fn deployment(cache_table: &str) -> Self {
        LocalSettings { vars: BTreeMap::new(), from_environment: true }.set("CACHE_TABLE", cache_table)
    }

    /// For tests on the local stack: the cache table, and Organizations and Account at 1,000
    /// calls/s (burst 1,000) with a 120 s lookup budget, so that the stack's speed, not a budget
    /// meant for AWS, decides how long a lookup takes. Nothing from the environment.
    pub fn fast(cache_table: &str) -> Self {
        LocalSettings::named()
            .set("CACHE_TABLE", cache_table)
            .set("ORGANIZATIONS_RPS", "1000")
            .set("ORGANIZATIONS_BURST", "1000")
            .set("ACCOUNT_RPS", "1000")
            .set("ACCOUNT_BURST", "1000")
            .set("LOOKUP_BUDGET_SECONDS", "120")
    }

    /// Sets (or replaces) a variable.
    pub fn set(mut self, name: &str, value: impl ToString) -> Self {
        self.vars.insert(name.to_owned(), value.to_string());
        self
    }

    /// Removes a variable (it then takes the code's default, or the environment's value).
    pub fn unset(mut self, name: &str) -> Self {
        self.vars.remove(name);
        self
    }

    /// The contact role in the organization's management account, as the template names it.
    pub fn contact_role_in(self, management_account: &str) -> Self {
        self.set("CONTACT_ROLE_ARN", format!("arn:aws:iam::{management_account}:role/securityhub-enricher-contacts"))
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned().or_else(|| if self.from_environment { std::env::var(name).ok() } else { None })
    }

    /// The variables as the configuration reads them.
    pub fn vars(&self) -> Vars<impl Fn(&str) -> Option<String> + '_> {
        Vars(move |name: &str| self.get(name))
    }

    pub fn enricher(&self) -> Result<EnricherConfig, ConfigError> {
        EnricherConfig::from_vars(&self.vars())
    }

    pub fn investigator(&self) -> Result<InvestigatorConfig, ConfigError> {
        InvestigatorConfig::from_vars(&self.vars())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_variables_win_and_only_a_deployment_reads_the_environment() {
        let fast = LocalSettings::fast("c").set("LOOKUP_BUDGET_SECONDS", 10).set("JOBS_TABLE", JOBS_TABLE);
        assert_eq!(fast.get("LOOKUP_BUDGET_SECONDS").as_deref(), Some("10"));
        assert_eq!(fast.get("PATH"), None, "tests read nothing from the environment");
        let config = fast.enricher().unwrap();
        assert_eq!(config.cache_table, "c");
        assert_eq!(config.organizations_rate.per_second, 1000.0);
        assert!(LocalSettings::deployment("c").get("PATH").is_some());
        assert_eq!(LocalSettings::fast("c").unset("ACCOUNT_RPS").get("ACCOUNT_RPS"), None);
    }
}
