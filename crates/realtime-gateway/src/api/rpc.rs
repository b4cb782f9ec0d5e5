//! The RealtimeService RPC bodies: each returns `Result<_, GatewayError>` and uses `?`; the
//! error becomes a status once, where the RPC answers (`From<GatewayError> for Status`).
use ncy_proto::realtime::v1 as pb;
use ncy_types::{Room, ValidationError, parse_uuid};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{RealtimeApi, now_iso};
use crate::control::Control;
use crate::error::GatewayError;

type Result<T> = std::result::Result<T, GatewayError>;

pub async fn send_to_user(
    api: &RealtimeApi,
    r: pb::SendToUserRequest,
) -> Result<pb::SendToUserResponse> {
    let room = parse_uuid("user_id", &r.user_id).map(Room::user);
    let d = api
        .send(room, &r.event, &r.data_json, &r.idempotency_key)
        .await?;
    Ok(pb::SendToUserResponse { delivery: Some(d) })
}

pub async fn send_to_organization(
    api: &RealtimeApi,
    r: pb::SendToOrganizationRequest,
) -> Result<pb::SendToOrganizationResponse> {
    let room = parse_uuid("organization_id", &r.organization_id).map(Room::org);
    let d = api
        .send(room, &r.event, &r.data_json, &r.idempotency_key)
        .await?;
    Ok(pb::SendToOrganizationResponse { delivery: Some(d) })
}

pub async fn send_to_project(
    api: &RealtimeApi,
    r: pb::SendToProjectRequest,
) -> Result<pb::SendToProjectResponse> {
    let room = parse_uuid("project_id", &r.project_id).map(Room::project);
    let d = api
        .send(room, &r.event, &r.data_json, &r.idempotency_key)
        .await?;
    Ok(pb::SendToProjectResponse { delivery: Some(d) })
}

pub async fn broadcast(
    api: &RealtimeApi,
    r: pb::BroadcastRequest,
) -> Result<pb::BroadcastResponse> {
    let d = api
        .send(
            Ok(Room::Broadcast),
            &r.event,
            &r.data_json,
            &r.idempotency_key,
        )
        .await?;
    Ok(pb::BroadcastResponse { delivery: Some(d) })
}

pub async fn presence(api: &RealtimeApi, r: pb::PresenceRequest) -> Result<pb::PresenceResponse> {
    let room: Room = r.room.parse()?;
    if r.page_size < 0 {
        return Err(ValidationError::new("page_size", "must not be negative").into());
    }
    if room == Room::Broadcast {
        return Err(ValidationError::new(
            "room",
            "broadcast has no presence (every socket is in it)",
        )
        .into());
    }
    let max = api.gw.limits.presence_max_users;
    let size = match usize::try_from(r.page_size) {
        Ok(0) | Err(_) => max,
        Ok(n) => n.min(max),
    };
    if !r.page_token.is_empty() && Uuid::parse_str(&r.page_token).is_err() {
        return Err(ValidationError::new("page_token", "malformed").into());
    }
    let name = room.name();
    let users = api.gw.presence.list(&name).await?;
    let total = i32::try_from(users.len()).unwrap_or(i32::MAX);
    let after: Vec<_> = users
        .into_iter()
        .filter(|u| r.page_token.is_empty() || u.user_id > r.page_token)
        .collect();
    let page: Vec<_> = after.iter().take(size).cloned().collect();
    let next = if after.len() > size {
        page.last().map(|u| u.user_id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    let statuses = api.statuses(&page).await?;
    let users = page
        .into_iter()
        .zip(statuses)
        .map(|(u, status)| pb::PresenceEntry {
            user_id: u.user_id,
            connections: i32::try_from(u.connections).unwrap_or(i32::MAX),
            last_seen_at_ms: u.last_seen_ms,
            status: status as i32,
        })
        .collect();
    Ok(pb::PresenceResponse {
        room: name,
        users,
        next_page_token: next,
        total,
    })
}

pub async fn task_updated(
    api: &RealtimeApi,
    r: pb::TaskUpdatedRequest,
) -> Result<pb::TaskUpdatedResponse> {
    let task = parse_uuid("task_id", &r.task_id)?;
    let by = parse_uuid("updated_by", &r.updated_by)?;
    let changes = match api.data("changes_json", &r.changes_json)? {
        Value::Null => json!({}),
        v @ Value::Object(_) => v,
        _ => {
            return Err(ValidationError::new("changes_json", "must be a JSON object").into());
        }
    };
    let row: Option<(Uuid, Option<Uuid>, String)> =
        sqlx::query_as("SELECT project_id, assignee_id, title FROM tasks WHERE id = $1")
            .bind(task)
            .fetch_optional(&api.gw.db)
            .await?;
    let Some((project, assignee, title)) = row else {
        return Err(GatewayError::NotFound(format!("task {task} not found")));
    };
    let ts = now_iso();
    let data = json!({"taskId": task, "projectId": project, "changes": changes,
                      "updatedBy": by, "timestamp": ts});
    let project_delivery = api
        .publish(
            &Room::project(project),
            "task_updated",
            &data,
            &r.idempotency_key,
        )
        .await?;
    let mut response = pb::TaskUpdatedResponse {
        project_id: project.to_string(),
        project_delivery: Some(project_delivery),
        notified_user_id: String::new(),
        notification_delivery: None,
    };
    if let Some(assignee) = assignee.filter(|a| *a != by) {
        let note = json!({"type": "TASK_UPDATED",
            "message": format!("Task \"{title}\" was updated"),
            "metadata": {"taskId": task, "projectId": project, "updatedBy": by, "changes": changes},
            "timestamp": ts});
        let d = api
            .publish(
                &Room::user(assignee),
                "notification",
                &note,
                &r.idempotency_key,
            )
            .await?;
        response.notified_user_id = assignee.to_string();
        response.notification_delivery = Some(d);
    }
    Ok(response)
}

pub async fn user_status_changed(
    api: &RealtimeApi,
    r: pb::UserStatusChangedRequest,
) -> Result<pb::UserStatusChangedResponse> {
    let user = parse_uuid("user_id", &r.user_id)?;
    let status = match pb::UserStatus::try_from(r.status) {
        Ok(pb::UserStatus::Online) => "online",
        Ok(pb::UserStatus::Away) => "away",
        Ok(pb::UserStatus::Busy) => "busy",
        Ok(pb::UserStatus::Offline) => "offline",
        _ => {
            return Err(
                ValidationError::new("status", "must be ONLINE, AWAY, BUSY or OFFLINE").into(),
            );
        }
    };
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
        .bind(user)
        .fetch_one(&api.gw.db)
        .await?;
    if !exists {
        return Err(GatewayError::NotFound(format!("user {user} not found")));
    }
    let orgs: Vec<Uuid> = sqlx::query_scalar(
            "SELECT organization_id FROM organization_members WHERE user_id = $1 ORDER BY organization_id",
        )
        .bind(user)
        .fetch_all(&api.gw.db)
        .await
        ?;
    api.record_status(user, status).await?;
    let data = json!({"userId": user, "status": status, "timestamp": now_iso()});
    let mut deliveries = Vec::with_capacity(orgs.len());
    for org in orgs {
        deliveries.push(
            api.publish(
                &Room::org(org),
                "user_status_changed",
                &data,
                &r.idempotency_key,
            )
            .await?,
        );
    }
    Ok(pb::UserStatusChangedResponse { deliveries })
}

pub async fn project_created(
    api: &RealtimeApi,
    r: pb::ProjectCreatedRequest,
) -> Result<pb::ProjectCreatedResponse> {
    let project = parse_uuid("project_id", &r.project_id)?;
    let by = parse_uuid("created_by", &r.created_by)?;
    let row: Option<(String, Uuid)> =
        sqlx::query_as("SELECT name, organization_id FROM projects WHERE id = $1")
            .bind(project)
            .fetch_optional(&api.gw.db)
            .await?;
    let Some((name, org)) = row else {
        return Err(GatewayError::NotFound(format!(
            "project {project} not found"
        )));
    };
    let data = json!({"projectId": project, "name": name, "organizationId": org,
                      "createdBy": by, "timestamp": now_iso()});
    let d = api
        .publish(
            &Room::org(org),
            "project_created",
            &data,
            &r.idempotency_key,
        )
        .await?;
    Ok(pb::ProjectCreatedResponse {
        organization_id: org.to_string(),
        delivery: Some(d),
    })
}

pub async fn disconnect_user(
    api: &RealtimeApi,
    r: pb::DisconnectUserRequest,
) -> Result<pb::DisconnectUserResponse> {
    let control = Control::disconnect_user(&r.user_id, &r.reason)?;
    let (local_connections, instances_reached) = api.control(control).await?;
    Ok(pb::DisconnectUserResponse {
        local_connections,
        instances_reached,
    })
}

pub async fn unsubscribe_user(
    api: &RealtimeApi,
    r: pb::UnsubscribeUserRequest,
) -> Result<pb::UnsubscribeUserResponse> {
    let control = Control::unsubscribe_user(&r.user_id, &r.room)?;
    let (local_connections, instances_reached) = api.control(control).await?;
    Ok(pb::UnsubscribeUserResponse {
        local_connections,
        instances_reached,
    })
}
