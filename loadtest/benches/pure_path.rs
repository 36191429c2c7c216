//! The pure path (decode + screen + dedup + render + group + encode) per finding on generated
//! batches, beside the floor: a bare serde_json parse of the same bytes.
//! `cargo bench --bench pure_path`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use loadtest::loadgen::{Generator, pipe_batch, synthetic_org};
use loadtest::pipeline;

fn pure_path(c: &mut Criterion) {
    let org = synthetic_org(5000, 7);
    let enrichments = pipeline::enrichments_for(&org);
    let mut group = c.benchmark_group("pure_path");
    group.sample_size(10);
    for records in [100usize, 1_000, 10_000] {
        let batch = pipe_batch(&mut Generator::new(5000, records as u64), records);
        group.throughput(Throughput::Elements(records as u64));
        group.bench_with_input(BenchmarkId::new("enrich", records), &batch, |b, batch| {
            b.iter(|| pipeline::run(batch, &enrichments).expect("batch decodes"))
        });
        group.bench_with_input(BenchmarkId::new("bare_parse", records), &batch, |b, batch| {
            b.iter(|| pipeline::bare_parse(batch).expect("batch parses"))
        });
    }
    group.finish();
}

criterion_group!(benches, pure_path);
criterion_main!(benches);
