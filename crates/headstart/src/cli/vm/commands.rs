//! The `headstart vm` subcommands: each resolves the cloud, calls
//! `provisioners::cloud` and renders what it did. Argument types and the dispatch are
//! in the parent module.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use feature_flags::{BetaRequest, FeatureFlags, Purpose};
use headstart::{Headstart, VmSettings};
use provisioners::cloud::{
    self, Cloud, CloudError, OwnerTag, Readiness, SshPublicKey, Vm, VmHost, VmName, VmProvisioner,
    VmReport, VmSpec,
};
use sandbox_core::ExecRequest;

use super::{DownArgs, ExecArgs, LsArgs, UpArgs};
use crate::cli::output;

/// The public key path: explicit, else the first default key that exists.
fn public_key_path(env: &VmSettings, explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(p) => Ok(p.to_path_buf()),
        None => env.default_public_key().context(
            "no SSH key found in ~/.ssh; create one with `ssh-keygen -t ed25519` or pass --ssh-key PATH.pub",
        ),
    }
}

async fn fast_paths(
    app: &Headstart,
    a: &UpArgs,
) -> anyhow::Result<(feature_flags::FastPaths, Option<FeatureFlags>)> {
    if a.no_fast {
        return Ok((feature_flags::FastPaths::default(), None));
    }
    let flags = app.flags_client();
    let request = BetaRequest {
        beta: a.beta.clone(),
        fast: a.fast,
    };
    let decision = flags.fast_paths(&request, Purpose::Provision).await?;
    Ok((decision.paths, Some(flags)))
}

pub(super) async fn up(app: &Headstart, a: UpArgs) -> anyhow::Result<ExitCode> {
    let env = app.vm_settings();
    let cloud: Cloud = a.common.cloud.into();
    let key_path = public_key_path(&env, a.common.ssh_key.as_deref())?;
    let key_text = std::fs::read_to_string(&key_path)
        .with_context(|| format!("reading the SSH public key {}", key_path.display()))?;
    let key = SshPublicKey::parse(key_text.trim())?;
    let owner = env.owner(a.common.owner.as_deref())?;
    let name = match &a.name {
        Some(n) => VmName::new(n.clone())?,
        None => VmName::generate(),
    };
    let (paths, flags) = fast_paths(app, &a).await?;
    let mut spec = VmSpec::new(name, owner, key, headstart::prebuilt_images(paths));
    spec.size = a.size.clone();
    spec.region = a.region.clone();
    spec.image = a.image.clone();
    if let Some(file) = &a.user_data {
        spec.user_data = Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading user data {}", file.display()))?,
        );
    }
    for label in &a.labels {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--label `{label}` is not KEY=VALUE"))?;
        spec.labels.insert(k.to_owned(), v.to_owned());
    }
    let provisioner = env.provisioner(cloud)?;
    let ready = env.readiness(&key_path, Duration::from_secs(a.timeout));
    eprintln!(
        "creating VM `{}` on {cloud} (size {}, region {}, fast paths: {paths})",
        spec.name,
        spec.size_or_default(cloud),
        spec.region_or_default(cloud)
    );
    let started = cloud::up(provisioner.as_ref(), &spec, &ready, |phase, took| {
        eprintln!("  {:<10} {:>8.1} s", phase.as_str(), took.as_secs_f64());
    });
    let result = tokio::select! {
        r = started => r,
        _ = tokio::signal::ctrl_c() => {
            // Leave nothing behind: remove the VM if the create went through.
            eprintln!("interrupted: deleting VM `{}` if it was created", spec.name);
            if let Ok(Some(vm)) = provisioner.find(&spec.owner, spec.name.as_str()).await
                && let Err(e) = provisioner.destroy(&vm).await
            {
                eprintln!("error: {e}; delete it with `headstart vm down {} --cloud {cloud}`", vm.name);
            }
            if let Some(flags) = flags {
                flags.shutdown(Duration::from_secs(2)).await;
            }
            return Ok(ExitCode::from(130));
        }
    };
    if let Some(flags) = flags {
        flags.shutdown(Duration::from_secs(2)).await;
    }
    let report = result?;
    if a.json {
        output::print_outcome(&report)?;
    } else {
        print_report(&report, &ready);
    }
    Ok(ExitCode::SUCCESS)
}

/// The VM's public IPv4, or `-` before it has one.
fn ipv4_or_dash(vm: &Vm) -> String {
    vm.public_ipv4
        .map_or_else(|| "-".to_owned(), |ip| ip.to_string())
}

fn print_report(report: &VmReport, ready: &Readiness) {
    let vm = &report.vm;
    let ip = ipv4_or_dash(vm);
    println!(
        "VM `{}` is ready on {} ({}), {ip}",
        vm.name, vm.cloud, vm.region
    );
    for p in &report.phases {
        println!("  {:<10} {:>10.1} ms", p.name.as_str(), p.ms);
    }
    println!("  {:<10} {:>10.1} ms", "total", report.total_ms);
    let user = ready
        .ssh_user
        .clone()
        .unwrap_or_else(|| vm.cloud.ssh_user().to_owned());
    println!(
        "run commands with: headstart vm exec --cloud {} {} -- docker ps\n\
         or: ssh -o UserKnownHostsFile={} {user}@{ip}",
        vm.cloud,
        vm.name,
        ready.known_hosts.display()
    );
}

pub(super) async fn ls(app: &Headstart, a: LsArgs) -> anyhow::Result<ExitCode> {
    let env = app.vm_settings();
    let cloud: Cloud = a.common.cloud.into();
    let owner = env.owner(a.common.owner.as_deref())?;
    let vms = env.provisioner(cloud)?.list(&owner).await?;
    if a.json {
        output::print_outcome(&vms)?;
        return Ok(ExitCode::SUCCESS);
    }
    if vms.is_empty() {
        println!("no VMs for owner `{owner}` on {cloud}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:<14} {:<16} {:<14} IMAGE",
        "NAME", "STATUS", "IPV4", "REGION"
    );
    for vm in vms {
        let ip = ipv4_or_dash(&vm);
        println!(
            "{:<28} {:<14} {:<16} {:<14} {}",
            vm.name,
            vm.raw_status,
            ip,
            vm.region,
            vm.image.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn find(p: &dyn VmProvisioner, owner: &OwnerTag, name: &str) -> anyhow::Result<cloud::Vm> {
    Ok(p.find(owner, name)
        .await?
        .ok_or_else(|| CloudError::NotFound {
            cloud: p.cloud(),
            name: name.to_owned(),
        })?)
}

pub(super) async fn down(app: &Headstart, a: DownArgs) -> anyhow::Result<ExitCode> {
    let env = app.vm_settings();
    let cloud: Cloud = a.common.cloud.into();
    let owner = env.owner(a.common.owner.as_deref())?;
    let p = env.provisioner(cloud)?;
    let vm = find(p.as_ref(), &owner, &a.name).await?;
    p.destroy(&vm).await?;
    // The address goes back to the cloud's pool: forget its pinned host key.
    if let Some(ip) = vm.public_ipv4 {
        cloud::ssh::forget_host(&env.known_hosts, ip, 22)?;
    }
    if a.json {
        output::print_json(&serde_json::json!({"deleted": vm}));
    } else {
        output::say(format_args!("deleted VM `{}` on {cloud}", vm.name));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn exec(app: &Headstart, a: ExecArgs) -> anyhow::Result<ExitCode> {
    let env = app.vm_settings();
    let cloud: Cloud = a.common.cloud.into();
    let owner = env.owner(a.common.owner.as_deref())?;
    let key_path = public_key_path(&env, a.common.ssh_key.as_deref())?;
    let p = env.provisioner(cloud)?;
    let vm = find(p.as_ref(), &owner, &a.name).await?;
    let host = VmHost::new(vm, &env.readiness(&key_path, Duration::from_secs(60)))?;
    let mut request = ExecRequest::new(a.argv.clone())?;
    if let Some(t) = a.timeout {
        request = request.timeout(Duration::from_secs(t));
    }
    if !a.json {
        request = request.sink(std::sync::Arc::new(|stream, bytes: &[u8]| {
            use std::io::Write as _;
            let _ = match stream {
                sandbox_core::Stream::Stdout => std::io::stdout().write_all(bytes),
                sandbox_core::Stream::Stderr => std::io::stderr().write_all(bytes),
            };
        }));
    }
    let out = host.exec(&request).await?;
    let status = if out.timed_out {
        124
    } else {
        out.exit_code.map_or(1, |c| u8::try_from(c).unwrap_or(1))
    };
    if a.json {
        output::print_json(&serde_json::json!({
            "vm": a.name,
            "cloud": cloud,
            "argv": a.argv,
            "exit_code": out.exit_code,
            "status": status,
            "timed_out": out.timed_out,
            "duration_ms": out.duration.as_secs_f64() * 1000.0,
            "stdout": out.stdout_lossy(),
            "stderr": String::from_utf8_lossy(&out.stderr),
            "truncated": out.truncated,
        }));
    } else if out.timed_out {
        eprintln!("error: the command timed out");
    }
    Ok(ExitCode::from(status))
}
