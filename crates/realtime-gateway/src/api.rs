//! `ncy.realtime.v1.RealtimeService`: publishing for internal services, presence, stats, the
//! seed's domain events, and server-side control of sockets (`DisconnectUser`, `UnsubscribeUser`). Input is validated at the edge (INVALID_ARGUMENT names the field and
//! nothing is published); every publish goes through the shared room bus.
use std::sync::{Arc, atomic::Ordering};

use ncy_bus::{PublishOptions, Published};
use ncy_proto::realtime::v1::{self as pb, realtime_service_server::RealtimeService};
use ncy_types::{Room, ValidationError, parse_uuid};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    control::{self, Control},
    error::GatewayError,
    gateway::Gateway,
    metrics,
};

/// The RealtimeService implementation.
pub struct RealtimeApi {
    gw: Arc<Gateway>,
}

impl RealtimeApi {
    /// The API over a gateway.
    pub fn new(gw: Arc<Gateway>) -> Self {
        Self { gw }
    }

    fn data(&self, field: &str, text: &str) -> Result<Value, GatewayError> {
        if text.len() > self.gw.limits.max_data_bytes {
            return Err(ValidationError::new(
                field,
                format!("at most {} bytes", self.gw.limits.max_data_bytes),
            )
            .into());
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text)
            .map_err(|e| ValidationError::new(field, format!("not valid JSON: {e}")).into())
    }

    async fn publish(
        &self,
        room: &Room,
        event: &str,
        data: &Value,
        key: &str,
    ) -> Result<pb::RoomDelivery, GatewayError> {
        let options = PublishOptions {
            idempotency_key: (!key.is_empty()).then(|| key.to_owned()),
        };
        let p: Published = self
            .gw
            .publisher
            .publish_with(room, event, data, &options)
            .await?;
        if !p.deduplicated {
            self.gw.messages_published.fetch_add(1, Ordering::Relaxed);
            metrics::published();
        }
        Ok(pb::RoomDelivery {
            room: room.name(),
            offset: p.offset,
            epoch: p.epoch,
            deduplicated: p.deduplicated,
            published_at_ms: p.ts_ms,
        })
    }

    async fn send(
        &self,
        room: Result<Room, ValidationError>,
        event: &str,
        data_json: &str,
        key: &str,
    ) -> Result<pb::RoomDelivery, GatewayError> {
        let room = room?;
        ncy_types::realtime::validate_event(event)?;
        let data = self.data("data_json", data_json)?;
        self.publish(&room, event, &data, key).await
    }
}

fn uuid(field: &str, s: &str) -> Result<Uuid, GatewayError> {
    Ok(parse_uuid(field, s)?)
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tonic::async_trait]
impl RealtimeService for RealtimeApi {
    async fn send_to_user(
        &self,
        r: Request<pb::SendToUserRequest>,
    ) -> Result<Response<pb::SendToUserResponse>, Status> {
        let r = r.into_inner();
        let room = parse_uuid("user_id", &r.user_id).map(Room::user);
        let d = self
            .send(room, &r.event, &r.data_json, &r.idempotency_key)
            .await?;
        Ok(Response::new(pb::SendToUserResponse { delivery: Some(d) }))
    }

    async fn send_to_organization(
        &self,
        r: Request<pb::SendToOrganizationRequest>,
    ) -> Result<Response<pb::SendToOrganizationResponse>, Status> {
        let r = r.into_inner();
        let room = parse_uuid("organization_id", &r.organization_id).map(Room::org);
        let d = self
            .send(room, &r.event, &r.data_json, &r.idempotency_key)
            .await?;
        Ok(Response::new(pb::SendToOrganizationResponse {
            delivery: Some(d),
        }))
    }

    async fn send_to_project(
        &self,
        r: Request<pb::SendToProjectRequest>,
    ) -> Result<Response<pb::SendToProjectResponse>, Status> {
        let r = r.into_inner();
        let room = parse_uuid("project_id", &r.project_id).map(Room::project);
        let d = self
            .send(room, &r.event, &r.data_json, &r.idempotency_key)
            .await?;
        Ok(Response::new(pb::SendToProjectResponse {
            delivery: Some(d),
        }))
    }

    async fn broadcast(
        &self,
        r: Request<pb::BroadcastRequest>,
    ) -> Result<Response<pb::BroadcastResponse>, Status> {
        let r = r.into_inner();
        let d = self
            .send(
                Ok(Room::Broadcast),
                &r.event,
                &r.data_json,
                &r.idempotency_key,
            )
            .await?;
        Ok(Response::new(pb::BroadcastResponse { delivery: Some(d) }))
    }

    async fn presence(
        &self,
        r: Request<pb::PresenceRequest>,
    ) -> Result<Response<pb::PresenceResponse>, Status> {
        let r = r.into_inner();
        let room: Room = r.room.parse().map_err(GatewayError::from)?;
        if r.page_size < 0 {
            return Err(GatewayError::from(ValidationError::new(
                "page_size",
                "must not be negative",
            ))
            .into());
        }
        if room == Room::Broadcast {
            return Err(GatewayError::from(ValidationError::new(
                "room",
                "broadcast has no presence (every socket is in it)",
            ))
            .into());
        }
        let max = self.gw.limits.presence_max_users;
        let size = match usize::try_from(r.page_size) {
            Ok(0) | Err(_) => max,
            Ok(n) => n.min(max),
        };
        if !r.page_token.is_empty() && Uuid::parse_str(&r.page_token).is_err() {
            return Err(GatewayError::from(ValidationError::new("page_token", "malformed")).into());
        }
        let name = room.name();
        let users = self
            .gw
            .presence
            .list(&name)
            .await
            .map_err(GatewayError::from)?;
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
        let statuses = self.statuses(&page).await?;
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
        Ok(Response::new(pb::PresenceResponse {
            room: name,
            users,
            next_page_token: next,
            total,
        }))
    }

    async fn stats(
        &self,
        _r: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let gw = &self.gw;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Ok(Response::new(pb::StatsResponse {
            instance_id: gw.instance_id.clone(),
            started_at_ms: gw.started_at_ms,
            connections: gw.connections.load(Ordering::Relaxed) as u64,
            authenticated_connections: gw.authenticated.load(Ordering::Relaxed) as u64,
            rooms: gw.hub.room_count() as u64,
            messages_in: load(&gw.messages_in),
            messages_out: load(&gw.hub.messages_out),
            messages_published: load(&gw.messages_published),
            slow_client_disconnects: load(&gw.slow_client_disconnects),
            recovery_hits: load(&gw.hub.recovery_hits),
            recovery_misses: load(&gw.hub.recovery_misses),
            bus_connected: gw
                .hub
                .subscriber()
                .is_some_and(ncy_bus::Subscriber::connected),
            draining: gw.stop.is_cancelled(),
        }))
    }

    async fn task_updated(
        &self,
        r: Request<pb::TaskUpdatedRequest>,
    ) -> Result<Response<pb::TaskUpdatedResponse>, Status> {
        let r = r.into_inner();
        let task = uuid("task_id", &r.task_id)?;
        let by = uuid("updated_by", &r.updated_by)?;
        let changes = match self.data("changes_json", &r.changes_json)? {
            Value::Null => json!({}),
            v @ Value::Object(_) => v,
            _ => {
                return Err(GatewayError::from(ValidationError::new(
                    "changes_json",
                    "must be a JSON object",
                ))
                .into());
            }
        };
        let row: Option<(Uuid, Option<Uuid>, String)> =
            sqlx::query_as("SELECT project_id, assignee_id, title FROM tasks WHERE id = $1")
                .bind(task)
                .fetch_optional(&self.gw.db)
                .await
                .map_err(GatewayError::from)?;
        let Some((project, assignee, title)) = row else {
            return Err(GatewayError::NotFound(format!("task {task} not found")).into());
        };
        let ts = now_iso();
        let data = json!({"taskId": task, "projectId": project, "changes": changes,
                          "updatedBy": by, "timestamp": ts});
        let project_delivery = self
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
            let d = self
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
        Ok(Response::new(response))
    }

    async fn user_status_changed(
        &self,
        r: Request<pb::UserStatusChangedRequest>,
    ) -> Result<Response<pb::UserStatusChangedResponse>, Status> {
        let r = r.into_inner();
        let user = uuid("user_id", &r.user_id)?;
        let status = match pb::UserStatus::try_from(r.status) {
            Ok(pb::UserStatus::Online) => "online",
            Ok(pb::UserStatus::Away) => "away",
            Ok(pb::UserStatus::Busy) => "busy",
            Ok(pb::UserStatus::Offline) => "offline",
            _ => {
                return Err(GatewayError::from(ValidationError::new(
                    "status",
                    "must be ONLINE, AWAY, BUSY or OFFLINE",
                ))
                .into());
            }
        };
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
            .bind(user)
            .fetch_one(&self.gw.db)
            .await
            .map_err(GatewayError::from)?;
        if !exists {
            return Err(GatewayError::NotFound(format!("user {user} not found")).into());
        }
        let orgs: Vec<Uuid> = sqlx::query_scalar(
            "SELECT organization_id FROM organization_members WHERE user_id = $1 ORDER BY organization_id",
        )
        .bind(user)
        .fetch_all(&self.gw.db)
        .await
        .map_err(GatewayError::from)?;
        self.record_status(user, status).await?;
        let data = json!({"userId": user, "status": status, "timestamp": now_iso()});
        let mut deliveries = Vec::with_capacity(orgs.len());
        for org in orgs {
            deliveries.push(
                self.publish(
                    &Room::org(org),
                    "user_status_changed",
                    &data,
                    &r.idempotency_key,
                )
                .await?,
            );
        }
        Ok(Response::new(pb::UserStatusChangedResponse { deliveries }))
    }

    async fn project_created(
        &self,
        r: Request<pb::ProjectCreatedRequest>,
    ) -> Result<Response<pb::ProjectCreatedResponse>, Status> {
        let r = r.into_inner();
        let project = uuid("project_id", &r.project_id)?;
        let by = uuid("created_by", &r.created_by)?;
        let row: Option<(String, Uuid)> =
            sqlx::query_as("SELECT name, organization_id FROM projects WHERE id = $1")
                .bind(project)
                .fetch_optional(&self.gw.db)
                .await
                .map_err(GatewayError::from)?;
        let Some((name, org)) = row else {
            return Err(GatewayError::NotFound(format!("project {project} not found")).into());
        };
        let data = json!({"projectId": project, "name": name, "organizationId": org,
                          "createdBy": by, "timestamp": now_iso()});
        let d = self
            .publish(
                &Room::org(org),
                "project_created",
                &data,
                &r.idempotency_key,
            )
            .await?;
        Ok(Response::new(pb::ProjectCreatedResponse {
            organization_id: org.to_string(),
            delivery: Some(d),
        }))
    }

    async fn disconnect_user(
        &self,
        r: Request<pb::DisconnectUserRequest>,
    ) -> Result<Response<pb::DisconnectUserResponse>, Status> {
        let r = r.into_inner();
        let control =
            Control::disconnect_user(&r.user_id, &r.reason).map_err(GatewayError::from)?;
        let (local_connections, instances_reached) = self.control(control).await?;
        Ok(Response::new(pb::DisconnectUserResponse {
            local_connections,
            instances_reached,
        }))
    }

    async fn unsubscribe_user(
        &self,
        r: Request<pb::UnsubscribeUserRequest>,
    ) -> Result<Response<pb::UnsubscribeUserResponse>, Status> {
        let r = r.into_inner();
        let control = Control::unsubscribe_user(&r.user_id, &r.room).map_err(GatewayError::from)?;
        let (local_connections, instances_reached) = self.control(control).await?;
        Ok(Response::new(pb::UnsubscribeUserResponse {
            local_connections,
            instances_reached,
        }))
    }
}

impl RealtimeApi {
    /// Applies `control` to this instance's sockets, then tells the other instances: (sockets
    /// here, instances reached). Redis down is UNAVAILABLE — after the local part was applied.
    async fn control(&self, control: Control) -> Result<(u32, u32), GatewayError> {
        let local = control.apply(&self.gw);
        tracing::info!(control = ?control, sockets = local, "control applied");
        let reached = control::publish(&self.gw, control).await?;
        Ok((u32::try_from(local).unwrap_or(u32::MAX), reached))
    }

    async fn record_status(&self, user: Uuid, status: &str) -> Result<(), GatewayError> {
        let mut c = self.gw.redis.get().await.map_err(ncy_bus::BusError::from)?;
        redis::cmd("HSET")
            .arg(self.gw.keys.user_status())
            .arg(user.to_string())
            .arg(status)
            .query_async::<()>(&mut c)
            .await
            .map_err(ncy_bus::BusError::from)?;
        Ok(())
    }

    async fn statuses(
        &self,
        users: &[ncy_bus::PresenceUser],
    ) -> Result<Vec<pb::UserStatus>, GatewayError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.gw.redis.get().await.map_err(ncy_bus::BusError::from)?;
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.gw.keys.user_status())
            .arg(users.iter().map(|u| u.user_id.as_str()).collect::<Vec<_>>())
            .query_async(&mut c)
            .await
            .map_err(ncy_bus::BusError::from)?;
        Ok(raw
            .into_iter()
            .map(|s| match s.as_deref() {
                Some("online") => pb::UserStatus::Online,
                Some("away") => pb::UserStatus::Away,
                Some("busy") => pb::UserStatus::Busy,
                Some("offline") => pb::UserStatus::Offline,
                _ => pb::UserStatus::Unspecified,
            })
            .collect())
    }
}
