//! Port: read-only questions about a deployment, one AWS call (or one paginated list) each,
//! for `enricher-admin doctor`. Each answer is a fact or the error AWS gave, with its code, so
//! the doctor can say what to fix.

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::core::role_calls::Simulation;

/// An AWS call that failed: which, the error code AWS returned, and its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed: {code}: {message}")]
pub struct ProbeError {
    pub operation: &'static str,
    /// `AccessDeniedException`, `ResourceNotFoundException`, ...; `unknown` for a network error.
    pub code: String,
    pub message: String,
}

impl ProbeError {
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self.code.as_str(),
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AccessDeniedForDependencyException"
        )
    }

    pub fn is_not_found(&self) -> bool {
        self.code.contains("NotFound")
    }
}

/// DescribeOrganization's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationFacts {
    pub id: String,
    pub management_account: String,
}

/// GetFindingAggregator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatorFacts {
    pub arn: String,
    pub home_region: String,
    pub linking_mode: String,
}

/// An EventBridge rule: its name and whether it is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFacts {
    pub name: String,
    pub enabled: bool,
}

/// DescribePipe's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeFacts {
    /// `RUNNING`, `STOPPED`, `CREATING`, `START_FAILED`, ... (Pipes API `PipeState`).
    pub current_state: String,
    /// `RUNNING`, `STOPPED` or `DELETED` (`RequestedPipeState`).
    pub desired_state: String,
    /// Why the pipe is in its state, when Pipes says.
    pub state_reason: Option<String>,
    /// The source's ARN (the findings stream).
    pub source: String,
    /// The target's ARN (the enricher's alias).
    pub target: String,
}

/// DescribeTable and DescribeTimeToLive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFacts {
    /// `ACTIVE`, `UPDATING`, ...
    pub status: String,
    /// The TTL attribute when TTL is `ENABLED` (or being enabled), else None.
    pub ttl_attribute: Option<String>,
}

/// One result of IAM SimulatePrincipalPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedDecision {
    pub action: String,
    /// The resource simulated (`*` when none was named).
    pub resource: String,
    /// `allowed`, `explicitDeny` or `implicitDeny`.
    pub decision: String,
}

#[async_trait]
pub trait DeploymentProbe: Send + Sync {
    /// The Region the probe's clients call.
    fn region(&self) -> String;
    /// DescribeOrganization, then ListRoots: the delegation answers both.
    async fn organization(&self) -> Result<OrganizationFacts, ProbeError>;
    /// ListAccounts, every page: the organization's account ids.
    async fn account_ids(&self) -> Result<BTreeSet<String>, ProbeError>;
    /// AssumeRole on the contact role, as the enricher's credentials provider calls it.
    async fn assume_role(
        &self,
        role_arn: &str,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<(), ProbeError>;
    /// DescribeHub: the hub's ARN.
    async fn hub(&self) -> Result<String, ProbeError>;
    /// GetAdministratorAccount: the account this one is a member of, if any.
    async fn administrator(&self) -> Result<Option<String>, ProbeError>;
    /// DescribeOrganizationConfiguration: answers only for the delegated administrator.
    async fn organization_configuration(&self) -> Result<(), ProbeError>;
    /// ListFindingAggregators, then GetFindingAggregator of the one listed.
    async fn aggregator(&self) -> Result<Option<AggregatorFacts>, ProbeError>;
    /// GetFindings with MaxResults 1.
    async fn findings_v1(&self) -> Result<(), ProbeError>;
    /// GetFindingsV2 with MaxResults 1.
    async fn findings_v2(&self) -> Result<(), ProbeError>;
    /// ListGraphs: the behavior graphs this account administers.
    async fn graphs(&self) -> Result<Vec<String>, ProbeError>;
    /// ListMembers, every page: ENABLED members, and the graph's administrator.
    async fn graph_members(&self, graph: &str) -> Result<BTreeSet<String>, ProbeError>;
    /// DescribeEventBus.
    async fn event_bus(&self, name: &str) -> Result<(), ProbeError>;
    /// ListRules on the default bus with this name prefix, every page.
    async fn rules(&self, prefix: &str) -> Result<Vec<RuleFacts>, ProbeError>;
    /// DescribeRule on the default bus.
    async fn rule(&self, name: &str) -> Result<RuleFacts, ProbeError>;
    /// Pipes DescribePipe.
    async fn pipe(&self, name: &str) -> Result<PipeFacts, ProbeError>;
    /// DescribeTable, then DescribeTimeToLive.
    async fn table(&self, name: &str) -> Result<TableFacts, ProbeError>;
    /// IAM SimulatePrincipalPolicy of the role for these actions, resources and context, every
    /// page: one decision per action and resource.
    async fn simulate(&self, role_arn: &str, simulation: &Simulation) -> Result<Vec<SimulatedDecision>, ProbeError>;
}
