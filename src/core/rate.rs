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
}
