//! A TCP proxy that a test can cut (every open connection is closed and new ones are refused at
//! once), restore and point elsewhere: between the edge and Postgres to make the database go away,
//! or in front of edges, as a load balancer would be, to replace one edge by another.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;

/// Where the proxy forwards to.
#[derive(Debug, Clone)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Target {
    /// The Postgres of the test server.
    pub fn postgres(server: &crate::pg::Server) -> Self {
        match &server.socket_dir {
            Some(dir) => Self::Unix(dir.join(format!(".s.PGSQL.{}", server.port))),
            None => {
                let host = server
                    .base
                    .get_hosts()
                    .iter()
                    .find_map(|h| match h {
                        tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
                        tokio_postgres::config::Host::Unix(_) => None,
                    })
                    .unwrap_or_else(|| "127.0.0.1".into());
                let addr = format!("{host}:{}", server.port)
                    .parse()
                    .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], server.port)));
                Self::Tcp(addr)
            }
        }
    }
}

/// A running fault proxy on `127.0.0.1:0`.
pub struct FaultProxy {
    addr: SocketAddr,
    target: Arc<std::sync::Mutex<Target>>,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: Target) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let target = Arc::new(std::sync::Mutex::new(target));
        let accept_task = tokio::spawn({
            let cut = cut.clone();
            let generation = generation.clone();
            let target = target.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let Ok(target) = target.lock().map(|t| t.clone()) else {
                        continue;
                    };
                    let cut_now = generation.subscribe();
                    tokio::spawn(async move {
                        let _ = client.set_nodelay(true);
                        match target {
                            Target::Tcp(a) => {
                                if let Ok(upstream) = TcpStream::connect(a).await {
                                    let _ = upstream.set_nodelay(true);
                                    pipe(client, upstream, cut_now).await;
                                }
                            }
                            Target::Unix(p) => {
                                if let Ok(upstream) = UnixStream::connect(p).await {
                                    pipe(client, upstream, cut_now).await;
                                }
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            target,
            cut,
            generation,
            accept_task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and refuses new ones until [`FaultProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Sends new connections to `target` from now on (open ones stay where they are).
    pub fn retarget(&self, target: Target) {
        if let Ok(mut t) = self.target.lock() {
            *t = target;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn pipe<A, B>(mut a: A, mut b: B, mut cut: watch::Receiver<u64>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
        _ = cut.changed() => {}
    }
}
