//! The HTTP server and git daemon serve real git clients: clone, fetch with gzip and
//! chunked request bodies, token auth; everything stops on drop.

use test_support::{GitDaemon, GitHttpServer, Upstream, git, git_in, random_token};

fn clone_cli(url: &str, dest: &std::path::Path) -> anyhow::Result<()> {
    git(&["clone", "--quiet", url, &dest.display().to_string()]).map(drop)
}

#[test]
fn http_server_serves_clones_and_logs_upload_pack_requests() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 10)?;
    let server = GitHttpServer::start(up.root())?;
    let dir = tempfile::tempdir()?;
    clone_cli(&server.url(up.name()), &dir.path().join("c"))?;
    let reqs = server.requests();
    assert!(reqs.iter().any(|r| r.method == "GET"
        && r.path.ends_with("/info/refs")
        && r.service.as_deref() == Some("git-upload-pack")
        && r.status == 200));
    let fetch = reqs
        .iter()
        .filter_map(|r| r.upload_pack.clone())
        .find(|u| u.command.as_deref() == Some("fetch") || u.wants > 0)
        .ok_or_else(|| anyhow::anyhow!("no fetch in {reqs:#?}"))?;
    assert!(fetch.wants >= 1 && fetch.done, "{fetch:?}");
    Ok(())
}

/// Local commits the server does not know make the git CLI's negotiation rounds
/// grow; above 1 KiB a body is gzipped. A request above `http.postBuffer` (here a
/// clone wanting 1,500 branches) is sent chunked instead. The log parses both.
#[test]
fn gzip_and_chunked_request_bodies_are_decoded() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 2)?;
    let server = GitHttpServer::start(up.root())?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("c");
    clone_cli(&server.url(up.name()), &ws)?;
    // 300 local-only commits, through fast-import.
    let mut stream = String::new();
    for i in 0..300 {
        stream.push_str(&format!(
            "commit refs/heads/local\ncommitter L <l@example.com> {} +0000\ndata 4\nc{:02}\n\n",
            1_700_000_000 + i,
            i % 100
        ));
    }
    test_support::fast_import(&ws, stream.as_bytes(), false)?;
    up.advance("trunk", 1)?;
    server.clear_log();
    git_in(&ws, &["fetch", "--quiet", "origin"])?;
    let posts = server.upload_pack_posts();
    let gz: Vec<_> = posts
        .iter()
        .filter(|p| p.content_encoding.as_deref() == Some("gzip"))
        .collect();
    assert!(
        gz.iter()
            .any(|p| p.upload_pack.as_ref().is_some_and(|u| u.haves >= 32)),
        "{posts:#?}"
    );
    assert_eq!(
        git_in(&ws, &["rev-parse", "origin/trunk"])?,
        up.tip("trunk")?
    );

    up.add_branches("many/b", 1500, "trunk")?;
    server.clear_log();
    let url = server.url(up.name());
    let big = dir.path().join("big");
    git(&[
        "-c",
        "http.postBuffer=65536",
        "clone",
        "--quiet",
        "--bare",
        &url,
        &big.display().to_string(),
    ])?;
    let posts = server.upload_pack_posts();
    let chunked: Vec<_> = posts.iter().filter(|p| p.chunked).collect();
    assert!(
        chunked
            .iter()
            .any(|p| p.upload_pack.as_ref().is_some_and(|u| u.wants >= 1500)),
        "{posts:#?}"
    );
    assert_eq!(
        git_in(&big, &["for-each-ref", "--count=2000", "refs/heads/many/"])?
            .lines()
            .count(),
        1500
    );
    Ok(())
}

#[test]
fn token_server_answers_401_with_www_authenticate_without_it() -> anyhow::Result<()> {
    let token = random_token();
    let up = Upstream::new("trunk", 1)?;
    let server = GitHttpServer::start_with_token(up.root(), &token)?;
    let dir = tempfile::tempdir()?;
    assert!(clone_cli(&server.url(up.name()), &dir.path().join("a")).is_err());
    let first = server
        .requests()
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no request"))?;
    assert_eq!((first.status, first.had_authorization), (401, false));
    // With credentials in the URL (test code only), the CLI gets through.
    let url = server
        .url(up.name())
        .replace("http://", &format!("http://user:{token}@"));
    clone_cli(&url, &dir.path().join("b"))?;
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.had_authorization && r.status == 200)
    );
    Ok(())
}

#[test]
fn git_daemon_serves_and_stops_on_drop() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 3)?;
    let dir = tempfile::tempdir()?;
    let port = {
        let daemon = GitDaemon::start(up.root())?;
        clone_cli(&daemon.url(up.name()), &dir.path().join("c"))?;
        daemon.port()
    };
    assert_eq!(
        git_in(&dir.path().join("c"), &["rev-parse", "HEAD"])?,
        up.tip("trunk")?
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "daemon still listening after drop"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

#[test]
fn http_server_stops_on_drop() -> anyhow::Result<()> {
    let up = Upstream::new("trunk", 1)?;
    let addr = {
        let server = GitHttpServer::start(up.root())?;
        git(&["ls-remote", &server.url(up.name())])?;
        server.addr()
    };
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed"
    );
    Ok(())
}

#[test]
fn http_server_answers_expect_100_continue() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let up = Upstream::new("trunk", 1)?;
    let server = GitHttpServer::start(up.root())?;
    let mut conn = std::net::TcpStream::connect(server.addr())?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let body = "0000";
    write!(
        conn,
        "POST /app.git/git-upload-pack HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-git-upload-pack-request\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    let mut first = [0u8; 25];
    conn.read_exact(&mut first)?;
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(body.as_bytes())?;
    let mut rest = String::new();
    conn.read_to_string(&mut rest)?;
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    Ok(())
}
