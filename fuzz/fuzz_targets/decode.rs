//! Fuzzes everything the enricher does to untrusted bytes before any I/O: the batch shapes,
//! each record, the EventBridge envelope, the findings, and the pure path (dedup, render,
//! group, encode). `make fuzz FUZZ_SECONDS=60`.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use loadtest::pipeline;
use securityhub_enricher::core::event::{IncomingBatch, StreamRecord, decode_event};

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = serde_json::from_slice::<IncomingBatch>(data) {
        for raw in &batch.records {
            if let Ok(record) = StreamRecord::decode(batch.shape, raw) {
                let _ = decode_event(&record.data);
            }
        }
    }
    let _ = decode_event(data);
    let _ = pipeline::run(data, &HashMap::new());
});
