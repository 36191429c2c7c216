//! Local-stack tooling shared by `make demo`, the integration tests and the load-test harness:
//! seed an organization, generate findings, and play the part of the EventBridge Pipe.

pub mod findings;
pub mod org;
pub mod pipe;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
#[error("{step} failed")]
pub struct LocalError {
    pub step: String,
    #[source]
    pub source: BoxError,
}

impl LocalError {
    pub fn new(step: impl Into<String>, source: impl Into<BoxError>) -> Self {
        LocalError { step: step.into(), source: source.into() }
    }
}

/// SDK configuration acting as one account of the local stack. moto keeps state per account
/// and attributes a request to the account whose IAM knows its access key, so the credentials
/// come from AssumeRole into that account, as a cross-account caller's would. Endpoints come
/// from the standard `AWS_ENDPOINT_URL*` variables that `scripts/local-aws` sets.
pub async fn sdk_config_for(account_id: &str) -> Result<aws_config::SdkConfig, LocalError> {
    let region = aws_config::Region::new(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()));
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region.clone()).load().await;
    let assumed = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account_id}:role/local-test"))
        .role_session_name("local-test")
        .send()
        .await
        .map_err(|e| LocalError::new("AssumeRole", aws_sdk_sts::Error::from(e)))?;
    let c = assumed.credentials.ok_or_else(|| LocalError::new("AssumeRole", "no credentials returned"))?;
    let credentials = aws_credential_types::Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        None,
        "local-aws",
    );
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .load()
        .await)
}
