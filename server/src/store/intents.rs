//! The store's record of mutating Okta calls: each is written as a pending
//! intent before the call is sent, and marked done or failed after, so that
//! a restarted registrar can find the calls whose outcome it never saw.

use sqlx::Row;

use super::{Store, StoreError};

/// The Okta call an intent records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentKind {
    /// Create a service app through dynamic client registration.
    CreateApp,
    /// Grant one scope to an app.
    Grant,
    /// Revoke one grant of an app.
    Revoke,
    /// Deactivate and delete an app.
    DeleteApp,
}

impl IntentKind {
    /// Returns the name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateApp => "create_app",
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::DeleteApp => "delete_app",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "create_app" => Some(Self::CreateApp),
            "grant" => Some(Self::Grant),
            "revoke" => Some(Self::Revoke),
            "delete_app" => Some(Self::DeleteApp),
            _ => None,
        }
    }
}

/// The state of an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentState {
    /// Recorded, while the outcome of the Okta call is not known yet.
    Pending,
    /// Okta applied the call and the store records its result.
    Done,
    /// Okta did not apply the call, so the caller may try again.
    Failed,
}

impl IntentState {
    /// Returns the name stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "done" => Some(Self::Done),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A mutating Okta call, as recorded before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The call.
    pub kind: IntentKind,
    /// The app's name for a create, and empty for other kinds.
    pub client_name: String,
    /// The app's client id, which is empty for a create until Okta returns it.
    pub client_id: String,
    /// The scope of a grant or revoke, and empty for other kinds.
    pub scope_id: String,
    /// The grant that a revoke removes, and empty for other kinds.
    pub grant_id: String,
    /// The registrar's id of the generated key that a create sends.
    pub key_id: Option<String>,
    /// The public JWKs that a create sends, as a JSON array.
    pub public_keys: String,
    /// The caller id that will own a created app.
    pub owner: Option<String>,
    /// Whether a create makes the app's tokens DPoP-bound.
    pub dpop_bound: bool,
}

impl Intent {
    fn empty(kind: IntentKind) -> Self {
        Self {
            kind,
            client_name: String::new(),
            client_id: String::new(),
            scope_id: String::new(),
            grant_id: String::new(),
            key_id: None,
            public_keys: "[]".into(),
            owner: None,
            dpop_bound: false,
        }
    }

    /// Builds the intent of a create that sends `public_keys` (a JSON
    /// array), for the app that `owner` will manage.
    pub fn create_app(
        client_name: &str,
        owner: &str,
        key_id: Option<&str>,
        public_keys: String,
        dpop_bound: bool,
    ) -> Self {
        Self {
            client_name: client_name.to_string(),
            key_id: key_id.map(str::to_string),
            public_keys,
            owner: Some(owner.to_string()),
            dpop_bound,
            ..Self::empty(IntentKind::CreateApp)
        }
    }

    /// Builds the intent of a grant of one scope.
    pub fn grant(client_id: &str, scope_id: &str) -> Self {
        Self {
            client_id: client_id.to_string(),
            scope_id: scope_id.to_string(),
            ..Self::empty(IntentKind::Grant)
        }
    }

    /// Builds the intent of a revoke of one grant.
    pub fn revoke(client_id: &str, scope_id: &str, grant_id: &str) -> Self {
        Self {
            client_id: client_id.to_string(),
            scope_id: scope_id.to_string(),
            grant_id: grant_id.to_string(),
            ..Self::empty(IntentKind::Revoke)
        }
    }

    /// Builds the intent of an app's deletion.
    pub fn delete_app(client_id: &str) -> Self {
        Self {
            client_id: client_id.to_string(),
            ..Self::empty(IntentKind::DeleteApp)
        }
    }
}

/// An intent as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIntent {
    /// The intent's id.
    pub id: i64,
    /// The recorded call.
    pub intent: Intent,
    /// Its state.
    pub state: IntentState,
    /// When it was recorded, in Unix milliseconds.
    pub created_at: i64,
    /// How often the call was sent or its outcome checked.
    pub attempts: i64,
}

/// Expands to the SQL condition that no pending intent and no rotation
/// refers to the `private_keys` row.
macro_rules! unreferenced_key {
    () => {
        "NOT EXISTS (SELECT 1 FROM intents WHERE intents.key_id = private_keys.key_id \
                     AND intents.state = 'pending') \
         AND NOT EXISTS (SELECT 1 FROM rotations WHERE rotations.new_key_id = private_keys.key_id \
                         OR rotations.old_key_id = private_keys.key_id)"
    };
}

/// Builds a literal query that selects every column of `intents`, with
/// `$rest` (the `WHERE` and `ORDER BY` clauses) appended.
macro_rules! select_intents {
    ($rest:literal) => {
        concat!(
            "SELECT id, kind, client_name, client_id, scope_id, grant_id, key_id, public_keys, \
             owner, dpop_bound, state, created_at, attempts FROM intents ",
            $rest
        )
    };
}

impl Store {
    /// Records a call as pending before it is sent, and returns the
    /// intent's id.
    pub async fn record_intent(&self, intent: &Intent) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO intents (kind, client_name, client_id, scope_id, grant_id, key_id, \
             public_keys, owner, dpop_bound, state, created_at, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, 1) RETURNING id",
        )
        .bind(intent.kind.as_str())
        .bind(&intent.client_name)
        .bind(&intent.client_id)
        .bind(&intent.scope_id)
        .bind(&intent.grant_id)
        .bind(&intent.key_id)
        .bind(&intent.public_keys)
        .bind(&intent.owner)
        .bind(i64::from(intent.dpop_bound))
        .bind(unix_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get("id"))
    }

    /// Marks a pending intent done or failed. `client_id` fills in the app
    /// that a create made; other intents pass `None`.
    pub async fn finish_intent(
        &self,
        id: i64,
        state: IntentState,
        client_id: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE intents SET state = $1, finished_at = $2, client_id = COALESCE($3, client_id) \
             WHERE id = $4 AND state = 'pending'",
        )
        .bind(state.as_str())
        .bind(unix_millis())
        .bind(client_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts one more check of a pending intent's outcome.
    pub async fn count_intent_attempt(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE intents SET attempts = attempts + 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Returns every pending intent, oldest first.
    pub async fn pending_intents(&self) -> Result<Vec<StoredIntent>, StoreError> {
        let rows = sqlx::query(select_intents!("WHERE state = 'pending' ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().filter_map(intent_from_row).collect())
    }

    /// Returns the pending creates of apps with this name, oldest first.
    pub async fn pending_creates(
        &self,
        client_name: &str,
    ) -> Result<Vec<StoredIntent>, StoreError> {
        let rows = sqlx::query(select_intents!(
            "WHERE state = 'pending' AND kind = 'create_app' AND client_name = $1 ORDER BY id"
        ))
        .bind(client_name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(intent_from_row).collect())
    }

    /// Returns the intent with this id.
    pub async fn intent(&self, id: i64) -> Result<Option<StoredIntent>, StoreError> {
        let row = sqlx::query(select_intents!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(intent_from_row))
    }

    /// Deletes the done and failed intents that finished before `before`
    /// (Unix milliseconds), and returns how many it deleted. Pending
    /// intents are kept however old they are.
    pub async fn prune_intents(&self, before: i64) -> Result<u64, StoreError> {
        let result =
            sqlx::query("DELETE FROM intents WHERE state != 'pending' AND finished_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected())
    }

    /// Returns whether the private key is still pending: stored, but not
    /// attached to an app.
    pub async fn is_key_pending(&self, key_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT status FROM private_keys WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some_and(|row| row.get::<&str, _>("status") == "pending"))
    }

    /// Deletes a private key that is still pending, such as the key of a
    /// create that Okta did not apply, unless a pending intent or a
    /// rotation refers to it. Returns whether a key was deleted.
    ///
    /// The check covers a write whose commit failed but took effect, such as
    /// a rotation recorded just before the connection dropped.
    pub async fn discard_pending_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(concat!(
            "DELETE FROM private_keys WHERE key_id = $1 AND status = 'pending' AND ",
            unreferenced_key!()
        ))
        .bind(key_id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes the pending private keys stored before `before` (Unix
    /// seconds) that no pending intent and no rotation refers to, and
    /// returns how many it deleted. Such a key belongs to a call that
    /// failed or never started, such as after a crash between storing the
    /// key and recording the create's intent, so no app will ever use it.
    pub async fn discard_stale_pending_keys(&self, before: i64) -> Result<u64, StoreError> {
        let result = sqlx::query(concat!(
            "DELETE FROM private_keys WHERE status = 'pending' AND created_at < $1 AND ",
            unreferenced_key!()
        ))
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}

/// Returns the time in Unix milliseconds.
fn unix_millis() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the system clock is after 1970");
    i64::try_from(elapsed.as_millis()).expect("milliseconds since 1970 fit in i64")
}

fn intent_from_row(row: sqlx::any::AnyRow) -> Option<StoredIntent> {
    Some(StoredIntent {
        id: row.get("id"),
        intent: Intent {
            kind: IntentKind::parse(row.get::<&str, _>("kind"))?,
            client_name: row.get("client_name"),
            client_id: row.get("client_id"),
            scope_id: row.get("scope_id"),
            grant_id: row.get("grant_id"),
            key_id: row.get("key_id"),
            public_keys: row.get("public_keys"),
            owner: row.get("owner"),
            dpop_bound: row.get::<i64, _>("dpop_bound") != 0,
        },
        state: IntentState::parse(row.get::<&str, _>("state"))?,
        created_at: row.get("created_at"),
        attempts: row.get("attempts"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::test_on_both_backends;
    use crate::store::{KeyPurpose, SealedKey};

    test_on_both_backends!(intent_round_trip);
    async fn intent_round_trip(store: Store) {
        let create = Intent::create_app(
            "billing",
            "billing-team",
            Some("key-1"),
            r#"[{"kid":"k1"}]"#.into(),
            true,
        );
        let id = store.record_intent(&create).await.expect("record");
        let stored = store.intent(id).await.expect("read").expect("present");
        assert_eq!(stored.intent, create);
        assert_eq!(stored.state, IntentState::Pending);
        assert_eq!(stored.attempts, 1);
        assert!(stored.created_at > 0);
    }

    test_on_both_backends!(every_kind_round_trips);
    async fn every_kind_round_trips(store: Store) {
        let intents = [
            Intent::create_app("billing", "owner", None, "[]".into(), false),
            Intent::grant("0oa1", "okta.users.read"),
            Intent::revoke("0oa1", "okta.users.read", "oag1"),
            Intent::delete_app("0oa1"),
        ];
        for intent in intents {
            let id = store.record_intent(&intent).await.expect("record");
            let stored = store.intent(id).await.expect("read").expect("present");
            assert_eq!(stored.intent, intent, "{:?}", intent.kind);
        }
    }

    test_on_both_backends!(finished_intents_are_not_pending);
    async fn finished_intents_are_not_pending(store: Store) {
        let create = store
            .record_intent(&Intent::create_app(
                "billing",
                "owner",
                None,
                "[]".into(),
                false,
            ))
            .await
            .expect("record");
        let grant = store
            .record_intent(&Intent::grant("0oa1", "okta.users.read"))
            .await
            .expect("record");
        let revoke = store
            .record_intent(&Intent::revoke("0oa1", "okta.users.read", "oag1"))
            .await
            .expect("record");
        let pending: Vec<_> = store
            .pending_intents()
            .await
            .expect("read")
            .iter()
            .map(|intent| intent.id)
            .collect();
        assert_eq!(pending, vec![create, grant, revoke]);

        store
            .finish_intent(create, IntentState::Done, Some("0oa9"))
            .await
            .expect("finish");
        store
            .finish_intent(grant, IntentState::Failed, None)
            .await
            .expect("finish");
        let pending: Vec<_> = store
            .pending_intents()
            .await
            .expect("read")
            .iter()
            .map(|intent| intent.id)
            .collect();
        assert_eq!(pending, vec![revoke]);

        let created = store.intent(create).await.expect("read").expect("present");
        assert_eq!(created.state, IntentState::Done);
        assert_eq!(created.intent.client_id, "0oa9");
        let granted = store.intent(grant).await.expect("read").expect("present");
        assert_eq!(granted.state, IntentState::Failed);
        assert_eq!(granted.intent.client_id, "0oa1");
    }

    test_on_both_backends!(finished_intent_stays_finished);
    async fn finished_intent_stays_finished(store: Store) {
        let id = store
            .record_intent(&Intent::delete_app("0oa1"))
            .await
            .expect("record");
        store
            .finish_intent(id, IntentState::Failed, None)
            .await
            .expect("finish");
        store
            .finish_intent(id, IntentState::Done, None)
            .await
            .expect("finish again");
        let stored = store.intent(id).await.expect("read").expect("present");
        assert_eq!(stored.state, IntentState::Failed);
    }

    test_on_both_backends!(attempts_count_up);
    async fn attempts_count_up(store: Store) {
        let id = store
            .record_intent(&Intent::grant("0oa1", "okta.users.read"))
            .await
            .expect("record");
        store.count_intent_attempt(id).await.expect("count");
        store.count_intent_attempt(id).await.expect("count");
        let stored = store.intent(id).await.expect("read").expect("present");
        assert_eq!(stored.attempts, 3);
    }

    test_on_both_backends!(pending_creates_match_the_name);
    async fn pending_creates_match_the_name(store: Store) {
        let billing = store
            .record_intent(&Intent::create_app(
                "billing",
                "owner",
                None,
                "[]".into(),
                false,
            ))
            .await
            .expect("record");
        store
            .record_intent(&Intent::create_app(
                "payroll",
                "owner",
                None,
                "[]".into(),
                false,
            ))
            .await
            .expect("record");
        store
            .record_intent(&Intent::grant("billing", "okta.users.read"))
            .await
            .expect("record");
        let found: Vec<_> = store
            .pending_creates("billing")
            .await
            .expect("read")
            .iter()
            .map(|intent| intent.id)
            .collect();
        assert_eq!(found, vec![billing]);

        store
            .finish_intent(billing, IntentState::Failed, None)
            .await
            .expect("finish");
        assert!(
            store
                .pending_creates("billing")
                .await
                .expect("read")
                .is_empty()
        );
    }

    test_on_both_backends!(prune_keeps_pending_intents);
    async fn prune_keeps_pending_intents(store: Store) {
        let pending = store
            .record_intent(&Intent::grant("0oa1", "okta.users.read"))
            .await
            .expect("record");
        let done = store
            .record_intent(&Intent::grant("0oa1", "okta.apps.read"))
            .await
            .expect("record");
        store
            .finish_intent(done, IntentState::Done, None)
            .await
            .expect("finish");

        let pruned = store.prune_intents(0).await.expect("prune");
        assert_eq!(pruned, 0, "nothing finished before 1970");
        let pruned = store.prune_intents(unix_millis() + 1).await.expect("prune");
        assert_eq!(pruned, 1);
        assert!(store.intent(done).await.expect("read").is_none());
        assert!(store.intent(pending).await.expect("read").is_some());
    }

    test_on_both_backends!(key_pending_until_activated);
    async fn key_pending_until_activated(store: Store) {
        let key = SealedKey {
            key_id: "key-1".into(),
            purpose: KeyPurpose::Assertion,
            kid: "kid-1".into(),
            algorithm: "ES256".into(),
            public_jwk: "{}".into(),
            sealed: vec![1, 2, 3],
        };
        assert!(!store.is_key_pending("key-1").await.expect("read"));
        store.insert_pending_key(&key).await.expect("insert");
        assert!(store.is_key_pending("key-1").await.expect("read"));
        store.activate_key("key-1", "0oa1").await.expect("activate");
        assert!(!store.is_key_pending("key-1").await.expect("read"));
    }

    fn sealed_key(key_id: &str) -> SealedKey {
        SealedKey {
            key_id: key_id.into(),
            purpose: KeyPurpose::Assertion,
            kid: format!("kid-{key_id}"),
            algorithm: "ES256".into(),
            public_jwk: "{}".into(),
            sealed: vec![1, 2, 3],
        }
    }

    test_on_both_backends!(discard_pending_key_only);
    async fn discard_pending_key_only(store: Store) {
        for key_id in ["pending", "active"] {
            store
                .insert_pending_key(&sealed_key(key_id))
                .await
                .expect("insert");
        }
        store
            .activate_key("active", "0oa1")
            .await
            .expect("activate");

        let in_flight =
            Intent::create_app("billing", "team", Some("in-flight"), "[]".into(), false);
        store
            .insert_pending_key(&sealed_key("in-flight"))
            .await
            .expect("insert");
        store.record_intent(&in_flight).await.expect("record");
        assert!(
            !store
                .discard_pending_key("in-flight")
                .await
                .expect("discard"),
            "the key of a pending create is kept"
        );

        assert!(store.discard_pending_key("pending").await.expect("discard"));
        assert!(!store.is_key_pending("pending").await.expect("read"));
        assert!(!store.discard_pending_key("pending").await.expect("discard"));
        assert!(!store.discard_pending_key("active").await.expect("discard"));
        assert!(
            store
                .active_key("0oa1", KeyPurpose::Assertion)
                .await
                .expect("read")
                .is_some(),
            "an active key is kept"
        );
    }

    test_on_both_backends!(stale_pending_keys_discarded);
    async fn stale_pending_keys_discarded(store: Store) {
        for key_id in ["orphan", "in-flight", "failed", "rotating", "active"] {
            store
                .insert_pending_key(&sealed_key(key_id))
                .await
                .expect("insert");
        }
        store
            .activate_key("active", "0oa1")
            .await
            .expect("activate");
        let in_flight =
            Intent::create_app("billing", "team", Some("in-flight"), "[]".into(), false);
        store.record_intent(&in_flight).await.expect("record");
        let failed = Intent::create_app("payroll", "team", Some("failed"), "[]".into(), false);
        let failed_id = store.record_intent(&failed).await.expect("record");
        store
            .finish_intent(failed_id, IntentState::Failed, None)
            .await
            .expect("finish");
        let rotation = crate::store::Rotation {
            client_id: "0oa1".into(),
            old_key_id: "active".into(),
            new_key_id: "rotating".into(),
            phase: crate::store::Phase::Generated,
            next_step_at: 0,
        };
        store.start_rotation(&rotation).await.expect("rotation");

        // Keys stored in this second or later are kept, however orphaned.
        assert_eq!(
            store.discard_stale_pending_keys(0).await.expect("discard"),
            0
        );
        let later = unix_millis() / 1000 + 10;
        assert_eq!(
            store
                .discard_stale_pending_keys(later)
                .await
                .expect("discard"),
            2,
            "the orphan and the key of the failed create"
        );
        assert!(!store.is_key_pending("orphan").await.expect("read"));
        assert!(!store.is_key_pending("failed").await.expect("read"));
        assert!(
            store.is_key_pending("in-flight").await.expect("read"),
            "the key of a pending create is kept"
        );
        let held = store
            .held_keys("0oa1", KeyPurpose::Assertion)
            .await
            .expect("read");
        let held: Vec<&str> = held.iter().map(|key| key.key_id.as_str()).collect();
        assert!(held.contains(&"rotating"), "{held:?}");
        assert!(held.contains(&"active"), "{held:?}");
    }
}
