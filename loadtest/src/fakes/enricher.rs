//! `EnricherBuilder`: an enricher (or a sweeper) wired to in-memory fakes unless told otherwise,
//! for every test and the simulator, so none of them spells out the fields.

use std::sync::Arc;
use std::time::Duration;

use securityhub_enricher::core::cache_entry::CacheTimes;
use securityhub_enricher::core::enrich::{Rendering, TagFilter};
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::core::routing::RoutingRules;
use securityhub_enricher::limits::Limiter;
use securityhub_enricher::ports::events::EventPublisher;
use securityhub_enricher::ports::findings::{FindingsReader, FindingsWriter, FindingsWriterV2};
use securityhub_enricher::ports::metadata::{AccountSource, MetadataStore};
use securityhub_enricher::ports::pending::PendingWrites;
use securityhub_enricher::ports::sweep_state::SweepState;
use securityhub_enricher::service::directory::Directory;
use securityhub_enricher::service::fanout::Fanout;
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::service::pending::Coalescer;
use securityhub_enricher::service::pipeline::Pipeline;
use securityhub_enricher::service::publisher::Publisher;
use securityhub_enricher::service::quota_share::QuotaShare;
use securityhub_enricher::service::sweep::{Sweeper, WRITE_MARGIN};
use securityhub_enricher::service::updater::Updater;

use super::directory::{InMemoryStore, StaticSource};
use super::hub::InMemoryHub;

/// Cache lifetimes for tests: an hour fresh, a day of grace, a minute in memory.
pub fn test_cache_times() -> CacheTimes {
    CacheTimes {
        fresh: Duration::from_secs(3600),
        negative: Duration::from_secs(600),
        unknown_contact: Duration::from_secs(300),
        stale_grace: Duration::from_secs(86_400),
        memory: Duration::from_secs(60),
        memory_capacity: 1000,
    }
}

/// Builds an `Enricher`. Defaults: an empty in-memory store, an organization with no accounts,
/// an in-memory hub, 1,000 updates/s, the updater's own retry schedule, 8 lookups in flight within 5 s, every
/// tag, a 50 ms deadline margin, no investigations.
pub struct EnricherBuilder {
    store: Arc<dyn MetadataStore>,
    source: Arc<dyn AccountSource>,
    hub: Arc<dyn FindingsWriter>,
    hub_v2: Arc<dyn FindingsWriterV2>,
    routing: RoutingRules,
    events: Option<Arc<dyn EventPublisher>>,
    quota: Option<QuotaShare>,
    rate: Rate,
    backoff: Option<(Duration, u32)>,
    times: CacheTimes,
    lookup_concurrency: usize,
    lookup_budget: Duration,
    background_lookups: Option<Duration>,
    tag_filter: TagFilter,
    deadline_margin: Duration,
    fanout: Option<Fanout>,
    refresh_queue: Option<Arc<dyn SweepState>>,
    partial_writes: bool,
    pending: Option<(Arc<dyn PendingWrites>, Duration, Rate)>,
}

impl Default for EnricherBuilder {
    fn default() -> Self {
        EnricherBuilder {
            store: Arc::new(InMemoryStore::default()),
            source: Arc::new(StaticSource::new([])),
            hub: Arc::new(InMemoryHub::default()),
            hub_v2: Arc::new(InMemoryHub::default()),
            routing: RoutingRules::default(),
            events: None,
            quota: None,
            rate: Rate { per_second: 1000.0, burst: 1000 },
            backoff: None,
            times: test_cache_times(),
            lookup_concurrency: 8,
            lookup_budget: Duration::from_secs(5),
            background_lookups: None,
            tag_filter: TagFilter::All,
            deadline_margin: Duration::from_millis(50),
            fanout: None,
            refresh_queue: None,
            partial_writes: false,
            pending: None,
        }
    }
}

impl EnricherBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn store(mut self, store: Arc<dyn MetadataStore>) -> Self {
        self.store = store;
        self
    }

    pub fn source(mut self, source: Arc<dyn AccountSource>) -> Self {
        self.source = source;
        self
    }

    pub fn hub(mut self, hub: Arc<dyn FindingsWriter>) -> Self {
        self.hub = hub;
        self
    }

    /// The new hub's writer (BatchUpdateFindingsV2); by default a hub of its own.
    pub fn hub_v2(mut self, hub: Arc<dyn FindingsWriterV2>) -> Self {
        self.hub_v2 = hub;
        self
    }

    pub fn routing(mut self, routing: RoutingRules) -> Self {
        self.routing = routing;
        self
    }

    /// Publishes enriched-finding events here (as `ENRICHED_EVENTS_BUS` does); none by default.
    pub fn events(mut self, bus: Arc<dyn EventPublisher>) -> Self {
        self.events = Some(bus);
        self
    }

    /// A fixed BatchUpdateFindings rate (ignored when `quota` is set).
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = rate;
        self
    }

    /// A share of the quota instead of a fixed rate.
    pub fn quota(mut self, quota: QuotaShare) -> Self {
        self.quota = Some(quota);
        self
    }

    pub fn backoff(mut self, base: Duration, max_attempts: u32) -> Self {
        self.backoff = Some((base, max_attempts));
        self
    }

    pub fn cache_times(mut self, times: CacheTimes) -> Self {
        self.times = times;
        self
    }

    pub fn lookups(mut self, concurrency: usize, budget: Duration) -> Self {
        self.lookup_concurrency = concurrency;
        self.lookup_budget = budget;
        self
    }

    /// How long lookups go on after their batch stopped waiting (the directory's own default
    /// otherwise).
    pub fn background_lookups(mut self, budget: Duration) -> Self {
        self.background_lookups = Some(budget);
        self
    }

    pub fn tag_filter(mut self, tag_filter: TagFilter) -> Self {
        self.tag_filter = tag_filter;
        self
    }

    pub fn deadline_margin(mut self, margin: Duration) -> Self {
        self.deadline_margin = margin;
        self
    }

    /// Queues the accounts a batch could not resolve here (the cache table's queue in AWS).
    pub fn refresh_queue(mut self, queue: Arc<dyn SweepState>) -> Self {
        self.refresh_queue = Some(queue);
        self
    }

    /// Writes unknown accounts' findings `Partial` instead of deferring them to the refresh
    /// queue (the way the stream worked before; the simulator measures both).
    pub fn partial_writes(mut self, partial_writes: bool) -> Self {
        self.partial_writes = partial_writes;
        self
    }

    /// Holds a saturated batch's small account groups in `store` for up to `delay`; `pool` is
    /// the BatchUpdateFindings rate "saturated" is measured by.
    pub fn pending(mut self, store: Arc<dyn PendingWrites>, delay: Duration, pool: Rate) -> Self {
        self.pending = Some((store, delay, pool));
        self
    }

    pub fn fanout(mut self, fanout: Fanout) -> Self {
        self.fanout = Some(fanout);
        self
    }

    /// A sweeper wired like the enricher would be (the same rendering, routing and events),
    /// reading findings from `reader` at `reads` GetFindings per second.
    pub fn build_sweeper(self, reader: Arc<dyn FindingsReader>, reads: Rate) -> Sweeper {
        let enricher = self.build();
        Sweeper {
            reader,
            directory: enricher.directory.waiting_until_deadline(),
            pipeline: enricher.pipeline,
            read_limit: Limiter::new(reads),
            write_margin: WRITE_MARGIN,
        }
    }

    pub fn build(self) -> Enricher {
        let quota = self.quota.unwrap_or_else(|| QuotaShare::fixed(self.rate));
        let mut updater = Updater::sharing(self.hub, quota).with_v2_writer(self.hub_v2);
        let mut publisher = self.events.map(Publisher::new);
        if let Some((base, max_attempts)) = self.backoff {
            updater = updater.with_backoff(base, max_attempts);
            publisher = publisher.map(|p| p.with_backoff(base, max_attempts));
        }
        let mut directory =
            Directory::new(self.store, self.source, self.times, self.lookup_concurrency, self.lookup_budget);
        if let Some(budget) = self.background_lookups {
            directory = directory.with_background_budget(budget);
        }
        let rendering = Rendering { tag_filter: self.tag_filter, routing: self.routing };
        Enricher {
            directory,
            refresh_queue: self.refresh_queue,
            partial_writes: self.partial_writes,
            pipeline: Pipeline { rendering, updater, publisher },
            deadline_margin: self.deadline_margin,
            fanout: self.fanout,
            pending: self.pending.map(|(store, delay, pool)| Coalescer::new(store, delay, pool)),
        }
    }
}
