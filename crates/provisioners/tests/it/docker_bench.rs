//! Measurements for the Docker provider (ignored by default: speed is measured, never
//! asserted). Run with
//! `cargo test -p provisioners --test it docker_bench -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)] // test helpers may panic and print

use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use provisioners::docker::{BaseImageSpec, build_base_image};
use sandbox_core::git::{self, GitOptions};
use sandbox_core::{ConnectOptions, SandboxProvider, SnapshotRequest, Source};
use test_support::Upstream;

use crate::docker_common::{Fixture, TEST_SCOPE_LABEL, stdout};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A bare container create + start from `image` (no bind mount, only the scope
/// label), removed afterwards; returns the create + start time.
async fn bare_start(f: &Fixture, image: &str, suffix: &str) -> Duration {
    let name = format!("hs-bench-bare-{}-{suffix}", f.scope);
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
        labels: Some([(TEST_SCOPE_LABEL.to_owned(), f.scope.clone())].into()),
        ..Default::default()
    };
    let t = Instant::now();
    let c = f
        .docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .unwrap();
    f.docker.start_container(&c.id, None).await.unwrap();
    let took = t.elapsed();
    f.docker
        .remove_container(
            &c.id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
    took
}

#[tokio::test]
#[ignore = "a measurement, not a test: run with --ignored --nocapture"]
async fn docker_bench() {
    let Some(f) = Fixture::new("docker_bench").await else {
        return;
    };
    let runs = 9;
    let files = 1000;
    let base = build_base_image(&f.docker, &BaseImageSpec::default())
        .await
        .unwrap();

    // A bare container create + start from the same image (no bind mount, no labels
    // beyond the scope), removed after each run.
    // One bare create+start first, not counted (the engine's first start after idle
    // is slower); then bare and provider starts alternate so both see the same load.
    bare_start(&f, &base.id, "warmup").await;
    let mut bare = Vec::new();

    let up = Upstream::new("main", files).unwrap();
    let source = Source::parse(&up.file_url()).unwrap();

    // Cold: a new sandbox (empty workspace + container), then the clone, timed apart.
    let mut cold = Vec::new();
    let mut clone = Vec::new();
    for i in 0..runs {
        bare.push(bare_start(&f, &base.id, &i.to_string()).await);
        let name = f.name(&format!("cold{i}"));
        let t = Instant::now();
        let (sb, _) = f
            .provider
            .connect(&ConnectOptions::new().name(name.clone()))
            .await
            .unwrap();
        cold.push(t.elapsed());
        let t = Instant::now();
        git::clone(&source, sb.workspace(), &GitOptions::default()).unwrap();
        clone.push(t.elapsed());
        if i + 1 < runs {
            f.provider.remove(&name).await.unwrap();
        }
    }

    // Warm: from a snapshot of the last cold sandbox (image + restored workspace).
    let last = f.provider.list().await.unwrap().pop().unwrap();
    let builder = f.provider.get(&last.name).await.unwrap().unwrap();
    let key = format!("bench-{}", f.scope);
    let t = Instant::now();
    let meta = builder
        .snapshot(&SnapshotRequest::new(key, "bench"))
        .await
        .unwrap();
    let snapshot_took = t.elapsed();
    let mut exec = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        assert!(
            crate::docker_common::run(&*builder, &["true"])
                .await
                .success()
        );
        exec.push(t.elapsed());
    }
    let mut warm = Vec::new();
    for i in 0..runs {
        let name = f.name(&format!("warm{i}"));
        let options = ConnectOptions::new()
            .name(name.clone())
            .base_snapshot(meta.id.clone());
        let t = Instant::now();
        let (sb, _) = f.provider.connect(&options).await.unwrap();
        warm.push(t.elapsed());
        assert_eq!(stdout(&*sb, &["cat", "README.md"]).await, "# fixture\n");
        f.provider.remove(&name).await.unwrap();
    }
    f.provider.remove(&last.name).await.unwrap();
    f.provider.snapshots().delete(&meta.id).await.unwrap();

    println!("docker_bench: {files}-file fixture, medians of {runs} runs");
    println!("  bare container create+start     {}", ms(median(bare)));
    println!("  provider cold start (container) {}", ms(median(cold)));
    println!("  git clone into it (file://)     {}", ms(median(clone)));
    println!("  snapshot (workspace + commit)   {}", ms(snapshot_took));
    println!(
        "  provider warm start (restore by {} + container) {}",
        f.provider.effective_restore_method().unwrap(),
        ms(median(warm))
    );
    println!("  exec of `true`                  {}", ms(median(exec)));
}
