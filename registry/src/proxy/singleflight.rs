//! Concurrent callers asking for the same key share one run of the work
//! (one upstream request); the work runs on its own task, so a caller that
//! disconnects does not cancel it for the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

use super::ProxyError;

type Flight<T> = Shared<BoxFuture<'static, Result<T, ProxyError>>>;

pub struct Singleflight<T: Clone> {
    flights: Arc<Mutex<HashMap<String, Flight<T>>>>,
}

impl<T: Clone> Default for Singleflight<T> {
    fn default() -> Self {
        Singleflight {
            flights: Arc::default(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Singleflight<T> {
    /// Runs `work` unless a run for `key` is in progress, in which case its
    /// result is shared. The bool says whether this caller joined one.
    pub async fn run<F>(&self, key: String, work: F) -> (Result<T, ProxyError>, bool)
    where
        F: Future<Output = Result<T, ProxyError>> + Send + 'static,
    {
        let (flight, joined) = {
            let mut flights = self.flights.lock().unwrap();
            match flights.get(&key) {
                Some(f) => (f.clone(), true),
                None => {
                    let map = self.flights.clone();
                    let k = key.clone();
                    // Removed by the task itself, so a finished run is
                    // never shared with a later caller.
                    let task = tokio::spawn(async move {
                        let out = work.await;
                        map.lock().unwrap().remove(&k);
                        out
                    });
                    let f = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(ProxyError::Storage(format!("upstream request task: {e}")))
                        })
                    }
                    .boxed()
                    .shared();
                    flights.insert(key, f.clone());
                    (f, false)
                }
            }
        };
        (flight.await, joined)
    }
}
