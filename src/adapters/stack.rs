//! A deployed stack of pipes/template.yaml, read back for the operator's commands
//! (`enricher-admin --stack NAME`): its resources (CloudFormation ListStackResources) and the
//! enricher function's environment (Lambda GetFunctionConfiguration), so that the operator's
//! configuration is the deployment's, not variables copied by hand.

use std::collections::BTreeMap;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::core::role_calls::StackValues;

/// Logical ids of pipes/template.yaml the operator commands read.
pub const ENRICHER_FUNCTION: &str = "EnricherFunction";
pub const FINDINGS_STREAM: &str = "FindingsStream";
pub const PIPE_DEAD_LETTER_QUEUE: &str = "DeadLetterQueue";
pub const ENRICHER_PIPE: &str = "EnricherPipe";
/// The rules that send findings to the stream (InvestigationRequestedRule only with
/// investigations on); a rule's physical id is its name.
pub const FINDINGS_RULES: [&str; 5] = [
    "UnenrichedFindingsRule",
    "PartiallyEnrichedFindingsRule",
    "CustomActionRule",
    "FindingsImportedV2Rule",
    "InvestigationRequestedRule",
];
/// The rules SAM creates for the functions' Schedule events (`<function><event>`).
pub const REFRESHER_SCHEDULE: &str = "RefresherFunctionSchedule";
pub const INVESTIGATOR_SCHEDULE: &str = "InvestigatorFunctionEveryMinute";

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{operation} of stack {stack} failed: {message}")]
    Call { operation: &'static str, stack: String, message: String },
    #[error("stack {stack} has no resource {logical_id} (is it a stack of pipes/template.yaml?)")]
    MissingResource { stack: String, logical_id: &'static str },
}

/// What the operator commands need of a deployed stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployedStack {
    pub name: String,
    /// Logical id → physical id (a queue's URL, a stream's or a function's name).
    pub resources: BTreeMap<String, String>,
    /// The enricher function's environment variables, as deployed.
    pub enricher_environment: BTreeMap<String, String>,
    /// The stack's parameters, as deployed.
    pub parameters: BTreeMap<String, String>,
    /// The stack's ARN (its partition, Region and account are the resources').
    pub arn: String,
}

impl DeployedStack {
    /// The physical id of one of the stack's resources.
    pub fn resource(&self, logical_id: &'static str) -> Result<&str, StackError> {
        self.resources
            .get(logical_id)
            .map(String::as_str)
            .ok_or_else(|| StackError::MissingResource { stack: self.name.clone(), logical_id })
    }

    /// What pipes/role-calls.json's templates resolve against: the stack's partition, Region
    /// and account (from its ARN), parameters and resources.
    pub fn values(&self) -> StackValues {
        let parts: Vec<&str> = self.arn.splitn(6, ':').collect();
        let part = |i: usize| parts.get(i).copied().unwrap_or_default().to_owned();
        StackValues {
            partition: part(1),
            region: part(3),
            account: part(4),
            parameters: self.parameters.clone(),
            resources: self.resources.clone(),
        }
    }

    /// The physical id of a resource the stack has only in some configurations.
    pub fn optional(&self, logical_id: &str) -> Option<&str> {
        self.resources.get(logical_id).map(String::as_str)
    }
}

fn call_error(
    operation: &'static str,
    stack: &str,
    error: impl ProvideErrorMetadata + std::fmt::Display,
) -> StackError {
    let message = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => error.to_string(),
    };
    StackError::Call { operation, stack: stack.to_owned(), message }
}

/// Reads `stack`'s resources and its enricher's environment.
pub async fn read_stack(
    cloudformation: &aws_sdk_cloudformation::Client,
    lambda: &aws_sdk_lambda::Client,
    stack: &str,
) -> Result<DeployedStack, StackError> {
    let mut resources = BTreeMap::new();
    let mut pages = cloudformation.list_stack_resources().stack_name(stack).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| call_error("CloudFormation ListStackResources", stack, e.into_service_error()))?;
        for summary in page.stack_resource_summaries.unwrap_or_default() {
            if let (Some(logical), Some(physical)) = (summary.logical_resource_id, summary.physical_resource_id) {
                resources.insert(logical, physical);
            }
        }
    }
    let described = cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| call_error("CloudFormation DescribeStacks", stack, e.into_service_error()))?;
    let (arn, parameters) = described
        .stacks
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|s| {
            let parameters = s
                .parameters
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| Some((p.parameter_key?, p.resolved_value.or(p.parameter_value).unwrap_or_default())))
                .collect();
            (s.stack_id.unwrap_or_default(), parameters)
        })
        .unwrap_or_default();
    let mut deployed =
        DeployedStack { name: stack.to_owned(), resources, enricher_environment: BTreeMap::new(), parameters, arn };
    let function = deployed.resource(ENRICHER_FUNCTION)?.to_owned();
    let configuration = lambda
        .get_function_configuration()
        .function_name(&function)
        .send()
        .await
        .map_err(|e| call_error("Lambda GetFunctionConfiguration", stack, e.into_service_error()))?;
    deployed.enricher_environment =
        configuration.environment.and_then(|e| e.variables).unwrap_or_default().into_iter().collect();
    Ok(deployed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pipes/template.yaml's resources: logical id -> its lines (top-level keys under
    /// `Resources:` are indented two spaces).
    fn template_resources() -> BTreeMap<String, String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/pipes/template.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let body = text.split("\nResources:\n").nth(1).unwrap().split("\nOutputs:\n").next().unwrap();
        let mut resources = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in body.lines() {
            let top = line.strip_prefix("  ").filter(|l| !l.starts_with(' ') && !l.starts_with('#'));
            if let Some(id) = top.and_then(|l| l.strip_suffix(':')) {
                current = Some(id.to_owned());
            } else if let Some(id) = &current {
                resources.entry(id.clone()).or_insert_with(String::new).push_str(&format!("{line}\n"));
            }
        }
        resources
    }

    #[test]
    fn the_logical_ids_read_from_a_stack_are_the_templates() {
        let resources = template_resources();
        let kind = |id: &str| {
            let body = resources.get(id).unwrap_or_else(|| panic!("template has no {id}"));
            body.lines().find_map(|l| l.trim().strip_prefix("Type: ")).unwrap_or_default().to_owned()
        };
        assert_eq!(kind(ENRICHER_FUNCTION), "AWS::Serverless::Function");
        assert_eq!(kind(FINDINGS_STREAM), "AWS::Kinesis::Stream");
        assert_eq!(kind(PIPE_DEAD_LETTER_QUEUE), "AWS::SQS::Queue");
        assert_eq!(kind(ENRICHER_PIPE), "AWS::Pipes::Pipe");
        // Every rule on Security Hub's events is a findings rule, and no other.
        let securityhub_rules: Vec<&String> = resources
            .iter()
            .filter(|(_, body)| body.contains("Type: AWS::Events::Rule") && body.contains("source: [aws.securityhub]"))
            .map(|(id, _)| id)
            .collect();
        let mut expected: Vec<&str> = FINDINGS_RULES.to_vec();
        expected.sort_unstable();
        assert_eq!(securityhub_rules, expected);
        // SAM names a Schedule event's rule <function logical id><event name>.
        for (function, event) in
            [("RefresherFunction", REFRESHER_SCHEDULE), ("InvestigatorFunction", INVESTIGATOR_SCHEDULE)]
        {
            let name = event.strip_prefix(function).unwrap();
            let body = &resources[function];
            let events = body.split("\n      Events:\n").nth(1).unwrap_or_else(|| panic!("{function} has no Events"));
            assert!(
                events.contains(&format!("\n        {name}:\n          Type: Schedule\n"))
                    || events.starts_with(&format!("        {name}:\n          Type: Schedule\n")),
                "{function}: no Schedule event {name}"
            );
        }
    }
}
