//! `ncyctl cache sessions …`: the session store behind the cache gateway.
use crate::rpc::Channel;
use ncy_proto::cache::v1::{self as pb, cache_service_client::CacheServiceClient};

use crate::Outcome;
use crate::cache::SessionsCommand;
use crate::rpc::{failed, print_json, table, time};

pub async fn run(
    client: &mut CacheServiceClient<Channel>,
    command: SessionsCommand,
    json: bool,
) -> Result<(), Outcome> {
    match command {
        SessionsCommand::Put {
            session_id,
            user,
            data,
            ttl,
        } => {
            let request = pb::PutSessionRequest {
                session_id,
                user_id: user,
                data_json: data,
                ttl_seconds: ttl,
            };
            let r = client
                .put_session(request)
                .await
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.PutSessionResponse");
            } else if let Some(s) = &r.session {
                let verb = if r.created { "created" } else { "replaced" };
                println!("{} {verb}; expires {}", s.session_id, time(s.expires_at_ms));
            }
        }
        SessionsCommand::Get { session_id } => {
            let request = pb::GetSessionRequest {
                session_id,
                touch: false,
            };
            let r = client
                .get_session(request)
                .await
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.GetSessionResponse");
            } else if let Some(s) = &r.session {
                println!("session  {}", s.session_id);
                println!("user     {}", s.user_id);
                println!("created  {}", time(s.created_at_ms));
                println!("expires  {}", time(s.expires_at_ms));
                println!("data     {}", s.data_json);
            }
        }
        SessionsCommand::Delete { session_id } => {
            let request = pb::DeleteSessionRequest {
                session_id: session_id.clone(),
            };
            let r = client
                .delete_session(request)
                .await
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.DeleteSessionResponse");
            } else {
                let what = if r.existed {
                    "deleted"
                } else {
                    "did not exist"
                };
                println!("{session_id}: {what}");
            }
        }
        SessionsCommand::List { user } => {
            let mut sessions = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListUserSessionsRequest {
                    user_id: user.clone(),
                    page_size: 200,
                    page_token,
                };
                let r = client
                    .list_user_sessions(request)
                    .await
                    .map_err(failed)?
                    .into_inner();
                sessions.extend(r.sessions);
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            let all = pb::ListUserSessionsResponse {
                sessions,
                next_page_token: String::new(),
            };
            if json {
                print_json(&all, "ncy.cache.v1.ListUserSessionsResponse");
            } else {
                let mut t = table(&["SESSION", "CREATED", "EXPIRES"]);
                for s in &all.sessions {
                    t.add_row(vec![
                        s.session_id.clone(),
                        time(s.created_at_ms),
                        time(s.expires_at_ms),
                    ]);
                }
                println!("{t}");
            }
        }
        SessionsCommand::DeleteUser { user } => {
            let request = pb::DeleteUserSessionsRequest {
                user_id: user.clone(),
                keep_session_ids: Vec::new(),
            };
            let r = client
                .delete_user_sessions(request)
                .await
                .map_err(failed)?
                .into_inner();
            if json {
                print_json(&r, "ncy.cache.v1.DeleteUserSessionsResponse");
            } else {
                println!("{} sessions of {user} deleted", r.deleted);
            }
        }
    }
    Ok(())
}
