//! `RepoUrl`: the accepted forms and the refusals, table-driven; `Display` never shows
//! a secret.

use sandbox_core::{Error, RepoUrl, Transport};

/// input, transport, host, port, path, user, Display
type Row = (
    &'static str,
    Transport,
    Option<&'static str>,
    Option<u16>,
    &'static str,
    Option<&'static str>,
    &'static str,
);

#[test]
fn accepted_forms_parse_to_the_right_parts() -> anyhow::Result<()> {
    // input, transport, host, port, path, user, Display
    let table: &[Row] = &[
        (
            "https://github.com/acme/app.git",
            Transport::Http,
            Some("github.com"),
            None,
            "/acme/app.git",
            None,
            "https://github.com/acme/app.git",
        ),
        (
            "HTTPS://GitHub.com/acme/app",
            Transport::Http,
            Some("github.com"),
            None,
            "/acme/app",
            None,
            "https://github.com/acme/app",
        ),
        (
            "http://127.0.0.1:8080/app.git",
            Transport::Http,
            Some("127.0.0.1"),
            Some(8080),
            "/app.git",
            None,
            "http://127.0.0.1:8080/app.git",
        ),
        (
            "http://[::1]:9418/app.git",
            Transport::Http,
            Some("[::1]"),
            Some(9418),
            "/app.git",
            None,
            "http://[::1]:9418/app.git",
        ),
        (
            "ssh://git@example.com:2222/acme/app.git",
            Transport::Ssh,
            Some("example.com"),
            Some(2222),
            "/acme/app.git",
            Some("git"),
            "ssh://git@example.com:2222/acme/app.git",
        ),
        (
            "git@github.com:acme/app.git",
            Transport::Ssh,
            Some("github.com"),
            None,
            "/acme/app.git",
            Some("git"),
            "git@github.com:acme/app.git",
        ),
        (
            "example.com:acme/app",
            Transport::Ssh,
            Some("example.com"),
            None,
            "/acme/app",
            None,
            "example.com:acme/app",
        ),
        (
            "git://127.0.0.1:9418/app.git",
            Transport::Git,
            Some("127.0.0.1"),
            Some(9418),
            "/app.git",
            None,
            "git://127.0.0.1:9418/app.git",
        ),
        (
            "file:///srv/git/app.git",
            Transport::File,
            None,
            None,
            "/srv/git/app.git",
            None,
            "file:///srv/git/app.git",
        ),
        (
            "file:///srv/git/app.git/",
            Transport::File,
            None,
            None,
            "/srv/git/app.git",
            None,
            "file:///srv/git/app.git",
        ),
        (
            "/srv/git/app.git",
            Transport::File,
            None,
            None,
            "/srv/git/app.git",
            None,
            "file:///srv/git/app.git",
        ),
    ];
    for &(input, transport, host, port, path, user, display) in table {
        let u = RepoUrl::parse(input)?;
        assert_eq!(u.transport(), transport, "{input}");
        assert_eq!(u.host(), host, "{input}");
        assert_eq!(u.port(), port, "{input}");
        assert_eq!(u.path(), path, "{input}");
        assert_eq!(u.user(), user, "{input}");
        assert_eq!(u.to_string(), display, "{input}");
        assert_eq!(
            RepoUrl::parse(&u.to_string())?,
            u,
            "Display round-trips: {input}"
        );
        assert_eq!(u.is_local(), transport == Transport::File);
    }
    // Relative local paths become absolute.
    let rel = RepoUrl::parse("./some/repo")?;
    assert!(
        rel.path().starts_with('/') && rel.path().ends_with("/some/repo"),
        "{rel}"
    );
    // `.` and `..` are the current directory and its parent, as `git clone .` reads them.
    let cwd = std::env::current_dir()?;
    let here = RepoUrl::parse(".")?;
    assert_eq!(here.local_path(), Some(cwd.as_path()), "{here}");
    let up = RepoUrl::parse("..")?;
    let parent = up.local_path().map(std::fs::canonicalize).transpose()?;
    assert_eq!(parent.as_deref(), cwd.parent(), "{up}");
    Ok(())
}

#[test]
fn bad_inputs_are_refused_with_what_is_accepted() {
    let secret = test_support::random_token();
    let userinfo_https = format!("https://user:{secret}@github.com/acme/app.git");
    let token_only_https = format!("https://{secret}@github.com/acme/app.git");
    let userinfo_http = format!("http://x-access-token:{secret}@127.0.0.1:8080/app.git");
    let ssh_password = format!("ssh://git:{secret}@example.com/acme/app.git");
    let table: Vec<(&str, &str)> = vec![
        (&userinfo_https, "credentials in the URL are refused"),
        (&token_only_https, "credentials in the URL are refused"),
        (&userinfo_http, "credentials in the URL are refused"),
        (&ssh_password, "password in an ssh:// URL"),
        ("-uhttps://github.com/acme/app", "may not start with `-`"),
        ("--upload-pack=touch /tmp/x", "may not start with `-`"),
        ("https://github.com/acme/app name", "whitespace or control"),
        ("https://github.com/acme/app\n", "whitespace or control"),
        ("https://github.com/acme/\u{7}app", "whitespace or control"),
        ("\thttps://github.com/acme/app", "whitespace or control"),
        ("ftp://example.com/app.git", "unknown scheme `ftp`"),
        ("ext::sh -c touch% /tmp/pwned", "whitespace or control"),
        ("ext::sh", "remote-helper syntax `ext::...` is refused"),
        ("fd::17", "remote-helper syntax `fd::...` is refused"),
        ("https://", "no host"),
        ("https://github.com", "names no repository path"),
        ("https://github.com/../etc/passwd", "may not contain `..`"),
        ("https://-oProxyCommand=x/app", "may not start with `-`"),
        ("git@-oProxyCommand=x:app", "host may not start with `-`"),
        (
            "ssh://-oProxyCommand=x@example.com/app",
            "ssh user name is empty or starts with `-`",
        ),
        ("example.com:-oProxyCommand=x", "may not start with `-`"),
        ("https://github.com:99999/acme/app", "not a valid port"),
        ("file://relative/path", "needs an absolute path"),
        ("", "empty"),
        ("app", "not a URL or local path"),
    ];
    for (input, why) in table {
        let err = RepoUrl::parse(input).expect_err(input);
        let Error::InvalidUrl { url, reason } = &err else {
            panic!("{input}: {err:?}")
        };
        assert!(
            reason.contains(why),
            "{input:?}: reason {reason:?} lacks {why:?}"
        );
        assert!(
            reason.contains("accepted forms"),
            "{input:?}: the error lists what is accepted"
        );
        let shown = format!("{err} {err:?} {url}");
        assert!(
            !shown.contains(&secret),
            "{input:?}: the secret is echoed: {shown}"
        );
    }
}

#[test]
fn origins_fill_in_default_ports_and_tell_ports_schemes_and_hosts_apart() -> anyhow::Result<()> {
    use sandbox_core::Origin;
    let o = |s: &str| Origin::of(s).map(|o| o.to_string());
    assert_eq!(
        o("https://GitHub.com/a/b.git").as_deref(),
        Some("https://github.com:443")
    );
    assert_eq!(
        o("https://github.com:443/a/b").as_deref(),
        Some("https://github.com:443")
    );
    assert_eq!(
        o("http://x-access-token@127.0.0.1:8080/a?b=1").as_deref(),
        Some("http://127.0.0.1:8080")
    );
    assert_eq!(
        o("git@github.com:a/b.git").as_deref(),
        Some("ssh://github.com:22")
    );
    assert_eq!(
        o("ssh://git@[::1]:2222/a").as_deref(),
        Some("ssh://[::1]:2222")
    );
    assert_eq!(o("git://h/a").as_deref(), Some("git://h:9418"));
    assert_eq!(o("file:///srv/a"), None);
    assert_eq!(o("/srv/a"), None);
    assert_ne!(Origin::of("http://h:1/a"), Origin::of("http://h:2/a"));
    assert_ne!(Origin::of("http://h/a"), Origin::of("https://h/a"));
    let url = RepoUrl::parse("https://github.com/acme/app")?;
    assert_eq!(
        url.origin(),
        Origin::of("https://github.com:443/acme/app.git/info/refs")
    );
    assert_eq!(RepoUrl::parse("file:///srv/a")?.origin(), None);
    Ok(())
}

#[test]
fn disguised_credentials_are_refused_without_echoing_the_value() {
    // Percent-encoded names, upper case, fragments, `;` parameters and names that merely
    // contain "token"/"signature": git or a server reads them as credentials all the same.
    let secret = test_support::random_token();
    for input in [
        format!("https://host/o/r?%74oken={secret}"),
        format!("https://host/o/r?t%6Fken={secret}"),
        format!("https://host/o/r?%41CCESS_TOKEN={secret}"),
        format!("https://host/o/r#token={secret}"),
        format!("https://host/o/r;token={secret}"),
        format!("https://host/o/r?X-Amz-Signature={secret}"),
        format!("https://host/o/r?github_token={secret}"),
    ] {
        let err = RepoUrl::parse(&input).expect_err(&input);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&secret), "the value is echoed: {shown}");
    }
}

#[test]
fn token_like_query_parameters_are_refused_without_echoing_the_value() {
    let secret = test_support::random_token();
    for (input, name) in [
        (format!("https://host/o/r.git?token={secret}"), "token"),
        (
            format!("https://host/o/r.git?a=1&access_token={secret}"),
            "access_token",
        ),
        (
            format!("http://127.0.0.1:8080/r.git?PRIVATE_TOKEN={secret}"),
            "PRIVATE_TOKEN",
        ),
        (format!("git://host/r.git?password={secret}#x"), "password"),
        (format!("ssh://git@host/r.git?api_key={secret}"), "api_key"),
        (
            format!("git@host:o/r.git?oauth_token={secret}"),
            "oauth_token",
        ),
    ] {
        let err = RepoUrl::parse(&input).expect_err(&input);
        let Error::InvalidUrl { reason, .. } = &err else {
            panic!("{input}: {err:?}")
        };
        assert!(
            reason.contains(&format!("`{name}=`")) && reason.contains("HEADSTART_GIT_TOKEN"),
            "{reason}"
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&secret), "the value is echoed: {shown}");
    }
    // Other query parameters, and local paths with a `?`, are not credentials.
    assert!(RepoUrl::parse("https://host/o/r.git?ref=main").is_ok());
    assert!(RepoUrl::parse("/srv/repos/odd?token=name").is_ok());
}

#[test]
fn same_repository_ignores_scheme_port_user_and_dot_git_but_not_host_or_path() -> anyhow::Result<()>
{
    let p = |s: &str| RepoUrl::parse(s);
    let base = p("https://GitHub.com/acme/app.git")?;
    for same in [
        "https://github.com/acme/app",
        "https://github.com/acme/app/",
        "http://github.com:8080/acme/app.git",
        "git://github.com/acme/app.git",
        "git@github.com:acme/app.git",
        "git@github.com:acme/app",
        "ssh://git@github.com:2222/acme/app.git",
    ] {
        assert!(base.same_repository(&p(same)?), "{same}");
        assert!(p(same)?.same_repository(&base), "{same} (symmetric)");
    }
    for other in [
        "https://gitlab.com/acme/app.git",
        "https://github.com/acme/app2.git",
        "https://github.com/other/app.git",
        "https://github.com/acme/App.git",
        "file:///acme/app.git",
    ] {
        assert!(!base.same_repository(&p(other)?), "{other}");
    }
    // Local repositories: canonical paths; a repository's `.git` is the repository.
    let dir = tempfile::tempdir()?;
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".git"))?;
    std::os::unix::fs::symlink(&repo, dir.path().join("link"))?;
    let local = RepoUrl::from_path(&repo)?;
    assert!(local.same_repository(&RepoUrl::from_path(&dir.path().join("link"))?));
    assert!(local.same_repository(&RepoUrl::from_path(&repo.join(".git"))?));
    assert!(!local.same_repository(&RepoUrl::from_path(dir.path())?));
    Ok(())
}

#[test]
fn non_default_port_names_only_a_port_other_than_the_schemes() -> anyhow::Result<()> {
    let p = |s: &str| RepoUrl::parse(s).map(|u| u.non_default_port());
    assert_eq!(p("https://h.example/a/b")?, None);
    assert_eq!(p("https://h.example:443/a/b")?, None);
    assert_eq!(p("http://h.example:80/a/b")?, None);
    assert_eq!(p("ssh://git@h.example:22/a/b")?, None);
    assert_eq!(p("git://h.example:9418/a/b")?, None);
    assert_eq!(p("git@h.example:a/b")?, None);
    assert_eq!(p("file:///srv/a")?, None);
    assert_eq!(p("https://h.example:8443/a/b")?, Some(8443));
    assert_eq!(p("http://h.example:443/a/b")?, Some(443));
    assert_eq!(p("ssh://git@h.example:2222/a/b")?, Some(2222));
    assert_eq!(p("git://127.0.0.1:9419/a")?, Some(9419));
    Ok(())
}
