//! Not a timed test: an ignored measurement of what `sync`'s cleanliness proof (the
//! status that lets it check out only the changed paths) costs on a given workspace,
//! e.g. a freshly mounted overlay restore, split into its parts: the worktree walk
//! (index to worktree, untracked files) and the HEAD-to-index diff. Run the binary on
//! a fresh mount each time: the first walk of a new overlay mount is the slow one.
//!
//! `HS_MEASURE_WS=/path cargo test --release -p sandbox-core --test it measure_status -- --ignored --nocapture`

use std::time::Instant;

#[test]
#[ignore = "measurement; run with --ignored --nocapture and HS_MEASURE_WS"]
#[allow(clippy::print_stderr)]
fn measure_status_parts() -> anyhow::Result<()> {
    let Some(ws) = std::env::var_os("HS_MEASURE_WS") else {
        eprintln!("HS_MEASURE_WS not set: nothing measured");
        return Ok(());
    };
    let repo = git2::Repository::open(&ws)?;
    for (label, show) in [
        ("worktree walk (first)", git2::StatusShow::Workdir),
        ("worktree walk (again)", git2::StatusShow::Workdir),
        ("HEAD to index", git2::StatusShow::Index),
        ("both, as sync does", git2::StatusShow::IndexAndWorkdir),
    ] {
        let mut opts = git2::StatusOptions::new();
        opts.show(show)
            .include_untracked(true)
            .recurse_untracked_dirs(false)
            .include_ignored(false)
            .exclude_submodules(true);
        let t = Instant::now();
        let n = repo.statuses(Some(&mut opts))?.len();
        eprintln!("{label}: {n} entries in {:?}", t.elapsed());
    }
    Ok(())
}
