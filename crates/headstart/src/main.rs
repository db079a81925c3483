//! The `headstart` command line: parses arguments, calls the app layer (the
//! `headstart` library: [`headstart::Headstart`]) and renders its outcomes as text or
//! JSON. No logic a library user needs lives here.
//!
//! Exit status: 0 on success, 2 for bad input (unknown sandbox, malformed URL, missing
//! branch, bad flags), 1 for everything else (an `up --timeout` that passed too);
//! `exec` exits with the command's status (127 when the program does not exist, 126
//! when it cannot run, 124 on `--timeout`; SIGINT, SIGTERM and SIGHUP are forwarded to
//! the command and `exec` exits 130, 143 or 129); an `up` stopped by SIGINT or SIGTERM
//! exits 130 or 143 after removing what it created. With `--json`, a failure prints exactly
//! one `{"error": {...}}` object on stdout and exits with the same status.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::{completions, error, output, render};

/// Start coding sandboxes with a git repository ready in seconds.
#[derive(Debug, Parser)]
#[command(name = "headstart", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: TopCommand,
    /// Log level filter (also `RUST_LOG`), e.g. `debug` or `headstart=trace`.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    /// Print nothing but errors (and what was asked for: `--json`, listings' names).
    #[arg(long, short, global = true, conflicts_with = "progress")]
    quiet: bool,
    /// Show transfer progress even when stderr is not a terminal (plain lines).
    #[arg(long, global = true)]
    progress: bool,
}

/// The commands: those that do the work, then the shell conveniences.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum TopCommand {
    #[command(flatten)]
    Run(cli::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Write man pages (headstart.1 and one per subcommand) into a directory.
    #[command(hide = true)]
    GenerateMan(completions::ManArgs),
}

/// True when the raw arguments ask for JSON (before any `--`): what a command line
/// that does not parse is answered with.
fn raw_args_want_json() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Panics print through the scrubber too: a panic message can quote a value that held
/// a token (a URL, a command line), and stderr is recorded by the programs that run us.
///
/// Output that cannot be written is no bug: `println!` panics when stdout fails, and
/// the hook turns that into what other tools do. A closed pipe (`headstart ls | head
/// -1`: the reader has what it wanted) ends the process quietly with status 0, as
/// ripgrep does; any other failure (a full disk, `> /dev/full`) is an `error:` line and
/// status 1.
fn install_scrubbing_panic_hook() {
    use std::io::Write;
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        if let Some(why) = message.strip_prefix("failed printing to stdout: ") {
            if why.starts_with("Broken pipe") {
                std::process::exit(0);
            }
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot write the output to stdout: {why}"
            );
            std::process::exit(1);
        }
        if message.starts_with("failed printing to stderr") {
            // nowhere left to say anything (and `eprintln!` here would abort)
            std::process::exit(1);
        }
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "headstart panicked{place}: {}\nthis is a bug; please report it",
            sandbox_core::scrub(&message)
        );
    }));
}

fn main() -> ExitCode {
    headstart::register_secrets();
    install_scrubbing_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && raw_args_want_json() => {
            // clap's message is its lines up to the blank line before `Usage:` (the
            // missing arguments are on the lines after "were not provided:")
            let text = e.render().to_string();
            let message = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            let message = message.trim_start_matches("error: ");
            let message = if message.is_empty() {
                "invalid command line"
            } else {
                message
            };
            output::print_json(&error::error_value("usage", message));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    output::init(output::Settings {
        quiet: cli.quiet,
        progress: cli.progress,
    });
    let no_color = headstart::env::var_os(headstart::env::NO_COLOR).is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    let filter = cli.log.as_deref().or(cli.quiet.then_some("error"));
    render::init_tracing(filter, ansi);
    let command = match cli.command {
        TopCommand::Run(command) => command,
        TopCommand::Completions(args) => return completions::completions(&args),
        TopCommand::GenerateMan(args) => return completions::man(&args),
    };
    if matches!(command, cli::Command::Up(_)) {
        // before the runtime: the only moment the process has one thread
        cli::gitinit::start_libgit2();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(command))
}

/// Runs a command and turns its error into the exit status (and the `--json` error
/// object or the `error:`/`hint:` lines).
async fn run(command: cli::Command) -> ExitCode {
    let json = command.json();
    match cli::run(command).await {
        Ok(code) => code,
        Err(e) => {
            if json {
                output::print_json(&error::error_object(&e));
            } else {
                let message = render::chain(&e);
                eprintln!("error: {message}");
                // the library words say what went wrong; the hint, how to go on here
                if let Some(hint) = error::hint(error::error_kind(&e)) {
                    if !message.contains(hint) {
                        eprintln!("hint: {hint}");
                    }
                }
            }
            ExitCode::from(if error::is_user_error(&e) { 2 } else { 1 })
        }
    }
}
