//! The only place that names exchanges and queues, and declares them.
//!
//! Every name derives from one prefix (default `fleet`), so tests and several fleets can
//! share a broker. Stage and intake queues are quorum queues that dead-letter through the
//! fanout exchange `{p}.dlx` after `delivery_limit` redeliveries; `{p}.dlx` feeds both
//! `{p}.dlq` (kept for operators) and `{p}.dead` (read by the dispatcher, which records the
//! task as failed so its job still completes).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::stage::STAGES;

pub const DEFAULT_PREFIX: &str = "fleet";
/// Routing keys on the events exchange.
pub const EVENT_COMPLETED: &str = "job.completed";
pub const EVENT_CANCELLED: &str = "job.cancelled";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    /// Intake: job requests from the pipelines.
    pub fn jobs(&self) -> String {
        self.name("jobs")
    }

    /// `stage1`..`stage4`, `cpu`.
    pub fn stage_queue(&self, stage: &str) -> String {
        self.name(stage)
    }

    /// Worker → dispatcher outcome notices.
    pub fn outcomes(&self) -> String {
        self.name("outcomes")
    }

    pub fn dlq(&self) -> String {
        self.name("dlq")
    }

    pub fn dead(&self) -> String {
        self.name("dead")
    }

    pub fn events(&self) -> String {
        self.name("events")
    }

    pub fn dlx(&self) -> String {
        self.name("dlx")
    }

    /// Every queue the fleet owns, for `fleet queues` and test cleanup.
    pub fn all_queues(&self) -> Vec<String> {
        let mut q = vec![self.jobs()];
        q.extend(STAGES.iter().map(|s| self.stage_queue(s)));
        q.extend([self.outcomes(), self.dlq(), self.dead()]);
        q
    }

    /// Declares everything (idempotent; every process does it at start).
    pub async fn declare(&self, ch: &Channel, delivery_limit: u32) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            self.events().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.dlx().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
        for q in [self.dlq(), self.dead()] {
            declare_quorum(ch, &q, None).await?;
            ch.queue_bind(
                q.into(),
                self.dlx().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        let dl = Some((self.dlx(), delivery_limit));
        declare_quorum(ch, &self.jobs(), dl.clone()).await?;
        declare_quorum(ch, &self.outcomes(), dl.clone()).await?;
        for s in STAGES {
            declare_quorum(ch, &self.stage_queue(s), dl.clone()).await?;
        }
        Ok(())
    }

    /// Deletes every queue and exchange of this prefix (tests, `fleet` maintenance).
    pub async fn delete_all(&self, ch: &Channel) -> Result<(), lapin::Error> {
        for q in self.all_queues() {
            ch.queue_delete(q.into(), Default::default()).await?;
        }
        for x in [self.events(), self.dlx()] {
            ch.exchange_delete(x.into(), Default::default()).await?;
        }
        Ok(())
    }
}

async fn declare_quorum(
    ch: &Channel,
    name: &str,
    dead_letter: Option<(String, u32)>,
) -> Result<(), lapin::Error> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some((dlx, limit)) = dead_letter {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.into()),
        );
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit as i32));
    }
    let opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(ShortString::from(name), opts, args)
        .await?;
    Ok(())
}
