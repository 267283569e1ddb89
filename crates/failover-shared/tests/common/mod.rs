//! What the breaker tests share: the shared breaker made synchronous for the checks and
//! the model written for synchronous breakers.

use std::sync::Arc;

use failover_breaker::{Breaker, BreakerConfig, BreakerSnapshot, ManualClock, Permit, Rejected};
use failover_shared::{SharedBreaker, SharedBreakerConfig, SharedStore, StoreConfig};
use tokio::runtime::Handle;

/// A shared breaker made synchronous: every call first waits for the outcomes sent in the
/// background and reads the record (what a replica's background read does within one
/// refresh interval), then asks the way the engine does (`acquire_for`). Call it from a
/// blocking thread of a runtime.
#[derive(Debug)]
pub(crate) struct Blocking {
    inner: SharedBreaker,
    handle: Handle,
}

impl Blocking {
    fn settled<T>(&self, then: impl std::future::Future<Output = T>) -> T {
        self.handle.block_on(async {
            self.inner.flush().await;
            self.inner.refresh().await.expect("redis answers");
            then.await
        })
    }
}

impl Breaker for Blocking {
    fn try_acquire(&self) -> Result<Permit, Rejected> {
        self.settled(self.inner.acquire_for("").decide())
    }

    fn force_open(&self) {
        self.settled(self.inner.force_open_shared()).unwrap();
    }

    fn force_close(&self) {
        self.settled(self.inner.force_close_shared()).unwrap();
    }

    fn reset(&self) {
        self.settled(self.inner.reset_shared()).unwrap();
    }

    fn snapshot(&self) -> BreakerSnapshot {
        self.settled(async {});
        self.inner.snapshot()
    }
}

/// Builds a [`Blocking`] shared breaker on a fresh record of the Redis at `url`.
pub(crate) fn factory(url: String) -> impl Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker> {
    move |config, clock| {
        let handle = Handle::current();
        let _entered = handle.enter();
        let store = SharedStore::new(&StoreConfig::single(url.clone()).with_key_prefix("lf-suite"))
            .unwrap();
        let provider = format!("p-{}-{}", std::process::id(), fastrand::u64(..));
        let inner = SharedBreaker::with_clock(
            store,
            &provider,
            SharedBreakerConfig::new(config),
            Arc::new(clock),
        )
        .unwrap();
        Arc::new(Blocking { inner, handle }) as Arc<dyn Breaker>
    }
}
