//! The completer of a runner: records the outcomes of finished jobs in batches (group commit), so
//! under load one script call records many jobs, and at concurrency 1 it runs beside the next
//! fetch. Split from [`crate::runner`], which starts one per queue.
use ncy_queue::{Engine, Finish, Finished};
use tokio::sync::{mpsc, oneshot};

use crate::runner::RunnerConfig;

/// Records completions in batches: one task per runner takes every outcome that arrived while the
/// previous batch was being written and records them with one script call (group commit). Under
/// load that is one call for many jobs; at concurrency 1 it runs beside the next fetch.
#[derive(Clone)]
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Completion>,
}

struct Completion {
    job_id: String,
    outcome: Finish,
    text: String,
    reply: oneshot::Sender<Result<bool, String>>,
}

/// The most outcomes one script call records (bounds the script's run time and argument count).
const MAX_COMPLETE_BATCH: usize = 256;

impl Completer {
    /// The completer of `cfg`'s queue and its task, which ends when every handle is dropped.
    pub(crate) fn start(engine: Engine, cfg: &RunnerConfig) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
        let (queue, consumer) = (cfg.queue, cfg.consumer.clone());
        let task = tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, MAX_COMPLETE_BATCH).await > 0 {
                let jobs: Vec<Finished<'_>> = batch
                    .iter()
                    .map(|c| Finished {
                        job_id: &c.job_id,
                        outcome: c.outcome,
                        text: &c.text,
                    })
                    .collect();
                let written = engine.finish(queue, &consumer, &jobs).await;
                drop(jobs);
                metrics::histogram!("queue_complete_batch_size", "queue" => queue.as_str())
                    .record(batch.len() as f64);
                match written {
                    Ok(flags) => {
                        for (c, ours) in batch.drain(..).zip(flags) {
                            let _ = c.reply.send(Ok(ours));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for c in batch.drain(..) {
                            let _ = c.reply.send(Err(msg.clone()));
                        }
                    }
                }
                batch.clear();
            }
        });
        (Self { tx }, task)
    }

    /// Records one outcome with the next batch; false when the job was no longer ours.
    pub(crate) async fn finish(
        &self,
        job_id: &str,
        outcome: Finish,
        text: String,
    ) -> Result<bool, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Completion {
                job_id: job_id.to_owned(),
                outcome,
                text,
                reply,
            })
            .map_err(|_| "the completer has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the completer dropped the outcome".to_owned())?
    }
}
