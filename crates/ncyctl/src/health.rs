//! `ncyctl health`: what an operator needs to know about one NCY server at 3 a.m. — is it ready,
//! which of its gRPC services work right now, and which of its dependencies answer — read from the
//! standard `grpc.health.v1` service (open to every caller: no API key is sent or needed).
//!
//! Readiness does not follow shared dependencies (see `ncy_runtime::readiness`): when Redis is down
//! every replica is equally worse off, so a server stays ready (`""` SERVING) while the named
//! services that cannot work without Redis turn NOT_SERVING and `ncy.dependency.redis` says it is
//! down. A lone "SERVING" would hide all of that, so without `--service` this asks for every entry
//! a server may have — `""`, each NCY gRPC service of the contracts, and `ncy.dependency.<name>`
//! for each dependency a service may probe — and leaves out the ones it does not have (NOT_FOUND).
//!
//! The exit code follows readiness: 0 while the server is SERVING, degraded or not (a degraded
//! server is still ready and serves what does not need the missing dependency; scripts that wait
//! for a server to come up rely on that), 1 when it is not (starting, draining, or a pool of this
//! instance wedged), 69 when it cannot be asked. `--service NAME` is the single check: that entry's
//! status, exit 0 only for SERVING.
use std::{collections::BTreeSet, fmt::Write as _, time::Duration};

use clap::Args;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::Outcome;

/// The dependencies a service may probe, in the order they are shown.
const DEPENDENCIES: &[&str] = &["redis", "postgres"];

/// Health name of a dependency's entry: what `ncy_runtime::service::dependency_health_name` makes
/// (written out here so the CLI does not link the service runtime; the process tests check it
/// against a real server).
fn dependency_entry(dependency: &str) -> String {
    format!("ncy.dependency.{dependency}")
}

/// Which server to ask, and about what.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// gRPC address, e.g. http://127.0.0.1:50051.
    #[arg(long, env = "NCY_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Check only this entry (e.g. ncy.cache.v1.CacheService, ncy.dependency.redis; "" is the
    /// whole server's readiness) and print its status. Without it: the server, its services and
    /// its dependencies.
    #[arg(long)]
    service: Option<String>,
    /// Give up on each call after this many seconds.
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
    let mut client = HealthClient::new(channel);
    match &args.service {
        Some(service) => single(&mut client, &args.addr, service, json).await,
        None => whole(&mut client, &args.addr, json).await,
    }
}

/// The status of one entry; `None` when the server does not have it.
async fn check(
    client: &mut HealthClient<Channel>,
    service: &str,
) -> Result<Option<ServingStatus>, Outcome> {
    match client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
    {
        Ok(reply) => Ok(Some(reply.into_inner().status())),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => {
            eprintln!(
                "ncyctl: health check of {service:?} failed: {}",
                status.message()
            );
            Err(Outcome::Unavailable)
        }
    }
}

/// `--service NAME`: one entry, as `ncyctl health` always answered before it showed the whole server.
async fn single(
    client: &mut HealthClient<Channel>,
    addr: &str,
    service: &str,
    json: bool,
) -> Outcome {
    let status = match check(client, service).await {
        Ok(Some(status)) => status,
        Ok(None) => {
            eprintln!("ncyctl: {addr} does not serve {service:?}");
            return Outcome::Failed;
        }
        Err(outcome) => return outcome,
    };
    let name = status.as_str_name();
    if json {
        println!(
            "{}",
            serde_json::json!({"addr": addr, "service": service, "status": name})
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

/// Every NCY gRPC service of the contracts, e.g. `ncy.jobs.v1.JobService`: the distinct
/// `pkg.Service` of the RPC paths (`/pkg.Service/Method`) the protos define.
fn ncy_services() -> BTreeSet<&'static str> {
    ncy_proto::REQUIRED_SCOPES
        .iter()
        .filter_map(|(path, _)| path.strip_prefix('/')?.split_once('/'))
        .map(|(service, _)| service)
        .collect()
}

/// What one server says about itself.
#[derive(Debug)]
struct Picture {
    /// The `""` entry: readiness of the whole server.
    server: ServingStatus,
    /// The NCY services it serves, with their status.
    services: Vec<(&'static str, ServingStatus)>,
    /// The dependencies it probes, with whether each answers now.
    dependencies: Vec<(&'static str, bool)>,
}

impl Picture {
    fn ready(&self) -> bool {
        self.server == ServingStatus::Serving
    }

    fn down(&self) -> Vec<&'static str> {
        self.dependencies
            .iter()
            .filter(|(_, up)| !up)
            .map(|(name, _)| *name)
            .collect()
    }

    /// Ready with some dependency down.
    fn degraded(&self) -> bool {
        self.ready() && !self.down().is_empty()
    }

    /// One aligned line per entry, then what it means when anything is wrong.
    fn human(&self) -> String {
        let mut rows: Vec<(String, &str)> = vec![("server".to_owned(), self.server.as_str_name())];
        rows.extend(
            self.services
                .iter()
                .map(|(name, status)| ((*name).to_owned(), status.as_str_name())),
        );
        rows.extend(self.dependencies.iter().map(|(name, up)| {
            (
                format!("dependency {name}"),
                if *up { "UP" } else { "DOWN" },
            )
        }));
        let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (label, status) in rows {
            let _ = writeln!(out, "{label:<width$}  {status}");
        }
        let down = self.down().join(", ");
        if self.degraded() {
            let _ = writeln!(
                out,
                "degraded: {down} down — ready, serving what does not need it"
            );
        } else if !self.ready() {
            let _ = write!(
                out,
                "not ready: starting, draining or a pool of this instance wedged (/readyz on the admin port says which)"
            );
            if !down.is_empty() {
                let _ = write!(out, "; {down} down");
            }
            out.push('\n');
        }
        out
    }

    fn json(&self, addr: &str) -> serde_json::Value {
        let services: serde_json::Map<_, _> = self
            .services
            .iter()
            .map(|(name, status)| ((*name).to_owned(), status.as_str_name().into()))
            .collect();
        let dependencies: serde_json::Map<_, _> = self
            .dependencies
            .iter()
            .map(|(name, up)| ((*name).to_owned(), if *up { "up" } else { "down" }.into()))
            .collect();
        serde_json::json!({
            "addr": addr,
            "status": self.server.as_str_name(),
            "degraded": self.degraded(),
            "services": services,
            "dependencies": dependencies,
        })
    }
}

/// Without `--service`: the server, its services and its dependencies.
async fn whole(client: &mut HealthClient<Channel>, addr: &str, json: bool) -> Outcome {
    let picture = match ask(client).await {
        Ok(Some(picture)) => picture,
        Ok(None) => {
            eprintln!("ncyctl: {addr} has no health entry for the whole server (\"\")");
            return Outcome::Failed;
        }
        Err(outcome) => return outcome,
    };
    if json {
        println!("{}", picture.json(addr));
    } else {
        print!("{}", picture.human());
    }
    if picture.ready() {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}

/// Asks for every entry, one call after the other: the health service answers from memory, so a
/// server that answered the first call answers the rest at once. `None` when `""` is unknown.
async fn ask(client: &mut HealthClient<Channel>) -> Result<Option<Picture>, Outcome> {
    let Some(server) = check(client, "").await? else {
        return Ok(None);
    };
    let mut services = Vec::new();
    for name in ncy_services() {
        if let Some(status) = check(client, name).await? {
            services.push((name, status));
        }
    }
    let mut dependencies = Vec::new();
    for name in DEPENDENCIES {
        if let Some(status) = check(client, &dependency_entry(name)).await? {
            dependencies.push((*name, status == ServingStatus::Serving));
        }
    }
    Ok(Some(Picture {
        server,
        services,
        dependencies,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ncy_service_is_asked_about() {
        let services = ncy_services();
        for name in [
            "ncy.cache.v1.CacheService",
            "ncy.jobs.v1.JobService",
            "ncy.realtime.v1.RealtimeService",
        ] {
            assert!(services.contains(name), "{services:?}");
        }
        assert!(
            services
                .iter()
                .all(|s| s.starts_with("ncy.") && !s.contains('/')),
            "{services:?}"
        );
    }

    fn picture(server: ServingStatus, redis_up: bool) -> Picture {
        let jobs = if redis_up && server == ServingStatus::Serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        Picture {
            server,
            services: vec![("ncy.jobs.v1.JobService", jobs)],
            dependencies: vec![("redis", redis_up), ("postgres", true)],
        }
    }

    #[test]
    fn human_lines_are_aligned_and_say_what_is_wrong() {
        let healthy = picture(ServingStatus::Serving, true).human();
        assert_eq!(
            healthy,
            "server                  SERVING\n\
             ncy.jobs.v1.JobService  SERVING\n\
             dependency redis        UP\n\
             dependency postgres     UP\n"
        );

        let degraded = picture(ServingStatus::Serving, false).human();
        let lines: Vec<&str> = degraded.lines().collect();
        assert_eq!(lines[1], "ncy.jobs.v1.JobService  NOT_SERVING");
        assert_eq!(lines[2], "dependency redis        DOWN");
        assert_eq!(
            lines[4],
            "degraded: redis down — ready, serving what does not need it"
        );

        let starting = picture(ServingStatus::NotServing, false).human();
        let last = starting.lines().last().unwrap_or_default();
        assert!(last.starts_with("not ready: "), "{starting}");
        assert!(last.ends_with("; redis down"), "{starting}");
        assert!(!starting.contains("degraded"), "{starting}");
    }

    #[test]
    fn json_has_status_services_and_dependencies() {
        let v = picture(ServingStatus::Serving, false).json("http://x");
        assert_eq!(v["status"], "SERVING");
        assert_eq!(v["degraded"], true);
        assert_eq!(v["services"]["ncy.jobs.v1.JobService"], "NOT_SERVING");
        assert_eq!(v["dependencies"]["redis"], "down");
        assert_eq!(v["dependencies"]["postgres"], "up");
        let v = picture(ServingStatus::NotServing, false).json("http://x");
        assert_eq!(v["degraded"], false, "not ready is worse than degraded");
    }
}
