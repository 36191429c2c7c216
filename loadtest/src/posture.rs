//! The posture figure: the real refresher's pass over a generated organization's findings (in
//! process, on the in-memory fakes), and the EMF documents its posture counts become at the
//! pass's end: how many, how large, and within EMF's limits (`loadtest posture-emf`).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use securityhub_enricher::core::account::{AccountMetadata, AccountRecord, ContactLookup, OrgUnit};
use securityhub_enricher::core::finding::Severity;
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::core::routing::{RoutingPolicy, RoutingRules};
use securityhub_enricher::core::time::since_epoch;
use securityhub_enricher::service::refresh::Refresher;
use securityhub_enricher::telemetry::{EMF_MAX_DIMENSIONS, EMF_MAX_METRICS, posture_documents};

use crate::fakes::directory::StaticSource;
use crate::fakes::enricher::EnricherBuilder;
use crate::fakes::hub::{InMemoryHub, active_finding};
use crate::fakes::posture::InMemoryPostureStore;
use crate::fakes::sweep_state::InMemorySweepState;

/// What a pass's posture counts cost in EMF.
#[derive(Debug, Clone, Serialize)]
pub struct PostureFigure {
    pub findings: u64,
    pub accounts: usize,
    /// Distinct owners in the organization (the counts name the top N, then `other`).
    pub owners: usize,
    pub top_owners: usize,
    pub documents: usize,
    pub bytes: usize,
    pub largest_document_bytes: usize,
    pub most_metrics_in_a_document: usize,
    pub most_dimensions_in_a_set: usize,
    pub unowned: u64,
}

/// `accounts` accounts in three OUs (Workloads/Prod, Workloads/Dev, Sandbox; environments from
/// a routing rule each), owned round-robin by `owners` teams through the owner tag, every tenth
/// account without one; `findings` findings spread over them, severities in turn.
pub async fn pass_emf(findings: usize, accounts: usize, owners: usize, top_owners: usize) -> PostureFigure {
    let ids: Vec<String> = (0..accounts).map(|i| format!("{:012}", 100_000_000_000u64 + i as u64)).collect();
    let ous = [("Workloads", Some("Prod")), ("Workloads", Some("Dev")), ("Sandbox", None)];
    let records = ids.iter().enumerate().map(|(i, id)| {
        let (ou, child) = ous[i % ous.len()];
        let mut ou_path = vec![
            OrgUnit { id: "r-1".into(), name: "Root".into() },
            OrgUnit { id: format!("ou-{ou}"), name: ou.into() },
        ];
        if let Some(child) = child {
            ou_path.push(OrgUnit { id: format!("ou-{child}"), name: child.into() });
        }
        let tags = if i % 10 == 9 {
            Default::default()
        } else {
            [("owner".to_owned(), format!("team-{:03}", i % owners.max(1)))].into()
        };
        AccountRecord::Found(AccountMetadata {
            state: None,
            account_id: id.clone(),
            name: Some(format!("account-{i}")),
            ou_path,
            tags,
            security_contact: ContactLookup::NotSet,
        })
    });
    let source = Arc::new(StaticSource::new(records));
    let hub = Arc::new(InMemoryHub::default());
    hub.import((0..findings).map(|n| {
        let mut finding = active_finding(&ids[n % accounts], n);
        let label = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL"][n % 5];
        finding.severity = Some(Severity { label: Some(label.to_owned()) });
        finding.first_observed_at = Some(format!("2026-11-{:02}T00:00:00Z", 1 + n % 28));
        finding
    }));
    let policy = RoutingPolicy::parse(
        r#"{"rules": [
            {"ou_path_prefix": "Root/Workloads/Prod", "set": {"environment": "prod", "criticality": "high"}},
            {"ou_path_prefix": "Root/Workloads/Dev", "set": {"environment": "dev", "criticality": "medium"}},
            {"ou_path_prefix": "Root/Sandbox", "set": {"environment": "sandbox", "criticality": "low"}}
        ]}"#,
    )
    .expect("a valid policy");
    let sweeper = EnricherBuilder::new()
        .source(source.clone())
        .hub(hub.clone())
        .routing(RoutingRules { policy, owner_tag_key: "owner".into() })
        .build_sweeper(hub, Rate { per_second: 10_000.0, burst: 10_000 });
    let store = Arc::new(InMemoryPostureStore::default());
    let refresher =
        Refresher::new(sweeper, Arc::new(InMemorySweepState::default()), Some(source)).with_posture(store, top_owners);
    let run = refresher.run(Instant::now() + Duration::from_secs(3600), &|_| {}).await;
    let pass = run.posture.expect("the pass reached its end");
    let documents = posture_documents(&pass, "refresher", since_epoch().as_millis() as u64);
    let parsed: Vec<serde_json::Value> = documents.iter().map(|d| serde_json::from_str(d).expect("JSON")).collect();
    let directive = |d: &serde_json::Value| d["_aws"]["CloudWatchMetrics"][0].clone();
    PostureFigure {
        findings: pass.counts.total,
        accounts,
        owners,
        top_owners,
        documents: documents.len(),
        bytes: documents.iter().map(|d| d.len() + 1).sum(),
        largest_document_bytes: documents.iter().map(String::len).max().unwrap_or(0),
        most_metrics_in_a_document: parsed
            .iter()
            .map(|d| directive(d)["Metrics"].as_array().map_or(0, Vec::len))
            .max()
            .unwrap_or(0),
        most_dimensions_in_a_set: parsed
            .iter()
            .flat_map(|d| directive(d)["Dimensions"].as_array().cloned().unwrap_or_default())
            .map(|set| set.as_array().map_or(0, Vec::len))
            .max()
            .unwrap_or(0),
        unowned: pass.counts.unowned(),
    }
}

/// EMF's limits hold for the figure's documents.
pub fn within_emf_limits(figure: &PostureFigure) -> bool {
    figure.most_metrics_in_a_document <= EMF_MAX_METRICS && figure.most_dimensions_in_a_set <= EMF_MAX_DIMENSIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pass_counts_every_finding_and_publishes_top_owners_other_and_unowned() {
        let figure = pass_emf(2_000, 100, 30, 20).await;
        assert_eq!(figure.findings, 2_000);
        assert!(within_emf_limits(&figure));
        // Totals, 20 owners + other + unowned, 3 environments, 3 criticalities.
        assert_eq!(figure.documents, 1 + 22 + 3 + 3);
        assert_eq!(figure.unowned, 200, "every tenth account has no owner tag");
    }
}
