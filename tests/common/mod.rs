//! Shared by integration tests: an enricher wired to in-memory stand-ins for one account.

use std::sync::Arc;
use std::time::Duration;

use securityhub_enricher::config::{CacheTimes, Rate};
use securityhub_enricher::enrich::TagFilter;
use securityhub_enricher::handler::Enricher;
use securityhub_enricher::metadata::memory::{InMemoryStore, StaticSource};
use securityhub_enricher::metadata::{AccountRecord, Directory};
use securityhub_enricher::securityhub::{InMemoryHub, Updater};

/// An enricher whose organization holds `account`, writing to the returned in-memory hub.
pub fn in_memory_enricher(account: AccountRecord, rate: Rate) -> (Enricher, Arc<InMemoryHub>) {
    let minute = Duration::from_secs(60);
    let times = CacheTimes {
        fresh: minute,
        negative: minute,
        unknown_contact: minute,
        stale_grace: minute,
        memory: minute,
        memory_capacity: 100,
    };
    let hub = Arc::new(InMemoryHub::default());
    let enricher = Enricher {
        directory: Directory::new(
            Arc::new(InMemoryStore::default()),
            Arc::new(StaticSource::new([account])),
            times,
            4,
            Duration::from_secs(5),
        ),
        updater: Updater::new(hub.clone(), rate),
        tag_filter: TagFilter::All,
        deadline_margin: Duration::from_millis(10),
        fanout: None,
    };
    (enricher, hub)
}
