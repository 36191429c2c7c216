//! The findings and batches the select modules' tests are built from.

use serde_json::json;

use crate::core::event::{Candidate, EventKind};
use crate::core::finding::Finding;
use crate::core::select::{Criteria, Selection, asks, plan_jobs};

pub(super) fn finding(resources: serde_json::Value, extra: serde_json::Value) -> Finding {
    let mut f = json!({
        "Id": "f", "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
        "AwsAccountId": "111122223333", "Severity": {"Label": "HIGH"}, "Resources": resources,
    });
    f.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(f).unwrap()
}

pub(super) fn candidate(record: usize, finding: Finding, kind: EventKind) -> Candidate {
    Candidate { record, finding, kind }
}

pub(super) fn imported(record: usize, finding: Finding) -> Candidate {
    candidate(record, finding, EventKind::Imported)
}

pub(super) fn guardduty(id: &str, entity: &str, first: &str, last: &str, severity: &str) -> Finding {
    finding(
        json!([{"Type": if entity.contains(":user/") { "AwsIamUser" } else { "AwsIamRole" }, "Id": entity}]),
        json!({"Id": id, "FirstObservedAt": first, "LastObservedAt": last, "UpdatedAt": last,
               "Severity": {"Label": severity}}),
    )
}

pub(super) const NOW: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z

pub(super) fn plan(candidates: &[Candidate]) -> Selection {
    let all: Vec<usize> = (0..candidates.len()).collect();
    plan_jobs(candidates, &all, &asks(candidates), &Criteria::default(), 24, NOW)
}
