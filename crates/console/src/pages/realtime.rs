//! The realtime-gateway, `/realtime?room=…`: every instance's `Stats` in one table (through
//! `all_instances`, see [`super::instances`]) and the answering instance's in detail (connections,
//! rooms, messages), the presence of a room (`project:<uuid>`, `org:<uuid>`, `user:<uuid>`), and
//! for operators a test message to a room (event `console.test` with JSON the operator types)
//! and disconnecting a user — each audited and answering with a redirect back and a message.
use std::sync::Arc;

use askama::Template;
use axum::{
    Extension, Form,
    extract::{Query, State, rejection::FormRejection},
    response::{Html, Redirect},
};
use ncy_proto::realtime::v1::{
    DisconnectUserRequest, PresenceRequest, RoomDelivery, SendToOrganizationRequest,
    SendToProjectRequest, SendToUserRequest, StatsRequest, UserStatus,
};
use serde::Deserialize;

use super::instances::{self, InstanceRow};
use super::{Nav, cache::required, render, time, url_part};
use crate::{
    AppState,
    access::{CurrentUser, Subject},
    error::ConsoleError,
    upstream,
};

/// The event name of a test message.
pub const TEST_EVENT: &str = "console.test";

/// Users of a room shown at most (the total is shown too).
const PRESENCE_PAGE: i32 = 100;

/// The query of the realtime page.
#[derive(Debug, Default, Deserialize)]
pub struct RealtimeQuery {
    room: Option<String>,
    done: Option<String>,
    offset: Option<u64>,
    count: Option<u32>,
    instances: Option<u32>,
}

/// One user present in a room.
pub struct PresenceRow {
    user_id: String,
    connections: i32,
    last_seen: String,
    status: &'static str,
}

/// The presence of the room looked up.
pub struct PresenceView {
    room: String,
    total: i32,
    users: Vec<PresenceRow>,
    more: bool,
}

#[derive(Template)]
#[template(path = "realtime.html")]
struct RealtimePage {
    nav: Nav,
    may_act: bool,
    instance_id: String,
    started_at: String,
    counters: Vec<(&'static str, String)>,
    instance_columns: &'static [&'static str],
    instance_rows: Vec<InstanceRow>,
    instances_note: Option<&'static str>,
    room: String,
    presence: Option<PresenceView>,
    flash: Option<String>,
}

fn status_name(status: i32) -> &'static str {
    match UserStatus::try_from(status) {
        Ok(UserStatus::Online) => "online",
        Ok(UserStatus::Away) => "away",
        Ok(UserStatus::Busy) => "busy",
        Ok(UserStatus::Offline) => "offline",
        _ => "—",
    }
}

fn flash(q: &RealtimeQuery) -> Option<String> {
    match q.done.as_deref()? {
        "sent" => Some(format!(
            "Test message sent (room offset {}).",
            q.offset.unwrap_or(0)
        )),
        "disconnected" => Some(format!(
            "User disconnected: {} connection(s) on the answering instance, {} instance(s) reached.",
            q.count.unwrap_or(0),
            q.instances.unwrap_or(0)
        )),
        _ => None,
    }
}

/// `GET /realtime`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Query(query): Query<RealtimeQuery>,
) -> Result<Html<String>, ConsoleError> {
    let (stats, instances_note) = instances::with_fallback(
        app.realtime.clone().stats(StatsRequest {
            all_instances: true,
        }),
        app.realtime.clone().stats(StatsRequest::default()),
        upstream::realtime,
    )
    .await?;
    let instance_rows = instances::realtime_rows(&stats);
    let room = query.room.clone().unwrap_or_default().trim().to_owned();
    let presence = if room.is_empty() {
        None
    } else {
        let p = upstream::realtime(
            app.realtime
                .clone()
                .presence(PresenceRequest {
                    room: room.clone(),
                    page_size: PRESENCE_PAGE,
                    page_token: String::new(),
                })
                .await,
        )?;
        Some(PresenceView {
            room: p.room,
            total: p.total,
            more: !p.next_page_token.is_empty(),
            users: p
                .users
                .iter()
                .map(|u| PresenceRow {
                    user_id: u.user_id.clone(),
                    connections: u.connections,
                    last_seen: time(u.last_seen_at_ms),
                    status: status_name(u.status),
                })
                .collect(),
        })
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let counters = vec![
        ("Connections", stats.connections.to_string()),
        (
            "Authenticated connections",
            stats.authenticated_connections.to_string(),
        ),
        ("Rooms", stats.rooms.to_string()),
        ("Messages in", stats.messages_in.to_string()),
        ("Messages out", stats.messages_out.to_string()),
        ("Messages published", stats.messages_published.to_string()),
        (
            "Slow-client disconnects",
            stats.slow_client_disconnects.to_string(),
        ),
        ("Recovery hits", stats.recovery_hits.to_string()),
        ("Recovery misses", stats.recovery_misses.to_string()),
        ("Bus connected", yes_no(stats.bus_connected)),
        ("Draining", yes_no(stats.draining)),
    ];
    render(&RealtimePage {
        nav: Nav::for_user("realtime", &user),
        may_act: user.may_act(),
        instance_id: stats.instance_id,
        started_at: time(stats.started_at_ms),
        counters,
        instance_columns: instances::REALTIME_COLUMNS,
        instance_rows,
        instances_note,
        room,
        presence,
        flash: flash(&query),
    })
}

/// The test-message form.
#[derive(Debug, Default, Deserialize)]
pub struct SendForm {
    #[serde(default)]
    room: String,
    #[serde(default)]
    data: String,
}

/// The disconnect form.
#[derive(Debug, Default, Deserialize)]
pub struct DisconnectForm {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    reason: String,
}

/// A room name split into its kind and id; a 400 naming `room` for another shape.
fn room_parts(room: &str) -> Result<(&str, &str), ConsoleError> {
    match room.split_once(':') {
        Some((kind @ ("project" | "org" | "user"), id)) if !id.is_empty() => Ok((kind, id)),
        _ => Err(ConsoleError::BadRequest(format!(
            "room must be project:<id>, org:<id> or user:<id>, not {room:?}."
        ))),
    }
}

/// The data typed, as compact JSON (`{}` when empty); a 400 naming `data` when it is not JSON.
fn data_json(data: &str) -> Result<String, ConsoleError> {
    if data.trim().is_empty() {
        return Ok("{}".to_owned());
    }
    serde_json::from_str::<serde_json::Value>(data)
        .map(|v| v.to_string())
        .map_err(|e| ConsoleError::BadRequest(format!("data is not valid JSON: {e}.")))
}

async fn deliver(
    app: &AppState,
    kind: &str,
    id: &str,
    data_json: String,
) -> Result<Option<RoomDelivery>, ConsoleError> {
    let (id, event) = (id.to_owned(), TEST_EVENT.to_owned());
    let mut client = app.realtime.clone();
    Ok(match kind {
        "project" => {
            upstream::realtime(
                client
                    .send_to_project(SendToProjectRequest {
                        project_id: id,
                        event,
                        data_json,
                        idempotency_key: String::new(),
                    })
                    .await,
            )?
            .delivery
        }
        "org" => {
            upstream::realtime(
                client
                    .send_to_organization(SendToOrganizationRequest {
                        organization_id: id,
                        event,
                        data_json,
                        idempotency_key: String::new(),
                    })
                    .await,
            )?
            .delivery
        }
        _ => {
            upstream::realtime(
                client
                    .send_to_user(SendToUserRequest {
                        user_id: id,
                        event,
                        data_json,
                        idempotency_key: String::new(),
                    })
                    .await,
            )?
            .delivery
        }
    })
}

/// `POST /realtime/send`.
pub async fn send(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    form: Result<Form<SendForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let form = form.map(|f| f.0).unwrap_or_default();
    let room = form.room.trim().to_owned();
    let target = format!("room:{room}");
    let subject = Subject {
        target: Some(&target),
        ..Subject::default()
    };
    const ACTION: &str = "send_test_message";
    user.require_operator(ACTION, &subject)?;
    let checked = room_parts(&room).and_then(|parts| Ok((parts, data_json(&form.data)?)));
    let ((kind, id), data) = user.audit_failure(ACTION, &subject, checked)?;
    let delivery = user.audit_failure(ACTION, &subject, deliver(&app, kind, id, data).await)?;
    let offset = delivery.map_or(0, |d| d.offset);
    user.audit(ACTION, &subject, &format!("sent: offset {offset}"));
    Ok(Redirect::to(&format!(
        "/realtime?room={}&done=sent&offset={offset}",
        url_part(&room)
    )))
}

/// `POST /realtime/disconnect`.
pub async fn disconnect(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    form: Result<Form<DisconnectForm>, FormRejection>,
) -> Result<Redirect, ConsoleError> {
    let form = form.map(|f| f.0).unwrap_or_default();
    let user_id = form.user_id.trim().to_owned();
    let target = format!("user:{user_id}");
    let subject = Subject {
        target: Some(&target),
        ..Subject::default()
    };
    const ACTION: &str = "disconnect_user";
    user.require_operator(ACTION, &subject)?;
    user.audit_failure(ACTION, &subject, required("user_id", &user_id))?;
    let answer = app
        .realtime
        .clone()
        .disconnect_user(DisconnectUserRequest {
            user_id,
            reason: form.reason.trim().to_owned(),
        })
        .await;
    let r = user.audit_failure(ACTION, &subject, upstream::realtime(answer))?;
    user.audit(
        ACTION,
        &subject,
        &format!(
            "disconnected: {} local connection(s), {} instance(s) reached",
            r.local_connections, r.instances_reached
        ),
    );
    Ok(Redirect::to(&format!(
        "/realtime?done=disconnected&count={}&instances={}",
        r.local_connections, r.instances_reached
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_and_data_are_checked() {
        assert_eq!(room_parts("project:1").ok(), Some(("project", "1")));
        assert_eq!(room_parts("org:x").ok(), Some(("org", "x")));
        assert!(room_parts("broadcast").is_err());
        assert!(room_parts("project:").is_err());
        assert_eq!(data_json(" ").ok().as_deref(), Some("{}"));
        assert_eq!(
            data_json(r#"{ "a": 1 }"#).ok().as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert!(data_json("{nope").is_err());
    }
}
