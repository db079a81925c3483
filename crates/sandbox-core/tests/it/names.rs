//! `BranchName` and `Source` invariants, table-driven.

use sandbox_core::{BranchName, Error, Source};

#[test]
fn branch_names_follow_git_ref_rules() {
    for ok in [
        "main",
        "trunk",
        "feature/x",
        "hs/task-1",
        "release-1.2",
        "a.b",
        "UPPER_case",
        "x@y",
    ] {
        assert!(BranchName::new(ok).is_ok(), "{ok}");
    }
    let bad = [
        ("", "empty"),
        ("-f", "may not start with `-`"),
        ("--upload-pack=x", "may not start with `-`"),
        ("refs/heads/x", "short name"),
        ("HEAD", "not a branch"),
        ("a b", "not a valid git ref name"),
        ("a..b", "not a valid git ref name"),
        ("a~1", "not a valid git ref name"),
        ("a^", "not a valid git ref name"),
        ("a:b", "not a valid git ref name"),
        ("a?", "not a valid git ref name"),
        ("a*", "not a valid git ref name"),
        ("a[b", "not a valid git ref name"),
        ("a\\b", "not a valid git ref name"),
        ("/a", "not a valid git ref name"),
        ("a/", "not a valid git ref name"),
        ("a.lock", "not a valid git ref name"),
        ("a\nb", "not a valid git ref name"),
        ("a\u{7f}b", "not a valid git ref name"),
        ("@", "shorthand for HEAD"),
    ];
    for (input, why) in bad {
        let err = BranchName::new(input).expect_err(input);
        let Error::InvalidName { reason, value, .. } = &err else {
            panic!("{input:?}: {err:?}")
        };
        assert!(reason.contains(why), "{input:?}: {reason}");
        assert!(
            !value.contains('\n'),
            "control characters escaped in {value:?}"
        );
    }
}

#[test]
fn branch_and_new_branch_must_differ() -> anyhow::Result<()> {
    let s =
        Source::parse("https://example.com/acme/app.git")?.with_branch(BranchName::new("x")?)?;
    assert!(matches!(
        s.with_new_branch(BranchName::new("x")?),
        Err(Error::InvalidOptions(_))
    ));
    Ok(())
}
