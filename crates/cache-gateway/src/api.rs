//! The `CacheService` gRPC implementation: validate, call the core, shape the answer. Thin on
//! purpose; behaviour lives in cache.rs, stampede.rs, rate_limit.rs, sessions.rs, stats.rs.
use std::sync::Arc;

use futures_util::StreamExt;
use ncy_proto::cache::v1::{self as pb, cache_service_server::CacheService};
use ncy_runtime::InstanceRegistry;
use ncy_types::keys::entry_key;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming, codegen::BoxStream};

use crate::{
    cache::{Core, Hit},
    codec,
    entities::EntityKind,
    error::CacheError,
    metrics::Layer,
    now_ms,
    rate_limit::{self, RateLimiter},
    sessions::{self, Session, Sessions},
    stampede::LoadRequest,
    stats, validate,
};

/// The service.
pub struct CacheApi {
    core: Arc<Core>,
    limiter: RateLimiter,
    sessions: Sessions,
    /// Fires when the instance starts draining: open GetStreams end instead of holding the drain
    /// up to the grace period.
    draining: CancellationToken,
    /// The live instances of the cache gateway, for `Stats(all_instances)`.
    instances: InstanceRegistry,
}

impl CacheApi {
    /// Serves `core` until `draining` fires; `instances` lists the other instances.
    pub fn new(core: Arc<Core>, draining: CancellationToken, instances: InstanceRegistry) -> Self {
        Self {
            core,
            limiter: RateLimiter::default(),
            sessions: Sessions::default(),
            draining,
            instances,
        }
    }
}

/// The wire form of a layer.
pub(crate) fn layer(l: Layer) -> i32 {
    match l {
        Layer::L1 => pb::CacheLayer::L1 as i32,
        Layer::L2 => pb::CacheLayer::L2 as i32,
        Layer::L3 => pb::CacheLayer::L3 as i32,
    }
}

fn ttl_remaining(hit: &Hit) -> i64 {
    if hit.stale {
        0
    } else {
        (hit.entry.expires_ms - now_ms()).max(0)
    }
}

fn to_pb(s: Session) -> pb::Session {
    pb::Session {
        session_id: s.id,
        user_id: s.user_id,
        data_json: s.data,
        created_at_ms: s.created_ms,
        updated_at_ms: s.updated_ms,
        expires_at_ms: s.expires_ms,
        ttl_seconds: s.ttl_secs,
    }
}

/// Reads of one GetStream served at once.
const STREAM_PIPELINE: usize = 64;

/// Get's work, shared by the unary RPC and GetStream: validate, read L1 then L2, shape the answer.
async fn read(core: &Core, req: pb::GetRequest) -> Result<pb::GetResponse, Status> {
    let (logical, full) = validate::target(&core.keys, "key", &req.key, req.api.as_ref())?;
    Ok(match core.get(&full).await {
        Some(hit) => pb::GetResponse {
            key: logical,
            found: true,
            value_json: hit.entry.value.to_string(),
            layer: layer(hit.layer),
            stale: hit.stale,
            ttl_remaining_ms: ttl_remaining(&hit),
        },
        None => pb::GetResponse {
            key: logical,
            ..Default::default()
        },
    })
}

#[tonic::async_trait]
impl CacheService for CacheApi {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        Ok(Response::new(read(&self.core, req.into_inner()).await?))
    }

    async fn get_stream(
        &self,
        req: Request<Streaming<pb::GetRequest>>,
    ) -> Result<Response<BoxStream<pb::GetStreamResponse>>, Status> {
        let core = self.core.clone();
        // On drain the stream takes no more reads; the ones taken are answered, then UNAVAILABLE
        // tells the caller to send whatever was not answered to another instance.
        let draining = self.draining.clone();
        let end = futures_util::stream::once(async move {
            draining.is_cancelled().then(|| {
                Err(Status::unavailable(
                    "the gateway is shutting down: reopen the stream (on another instance)",
                ))
            })
        })
        .filter_map(std::future::ready);
        // `buffered` serves up to STREAM_PIPELINE reads of the stream at once and answers in request
        // order; a transport error ends the stream (after that error).
        let answers = req
            .into_inner()
            .take_until(self.draining.clone().cancelled_owned())
            .map(move |msg| {
                let core = core.clone();
                async move {
                    let answer = match read(&core, msg?).await {
                        Ok(response) => pb::GetStreamResponse {
                            response: Some(response),
                            ..Default::default()
                        },
                        Err(status) => pb::GetStreamResponse {
                            response: None,
                            error_code: status.code() as i32,
                            error_message: status.message().to_owned(),
                        },
                    };
                    Ok(answer)
                }
            })
            .buffered(STREAM_PIPELINE)
            .scan(false, |failed, item: Result<_, Status>| {
                let end = *failed;
                *failed |= item.is_err();
                std::future::ready((!end).then_some(item))
            })
            .chain(end);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn set(&self, req: Request<pb::SetRequest>) -> Result<Response<pb::SetResponse>, Status> {
        let mut req = req.into_inner();
        let s = &self.core.settings;
        let (logical, full) = validate::target(&self.core.keys, "key", &req.key, req.api.as_ref())?;
        validate::settable("key", &logical, &self.core.loaders)?;
        // Validated where it is (a large value on a blocking thread), then handed back.
        let (value, max) = (std::mem::take(&mut req.value_json), s.max_value_bytes);
        req.value_json = codec::offload(value.len(), move || {
            validate::json("value_json", &value, max).map(|()| value)
        })
        .await??;
        let ttl = validate::ttl(
            "ttl_seconds",
            req.ttl_seconds,
            s.default_ttl.as_secs(),
            s.max_ttl.as_secs(),
        )?;
        validate::tags(&req.tags)?;
        let expires = self.core.set(&full, &req.value_json, ttl, req.tags).await?;
        Ok(Response::new(pb::SetResponse {
            key: logical,
            expires_at_ms: expires,
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = req.into_inner();
        let (logical, full) = validate::target(&self.core.keys, "key", &req.key, req.api.as_ref())?;
        let existed = self.core.delete(&full).await?;
        Ok(Response::new(pb::DeleteResponse {
            key: logical,
            existed,
        }))
    }

    async fn m_get(
        &self,
        req: Request<pb::MGetRequest>,
    ) -> Result<Response<pb::MGetResponse>, Status> {
        let req = req.into_inner();
        if req.keys.is_empty() || req.keys.len() > 1000 {
            return Err(CacheError::invalid("keys", "must hold 1 to 1000 keys").into());
        }
        let mut full = Vec::with_capacity(req.keys.len());
        for (i, k) in req.keys.iter().enumerate() {
            validate::key(&format!("keys[{i}]"), k)?;
            full.push(self.core.keys.cache_key(k));
        }
        let hits = self.core.mget(&full).await;
        let entries = req
            .keys
            .into_iter()
            .zip(hits)
            .map(|(key, hit)| match hit {
                Some(hit) => pb::MGetEntry {
                    key,
                    found: true,
                    value_json: hit.entry.value.to_string(),
                    layer: layer(hit.layer),
                    stale: hit.stale,
                    ttl_remaining_ms: ttl_remaining(&hit),
                },
                None => pb::MGetEntry {
                    key,
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(pb::MGetResponse { entries }))
    }

    async fn get_or_load(
        &self,
        req: Request<pb::GetOrLoadRequest>,
    ) -> Result<Response<pb::GetOrLoadResponse>, Status> {
        let req = req.into_inner();
        let loader = self.core.loaders.get(&req.kind)?;
        let id = loader.normalize_id(&req.id)?;
        if let Some(t) = req.ttl_seconds {
            validate::ttl(
                "ttl_seconds",
                Some(t),
                1,
                self.core.settings.max_ttl.as_secs(),
            )?;
        }
        let key = entry_key(&loader.kind, &id);
        let hit = self
            .core
            .get_or_load(LoadRequest {
                loader,
                id,
                ttl_secs: req.ttl_seconds,
                force: req.force_refresh,
            })
            .await?;
        Ok(Response::new(pb::GetOrLoadResponse {
            key,
            value_json: hit.entry.value.to_string(),
            layer: layer(hit.layer),
            stale: hit.stale,
            ttl_remaining_ms: ttl_remaining(&hit),
        }))
    }

    async fn invalidate_entity(
        &self,
        req: Request<pb::InvalidateEntityRequest>,
    ) -> Result<Response<pb::InvalidateEntityResponse>, Status> {
        let req = req.into_inner();
        let kind = EntityKind::requested(&req, &self.core.loaders)?;
        let id = kind.normalize_id(&req.id)?;
        let changed = kind.changed(&id);
        self.core.invalidate(&changed).await?;
        Ok(Response::new(pb::InvalidateEntityResponse {
            deleted_keys: changed.keys,
            invalidated_tags: changed.tag.into_iter().collect(),
        }))
    }

    async fn invalidate_tag(
        &self,
        req: Request<pb::InvalidateTagRequest>,
    ) -> Result<Response<pb::InvalidateTagResponse>, Status> {
        let req = req.into_inner();
        validate::tag_text("tag", &req.tag)?;
        let ts = self.core.invalidate_tag(&req.tag).await?;
        Ok(Response::new(pb::InvalidateTagResponse {
            invalidated_at_ms: ts,
        }))
    }

    async fn invalidate_pattern(
        &self,
        req: Request<pb::InvalidatePatternRequest>,
    ) -> Result<Response<pb::InvalidatePatternResponse>, Status> {
        let until = crate::pattern::deadline(req.metadata());
        let req = req.into_inner();
        let removed = self
            .core
            .invalidate_pattern(&req.pattern, req.dry_run, until)
            .await?;
        Ok(Response::new(pb::InvalidatePatternResponse { removed }))
    }

    async fn check_rate_limit(
        &self,
        req: Request<pb::CheckRateLimitRequest>,
    ) -> Result<Response<pb::CheckRateLimitResponse>, Status> {
        let req = req.into_inner();
        let cost = rate_limit::validate(
            &req.r#type,
            &req.identifier,
            req.limit,
            req.window_seconds,
            req.cost,
        )?;
        let key = self.core.keys.rate_limit(&req.r#type, &req.identifier);
        let d = self
            .limiter
            .check(
                &self.core.l2,
                &key,
                i64::from(req.limit),
                req.window_seconds * 1000,
                cost,
            )
            .await?;
        Ok(Response::new(pb::CheckRateLimitResponse {
            allowed: d.allowed,
            remaining: d.remaining,
            retry_after_ms: d.retry_after_ms,
            reset_at_ms: d.reset_at_ms,
            limit: req.limit,
        }))
    }

    async fn put_session(
        &self,
        req: Request<pb::PutSessionRequest>,
    ) -> Result<Response<pb::PutSessionResponse>, Status> {
        let req = req.into_inner();
        let s = &self.core.settings;
        let id = if req.session_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            sessions::validate_id("session_id", &req.session_id)?;
            req.session_id
        };
        let user = ncy_types::parse_uuid("user_id", &req.user_id).map_err(CacheError::from)?;
        let data = if req.data_json.is_empty() {
            "{}".to_owned()
        } else {
            req.data_json
        };
        validate::json("data_json", &data, s.max_session_bytes)?;
        let ttl = validate::ttl(
            "ttl_seconds",
            req.ttl_seconds,
            s.session_ttl.as_secs(),
            30 * 86_400,
        )?;
        let now = now_ms();
        let mut session = Session {
            id,
            user_id: user.to_string(),
            data,
            created_ms: now,
            updated_ms: now,
            expires_ms: now + ttl * 1000,
            ttl_secs: ttl,
        };
        let keys = &self.core.keys;
        let (skey, ikey) = (keys.session(&session.id), keys.user_sessions(user));
        let Some((created, created_ms)) = self
            .sessions
            .put(&self.core.l2, (&skey, &ikey), &session)
            .await?
        else {
            return Err(CacheError::FailedPrecondition(
                "session_id: belongs to another user".into(),
            )
            .into());
        };
        session.created_ms = created_ms;
        Ok(Response::new(pb::PutSessionResponse {
            session: Some(to_pb(session)),
            created,
        }))
    }

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let req = req.into_inner();
        sessions::validate_id("session_id", &req.session_id)?;
        let key = self.core.keys.session(&req.session_id);
        let session = self
            .sessions
            .get(&self.core.l2, &key, &req.session_id, req.touch, now_ms())
            .await?
            .ok_or_else(|| CacheError::NotFound(format!("session {} not found", req.session_id)))?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(to_pb(session)),
        }))
    }

    async fn delete_session(
        &self,
        req: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let req = req.into_inner();
        sessions::validate_id("session_id", &req.session_id)?;
        let existed = self
            .sessions
            .delete(&self.core.l2, &self.core.keys, &req.session_id)
            .await?;
        Ok(Response::new(pb::DeleteSessionResponse { existed }))
    }

    async fn list_user_sessions(
        &self,
        req: Request<pb::ListUserSessionsRequest>,
    ) -> Result<Response<pb::ListUserSessionsResponse>, Status> {
        let req = req.into_inner();
        let user = ncy_types::parse_uuid("user_id", &req.user_id).map_err(CacheError::from)?;
        if req.page_size < 0 {
            return Err(CacheError::invalid("page_size", "must not be negative").into());
        }
        let size = match req.page_size {
            0 => 50,
            n => n.min(500),
        };
        let offset: i64 = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| CacheError::invalid("page_token", "not from a previous response"))?
        };
        let (sessions, next) = self
            .sessions
            .list_page(
                &self.core.l2,
                &self.core.keys,
                &user.to_string(),
                offset,
                i64::from(size),
            )
            .await?;
        let sessions = sessions.into_iter().map(to_pb).collect();
        Ok(Response::new(pb::ListUserSessionsResponse {
            sessions,
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    async fn delete_user_sessions(
        &self,
        req: Request<pb::DeleteUserSessionsRequest>,
    ) -> Result<Response<pb::DeleteUserSessionsResponse>, Status> {
        let req = req.into_inner();
        let user = ncy_types::parse_uuid("user_id", &req.user_id).map_err(CacheError::from)?;
        for (i, id) in req.keep_session_ids.iter().enumerate() {
            sessions::validate_id(&format!("keep_session_ids[{i}]"), id)?;
        }
        let deleted = self
            .sessions
            .delete_all(
                &self.core.l2,
                &self.core.keys,
                &user.to_string(),
                &req.keep_session_ids,
            )
            .await?;
        Ok(Response::new(pb::DeleteUserSessionsResponse { deleted }))
    }

    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let answer = stats::stats(&self.core, &self.instances, req.get_ref()).await?;
        Ok(Response::new(answer))
    }
}
