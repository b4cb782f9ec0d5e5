//! `ncyctl` against services that require API keys: the key from `NCY_API_KEY` or `--api-key` is
//! sent with every call; without one the operator is told which variable to set; a key without the
//! command's scope is refused naming the scope.
#![allow(clippy::unwrap_used)]

use crate::support::{Stack, ctl, ncyctl_with};

const READER: &str = "ncyctl-reader-0123456789abcdef";
const OPERATOR: &str = "ncyctl-operator-0123456789abcd";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_comes_from_the_environment_or_the_flag() {
    let mut stack = Stack::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api-keys.toml");
    std::fs::write(
        &file,
        format!(
            "[[keys]]\nname = \"reader\"\nsecret = \"{READER}\"\nscopes = [\"jobs:read\"]\n\n\
             [[keys]]\nname = \"operator\"\nsecret = \"{OPERATOR}\"\nscopes = [\"jobs:*\"]\n"
        ),
    )
    .unwrap();
    stack.env.retain(|(k, _)| k != "NCY_API_AUTH");
    stack
        .env
        .push(("NCY_API_KEYS_FILE".into(), file.display().to_string()));
    let sched = stack.scheduler().await;
    let url = sched.url.as_str();
    let list = [
        "jobs", "list", "--queue", "email", "--state", "dead", "--addr", url,
    ];

    let anonymous = ctl(
        url,
        &["jobs", "list", "--queue", "email", "--state", "dead"],
    )
    .await;
    anonymous.fails(1, &["unauthenticated", "NCY_API_KEY"]);
    assert_eq!(anonymous.stdout, "");

    ncyctl_with(&list, &[("NCY_API_KEY", READER)]).await.ok();
    // Like --addr, the flag belongs to the command group, so it goes after it.
    ncyctl_with(&[&list[..], &["--api-key", READER][..]].concat(), &[])
        .await
        .ok();

    let pause = ["queues", "pause", "email", "--addr", url];
    ncyctl_with(&pause, &[("NCY_API_KEY", READER)])
        .await
        .fails(1, &["permission denied", "jobs:admin"]);
    ncyctl_with(&pause, &[("NCY_API_KEY", OPERATOR)]).await.ok();
    sched.stop().await;
}
