//! The orchestration pieces on in-memory fakes with tokio's paused clock: quota sharing through
//! the ledger, and forgetting changed accounts.

use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::directory::InMemoryStore;
use loadtest::fakes::ledger::InMemoryLedger;
use loadtest::fakes::sweep_state::InMemorySweepState;
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord};
use securityhub_enricher::core::account_change::Change;
use securityhub_enricher::core::cache_entry::CacheEntry;
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::ports::metadata::MetadataStore;
use securityhub_enricher::ports::sweep_state::SweepState;
use securityhub_enricher::service::account_events::forget_changed;
use securityhub_enricher::service::quota_share::QuotaShare;
use serde_json::json;

const POOL: Rate = Rate { per_second: 9.0, burst: 27 };
const STATIC_SHARE: Rate = Rate { per_second: 2.25, burst: 6 };

#[tokio::test(start_paused = true)]
async fn claims_while_working_and_releases_after() {
    let ledger = Arc::new(InMemoryLedger::default());
    let renew = Duration::from_millis(20);
    let a = QuotaShare::shared(POOL, STATIC_SHARE, ledger.clone(), "a", renew);
    let b = QuotaShare::shared(POOL, STATIC_SHARE, ledger.clone(), "b", renew);
    assert_eq!(a.holders(), None, "the static share until the ledger answers");
    a.while_active(async {
        tokio::time::sleep(renew * 2).await;
        assert_eq!(a.holders(), Some(1), "alone in the ledger: the whole pool");
        b.while_active(async {
            tokio::time::sleep(renew * 2).await;
            assert_eq!(b.holders(), Some(2));
        })
        .await;
        tokio::time::sleep(renew * 2).await;
        assert_eq!(a.holders(), Some(1), "b released its claim");
    })
    .await;
    assert_eq!(ledger.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn overlapping_runs_keep_the_claim_until_the_last_ends() {
    let ledger = Arc::new(InMemoryLedger::default());
    // Renewals far apart: a release by the short run would show before the next one.
    let renew = Duration::from_millis(400);
    let a = QuotaShare::shared(POOL, STATIC_SHARE, ledger.clone(), "a", renew);
    let short = a.while_active(tokio::time::sleep(Duration::from_millis(50)));
    let long = a.while_active(async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        ledger.live()
    });
    let ((), live_after_the_short_run) = tokio::join!(short, long);
    assert_eq!(live_after_the_short_run, 1, "the short run released the claim the long run still used");
    assert_eq!(ledger.live(), 0, "the last run released it");
}

#[tokio::test(start_paused = true)]
async fn a_claim_of_a_dead_holder_lapses_after_three_renewals() {
    let ledger = Arc::new(InMemoryLedger::default());
    let renew = Duration::from_secs(1);
    let a = QuotaShare::shared(POOL, STATIC_SHARE, ledger.clone(), "a", renew);
    // The holder's work is dropped mid-flight (its environment died): no release is sent.
    let _ = tokio::time::timeout(Duration::from_millis(10), a.while_active(std::future::pending::<()>())).await;
    assert_eq!(ledger.live(), 1);
    tokio::time::advance(renew * 3).await;
    assert_eq!(ledger.live(), 0, "lapsed without a release");
}

#[tokio::test]
async fn forgetting_removes_only_the_changed_account() {
    let store = InMemoryStore::default();
    let entry = |id: &str| CacheEntry {
        record: AccountRecord::Found(AccountMetadata::from_finding_name(id, Some("n"))),
        fetched_at: 0,
        fresh_until: i64::MAX,
        expires_at: i64::MAX,
    };
    let ids = ["222233334444".to_owned(), "555566667777".to_owned()];
    store.put_many(&ids.iter().map(|id| (id.clone(), entry(id))).collect::<Vec<_>>()).await.unwrap();
    let event = json!({
        "detail-type": "AWS API Call via CloudTrail", "account": "111111111111",
        "detail": {"eventSource": "organizations.amazonaws.com", "eventName": "MoveAccount",
                   "requestParameters": {"accountId": "222233334444"}},
    });
    let queue = InMemorySweepState::default();
    assert_eq!(forget_changed(&store, &queue, &event).await.unwrap(), Change::Accounts(vec![ids[0].clone()]));
    assert_eq!(queue.queued().await.unwrap(), vec![ids[0].clone()], "queued for refresh");
    let left = store.get_many(&ids).await.unwrap();
    assert!(!left.contains_key(&ids[0]) && left.contains_key(&ids[1]));
}

/// Permits a share hands out within `window`.
async fn permits(share: &QuotaShare, window: Duration) -> usize {
    let end = tokio::time::Instant::now() + window;
    let mut n = 0;
    while share.acquire(end).await.is_ok() {
        n += 1;
    }
    n
}

#[tokio::test(start_paused = true)]
async fn a_background_sweep_yields_to_the_stream_and_takes_the_pool_when_the_stream_is_idle() {
    let ledger = Arc::new(InMemoryLedger::default());
    let renew = Duration::from_millis(100);
    let stream = QuotaShare::shared(POOL, STATIC_SHARE, ledger.clone(), "environment-1", renew);
    let sweep = QuotaShare::shared(POOL, STATIC_SHARE, ledger.clone(), "bg-refresher", renew);
    let window = Duration::from_secs(10);
    let (busy, ()) = tokio::join!(
        sweep.while_active(permits(&sweep, window)),
        stream.while_active(tokio::time::sleep(window + renew))
    );
    let idle = sweep.while_active(permits(&sweep, window)).await;
    // The reserve is 1/s beside the stream; alone, the whole 9/s pool.
    assert!(busy <= 15, "{busy} permits while the stream wrote");
    assert!(idle >= 80, "{idle} permits with the stream idle");
}
