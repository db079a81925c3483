//! `headstart snapshot ls`: the base snapshots of every provider that answers (local
//! always, Docker when an engine does), newest first, with sizes in KiB/MiB, ages
//! such as `3 min ago`, the branch each was built from, and recent build failures.
//!
//! Not here: building, removing or collecting snapshots (`commands.rs`,
//! `snapshot-refresh`, `provisioners`).

use std::process::ExitCode;

use sandbox_core::SnapshotMeta;
use serde_json::{Value, json};

use crate::choice::ProviderKind;
use crate::commands::{Ctx, docker_answers, make_provider};
use crate::output;

/// Runs `headstart snapshot ls`.
#[allow(clippy::print_stdout)]
pub(crate) async fn ls(
    home: &Ctx,
    json: bool,
    only: Option<ProviderKind>,
) -> anyhow::Result<ExitCode> {
    let mut snaps: Vec<(&'static str, SnapshotMeta)> = Vec::new();
    for kind in [ProviderKind::Local, ProviderKind::Docker] {
        match only {
            Some(k) if k != kind => continue,
            None if kind == ProviderKind::Docker && !docker_answers().await => continue,
            _ => {}
        }
        let p = match make_provider(home, kind).await {
            Ok(p) => p,
            Err(e) if only.is_none() => {
                tracing::debug!(error = %e, "docker unavailable: its snapshots are not listed");
                continue;
            }
            Err(e) => return Err(e),
        };
        snaps.extend(
            p.snapshots()
                .list_all(None)
                .await?
                .into_iter()
                .map(|s| (kind.as_str(), s)),
        );
    }
    snaps.sort_by_key(|s| std::cmp::Reverse(s.1.created_at));
    let failures = snapshot_refresh::FailureCache::new(&home.join("state")).all();
    if json {
        let list: Vec<Value> = snaps
            .iter()
            .map(|(provider, s)| {
                let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({}));
                if let Value::Object(m) = &mut v {
                    m.insert("provider".into(), json!(provider));
                }
                v
            })
            .collect();
        output::print_json(&json!({"snapshots": list, "failures": failures}));
        return Ok(ExitCode::SUCCESS);
    }
    if output::quiet() {
        for (_, s) in &snaps {
            println!("{}", s.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if snaps.is_empty() {
        println!("no snapshots");
    } else {
        let now = time::OffsetDateTime::now_utc();
        let rows: Vec<Vec<String>> = snaps
            .iter()
            .map(|(provider, s)| {
                let repo = s
                    .source_url
                    .as_deref()
                    .map_or_else(|| s.name.clone(), output::short_repo);
                vec![
                    s.id.to_string(),
                    (*provider).to_owned(),
                    format!("{:?}", s.status).to_lowercase(),
                    s.branch.clone().unwrap_or_else(|| "-".into()),
                    if s.size_bytes == 0 {
                        "-".to_owned()
                    } else {
                        output::human_bytes(s.size_bytes)
                    },
                    output::ago(s.created_at, now),
                    match &s.error {
                        Some(e) => format!("{repo} ({e})"),
                        None => repo,
                    },
                ]
            })
            .collect();
        print!(
            "{}",
            sandbox_core::scrub(&output::table(
                &[
                    "ID", "PROVIDER", "STATUS", "BRANCH", "SIZE", "CREATED", "REPO"
                ],
                &rows
            ))
        );
    }
    let now = time::OffsetDateTime::now_utc();
    for f in &failures {
        println!(
            "{}",
            sandbox_core::scrub(&format!(
                "build of {} failed {} time(s), last {}: {}; next try {}",
                f.key,
                f.failures,
                output::ago(f.failed_at, now),
                f.last_error,
                if f.retry_after > now {
                    format!("in {} min", (f.retry_after - now).whole_minutes().max(1))
                } else {
                    "on the next start".to_owned()
                }
            ))
        );
    }
    Ok(ExitCode::SUCCESS)
}
