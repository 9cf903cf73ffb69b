//! The store's audit log: one append-only row per mutating call.

use sqlx::Row;

use super::{Store, StoreError};

/// One audited call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When the call finished, in Unix milliseconds.
    pub occurred_at: i64,
    /// The caller's id.
    pub caller_id: String,
    /// The RPC's name, such as `GrantScopes`.
    pub operation: String,
    /// The app's client id; empty when the call failed before an app was
    /// known.
    pub client_id: String,
    /// The scope ids of the request.
    pub scope_ids: Vec<String>,
    /// The kids of the keys that the call added, retired or rotated to.
    pub kids: Vec<String>,
    /// The gRPC status code's name, such as `OK` or `PERMISSION_DENIED`.
    pub status_code: String,
    /// The status message of a failed call; empty on success.
    pub message: String,
    /// The `X-Okta-Request-Id` of every Okta response the call received,
    /// in order.
    pub okta_request_ids: Vec<String>,
}

/// An audit event as stored, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditEvent {
    /// The event's id, increasing with every event.
    pub id: i64,
    /// The event.
    pub event: AuditEvent,
}

impl Store {
    /// Appends an audit event and returns its id.
    pub async fn append_audit_event(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        // The event of a call that failed because the database is down
        // would wait for a connection in vain, and delay the call's response.
        if let Some(coordination) = &self.coordination {
            coordination.check_answering()?;
        }
        let id = sqlx::query(
            "INSERT INTO audit_events (occurred_at, caller_id, operation, client_id, scope_ids, kids, status_code, message, okta_request_ids) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(event.occurred_at)
        .bind(&event.caller_id)
        .bind(&event.operation)
        .bind(&event.client_id)
        .bind(to_json(&event.scope_ids))
        .bind(to_json(&event.kids))
        .bind(&event.status_code)
        .bind(&event.message)
        .bind(to_json(&event.okta_request_ids))
        .fetch_one(&self.pool)
        .await?
        .get("id");
        Ok(id)
    }

    /// Returns up to `limit` audit events, newest first: those with an id
    /// below `before_id` when given, and of one app when `client_id` is
    /// given.
    pub async fn audit_events(
        &self,
        client_id: Option<&str>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, occurred_at, caller_id, operation, client_id, scope_ids, kids, status_code, message, okta_request_ids \
             FROM audit_events WHERE ($1 IS NULL OR client_id = $1) AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(client_id)
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| StoredAuditEvent {
                id: row.get("id"),
                event: AuditEvent {
                    occurred_at: row.get("occurred_at"),
                    caller_id: row.get("caller_id"),
                    operation: row.get("operation"),
                    client_id: row.get("client_id"),
                    scope_ids: from_json(row.get("scope_ids")),
                    kids: from_json(row.get("kids")),
                    status_code: row.get("status_code"),
                    message: row.get("message"),
                    okta_request_ids: from_json(row.get("okta_request_ids")),
                },
            })
            .collect())
    }
}

fn to_json(values: &[String]) -> String {
    serde_json::to_string(values).expect("a list of strings always serialises")
}

/// Reads a JSON list of strings that [`to_json`] wrote; a malformed value,
/// which only a hand edit of the database can make, reads as empty.
fn from_json(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Backend;
    use crate::store::testing::test_on_both_backends;

    fn event(client_id: &str, operation: &str) -> AuditEvent {
        AuditEvent {
            occurred_at: 1_767_225_600_000,
            caller_id: "billing".into(),
            operation: operation.into(),
            client_id: client_id.into(),
            scope_ids: vec!["okta.users.read".into()],
            kids: Vec::new(),
            status_code: "OK".into(),
            message: String::new(),
            okta_request_ids: vec!["req-1".into(), "req-2".into()],
        }
    }

    test_on_both_backends!(events_page_newest_first);
    async fn events_page_newest_first(store: Store) {
        let first = store
            .append_audit_event(&event("0oa1", "CreateServiceApp"))
            .await
            .expect("append");
        let second = store
            .append_audit_event(&event("0oa2", "CreateServiceApp"))
            .await
            .expect("append");
        let third = store
            .append_audit_event(&event("0oa1", "GrantScopes"))
            .await
            .expect("append");
        assert!(first < second, "{first} then {second}");
        assert!(second < third, "{second} then {third}");

        let all = store.audit_events(None, None, 10).await.expect("read");
        let ids: Vec<i64> = all.iter().map(|stored| stored.id).collect();
        assert_eq!(ids, vec![third, second, first]);
        assert_eq!(all[0].event, event("0oa1", "GrantScopes"));

        let page = store
            .audit_events(None, Some(third), 1)
            .await
            .expect("read");
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].id, second);

        let of_app = store
            .audit_events(Some("0oa1"), None, 10)
            .await
            .expect("read");
        let ids: Vec<i64> = of_app.iter().map(|stored| stored.id).collect();
        assert_eq!(ids, vec![third, first]);
    }

    test_on_both_backends!(events_cannot_change);
    async fn events_cannot_change(store: Store) {
        store
            .append_audit_event(&event("0oa1", "DeleteServiceApp"))
            .await
            .expect("append");
        let update = sqlx::query("UPDATE audit_events SET caller_id = 'someone else'")
            .execute(&store.pool)
            .await;
        assert!(update.is_err(), "an update succeeded");
        assert_append_only(update);
        let delete = sqlx::query("DELETE FROM audit_events")
            .execute(&store.pool)
            .await;
        assert!(delete.is_err(), "a delete succeeded");
        assert_append_only(delete);
        // SQLite has no TRUNCATE statement.
        if store.backend() == Backend::Postgres {
            let truncate = sqlx::query("TRUNCATE audit_events")
                .execute(&store.pool)
                .await;
            assert!(truncate.is_err(), "a truncate succeeded");
            assert_append_only(truncate);
        }
        assert_eq!(
            store
                .audit_events(None, None, 10)
                .await
                .expect("read")
                .len(),
            1
        );
    }

    /// Asserts that the audit table's trigger, not some other fault,
    /// rejected a statement.
    fn assert_append_only<T: std::fmt::Debug>(result: Result<T, sqlx::Error>) {
        let error = result.expect_err("the statement failed");
        assert!(
            error.to_string().contains("audit_events is append-only"),
            "{error}"
        );
    }
}
