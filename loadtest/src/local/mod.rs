//! Local-stack tooling shared by `make demo`, the integration tests and the load-test harness:
//! seed an organization, generate findings, and play the part of the EventBridge Pipe.

pub mod events;
pub mod findings;
pub mod harness;
pub mod org;
pub mod pipe;
pub mod settings;

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
    // The Security Hub/Detective emulator attributes requests to accounts the same way.
    if let Ok(url) = std::env::var("LOCAL_AWS_EMULATOR_URL") {
        let body = serde_json::json!({"access_key_id": c.access_key_id, "account_id": account_id});
        control_request("POST", &format!("{url}/_emulator/credentials"), Some(body.to_string())).await?;
    }
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

/// Calls a local server's control API (moto's `/moto-api/`, the emulator's `/_emulator/`).
/// Plain HTTP/1.1 on loopback over a std socket: this is test tooling, and it keeps another
/// HTTP client crate out of the build.
pub async fn control_request(method: &str, url: &str, body: Option<String>) -> Result<String, LocalError> {
    let (method, url) = (method.to_owned(), url.to_owned());
    let step = format!("{method} {url}");
    let result = tokio::task::spawn_blocking(move || -> Result<String, BoxError> {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").ok_or("an http:// URL is expected")?;
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
        let mut stream = std::net::TcpStream::connect(host)?;
        let body = body.unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").ok_or("malformed HTTP response")?;
        let status = head.split_whitespace().nth(1).unwrap_or("000");
        if !status.starts_with('2') {
            return Err(format!("HTTP {status}: {body}").into());
        }
        Ok(body.to_owned())
    })
    .await
    .map_err(|e| LocalError::new(step.clone(), e))?;
    result.map_err(|e| LocalError::new(step, e))
}

/// Creates a DynamoDB table keyed by one string attribute, with TTL on `ExpiresAt`, as the
/// templates create the cache (`AccountId`) and jobs (`JobId`) tables.
pub async fn create_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str, key: &str) -> Result<(), LocalError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
    };
    let step = |what: &str| format!("{what} {table}");
    let definition = AttributeDefinition::builder()
        .attribute_name(key)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| LocalError::new(step("CreateTable"), e))?;
    let schema = KeySchemaElement::builder()
        .attribute_name(key)
        .key_type(KeyType::Hash)
        .build()
        .map_err(|e| LocalError::new(step("CreateTable"), e))?;
    dynamodb
        .create_table()
        .table_name(table)
        .attribute_definitions(definition)
        .key_schema(schema)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| LocalError::new(step("CreateTable"), aws_sdk_dynamodb::Error::from(e)))?;
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name("ExpiresAt")
        .enabled(true)
        .build()
        .map_err(|e| LocalError::new(step("UpdateTimeToLive"), e))?;
    dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(|e| LocalError::new(step("UpdateTimeToLive"), aws_sdk_dynamodb::Error::from(e)))?;
    Ok(())
}
