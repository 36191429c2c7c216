//! The enricher's pure path in one call, without I/O: decode → screen → dedup → render →
//! group → encode the request bodies. The benchmark and the memory check run it; the handler
//! runs the same functions with the metadata lookups in between.

use std::collections::HashMap;

use serde_json::json;

use securityhub_enricher::core::account::AccountRecord;
use securityhub_enricher::core::enrich::{AccountEnrichment, Completeness, Rendering, UPDATED_BY};
use securityhub_enricher::core::event::{IncomingBatch, decode_batch};
use securityhub_enricher::core::plan;

/// What the pure path produced, for checks.
#[derive(Debug, Default)]
pub struct PurePathOutput {
    pub findings: usize,
    pub requests: usize,
    /// The BatchUpdateFindings request bodies as JSON, as the SDK would send them.
    pub encoded_bytes: usize,
}

/// Runs the pure path over a Pipe- or mapping-shaped batch. `enrichments` stands in for the
/// prefetched account metadata.
pub fn run(
    batch: &[u8],
    enrichments: &HashMap<String, AccountEnrichment>,
) -> Result<PurePathOutput, serde_json::Error> {
    Ok(run_parsed(serde_json::from_slice(batch)?, enrichments))
}

/// The pure path after parsing, for callers that drop the bytes first (as the Lambda runtime
/// does once it has deserialized the event).
pub fn run_parsed(batch: IncomingBatch, enrichments: &HashMap<String, AccountEnrichment>) -> PurePathOutput {
    let candidates = decode_batch(batch, 0.0).candidates;
    let kept = plan::triage(&candidates).kept;
    let grouped = plan::group_updates(&candidates, &kept, enrichments, None);
    let mut encoded_bytes = 0;
    for request in &grouped.requests {
        let identifiers: Vec<_> =
            request.findings.iter().map(|(_, id)| json!({"Id": id.id, "ProductArn": id.product_arn})).collect();
        let body = json!({
            "FindingIdentifiers": identifiers,
            "Note": request.payload.note.as_ref().map(|text| json!({"Text": text, "UpdatedBy": UPDATED_BY})),
            "UserDefinedFields": request.payload.fields,
        });
        encoded_bytes += serde_json::to_vec(&body).map_or(0, |b| b.len());
    }
    PurePathOutput { findings: candidates.len(), requests: grouped.requests.len(), encoded_bytes }
}

/// The floor the pure path is measured against: parsing the same bytes into `serde_json::Value`,
/// base64-decoding each record and parsing its event, with no work on the findings.
pub fn bare_parse(batch: &[u8]) -> Result<usize, serde_json::Error> {
    use base64::Engine as _;
    let records: Vec<serde_json::Value> = serde_json::from_slice(batch)?;
    let mut findings = 0;
    for record in &records {
        let data = record["data"].as_str().unwrap_or_default();
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else { continue };
        let event: serde_json::Value = serde_json::from_slice(&bytes)?;
        findings += event["detail"]["findings"].as_array().map_or(0, Vec::len);
    }
    Ok(findings)
}

/// Account enrichments for a synthetic organization, as a prefetch would produce them.
pub fn enrichments_for(org: &[AccountRecord]) -> HashMap<String, AccountEnrichment> {
    let rendering = Rendering::default();
    org.iter()
        .filter_map(|record| match record {
            AccountRecord::Found(meta) => {
                Some((meta.account_id.clone(), rendering.account(meta, Completeness::Complete)))
            }
            AccountRecord::NotFound => None,
        })
        .collect()
}
