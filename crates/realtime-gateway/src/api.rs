//! `ncy.realtime.v1.RealtimeService`: publishing for internal services, presence, stats, the
//! seed's domain events, and server-side control of sockets (`DisconnectUser`, `UnsubscribeUser`). Input is validated at the edge (INVALID_ARGUMENT names the field and
//! nothing is published); every publish goes through the shared room bus.
use std::sync::{Arc, atomic::Ordering};

use ncy_bus::{PublishOptions, Published};
use ncy_proto::realtime::v1::{self as pb, realtime_service_server::RealtimeService};
use ncy_runtime::InstanceRegistry;
use ncy_types::{Room, ValidationError};
use serde_json::Value;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    control::{self, Control},
    error::GatewayError,
    gateway::Gateway,
    metrics,
};

mod rpc;
pub(crate) mod stats;

/// The RealtimeService implementation.
pub struct RealtimeApi {
    gw: Arc<Gateway>,
    /// The live instances of the realtime gateway, for `Stats(all_instances)`.
    instances: InstanceRegistry,
}

impl RealtimeApi {
    /// The API over a gateway; `instances` lists the other instances.
    pub fn new(gw: Arc<Gateway>, instances: InstanceRegistry) -> Self {
        Self { gw, instances }
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

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tonic::async_trait]
impl RealtimeService for RealtimeApi {
    async fn send_to_user(
        &self,
        r: Request<pb::SendToUserRequest>,
    ) -> Result<Response<pb::SendToUserResponse>, Status> {
        Ok(Response::new(
            rpc::send_to_user(self, r.into_inner()).await?,
        ))
    }

    async fn send_to_organization(
        &self,
        r: Request<pb::SendToOrganizationRequest>,
    ) -> Result<Response<pb::SendToOrganizationResponse>, Status> {
        Ok(Response::new(
            rpc::send_to_organization(self, r.into_inner()).await?,
        ))
    }

    async fn send_to_project(
        &self,
        r: Request<pb::SendToProjectRequest>,
    ) -> Result<Response<pb::SendToProjectResponse>, Status> {
        Ok(Response::new(
            rpc::send_to_project(self, r.into_inner()).await?,
        ))
    }

    async fn broadcast(
        &self,
        r: Request<pb::BroadcastRequest>,
    ) -> Result<Response<pb::BroadcastResponse>, Status> {
        Ok(Response::new(rpc::broadcast(self, r.into_inner()).await?))
    }

    async fn presence(
        &self,
        r: Request<pb::PresenceRequest>,
    ) -> Result<Response<pb::PresenceResponse>, Status> {
        Ok(Response::new(rpc::presence(self, r.into_inner()).await?))
    }

    async fn stats(
        &self,
        r: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let answer = stats::stats(&self.gw, &self.instances, r.get_ref()).await?;
        Ok(Response::new(answer))
    }

    async fn task_updated(
        &self,
        r: Request<pb::TaskUpdatedRequest>,
    ) -> Result<Response<pb::TaskUpdatedResponse>, Status> {
        Ok(Response::new(
            rpc::task_updated(self, r.into_inner()).await?,
        ))
    }

    async fn user_status_changed(
        &self,
        r: Request<pb::UserStatusChangedRequest>,
    ) -> Result<Response<pb::UserStatusChangedResponse>, Status> {
        Ok(Response::new(
            rpc::user_status_changed(self, r.into_inner()).await?,
        ))
    }

    async fn project_created(
        &self,
        r: Request<pb::ProjectCreatedRequest>,
    ) -> Result<Response<pb::ProjectCreatedResponse>, Status> {
        Ok(Response::new(
            rpc::project_created(self, r.into_inner()).await?,
        ))
    }

    async fn disconnect_user(
        &self,
        r: Request<pb::DisconnectUserRequest>,
    ) -> Result<Response<pb::DisconnectUserResponse>, Status> {
        Ok(Response::new(
            rpc::disconnect_user(self, r.into_inner()).await?,
        ))
    }

    async fn unsubscribe_user(
        &self,
        r: Request<pb::UnsubscribeUserRequest>,
    ) -> Result<Response<pb::UnsubscribeUserResponse>, Status> {
        Ok(Response::new(
            rpc::unsubscribe_user(self, r.into_inner()).await?,
        ))
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
        let mut c = self.gw.redis.get().await?;
        redis::cmd("HSET")
            .arg(self.gw.keys.user_status())
            .arg(user.to_string())
            .arg(status)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    async fn statuses(
        &self,
        users: &[ncy_bus::PresenceUser],
    ) -> Result<Vec<pb::UserStatus>, GatewayError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.gw.redis.get().await?;
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.gw.keys.user_status())
            .arg(users.iter().map(|u| u.user_id.as_str()).collect::<Vec<_>>())
            .query_async(&mut c)
            .await?;
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
