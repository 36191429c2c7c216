//! An in-memory Security Hub (the `FindingsWriter`, `FindingsWriterV2` and `FindingsReader`
//! ports) for handler tests, sweeps and the simulator.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use securityhub_enricher::core::enrich::{EnrichmentPayload, UPDATED_BY};
use securityhub_enricher::core::finding::OcsfFindingId;
use securityhub_enricher::core::finding::{Finding, FindingId, Hub, Note};
use securityhub_enricher::core::plan::MAX_FINDINGS_PER_UPDATE;
use securityhub_enricher::core::plan::MAX_FINDINGS_PER_UPDATE_V2;
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::limits::Limiter;
use securityhub_enricher::ports::findings::{
    FindingsPage, FindingsReader, FindingsWriter, FindingsWriterV2, Unprocessed, WriteError,
};
use tokio::time::Instant;

/// A scripted reply for the in-memory hub's next call.
#[derive(Debug, Clone)]
pub enum ScriptedReply {
    Throttle,
    Transient,
    /// Reports these findings (all of the call's findings when empty) unprocessed with this code.
    Unprocessed {
        code: String,
        ids: Vec<FindingId>,
    },
    Reject {
        code: String,
    },
}

/// One BatchUpdateFindings call as the in-memory hub answered it.
#[derive(Debug, Clone, Copy)]
pub struct HubCall {
    pub at: Instant,
    /// Findings updated (0 for a failed call).
    pub applied: usize,
    pub throttled: bool,
}

/// An in-memory Security Hub for handler tests and the load-test simulator: applies updates
/// to a map, answers FindingNotFound for unknown findings once any are registered, follows a
/// script of replies, and can enforce a quota.
#[derive(Default)]
pub struct InMemoryHub {
    pub findings: std::sync::Mutex<HashMap<FindingId, EnrichmentPayload>>,
    known: std::sync::Mutex<Option<std::collections::HashSet<FindingId>>>,
    script: std::sync::Mutex<std::collections::VecDeque<ScriptedReply>>,
    /// Security Hub's own throttling, on tokio's clock (so paused-time tests drive it too).
    quota: Option<Limiter>,
    /// Every call as it was answered, in order (failed and throttled ones included).
    pub call_log: std::sync::Mutex<Vec<HubCall>>,
    /// When each finding was first updated.
    pub first_updated: std::sync::Mutex<HashMap<FindingId, Instant>>,
    /// Time each call takes, as the network and the service would.
    pub latency: Duration,
    /// Whole findings, for GetFindings (`FindingsReader`): imported ones, with every update
    /// applied to their Note and UserDefinedFields (replacing the map, as the emulator's default).
    stored: std::sync::Mutex<std::collections::BTreeMap<(String, FindingId), Finding>>,
    /// Each stored finding's account, to find it by identifier alone.
    stored_accounts: std::sync::Mutex<HashMap<FindingId, String>>,
    /// Each stored OCSF finding's key, by the identifier BatchUpdateFindingsV2 names it by.
    stored_v2: std::sync::Mutex<HashMap<OcsfFindingId, (String, FindingId)>>,
    /// GetFindings calls answered.
    pub reads: std::sync::atomic::AtomicUsize,
    /// OCSF findings' comments as BatchUpdateFindingsV2 left them.
    pub comments: std::sync::Mutex<HashMap<OcsfFindingId, String>>,
    /// BatchUpdateFindingsV2 calls, each with the number of findings it named.
    pub v2_calls: std::sync::Mutex<Vec<usize>>,
}

impl InMemoryHub {
    /// A hub that throttles past this rate, as Security Hub does per account and region.
    pub fn with_quota(rate: Rate) -> Self {
        InMemoryHub { quota: Some(Limiter::new(rate)), ..Default::default() }
    }

    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub fn register(&self, ids: impl IntoIterator<Item = FindingId>) {
        self.known.lock().unwrap().get_or_insert_with(Default::default).extend(ids);
    }

    pub fn script(&self, replies: impl IntoIterator<Item = ScriptedReply>) {
        self.script.lock().unwrap().extend(replies);
    }

    pub fn payload(&self, id: &FindingId) -> Option<EnrichmentPayload> {
        self.findings.lock().unwrap().get(id).cloned()
    }

    /// Stores whole findings, as BatchImportFindings would, so the hub can page through them.
    pub fn import(&self, findings: impl IntoIterator<Item = Finding>) {
        let mut stored = self.stored.lock().unwrap();
        let mut accounts = self.stored_accounts.lock().unwrap();
        let mut v2 = self.stored_v2.lock().unwrap();
        for finding in findings {
            accounts.insert(finding.identifier(), finding.aws_account_id.clone());
            if let Some(ocsf) = &finding.ocsf {
                v2.insert(ocsf.id.clone(), (finding.aws_account_id.clone(), finding.identifier()));
            }
            stored.insert((finding.aws_account_id.clone(), finding.identifier()), finding);
        }
    }

    /// A stored finding as GetFindings would return it now.
    pub fn stored(&self, id: &FindingId) -> Option<Finding> {
        let account = self.stored_accounts.lock().unwrap().get(id)?.clone();
        self.stored.lock().unwrap().get(&(account, id.clone())).cloned()
    }

    pub fn call_count(&self) -> usize {
        self.call_log.lock().unwrap().len()
    }
}

#[async_trait]
impl FindingsWriter for InMemoryHub {
    async fn batch_update(
        &self,
        ids: &[FindingId],
        payload: &EnrichmentPayload,
    ) -> Result<Vec<Unprocessed>, WriteError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let answer = self.apply(ids, payload);
        let now = Instant::now();
        let (applied, throttled) = match &answer {
            Ok(unprocessed) => {
                let mut first = self.first_updated.lock().unwrap();
                for id in ids.iter().filter(|id| !unprocessed.iter().any(|u| &u.id == *id)) {
                    first.entry(id.clone()).or_insert(now);
                }
                (ids.len() - unprocessed.len(), false)
            }
            Err(error) => (0, matches!(error, WriteError::Throttled { .. })),
        };
        self.call_log.lock().unwrap().push(HubCall { at: now, applied, throttled });
        answer
    }
}

#[async_trait]
impl FindingsWriterV2 for InMemoryHub {
    /// Follows the same script as V1 calls (an `Unprocessed` reply names every finding of the
    /// call); refuses more than 100 identifiers or a comment outside 1–512 characters.
    async fn batch_update_v2(
        &self,
        ids: &[OcsfFindingId],
        comment: &str,
    ) -> Result<Vec<Unprocessed<OcsfFindingId>>, WriteError> {
        self.v2_calls.lock().unwrap().push(ids.len());
        let chars = comment.chars().count();
        if ids.is_empty() || ids.len() > MAX_FINDINGS_PER_UPDATE_V2 || chars == 0 || chars > 512 {
            return Err(WriteError::Rejected { code: "ValidationException".into(), source: "limits".into() });
        }
        let mixed = ids.iter().any(|i| matches!(i, OcsfFindingId::MetadataUid(_)))
            && ids.iter().any(|i| matches!(i, OcsfFindingId::Triple { .. }));
        if mixed {
            return Err(WriteError::Rejected { code: "ValidationException".into(), source: "both lists".into() });
        }
        match self.script.lock().unwrap().pop_front() {
            Some(ScriptedReply::Throttle) => {
                return Err(WriteError::Throttled { source: "ThrottlingException (scripted)".into() });
            }
            Some(ScriptedReply::Transient) => {
                return Err(WriteError::Transient { source: "InternalServerException (scripted)".into() });
            }
            Some(ScriptedReply::Reject { code }) => {
                return Err(WriteError::Rejected { code, source: "scripted".into() });
            }
            Some(ScriptedReply::Unprocessed { code, .. }) => {
                return Ok(ids
                    .iter()
                    .map(|id| Unprocessed { id: id.clone(), code: code.clone(), message: "scripted".into() })
                    .collect());
            }
            None => {}
        }
        let mut comments = self.comments.lock().unwrap();
        let (keys, mut stored) = (self.stored_v2.lock().unwrap(), self.stored.lock().unwrap());
        for id in ids {
            comments.insert(id.clone(), comment.to_owned());
            if let Some(ocsf) = keys.get(id).and_then(|key| stored.get_mut(key)).and_then(|f| f.ocsf.as_mut()) {
                ocsf.comment = Some(comment.to_owned());
            }
        }
        Ok(Vec::new())
    }
}

impl InMemoryHub {
    fn apply(&self, ids: &[FindingId], payload: &EnrichmentPayload) -> Result<Vec<Unprocessed>, WriteError> {
        if ids.is_empty() || ids.len() > MAX_FINDINGS_PER_UPDATE {
            return Err(WriteError::Rejected {
                code: "InvalidInputException".into(),
                source: "1 to 100 identifiers".into(),
            });
        }
        if self.quota.as_ref().is_some_and(|q| !q.try_acquire()) {
            return Err(WriteError::Throttled { source: "TooManyRequestsException (in-memory quota)".into() });
        }
        let reply = self.script.lock().unwrap().pop_front();
        let mut unprocessed = Vec::new();
        match reply {
            Some(ScriptedReply::Throttle) => {
                return Err(WriteError::Throttled { source: "TooManyRequestsException (scripted)".into() });
            }
            Some(ScriptedReply::Transient) => {
                return Err(WriteError::Transient { source: "InternalException (scripted)".into() });
            }
            Some(ScriptedReply::Reject { code }) => {
                return Err(WriteError::Rejected { code, source: "scripted".into() });
            }
            Some(ScriptedReply::Unprocessed { code, ids: chosen }) => {
                for id in ids.iter().filter(|id| chosen.is_empty() || chosen.contains(id)) {
                    unprocessed.push(Unprocessed { id: id.clone(), code: code.clone(), message: "scripted".into() });
                }
            }
            None => {}
        }
        let known = self.known.lock().unwrap();
        let mut findings = self.findings.lock().unwrap();
        for id in ids {
            if unprocessed.iter().any(|u| &u.id == id) {
                continue;
            }
            if known.as_ref().is_some_and(|k| !k.contains(id)) {
                unprocessed.push(Unprocessed {
                    id: id.clone(),
                    code: "FindingNotFound".into(),
                    message: "Finding Not Found".into(),
                });
                continue;
            }
            findings.insert(id.clone(), payload.clone());
            let account = self.stored_accounts.lock().unwrap().get(id).cloned();
            if let Some(account) = account
                && let Some(stored) = self.stored.lock().unwrap().get_mut(&(account, id.clone()))
            {
                stored.user_defined_fields = payload.fields.clone();
                if let Some(text) = &payload.note {
                    stored.note = Some(Note { text: text.clone(), updated_by: UPDATED_BY.into() });
                }
            }
        }
        Ok(unprocessed)
    }
}

/// An ACTIVE GuardDuty finding of `account`, numbered `n`: what tests import into the hub.
pub fn active_finding(account: &str, n: usize) -> Finding {
    serde_json::from_value(serde_json::json!({
        "Id": format!("arn:aws:securityhub:us-east-1:{account}:finding/{n:05}"),
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
        "AwsAccountId": account, "RecordState": "ACTIVE", "UpdatedAt": "2026-11-30T00:00:00Z"
    }))
    .expect("a well-formed finding")
}

/// GetFindings' largest page, as the hub pages.
const PAGE: usize = 100;

#[async_trait]
impl FindingsReader for InMemoryHub {
    async fn current(&self, ids: &[FindingId]) -> Result<Vec<Finding>, WriteError> {
        Ok(ids.iter().filter_map(|id| self.stored(id)).collect())
    }

    /// Pages one hub's findings in account order; the token is the offset of the next page.
    async fn active_findings(
        &self,
        hub: Hub,
        accounts: &[String],
        next_token: Option<String>,
    ) -> Result<FindingsPage, WriteError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let offset: usize = match next_token {
            None => 0,
            Some(token) => token.parse().map_err(|_| WriteError::Rejected {
                code: "InvalidInputException".into(),
                source: format!("bad NextToken {token:?}").into(),
            })?,
        };
        let stored = self.stored.lock().unwrap();
        let matching: Vec<&Finding> = stored
            .values()
            .filter(|f| f.hub() == hub && !f.is_archived())
            .filter(|f| accounts.is_empty() || accounts.contains(&f.aws_account_id))
            .collect();
        let findings: Vec<Finding> = matching.iter().skip(offset).take(PAGE).map(|f| (*f).clone()).collect();
        let next = offset + findings.len();
        Ok(FindingsPage { findings, next_token: (next < matching.len()).then(|| next.to_string()) })
    }
}
