//! The DynamoDB capacity a store's requests consume, from the sizes of the items they read or
//! wrote, by DynamoDB's documented rules ("DynamoDB item sizes and formats"; "UpdateItem: the
//! larger of the item's size before and after"; reads in 4 KB units, writes in 1 KB units).
//! Written by hand: the SDK reports capacity only when asked per request (and the local stack's
//! moto answers a fixed figure), and no maintained crate sizes `AttributeValue`s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::ports::pending::StoreUsage;

const WRITE_UNIT_BYTES: usize = 1024;
const READ_UNIT_BYTES: usize = 4096;

/// An item's size: its attribute names and values, with the documented overheads.
pub fn item_bytes(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(name, value)| name.len() + value_bytes(value)).sum()
}

fn value_bytes(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_bytes(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| number_bytes(n)).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        // 3 bytes a list or map, 1 byte an element.
        AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value_bytes(v)).sum::<usize>(),
        AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + value_bytes(v)).sum::<usize>(),
        _ => 0,
    }
}

/// 1 byte per two significant digits, plus 1 (leading and trailing zeros trimmed).
fn number_bytes(number: &str) -> usize {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1
}

/// Write units of a write whose item measured `bytes` (the larger of before and after).
pub fn write_units(bytes: usize) -> u64 {
    bytes.div_ceil(WRITE_UNIT_BYTES).max(1) as u64
}

/// Read units of a strongly consistent read of one item of `bytes`.
pub fn read_units(bytes: usize) -> u64 {
    bytes.div_ceil(READ_UNIT_BYTES).max(1) as u64
}

/// A store's running totals, shared by its concurrent requests.
#[derive(Debug, Default)]
pub struct UsageCounter {
    requests: AtomicU64,
    write_units: AtomicU64,
    read_units: AtomicU64,
}

impl UsageCounter {
    /// A write request whose item measured `bytes` at its largest.
    pub fn wrote(&self, bytes: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.write_units.fetch_add(write_units(bytes), Ordering::Relaxed);
    }

    /// A strongly consistent read request (GetItem, or BatchGetItem's one request) of these items.
    pub fn read(&self, item_sizes: impl IntoIterator<Item = usize>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let units: u64 = item_sizes.into_iter().map(read_units).sum();
        self.read_units.fetch_add(units, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StoreUsage {
        StoreUsage {
            requests: self.requests.load(Ordering::Relaxed),
            write_units: self.write_units.load(Ordering::Relaxed),
            read_units: self.read_units.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    #[test]
    fn sizes_follow_the_documented_rules() {
        // Name + UTF-8 bytes.
        assert_eq!(item_bytes(&HashMap::from([("ab".into(), s("héllo"))])), 2 + 6);
        // Numbers: 1 byte per two significant digits, plus 1; zeros at either end trimmed.
        assert_eq!(number_bytes("123"), 3);
        assert_eq!(number_bytes("1000"), 2);
        assert_eq!(number_bytes("0.0012"), 2);
        assert_eq!(number_bytes("1733449200000"), 5);
        // Lists and maps: 3 bytes, plus 1 per element.
        let map = AttributeValue::M(HashMap::from([("k".into(), s("vv"))]));
        assert_eq!(item_bytes(&HashMap::from([("m".into(), map)])), 1 + 3 + 1 + 1 + 2);
        let list = AttributeValue::L(vec![AttributeValue::Bool(true), AttributeValue::Null(true)]);
        assert_eq!(item_bytes(&HashMap::from([("l".into(), list)])), 1 + 3 + 2 + 2);
    }

    #[test]
    fn units_round_up_per_request_and_never_below_one() {
        assert_eq!((write_units(0), write_units(1024), write_units(1025)), (1, 1, 2));
        assert_eq!((read_units(1), read_units(4096), read_units(4097)), (1, 1, 2));
        let counter = UsageCounter::default();
        counter.wrote(3000);
        counter.read([100, 5000]);
        assert_eq!(counter.snapshot(), StoreUsage { requests: 2, write_units: 3, read_units: 3 });
    }
}
