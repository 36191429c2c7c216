//! Reading EMF documents and the dashboard, for the metrics tests (one binary per function:
//! the recorder is process-global).

use std::collections::{BTreeMap, BTreeSet};

use securityhub_enricher::telemetry::{Metric, NAMESPACE};
use serde_json::Value;

pub type Series = BTreeSet<(String, BTreeSet<String>)>;

/// (metric name, dimension names) pairs a dashboard reads, from explicit metric arrays and from
/// SEARCH expressions (`{Namespace,Dim1,Dim2} MetricName="X"`).
/// The dashboard's series of one function (the investigator's are the investigator's own
/// EMF documents, not the enricher's).
pub fn dashboard_metrics(body: &Value, function: &str) -> Series {
    let mut wanted = BTreeSet::new();
    for widget in body["widgets"].as_array().unwrap() {
        let Some(metrics) = widget["properties"]["metrics"].as_array() else { continue };
        for entry in metrics {
            let entry = entry.as_array().expect("each metrics entry is an array");
            if let Some(expression) = entry[0].get("expression").and_then(Value::as_str) {
                let Some(start) = expression.find(&format!("{{{NAMESPACE},")) else { continue };
                if !expression.contains(&format!("Function=\"{function}\"")) {
                    continue;
                }
                let schema = &expression[start + 1..start + expression[start..].find('}').unwrap()];
                let dims: BTreeSet<String> = schema.split(',').skip(1).map(str::to_owned).collect();
                let name = expression.split("MetricName=\"").nth(1).unwrap().split('"').next().unwrap();
                wanted.insert((name.to_owned(), dims));
            } else if entry[0] == NAMESPACE {
                let strings: Vec<&str> = entry.iter().filter_map(Value::as_str).collect();
                if !strings[2..].chunks(2).any(|pair| pair == ["Function", function]) {
                    continue;
                }
                let dims = strings[2..].chunks(2).map(|pair| pair[0].to_owned()).collect();
                wanted.insert((strings[1].to_owned(), dims));
            }
        }
    }
    wanted
}

/// The dashboard body, `dashboards/enricher.json`.
pub fn dashboard() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("{}/dashboards/enricher.json", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap()
}

/// Checks every document a flush wrote against the EMF specification's limits and the metric
/// catalogue, and returns the series emitted and each metric's summed value.
pub fn parse(text: &str, function: &str) -> (Series, BTreeMap<String, f64>) {
    let mut emitted: Series = BTreeSet::new();
    let mut values: BTreeMap<String, f64> = BTreeMap::new();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for line in text.lines() {
        let doc: Value = serde_json::from_str(line).expect("each line is one JSON document");
        let aws = &doc["_aws"];
        let timestamp = aws["Timestamp"].as_u64().expect("integer timestamp");
        assert!(timestamp.abs_diff(now_ms) < 60_000, "timestamp in milliseconds since the epoch");
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let directive = &directives[0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        let metrics = directive["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100, "1..=100 metrics per document");
        for set in directive["Dimensions"].as_array().unwrap() {
            let set: BTreeSet<String> =
                set.as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect();
            assert!(!set.is_empty() && set.len() <= 30, "≤ 30 dimensions per set");
            for dim in &set {
                assert!(doc[dim].is_string(), "dimension {dim} has a value in the document");
            }
            assert_eq!(doc["Function"], function);
            for metric in metrics {
                let name = metric["Name"].as_str().unwrap().to_owned();
                assert!(doc[&name].is_number() || doc[&name].is_array(), "{name} has a value");
                let known = <Metric as strum::IntoEnumIterator>::iter()
                    .find(|m| m.name() == name)
                    .expect("only metrics named in telemetry::Metric");
                let labels: BTreeSet<String> =
                    std::iter::once("Function").chain(known.labels().iter().copied()).map(str::to_owned).collect();
                assert_eq!(set, labels, "{name} carries its documented dimensions");
                if let Some(v) = doc[&name].as_f64() {
                    *values.entry(name.clone()).or_default() += v;
                }
                emitted.insert((name, set.clone()));
            }
        }
    }

    (emitted, values)
}
