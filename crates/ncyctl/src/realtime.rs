//! `ncyctl realtime …`: the realtime gateway's `RealtimeService` — send to a room, read presence
//! and statistics, emit the platform's domain events, and disconnect a user or take them out of a
//! room on every gateway instance.
use clap::{Args, Subcommand, ValueEnum};
use ncy_proto::realtime::v1::{self as pb, realtime_service_client::RealtimeServiceClient};

use crate::Outcome;
use crate::rpc::{Target, failed, print_json, table, time};

mod stats;

const ADDR_ENV: &str = "NCY_REALTIME_ADDR";
const DEFAULT_ADDR: &str = "http://127.0.0.1:50054";

/// `ncyctl realtime …`
#[derive(Debug, Args)]
pub struct RealtimeArgs {
    #[command(subcommand)]
    command: RealtimeCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoomKind {
    User,
    Org,
    Project,
    Broadcast,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Online,
    Away,
    Busy,
    Offline,
}

#[derive(Debug, Subcommand)]
enum RealtimeCommand {
    /// Publish an event to a room (every member on every gateway instance receives it).
    Send {
        #[arg(value_enum)]
        room: RoomKind,
        /// The user, organization or project id (omit for broadcast).
        id: Option<String>,
        #[arg(long)]
        event: String,
        /// Event data as JSON text.
        #[arg(long, default_value = "{}")]
        data: String,
        #[arg(long, default_value = "")]
        idempotency_key: String,
    },
    /// Who is online in a room, e.g. `project:<id>`.
    Presence { room: String },
    /// Connections, rooms and message counters of the instance answering.
    Stats {
        /// A table of every live instance instead: which one holds the connections (each reports
        /// every few seconds).
        #[arg(long)]
        all_instances: bool,
    },
    /// Tell the project's members (and the assignee) that a task changed.
    TaskUpdated {
        task_id: String,
        #[arg(long)]
        updated_by: String,
        #[arg(long, default_value = "{}")]
        changes: String,
    },
    /// Tell a user's organizations that their status changed.
    UserStatus {
        user_id: String,
        #[arg(value_enum)]
        status: StatusArg,
    },
    /// Tell an organization that a project was created.
    ProjectCreated {
        project_id: String,
        #[arg(long)]
        created_by: String,
    },
    /// Close every socket of a user on every gateway instance (WebSocket close code 4010). The
    /// user may reconnect: revoke their tokens or membership to keep them out.
    DisconnectUser {
        user_id: String,
        /// Close frame reason shown to the client (at most 120 bytes; default
        /// `disconnected_by_server`).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take every socket of a user out of a room (e.g. `project:<id>`) on every gateway instance;
    /// each gets `left` with reason `unsubscribed`.
    UnsubscribeUser { user_id: String, room: String },
}

pub async fn run(args: RealtimeArgs, json: bool) -> Outcome {
    let mut client = match args.target.connect(ADDR_ENV, DEFAULT_ADDR).await {
        Ok(channel) => RealtimeServiceClient::new(channel),
        Err(outcome) => return outcome,
    };
    let result: Result<(), tonic::Status> = async {
        match args.command {
            RealtimeCommand::Send {
                room,
                id,
                event,
                data,
                idempotency_key,
            } => {
                let id = match (room, id) {
                    (RoomKind::Broadcast, _) => String::new(),
                    (_, Some(id)) => id,
                    (_, None) => {
                        return Err(tonic::Status::invalid_argument(
                            "`id` is required to send to a user, organization or project room",
                        ));
                    }
                };
                let delivery = match room {
                    RoomKind::User => {
                        let request = pb::SendToUserRequest {
                            user_id: id,
                            event,
                            data_json: data,
                            idempotency_key,
                        };
                        client.send_to_user(request).await?.into_inner().delivery
                    }
                    RoomKind::Org => {
                        let request = pb::SendToOrganizationRequest {
                            organization_id: id,
                            event,
                            data_json: data,
                            idempotency_key,
                        };
                        client
                            .send_to_organization(request)
                            .await?
                            .into_inner()
                            .delivery
                    }
                    RoomKind::Project => {
                        let request = pb::SendToProjectRequest {
                            project_id: id,
                            event,
                            data_json: data,
                            idempotency_key,
                        };
                        client.send_to_project(request).await?.into_inner().delivery
                    }
                    RoomKind::Broadcast => {
                        let request = pb::BroadcastRequest {
                            event,
                            data_json: data,
                            idempotency_key,
                        };
                        client.broadcast(request).await?.into_inner().delivery
                    }
                };
                print_delivery(delivery.unwrap_or_default(), json);
            }
            RealtimeCommand::Presence { room } => {
                let mut users = Vec::new();
                let mut page_token = String::new();
                loop {
                    let request = pb::PresenceRequest {
                        room: room.clone(),
                        page_size: 500,
                        page_token,
                    };
                    let r = client.presence(request).await?.into_inner();
                    users.extend(r.users);
                    if r.next_page_token.is_empty() {
                        break;
                    }
                    page_token = r.next_page_token;
                }
                let all = pb::PresenceResponse {
                    room,
                    total: i32::try_from(users.len()).unwrap_or(i32::MAX),
                    users,
                    next_page_token: String::new(),
                };
                if json {
                    print_json(&all, "ncy.realtime.v1.PresenceResponse");
                } else {
                    let mut t = table(&["USER", "CONNECTIONS", "STATUS", "LAST SEEN"]);
                    for u in &all.users {
                        // No status set since the user connected reads "-", not "unspecified".
                        let status = pb::UserStatus::try_from(u.status)
                            .ok()
                            .filter(|s| *s != pb::UserStatus::Unspecified)
                            .map_or_else(
                                || "-".to_owned(),
                                |s| {
                                    s.as_str_name()
                                        .trim_start_matches("USER_STATUS_")
                                        .to_ascii_lowercase()
                                },
                            );
                        t.add_row(vec![
                            u.user_id.clone(),
                            u.connections.to_string(),
                            status,
                            time(u.last_seen_at_ms),
                        ]);
                    }
                    println!("{} online in {}", all.users.len(), all.room);
                    println!("{t}");
                }
            }
            RealtimeCommand::Stats { all_instances } => {
                stats::run(&mut client, all_instances, json).await?;
            }
            RealtimeCommand::TaskUpdated {
                task_id,
                updated_by,
                changes,
            } => {
                let request = pb::TaskUpdatedRequest {
                    task_id,
                    updated_by,
                    changes_json: changes,
                    idempotency_key: String::new(),
                };
                let r = client.task_updated(request).await?.into_inner();
                if json {
                    print_json(&r, "ncy.realtime.v1.TaskUpdatedResponse");
                } else {
                    println!("project:{} notified", r.project_id);
                    if !r.notified_user_id.is_empty() {
                        println!("user:{} notified", r.notified_user_id);
                    }
                }
            }
            RealtimeCommand::UserStatus { user_id, status } => {
                let status = match status {
                    StatusArg::Online => pb::UserStatus::Online,
                    StatusArg::Away => pb::UserStatus::Away,
                    StatusArg::Busy => pb::UserStatus::Busy,
                    StatusArg::Offline => pb::UserStatus::Offline,
                };
                let request = pb::UserStatusChangedRequest {
                    user_id,
                    status: status as i32,
                    idempotency_key: String::new(),
                };
                let r = client.user_status_changed(request).await?.into_inner();
                if json {
                    print_json(&r, "ncy.realtime.v1.UserStatusChangedResponse");
                } else {
                    for d in r.deliveries {
                        print_delivery(d, false);
                    }
                }
            }
            RealtimeCommand::ProjectCreated {
                project_id,
                created_by,
            } => {
                let request = pb::ProjectCreatedRequest {
                    project_id,
                    created_by,
                    idempotency_key: String::new(),
                };
                let r = client.project_created(request).await?.into_inner();
                if json {
                    print_json(&r, "ncy.realtime.v1.ProjectCreatedResponse");
                } else {
                    println!("org:{} notified", r.organization_id);
                }
            }
            RealtimeCommand::DisconnectUser { user_id, reason } => {
                let request = pb::DisconnectUserRequest { user_id, reason };
                let r = client.disconnect_user(request).await?.into_inner();
                if json {
                    print_json(&r, "ncy.realtime.v1.DisconnectUserResponse");
                } else {
                    println!(
                        "closed {} socket(s) on the instance that answered; {} instance(s) reached",
                        r.local_connections, r.instances_reached
                    );
                }
            }
            RealtimeCommand::UnsubscribeUser { user_id, room } => {
                let request = pb::UnsubscribeUserRequest {
                    user_id,
                    room: room.clone(),
                };
                let r = client.unsubscribe_user(request).await?.into_inner();
                if json {
                    print_json(&r, "ncy.realtime.v1.UnsubscribeUserResponse");
                } else {
                    println!(
                        "took {} socket(s) out of {room} on the instance that answered; {} \
                         instance(s) reached",
                        r.local_connections, r.instances_reached
                    );
                }
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Outcome::Ok,
        Err(status) => failed(status),
    }
}

fn print_delivery(d: pb::RoomDelivery, json: bool) {
    if json {
        print_json(&d, "ncy.realtime.v1.RoomDelivery");
    } else {
        let dedup = if d.deduplicated {
            " (deduplicated)"
        } else {
            ""
        };
        println!("{} offset {} epoch {}{dedup}", d.room, d.offset, d.epoch);
    }
}
