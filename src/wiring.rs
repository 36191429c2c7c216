//! Builds the production object graph once, from the validated configuration and the SDK's
//! standard configuration: clients, limiters, cache tiers, the updater.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_credential_types::provider::{self, ProvideCredentials};

use crate::adapters::cache_table::ledger::DynamoLedger;
use crate::adapters::cache_table::pending::DynamoPendingWrites;
use crate::adapters::cache_table::posture::DynamoPostureStore;
use crate::adapters::cache_table::store::DynamoStore;
use crate::adapters::cache_table::sweep_state::DynamoSweepState;
use crate::adapters::detective::DetectiveClient;
use crate::adapters::eventbridge::EventBridgePublisher;
use crate::adapters::jobs_table::DynamoJobs;
use crate::adapters::organizations::OrganizationsSource;
use crate::adapters::sdk::{ApiCalls, app_name};
use crate::adapters::securityhub::SecurityHubWriter;
use crate::config::{AccountEventsConfig, ContactRole, EnricherConfig, InvestigatorConfig, QuotaSharing};
use crate::core::enrich::Rendering;
use crate::core::quotas;
use crate::core::rate::{BACKGROUND_PREFIX, Rate};
use crate::limits::Limiter;
use crate::service::directory::Directory;
use crate::service::fanout::Fanout;
use crate::service::handler::Enricher;
use crate::service::investigator::{COVERAGE_TTL, Coverage, Investigator, RETRY_BASE};
use crate::service::pending::Coalescer;
use crate::service::pipeline::Pipeline;
use crate::service::publisher::Publisher;
use crate::service::quota_share::QuotaShare;
use crate::service::refresh::Refresher;
use crate::service::sweep::{Sweeper, WRITE_MARGIN};
use crate::service::updater::Updater;

/// How often an environment sending updates renews its claim on the quota ledger; claims
/// lapse after three missed renewals.
pub const QUOTA_RENEWAL: Duration = Duration::from_secs(1);

/// The clients a function uses, each counting its calls into the same `ApiCalls` and each
/// naming the function in its User-Agent (`app/<function>`).
pub struct Clients {
    pub detective: aws_sdk_detective::Client,
    pub organizations: aws_sdk_organizations::Client,
    pub account: aws_sdk_account::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub securityhub: aws_sdk_securityhub::Client,
    /// PutEvents for enriched-finding events; retries are the `Publisher`'s.
    pub eventbridge: aws_sdk_eventbridge::Client,
}

/// AssumeRole behind the STS rate limit. The SDK's identity cache in front of it asks for new
/// credentials only as the old ones near expiry: one AssumeRole per credential lifetime. The
/// provider's STS client is internal to aws-config, so its calls are counted here.
#[derive(Debug)]
struct RateLimitedCredentials {
    inner: aws_config::sts::AssumeRoleProvider,
    limiter: Limiter,
    calls: ApiCalls,
}

impl ProvideCredentials for RateLimitedCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            let patience = tokio::time::Instant::now() + Duration::from_secs(30);
            self.limiter.acquire(patience).await.map_err(provider::error::CredentialsError::provider_error)?;
            let result = self.inner.provide_credentials().await;
            self.calls.record("STS", "AssumeRole", result.is_err());
            result
        })
    }
}

impl Clients {
    /// The enricher's clients, for `function` (the enricher, or an operator command acting as
    /// it): Account Management through the contact role when one is configured.
    pub async fn for_enricher(
        function: &'static str,
        config: &EnricherConfig,
        sdk: &SdkConfig,
        calls: &ApiCalls,
    ) -> Self {
        Self::new(function, config.contact_role.as_ref(), config.sts_rate, sdk, calls).await
    }

    /// The investigator's clients: no contact role (its notes' account part comes from the
    /// enricher's cache table).
    pub async fn for_investigator(sdk: &SdkConfig, calls: &ApiCalls) -> Self {
        Self::new("investigator", None, quotas::STS_ASSUME_ROLE, sdk, calls).await
    }

    pub async fn new(
        function: &'static str,
        contact_role: Option<&ContactRole>,
        sts_rate: Rate,
        sdk: &SdkConfig,
        calls: &ApiCalls,
    ) -> Self {
        // Every client, the contact role's STS client included, names the function.
        let sdk = &sdk.to_builder().app_name(app_name(function)).build();
        let account = {
            let mut builder = aws_sdk_account::config::Builder::from(sdk).interceptor(calls.clone());
            if let Some(role) = contact_role {
                let mut assume = aws_config::sts::AssumeRoleProvider::builder(&role.role_arn)
                    .session_name(&role.session_name)
                    .configure(sdk);
                if let Some(external_id) = &role.external_id {
                    assume = assume.external_id(external_id);
                }
                let inner = assume.build().await;
                let limiter = Limiter::new(sts_rate);
                builder = builder.credentials_provider(RateLimitedCredentials { inner, limiter, calls: calls.clone() });
            }
            aws_sdk_account::Client::from_conf(builder.build())
        };
        Clients {
            detective: aws_sdk_detective::Client::from_conf(
                aws_sdk_detective::config::Builder::from(sdk).interceptor(calls.clone()).build(),
            ),
            organizations: aws_sdk_organizations::Client::from_conf(
                aws_sdk_organizations::config::Builder::from(sdk).interceptor(calls.clone()).build(),
            ),
            account,
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(calls.clone()).build(),
            ),
            // Retries are the Updater's: it knows the deadline and the rate limit.
            securityhub: aws_sdk_securityhub::Client::from_conf(
                aws_sdk_securityhub::config::Builder::from(sdk)
                    .retry_config(RetryConfig::disabled())
                    .interceptor(calls.clone())
                    .build(),
            ),
            eventbridge: aws_sdk_eventbridge::Client::from_conf(
                aws_sdk_eventbridge::config::Builder::from(sdk)
                    .retry_config(RetryConfig::disabled())
                    .interceptor(calls.clone())
                    .build(),
            ),
        }
    }
}

/// The `account-events` function's cache table: the entries it forgets, and the refresh queue
/// it adds their accounts to.
pub fn account_events_tables(config: &AccountEventsConfig, sdk: &SdkConfig) -> (DynamoStore, DynamoSweepState) {
    let sdk = sdk.to_builder().app_name(app_name("account-events")).build();
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    (DynamoStore::new(client.clone(), &config.cache_table), DynamoSweepState::new(client, &config.cache_table))
}

/// Organizations and Account Management, each behind its rate limit: the directory's source of
/// truth, and the walk of the whole organization (`enricher-admin warm --all`).
pub fn organizations_source(config: &EnricherConfig, clients: &Clients) -> OrganizationsSource {
    OrganizationsSource::new(
        clients.organizations.clone(),
        clients.account.clone(),
        Limiter::new(config.organizations_rate),
        Limiter::new(config.account_rate),
        config.cache.fresh,
        config.contact_role.is_some(),
    )
}

/// The directory of account metadata: memory, the cache table, then Organizations.
fn directory(config: &EnricherConfig, clients: &Clients) -> Directory {
    directory_over(config, clients, Arc::new(organizations_source(config, clients)))
}

/// The directory over a given source, so that a walk of the OU tree can share its budget.
fn directory_over(config: &EnricherConfig, clients: &Clients, source: Arc<OrganizationsSource>) -> Directory {
    let store = DynamoStore::new(clients.dynamodb.clone(), &config.cache_table);
    Directory::new(Arc::new(store), source, config.cache.clone(), config.lookup_concurrency, config.lookup_budget)
}

/// BatchUpdateFindings paced at a fixed share or a share of the ledger's pool. `background`
/// work (sweeps) claims as a background holder and yields to the stream.
fn updater(config: &EnricherConfig, clients: &Clients, background: bool) -> Updater {
    let writer = Arc::new(SecurityHubWriter::new(clients.securityhub.clone()));
    let updater = match config.quota_sharing {
        QuotaSharing::Static => Updater::new(writer.clone(), config.securityhub_rate),
        QuotaSharing::Ledger => {
            // One claim per environment: a new id at every cold start.
            let id = format!("{:016x}", rand::random::<u64>());
            let holder = if background { format!("{BACKGROUND_PREFIX}{id}") } else { id };
            Updater::sharing(
                writer.clone(),
                QuotaShare::shared(
                    config.securityhub_pool,
                    config.securityhub_rate,
                    Arc::new(DynamoLedger::new(clients.dynamodb.clone(), &config.cache_table)),
                    holder,
                    QUOTA_RENEWAL,
                ),
            )
        }
    };
    // One writer for both hubs: BatchUpdateFindings and BatchUpdateFindingsV2 draw on one share.
    updater.with_v2_writer(writer)
}

/// The one enrichment pipeline, as every path builds it: the configuration's rendering and
/// enriched-finding events, and this path's updater (its share of the write quota).
pub fn pipeline(rendering: &Rendering, events_bus: Option<&str>, clients: &Clients, updater: Updater) -> Pipeline {
    let publisher =
        events_bus.map(|bus| Publisher::new(Arc::new(EventBridgePublisher::new(clients.eventbridge.clone(), bus))));
    Pipeline { rendering: rendering.clone(), updater, publisher }
}

impl Enricher {
    pub fn from_clients(config: &EnricherConfig, clients: &Clients) -> Self {
        let fanout = config.investigations.as_ref().map(|inv| Fanout {
            jobs: Arc::new(DynamoJobs::new(clients.dynamodb.clone(), &inv.jobs_table)),
            criteria: inv.criteria.clone(),
            lookback_hours: inv.lookback_hours,
        });
        Enricher {
            directory: directory(config, clients),
            refresh_queue: Some(Arc::new(sweep_state(config, clients))),
            partial_writes: false,
            pipeline: pipeline(
                &config.rendering,
                config.events_bus.as_deref(),
                clients,
                updater(config, clients, false),
            ),
            deadline_margin: config.deadline_margin,
            fanout,
            pending: coalescer(config, clients),
        }
    }
}

/// The pending-writes store in the cache table, when `PENDING_WRITE_DELAY_SECONDS` is not 0.
pub fn coalescer(config: &EnricherConfig, clients: &Clients) -> Option<Coalescer> {
    let delay = config.pending_delay?;
    let store = Arc::new(DynamoPendingWrites::new(clients.dynamodb.clone(), &config.cache_table));
    Some(Coalescer::new(store, delay, config.securityhub_pool))
}

impl Sweeper {
    /// The sweep of `enricher-admin sweep` and the refresher: the enricher's directory and
    /// rendering, its share of the quota as background work, GetFindings at 2 requests/s (of
    /// the 3/s quota, leaving the investigator its reads).
    pub fn from_clients(config: &EnricherConfig, clients: &Clients) -> Self {
        Self::over(config, clients, Arc::new(organizations_source(config, clients)))
    }

    fn over(config: &EnricherConfig, clients: &Clients, source: Arc<OrganizationsSource>) -> Self {
        Sweeper {
            reader: Arc::new(SecurityHubWriter::new(clients.securityhub.clone())),
            // A sweep has no shard waiting behind it: its lookups are bounded by its own deadline,
            // not by the stream's LOOKUP_BUDGET_SECONDS (a Partial write would only be repeated).
            directory: directory_over(config, clients, source).waiting_until_deadline(),
            pipeline: pipeline(
                &config.rendering,
                config.events_bus.as_deref(),
                clients,
                updater(config, clients, true),
            ),
            read_limit: Limiter::new(quotas::SWEEP_GET_FINDINGS),
            write_margin: WRITE_MARGIN,
        }
    }
}

impl Refresher {
    /// The refresher: the sweep, its state in the cache table, and the walk of the OU tree for
    /// its warm-up, on the sweep's own Organizations budget (one limiter for both), and the
    /// drain of the pending-writes store beside each run.
    pub fn from_clients(config: &EnricherConfig, clients: &Clients) -> Self {
        let source = Arc::new(organizations_source(config, clients));
        let refresher = Refresher::new(
            Sweeper::over(config, clients, source.clone()),
            Arc::new(sweep_state(config, clients)),
            Some(source),
        )
        .with_pass_interval(config.refresh_interval)
        .with_posture(Arc::new(posture_store(config, clients)), config.posture_top_owners);
        match coalescer(config, clients) {
            Some(drainer) => refresher.with_pending(drainer),
            None => refresher,
        }
    }
}

/// The sweep's state in the cache table: the refresher's checkpoint and the refresh queue.
pub fn sweep_state(config: &EnricherConfig, clients: &Clients) -> DynamoSweepState {
    DynamoSweepState::new(clients.dynamodb.clone(), &config.cache_table)
}

/// The posture counts of the sweep's passes in the cache table, for the refresher, the
/// operator's sweep and `enricher-admin report`.
pub fn posture_store(config: &EnricherConfig, clients: &Clients) -> DynamoPostureStore {
    DynamoPostureStore::new(clients.dynamodb.clone(), &config.cache_table)
}

impl Investigator {
    /// The investigator needs no Organizations access: the account part of its notes comes
    /// from the enricher's cache table.
    pub fn from_clients(config: &InvestigatorConfig, clients: &Clients, region: &str) -> Self {
        let hub = Arc::new(SecurityHubWriter::new(clients.securityhub.clone()));
        Investigator {
            jobs: Arc::new(DynamoJobs::new(clients.dynamodb.clone(), &config.jobs_table)),
            detective: Arc::new(DetectiveClient::new(clients.detective.clone(), config.graph_arn.clone())),
            hub: hub.clone(),
            pipeline: pipeline(
                &config.rendering,
                config.events_bus.as_deref(),
                clients,
                Updater::new(hub, config.securityhub_rate),
            ),
            cache: Arc::new(DynamoStore::new(clients.dynamodb.clone(), &config.cache_table)),
            detective_limit: Limiter::new(config.detective_rate),
            detective_read_limit: Limiter::new(quotas::DETECTIVE_READS),
            // Its share of GetFindings: the sweep takes the rest.
            read_limit: Limiter::new(quotas::INVESTIGATOR_GET_FINDINGS),
            max_attempts: config.max_attempts,
            retry_base: RETRY_BASE,
            region: region.to_owned(),
            deadline_margin: config.deadline_margin,
            coverage: Coverage::new(COVERAGE_TTL),
        }
    }
}
