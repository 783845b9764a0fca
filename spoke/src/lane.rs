//! The spoke's end of the revocation priority lane, towards the hub it is attached to,
//! on a connection of its own (no bulk batch queues ahead of it): the uplink that
//! hands revocations asked here to the hub at once, and the priority stream that
//! brings revocations asked elsewhere, each committed and then acknowledged.

use std::sync::Arc;
use std::time::Duration;

use proto::tls::ReloadingTls;
use proto::v1::{AcknowledgeRequest, PriorityRequest, PriorityRevocation};
use replicator::backoff::Backoff;
use replicator::GrpcPeer;
use server::revocation::Revocations;
use store::{DbName, Store};
use tokio_util::sync::CancellationToken;

use crate::{HubAddr, SpokeError};

type Client = server::revocation::LaneClient;

/// What the lane needs to reach the hub.
pub(crate) struct LaneTo<'a> {
    pub hub: &'a HubAddr,
    pub me: &'a str,
    pub tls: Option<&'a Arc<ReloadingTls>>,
    pub bearer: Option<&'a str>,
    pub connect_timeout: Duration,
    pub backoff: Backoff,
}

/// Sets this node's uplink to `to.hub` and follows the hub's priority stream
/// until `stop`, applying each revocation to `store` and acknowledging it.
pub(crate) fn start(
    to: LaneTo<'_>,
    store: Store,
    revocations: &Revocations,
    stop: CancellationToken,
) -> Result<(), SpokeError> {
    let hub_error = |reason: String| SpokeError::Hub {
        url: to.hub.grpc.clone(),
        reason,
    };
    let channel =
        GrpcPeer::channel(&to.hub.grpc, to.connect_timeout, to.tls).map_err(|e| hub_error(e.to_string()))?;
    let client: Client = server::revocation::lane_client(channel, to.bearer).map_err(hub_error)?;
    revocations.set_uplink(Some(server::revocation::uplink(
        client.clone(),
        to.me,
        &to.hub.name,
    )));
    tokio::spawn(follow(client, store, to.me.to_owned(), to.backoff, stop));
    Ok(())
}

/// Follows the priority stream: (re)connects with backoff, applies and
/// acknowledges each revocation in order.
async fn follow(mut client: Client, store: Store, me: String, backoff: Backoff, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let session = async {
            let mut stream = client
                .priority(PriorityRequest { peer: me.clone() })
                .await
                .map_err(|s| s.message().to_owned())?
                .into_inner();
            failures = 0;
            while let Some(msg) = stream.message().await.map_err(|s| s.message().to_owned())? {
                apply(&store, &msg).await?;
                client
                    .acknowledge(AcknowledgeRequest {
                        id: msg.id,
                        peer: me.clone(),
                    })
                    .await
                    .map_err(|s| s.message().to_owned())?;
                metrics::counter!("spoke_revocations_applied_total").increment(1);
            }
            Ok::<(), String>(())
        };
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = session => r,
        };
        if let Err(reason) = result {
            tracing::debug!(%reason, "priority stream broke; reconnecting");
        }
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next(failures)) => {}
        }
    }
}

async fn apply(store: &Store, msg: &PriorityRevocation) -> Result<(), String> {
    let name = DbName::new(&msg.db).map_err(|e| e.to_string())?;
    let db = store.db(&name).map_err(|e| e.to_string())?;
    server::revocation::apply(&db, msg.revisions.clone()).await
}
