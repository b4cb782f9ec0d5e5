//! `ncyctl cache …`: the cache gateway's `CacheService` — read and write entries, invalidate,
//! check a rate limit, manage sessions, and read the statistics of one instance or of all (`stats`).
use crate::rpc::Channel;
use clap::{Args, Subcommand};
use ncy_proto::cache::v1::{self as pb, cache_service_client::CacheServiceClient};

use crate::Outcome;
use crate::rpc::{Target, failed, print_json, table, time};

mod stats;

const ADDR_ENV: &str = "NCY_CACHE_ADDR";
const DEFAULT_ADDR: &str = "http://127.0.0.1:50051";

/// `ncyctl cache …`
#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Read one entry by logical key (e.g. `user:<id>`).
    Get { key: String },
    /// Read many entries over one GetStream: logical keys on standard input, one per line; one
    /// answer per key, in input order, as `KEY<TAB>LAYER<TAB>VALUE`, `KEY<TAB>-` (not cached) or
    /// `KEY<TAB>error: …` (a refused key; exit 1), or JSON lines with --json.
    GetStream,
    /// Write one entry.
    Set {
        key: String,
        /// The value as JSON text.
        value: String,
        /// Time to live in seconds (default: the server's).
        #[arg(long)]
        ttl: Option<i64>,
        /// Tags to invalidate the entry by (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Delete one entry.
    Delete { key: String },
    /// Read several entries.
    Mget { keys: Vec<String> },
    /// Read an entity through the cache, loading it from PostgreSQL on a miss.
    Load {
        /// Loader kind: user, org, org_members, project, project_tasks, or one from the loaders file.
        kind: String,
        id: String,
        #[arg(long)]
        ttl: Option<i64>,
        /// Reload even if cached.
        #[arg(long)]
        force_refresh: bool,
    },
    /// Invalidate cached data on every gateway instance.
    Invalidate {
        #[command(subcommand)]
        what: InvalidateCommand,
    },
    /// Check (and consume) a rate limit.
    RateLimit {
        /// Limit kind, e.g. `api`.
        kind: String,
        identifier: String,
        #[arg(long)]
        limit: i32,
        #[arg(long)]
        window_secs: i64,
        #[arg(long, default_value_t = 1)]
        cost: i32,
    },
    /// User sessions.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Hit ratios and counters of the instance answering.
    Stats {
        /// A table of every live instance instead (each reports every few seconds).
        #[arg(long)]
        all_instances: bool,
    },
}

#[derive(Debug, Subcommand)]
enum InvalidateCommand {
    /// An entity and everything cached that depends on it.
    Entity {
        /// Entity kind: user, org, project, or any loader kind (also one from the loaders file).
        kind: String,
        id: String,
    },
    /// Every entry carrying a tag.
    Tag { tag: String },
    /// Every key matching a glob (SCAN + UNLINK; for operators, not hot paths).
    Pattern {
        pattern: String,
        /// Count the matches without removing them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// Create or replace a session.
    Put {
        session_id: String,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "{}")]
        data: String,
        #[arg(long)]
        ttl: Option<i64>,
    },
    /// Show a session.
    Get { session_id: String },
    /// Delete a session.
    Delete { session_id: String },
    /// List a user's sessions.
    List { user: String },
    /// Delete all of a user's sessions (sign out everywhere).
    DeleteUser { user: String },
}

pub async fn run(args: CacheArgs, json: bool) -> Outcome {
    let mut client = match args.target.connect(ADDR_ENV, DEFAULT_ADDR).await {
        Ok(channel) => CacheServiceClient::new(channel),
        Err(outcome) => return outcome,
    };
    match dispatch(&mut client, args.command, json).await {
        Ok(()) => Outcome::Ok,
        Err(outcome) => outcome,
    }
}

async fn dispatch(
    client: &mut CacheServiceClient<Channel>,
    command: CacheCommand,
    json: bool,
) -> Result<(), Outcome> {
    match command {
        CacheCommand::Get { key } => get(client, key, json).await,
        CacheCommand::GetStream => get_stream(client, json).await,
        CacheCommand::Set {
            key,
            value,
            ttl,
            tags,
        } => {
            let request = pb::SetRequest {
                key,
                api: None,
                value_json: value,
                ttl_seconds: ttl,
                tags,
            };
            let r = client.set(request).await.map_err(failed)?.into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.SetResponse");
            } else {
                println!("{} (expires {})", r.key, time(r.expires_at_ms));
            }
            Ok(())
        }
        CacheCommand::Delete { key } => {
            let request = pb::DeleteRequest { key, api: None };
            let r = client.delete(request).await.map_err(failed)?.into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.DeleteResponse");
            } else {
                println!(
                    "{}: {}",
                    r.key,
                    if r.existed { "deleted" } else { "not cached" }
                );
            }
            Ok(())
        }
        CacheCommand::Mget { keys } => {
            let r = client
                .m_get(pb::MGetRequest { keys })
                .await
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.MGetResponse");
            } else {
                let mut t = table(&["KEY", "FOUND", "LAYER", "TTL S", "VALUE"]);
                for e in &r.entries {
                    t.add_row(vec![
                        e.key.clone(),
                        e.found.to_string(),
                        layer(e.layer),
                        (e.ttl_remaining_ms / 1000).to_string(),
                        crate::rpc::clip(&e.value_json, 60),
                    ]);
                }
                println!("{t}");
            }
            Ok(())
        }
        CacheCommand::Load {
            kind,
            id,
            ttl,
            force_refresh,
        } => {
            let request = pb::GetOrLoadRequest {
                kind,
                id,
                ttl_seconds: ttl,
                force_refresh,
            };
            let r = client
                .get_or_load(request)
                .await
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.GetOrLoadResponse");
            } else {
                let stale = if r.stale { ", STALE" } else { "" };
                eprintln!("{} from {}{stale}", r.key, layer(r.layer));
                println!("{}", r.value_json);
            }
            Ok(())
        }
        CacheCommand::Invalidate { what } => invalidate(client, what, json).await,
        CacheCommand::RateLimit {
            kind,
            identifier,
            limit,
            window_secs,
            cost,
        } => {
            let request = pb::CheckRateLimitRequest {
                r#type: kind,
                identifier,
                limit,
                window_seconds: window_secs,
                cost,
            };
            let r = client
                .check_rate_limit(request)
                .await
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.CheckRateLimitResponse");
            } else if r.allowed {
                println!("allowed; {} of {} left", r.remaining, r.limit);
            } else {
                println!("limited; retry after {} ms", r.retry_after_ms);
            }
            // A refusal is an answer, not an error of this command.
            Ok(())
        }
        CacheCommand::Sessions { command } => {
            crate::cache_sessions::run(client, command, json).await
        }
        CacheCommand::Stats { all_instances } => stats::run(client, all_instances, json).await,
    }
}

async fn get(
    client: &mut CacheServiceClient<Channel>,
    key: String,
    json: bool,
) -> Result<(), Outcome> {
    let r = client
        .get(pb::GetRequest { key, api: None })
        .await
        .map_err(failed)?
        .into_inner();
    if json {
        print_json(&r, "ncy.cache.v1.GetResponse");
        return Ok(());
    }
    if !r.found {
        eprintln!("ncyctl: {} is not cached", r.key);
        return Err(Outcome::Failed);
    }
    let stale = if r.stale { ", STALE" } else { "" };
    eprintln!(
        "{} from {}, {} s left{stale}",
        r.key,
        layer(r.layer),
        r.ttl_remaining_ms / 1000
    );
    println!("{}", r.value_json);
    Ok(())
}

/// `cache get-stream`: keys are read from stdin on a blocking thread and sent as they come (the
/// gateway answers up to 64 of them at once, in order), so output starts before the input ends.
async fn get_stream(client: &mut CacheServiceClient<Channel>, json: bool) -> Result<(), Outcome> {
    use std::io::BufRead;

    let (requests, outgoing) = tokio::sync::mpsc::channel::<pb::GetRequest>(256);
    let (sent_keys, mut keys) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let key = line.trim();
            if key.is_empty() {
                continue;
            }
            let _ = sent_keys.send(key.to_owned());
            let request = pb::GetRequest {
                key: key.to_owned(),
                api: None,
            };
            if requests.blocking_send(request).is_err() {
                break;
            }
        }
        Ok(())
    });
    let mut answers = client
        .get_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await
        .map_err(failed)?
        .into_inner();
    let (mut found, mut missing, mut refused) = (0u64, 0u64, 0u64);
    while let Some(answer) = answers.message().await.map_err(failed)? {
        let key = keys.recv().await.unwrap_or_default();
        if json {
            print_json(&answer, "ncy.cache.v1.GetStreamResponse");
        }
        match &answer.response {
            Some(r) if r.found => {
                found += 1;
                if !json {
                    println!("{}\t{}\t{}", r.key, layer(r.layer), r.value_json);
                }
            }
            Some(_) => {
                missing += 1;
                if !json {
                    println!("{key}\t-");
                }
            }
            None => {
                refused += 1;
                if !json {
                    println!("{key}\terror: {}", answer.error_message);
                }
            }
        }
    }
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("ncyctl: cannot read keys from standard input: {e}");
            return Err(Outcome::Failed);
        }
        Err(e) => {
            eprintln!("ncyctl: the stdin reader failed: {e}");
            return Err(Outcome::Failed);
        }
    }
    if let Ok(key) = keys.try_recv() {
        eprintln!("ncyctl: the gateway ended the stream before answering {key}");
        return Err(Outcome::Unavailable);
    }
    eprintln!("{found} found, {missing} not cached, {refused} refused");
    if refused > 0 {
        return Err(Outcome::Failed);
    }
    Ok(())
}

async fn invalidate(
    client: &mut CacheServiceClient<Channel>,
    what: InvalidateCommand,
    json: bool,
) -> Result<(), Outcome> {
    match what {
        InvalidateCommand::Entity { kind, id } => {
            let request = pb::InvalidateEntityRequest {
                kind,
                id,
                ..Default::default()
            };
            let r = client
                .invalidate_entity(request)
                .await
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.InvalidateEntityResponse");
            } else {
                println!(
                    "deleted keys: {}; invalidated tags: {}",
                    r.deleted_keys.join(", "),
                    r.invalidated_tags.join(", ")
                );
            }
        }
        InvalidateCommand::Tag { tag } => {
            let r = client
                .invalidate_tag(pb::InvalidateTagRequest { tag: tag.clone() })
                .await
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.InvalidateTagResponse");
            } else {
                println!("{tag} invalidated at {}", time(r.invalidated_at_ms));
            }
        }
        InvalidateCommand::Pattern { pattern, dry_run } => {
            let r = client
                .invalidate_pattern(pb::InvalidatePatternRequest { pattern, dry_run })
                .await
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.InvalidatePatternResponse");
            } else if dry_run {
                println!("{} keys match", r.removed);
            } else {
                println!("{} keys removed", r.removed);
            }
        }
    }
    Ok(())
}

/// `CACHE_LAYER_L2` → `L2`.
pub fn layer(layer: i32) -> String {
    pb::CacheLayer::try_from(layer)
        .map(|l| {
            l.as_str_name()
                .trim_start_matches("CACHE_LAYER_")
                .to_owned()
        })
        .unwrap_or_else(|_| layer.to_string())
}
