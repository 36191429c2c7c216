//! Ownership as data: `ROUTING_POLICY` maps OU-path prefixes and account tags to `owner`,
//! `environment` and `criticality`, one JSON document validated at start. Pure matching.
//!
//! A rule matches when all its conditions hold (each is optional). For each key of `set`, the
//! best matching rule that sets it wins: the longest `ou_path_prefix` (in path segments), then
//! the most matching `account_tags`, then the earlier rule. Without a rule setting `owner`, the
//! account tag named by `OWNER_TAG_KEY` is the owner.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The values routing decides; each may stay unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// "Root/Workloads/Prod": matches that OU and every OU below it, by whole path segments.
    #[serde(default)]
    pub ou_path_prefix: Option<String>,
    /// Every tag listed must be on the account with exactly this value.
    #[serde(default)]
    pub account_tags: BTreeMap<String, String>,
    pub set: Routing,
}

/// The whole policy; the default (no rules) routes by the owner tag alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingPolicy {
    pub rules: Vec<Rule>,
}

impl Routing {
    /// The UserDefinedFields this routing writes, in a fixed order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        use crate::core::fields::keys;
        [(keys::OWNER, &self.owner), (keys::ENVIRONMENT, &self.environment), (keys::CRITICALITY, &self.criticality)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }
}

/// The default of `OWNER_TAG_KEY`.
pub const DEFAULT_OWNER_TAG_KEY: &str = "owner";

/// The policy and the owner tag it falls back on, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingRules {
    pub policy: RoutingPolicy,
    pub owner_tag_key: String,
}

impl Default for RoutingRules {
    fn default() -> Self {
        RoutingRules { policy: RoutingPolicy::default(), owner_tag_key: DEFAULT_OWNER_TAG_KEY.to_owned() }
    }
}

impl RoutingRules {
    pub fn route(&self, ou_path: &str, tags: &BTreeMap<String, String>) -> Routing {
        self.policy.route(ou_path, tags, &self.owner_tag_key)
    }
}

/// Why a policy document is refused at start.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("not a routing policy document: {0}")]
    Json(#[from] serde_json::Error),
    #[error("rule {rule}: `set` must set at least one of owner, environment, criticality")]
    EmptySet { rule: usize },
    #[error("rule {rule}: {field} must not be blank")]
    Blank { rule: usize, field: &'static str },
}

/// The OU path's segments, ignoring empty ones so that "Root/Prod/" equals "Root/Prod".
fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

impl RoutingPolicy {
    pub fn parse(document: &str) -> Result<Self, PolicyError> {
        let policy: RoutingPolicy = serde_json::from_str(document)?;
        for (rule, r) in policy.rules.iter().enumerate() {
            let set = &r.set;
            if set.owner.is_none() && set.environment.is_none() && set.criticality.is_none() {
                return Err(PolicyError::EmptySet { rule });
            }
            let blank = |v: &Option<String>| v.as_deref().is_some_and(|v| v.trim().is_empty());
            for (field, value) in [
                ("set.owner", &set.owner),
                ("set.environment", &set.environment),
                ("set.criticality", &set.criticality),
            ] {
                if blank(value) {
                    return Err(PolicyError::Blank { rule, field });
                }
            }
            if r.ou_path_prefix.as_deref().is_some_and(|p| segments(p).is_empty()) {
                return Err(PolicyError::Blank { rule, field: "ou_path_prefix" });
            }
        }
        Ok(policy)
    }

    /// The routing of an account at this OU path ("Root/Workloads/Prod") with these tags.
    pub fn route(&self, ou_path: &str, tags: &BTreeMap<String, String>, owner_tag_key: &str) -> Routing {
        let path = segments(ou_path);
        // (prefix segments, matching tags, -index) orders rules best-first.
        let mut matching: Vec<(usize, usize, usize, &Rule)> = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let prefix_len = match &rule.ou_path_prefix {
                None => 0,
                Some(prefix) => {
                    let prefix = segments(prefix);
                    if prefix.len() > path.len() || path[..prefix.len()] != prefix[..] {
                        continue;
                    }
                    prefix.len()
                }
            };
            if !rule.account_tags.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                continue;
            }
            matching.push((prefix_len, rule.account_tags.len(), index, rule));
        }
        matching.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let best = |pick: fn(&Routing) -> &Option<String>| matching.iter().find_map(|m| pick(&m.3.set).clone());
        let owner = best(|s| &s.owner).or_else(|| tags.get(owner_tag_key).filter(|v| !v.trim().is_empty()).cloned());
        Routing { owner, environment: best(|s| &s.environment), criticality: best(|s| &s.criticality) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const POLICY: &str = r#"{"rules":[
        {"ou_path_prefix":"Root/Workloads","set":{"environment":"nonprod","criticality":"low"}},
        {"ou_path_prefix":"Root/Workloads/Prod","set":{"environment":"prod","criticality":"medium"}},
        {"ou_path_prefix":"Root/Workloads/Prod","account_tags":{"team":"payments"},"set":{"owner":"payments","criticality":"high"}},
        {"account_tags":{"team":"payments"},"set":{"owner":"payments-fallback"}}
    ]}"#;

    #[test]
    fn longest_prefix_then_most_tags_then_earlier_rule_per_key() {
        let policy = RoutingPolicy::parse(POLICY).unwrap();
        let r = policy.route("Root/Workloads/Prod", &tags(&[("team", "payments")]), "owner");
        assert_eq!(r.owner.as_deref(), Some("payments"));
        assert_eq!(r.environment.as_deref(), Some("prod"), "the longest prefix sets environment");
        assert_eq!(r.criticality.as_deref(), Some("high"), "same prefix, more matching tags");
        let dev = policy.route("Root/Workloads/Dev/Team", &tags(&[("owner", "web")]), "owner");
        assert_eq!(
            dev,
            Routing { owner: Some("web".into()), environment: Some("nonprod".into()), criticality: Some("low".into()) },
            "no rule sets owner: the owner tag does"
        );
        let near_miss = policy.route("Root/Workloads/Production", &tags(&[]), "owner");
        assert_eq!(near_miss.environment.as_deref(), Some("nonprod"), "prefixes match whole segments");
        assert_eq!(RoutingPolicy::default().route("Root", &tags(&[("o", "x")]), "o").owner.as_deref(), Some("x"));
    }

    #[test]
    fn bad_documents_are_refused_with_the_rule_named() {
        assert!(matches!(RoutingPolicy::parse("{}"), Err(PolicyError::Json(_))));
        assert!(matches!(RoutingPolicy::parse(r#"{"rules":[{"set":{"ownr":"x"}}]}"#), Err(PolicyError::Json(_))));
        assert!(matches!(RoutingPolicy::parse(r#"{"rules":[{"set":{}}]}"#), Err(PolicyError::EmptySet { rule: 0 })));
        let blank = RoutingPolicy::parse(r#"{"rules":[{"set":{"owner":"a"}},{"set":{"owner":" "}}]}"#);
        assert!(matches!(blank, Err(PolicyError::Blank { rule: 1, field: "set.owner" })));
    }
}
