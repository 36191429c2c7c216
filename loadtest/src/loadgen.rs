//! Load generation: a synthetic organization and realistic findings for it, deterministic by
//! seed. GuardDuty (IAM access keys of users and assumed roles among them), Inspector,
//! Security Hub controls, Macie and IAM Access Analyzer; sizes like real ones (2–10 KB, a tail
//! up to 200 KB); accounts drawn Zipf-like, as a few accounts produce most findings.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde_json::{Value, json};

use securityhub_enricher::core::account::{AccountMetadata, AccountRecord, Contact, ContactLookup, OrgUnit};
use securityhub_enricher::core::event::{DETAIL_TYPE_IMPORTED, SOURCE_SECURITY_HUB};

pub const REGION: &str = "us-east-1";

/// An organization of `accounts` accounts over a four-level OU tree, with tags and contacts.
pub fn synthetic_org(accounts: usize, seed: u64) -> Vec<AccountRecord> {
    let mut rng = StdRng::seed_from_u64(seed);
    let root = OrgUnit { id: "r-lt00".into(), name: "Root".into() };
    let mut paths: Vec<Vec<OrgUnit>> = vec![vec![root.clone()]];
    let mut level = vec![vec![root]];
    for depth in 1..=4 {
        let mut next = Vec::new();
        for parent in &level {
            for child in 0..3 {
                let mut path = parent.clone();
                let id = format!("ou-lt00-{depth}{}{child}", paths.len());
                path.push(OrgUnit {
                    id,
                    name: format!("{}-{depth}{child}", ["Security", "Workloads", "Sandbox"][child]),
                });
                paths.push(path.clone());
                next.push(path);
            }
        }
        level = next;
    }
    (0..accounts)
        .map(|i| {
            let path = paths[rng.random_range(0..paths.len())].clone();
            let mut tags = BTreeMap::from([
                ("CostCenter".to_owned(), format!("cc-{:03}", i % 97)),
                ("Environment".to_owned(), ["prod", "staging", "dev"][i % 3].to_owned()),
                ("Owner".to_owned(), format!("team-{}", i % 41)),
            ]);
            if i % 11 == 0 {
                tags.insert("DataClassification".into(), "confidential".into());
            }
            AccountRecord::Found(AccountMetadata {
                state: None,
                account_id: account_id(i),
                name: Some(format!("workload-{i:05}")),
                ou_path: path,
                tags,
                security_contact: if i % 5 == 0 {
                    ContactLookup::NotSet
                } else {
                    ContactLookup::Found(Contact {
                        name: format!("Security Team {i}"),
                        title: "Security Lead".into(),
                        email: format!("security+{i}@example.com"),
                        phone: format!("+1-555-{:04}", i % 10_000),
                    })
                },
            })
        })
        .collect()
}

pub fn account_id(index: usize) -> String {
    format!("{:012}", 200_000_000_000u64 + index as u64 * 7_919)
}

/// Draws findings for a synthetic organization.
pub struct Generator {
    rng: StdRng,
    accounts: usize,
    zipf: Zipf<f64>,
    next: usize,
    /// Body sizes in bytes: usual range, and the one-in-a-hundred tail.
    sizes: (std::ops::Range<usize>, std::ops::Range<usize>),
}

impl Generator {
    pub fn new(accounts: usize, seed: u64) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            accounts,
            zipf: Zipf::new(accounts as f64, 1.1).expect("at least one account"),
            next: 0,
            // Most findings are 2–10 KB; one in a hundred is large (Inspector packages, Macie
            // detections), up to 200 KB.
            sizes: (2_000..10_000, 20_000..200_000),
        }
    }

    /// Findings no larger than they must be: a 6 MB Pipe batch then holds 10,000 records.
    pub fn minimal(mut self) -> Self {
        self.sizes = (0..1, 0..1);
        self
    }

    fn size(&mut self) -> usize {
        let (usual, tail) = self.sizes.clone();
        if self.rng.random_bool(0.01) { self.rng.random_range(tail) } else { self.rng.random_range(usual) }
    }

    /// The next finding, and its account index.
    pub fn finding(&mut self) -> (usize, Value) {
        let n = self.next;
        self.next += 1;
        let account_index = (self.zipf.sample(&mut self.rng) as usize - 1).min(self.accounts - 1);
        let account = account_id(account_index);
        let name = format!("workload-{account_index:05}");
        let roll = self.rng.random_range(0..100);
        let (product, generator, title, severity, types, resource) = match roll {
            0..30 => {
                let user = format!("user-{}", self.rng.random_range(0..50));
                let key = if self.rng.random_bool(0.5) {
                    json!({"PrincipalType": "IAMUser", "PrincipalName": user, "UserName": user})
                } else {
                    json!({"PrincipalType": "AssumedRole", "PrincipalName": format!("deploy-{n}"),
                           "SessionContext": {"SessionIssuer": {"Arn": format!("arn:aws:iam::{account}:role/deploy"), "Type": "Role"}}})
                };
                let sev = ["LOW", "MEDIUM", "HIGH", "CRITICAL"][self.rng.random_range(0..4)];
                (
                    "guardduty",
                    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
                    "Credentials used from an external IP address",
                    sev,
                    "TTPs/Initial Access/UnauthorizedAccess:IAMUser-InstanceCredentialExfiltration",
                    json!({"Type": "AwsIamAccessKey", "Id": format!("AWS::IAM::AccessKey:ASIA{n:016X}"), "Details": {"AwsIamAccessKey": key}}),
                )
            }
            30..60 => (
                "inspector",
                "AWSInspector",
                "CVE-2024-6387 - openssh",
                "HIGH",
                "Software and Configuration Checks/Vulnerabilities/CVE",
                json!({"Type": "AwsEc2Instance", "Id": format!("arn:aws:ec2:{REGION}:{account}:instance/i-{n:017x}")}),
            ),
            60..90 => (
                "securityhub",
                "security-control/IAM.6",
                "Hardware MFA should be enabled for the root user",
                "CRITICAL",
                "Software and Configuration Checks/Industry and Regulatory Standards",
                json!({"Type": "AwsAccount", "Id": format!("AWS::::Account:{account}")}),
            ),
            90..95 => (
                "macie",
                "SensitiveData:S3Object/Personal",
                "The S3 object contains personal information",
                "MEDIUM",
                "Sensitive Data Identifications/PII",
                json!({"Type": "AwsS3Bucket", "Id": format!("arn:aws:s3:::data-{account}")}),
            ),
            _ => (
                "access-analyzer",
                "AWS::IAM::Role",
                "AwsIamRole/arn:aws:iam::role/shared allows cross-account access",
                "LOW",
                "Software and Configuration Checks/AWS Security Best Practices/External Access Granted",
                json!({"Type": "AwsIamRole", "Id": format!("arn:aws:iam::{account}:role/shared-{}", n % 17)}),
            ),
        };
        let size = self.size();
        let mut finding = json!({
            "SchemaVersion": "2018-10-08",
            "Id": format!("arn:aws:{product}:{REGION}:{account}:finding/{n:010}"),
            "ProductArn": format!("arn:aws:securityhub:{REGION}::product/aws/{product}"),
            "ProductName": product, "CompanyName": "AWS", "GeneratorId": generator,
            "AwsAccountId": account, "AwsAccountName": name, "Region": REGION, "Types": [types],
            "FirstObservedAt": "2026-11-22T06:00:00.000Z", "CreatedAt": "2026-11-22T06:00:00.000Z",
            "UpdatedAt": "2026-11-22T07:00:00.000Z",
            "Severity": {"Label": severity, "Original": severity}, "Title": title,
            "Description": format!("{title}."), "Resources": [resource],
            "RecordState": "ACTIVE", "Workflow": {"Status": "NEW"},
            "ProductFields": {},
        });
        let base = serde_json::to_vec(&finding).map(|b| b.len()).unwrap_or(0);
        if size > base {
            // Real findings carry bulky ProductFields and resource details; filler stands in.
            finding["ProductFields"]["aws/securityhub/Detail"] = Value::String("x".repeat(size - base));
        }
        (account_index, finding)
    }
}

/// The EventBridge event Security Hub emits for imported findings.
pub fn imported_event(findings: &[Value], id: usize) -> Value {
    json!({
        "version": "0",
        "id": format!("00000000-0000-4000-8000-{id:012}"),
        "detail-type": DETAIL_TYPE_IMPORTED,
        "source": SOURCE_SECURITY_HUB,
        "account": "111111111111",
        "time": "2026-11-22T07:00:00Z",
        "region": REGION,
        "resources": findings.iter().map(|f| f["Id"].clone()).collect::<Vec<_>>(),
        "detail": {"findings": findings},
    })
}

/// A Pipe-shaped batch (the bare array) of `records` generated findings, one per record.
pub fn pipe_batch(generator: &mut Generator, records: usize) -> Vec<u8> {
    use base64::Engine as _;
    let items: Vec<Value> = (0..records)
        .map(|i| {
            let (_, finding) = generator.finding();
            let key = finding["AwsAccountId"].clone();
            let data = serde_json::to_vec(&imported_event(&[finding], i)).expect("serializable");
            json!({
                "eventID": format!("shardId-000000000000:{i:020}"), "sequenceNumber": format!("{i:020}"),
                "partitionKey": key, "approximateArrivalTimestamp": 1_795_000_000.0 + i as f64 / 1000.0,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "eventSource": "aws:kinesis", "eventName": "aws:kinesis:record", "awsRegion": REGION,
            })
        })
        .collect();
    serde_json::to_vec(&items).expect("serializable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sized_and_skewed() {
        let mut a = Generator::new(5000, 1);
        let mut b = Generator::new(5000, 1);
        let mut sizes = Vec::new();
        let mut per_account = BTreeMap::<usize, usize>::new();
        for _ in 0..2000 {
            let (ia, fa) = a.finding();
            let (_, fb) = b.finding();
            assert_eq!(fa, fb);
            sizes.push(serde_json::to_vec(&fa).unwrap().len());
            *per_account.entry(ia).or_default() += 1;
        }
        let in_range = sizes.iter().filter(|&&s| (1_900..10_500).contains(&s)).count();
        assert!(in_range > 1900, "{in_range} of 2000 between 2 and 10 KB");
        assert!(sizes.iter().all(|&s| s < 210_000));
        let top = per_account.values().max().unwrap();
        assert!(*top > 100, "Zipf: the busiest account has {top} of 2000 findings");
        assert!(per_account.len() > 200, "and the tail is long: {} accounts", per_account.len());
    }

    #[test]
    fn findings_parse_as_asff_and_access_keys_resolve() {
        let mut g = Generator::new(100, 2);
        let mut resolved = 0;
        for _ in 0..200 {
            let (_, f) = g.finding();
            let finding: securityhub_enricher::core::finding::Finding = serde_json::from_value(f).unwrap();
            if finding.product_arn.ends_with("/guardduty") {
                let (entities, unresolved) = securityhub_enricher::core::select::entities(&finding);
                assert!(unresolved.is_empty());
                resolved += entities.len();
            }
        }
        assert!(resolved > 30);
        assert_eq!(synthetic_org(50, 1).len(), 50);
    }
}
