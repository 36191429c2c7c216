//! The investigation job table (`JOBS_TABLE`, key `JobId`, TTL `ExpiresAt`): one job per
//! (entity, scope window), whatever the number of findings, duplicates, replays and retries.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::core::finding::FindingId;
use crate::core::investigation::{Enqueued, Job, JobChange, JobRequest, JobStatus, MAX_FINDINGS_PER_JOB};
use crate::ports::jobs::{JobError, JobStore};

/// How long a job row outlives its last write.
const JOB_TTL_SECONDS: i64 = 14 * 24 * 3600;

pub struct DynamoJobs {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn encode_finding(id: &FindingId) -> String {
    serde_json::to_string(&(&id.product_arn, &id.id)).expect("strings serialize")
}

fn decode_finding(text: &str) -> Option<FindingId> {
    let (product_arn, id): (String, String) = serde_json::from_str(text).ok()?;
    Some(FindingId { id, product_arn })
}

fn is_conditional_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl DynamoJobs {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoJobs { client, table: table.into() }
    }

    fn error(operation: &'static str, e: impl Into<aws_sdk_dynamodb::Error>) -> JobError {
        JobError::Request { operation, source: Box::new(e.into()) }
    }

    fn decode(item: &HashMap<String, AttributeValue>) -> Option<Job> {
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let number = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
        Some(Job {
            job_id: text("JobId")?,
            entity_arn: text("EntityArn")?,
            scope_start: number("ScopeStart")?,
            status: JobStatus::parse(&text("Status")?)?,
            findings: item
                .get("Findings")
                .and_then(|v| v.as_ss().ok())
                .map(|ids| ids.iter().filter_map(|t| decode_finding(t)).collect())
                .unwrap_or_default(),
            findings_overflow: number("FindingsOverflow").unwrap_or(0) as u64,
            attempts: number("Attempts").unwrap_or(0) as u32,
            next_attempt_at: number("NextAttemptAt").unwrap_or(0),
            claimed_at: number("ClaimedAt"),
            investigation_id: text("InvestigationId"),
            graph_arn: text("GraphArn"),
            // A number set: ADD is a union, so the highest priority any enqueue asked for is
            // kept without a read (DynamoDB's update expressions have no max).
            priority: item
                .get("Priorities")
                .and_then(|v| v.as_ns().ok())
                .and_then(|ns| ns.iter().filter_map(|p| p.parse::<u8>().ok()).max())
                .unwrap_or(0),
            created_at: number("CreatedAt"),
        })
    }
}

#[async_trait]
impl JobStore for DynamoJobs {
    async fn enqueue(&self, request: &JobRequest, now: i64) -> Result<Enqueued, JobError> {
        let job_id = request.job_id();
        let ids: Vec<String> = request.findings.iter().map(encode_finding).collect();
        // One conditional UpdateItem: creates the job or adds the findings to it (a set, so a
        // replayed finding is not counted twice), never a second job for the same key.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("JobId", s(&job_id))
            .update_expression(
                "SET EntityArn = if_not_exists(EntityArn, :entity), ScopeStart = if_not_exists(ScopeStart, :start), \
                 #status = if_not_exists(#status, :pending), Attempts = if_not_exists(Attempts, :zero), \
                 NextAttemptAt = if_not_exists(NextAttemptAt, :zero), CreatedAt = if_not_exists(CreatedAt, :now), \
                 ExpiresAt = :expires ADD Findings :ids, Priorities :priority",
            )
            .condition_expression("attribute_not_exists(JobId) OR size(Findings) < :max")
            .expression_attribute_names("#status", "Status")
            .expression_attribute_values(":entity", s(&request.entity_arn))
            .expression_attribute_values(":start", n(request.scope_start))
            .expression_attribute_values(":pending", s(JobStatus::Pending.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expires", n(now + JOB_TTL_SECONDS))
            .expression_attribute_values(":ids", AttributeValue::Ss(ids))
            .expression_attribute_values(":max", n(MAX_FINDINGS_PER_JOB))
            .expression_attribute_values(":priority", AttributeValue::Ns(vec![request.priority.to_string()]))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                // ALL_OLD is the item as it was: present means the job existed before this call.
                let existed = out.attributes.is_some_and(|old| old.contains_key("JobId"));
                Ok(if existed { Enqueued::Joined } else { Enqueued::Created })
            }
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("JobId", s(&job_id))
                    .update_expression("ADD FindingsOverflow :n, Priorities :priority")
                    .expression_attribute_values(":n", n(request.findings.len()))
                    .expression_attribute_values(":priority", AttributeValue::Ns(vec![request.priority.to_string()]))
                    .send()
                    .await
                    .map_err(|e| Self::error("UpdateItem", e))?;
                Ok(Enqueued::Overflow(request.findings.len()))
            }
            Err(e) => Err(Self::error("UpdateItem", e)),
        }
    }

    async fn active(&self, limit: usize) -> Result<Vec<Job>, JobError> {
        // A scan filtered on status: the table holds jobs for at most JOB_TTL_SECONDS and is
        // small next to the findings volume. A status index is the next step if it grows.
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("#status IN (:p, :s, :r)")
            .expression_attribute_names("#status", "Status")
            .expression_attribute_values(":p", s(JobStatus::Pending.as_str()))
            .expression_attribute_values(":s", s(JobStatus::Starting.as_str()))
            .expression_attribute_values(":r", s(JobStatus::Running.as_str()))
            .into_paginator()
            .send();
        let mut jobs = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Self::error("Scan", e))?;
            jobs.extend(page.items.unwrap_or_default().iter().filter_map(Self::decode));
            if jobs.len() >= limit {
                jobs.truncate(limit);
                break;
            }
        }
        Ok(jobs)
    }

    async fn claim(&self, job_id: &str, now: i64) -> Result<bool, JobError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("JobId", s(job_id))
            .update_expression("SET #status = :starting, ClaimedAt = :now")
            .condition_expression("#status = :pending AND NextAttemptAt <= :now")
            .expression_attribute_names("#status", "Status")
            .expression_attribute_values(":starting", s(JobStatus::Starting.as_str()))
            .expression_attribute_values(":pending", s(JobStatus::Pending.as_str()))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(e) => Err(Self::error("UpdateItem", e)),
        }
    }

    async fn absorb(&self, lead: &str, job: &Job, now: i64) -> Result<bool, JobError> {
        // The lead first: should the second write fail, the job stays pending with its
        // findings and is joined (or started) later; nothing is lost.
        let ids: Vec<String> = job.findings.iter().map(encode_finding).collect();
        let mut update = "ADD Priorities :priority, FindingsOverflow :overflow".to_owned();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("JobId", s(lead))
            .expression_attribute_values(":priority", AttributeValue::Ns(vec![job.priority.to_string()]))
            .expression_attribute_values(":overflow", n(job.findings_overflow));
        if !ids.is_empty() {
            update.push_str(", Findings :ids");
            request = request.expression_attribute_values(":ids", AttributeValue::Ss(ids));
        }
        request.update_expression(update).send().await.map_err(|e| Self::error("UpdateItem", e))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("JobId", s(&job.job_id))
            .update_expression("SET #status = :to, JoinedTo = :lead, UpdatedAt = :now")
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "Status")
            .expression_attribute_values(":to", s(JobStatus::Joined.as_str()))
            .expression_attribute_values(":pending", s(JobStatus::Pending.as_str()))
            .expression_attribute_values(":lead", s(lead))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(e) => Err(Self::error("UpdateItem", e)),
        }
    }

    async fn update(&self, job_id: &str, change: &JobChange, now: i64) -> Result<(), JobError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("JobId", s(job_id))
            .expression_attribute_names("#status", "Status")
            .expression_attribute_values(":now", n(now));
        let request = match change {
            JobChange::Running { investigation_id, graph_arn } => request
                .update_expression("SET #status = :to, InvestigationId = :id, GraphArn = :graph, StartedAt = :now")
                .condition_expression("#status = :from")
                .expression_attribute_values(":to", s(JobStatus::Running.as_str()))
                .expression_attribute_values(":from", s(JobStatus::Starting.as_str()))
                .expression_attribute_values(":id", s(investigation_id))
                .expression_attribute_values(":graph", s(graph_arn)),
            JobChange::Retry { attempts, next_attempt_at } => request
                .update_expression("SET #status = :to, Attempts = :attempts, NextAttemptAt = :next, UpdatedAt = :now REMOVE InvestigationId")
                .expression_attribute_values(":to", s(JobStatus::Pending.as_str()))
                .expression_attribute_values(":attempts", n(attempts))
                .expression_attribute_values(":next", n(next_attempt_at)),
            JobChange::Released => request
                .update_expression("SET #status = :to, UpdatedAt = :now")
                .condition_expression("#status = :from")
                .expression_attribute_values(":to", s(JobStatus::Pending.as_str()))
                .expression_attribute_values(":from", s(JobStatus::Starting.as_str())),
            JobChange::Complete { severity } => request
                .update_expression("SET #status = :to, Severity = :severity, UpdatedAt = :now")
                .expression_attribute_values(":to", s(JobStatus::Complete.as_str()))
                .expression_attribute_values(":severity", s(severity)),
            JobChange::Failed { reason } => request
                .update_expression("SET #status = :to, FailureReason = :reason, UpdatedAt = :now")
                .expression_attribute_values(":to", s(JobStatus::Failed.as_str()))
                .expression_attribute_values(":reason", s(reason)),
            JobChange::NotCovered { reason } => request
                .update_expression("SET #status = :to, FailureReason = :reason, UpdatedAt = :now")
                .expression_attribute_values(":to", s(JobStatus::NotCovered.as_str()))
                .expression_attribute_values(":reason", s(reason)),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => {
                Err(JobError::Conflict { job_id: job_id.to_owned() })
            }
            Err(e) => Err(Self::error("UpdateItem", e)),
        }
    }
}
