//! Interleaved rounds: the cases that form a ratio run one repetition each in turn
//! (A, B, A, B, ...), so drift of the machine over the run (this kind of filesystem is
//! noisy) hits both sides of a ratio alike, and each ratio can be taken per pair of
//! repetitions (`report::ratios`). A case on its own is a round of one.
//!
//! What it is not: the repetitions themselves (`cases.rs`) or the order of the rounds
//! (`run.rs`).

use std::path::PathBuf;

use super::cases::{FloorSetup, clone_rep, cold_rep, floor_rep, warm_rep};
use super::measure::{CaseResult, Sample};
use super::{Ctx, Rig, Served, fixture};

/// What one case of a round runs, per repetition.
pub(super) enum Member<'a> {
    /// `git clone <extra> <url>`, checked on `branch` (default: the default branch).
    Clone {
        url: String,
        extra: Vec<String>,
        branch: Option<String>,
    },
    /// A headstart warm start (in-process) from the rig's snapshot.
    Warm {
        rig: &'a Rig,
        url: String,
        branch: Option<String>,
    },
    /// A headstart cold start on a fresh rig from `make`, and the build it kicks.
    Cold {
        url: String,
        make: &'a (dyn Fn(usize) -> anyhow::Result<Rig> + Sync),
    },
    /// `headstart up --json` (the CLI process) on the rig's home, default branch.
    Cli { rig: &'a Rig, bin: PathBuf },
    /// A headstart start on a fresh rig from `make` (a new host) pulling its snapshot
    /// from the registry.
    FreshHost {
        url: String,
        make: &'a (dyn Fn(usize) -> anyhow::Result<Rig> + Sync),
    },
    /// The git CLI doing headstart's warm path on the rig's snapshot.
    Floor {
        rig: &'a Rig,
        url: String,
        branch: Option<String>,
    },
}

/// A case of a round: what it runs and what it records.
pub(super) struct Slot<'a> {
    member: Member<'a>,
    case: CaseResult,
    /// The snapshot build a cold start kicks (its own case).
    build: Option<CaseResult>,
}

impl<'a> Slot<'a> {
    pub(super) fn new(member: Member<'a>, case: CaseResult) -> Self {
        Self {
            member,
            case,
            build: None,
        }
    }

    pub(super) fn with_build(mut self, build: CaseResult) -> Self {
        self.build = Some(build);
        self
    }
}

/// The order of a round of `members` cases over `reps` repetitions, as
/// `(repetition, member)`: every member's repetition `r` before any member's `r + 1`.
pub(super) fn schedule(members: usize, reps: usize) -> Vec<(usize, usize)> {
    (0..reps)
        .flat_map(|r| (0..members).map(move |m| (r, m)))
        .collect()
}

/// Per-slot state prepared before the first repetition.
struct Prepared {
    branch: String,
    expect: String,
    floor: Option<FloorSetup>,
    from_seed: bool,
}

/// Runs `slots` interleaved, `ctx.reps` repetitions each, and pushes their results (in
/// the slots' order). With `round` set, the cases carry it, which lets the report pair
/// their repetitions. A case that fails is skipped from then on (and reported FAILED);
/// the others go on.
pub(super) async fn run_round(
    ctx: &mut Ctx,
    served: &Served,
    round: Option<&str>,
    mut slots: Vec<Slot<'_>>,
) {
    let mut failed: Vec<Option<String>> = vec![None; slots.len()];
    let mut prepared: Vec<Option<Prepared>> = Vec::new();
    for (i, slot) in slots.iter_mut().enumerate() {
        slot.case.round = round.map(str::to_owned);
        match prepare(served, &slot.member) {
            Ok(p) => prepared.push(Some(p)),
            Err(e) => {
                failed[i] = Some(format!("FAILED: {e:#}"));
                prepared.push(None);
            }
        }
    }
    if let Some(r) = round {
        let ids: Vec<&str> = slots.iter().map(|s| s.case.id.as_str()).collect();
        eprintln!("  (interleaved round `{r}`: {})", ids.join(", "));
    }
    for (rep, i) in schedule(slots.len(), ctx.reps) {
        if failed[i].is_some() {
            continue;
        }
        let (Some(p), slot) = (prepared[i].as_mut(), &mut slots[i]) else {
            continue;
        };
        settle();
        match one_rep(ctx, served, &slot.member, &slot.case.id, rep, p).await {
            Ok((sample, build)) => {
                slot.case.samples.push(sample);
                if let (Some(b), Some(bc)) = (build, slot.build.as_mut()) {
                    bc.samples.push(b);
                }
            }
            Err(e) => failed[i] = Some(format!("FAILED: {e:#}")),
        }
    }
    for ((slot, why), p) in slots.into_iter().zip(failed).zip(prepared) {
        let Slot {
            member,
            mut case,
            build,
        } = slot;
        match &member {
            Member::Warm { rig, .. } if case.note.is_none() => {
                case.note = rig.restore_note.clone();
            }
            Member::Cli { .. } => {
                case.note = Some(
                    "process start to exit; `process` = time outside the reported phases".into(),
                );
            }
            Member::Floor { .. } => {
                if let Some(f) = p.as_ref().and_then(|p| p.floor.as_ref()) {
                    case.note = Some(format!(
                        "git CLI on the same snapshot: {} restore, `git fetch --depth=1 {} B`, \
                         `git checkout -B B FETCH_HEAD`",
                        f.method,
                        if f.remote == "origin" {
                            "origin"
                        } else {
                            "<url>"
                        }
                    ));
                }
            }
            _ => {}
        }
        if let Some(why) = &why {
            case = case.skipped(why.clone());
        }
        ctx.push(case);
        if let Some(mut build) = build {
            if let Some(why) = why {
                build = build.skipped(why);
            } else if p.is_some_and(|p| !p.from_seed) {
                build.note = Some("the build cloned again (no seed)".into());
            } else {
                build.note =
                    Some("from the seed of the cold clone; runs after the start returns".into());
            }
            ctx.push(build);
        }
    }
}

/// Flushes the filesystems (`sync`, untimed) before a repetition, so it does not pay
/// for the writeback of the bench's own set-up: the previous repetition's teardown (on
/// a filesystem mounted with `discard`, freed blocks are trimmed at the next journal
/// commit) and the upstream's repack after an advance. Every case gets it, so a pair's
/// two sides start from the same quiet disk.
fn settle() {
    if let Err(e) = std::process::Command::new("sync").status() {
        eprintln!("  (sync before a repetition failed: {e})");
    }
}

fn prepare(served: &Served, member: &Member<'_>) -> anyhow::Result<Prepared> {
    let branch = match member {
        Member::Clone { branch, .. }
        | Member::Warm { branch, .. }
        | Member::Floor { branch, .. } => branch.clone(),
        Member::Cold { .. } | Member::Cli { .. } | Member::FreshHost { .. } => None,
    }
    .unwrap_or_else(|| served.fixture.default_branch.clone());
    let expect = fixture::tip(&served.repo, &branch)?;
    let floor = match member {
        Member::Floor { rig, url, .. } => Some(FloorSetup::of(rig, url)?),
        _ => None,
    };
    Ok(Prepared {
        branch,
        expect,
        floor,
        from_seed: true,
    })
}

async fn one_rep(
    ctx: &Ctx,
    served: &Served,
    member: &Member<'_>,
    id: &str,
    rep: usize,
    p: &mut Prepared,
) -> anyhow::Result<(Sample, Option<Sample>)> {
    let name = format!("{}-{rep}", id.replace('_', "-"));
    match member {
        Member::Clone { url, extra, .. } => {
            clone_rep(&ctx.work, url, extra, &name, &p.branch, &p.expect).map(|s| (s, None))
        }
        Member::Warm { rig, url, branch } => {
            let source = served.source(url, branch.as_deref())?;
            warm_rep(rig, &source, &name, &p.branch, &p.expect)
                .await
                .map(|s| (s, None))
        }
        Member::Cold { url, make } => {
            let source = served.source(url, None)?;
            let rig = make(rep)?;
            let (s, b, from_seed) = cold_rep(rig, &source, rep, &p.branch, &p.expect).await?;
            p.from_seed &= from_seed;
            Ok((s, Some(b)))
        }
        Member::FreshHost { url, make } => {
            let source = served.source(url, None)?;
            super::registry::rep(make(rep)?, &source, rep, &p.branch, &p.expect)
                .await
                .map(|s| (s, None))
        }
        Member::Cli { rig, bin } => {
            super::cases::cli_rep(rig, served, bin, rep, &p.branch, &p.expect)
                .await
                .map(|s| (s, None))
        }
        Member::Floor { .. } => {
            let floor = p.floor.as_ref().expect("prepared with the floor setup");
            floor_rep(floor, &ctx.work, &name, &p.branch, &p.expect).map(|s| (s, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_interleaves_its_cases_repetition_by_repetition() {
        assert_eq!(
            schedule(2, 3),
            vec![(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
        );
        assert_eq!(schedule(1, 2), vec![(0, 0), (1, 0)]);
        let order: Vec<usize> = schedule(3, 2).into_iter().map(|(_, m)| m).collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
        assert!(schedule(0, 3).is_empty());
    }
}
