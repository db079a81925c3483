//! Shell conveniences generated from the clap definitions, so they never drift from
//! the real options: `headstart completions SHELL` prints a completion script and the
//! hidden `headstart generate-man DIR` writes man pages (`cargo xtask man` runs it).
//!
//! Not here: installing them (the README says where each shell looks).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// `headstart completions SHELL`
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// `headstart generate-man DIR`
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// The directory to write `headstart.1` and `headstart-<command>.1` into.
    dir: PathBuf,
}

/// Prints the completion script for the shell on stdout.
/// Written through a buffer: `headstart completions bash | head` must not panic on
/// a closed pipe (it ends quietly, as every command's output does).
#[allow(clippy::print_stderr)]
pub(crate) fn completions(args: &CompletionsArgs) -> ExitCode {
    use std::io::Write;
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "headstart", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the output to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the man pages; prints the files written.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub(crate) fn man(args: &ManArgs) -> ExitCode {
    match write_man_pages(args) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: writing man pages into {}: {e}", args.dir.display());
            ExitCode::FAILURE
        }
    }
}

fn write_man_pages(args: &ManArgs) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&args.dir)?;
    // One page per visible command: headstart.1, headstart-up.1, headstart-snapshot-ls.1
    clap_mangen::generate_to(crate::Cli::command(), &args.dir)?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(&args.dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "1")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("headstart"))
        })
        .collect();
    written.sort();
    Ok(written)
}
