//! How a failure is told: the stable kind of an error (`headstart::Error::kind` and
//! the library crates' kinds), whether it is bad input (exit status 2), the CLI's
//! hint table (the only place hints name commands and flags), and the
//! `{"error": {kind, message, hint}}` object a failed `--json` command prints.
//!
//! Not here: the errors themselves (the app layer and the library crates).

use serde_json::{Value, json};

/// An error that is the user's input at the command line: exit status 2.
#[derive(Debug)]
pub(crate) struct UserError(pub(crate) String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// True when the error (or a cause) is bad input.
pub(crate) fn is_user_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<UserError>().is_some()
            || c.downcast_ref::<headstart::Error>()
                .is_some_and(headstart::Error::is_user_error)
            || c.downcast_ref::<sandbox_core::Error>()
                .is_some_and(sandbox_core::Error::is_user_error)
            || c.downcast_ref::<snapshot_refresh::Error>()
                .is_some_and(snapshot_refresh::Error::is_user_error)
            || c.downcast_ref::<clap::Error>().is_some()
            || c.downcast_ref::<feature_flags::Error>().is_some_and(|e| {
                matches!(
                    e,
                    feature_flags::Error::UnknownFastPath { .. }
                        | feature_flags::Error::BadOverride { .. }
                )
            })
    })
}

/// The stable snake_case kind of an error: the first typed error in its chain
/// (`sandbox_not_found`, `invalid_url`, ...), `invalid_input` for input checks, `usage` for command-line syntax, `other` for anything else.
pub(crate) fn error_kind(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<headstart::Error>() {
            return e.kind();
        }
        if let Some(e) = cause.downcast_ref::<sandbox_core::Error>() {
            return e.kind();
        }
        if let Some(e) = cause.downcast_ref::<snapshot_refresh::Error>() {
            return e.kind();
        }
        if let Some(e) = cause.downcast_ref::<feature_flags::Error>() {
            return e.kind();
        }
        if cause.downcast_ref::<UserError>().is_some() {
            return "invalid_input";
        }
        if cause.downcast_ref::<clap::Error>().is_some() {
            return "usage";
        }
    }
    "other"
}

/// What to do next, for kinds whose message alone does not say it.
pub(crate) fn hint(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "invalid_url" => {
            "give https://host/owner/repo, ssh://host/owner/repo, git@host:owner/repo, file:///path or a local path (no user:password@)"
        }
        "invalid_name" => {
            "sandbox and snapshot names use letters, digits, `-`, `_` and `.`; branch names follow git's rules (no spaces, `..`, `~`, `^`, `:`, leading `-`)"
        }
        "branch_not_found" => "check the branch name, or leave out --branch for the default branch",
        "new_branch_exists" => "use --branch to check out the existing branch",
        "auth_failed" => {
            "set HEADSTART_GIT_TOKEN (https) or HEADSTART_SSH_KEY and HEADSTART_KNOWN_HOSTS (ssh); a token is only sent to the exact origin given, so when the message says it was withheld after a redirect, give the URL the server redirects to"
        }
        "repo_not_found" => {
            "check the URL or path; a private remote repository also needs HEADSTART_GIT_TOKEN"
        }
        "network" => "check the host, your network and any proxy, then retry",
        "sandbox_not_found" => "`headstart ls` lists the sandboxes that exist",
        "snapshot_not_found" => "`headstart snapshot ls` lists the snapshots that exist",
        "no_space" => "free some space (`headstart snapshot gc`, `headstart prune`) and retry",
        "command_not_found" => "give a path, or a program on the sandbox's PATH",
        "command_not_executable" => {
            "make the file executable (chmod +x) or run it through its interpreter"
        }
        "usage" => "`headstart help` lists the commands and their options",
        "unknown_fast_path" => {
            "--beta takes images, docker, sandbox (comma-separated); --fast turns on all of them"
        }
        "invalid_recipe" => {
            "a recipe is {\"commands\":[{\"argv\":[\"make\",\"deps\"]}]} with an optional \"base_image\""
        }
        "hook_failed" => {
            "fix the recipe's after_start command (`headstart exec NAME -- CMD` runs it by hand); a kept sandbox runs its hooks again on `headstart up --name NAME`"
        }
        "timeout" => "retry; pass a longer --timeout if it keeps timing out",
        "refused" => "use another --name, or --force-create to replace the sandbox",
        "workdir_unusable" => {
            "give --workdir an empty or missing directory (the repository is cloned into it) or a checkout of that repository; --force-create does not clone over files"
        }
        "origin_mismatch" => "start without the prebuilt snapshot, or pass --force-create",
        "too_slow" => "the server is stalling: check it and your network, then retry",
        "backing_off" => "pass --force to try again now",
        "busy" => "wait for the command or `headstart up` using it to finish, then retry",
        _ => return None,
    })
}

/// The one object a failed `--json` command prints:
/// `{"error": {"kind": "...", "message": "...", "hint": "..." | null}}`.
pub(crate) fn error_object(e: &anyhow::Error) -> Value {
    let kind = error_kind(e);
    error_value(kind, &super::render::chain(e))
}

/// [`error_object`] from its parts.
pub(crate) fn error_value(kind: &str, message: &str) -> Value {
    json!({"error": {
        "kind": kind,
        "message": sandbox_core::scrub(message),
        "hint": hint(kind),
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_objects_have_kind_message_and_hint() {
        let e: anyhow::Error = sandbox_core::Error::SandboxNotFound { name: "x".into() }.into();
        let v = error_object(&e);
        assert_eq!(v["error"]["kind"], "sandbox_not_found");
        assert!(v["error"]["message"].as_str().unwrap().contains("`x`"));
        assert!(v["error"]["hint"].is_string());
        let e: anyhow::Error = snapshot_refresh::Error::Core(sandbox_core::Error::Git {
            op: "fetch",
            message: "boom".into(),
        })
        .into();
        assert_eq!(error_kind(&e), "git", "nested errors are flattened");
        assert_eq!(error_kind(&anyhow::anyhow!("plain")), "other");
    }

    #[test]
    fn app_errors_keep_their_kind_through_context() {
        let e: anyhow::Error =
            headstart::Error::from(sandbox_core::Error::SandboxNotFound { name: "x".into() })
                .context("removing sandbox x")
                .into();
        assert_eq!(error_kind(&e), "sandbox_not_found");
        assert!(is_user_error(&e));
    }
}
