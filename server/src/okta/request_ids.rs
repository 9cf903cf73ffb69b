//! The `X-Okta-Request-Id` of every Okta response during one call, for the
//! audit record of that call.
//!
//! [`collect`] runs a future with a task-local list that every response
//! adds its request id to, successful or not. Requests sent by other tasks,
//! such as the background rotation task, are not collected.

use std::cell::RefCell;
use std::future::Future;

tokio::task_local! {
    static REQUEST_IDS: RefCell<Vec<String>>;
}

/// Runs `future` and returns its output with the Okta request ids of the
/// responses it received, in order.
pub async fn collect<F: Future>(future: F) -> (F::Output, Vec<String>) {
    REQUEST_IDS
        .scope(RefCell::new(Vec::new()), async {
            let output = future.await;
            let ids = REQUEST_IDS.with(|ids| ids.take());
            (output, ids)
        })
        .await
}

/// Adds a response's request id to the list of the running [`collect`], if
/// any.
pub(super) fn record(request_id: Option<&str>) {
    if let Some(id) = request_id.filter(|id| !id.is_empty()) {
        let _ = REQUEST_IDS.try_with(|ids| ids.borrow_mut().push(id.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn collects_inside_scope_only() {
        record(Some("outside"));
        let ((), ids) = collect(async {
            record(Some("first"));
            record(None);
            record(Some(""));
            tokio::task::yield_now().await;
            record(Some("second"));
        })
        .await;
        assert_eq!(ids, vec!["first", "second"]);
    }
}
