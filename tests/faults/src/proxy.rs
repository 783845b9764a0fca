//! A TCP fault proxy: put between a client and a node (or a spoke and the hub), then change what
//! the link does while traffic flows.
//!
//! Every accepted connection is paired with a fresh upstream connection and pumped both ways by
//! a reader and a writer per direction. Readers stamp each chunk with the moment it may be
//! delivered (now + delay ± jitter, never before the previous chunk, so order holds); writers
//! wait for that moment and pace to the bandwidth cap. Faults are read from a `watch` channel on
//! every chunk, so a switch applies to open connections at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What the link does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Link {
    /// Bytes flow (subject to delay and bandwidth).
    #[default]
    Up,
    /// Connections are accepted but nothing is forwarded either way; open connections stall.
    /// What a dead route or a paused peer looks like from the outside: no error, no answer.
    Blackhole,
    /// Open connections are reset (RST) and new ones are reset as soon as they are accepted.
    Reset,
    /// Client → upstream bytes are held back; upstream → client still flows.
    HoldUpstream,
    /// Upstream → client bytes are held back; client → upstream still flows.
    HoldDownstream,
}

/// The faults in force. `Faults::default()` is a clean link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// Link state.
    pub link: Link,
    /// Fixed one-way delay added to every chunk, in each direction.
    pub delay: Duration,
    /// Uniform jitter: each chunk's delay is `delay ± jitter` (never below zero).
    pub jitter: Duration,
    /// Bytes per second in each direction, per connection; `None` is unlimited.
    pub bandwidth: Option<u64>,
}

impl Faults {
    /// A clean link.
    pub fn up() -> Faults {
        Faults::default()
    }

    /// A link in `link` state with no delay.
    pub fn link(link: Link) -> Faults {
        Faults {
            link,
            ..Faults::default()
        }
    }

    /// A WAN link: `delay ± jitter` each way, capped at `bandwidth` bytes/s.
    pub fn wan(delay: Duration, jitter: Duration, bandwidth: Option<u64>) -> Faults {
        Faults {
            link: Link::Up,
            delay,
            jitter,
            bandwidth,
        }
    }
}

/// A running proxy. Dropping it closes the listener and every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    /// Faults that connections accepted from now on keep for their whole life.
    pinned: Arc<std::sync::Mutex<Option<Faults>>>,
    stats: Arc<Stats>,
    _tasks: JoinSet<()>,
}

#[derive(Default)]
struct Stats {
    accepted: std::sync::atomic::AtomicU64,
}

impl FaultProxy {
    /// Listens on `listen` (use port 0 for a free one) and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (faults, rx) = watch::channel(Faults::default());
        let stats = Arc::new(Stats::default());
        let pinned = Arc::new(std::sync::Mutex::new(None));
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, upstream, rx, pinned.clone(), stats.clone()));
        Ok(FaultProxy {
            addr,
            faults,
            pinned,
            stats,
            _tasks: tasks,
        })
    }

    /// The address clients should dial instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the faults; open connections follow at their next chunk.
    pub fn set(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    /// Switches only the link state, keeping delay and bandwidth.
    pub fn set_link(&self, link: Link) {
        self.faults.send_modify(|f| f.link = link);
    }

    /// Connections accepted from now on keep `faults` for their whole life, whatever [`set`]
    /// does later; `None` makes new connections follow [`set`] again. For a client whose
    /// connections must differ: a prompt stream opened first, slow reads opened after.
    ///
    /// [`set`]: FaultProxy::set
    pub fn pin_new_connections(&self, faults: Option<Faults>) {
        *self.pinned.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
    pinned: Arc<std::sync::Mutex<Option<Faults>>>,
    stats: Arc<Stats>,
) {
    let mut conns = JoinSet::new();
    loop {
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pin = *pinned.lock().unwrap_or_else(|e| e.into_inner());
        match pin {
            Some(f) => {
                // A channel of its own, whose sender lives as long as the connection.
                let (keep, rx) = watch::channel(f);
                conns.spawn(async move {
                    connection(client, upstream, rx).await;
                    drop(keep);
                });
            }
            None => {
                conns.spawn(connection(client, upstream, faults.clone()));
            }
        }
        // Reap finished connections so a long run does not accumulate handles.
        while conns.try_join_next().is_some() {}
    }
}

async fn connection(mut client: TcpStream, upstream: SocketAddr, mut faults: watch::Receiver<Faults>) {
    let _ = client.set_nodelay(true);
    // A blackholed link accepts and then says nothing, even before reaching upstream.
    if wait_while(&mut faults, |f| f.link == Link::Blackhole)
        .await
        .is_err()
    {
        return;
    }
    if faults.borrow().link == Link::Reset {
        reset(client);
        return;
    }
    let mut server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(_) => {
            reset(client);
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let outcome = {
        // Borrowed halves: when a reset drops these futures we still own both sockets.
        let (client_r, client_w) = client.split();
        let (server_r, server_w) = server.split();
        let up = direction(client_r, server_w, faults.clone(), Link::HoldUpstream);
        let down = direction(server_r, client_w, faults.clone(), Link::HoldDownstream);
        tokio::select! {
            r = async { tokio::try_join!(up, down).map(|_| ()) } => r,
            _ = wait_until(&mut faults, |f| f.link == Link::Reset) => Err(Broken),
        }
    };
    // A clean end already forwarded each side's FIN; a reset or an error RSTs both sides.
    if outcome.is_err() {
        reset(client);
        reset(server);
    }
}

/// A direction of a connection broke (read or write error, or a reset link).
struct Broken;

/// Sends RST instead of FIN: SO_LINGER with a zero timeout, then close.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// One direction: a reader stamping chunks with their delivery time and a writer delivering
/// them, joined by a short queue (the delay line).
async fn direction(
    from: ReadHalf<'_>,
    to: WriteHalf<'_>,
    faults: watch::Receiver<Faults>,
    hold: Link,
) -> Result<(), Broken> {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    tokio::try_join!(
        read_side(from, tx, faults.clone(), hold),
        deliver(to, rx, faults, hold)
    )
    .map(|_| ())
}

async fn read_side(
    mut from: ReadHalf<'_>,
    tx: mpsc::Sender<(Instant, Vec<u8>)>,
    mut faults: watch::Receiver<Faults>,
    hold: Link,
) -> Result<(), Broken> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_due = Instant::now();
    let stalled = |f: &Faults| f.link == Link::Blackhole || f.link == hold;
    loop {
        wait_while(&mut faults, stalled).await.map_err(|_| Broken)?;
        let n = match from.read(&mut buf).await {
            // EOF: dropping `tx` lets the writer drain and forward the FIN.
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(_) => return Err(Broken),
        };
        // A chunk read just before a stall began is held too.
        wait_while(&mut faults, stalled).await.map_err(|_| Broken)?;
        let f = *faults.borrow();
        let due = (Instant::now() + one_way_delay(&f)).max(last_due);
        last_due = due;
        tx.send((due, buf[..n].to_vec())).await.map_err(|_| Broken)?;
    }
}

async fn deliver(
    mut to: WriteHalf<'_>,
    mut rx: mpsc::Receiver<(Instant, Vec<u8>)>,
    mut faults: watch::Receiver<Faults>,
    hold: Link,
) -> Result<(), Broken> {
    while let Some((due, chunk)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        // Chunks already in the delay line stop too when the link stalls.
        wait_while(&mut faults, |f| f.link == Link::Blackhole || f.link == hold)
            .await
            .map_err(|_| Broken)?;
        let bandwidth = faults.borrow().bandwidth;
        to.write_all(&chunk).await.map_err(|_| Broken)?;
        if let Some(bps) = bandwidth.filter(|b| *b > 0) {
            let secs = chunk.len() as f64 / bps as f64;
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        }
    }
    let _ = to.shutdown().await;
    Ok(())
}

fn one_way_delay(f: &Faults) -> Duration {
    if f.jitter.is_zero() {
        return f.delay;
    }
    let jitter = f.jitter.as_secs_f64();
    let offset = rand::rng().random_range(-jitter..=jitter);
    Duration::from_secs_f64((f.delay.as_secs_f64() + offset).max(0.0))
}

/// Waits while `stalled` holds. `Err` when the proxy is gone.
async fn wait_while(
    faults: &mut watch::Receiver<Faults>,
    stalled: impl Fn(&Faults) -> bool,
) -> Result<(), watch::error::RecvError> {
    faults.wait_for(|f| !stalled(f)).await.map(|_| ())
}

/// Waits until `cond` holds; never returns if the proxy is gone.
async fn wait_until(faults: &mut watch::Receiver<Faults>, cond: impl Fn(&Faults) -> bool) {
    if faults.wait_for(|f| cond(f)).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server on 127.0.0.1.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn proxy() -> FaultProxy {
        FaultProxy::start("127.0.0.1:0".parse().unwrap(), echo().await)
            .await
            .unwrap()
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await?;
        Ok(got)
    }

    #[tokio::test]
    async fn a_clean_link_forwards_both_ways() {
        let p = proxy().await;
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s, b"hello").await.unwrap(), b"hello");
        assert_eq!(p.accepted(), 1);
    }

    #[tokio::test]
    async fn blackhole_stalls_open_connections_and_heals() {
        let p = proxy().await;
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        roundtrip(&mut s, b"a").await.unwrap();
        p.set_link(Link::Blackhole);
        let stalled = tokio::time::timeout(Duration::from_millis(300), roundtrip(&mut s, b"b")).await;
        assert!(stalled.is_err(), "a blackholed link answered");
        p.set_link(Link::Up);
        // The byte sent during the blackhole arrives after the heal.
        let mut got = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .expect("healed link delivers")
            .unwrap();
        assert_eq!(&got, b"b");
    }

    #[tokio::test]
    async fn reset_breaks_open_connections_and_refuses_new_ones() {
        let p = proxy().await;
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        roundtrip(&mut s, b"a").await.unwrap();
        p.set_link(Link::Reset);
        let broken = tokio::time::timeout(Duration::from_secs(5), roundtrip(&mut s, b"b"))
            .await
            .expect("a reset is prompt");
        assert!(broken.is_err(), "a reset link still answered");
        let mut fresh = TcpStream::connect(p.addr()).await.unwrap();
        let refused = tokio::time::timeout(Duration::from_secs(5), roundtrip(&mut fresh, b"c"))
            .await
            .expect("a reset is prompt");
        assert!(refused.is_err());
    }

    #[tokio::test]
    async fn holding_one_direction_lets_the_other_flow() {
        let p = proxy().await;
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        roundtrip(&mut s, b"a").await.unwrap();
        p.set_link(Link::HoldDownstream);
        // Client → echo still flows, but the echo's answer is held.
        s.write_all(b"x").await.unwrap();
        let mut got = [0u8; 1];
        let held = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut got)).await;
        assert!(held.is_err(), "downstream was not held");
        p.set_link(Link::HoldUpstream);
        // Now the held answer comes down, and new client bytes are held.
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .expect("downstream released")
            .unwrap();
        assert_eq!(&got, b"x");
        s.write_all(b"y").await.unwrap();
        let held = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut got)).await;
        assert!(held.is_err(), "upstream was not held");
    }

    #[tokio::test]
    async fn delay_applies_each_way() {
        let p = proxy().await;
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        roundtrip(&mut s, b"warm").await.unwrap();
        p.set(Faults::wan(Duration::from_millis(100), Duration::ZERO, None));
        let started = std::time::Instant::now();
        roundtrip(&mut s, b"slow").await.unwrap();
        // Two one-way delays: a lower bound only (an upper bound would be a timed assertion).
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn pinned_connections_keep_their_faults() {
        let p = proxy().await;
        let mut open = TcpStream::connect(p.addr()).await.unwrap();
        roundtrip(&mut open, b"a").await.unwrap();
        p.pin_new_connections(Some(Faults::link(Link::Blackhole)));
        let mut pinned = TcpStream::connect(p.addr()).await.unwrap();
        // The kernel accepts before the proxy does: unpin only once the proxy has taken it.
        while p.accepted() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        p.pin_new_connections(None);
        let mut later = TcpStream::connect(p.addr()).await.unwrap();
        let stalled = tokio::time::timeout(Duration::from_millis(300), roundtrip(&mut pinned, b"b")).await;
        assert!(stalled.is_err(), "a connection pinned to a blackhole answered");
        // The others follow the proxy's own faults, and a later `set` leaves the pinned one be.
        roundtrip(&mut open, b"c").await.unwrap();
        roundtrip(&mut later, b"d").await.unwrap();
        p.set(Faults::up());
        let stalled = tokio::time::timeout(Duration::from_millis(300), roundtrip(&mut pinned, b"e")).await;
        assert!(stalled.is_err(), "set() changed a pinned connection");
    }
}
