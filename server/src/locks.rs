//! Per-key async locks, so that work on one name or app is serialised while
//! work on different keys runs in parallel. [`KeyedLocks`] covers one
//! process; [`Locks`] adds PostgreSQL advisory locks when replicas share a
//! database, so that the work is serialised across replicas too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::store::StoreError;
use crate::store::postgres::{Coordination, DatabaseLock};

/// Locks per name or app across every replica that shares the store.
#[derive(Debug, Clone, Default)]
pub struct Locks {
    local: KeyedLocks,
    database: Option<Coordination>,
}

/// Holds a name's or app's lock until dropped.
#[derive(Debug)]
pub struct LockGuard {
    // Fields drop in order: the database lock is released before the
    // process's own, which the next local waiter then takes.
    database: Option<DatabaseLock>,
    _local: KeyGuard,
}

impl LockGuard {
    /// Checks that the lock is still held. PostgreSQL releases an advisory
    /// lock when its session ends, for example after a network failure,
    /// and then another replica may take it. Call this before a change in
    /// Okta that the lock must keep to one replica.
    pub async fn check_held(&mut self) -> Result<(), StoreError> {
        match &mut self.database {
            Some(database) => database.check_held().await,
            None => Ok(()),
        }
    }
}

impl Locks {
    /// Builds the locks of a store: in-process only for SQLite, with
    /// advisory locks as well for PostgreSQL.
    pub fn new(database: Option<Coordination>) -> Self {
        Self {
            local: KeyedLocks::default(),
            database,
        }
    }

    /// Waits for the lock of `key`. Tasks of this process queue for it
    /// first, so a replica uses at most one database connection per key.
    /// Then the replica waits for the database lock, if there is one.
    pub async fn lock(&self, key: &str) -> Result<LockGuard, StoreError> {
        let local = self.local.lock(key).await;
        let database = match &self.database {
            Some(coordination) => Some(coordination.lock(key).await?),
            None => None,
        };
        Ok(LockGuard {
            database,
            _local: local,
        })
    }

    /// Takes the lock of `key` if neither a task of this process nor
    /// another replica holds it, without waiting.
    pub async fn try_lock(&self, key: &str) -> Result<Option<LockGuard>, StoreError> {
        let Some(local) = self.local.try_lock(key) else {
            return Ok(None);
        };
        let database = match &self.database {
            Some(coordination) => match coordination.try_lock(key).await? {
                Some(database) => Some(database),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(LockGuard {
            database,
            _local: local,
        }))
    }
}

/// A set of async mutexes, one per key, created on first use and dropped
/// when no task holds or waits for them.
#[derive(Debug, Clone, Default)]
pub struct KeyedLocks {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Holds a key's lock until dropped.
#[derive(Debug)]
pub struct KeyGuard {
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
    locks: KeyedLocks,
}

impl KeyedLocks {
    /// Waits for the lock of `key` and returns its guard.
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let guard = self.mutex(key).lock_owned().await;
        KeyGuard {
            key: key.to_string(),
            guard: Some(guard),
            locks: self.clone(),
        }
    }

    /// Takes the lock of `key` if no task holds it, without waiting.
    pub fn try_lock(&self, key: &str) -> Option<KeyGuard> {
        let guard = self.mutex(key).try_lock_owned().ok();
        let acquired = guard.is_some();
        let key_guard = KeyGuard {
            key: key.to_string(),
            guard,
            locks: self.clone(),
        };
        // A guard without the lock is dropped here, which removes the
        // table entry that no other task uses.
        acquired.then_some(key_guard)
    }

    /// Returns the mutex of `key`, adding it to the table when missing.
    fn mutex(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("the lock table is never poisoned");
        locks.entry(key.to_string()).or_default().clone()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks
            .lock()
            .expect("the lock table is never poisoned")
            .len()
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self
            .locks
            .locks
            .lock()
            .expect("the lock table is never poisoned");
        // Only the table refers to the mutex now, so no task holds or awaits it.
        if locks
            .get(&self.key)
            .is_some_and(|mutex| Arc::strong_count(mutex) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn serialises_one_key_and_cleans_up() {
        let locks = KeyedLocks::default();
        let inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let locks = locks.clone();
            let inside = inside.clone();
            tasks.push(tokio::spawn(async move {
                let _guard = locks.lock("billing").await;
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn try_lock_fails_while_held() {
        let locks = KeyedLocks::default();
        let held = locks.lock("billing").await;
        assert!(locks.try_lock("billing").is_none());
        assert!(locks.try_lock("payroll").is_some());
        drop(held);
        let again = locks.try_lock("billing");
        assert!(again.is_some());
        drop(again);
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn different_keys_do_not_block() {
        let locks = KeyedLocks::default();
        let _first = locks.lock("a").await;
        let second = tokio::time::timeout(std::time::Duration::from_secs(1), locks.lock("b")).await;
        assert!(second.is_ok());
    }
}
