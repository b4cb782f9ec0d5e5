//! `ncyctl health`: the standard `grpc.health.v1` check against any NCY service.
use std::time::Duration;

use clap::Args;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::Outcome;

/// Which service to ask.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// gRPC address, e.g. http://127.0.0.1:50051.
    #[arg(long, env = "NCY_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Service name to check (e.g. ncy.cache.v1.CacheService); empty means the whole server.
    #[arg(long, default_value = "")]
    service: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
}

pub async fn run(args: HealthArgs, json: bool) -> Outcome {
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let endpoint = match tonic::transport::Endpoint::from_shared(args.addr.clone()) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => {
            eprintln!("ncyctl: --addr {:?} is not a valid URL: {e}", args.addr);
            return Outcome::Failed;
        }
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "ncyctl: service unavailable: cannot reach {}: {}",
                args.addr,
                crate::rpc::causes(&e)
            );
            return Outcome::Unavailable;
        }
    };
    let status = match HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
    {
        Ok(reply) => reply.into_inner().status(),
        Err(status) if status.code() == tonic::Code::NotFound => {
            eprintln!("ncyctl: {} does not serve {:?}", args.addr, args.service);
            return Outcome::Failed;
        }
        Err(status) => {
            eprintln!("ncyctl: health check failed: {}", status.message());
            return Outcome::Unavailable;
        }
    };
    let name = status.as_str_name();
    if json {
        println!(
            "{}",
            serde_json::json!({"addr": args.addr, "service": args.service, "status": name})
        );
    } else {
        println!("{name}");
    }
    if status == ServingStatus::Serving {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}
