//! `ncyctl jobs enqueue-bulk FILE`: many jobs in one `EnqueueBulk` call per 1,000 lines.
//!
//! Each line is an `EnqueueRequest` in protobuf JSON, parsed by reflection over the contract, so the
//! file format is exactly the API's and needs no second schema here. A line without `payload_json`
//! gets `{}`, as `ncyctl jobs enqueue` without `--payload` does.
use std::io::{BufRead, BufReader};

use crate::rpc::Channel;
use ncy_proto::jobs::v1::{self as pb, job_service_client::JobServiceClient};

use crate::Outcome;
use crate::rpc::{failed, from_json, print_json};

/// Requests per EnqueueBulk call.
const BATCH: usize = 1_000;

pub async fn enqueue_bulk(
    client: &mut JobServiceClient<Channel>,
    file: &str,
    json: bool,
) -> Outcome {
    let requests = match read_requests(file) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("ncyctl: {message}");
            return Outcome::Failed;
        }
    };
    let mut results = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(BATCH) {
        let request = pb::EnqueueBulkRequest {
            jobs: chunk.to_vec(),
        };
        match client.enqueue_bulk(request).await {
            Ok(r) => results.extend(r.into_inner().results),
            Err(s) => {
                if !results.is_empty() {
                    eprintln!(
                        "ncyctl: {} jobs were enqueued before the failure",
                        results.len()
                    );
                }
                return failed(s);
            }
        }
    }
    let response = pb::EnqueueBulkResponse { results };
    if json {
        print_json(&response, "ncy.jobs.v1.EnqueueBulkResponse");
    } else {
        for r in &response.results {
            println!(
                "{}{}",
                r.job_id,
                if r.deduplicated {
                    " (deduplicated)"
                } else {
                    ""
                }
            );
        }
    }
    Outcome::Ok
}

fn read_requests(file: &str) -> Result<Vec<pb::EnqueueRequest>, String> {
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file).map_err(|e| format!("cannot open {file}: {e}"))?;
        Box::new(BufReader::new(f))
    };
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {file}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut request = from_json::<pb::EnqueueRequest>(&line, "ncy.jobs.v1.EnqueueRequest")
            .map_err(|e| format!("{file}:{}: {e}", n + 1))?;
        if request.payload_json.is_empty() {
            "{}".clone_into(&mut request.payload_json);
        }
        out.push(request);
    }
    if out.is_empty() {
        return Err(format!("{file} holds no jobs"));
    }
    Ok(out)
}
