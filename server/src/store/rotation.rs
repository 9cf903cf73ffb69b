//! The store's record of key rotations and app revisions.

use sqlx::Row;

use super::{KeyPurpose, Store, StoreError, unix_now};

/// The phase of a recorded rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The new key is stored but not yet in Okta.
    Generated,
    /// The new key is active in Okta beside the old one.
    Added,
    /// Signing uses the new key; the old one is still active in Okta.
    Switched,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Generated => "generated",
            Self::Added => "added",
            Self::Switched => "switched",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "generated" => Some(Self::Generated),
            "added" => Some(Self::Added),
            "switched" => Some(Self::Switched),
            _ => None,
        }
    }
}

/// A running rotation as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The app.
    pub client_id: String,
    /// The registrar's id of the key being replaced.
    pub old_key_id: String,
    /// The registrar's id of the new key.
    pub new_key_id: String,
    /// The current phase.
    pub phase: Phase,
    /// When the next step is due, in Unix milliseconds.
    pub next_step_at: i64,
}

/// One registrar-held key of an app, without its private part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    /// The registrar's id of the key.
    pub key_id: String,
    /// The kid.
    pub kid: String,
    /// The public JWK as JSON.
    pub public_jwk: String,
    /// `pending`, `next`, `active`, `retiring` or `retired`.
    pub status: String,
    /// Okta's id of the key, once known.
    pub okta_key_id: Option<String>,
}

impl Store {
    /// Records a new rotation and the new key's status in one transaction,
    /// and bumps the app's revision.
    pub async fn start_rotation(&self, rotation: &Rotation) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO rotations (client_id, old_key_id, new_key_id, phase, next_step_at, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&rotation.client_id)
        .bind(&rotation.old_key_id)
        .bind(&rotation.new_key_id)
        .bind(rotation.phase.as_str())
        .bind(rotation.next_step_at)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE private_keys SET client_id = $1 WHERE key_id = $2")
            .bind(&rotation.client_id)
            .bind(&rotation.new_key_id)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, &rotation.client_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Returns the app's running rotation, if any.
    pub async fn rotation(&self, client_id: &str) -> Result<Option<Rotation>, StoreError> {
        let row = sqlx::query(
            "SELECT client_id, old_key_id, new_key_id, phase, next_step_at FROM rotations WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(rotation_from_row))
    }

    /// Returns every running rotation, for the rotation task.
    pub async fn rotations(&self) -> Result<Vec<Rotation>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_id, old_key_id, new_key_id, phase, next_step_at FROM rotations ORDER BY next_step_at",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(rotation_from_row).collect())
    }

    /// Records that the new key is in Okta, and bumps the app's revision.
    pub async fn rotation_added(
        &self,
        rotation: &Rotation,
        okta_key_id: &str,
        next_step_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE private_keys SET status = 'next', okta_key_id = $1 WHERE key_id = $2")
            .bind(okta_key_id)
            .bind(&rotation.new_key_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO app_keys (client_id, thumbprint, kid, public_jwk, created_at, okta_key_id) \
             SELECT client_id, kid, kid, public_jwk, $1, okta_key_id FROM private_keys WHERE key_id = $2 \
             ON CONFLICT (client_id, thumbprint) DO UPDATE SET removed_at = NULL, okta_key_id = excluded.okta_key_id",
        )
        .bind(unix_now())
        .bind(&rotation.new_key_id)
        .execute(&mut *tx)
        .await?;
        set_phase(&mut tx, &rotation.client_id, Phase::Added, next_step_at).await?;
        bump_revision(&mut tx, &rotation.client_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Switches signing to the new key, and bumps the app's revision.
    pub async fn rotation_switched(
        &self,
        rotation: &Rotation,
        next_step_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE private_keys SET status = 'retiring' WHERE key_id = $1")
            .bind(&rotation.old_key_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE private_keys SET status = 'active' WHERE key_id = $1")
            .bind(&rotation.new_key_id)
            .execute(&mut *tx)
            .await?;
        set_phase(&mut tx, &rotation.client_id, Phase::Switched, next_step_at).await?;
        bump_revision(&mut tx, &rotation.client_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a rotation: the old key is gone from Okta, its encrypted bytes
    /// are erased, and the app's revision is bumped.
    pub async fn rotation_finished(&self, rotation: &Rotation) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE app_keys SET removed_at = $1 WHERE client_id = $2 AND removed_at IS NULL \
             AND kid = (SELECT kid FROM private_keys WHERE key_id = $3)",
        )
        .bind(unix_now())
        .bind(&rotation.client_id)
        .bind(&rotation.old_key_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE private_keys SET status = 'retired', sealed = $1 WHERE key_id = $2")
            .bind(Vec::<u8>::new())
            .bind(&rotation.old_key_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM rotations WHERE client_id = $1")
            .bind(&rotation.client_id)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, &rotation.client_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Returns the app's registrar-held keys that are or may be in Okta:
    /// every status but `retired`.
    pub async fn held_keys(
        &self,
        client_id: &str,
        purpose: KeyPurpose,
    ) -> Result<Vec<HeldKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, kid, public_jwk, status, okta_key_id FROM private_keys \
             WHERE client_id = $1 AND purpose = $2 AND status != 'retired' ORDER BY created_at, key_id",
        )
        .bind(client_id)
        .bind(purpose.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| HeldKey {
                key_id: row.get("key_id"),
                kid: row.get("kid"),
                public_jwk: row.get("public_jwk"),
                status: row.get("status"),
                okta_key_id: row.get("okta_key_id"),
            })
            .collect())
    }

    /// Returns the app's revision, or `None` for an app the registrar does
    /// not manage.
    pub async fn revision(&self, client_id: &str) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(
            "SELECT revision FROM service_apps WHERE client_id = $1 AND deleted_at IS NULL",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| u64::try_from(row.get::<i64, _>("revision")).unwrap_or_default()))
    }

    /// Records a caller-managed key added to Okta, and bumps the revision.
    pub async fn record_added_key(
        &self,
        client_id: &str,
        thumbprint: &str,
        kid: &str,
        public_jwk: &str,
        okta_key_id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO app_keys (client_id, thumbprint, kid, public_jwk, created_at, okta_key_id) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (client_id, thumbprint) DO UPDATE SET removed_at = NULL, okta_key_id = excluded.okta_key_id",
        )
        .bind(client_id)
        .bind(thumbprint)
        .bind(kid)
        .bind(public_jwk)
        .bind(unix_now())
        .bind(okta_key_id)
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx, client_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that a key was removed from Okta, and bumps the revision.
    pub async fn record_removed_key(&self, client_id: &str, kid: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE app_keys SET removed_at = $1 WHERE client_id = $2 AND kid = $3 AND removed_at IS NULL")
            .bind(unix_now())
            .bind(client_id)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx, client_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Returns the public keys recorded for the app (at registration or by
    /// AddKey) that were not removed, as (kid, public JWK JSON).
    pub async fn recorded_keys(
        &self,
        client_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, public_jwk FROM app_keys WHERE client_id = $1 AND removed_at IS NULL ORDER BY created_at, thumbprint",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get("kid"), row.get("public_jwk")))
            .collect())
    }
}

impl Store {
    /// Schedules the app's next automatic rotation, in Unix milliseconds.
    pub async fn schedule_rotation(&self, client_id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE service_apps SET next_rotation_at = $1 WHERE client_id = $2")
            .bind(at)
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Returns when the app's next automatic rotation is due.
    pub async fn next_rotation(&self, client_id: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT next_rotation_at FROM service_apps WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|row| row.get::<Option<i64>, _>("next_rotation_at")))
    }

    /// Returns the undeleted apps whose automatic rotation is due at `now`
    /// and that have no rotation running, and when the next later one is
    /// due.
    pub async fn due_rotations(&self, now: i64) -> Result<(Vec<String>, Option<i64>), StoreError> {
        let due = sqlx::query(
            "SELECT client_id FROM service_apps WHERE deleted_at IS NULL AND next_rotation_at <= $1 \
             AND client_id NOT IN (SELECT client_id FROM rotations) ORDER BY next_rotation_at",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| row.get("client_id"))
        .collect();
        let next = sqlx::query(
            "SELECT MIN(next_rotation_at) AS next FROM service_apps WHERE deleted_at IS NULL AND next_rotation_at > $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?
        .get::<Option<i64>, _>("next");
        Ok((due, next))
    }
}

fn rotation_from_row(row: sqlx::any::AnyRow) -> Option<Rotation> {
    Some(Rotation {
        client_id: row.get("client_id"),
        old_key_id: row.get("old_key_id"),
        new_key_id: row.get("new_key_id"),
        phase: Phase::parse(row.get::<&str, _>("phase"))?,
        next_step_at: row.get("next_step_at"),
    })
}

async fn set_phase(
    tx: &mut sqlx::AnyConnection,
    client_id: &str,
    phase: Phase,
    next_step_at: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE rotations SET phase = $1, next_step_at = $2 WHERE client_id = $3")
        .bind(phase.as_str())
        .bind(next_step_at)
        .bind(client_id)
        .execute(tx)
        .await?;
    Ok(())
}

async fn bump_revision(tx: &mut sqlx::AnyConnection, client_id: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE service_apps SET revision = revision + 1 WHERE client_id = $1")
        .bind(client_id)
        .execute(tx)
        .await?;
    Ok(())
}
