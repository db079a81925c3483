//! `headstart flags`: evaluate PostHog flag definitions offline (`flags eval`) and show
//! the current fast-provisioning decision and why (`flags status`).
//!
//! Also the glue the other commands use: [`BetaArgs`] (`--beta` / `--fast`). What it
//! is not: flag logic. Evaluation, precedence and telemetry live in the
//! `feature-flags` crate; the status is the app layer's `Headstart::flags_status`.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use feature_flags::{BetaRequest, Definitions, Properties};
use headstart::Headstart;
use serde_json::{Value, json};

/// `headstart flags ...`
#[derive(Debug, Args)]
pub(crate) struct FlagsArgs {
    #[command(subcommand)]
    command: FlagsCommand,
}

#[derive(Debug, Subcommand)]
enum FlagsCommand {
    /// Evaluate a flag locally from a PostHog definitions file ({"flags": [...]}), the way
    /// PostHog's SDKs do; prints one JSON line per distinct id (value null = inconclusive:
    /// PostHog would need to be asked, e.g. for a property you did not pass).
    Eval(EvalArgs),
    /// Show the fast paths a start would use now, and why.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// The definitions file (as served by PostHog's /flags/definitions).
    #[arg(long, value_name = "FILE")]
    definitions: PathBuf,
    /// The flag key.
    #[arg(long, value_name = "KEY")]
    flag: String,
    /// A distinct id to evaluate for (repeat for several).
    #[arg(long = "distinct-id", value_name = "ID", required = true)]
    distinct_ids: Vec<String>,
    /// A person property, KEY=VALUE (repeatable). VALUE is read as JSON when it parses
    /// (30, true, null, "quoted"), else as a string.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
    properties: Vec<(String, Value)>,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    beta: BetaArgs,
    /// Print the decision as one JSON object.
    #[arg(long)]
    json: bool,
}

impl FlagsArgs {
    /// True when the command asked for JSON (`flags status --json`; `flags eval`
    /// always prints JSON lines and has no error object).
    pub(crate) fn json(&self) -> bool {
        matches!(&self.command, FlagsCommand::Status(s) if s.json)
    }
}

/// `--beta` / `--fast`, for every command that provisions.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct BetaArgs {
    /// Turn on fast paths: images, docker, sandbox (repeatable, or comma-separated).
    /// Merged with HEADSTART_BETA; skips the fast_provision experiment.
    #[arg(long, value_name = "LIST")]
    pub(crate) beta: Vec<String>,
    /// Turn on every fast path (same as --beta images,docker,sandbox).
    #[arg(long)]
    pub(crate) fast: bool,
}

impl BetaArgs {
    /// The request handed to [`FeatureFlags::fast_paths`].
    pub(crate) fn request(&self) -> BetaRequest {
        BetaRequest {
            beta: self.beta.clone(),
            fast: self.fast,
        }
    }
}

fn parse_property(text: &str) -> Result<(String, Value), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE (e.g. --property plan=pro)"))?;
    if k.trim().is_empty() {
        return Err(format!(
            "{text:?} has an empty KEY (e.g. --property plan=pro)"
        ));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.trim().to_owned(), value))
}

/// Runs `headstart flags ...`.
pub(crate) async fn run(app: &Headstart, args: FlagsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        FlagsCommand::Eval(a) => eval(a, &mut std::io::stdout().lock()),
        FlagsCommand::Status(a) => status(app, a).await,
    }
}

fn eval(args: EvalArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.definitions).with_context(|| {
        format!(
            "cannot read the definitions file {}",
            args.definitions.display()
        )
    })?;
    let defs = Definitions::from_json(&text).with_context(|| {
        format!(
            "{} is not PostHog flag definitions (expected {{\"flags\": [...]}} as served by /flags/definitions)",
            args.definitions.display()
        )
    })?;
    if defs.flag(&args.flag).is_none() {
        let known: Vec<&str> = defs.flags.iter().map(|f| f.key.as_str()).collect();
        anyhow::bail!(
            "flag {:?} is not in {} (flags there: {})",
            args.flag,
            args.definitions.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    }
    let properties: Properties = args.properties.into_iter().collect();
    for id in &args.distinct_ids {
        let value = defs.evaluate(&args.flag, id, &properties).to_json();
        writeln!(out, "{}", json!({"distinct_id": id, "value": value}))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(app: &Headstart, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let st = app.flags_status(&args.beta.request()).await?;
    if args.json {
        super::output::print_outcome(&st)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("fast paths:     {}", st.decision.paths);
    println!("why:            {}", st.decision.source);
    println!("HEADSTART_BETA: {}", st.headstart_beta);
    println!(
        "distinct id:    {}",
        st.distinct_id
            .as_deref()
            .unwrap_or("none (nothing is sent: see why)")
    );
    println!(
        "posthog:        {} (project key {}, telemetry {}{})",
        st.posthog_host,
        if st.project_key_configured {
            "set"
        } else {
            "not set"
        },
        if st.telemetry { "on" } else { "off" },
        if st.feature_flags_disabled {
            ", flags disabled"
        } else {
            ""
        }
    );
    println!("evaluation:     matches {}", st.reference_sdk);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_eval(
        defs: &str,
        flag: &str,
        ids: &[&str],
        props: &[&str],
    ) -> anyhow::Result<Vec<Value>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("defs.json");
        std::fs::write(&file, defs)?;
        let args = EvalArgs {
            definitions: file,
            flag: flag.into(),
            distinct_ids: ids.iter().map(|s| s.to_string()).collect(),
            properties: props.iter().map(|p| parse_property(p).unwrap()).collect(),
        };
        let mut out = Vec::new();
        eval(args, &mut out)?;
        Ok(String::from_utf8(out)?
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect())
    }

    const DEFS: &str = r#"{"flags": [
        {"key": "multivariate-flag", "active": true, "filters": {
            "groups": [{"properties": [], "rollout_percentage": 55}],
            "multivariate": {"variants": [
                {"key": "first-variant", "rollout_percentage": 50},
                {"key": "second-variant", "rollout_percentage": 20},
                {"key": "third-variant", "rollout_percentage": 20},
                {"key": "fourth-variant", "rollout_percentage": 5},
                {"key": "fifth-variant", "rollout_percentage": 5}]}}},
        {"key": "pro", "active": true, "filters": {"groups": [
            {"properties": [{"key": "plan", "operator": "exact", "value": "pro", "type": "person"}],
             "rollout_percentage": 100}]}}
    ]}"#;

    #[test]
    fn eval_prints_one_json_line_per_id() {
        let lines = run_eval(
            DEFS,
            "multivariate-flag",
            &["distinct_id_0", "distinct_id_1", "distinct_id_2"],
            &[],
        )
        .unwrap();
        assert_eq!(
            lines,
            vec![
                json!({"distinct_id": "distinct_id_0", "value": "second-variant"}),
                json!({"distinct_id": "distinct_id_1", "value": "second-variant"}),
                json!({"distinct_id": "distinct_id_2", "value": "first-variant"}),
            ]
        );
    }

    #[test]
    fn eval_uses_properties_and_prints_null_when_inconclusive() {
        let with = run_eval(DEFS, "pro", &["a"], &["plan=pro"]).unwrap();
        assert_eq!(with, vec![json!({"distinct_id": "a", "value": true})]);
        let other = run_eval(DEFS, "pro", &["a"], &["plan=free"]).unwrap();
        assert_eq!(other, vec![json!({"distinct_id": "a", "value": false})]);
        let without = run_eval(DEFS, "pro", &["a"], &[]).unwrap();
        assert_eq!(without, vec![json!({"distinct_id": "a", "value": null})]);
    }

    #[test]
    fn eval_errors_name_the_problem() {
        let e = run_eval(DEFS, "nope", &["a"], &[]).unwrap_err().to_string();
        assert!(e.contains("multivariate-flag, pro"), "{e}");
        let e = run_eval("[1, 2]", "x", &["a"], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not PostHog flag definitions"), "{e}");
    }

    #[test]
    fn properties_parse_as_json_or_text() {
        assert_eq!(parse_property("age=30").unwrap(), ("age".into(), json!(30)));
        assert_eq!(
            parse_property("plan=pro").unwrap(),
            ("plan".into(), json!("pro"))
        );
        assert_eq!(
            parse_property("email=a=b").unwrap(),
            ("email".into(), json!("a=b"))
        );
        assert_eq!(parse_property("x=").unwrap(), ("x".into(), json!("")));
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=v").is_err());
    }
}
