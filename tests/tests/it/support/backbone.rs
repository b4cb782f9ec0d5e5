//! The four services on one environment in this process, as `make run` brings them up together:
//! what the whole-backbone tests (stack, dashboard metrics, outages) start, with a client per API.
use std::net::SocketAddr;

use ncy_proto::{
    cache::v1::cache_service_client::CacheServiceClient,
    jobs::v1::job_service_client::JobServiceClient,
    realtime::v1::realtime_service_client::RealtimeServiceClient,
};
use ncy_runtime::LocalAddrs;
use ncy_testkit::{InProcess, env_of};
use tonic::transport::Channel;

use super::jobs::Client as JobsClient;

/// The running services and where they listen.
pub struct Backbone {
    pub cache: LocalAddrs,
    pub jobs: LocalAddrs,
    pub worker: LocalAddrs,
    pub realtime: LocalAddrs,
    /// The realtime gateway's WebSocket listener (`NCY_WS_ADDR` must be set).
    pub ws: SocketAddr,
    running: Vec<InProcess>,
}

impl Backbone {
    /// Builds the four services from `env`, starts them and waits until each serves gRPC.
    pub async fn start(env: &[(String, String)]) -> anyhow::Result<Self> {
        let env = env_of(env);
        let cache = cache_gateway::Application::build(cache_gateway::Settings::load(&env)?).await?;
        let jobs = job_scheduler::Application::build(job_scheduler::Settings::load(&env)?).await?;
        let work = worker::Application::build(worker::Settings::load(&env)?).await?;
        let realtime =
            realtime_gateway::Application::build(realtime_gateway::Settings::load(&env)?).await?;
        let backbone = Self {
            cache: cache.local_addrs(),
            jobs: jobs.local_addrs(),
            worker: work.local_addrs(),
            ws: realtime
                .local_addrs()
                .websocket
                .ok_or_else(|| anyhow::anyhow!("no websocket listener"))?,
            realtime: realtime.local_addrs(),
            running: vec![
                InProcess::spawn(|s| cache.run_until_stopped(s)),
                InProcess::spawn(|s| jobs.run_until_stopped(s)),
                InProcess::spawn(|s| work.run_until_stopped(s)),
                InProcess::spawn(|s| realtime.run_until_stopped(s)),
            ],
        };
        for addrs in backbone.all() {
            ncy_testkit::wait_until_serving(addrs.grpc).await;
        }
        Ok(backbone)
    }

    /// Cache gateway, job scheduler, worker, realtime gateway.
    pub fn all(&self) -> [LocalAddrs; 4] {
        [self.cache, self.jobs, self.worker, self.realtime]
    }

    pub async fn cache_client(&self) -> anyhow::Result<CacheServiceClient<Channel>> {
        Ok(CacheServiceClient::connect(format!("http://{}", self.cache.grpc)).await?)
    }

    pub async fn jobs_client(&self) -> anyhow::Result<JobsClient> {
        Ok(JobServiceClient::connect(format!("http://{}", self.jobs.grpc)).await?)
    }

    pub async fn realtime_client(&self) -> anyhow::Result<RealtimeServiceClient<Channel>> {
        Ok(RealtimeServiceClient::connect(format!("http://{}", self.realtime.grpc)).await?)
    }

    /// Every service still running on its own (none exited or panicked, e.g. during an outage).
    pub fn assert_none_restarted(&self) {
        for (i, r) in self.running.iter().enumerate() {
            assert!(
                r.is_running(),
                "service #{i} ({:?}) stopped on its own",
                self.all()[i].grpc
            );
        }
    }

    /// Stops the four services, each drained within [`super::stop`]'s limit.
    pub async fn stop(self) -> anyhow::Result<()> {
        for r in self.running {
            super::stop(r).await?;
        }
        Ok(())
    }
}
