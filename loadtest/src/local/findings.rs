//! Findings as products emit them (GuardDuty, Security Hub controls, Inspector), wrapped in
//! EventBridge events, and imported into the local Security Hub.

use aws_sdk_securityhub::types::AwsSecurityFinding;
use serde_json::{Value, json};

use super::LocalError;
use securityhub_enricher::core::event::{DETAIL_TYPE_IMPORTED, SOURCE_SECURITY_HUB};

pub const REGION: &str = "us-east-1";

/// One realistic finding for an account. `n` picks the product and makes the id unique.
pub fn sample_finding(account_id: &str, account_name: &str, n: usize) -> Value {
    let now = "2026-11-22T07:00:00.000Z";
    let (product, generator, title, severity, types, resource) = match n % 3 {
        0 => (
            "guardduty",
            "arn:aws:guardduty:us-east-1::detector/generator/UnauthorizedAccess:IAMUser-ConsoleLoginSuccess.B"
                .to_owned(),
            "Unusual console login seen for principal admin-user",
            "HIGH",
            "TTPs/Initial Access/UnauthorizedAccess:IAMUser-ConsoleLoginSuccess.B",
            json!({"Type": "AwsIamAccessKey", "Id": format!("AWS::IAM::AccessKey:ASIA{n:016}"), "Partition": "aws", "Region": REGION,
                   "Details": {"AwsIamAccessKey": {"PrincipalName": "admin-user", "PrincipalType": "IAMUser", "UserName": "admin-user"}}}),
        ),
        1 => (
            "securityhub",
            "security-control/S3.8".to_owned(),
            "S3 general purpose buckets should block public access",
            "MEDIUM",
            "Software and Configuration Checks/Industry and Regulatory Standards",
            json!({"Type": "AwsS3Bucket", "Id": format!("arn:aws:s3:::bucket-{account_id}-{n}"), "Partition": "aws", "Region": REGION}),
        ),
        _ => (
            "inspector",
            "arn:aws:inspector2:us-east-1::finding/CVE-2024-3094".to_owned(),
            "CVE-2024-3094 - xz-utils",
            "CRITICAL",
            "Software and Configuration Checks/Vulnerabilities/CVE",
            json!({"Type": "AwsEc2Instance", "Id": format!("arn:aws:ec2:{REGION}:{account_id}:instance/i-{n:017x}"), "Partition": "aws", "Region": REGION}),
        ),
    };
    json!({
        "SchemaVersion": "2018-10-08",
        "Id": format!("arn:aws:{product}:{REGION}:{account_id}:finding/{n:08}"),
        "ProductArn": format!("arn:aws:securityhub:{REGION}::product/aws/{product}"),
        "ProductName": product,
        "CompanyName": "AWS",
        "GeneratorId": generator,
        "AwsAccountId": account_id,
        "AwsAccountName": account_name,
        "Region": REGION,
        "Types": [types],
        "FirstObservedAt": now,
        "CreatedAt": now,
        "UpdatedAt": now,
        "Severity": {"Label": severity, "Original": severity},
        "Title": title,
        "Description": format!("{title}. Generated for the local demo."),
        "Resources": [resource],
        "RecordState": "ACTIVE",
        "Workflow": {"Status": "NEW"},
    })
}

/// The EventBridge event Security Hub emits for imported findings.
pub fn imported_event(findings: &[Value], n: usize) -> Value {
    json!({
        "version": "0",
        "id": format!("00000000-0000-4000-8000-{n:012}"),
        "detail-type": DETAIL_TYPE_IMPORTED,
        "source": SOURCE_SECURITY_HUB,
        "account": findings.first().and_then(|f| f["AwsAccountId"].as_str()).unwrap_or("000000000000"),
        "time": "2026-11-22T07:00:00Z",
        "region": REGION,
        "resources": findings.iter().map(|f| f["Id"].clone()).collect::<Vec<_>>(),
        "detail": {"findings": findings},
    })
}

/// An OCSF finding of the new Security Hub for this account (a GuardDuty-like detection).
pub fn sample_ocsf_finding(account_id: &str, n: usize) -> Value {
    json!({
        "metadata": {"uid": format!("ocsf-{account_id}-{n}"), "version": "1.6.0",
                     "product": {"uid": format!("arn:aws:securityhub:{REGION}::productv2/aws/guardduty"), "name": "GuardDuty"}},
        "cloud": {"account": {"uid": account_id}, "provider": "AWS", "region": REGION},
        "finding_info": {"uid": format!("gd-{n}"), "title": format!("Unusual API calls {n}"),
                         "modified_time": 1_795_000_000_000i64 + n as i64},
        "severity": "High", "severity_id": 4, "status": "New", "status_id": 1,
        "class_name": "Detection Finding"
    })
}

/// The "Findings Imported V2" event the new hub emits: one OCSF finding.
pub fn imported_v2_event(finding: &Value, n: usize) -> Value {
    json!({
        "version": "0",
        "id": format!("00000000-0000-4000-9000-{n:012}"),
        "detail-type": securityhub_enricher::core::event::DETAIL_TYPE_IMPORTED_V2,
        "source": SOURCE_SECURITY_HUB,
        "account": finding["cloud"]["account"]["uid"],
        "time": "2026-11-22T07:00:00Z",
        "region": REGION,
        "resources": [finding["metadata"]["uid"]],
        "detail": {"findings": [finding]},
    })
}

/// Puts OCSF findings into the emulator's new hub for `account` (the new hub has no customer
/// import API, so the emulator's control API stands in for the AWS services that produce them).
pub async fn seed_ocsf_findings(account: &str, findings: &[Value]) -> Result<(), LocalError> {
    let emulator = std::env::var("LOCAL_AWS_EMULATOR_URL").map_err(|e| LocalError::new("LOCAL_AWS_EMULATOR_URL", e))?;
    let url = format!("{emulator}/_emulator/findingsv2?account={account}&region={REGION}");
    super::control_request("POST", &url, Some(json!({"Findings": findings}).to_string())).await.map(|_| ())
}

/// The emulator's OCSF findings of `account`, as BatchUpdateFindingsV2 left them.
pub async fn stored_ocsf_findings(account: &str) -> Result<Vec<Value>, LocalError> {
    let emulator = std::env::var("LOCAL_AWS_EMULATOR_URL").map_err(|e| LocalError::new("LOCAL_AWS_EMULATOR_URL", e))?;
    let body =
        super::control_request("GET", &format!("{emulator}/_emulator/findingsv2?account={account}"), None).await?;
    serde_json::from_str(&body).map_err(|e| LocalError::new("findingsv2 body", e))
}

/// Imports findings into Security Hub, 100 per call as the API allows.
pub async fn import_findings(client: &aws_sdk_securityhub::Client, findings: &[Value]) -> Result<(), LocalError> {
    for chunk in findings.chunks(100) {
        let parsed = chunk.iter().map(|f| asff_from_json(f.clone())).collect::<Result<Vec<_>, _>>()?;
        let out = client
            .batch_import_findings()
            .set_findings(Some(parsed))
            .send()
            .await
            .map_err(|e| LocalError::new("BatchImportFindings", aws_sdk_securityhub::Error::from(e)))?;
        if out.failed_count.unwrap_or_default() > 0 {
            return Err(LocalError::new("BatchImportFindings", format!("{:?}", out.failed_findings)));
        }
    }
    Ok(())
}

/// The SDK has no serde for its types, so the import goes through the few fields we set.
fn asff_from_json(f: Value) -> Result<AwsSecurityFinding, LocalError> {
    use aws_sdk_securityhub::types::{Resource, Severity, SeverityLabel};
    let s = |key: &str| f[key].as_str().unwrap_or_default().to_owned();
    let resources = f["Resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            Resource::builder()
                .r#type(r["Type"].as_str().unwrap_or_default())
                .id(r["Id"].as_str().unwrap_or_default())
                .partition(aws_sdk_securityhub::types::Partition::Aws)
                .region(REGION)
                .build()
        })
        .collect::<Vec<_>>();
    Ok(AwsSecurityFinding::builder()
        .schema_version(s("SchemaVersion"))
        .id(s("Id"))
        .product_arn(s("ProductArn"))
        .product_name(s("ProductName"))
        .company_name(s("CompanyName"))
        .generator_id(s("GeneratorId"))
        .aws_account_id(s("AwsAccountId"))
        .aws_account_name(s("AwsAccountName"))
        .region(s("Region"))
        .set_types(Some(
            f["Types"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        ))
        .first_observed_at(s("FirstObservedAt"))
        .created_at(s("CreatedAt"))
        .updated_at(s("UpdatedAt"))
        .severity(
            Severity::builder().label(SeverityLabel::from(f["Severity"]["Label"].as_str().unwrap_or("LOW"))).build(),
        )
        .title(s("Title"))
        .description(s("Description"))
        .set_resources(Some(resources))
        .build())
}
