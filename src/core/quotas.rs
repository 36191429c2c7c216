//! Every rate the functions share, declared once: each API's quota (as AWS publishes it, or the
//! budget we hold ourselves to where it publishes none) and the default share each holder takes.
//! The configuration's defaults and wiring's limiters read these; `QUOTAS` lists them for the
//! test that each quota's shares add up to no more than the quota.

use crate::core::rate::Rate;

/// BatchUpdateFindings: 10 requests/s, burst 30, per account and Region. BatchUpdateFindingsV2
/// is the same IAM action and its own rate is unpublished, so both draw on this one quota.
pub const BATCH_UPDATE_FINDINGS: Rate = Rate { per_second: 10.0, burst: 30 };
/// The investigator's share of it (`SECURITYHUB_RPS`/`_BURST` of the investigator); the
/// enricher environments, the refresher and `enricher-admin` divide the rest (the pool, see
/// `service::quota_share`; background sweeps yield to the stream within it).
pub const INVESTIGATOR_BATCH_UPDATE: Rate = Rate { per_second: 1.0, burst: 3 };

/// GetFindings: 3 requests/s, burst 6, per account and Region. GetFindingsV2 is authorized as
/// `securityhub:GetFindings` and its rate is unpublished: the sweep reads both hubs within its
/// one share of this quota.
pub const GET_FINDINGS: Rate = Rate { per_second: 3.0, burst: 6 };
/// The sweep's share (the refresher, or `enricher-admin sweep`: one at a time, see the lease).
pub const SWEEP_GET_FINDINGS: Rate = Rate { per_second: 2.0, burst: 4 };
/// The investigator's share: reading a job's findings before writing its verdict.
pub const INVESTIGATOR_GET_FINDINGS: Rate = Rate { per_second: 1.0, burst: 2 };

/// Account Management GetAlternateContact: 10 requests/s, burst 15.
pub const GET_ALTERNATE_CONTACT: Rate = Rate { per_second: 10.0, burst: 15 };
/// One environment's default share (`ACCOUNT_RPS`/`_BURST`): a stream environment and a sweep
/// together stay within the quota's rate and burst.
pub const ACCOUNT_PER_ENVIRONMENT: Rate = Rate { per_second: 5.0, burst: 7 };

/// Organizations publishes no request rate; callers see TooManyRequestsException at modest
/// concurrency. The budget we hold the fleet to (design: 1–2 calls/s).
pub const ORGANIZATIONS_BUDGET: Rate = Rate { per_second: 2.0, burst: 10 };
/// One environment's default share (`ORGANIZATIONS_RPS`/`_BURST`; set it to the budget ÷ the
/// environments that look accounts up at once: one stream environment and the sweep by default).
pub const ORGANIZATIONS_PER_ENVIRONMENT: Rate = Rate { per_second: 1.0, burst: 5 };

/// Detective publishes no request rates for these operations; the budgets we hold to.
pub const DETECTIVE_BUDGET: Rate = Rate { per_second: 10.0, burst: 20 };
/// StartInvestigation (`DETECTIVE_RPS`/`_BURST`).
pub const DETECTIVE_STARTS: Rate = Rate { per_second: 1.0, burst: 2 };
/// GetInvestigation, ListIndicators and ListMembers: apart from the starts, so that looking at
/// running investigations never takes a start's place.
pub const DETECTIVE_READS: Rate = Rate { per_second: 5.0, burst: 10 };

/// STS AssumeRole of the contact role, per environment (credentials are cached for their
/// lifetime, so this is rarely reached).
pub const STS_ASSUME_ROLE: Rate = Rate { per_second: 1.0, burst: 2 };

/// A quota and the default shares of the holders that draw on it at the same time.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub api: &'static str,
    pub limit: Rate,
    /// Whether AWS publishes `limit`, or it is a budget of ours.
    pub published: bool,
    pub shares: &'static [(&'static str, Rate)],
}

/// The pool the enricher environments (and background sweeps within it) divide: the quota less
/// the investigator's share.
pub const STREAM_BATCH_UPDATE_POOL: Rate = Rate {
    per_second: BATCH_UPDATE_FINDINGS.per_second - INVESTIGATOR_BATCH_UPDATE.per_second,
    burst: BATCH_UPDATE_FINDINGS.burst - INVESTIGATOR_BATCH_UPDATE.burst,
};

pub const QUOTAS: &[Quota] = &[
    Quota {
        api: "BatchUpdateFindings (and V2)",
        limit: BATCH_UPDATE_FINDINGS,
        published: true,
        shares: &[
            ("enrichers and sweeps (pool)", STREAM_BATCH_UPDATE_POOL),
            ("investigator", INVESTIGATOR_BATCH_UPDATE),
        ],
    },
    Quota {
        api: "GetFindings (and V2)",
        limit: GET_FINDINGS,
        published: true,
        shares: &[("sweep", SWEEP_GET_FINDINGS), ("investigator", INVESTIGATOR_GET_FINDINGS)],
    },
    Quota {
        api: "Account GetAlternateContact",
        limit: GET_ALTERNATE_CONTACT,
        published: true,
        shares: &[("stream environment", ACCOUNT_PER_ENVIRONMENT), ("sweep", ACCOUNT_PER_ENVIRONMENT)],
    },
    Quota {
        api: "Organizations",
        limit: ORGANIZATIONS_BUDGET,
        published: false,
        shares: &[("stream environment", ORGANIZATIONS_PER_ENVIRONMENT), ("sweep", ORGANIZATIONS_PER_ENVIRONMENT)],
    },
    Quota {
        api: "Detective",
        limit: DETECTIVE_BUDGET,
        published: false,
        shares: &[("investigator starts", DETECTIVE_STARTS), ("investigator reads", DETECTIVE_READS)],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_of_each_quota_add_up_to_no_more_than_it_allows() {
        for quota in QUOTAS {
            let per_second: f64 = quota.shares.iter().map(|(_, r)| r.per_second).sum();
            let burst: u32 = quota.shares.iter().map(|(_, r)| r.burst).sum();
            assert!(per_second <= quota.limit.per_second + 1e-9, "{}: {per_second}/s > {:?}", quota.api, quota.limit);
            assert!(burst <= quota.limit.burst, "{}: burst {burst} > {:?}", quota.api, quota.limit);
            assert!(quota.shares.iter().all(|(_, r)| r.per_second > 0.0 && r.burst >= 1), "{}", quota.api);
        }
    }
}
