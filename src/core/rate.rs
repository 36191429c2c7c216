//! Request rates, and dividing one rate among several holders.

/// A request rate for one downstream API, per running environment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

/// One holder's slice of the pool; at least one request of burst.
pub fn share_of(pool: Rate, holders: u32) -> Rate {
    let holders = holders.max(1);
    Rate { per_second: pool.per_second / f64::from(holders), burst: (pool.burst / holders).max(1) }
}

/// Holder ids of background work (the refresher's sweep) start with this: the stream's
/// environments yield to nobody, background holders yield to them.
pub const BACKGROUND_PREFIX: &str = "bg-";

/// The live claims of a ledger, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holders {
    /// Enricher environments sending the stream's updates.
    pub foreground: u32,
    /// Background sweeps (holder ids starting with `BACKGROUND_PREFIX`).
    pub background: u32,
}

impl Holders {
    pub fn of(holder: &str) -> Self {
        if holder.starts_with(BACKGROUND_PREFIX) {
            Holders { foreground: 0, background: 1 }
        } else {
            Holders { foreground: 1, background: 0 }
        }
    }

    pub fn total(self) -> u32 {
        self.foreground + self.background
    }
}

/// One holder's rate when `holders` share `pool`. The stream's environments split the pool,
/// less `reserve` while a background sweep holds a claim; background sweeps split `reserve`
/// while any stream environment is live, and the whole pool when none is: the stream comes
/// first, and the quota is never idle while a sweep has work.
pub fn share_for(pool: Rate, reserve: Rate, holders: Holders, background: bool) -> Rate {
    let reserve = Rate { per_second: reserve.per_second.min(pool.per_second), burst: reserve.burst.min(pool.burst) };
    match (background, holders.foreground > 0, holders.background > 0) {
        (false, _, true) => share_of(
            Rate { per_second: pool.per_second - reserve.per_second, burst: pool.burst - reserve.burst },
            holders.foreground,
        ),
        (false, _, false) => share_of(pool, holders.foreground),
        (true, true, _) => share_of(reserve, holders.background),
        (true, false, _) => share_of(pool, holders.background),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: Rate = Rate { per_second: 9.0, burst: 27 };

    #[test]
    fn each_holder_gets_an_equal_slice_with_at_least_one_burst() {
        assert_eq!(share_of(POOL, 3), Rate { per_second: 3.0, burst: 9 });
        assert_eq!(share_of(POOL, 0), POOL);
        assert_eq!(share_of(POOL, 100).burst, 1);
    }

    #[test]
    fn background_sweeps_yield_to_the_stream_and_never_overshoot_the_pool() {
        let reserve = Rate { per_second: 1.0, burst: 3 };
        let h = |foreground, background| Holders { foreground, background };
        assert_eq!(share_for(POOL, reserve, h(2, 0), false), Rate { per_second: 4.5, burst: 13 });
        assert_eq!(share_for(POOL, reserve, h(2, 1), false), Rate { per_second: 4.0, burst: 12 });
        assert_eq!(share_for(POOL, reserve, h(2, 1), true), reserve, "yields while the stream writes");
        assert_eq!(share_for(POOL, reserve, h(0, 1), true), POOL, "the whole pool when the stream is idle");
        for (f, b) in [(1, 1), (3, 2), (5, 1)] {
            let total = share_for(POOL, reserve, h(f, b), false).per_second * f64::from(f)
                + share_for(POOL, reserve, h(f, b), true).per_second * f64::from(b);
            assert!(total <= POOL.per_second + 1e-9, "{f} + {b}: {total}");
        }
    }
}
