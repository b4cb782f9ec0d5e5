//! The job scheduler through its public interfaces: gRPC health and reflection, the admin port,
//! every JobService RPC implemented (none answers `UNIMPLEMENTED`), the drain, and the binary's
//! configuration errors and SIGTERM.
use std::time::Duration;

use job_scheduler::{Application, Settings};
use ncy_proto::jobs::v1::{QueueStatsRequest, job_service_client::JobServiceClient};
use ncy_testkit::{InProcess, env_of, free_port, service_env, set_env, unique_prefix};

const SERVICE_NAME: &str = "ncy.jobs.v1.JobService";

#[tokio::test]
async fn serves_health_reflection_and_admin_then_drains() -> anyhow::Result<()> {
    // The scheduler keeps everything in Redis: no DATABASE_URL needed.
    let settings = Settings::load(&env_of(&service_env(&unique_prefix(), None)))?;
    let app = Application::build(settings).await?;
    let addrs = app.local_addrs();
    let running = InProcess::spawn(|stop| app.run_until_stopped(stop));

    ncy_testkit::assert_service_basics(addrs, &[SERVICE_NAME]).await;
    let mut client = JobServiceClient::connect(format!("http://{}", addrs.grpc)).await?;
    let stats = client
        .queue_stats(QueueStatsRequest::default())
        .await?
        .into_inner();
    let names: Vec<&str> = stats.queues.iter().map(|q| q.queue.as_str()).collect();
    assert_eq!(names, ["email", "notification", "report", "cleanup"]);

    // Every RPC of the contract is implemented: an empty request gets an answer of the RPC's own
    // (INVALID_ARGUMENT naming a field, NOT_FOUND, OK…), never UNIMPLEMENTED.
    let paths: Vec<&str> = ncy_proto::REQUIRED_SCOPES
        .iter()
        .map(|(path, _)| *path)
        .filter(|p| p.starts_with(&format!("/{SERVICE_NAME}/")))
        .collect();
    // The proto build lists every RPC of the contract there (it fails for one without a scope).
    assert!(
        paths.contains(&"/ncy.jobs.v1.JobService/WatchJob"),
        "{paths:?}"
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", addrs.grpc))?
        .connect()
        .await?;
    let mut raw = tonic::client::Grpc::new(channel);
    for path in paths {
        raw.ready().await?;
        let mut request = tonic::Request::new(());
        request.set_timeout(Duration::from_secs(5));
        let answer = raw
            .unary::<(), (), _>(
                request,
                path.parse()?,
                ncy_proto::codec::ProstCodec::<(), ()>::default(),
            )
            .await;
        if let Err(status) = answer {
            assert_ne!(
                status.code(),
                tonic::Code::Unimplemented,
                "{path}: {status:?}"
            );
        }
    }

    running
        .stop(Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(
        ncy_testkit::grpc_health(addrs.grpc, "").await.is_err(),
        "gRPC port closed after drain"
    );
    Ok(())
}

#[tokio::test]
async fn binary_exits_64_on_bad_config_and_0_on_sigterm() -> anyhow::Result<()> {
    let mut env = service_env(&unique_prefix(), None);
    let port = free_port();
    set_env(&mut env, "NCY_GRPC_ADDR", &format!("127.0.0.1:{port}"));
    ncy_testkit::assert_binary_lifecycle(
        env!("CARGO_BIN_EXE_job-scheduler"),
        &env,
        "REDIS_URL",
        port,
    )
    .await;
    Ok(())
}
