//! A UDP relay that loses datagrams: a stand-in for `netem` when testing retransmissions.
//!
//! ```text
//! cargo run --example lossy_relay -- --listen 127.0.0.1:5072 --forward 127.0.0.1:5070 \
//!     --loss 0.1 --seed 1 --max-seconds 60
//! ```
//!
//! Datagrams arriving on `--listen` (from a client, whose address is remembered) go to
//! `--forward` from a second socket; what `--forward` sends back to that socket goes to the
//! last client seen. Each direction drops a datagram with probability `--loss`, decided by
//! its own seeded PRNG (SplitMix64), so a run is reproducible given the same order of
//! datagrams. Exits after `--max-seconds` (default 120) or on Ctrl-C / SIGTERM, printing
//! forwarded and dropped counts per direction.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::UdpSocket;

const USAGE: &str = "usage: lossy_relay --listen ADDR --forward ADDR [--loss P] [--seed N] \
[--max-seconds S]";

struct Args {
    listen: SocketAddr,
    forward: SocketAddr,
    loss: f64,
    seed: u64,
    max_seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let (mut listen, mut forward) = (None, None);
    let mut a = Args {
        listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        forward: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        loss: 0.1,
        seed: 1,
        max_seconds: 120,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let addr = |v: String| v.parse::<SocketAddr>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--listen" => listen = Some(addr(value("--listen")?)?),
            "--forward" => forward = Some(addr(value("--forward")?)?),
            "--loss" => {
                let v = value("--loss")?;
                a.loss = v.parse().map_err(|e| format!("{v}: {e}"))?;
                if !(0.0..=1.0).contains(&a.loss) {
                    return Err("--loss must be within 0..=1".into());
                }
            }
            "--seed" => {
                let v = value("--seed")?;
                a.seed = v.parse().map_err(|e| format!("{v}: {e}"))?;
            }
            "--max-seconds" => {
                let v = value("--max-seconds")?;
                a.max_seconds = v.parse().map_err(|e| format!("{v}: {e}"))?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    a.listen = listen.ok_or(format!("--listen is required\n{USAGE}"))?;
    a.forward = forward.ok_or(format!("--forward is required\n{USAGE}"))?;
    Ok(a)
}

/// SplitMix64: tiny, seedable, good enough to pick which datagrams to drop.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Default, Debug)]
struct Direction {
    forwarded: u64,
    dropped: u64,
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (front, back) = match (
        UdpSocket::bind(args.listen).await,
        UdpSocket::bind(SocketAddr::new(args.forward.ip(), 0)).await,
    ) {
        (Ok(f), Ok(b)) => (f, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("lossy_relay: bind: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "lossy_relay: {} <-> {} (via {}), loss {} each way, seed {}",
        args.listen,
        args.forward,
        back.local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string()),
        args.loss,
        args.seed
    );
    // One generator per direction: the drops of one do not depend on the traffic of the other.
    let mut rng_up = SplitMix64(args.seed);
    let mut rng_down = SplitMix64(args.seed ^ 0xD1B5_4A32_D192_ED03);
    let (mut up, mut down) = (Direction::default(), Direction::default());
    let mut client: Option<SocketAddr> = None;
    let mut buf_front = vec![0u8; 65_536];
    let mut buf_back = vec![0u8; 65_536];
    let deadline = tokio::time::sleep(Duration::from_secs(args.max_seconds));
    tokio::pin!(deadline);
    let stop = terminated();
    tokio::pin!(stop);
    let reason = loop {
        tokio::select! {
            _ = &mut deadline => break "max-seconds reached",
            _ = &mut stop => break "signal",
            r = front.recv_from(&mut buf_front) => {
                let Ok((n, from)) = r else { continue };
                client = Some(from);
                if rng_up.next_f64() < args.loss {
                    up.dropped += 1;
                } else if back.send_to(&buf_front[..n], args.forward).await.is_ok() {
                    up.forwarded += 1;
                }
            }
            r = back.recv_from(&mut buf_back) => {
                let Ok((n, from)) = r else { continue };
                let Some(to) = client else { continue };
                if from != args.forward {
                    continue;
                }
                if rng_down.next_f64() < args.loss {
                    down.dropped += 1;
                } else if front.send_to(&buf_back[..n], to).await.is_ok() {
                    down.forwarded += 1;
                }
            }
        }
    };
    println!(
        "lossy_relay summary ({reason}): to-server forwarded={} dropped={} | to-client \
         forwarded={} dropped={}",
        up.forwarded, up.dropped, down.forwarded, down.dropped
    );
    ExitCode::SUCCESS
}
