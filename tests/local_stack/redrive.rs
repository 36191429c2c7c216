//! `enricher-admin redrive` and `--stack` against moto's SQS, Kinesis, CloudFormation and Lambda.
//!
//! Dead letters are written as a Kinesis source's on-failure destination writes them
//! (`KinesisBatchInfo`: shard, start and end sequence numbers, batch size, stream ARN). moto never
//! trims a stream, so a batch "past retention" is one whose start lies before the shard's oldest
//! record, which is how a trimmed batch looks to a reader; a vanished shard is a shard id the
//! stream does not have.

use std::collections::BTreeMap;

use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_kinesis::types::ShardIteratorType;
use loadtest::local::pipe::LocalPipe;
use loadtest::local::sdk_config_for;
use securityhub_enricher::adapters::redrive::{KinesisReplay, SqsDeadLetters};
use securityhub_enricher::adapters::sdk::app_name;
use securityhub_enricher::adapters::stack::{self, read_stack};
use securityhub_enricher::config::{EnricherConfig, map_vars};
use securityhub_enricher::ports::redrive::StreamRecord;
use securityhub_enricher::service::redrive::{Disposition, RedriveOptions, redrive};
use serde_json::json;

struct Account {
    sdk: aws_config::SdkConfig,
    /// The same account as `enricher-admin` (its SDK app name), for the permission check.
    admin: aws_config::SdkConfig,
}

async fn account() -> Account {
    let id = format!("{:012}", rand::random_range(100_000_000_000u64..999_999_999_999));
    let sdk = sdk_config_for(&id).await.expect("assume a role in the test's account");
    let admin = sdk.to_builder().app_name(app_name("enricher-admin")).build();
    Account { sdk, admin }
}

/// Every record of the stream's shards, in order.
async fn stream_records(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, StreamRecord)> {
    let shards = kinesis.list_shards().stream_name(stream).send().await.unwrap().shards.unwrap_or_default();
    let mut all = Vec::new();
    for shard in shards {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(current) = iterator.take() {
            let out = kinesis.get_records().shard_iterator(current).send().await.unwrap();
            let empty = out.records.is_empty();
            for r in out.records {
                all.push((
                    shard.shard_id.clone(),
                    StreamRecord {
                        sequence_number: r.sequence_number,
                        partition_key: r.partition_key,
                        data: r.data.into_inner(),
                    },
                ));
            }
            if !empty {
                iterator = out.next_shard_iterator;
            }
        }
    }
    all
}

fn dead_letter(stream_arn: &str, shard: &str, start: &str, end: &str, size: u64) -> String {
    json!({
        "requestContext": {"requestId": "00000000-0000-0000-0000-000000000000",
            "functionArn": "arn:aws:lambda:us-east-1:111122223333:function:enricher:live",
            "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 11},
        "responseContext": {"statusCode": 200, "executedVersion": "1", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-12-05T10:00:00.000Z",
        "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": start, "endSequenceNumber": end,
            "approximateArrivalOfFirstRecord": "2026-12-05T09:59:00.000Z",
            "approximateArrivalOfLastRecord": "2026-12-05T09:59:01.000Z",
            "batchSize": size, "streamArn": stream_arn}
    })
    .to_string()
}

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str, bodies: &[String]) -> String {
    let url = sqs.create_queue().queue_name(name).send().await.unwrap().queue_url.unwrap();
    for body in bodies {
        sqs.send_message().queue_url(&url).message_body(body).send().await.unwrap();
    }
    url
}

/// Ten findings-like records on one shard, as the rules put them (keyed by account).
async fn stream_with_records(account: &Account, name: &str) -> (LocalPipe, String, Vec<(String, StreamRecord)>) {
    let kinesis = aws_sdk_kinesis::Client::new(&account.sdk);
    let pipe = LocalPipe::create(kinesis.clone(), name, 1).await.unwrap();
    let events: Vec<_> = (0..10)
        .map(|n| json!({"detail-type": "Security Hub Findings - Imported", "source": "aws.securityhub",
            "detail": {"findings": [{"AwsAccountId": format!("{:012}", 111_122_223_330u64 + n % 3), "Id": format!("finding-{n}")}]}}))
        .collect();
    pipe.put_events(&events).await.unwrap();
    let arn = kinesis
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap()
        .stream_arn;
    let records = stream_records(&kinesis, name).await;
    assert_eq!(records.len(), 10);
    (pipe, arn, records)
}

#[tokio::test]
async fn redrive_sends_dead_lettered_batches_back_and_says_what_could_not_be_sent() {
    if !crate::stack_up() {
        return;
    }
    let account = account().await;
    let (_pipe, arn, before) = stream_with_records(&account, "findings-redrive").await;
    let (shard, seq) = (&before[0].0, |i: usize| before[i].1.sequence_number.clone());
    let sqs = aws_sdk_sqs::Client::new(&account.sdk);
    let other_arn = arn.replace(":stream/findings-redrive", ":stream/another-stream");
    let url = queue(
        &sqs,
        "pipe-dead-letters",
        &[
            // Records 2..=5, all retained: sent again, deleted.
            dead_letter(&arn, shard, &seq(2), &seq(5), 4),
            // Its first record is before the shard's oldest (trimmed): 2 of 3 retained.
            dead_letter(&arn, shard, "0", &seq(1), 3),
            // A shard the stream no longer has.
            dead_letter(&arn, "shardId-000000000042", "1", "2", 7),
            // Another stream's batch, and a message that is not a dead letter of a stream.
            dead_letter(&other_arn, shard, &seq(0), &seq(0), 1),
            "{\"not\": \"a dead letter\"}".to_owned(),
        ],
    )
    .await;

    let dead_letters = SqsDeadLetters::new(aws_sdk_sqs::Client::new(&account.admin), &url);
    let replay = KinesisReplay::new(aws_sdk_kinesis::Client::new(&account.admin));
    let options =
        RedriveOptions { stream: "findings-redrive".into(), max_letters: 100, dry_run: false, discard_expired: false };
    let report = redrive(&dead_letters, &replay, &options).await.unwrap();

    assert_eq!(report.letters.len(), 5);
    let by_start = |start: &str, shard: &str| {
        report
            .letters
            .iter()
            .find(|l| l.start_sequence_number.as_deref() == Some(start) && l.shard_id.as_deref() == Some(shard))
            .unwrap_or_else(|| panic!("no letter {start} {shard}: {report:#?}"))
    };
    let whole = by_start(&seq(2), shard);
    assert_eq!((whole.records_found, whole.records_sent, whole.records_past_retention), (4, 4, Some(0)));
    assert_eq!(whole.disposition, Disposition::Redriven);
    let trimmed = by_start("0", shard);
    assert_eq!((trimmed.records_found, trimmed.records_sent, trimmed.records_past_retention), (2, 2, Some(1)));
    assert_eq!(trimmed.disposition, Disposition::Kept, "a record could not be sent: the letter stays");
    assert!(trimmed.note.as_deref().unwrap().contains("past the stream's retention"), "{trimmed:?}");
    let gone = by_start("1", "shardId-000000000042");
    assert_eq!((gone.records_found, gone.records_past_retention, &gone.disposition), (0, Some(7), &Disposition::Kept));
    assert!(gone.note.as_deref().unwrap().contains("no longer exists"));
    let foreign =
        report.letters.iter().find(|l| l.note.as_deref().is_some_and(|n| n.contains("another-stream"))).unwrap();
    assert_eq!((foreign.records_sent, &foreign.disposition), (0, &Disposition::Kept));
    let garbage = report.letters.iter().find(|l| l.shard_id.is_none()).unwrap();
    assert!(garbage.note.as_deref().unwrap().contains("KinesisBatchInfo"), "{garbage:?}");
    assert_eq!((report.records_sent(), report.deleted(), report.kept()), (6, 1, 4));

    // The records are on the stream again, same partition keys and data, after the originals.
    let kinesis = aws_sdk_kinesis::Client::new(&account.sdk);
    let after = stream_records(&kinesis, "findings-redrive").await;
    assert_eq!(after.len(), 16);
    let resent: Vec<_> = after[10..].iter().map(|(_, r)| (r.partition_key.clone(), r.data.clone())).collect();
    let expected: Vec<_> =
        [2, 3, 4, 5, 0, 1].iter().map(|&i| (before[i].1.partition_key.clone(), before[i].1.data.clone())).collect();
    assert_eq!(resent, expected);
    // Only the fully sent letter left the queue (the others are hidden for the visibility timeout).
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| attributes[&name].parse::<u32>().unwrap();
    use aws_sdk_sqs::types::QueueAttributeName as A;
    assert_eq!(count(A::ApproximateNumberOfMessages) + count(A::ApproximateNumberOfMessagesNotVisible), 4);
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_discard_expired_deletes_what_can_never_be_sent() {
    if !crate::stack_up() {
        return;
    }
    let account = account().await;
    let (_pipe, arn, before) = stream_with_records(&account, "findings-expired").await;
    let shard = before[0].0.clone();
    let sqs = aws_sdk_sqs::Client::new(&account.sdk);
    let url =
        queue(&sqs, "pipe-dead-letters-expired", &[dead_letter(&arn, &shard, "0", &before[2].1.sequence_number, 5)])
            .await;
    let dead_letters = SqsDeadLetters::new(aws_sdk_sqs::Client::new(&account.admin), &url);
    let replay = KinesisReplay::new(aws_sdk_kinesis::Client::new(&account.admin));
    let kinesis = aws_sdk_kinesis::Client::new(&account.sdk);

    let dry =
        RedriveOptions { stream: "findings-expired".into(), max_letters: 1, dry_run: true, discard_expired: true };
    let report = redrive(&dead_letters, &replay, &dry).await.unwrap();
    let letter = &report.letters[0];
    assert_eq!((letter.records_found, letter.records_sent, letter.records_past_retention), (3, 0, Some(2)));
    assert_eq!(letter.disposition, Disposition::DryRun);
    assert_eq!(stream_records(&kinesis, "findings-expired").await.len(), 10, "a dry run puts nothing");

    // The letter is hidden for the visibility timeout: make it visible again for the real run.
    let received = sqs.receive_message().queue_url(&url).visibility_timeout(0).send().await.unwrap();
    assert!(received.messages.unwrap_or_default().is_empty(), "still hidden after the dry run");
    sqs.purge_queue().queue_url(&url).send().await.unwrap();
    sqs.send_message()
        .queue_url(&url)
        .message_body(dead_letter(&arn, &shard, "0", &before[2].1.sequence_number, 5))
        .send()
        .await
        .unwrap();
    let discard = RedriveOptions { dry_run: false, ..dry };
    let report = redrive(&dead_letters, &replay, &discard).await.unwrap();
    let letter = &report.letters[0];
    assert_eq!((letter.records_sent, letter.records_past_retention), (3, Some(2)));
    assert_eq!(letter.disposition, Disposition::RedrivenExpiredDiscarded);
    assert_eq!(stream_records(&kinesis, "findings-expired").await.len(), 13);
}

/// A stack shaped as pipes/template.yaml where `--stack` looks: the enricher function with its
/// environment, the pipe's dead-letter queue and the findings stream.
fn stack_template(environment: &BTreeMap<&str, &str>) -> String {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "EnricherRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}},
            "EnricherFunction": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "python3.12", "Handler": "index.handler",
                "Role": {"Fn::GetAtt": ["EnricherRole", "Arn"]},
                "Code": {"ZipFile": "not run by these tests"},
                "Environment": {"Variables": environment}}},
            "DeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "FindingsStream": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}}
        }
    })
    .to_string()
}

#[tokio::test]
async fn the_stack_gives_the_deployed_configuration_and_redrive_its_queue_and_stream() {
    if !crate::stack_up() {
        return;
    }
    let account = account().await;
    let environment = BTreeMap::from([
        ("CACHE_TABLE", "securityhub-enricher-CacheTable-ABC123"),
        ("TAG_KEYS", "owner,env"),
        ("ORGANIZATIONS_RPS", "2"),
        ("CONTACT_ROLE_ARN", ""),
        ("JOBS_TABLE", "securityhub-enricher-JobsTable-XYZ"),
    ]);
    let cloudformation = aws_sdk_cloudformation::Client::new(&account.sdk);
    cloudformation
        .create_stack()
        .stack_name("securityhub-enricher")
        .template_body(stack_template(&environment))
        .send()
        .await
        .unwrap();

    // The library: the resources and the environment, parsed by the one configuration parser.
    let deployed = read_stack(
        &aws_sdk_cloudformation::Client::new(&account.admin),
        &aws_sdk_lambda::Client::new(&account.admin),
        "securityhub-enricher",
    )
    .await
    .unwrap();
    let expected: BTreeMap<String, String> = environment.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(deployed.enricher_environment, expected);
    let config = EnricherConfig::from_vars(&map_vars(&deployed.enricher_environment)).unwrap();
    assert_eq!(config.cache_table, "securityhub-enricher-CacheTable-ABC123");
    assert_eq!(config.organizations_rate.per_second, 2.0);
    assert_eq!(config.investigations.unwrap().jobs_table, "securityhub-enricher-JobsTable-XYZ");
    assert!(config.contact_role.is_none(), "empty means unset, as in the template");
    let stream = deployed.resource(stack::FINDINGS_STREAM).unwrap().to_owned();
    let queue_url = deployed.resource(stack::PIPE_DEAD_LETTER_QUEUE).unwrap().to_owned();
    assert!(queue_url.starts_with("http"), "a queue's physical id is its URL: {queue_url}");

    // The command, as an operator runs it: nothing but the stack's name.
    let kinesis = aws_sdk_kinesis::Client::new(&account.sdk);
    kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("111122223333")
        .data(aws_smithy_types::Blob::new(b"{\"detail\":{}}".to_vec()))
        .send()
        .await
        .unwrap();
    let records = stream_records(&kinesis, &stream).await;
    let (shard, record) = &records[0];
    let arn = kinesis
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap()
        .stream_arn;
    let sqs = aws_sdk_sqs::Client::new(&account.sdk);
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body(dead_letter(&arn, shard, &record.sequence_number, &record.sequence_number, 1))
        .send()
        .await
        .unwrap();
    let credentials = account.sdk.credentials_provider().unwrap().provide_credentials().await.unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_enricher-admin"))
            .args(args)
            .env_remove("CACHE_TABLE")
            .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
            .env("AWS_SESSION_TOKEN", credentials.session_token().unwrap_or_default())
            .output()
            .unwrap()
    };
    let out = run(&["--stack", "securityhub-enricher", "redrive"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 records sent, 1 letters deleted, 0 kept"), "{stdout}");
    assert_eq!(stream_records(&kinesis, &stream).await.len(), 2);

    // Without --stack and without the variables, the error names both ways.
    let out = run(&["invalidate", "--account", "111122223333"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("CACHE_TABLE") && stderr.contains("--stack"), "{stderr}");
}
