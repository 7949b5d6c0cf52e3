//! `GET /metrics`: the database's and the log compaction's figures in the
//! Prometheus text format, for operators (admin key required).
//!
//! Invariant: every figure is read from the engine's own counters at the
//! time of the request; nothing here is estimated.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use engine::db::compact::CompactionStats;
use engine::db::DbStats;
use engine::log::LogCounts;
use runtime::execute::MutationCounts;

use crate::{ApiError, AppState};

pub async fn metrics(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    crate::functions::require_admin(&state, &headers, query.as_deref())?;
    let body = render(
        &state.db.stats(),
        &state.db.log().counts(),
        &state.db.compaction_stats(),
        &state.executor.mutation_counts(),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

/// The figures as Prometheus text.
pub fn render(
    db: &DbStats,
    log: &LogCounts,
    c: &CompactionStats,
    mutations: &MutationCounts,
) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    metric(
        "convex_db_published_ts",
        "gauge",
        "Timestamp (ns) of the newest published commit.",
        db.published.0.to_string(),
    );
    metric(
        "convex_db_checkpoint_ts",
        "gauge",
        "Timestamp (ns) of the installed checkpoint (0: none).",
        db.checkpoint_ts.map_or(0, |t| t.0).to_string(),
    );
    metric(
        "convex_db_memory_versions",
        "gauge",
        "Versions held in memory above the checkpoint.",
        db.memory_versions.to_string(),
    );
    metric(
        "convex_log_commits_total",
        "counter",
        "Records made durable since start.",
        log.records.to_string(),
    );
    metric(
        "convex_log_written_bytes_total",
        "counter",
        "Log bytes made durable since start.",
        log.bytes.to_string(),
    );
    metric(
        "convex_log_history_from_ts",
        "gauge",
        "Where the log's exact history starts (ns; 0: never compacted).",
        c.history_from.0.to_string(),
    );
    metric(
        "convex_compaction_enabled",
        "gauge",
        "Whether online log compaction runs in the background.",
        u8::from(c.enabled).to_string(),
    );
    metric(
        "convex_compaction_running",
        "gauge",
        "Whether a log compaction is under way.",
        u8::from(c.running).to_string(),
    );
    let _ = writeln!(
        out,
        "# HELP convex_compaction_phase The running compaction's phase (1 for the current one).\n\
         # TYPE convex_compaction_phase gauge"
    );
    for phase in ["checkpoint", "scan", "rewrite", "swap"] {
        let on = c.phase.is_some_and(|p| p.as_str() == phase);
        let _ = writeln!(
            out,
            "convex_compaction_phase{{phase=\"{phase}\"}} {}",
            u8::from(on)
        );
    }
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    metric(
        "convex_compaction_done_bytes",
        "gauge",
        "Log bytes the running compaction has processed (both passes count).",
        c.done_bytes,
    );
    metric(
        "convex_compaction_total_bytes",
        "gauge",
        "Log bytes the running compaction will process (both passes count).",
        c.total_bytes,
    );
    metric(
        "convex_compaction_runs_total",
        "counter",
        "Log compactions finished since start.",
        c.runs,
    );
    metric(
        "convex_compaction_read_bytes_total",
        "counter",
        "Log bytes read by compactions since start.",
        c.bytes_read,
    );
    metric(
        "convex_compaction_freed_bytes_total",
        "counter",
        "Segment file bytes freed by compactions since start.",
        c.bytes_freed,
    );
    metric(
        "convex_mutations_committed_total",
        "counter",
        "Mutations committed since start (a deduplicated replay is not counted).",
        mutations.committed,
    );
    metric(
        "convex_mutation_conflicts_total",
        "counter",
        "Mutation attempts that met an optimistic-concurrency conflict at commit and ran again (or gave up).",
        mutations.conflicts,
    );
    metric(
        "convex_mutation_conflict_failures_total",
        "counter",
        "Mutations that failed because every attempt conflicted.",
        mutations.conflict_failures,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::log::compact::Phase;
    use engine::ts::Ts;

    #[test]
    fn renders_every_figure_once_with_its_type() {
        let c = CompactionStats {
            enabled: true,
            running: true,
            phase: Some(Phase::Rewrite),
            done_bytes: 300,
            total_bytes: 1000,
            runs: 2,
            bytes_read: 5000,
            bytes_freed: 4000,
            history_from: Ts(77),
            ..CompactionStats::default()
        };
        let db = DbStats {
            published: Ts(99),
            checkpoint_ts: Some(Ts(90)),
            ..DbStats::default()
        };
        let mutations = MutationCounts {
            committed: 12,
            conflicts: 5,
            conflict_failures: 1,
        };
        let text = render(&db, &LogCounts::default(), &c, &mutations);
        for line in [
            "convex_db_published_ts 99",
            "convex_db_checkpoint_ts 90",
            "convex_log_history_from_ts 77",
            "convex_compaction_enabled 1",
            "convex_compaction_running 1",
            "convex_compaction_phase{phase=\"rewrite\"} 1",
            "convex_compaction_phase{phase=\"scan\"} 0",
            "convex_compaction_done_bytes 300",
            "convex_compaction_total_bytes 1000",
            "convex_compaction_runs_total 2",
            "convex_compaction_read_bytes_total 5000",
            "convex_compaction_freed_bytes_total 4000",
            "convex_mutations_committed_total 12",
            "convex_mutation_conflicts_total 5",
            "convex_mutation_conflict_failures_total 1",
        ] {
            assert_eq!(
                text.lines().filter(|l| *l == line).count(),
                1,
                "{line:?} in\n{text}"
            );
        }
        // Every sample has its HELP and TYPE.
        let names: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(['{', ' ']).next().unwrap())
            .collect();
        for n in names {
            assert!(text.contains(&format!("# TYPE {n} ")), "{n}");
        }
    }
}
