//! Load generation: a synthetic organization and realistic findings for it, deterministic by
//! seed. GuardDuty (IAM access keys of users and assumed roles among them), Inspector,
//! Security Hub controls, Macie and IAM Access Analyzer; sizes per product as the real findings
//! of the corpus measure (1.2–5.5 KB, one in a hundred up to 16 KB); accounts drawn Zipf-like,
//! as a few accounts produce most findings.

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
    /// Whether findings get their product's body size (`false`: no larger than they must be).
    sized: bool,
}

/// Serialized sizes of ASFF findings in bytes, per product, measured on the real findings of
/// the corpus (`../shared/corpus/asff-*.json`, compact JSON): GuardDuty 3,959–8,186 (mean
/// 4,763), Inspector 2,272–16,203 (mean 3,823), Security Hub controls 2,225–5,141 (mean 3,016),
/// IAM Access Analyzer 1,176–1,519 (mean 1,348); the corpus has no Macie finding, which takes
/// the controls' range. The ranges below hold the middle of each product's findings; the corpus'
/// largest (an Inspector finding with many packages, 16 KB) stands for the one-in-a-hundred tail.
pub mod sizes {
    use std::ops::Range;
    pub const GUARDDUTY: Range<usize> = 3_900..5_600;
    pub const INSPECTOR: Range<usize> = 2_300..5_300;
    pub const SECURITY_HUB: Range<usize> = 2_200..3_800;
    pub const MACIE: Range<usize> = 2_200..3_800;
    pub const ACCESS_ANALYZER: Range<usize> = 1_150..1_550;
    /// One finding in a hundred, of any product.
    pub const TAIL: Range<usize> = 6_000..16_300;
}

impl Generator {
    pub fn new(accounts: usize, seed: u64) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            accounts,
            zipf: Zipf::new(accounts as f64, 1.1).expect("at least one account"),
            next: 0,
            sized: true,
        }
    }

    /// Findings no larger than they must be (about 1 KB): the worst case by record count.
    /// Real findings are larger (see [`sizes`]); a 6 MB invocation never carries 10,000 of them.
    pub fn minimal(mut self) -> Self {
        self.sized = false;
        self
    }

    fn size(&mut self, usual: std::ops::Range<usize>) -> usize {
        // Drawn either way, so that minimal findings fall on the same accounts as sized ones.
        let size =
            if self.rng.random_bool(0.01) { self.rng.random_range(sizes::TAIL) } else { self.rng.random_range(usual) };
        if self.sized { size } else { 0 }
    }

    /// The next finding, and its account index.
    pub fn finding(&mut self) -> (usize, Value) {
        let n = self.next;
        self.next += 1;
        let account_index = (self.zipf.sample(&mut self.rng) as usize - 1).min(self.accounts - 1);
        let account = account_id(account_index);
        let name = format!("workload-{account_index:05}");
        let roll = self.rng.random_range(0..100);
        let (product, generator, title, severity, types, resource, usual) = match roll {
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
                    sizes::GUARDDUTY,
                )
            }
            30..60 => (
                "inspector",
                "AWSInspector",
                "CVE-2024-6387 - openssh",
                "HIGH",
                "Software and Configuration Checks/Vulnerabilities/CVE",
                json!({"Type": "AwsEc2Instance", "Id": format!("arn:aws:ec2:{REGION}:{account}:instance/i-{n:017x}")}),
                sizes::INSPECTOR,
            ),
            60..90 => (
                "securityhub",
                "security-control/IAM.6",
                "Hardware MFA should be enabled for the root user",
                "CRITICAL",
                "Software and Configuration Checks/Industry and Regulatory Standards",
                json!({"Type": "AwsAccount", "Id": format!("AWS::::Account:{account}")}),
                sizes::SECURITY_HUB,
            ),
            90..95 => (
                "macie",
                "SensitiveData:S3Object/Personal",
                "The S3 object contains personal information",
                "MEDIUM",
                "Sensitive Data Identifications/PII",
                json!({"Type": "AwsS3Bucket", "Id": format!("arn:aws:s3:::data-{account}")}),
                sizes::MACIE,
            ),
            _ => (
                "access-analyzer",
                "AWS::IAM::Role",
                "AwsIamRole/arn:aws:iam::role/shared allows cross-account access",
                "LOW",
                "Software and Configuration Checks/AWS Security Best Practices/External Access Granted",
                json!({"Type": "AwsIamRole", "Id": format!("arn:aws:iam::{account}:role/shared-{}", n % 17)}),
                sizes::ACCESS_ANALYZER,
            ),
        };
        let size = self.size(usual);
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
    let events: Vec<Value> = (0..records).map(|i| imported_event(&[generator.finding().1], i)).collect();
    serde_json::to_vec(&crate::batches::batch_of_events(&events)).expect("serializable")
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
        // Calibrated on the corpus: 1.15–5.6 KB by product, a tail up to 16.3 KB.
        let in_range = sizes.iter().filter(|&&s| (1_100..5_700).contains(&s)).count();
        assert!(in_range > 1940, "{in_range} of 2000 between 1.1 and 5.7 KB");
        assert!(sizes.iter().all(|&s| s < 16_400));
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((3_000..4_500).contains(&mean), "mean {mean} bytes");
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
