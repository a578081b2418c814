//! Room history in the same database as the accounts, so it outlives rooms and restarts.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    async fn insert(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        room: &str,
        msg: &msrp_chat::Stored,
    ) -> Result<(), StoreError> {
        let q = self
            .query(&self.sql.history_insert)
            .bind(room.to_owned())
            .bind(msg.sender.clone())
            .bind(msg.display.clone())
            .bind(msg.datetime.clone())
            .bind(msg.content_type.clone())
            .bind(msg.body.to_vec());
        self.timed(q.execute(&mut **tx)).await.map(|_| ())
    }

    /// Forgets all but the newest `keep` messages of `room`.
    async fn trim(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, room: &str, keep: usize) -> Result<(), StoreError> {
        let q = self.query(&self.sql.history_cut).bind(room.to_owned()).bind(keep as i64);
        let Some(cut) = self.timed(q.fetch_optional(&mut **tx)).await? else { return Ok(()) };
        let cut: i64 = cut.try_get(0)?;
        let q = self.query(&self.sql.history_trim).bind(room.to_owned()).bind(cut);
        self.timed(q.execute(&mut **tx)).await.map(|_| ())
    }

    /// Stores a batch in one transaction; if that fails, each message on its own, so that
    /// one message the database refuses (a text it cannot hold) loses only itself.
    async fn append_all(&self, batch: &[(&str, &msrp_chat::Stored)], keep: usize) -> Result<(), StoreError> {
        let Err(e) = self.append_tx(batch, keep).await else { return Ok(()) };
        if batch.len() == 1 || matches!(e, StoreError::Timeout(_)) {
            return Err(e);
        }
        let mut lost = 0;
        let mut last = None;
        for one in batch {
            if let Err(e) = self.append_tx(std::slice::from_ref(one), keep).await {
                lost += 1;
                last = Some(e);
            }
        }
        match last {
            None => Ok(()),
            Some(e) => Err(StoreError::Lost(format!("{lost} of {} messages not stored: {e}", batch.len()))),
        }
    }

    async fn append_tx(&self, batch: &[(&str, &msrp_chat::Stored)], keep: usize) -> Result<(), StoreError> {
        let mut tx = self.timed(self.pool.begin()).await?;
        for (room, msg) in batch {
            self.insert(&mut tx, room, msg).await?;
        }
        let mut rooms: Vec<&str> = batch.iter().map(|(r, _)| *r).collect();
        rooms.sort_unstable();
        rooms.dedup();
        for room in rooms {
            self.trim(&mut tx, room, keep).await?;
        }
        self.timed(tx.commit()).await
    }
}

impl msrp_chat::History for Store {
    fn append<'a>(
        &'a self,
        room: &'a str,
        msg: &'a msrp_chat::Stored,
        keep: usize,
    ) -> msrp_chat::history::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.append_all(&[(room, msg)], keep).await.map_err(|e| e.to_string()) })
    }

    fn append_batch<'a>(
        &'a self,
        batch: &'a [(String, msrp_chat::Stored)],
        keep: usize,
    ) -> msrp_chat::history::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let batch: Vec<(&str, &msrp_chat::Stored)> = batch.iter().map(|(r, m)| (r.as_str(), m)).collect();
            self.append_all(&batch, keep).await.map_err(|e| e.to_string())
        })
    }

    fn recent<'a>(
        &'a self,
        room: &'a str,
        limit: usize,
    ) -> msrp_chat::history::BoxFuture<'a, Result<Vec<msrp_chat::Stored>, String>> {
        Box::pin(async move {
            let q = self.query(&self.sql.history_recent).bind(room.to_owned()).bind(limit as i64);
            let rows = self.timed(q.fetch_all(&self.pool)).await.map_err(|e| e.to_string())?;
            rows.iter()
                .map(|r| {
                    Ok(msrp_chat::Stored {
                        sender: r.try_get(0)?,
                        display: r.try_get(1)?,
                        datetime: r.try_get(2)?,
                        content_type: r.try_get(3)?,
                        body: bytes::Bytes::from(r.try_get::<Vec<u8>, _>(4)?),
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(|e| e.to_string())
        })
    }
}
