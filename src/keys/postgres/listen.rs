//! Hearing the other replicas: one dedicated connection `LISTEN`s on the
//! changes channel and hands each change to the key service. When that
//! connection drops, it reconnects (backing off), and once listening again
//! reports [`Change::Everything`]: whatever was announced meanwhile is lost,
//! so every cache starts over.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{PgStore, CHANNEL};
use crate::keys::changes::Change;
use crate::telemetry::metrics;

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Starts listening for `store`'s database; `on_change` runs on a blocking
/// thread (it may read the store) for every change any replica announces.
pub fn listen(store: &PgStore, on_change: impl Fn(Change) + Send + Sync + 'static) {
    let Some(runtime) = &store.runtime else { return };
    let (config, tls) = (store.config.clone(), store.tls.clone());
    let process = store.process.clone();
    let on_change = Arc::new(on_change);
    runtime.spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut missed = false;
        loop {
            match follow(&config, &tls, &process, &on_change, missed).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    metrics().store_errors.inc();
                    tracing::warn!("state.database: cannot listen for other replicas' changes (retrying): {e}");
                }
            }
            missed = true;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

/// One listening connection, until it ends. With `missed`, caches are
/// dropped once the connection listens (changes may have gone unheard).
async fn follow<F: Fn(Change) + Send + Sync + 'static>(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    process: &str,
    on_change: &Arc<F>,
    missed: bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(note)) => {
                    if sender.send(note.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("state.database: the listening connection failed: {e}");
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    if missed {
        tracing::info!("state.database: listening again; dropping every cached key");
        deliver(on_change, Change::Everything);
    }
    while let Some(payload) = changes.recv().await {
        let (origin, change) = payload.split_once(' ').unwrap_or(("", &payload));
        if origin == process {
            continue;
        }
        match Change::decode(change) {
            Some(change) => deliver(on_change, change),
            None => tracing::debug!("state.database: ignoring an unknown change {payload:?}"),
        }
    }
    driver.abort();
    Ok(())
}

fn deliver<F: Fn(Change) + Send + Sync + 'static>(on_change: &Arc<F>, change: Change) {
    let on_change = on_change.clone();
    tokio::task::spawn_blocking(move || on_change(change));
}
