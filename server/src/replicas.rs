//! The background tasks that let several replicas share one PostgreSQL
//! database, and the health check that every registrar runs:
//!
//! - [`lead_rotations`]: the replica that holds the leader lock runs the
//!   rotation task; the others try again every [`LEAD_RETRY`].
//! - [`follow_changes`]: each replica hears of the key changes other
//!   replicas make and passes them to its own watch streams.
//! - [`report_health`]: the standard health service reports NOT_SERVING
//!   while the database does not respond.

use std::time::Duration;

use registrar_api::v1::registrar_server::RegistrarServer;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::rotation::Rotator;
use crate::service::RegistrarService;
use crate::store::postgres::{Change, Coordination};
use crate::store::{Store, StoreError};

/// How often a replica that does not run rotations tries to take over.
/// After the leader dies, PostgreSQL ends its session, and another replica
/// leads within this long.
pub const LEAD_RETRY: Duration = Duration::from_secs(2);

/// How long one attempt to take the leader lock, or to start listening,
/// may take.
const LEAD_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the listener checks whether the health check saw the
/// database fail since the listener connected.
const LISTENER_CHECK: Duration = Duration::from_secs(1);

/// How often the leader checks that its lock's connection is alive. A
/// leader whose connection fails stops within about twice this long.
const LEADER_CHECK: Duration = Duration::from_secs(1);

/// How often the health check pings the database, and how long it waits
/// for the response.
const HEALTH_CHECK: Duration = Duration::from_secs(1);

/// The pause before listening again after the database failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Runs the rotation task while this replica holds the leader lock, until
/// `shutdown` turns true. `replica` names the replica in the leader
/// session's `application_name`.
pub async fn lead_rotations(
    rotator: Rotator,
    coordination: Coordination,
    replica: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reported_error = false;
    loop {
        // A connection that stalls (a network drop behind a proxy that
        // accepts) must not stop the attempts for good.
        let attempt = tokio::time::timeout(LEAD_ATTEMPT_TIMEOUT, coordination.try_lead(&replica))
            .await
            .unwrap_or(Err(StoreError::Unreachable));
        match attempt {
            Ok(Some(mut leadership)) => {
                reported_error = false;
                tracing::info!("this replica now runs key rotations");
                tokio::select! {
                    () = rotator.clone().run(shutdown.clone()) => return,
                    error = leadership.lost(LEADER_CHECK) => {
                        tracing::warn!(%error, "lost the rotation leader lock; another replica takes over the rotations");
                    }
                }
            }
            Ok(None) => reported_error = false,
            Err(error) => {
                if !reported_error {
                    tracing::warn!(%error, "cannot reach the database to take the rotation leader lock; retrying");
                    reported_error = true;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(LEAD_RETRY) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Passes the key changes that other replicas make to this replica's
/// rotator, until `shutdown` turns true.
pub async fn follow_changes(
    rotator: Rotator,
    coordination: Coordination,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reported_error = false;
    // Notifications may have been lost before any listener but the first.
    let mut first_listener = true;
    loop {
        let listening = tokio::select! {
            listening = tokio::time::timeout(LEAD_ATTEMPT_TIMEOUT, coordination.listen()) => {
                listening.unwrap_or(Err(StoreError::Unreachable))
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let mut changes = match listening {
            Ok(changes) => changes,
            Err(error) => {
                if !reported_error {
                    tracing::warn!(%error, "cannot listen for the changes of other replicas; retrying");
                    reported_error = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(LISTEN_RETRY) => continue,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        };
        if reported_error {
            tracing::info!("listening for the changes of other replicas again");
            reported_error = false;
        }
        if !first_listener {
            rotator.anything_changed_elsewhere();
        }
        first_listener = false;
        // A listening connection that stalls gets no notifications and no
        // error. When the health check finds the database down while the
        // listener waits, the listener connects anew once the database
        // responds again.
        let mut outage_seen = false;
        let mut check = tokio::time::interval(LISTENER_CHECK);
        loop {
            let change = tokio::select! {
                change = changes.next() => change,
                _ = check.tick() => {
                    if !coordination.is_answering() {
                        outage_seen = true;
                    } else if outage_seen {
                        tracing::info!("the database responds again; listening for other replicas' changes on a new connection");
                        break;
                    }
                    continue;
                }
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match change {
                Ok(Change::App(client_id)) => rotator.changed_elsewhere(&client_id),
                Ok(Change::Reconnected) => {
                    if reported_error {
                        tracing::info!("listening for the changes of other replicas again");
                        reported_error = false;
                    }
                    rotator.anything_changed_elsewhere();
                }
                Err(error) => {
                    if !reported_error {
                        tracing::warn!(%error, "lost the connection that hears of other replicas' changes; retrying");
                        reported_error = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(LISTEN_RETRY) => {}
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                }
            }
        }
    }
}

/// Sets the health of the whole server and of the Registrar service to
/// NOT_SERVING while the store does not respond, and back to SERVING when
/// it does, until `shutdown` turns true.
pub async fn report_health(
    store: Store,
    reporter: HealthReporter,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut serving = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(HEALTH_CHECK) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let answered = tokio::time::timeout(HEALTH_CHECK, store.ping())
            .await
            .unwrap_or(false);
        if let Some(coordination) = store.coordination() {
            coordination.set_answering(answered);
        }
        if answered == serving {
            continue;
        }
        serving = answered;
        let status = if serving {
            tracing::info!("the database responds again; health is SERVING");
            ServingStatus::Serving
        } else {
            tracing::warn!("the database does not respond; health is NOT_SERVING until it does");
            ServingStatus::NotServing
        };
        reporter.set_service_status("", status).await;
        reporter
            .set_service_status(
                <RegistrarServer<RegistrarService> as tonic::server::NamedService>::NAME,
                status,
            )
            .await;
    }
}
