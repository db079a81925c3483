//! The Docker cases: a bare container create+start from the offline base image, and
//! the Docker provider's cold and warm starts. Skipped with the reason when no engine
//! answers. Everything created carries a scope label and is removed afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use provisioners::docker::{
    BaseImageSpec, DockerConfig, DockerProvider, build_base_image, connect_from_env,
};

use super::cases::{cold_reps, warm_case};
use super::measure::{CaseResult, Sample};
use super::{Ctx, Rig, Served, fixture};

/// The label on everything the bench creates in Docker (value: a per-rig scope).
pub(crate) const SCOPE_LABEL: &str = "dev.headstart.bench-scope";

pub(super) async fn cases(ctx: &mut Ctx, served: &Served, stamp: &str) {
    let f = served.fixture.name.clone();
    let ids = [
        (
            "docker_bare_container",
            "Docker: bare container create+start",
        ),
        ("docker_hs_cold", "Docker provider: headstart cold start"),
        (
            "docker_hs_warm_1",
            "Docker provider: headstart warm start, 1 ahead",
        ),
    ];
    let engine = match connect_from_env().await {
        Ok(d) => match d.info().await {
            Ok(_) => Ok(d),
            Err(e) => Err(format!("`docker info` fails: {e}")),
        },
        Err(e) => Err(format!("no Docker engine: {e}")),
    };
    let docker = match engine {
        Ok(d) => d,
        Err(why) => {
            for (id, label) in ids {
                ctx.push(CaseResult::new(id, label, "docker", "http", &f).skipped(why.clone()));
            }
            return;
        }
    };

    // Bare container.
    let mut bare = CaseResult::new(ids[0].0, ids[0].1, "docker", "local", &f);
    let scope = format!("{stamp}-bare");
    let r: anyhow::Result<()> = async {
        let image = build_base_image(&docker, &BaseImageSpec::default()).await?;
        for rep in 0..ctx.reps {
            let name = format!("hs-bench-{scope}-{rep}");
            let body = ContainerCreateBody {
                image: Some(image.id.clone()),
                entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
                cmd: Some(Vec::new()),
                labels: Some(HashMap::from([(SCOPE_LABEL.to_owned(), scope.clone())])),
                ..ContainerCreateBody::default()
            };
            let t = Instant::now();
            let created = docker
                .create_container(
                    Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                    body,
                )
                .await?;
            docker.start_container(&created.id, None).await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            bare.samples.push(Sample::single("container", ms));
            docker
                .remove_container(
                    &created.id,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await?;
        }
        bare.note = Some(format!("image {}", image.reference));
        Ok(())
    }
    .await;
    if let Err(e) = r {
        bare = bare.skipped(format!("FAILED: {e:#}"));
    }
    remove_scope(&docker, &scope).await;
    ctx.push(bare);

    // Cold starts, each on a fresh scope (so no snapshot), and their builds.
    let work = ctx.work.clone();
    let restore = ctx.restore;
    let d2 = docker.clone();
    let stamp2 = stamp.to_owned();
    let make = move |rep: usize| -> anyhow::Result<Rig> {
        let scope = format!("{stamp2}-cold{rep}");
        let dir = work.join(format!("docker-cold-{rep}"));
        let config = DockerConfig::new(dir.join("data"))
            .scope_label(SCOPE_LABEL, scope.clone())
            .restore_method(restore);
        let provider = Arc::new(DockerProvider::new(d2.clone(), config));
        let mut rig = Rig::with_provider(provider, dir.join("state"));
        rig.scratch = Some(dir);
        rig.docker_scope = Some((d2.clone(), scope));
        Ok(rig)
    };
    let cold = CaseResult::new(ids[1].0, ids[1].1, "docker", "http", &f);
    let build = CaseResult::new(
        "docker_snapshot_build",
        "Docker provider: snapshot build (commit + stored workspace)",
        "docker",
        "http",
        &f,
    );
    let url = served.http_url.clone();
    cold_reps(ctx, served, &url, cold, build, &make).await;

    // Warm starts, 1 ahead.
    let warm = CaseResult::new(ids[2].0, ids[2].1, "docker", "http", &f);
    let rig = match make(1000) {
        Ok(r) => r,
        Err(e) => {
            ctx.push(warm.skipped(format!("FAILED: {e:#}")));
            return;
        }
    };
    let primed = match served.source(&url, None) {
        Ok(source) => rig.prime(&source).await,
        Err(e) => Err(e),
    };
    match primed {
        Ok(()) => {
            let seed = ctx.next_seed();
            match fixture::advance(
                &served.repo,
                &served.fixture.default_branch,
                1,
                seed,
                ctx.repack,
            ) {
                Ok(_) => warm_case(ctx, &rig, served, &url, None, warm).await,
                Err(e) => ctx.push(warm.skipped(format!("FAILED: {e:#}"))),
            }
        }
        Err(e) => ctx.push(warm.skipped(format!("FAILED: no snapshot: {e:#}"))),
    }
    rig.dispose().await;
}

/// Removes every container and image carrying the bench's scope label `scope`.
pub(super) async fn remove_scope(docker: &Docker, scope: &str) {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{SCOPE_LABEL}={scope}")])]);
    if let Ok(list) = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
    {
        for c in list.into_iter().filter_map(|c| c.id) {
            let _ = docker
                .remove_container(
                    &c,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
        }
    }
    if let Ok(images) = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
    {
        for image in images {
            let _ = docker
                .remove_image(
                    &image.id,
                    Some(RemoveImageOptionsBuilder::default().force(true).build()),
                    None,
                )
                .await;
        }
    }
}
