//! The doctor's probe of a deployment on the SDK clients: one read-only call (or one list,
//! every page) per question, each error kept with its AWS code.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::core::role_calls::Simulation;
use crate::ports::deployment::{
    AggregatorFacts, DeploymentProbe, OrganizationFacts, PipeFacts, ProbeError, RuleFacts, SimulatedDecision,
    TableFacts,
};

/// The SDK error as the port's: the operation, AWS's code (`unknown` for a network or
/// timeout error, which has none) and its message.
fn probe_error<E>(operation: &'static str, error: E) -> ProbeError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    ProbeError {
        operation,
        code: error.code().unwrap_or("unknown").to_owned(),
        // AWS's message when it sent one; else (a network error) the whole chain.
        message: error.message().map_or_else(|| DisplayErrorContext(&error).to_string(), str::to_owned),
    }
}

pub struct SdkProbe {
    organizations: aws_sdk_organizations::Client,
    securityhub: aws_sdk_securityhub::Client,
    detective: aws_sdk_detective::Client,
    eventbridge: aws_sdk_eventbridge::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    pipes: aws_sdk_pipes::Client,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    region: String,
}

impl SdkProbe {
    /// The clients of the function the doctor acts as (the operator's credentials), Pipes, IAM
    /// and STS.
    #[allow(clippy::too_many_arguments)] // one client per service asked
    pub fn new(
        organizations: aws_sdk_organizations::Client,
        securityhub: aws_sdk_securityhub::Client,
        detective: aws_sdk_detective::Client,
        eventbridge: aws_sdk_eventbridge::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        pipes: aws_sdk_pipes::Client,
        iam: aws_sdk_iam::Client,
        sts: aws_sdk_sts::Client,
        region: String,
    ) -> Self {
        SdkProbe { organizations, securityhub, detective, eventbridge, dynamodb, pipes, iam, sts, region }
    }
}

#[async_trait]
impl DeploymentProbe for SdkProbe {
    fn region(&self) -> String {
        self.region.clone()
    }

    async fn organization(&self) -> Result<OrganizationFacts, ProbeError> {
        let described = self
            .organizations
            .describe_organization()
            .send()
            .await
            .map_err(|e| probe_error("DescribeOrganization", e))?;
        self.organizations.list_roots().send().await.map_err(|e| probe_error("ListRoots", e))?;
        let organization =
            described.organization.unwrap_or_else(|| aws_sdk_organizations::types::Organization::builder().build());
        Ok(OrganizationFacts {
            id: organization.id.unwrap_or_default(),
            management_account: organization.master_account_id.unwrap_or_default(),
        })
    }

    async fn account_ids(&self) -> Result<BTreeSet<String>, ProbeError> {
        let mut ids = BTreeSet::new();
        let mut pages = self.organizations.list_accounts().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| probe_error("ListAccounts", e))?;
            ids.extend(page.accounts.unwrap_or_default().into_iter().filter_map(|a| a.id));
        }
        Ok(ids)
    }

    async fn assume_role(
        &self,
        role_arn: &str,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<(), ProbeError> {
        self.sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .set_external_id(external_id.map(str::to_owned))
            .duration_seconds(900)
            .send()
            .await
            .map_err(|e| probe_error("AssumeRole", e))?;
        Ok(())
    }

    async fn hub(&self) -> Result<String, ProbeError> {
        let hub = self.securityhub.describe_hub().send().await.map_err(|e| probe_error("DescribeHub", e))?;
        Ok(hub.hub_arn.unwrap_or_default())
    }

    async fn administrator(&self) -> Result<Option<String>, ProbeError> {
        let out = self
            .securityhub
            .get_administrator_account()
            .send()
            .await
            .map_err(|e| probe_error("GetAdministratorAccount", e))?;
        Ok(out.administrator.and_then(|a| a.account_id))
    }

    async fn organization_configuration(&self) -> Result<(), ProbeError> {
        self.securityhub
            .describe_organization_configuration()
            .send()
            .await
            .map_err(|e| probe_error("DescribeOrganizationConfiguration", e))?;
        Ok(())
    }

    async fn aggregator(&self) -> Result<Option<AggregatorFacts>, ProbeError> {
        let listed = self
            .securityhub
            .list_finding_aggregators()
            .send()
            .await
            .map_err(|e| probe_error("ListFindingAggregators", e))?;
        let Some(arn) =
            listed.finding_aggregators.unwrap_or_default().into_iter().find_map(|a| a.finding_aggregator_arn)
        else {
            return Ok(None);
        };
        let got = self
            .securityhub
            .get_finding_aggregator()
            .finding_aggregator_arn(&arn)
            .send()
            .await
            .map_err(|e| probe_error("GetFindingAggregator", e))?;
        Ok(Some(AggregatorFacts {
            arn,
            home_region: got.finding_aggregation_region.unwrap_or_default(),
            linking_mode: got.region_linking_mode.unwrap_or_default(),
        }))
    }

    async fn findings_v1(&self) -> Result<(), ProbeError> {
        self.securityhub.get_findings().max_results(1).send().await.map_err(|e| probe_error("GetFindings", e))?;
        Ok(())
    }

    async fn findings_v2(&self) -> Result<(), ProbeError> {
        self.securityhub.get_findings_v2().max_results(1).send().await.map_err(|e| probe_error("GetFindingsV2", e))?;
        Ok(())
    }

    async fn graphs(&self) -> Result<Vec<String>, ProbeError> {
        let mut graphs = Vec::new();
        let mut pages = self.detective.list_graphs().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| probe_error("ListGraphs", e))?;
            graphs.extend(page.graph_list.unwrap_or_default().into_iter().filter_map(|g| g.arn));
        }
        Ok(graphs)
    }

    async fn graph_members(&self, graph: &str) -> Result<BTreeSet<String>, ProbeError> {
        use aws_sdk_detective::types::MemberStatus;
        let mut covered: BTreeSet<String> =
            graph.split(':').nth(4).filter(|a| !a.is_empty()).map(str::to_owned).into_iter().collect();
        let mut pages = self.detective.list_members().graph_arn(graph).max_results(200).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| probe_error("ListMembers", e))?;
            covered.extend(
                page.member_details
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|m| m.status == Some(MemberStatus::Enabled))
                    .filter_map(|m| m.account_id),
            );
        }
        Ok(covered)
    }

    async fn event_bus(&self, name: &str) -> Result<(), ProbeError> {
        self.eventbridge
            .describe_event_bus()
            .name(name)
            .send()
            .await
            .map_err(|e| probe_error("DescribeEventBus", e))?;
        Ok(())
    }

    async fn rules(&self, prefix: &str) -> Result<Vec<RuleFacts>, ProbeError> {
        use aws_sdk_eventbridge::types::RuleState;
        let mut rules = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .eventbridge
                .list_rules()
                .name_prefix(prefix)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| probe_error("ListRules", e))?;
            rules.extend(
                page.rules.unwrap_or_default().into_iter().map(|r| RuleFacts {
                    name: r.name.unwrap_or_default(),
                    enabled: r.state == Some(RuleState::Enabled),
                }),
            );
            match page.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(rules),
            }
        }
    }

    async fn rule(&self, name: &str) -> Result<RuleFacts, ProbeError> {
        use aws_sdk_eventbridge::types::RuleState;
        let rule =
            self.eventbridge.describe_rule().name(name).send().await.map_err(|e| probe_error("DescribeRule", e))?;
        Ok(RuleFacts { name: name.to_owned(), enabled: rule.state == Some(RuleState::Enabled) })
    }

    async fn pipe(&self, name: &str) -> Result<PipeFacts, ProbeError> {
        let pipe = self.pipes.describe_pipe().name(name).send().await.map_err(|e| probe_error("DescribePipe", e))?;
        Ok(PipeFacts {
            current_state: pipe.current_state.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            desired_state: pipe.desired_state.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            state_reason: pipe.state_reason.filter(|r| !r.is_empty()),
            source: pipe.source.unwrap_or_default(),
            target: pipe.target.unwrap_or_default(),
        })
    }

    async fn table(&self, name: &str) -> Result<TableFacts, ProbeError> {
        use aws_sdk_dynamodb::types::TimeToLiveStatus;
        let described = self
            .dynamodb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| probe_error("DescribeTable", e))?;
        let ttl = self
            .dynamodb
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .map_err(|e| probe_error("DescribeTimeToLive", e))?;
        let ttl_attribute = ttl.time_to_live_description.and_then(|d| {
            matches!(d.time_to_live_status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))
                .then_some(d.attribute_name)
                .flatten()
        });
        Ok(TableFacts {
            status: described.table.and_then(|t| t.table_status).map(|s| s.as_str().to_owned()).unwrap_or_default(),
            ttl_attribute,
        })
    }

    async fn simulate(&self, role_arn: &str, simulation: &Simulation) -> Result<Vec<SimulatedDecision>, ProbeError> {
        use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum};
        // No ResourceArns means `*` (the API's default), as the list writes it.
        let resources: Vec<String> = simulation.resources.iter().filter(|r| r.as_str() != "*").cloned().collect();
        let context: Vec<ContextEntry> = simulation
            .context
            .iter()
            .map(|(key, value)| {
                ContextEntry::builder()
                    .context_key_name(key)
                    .context_key_values(value)
                    .context_key_type(ContextKeyTypeEnum::String)
                    .build()
            })
            .collect();
        let mut decisions = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .iam
                .simulate_principal_policy()
                .policy_source_arn(role_arn)
                .set_action_names(Some(simulation.actions.clone()))
                .set_resource_arns((!resources.is_empty()).then(|| resources.clone()))
                .set_context_entries((!context.is_empty()).then(|| context.clone()))
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| probe_error("SimulatePrincipalPolicy", e))?;
            for result in page.evaluation_results() {
                decisions.push(SimulatedDecision {
                    action: result.eval_action_name().to_owned(),
                    resource: result.eval_resource_name().unwrap_or("*").to_owned(),
                    decision: result.eval_decision().as_str().to_owned(),
                });
            }
            if !page.is_truncated() {
                break;
            }
            marker = page.marker().map(str::to_owned);
            if marker.is_none() {
                break;
            }
        }
        Ok(decisions)
    }
}
