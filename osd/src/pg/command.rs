//! Commands to a PG itself, answered by its primary in any state: `pg
//! PGID query`, `pg scrub|deep-scrub|repair PGID`, and the listing behind
//! `rados list-inconsistent-obj PGID`. They travel as client ops to the
//! PG's primary, so the client's map and retries find it.

use bytes::Bytes;
use kalmar_peering::scrub::{inconsistents_json, Inconsistency};
use kalmar_peering::Event;
use kalmar_proto::client::{errno, OpOutput, OsdOp, OsdOpReply};
use serde_json::{json, Value};

use super::{ClientOp, PgActor};
use crate::service::reply;

/// Inconsistent objects per listing page at most.
const MAX_LIST_PAGE: u32 = 1000;

impl PgActor {
    /// `pg query`: the state machine's view plus the scrubber's.
    pub(super) fn query_json(&self) -> Value {
        let mut q = self.pg.query_json();
        q["scrubber"] = self.scrub_query_json();
        q
    }

    pub(super) async fn pg_command(&mut self, op: ClientOp, cmd: OsdOp) {
        op.track.mark("started");
        let out = match cmd {
            OsdOp::PgQuery => Ok(self.query_json()),
            OsdOp::PgScrub { deep, repair } => {
                tracing::info!(pgid = %self.pgid, client = op.req.client, "{} requested", cmd.describe());
                // Boxed: the machine retries queued client ops, which may
                // be PG commands again.
                Box::pin(self.machine(Event::ScrubRequested { deep, repair })).await;
                Ok(json!({
                    "pgid": self.pgid.to_string(),
                    "osd": self.whoami,
                    "epoch": self.epoch,
                }))
            }
            OsdOp::PgListInconsistent { start_after, max } => {
                self.list_inconsistent(&start_after, max)
            }
            other => Err((
                -errno::EINVAL,
                format!("{} is not a PG command", other.describe()),
            )),
        };
        match out {
            Ok(v) => {
                let r = OsdOpReply {
                    tid: op.req.tid,
                    map_epoch: self.epoch,
                    outputs: vec![OpOutput {
                        rval: 0,
                        data: Bytes::from(v.to_string()),
                    }],
                    ..Default::default()
                };
                op.track.mark("done");
                reply(&op.reply_to, r.to_message());
            }
            Err((code, msg)) => {
                let e = self.epoch;
                self.answer_error(op, code, e, &msg);
            }
        }
    }

    /// A page of the last scrub's inconsistent objects after `start_after`.
    fn list_inconsistent(&self, start_after: &str, max: u32) -> Result<Value, (i32, String)> {
        let Some(r) = self.scrub_record() else {
            return Err((
                -errno::ENOENT,
                format!("No scrub information available for pg {}", self.pgid),
            ));
        };
        let max = max.clamp(1, MAX_LIST_PAGE) as usize;
        let mut page: Vec<&Inconsistency> = r
            .inconsistents
            .iter()
            .filter(|i| start_after.is_empty() || i.oid.as_str() > start_after)
            .take(max + 1)
            .collect();
        let more = page.len() > max;
        page.truncate(max);
        let mut v = inconsistents_json(r.interval, page);
        v["more"] = more.into();
        v["unlisted"] = r.unrecorded.into();
        Ok(v)
    }
}
