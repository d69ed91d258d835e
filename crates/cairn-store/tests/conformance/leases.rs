//! Leases and the schema.

use crate::common::at;
use cairn_store::*;

conformance!(lease_has_one_holder, migrations_are_all_applied,);

async fn lease_has_one_holder(store: &Store) {
    let ttl = std::time::Duration::from_secs(30);
    assert!(
        store
            .try_lease("reconciler", "a", at(0), ttl)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lease("reconciler", "b", at(10), ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("reconciler", "a", at(20), ttl)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        !store
            .try_lease("reconciler", "b", at(49), ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("reconciler", "b", at(51), ttl)
            .await
            .unwrap(),
        "an expired lease is taken over"
    );
    store.release_lease("reconciler", "a").await.unwrap();
    assert!(
        !store
            .try_lease("reconciler", "c", at(52), ttl)
            .await
            .unwrap(),
        "a former holder cannot release another's lease"
    );
    assert_eq!(
        store.lease_holder("reconciler").await.unwrap().as_deref(),
        Some("b")
    );
    store.release_lease("reconciler", "b").await.unwrap();
    assert_eq!(store.lease_holder("reconciler").await.unwrap(), None);
    assert!(
        store
            .try_lease("reconciler", "c", at(53), ttl)
            .await
            .unwrap(),
        "a released lease is free at once"
    );
}

async fn migrations_are_all_applied(store: &Store) {
    assert!(store.pending_migrations().await.unwrap().is_empty());
}
