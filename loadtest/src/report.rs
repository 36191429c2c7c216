//! The load-test report: throughput against the ceiling, downstream calls, throttles and
//! failures per second, drawn as SVG (plotters) so a person can look at a run without AWS.

use plotters::prelude::*;

use crate::simulate::Summary;

pub fn write_svg(summary: &Summary, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1100, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(380);
    let last = summary.series.last().map_or(1, |s| s.second + 1) as f64;

    let throughput: Vec<(f64, f64)> =
        summary.series.iter().map(|s| (s.second as f64, s.findings_enriched as f64)).collect();
    let peak = throughput.iter().map(|p| p.1).fold(summary.ceiling_findings_per_second, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "Findings enriched per second: {:.0}/s, {:.1}% of the BatchUpdateFindings ceiling ({:.0}/s); lost {}",
                summary.findings_per_second,
                summary.ratio_to_ceiling * 100.0,
                summary.ceiling_findings_per_second,
                summary.lost
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..last, 0f64..peak.max(1.0))?;
    chart.configure_mesh().x_desc("simulated seconds").y_desc("findings/s").draw()?;
    chart
        .draw_series(LineSeries::new(throughput, BLUE.stroke_width(2)))?
        .label("findings enriched")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    let ceiling = summary.ceiling_findings_per_second;
    chart
        .draw_series(LineSeries::new(vec![(0.0, ceiling), (last, ceiling)], RED.stroke_width(1)))?
        .label("ceiling for this mix")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;

    let series = |f: fn(&crate::simulate::SecondSample) -> usize| -> Vec<(f64, f64)> {
        summary.series.iter().map(|s| (s.second as f64, f(s) as f64)).collect()
    };
    let calls = series(|s| s.update_calls);
    let throttles = series(|s| s.throttles);
    let misses = series(|s| s.cache_misses);
    let failed = series(|s| s.records_failed);
    let top_y =
        [&calls, &throttles, &misses, &failed].iter().flat_map(|v| v.iter().map(|p| p.1)).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            format!(
                "Per second: BatchUpdateFindings calls ({} sent, {} accepted, bound {}), throttles ({}), cache misses, failed records ({}); latency p50 {:.0} ms, p99 {:.0} ms",
                summary.update_calls, summary.accepted_update_calls, summary.minimum_update_calls, summary.throttles, summary.records_failed,
                summary.latency_ms.p50, summary.latency_ms.p99
            ),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..last, 0f64..top_y)?;
    chart.configure_mesh().x_desc("simulated seconds").y_desc("per second").draw()?;
    for (data, color, label) in [
        (calls, BLUE, "BatchUpdateFindings calls"),
        (throttles, RED, "throttles"),
        (misses, GREEN, "cache misses (lookups)"),
        (failed, BLACK, "failed records"),
    ] {
        chart
            .draw_series(LineSeries::new(data, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
