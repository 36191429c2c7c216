//! A deployed stack of pipes/template.yaml, read back for the operator's commands
//! (`enricher-admin --stack NAME`): its resources (CloudFormation ListStackResources) and the
//! enricher function's environment (Lambda GetFunctionConfiguration), so that the operator's
//! configuration is the deployment's, not variables copied by hand.

use std::collections::BTreeMap;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Logical ids of pipes/template.yaml the operator commands read.
pub const ENRICHER_FUNCTION: &str = "EnricherFunction";
pub const FINDINGS_STREAM: &str = "FindingsStream";
pub const PIPE_DEAD_LETTER_QUEUE: &str = "DeadLetterQueue";

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
}

impl DeployedStack {
    /// The physical id of one of the stack's resources.
    pub fn resource(&self, logical_id: &'static str) -> Result<&str, StackError> {
        self.resources
            .get(logical_id)
            .map(String::as_str)
            .ok_or_else(|| StackError::MissingResource { stack: self.name.clone(), logical_id })
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
    let mut deployed = DeployedStack { name: stack.to_owned(), resources, enricher_environment: BTreeMap::new() };
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
