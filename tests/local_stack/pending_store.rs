//! The pending-writes store's DynamoDB adapter against moto: holding, the sharded index, a
//! drainer's claim, releasing what was written, and a hold that lands while a drainer works.

use securityhub_enricher::adapters::cache_table::capacity::{item_bytes, write_units};
use securityhub_enricher::adapters::cache_table::pending::DynamoPendingWrites;
use securityhub_enricher::adapters::cache_table::schema::{PENDING_PREFIX, TTL_ATTRIBUTE};
use securityhub_enricher::core::finding::Finding;
use securityhub_enricher::core::pending::PendingFinding;
use securityhub_enricher::ports::pending::{PendingWrites, StoreUsage};

use loadtest::local::{create_table, sdk_config_for};

const A: &str = "111122223333";
const B: &str = "444455556666";

fn pending(account: &str, n: usize, held_at_ms: i64) -> PendingFinding {
    let finding: Finding = serde_json::from_value(serde_json::json!({
        "Id": format!("arn:aws:guardduty:us-east-1:{account}:detector/d/finding/f{n}"),
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
        "AwsAccountId": account,
        "UserDefinedFields": {"team": "blue"},
        "Note": {"Text": "an analyst's", "UpdatedBy": "someone"},
    }))
    .unwrap();
    PendingFinding::of(&finding, held_at_ms)
}

async fn account_item(
    client: &aws_sdk_dynamodb::Client,
    account: &str,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    client
        .get_item()
        .table_name("cache")
        .key("AccountId", aws_sdk_dynamodb::types::AttributeValue::S(format!("{PENDING_PREFIX}{account}")))
        .send()
        .await
        .unwrap()
        .item
        .expect("the account's item")
}

#[tokio::test]
async fn the_pending_writes_store_holds_claims_and_releases_in_the_cache_table() {
    if !crate::stack_up() {
        return;
    }
    let account = format!("{:012}", rand::random_range(100_000_000_000u64..999_999_999_999));
    let sdk = sdk_config_for(&account).await.expect("assume a role in the test's account");
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    create_table(&client, "cache", "AccountId").await.unwrap();
    let store = DynamoPendingWrites::new(client.clone(), "cache");

    // Two accounts held in one call; A's first finding again (a later snapshot) is replaced.
    let answers = store
        .hold(
            &[(A.into(), vec![pending(A, 0, 1_000), pending(A, 1, 1_000)]), (B.into(), vec![pending(B, 0, 1_000)])],
            1_000,
        )
        .await;
    assert!(answers.iter().all(|(_, r)| r.is_ok()), "{answers:?}");
    let answers = store.hold(&[(A.into(), vec![pending(A, 0, 2_000), pending(A, 2, 2_000)])], 2_000).await;
    let waiting = answers[0].1.as_ref().unwrap();
    assert_eq!((waiting.findings, waiting.oldest_ms), (3, 1_000));
    let mut index = store.accounts().await.unwrap();
    index.sort_by(|a, b| a.account.cmp(&b.account));
    assert_eq!(
        index.iter().map(|a| (a.account.as_str(), a.findings, a.oldest_ms)).collect::<Vec<_>>(),
        [(A, 3, 1_000), (B, 1, 1_000)]
    );
    let item = account_item(&client, A).await;
    assert!(item.contains_key(TTL_ATTRIBUTE), "TTL removes an item left behind");

    // A drainer claims A; a second one is refused until the claim lapses.
    let taken = store.take(A, 3_000, 10_000).await.unwrap().expect("A's findings");
    assert_eq!(taken.findings.len(), 3);
    assert!(taken.findings.iter().all(|f| f.fields["team"] == "blue" && f.note.is_some()), "snapshots round-trip");
    assert_eq!(store.take(A, 4_000, 11_000).await.unwrap(), None, "claimed");
    assert!(store.accounts().await.unwrap().iter().any(|a| a.account == A), "the index keeps A until release");

    // A hold lands while the drainer writes; the drainer releases what it wrote, except one
    // that failed: both stay, indexed with what is left.
    store.hold(&[(A.into(), vec![pending(A, 3, 5_000)])], 5_000).await[0].1.as_ref().unwrap();
    let written: Vec<String> =
        taken.findings.iter().filter(|f| !f.id.ends_with("f1")).map(PendingFinding::key).collect();
    store.release(A, &written).await.unwrap();
    let left = store.accounts().await.unwrap().into_iter().find(|a| a.account == A).expect("A is still indexed");
    assert_eq!((left.findings, left.oldest_ms), (2, 1_000));
    let again = store.take(A, 6_000, 12_000).await.unwrap().expect("the claim ended with the release");
    let mut ids: Vec<String> = again.findings.iter().map(|f| f.id.rsplit('/').next().unwrap().to_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["f1", "f3"]);

    // Everything written: off the index; B's claim lapses and another drainer takes it.
    store.release(A, &again.findings.iter().map(PendingFinding::key).collect::<Vec<_>>()).await.unwrap();
    assert!(store.take(B, 6_000, 7_000).await.unwrap().is_some());
    assert!(store.take(B, 8_000, 20_000).await.unwrap().is_some(), "B's first claim lapsed at 7,000");
    store.release(B, &[pending(B, 0, 0).key()]).await.unwrap();
    assert!(store.accounts().await.unwrap().is_empty());

    // What the requests cost, as DynamoDB sizes the items: holding 100 findings is one write
    // of the account's item and one of its index shard; reading the index, one read unit per
    // shard (each under 4 KB, or not there: a key not found costs a unit too).
    let before = store.usage().expect("the table adapter measures its requests");
    store.hold(&[(A.into(), (10..110).map(|n| pending(A, n, 30_000)).collect())], 30_000).await[0].1.as_ref().unwrap();
    let held = store.usage().unwrap().since(before);
    let item = account_item(&client, A).await;
    let bytes = item_bytes(&item);
    assert!(bytes > 100 * 300, "100 findings' snapshots: {bytes} bytes");
    assert_eq!((held.requests, held.write_units, held.read_units), (2, write_units(bytes) + 1, 0), "{held:?}");
    let before = store.usage().unwrap();
    assert_eq!(store.accounts().await.unwrap().len(), 1);
    assert_eq!(store.usage().unwrap().since(before), StoreUsage { requests: 1, write_units: 0, read_units: 16 });
}
